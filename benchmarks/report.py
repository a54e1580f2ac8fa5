"""Reading bench reports: the on-screen table, schema validation, and `--compare A.json B.json` ratios.

`flatten(report)` turns a report into {dotted.path: median} for every stat in it (the figures two reports can
be compared on); `compare` prints the paths both reports hold, side by side, with the ratio B / A.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .measure import SCHEMA, is_stat

REQUIRED = ("schema", "machine", "options", "backends", "errors", "matmul_peak")
MACHINE_KEYS = ("cpu", "cores", "gpu", "libraries", "threads", "git_commit", "date")
SECTIONS = ("components", "pipeline", "scaling", "efficiency")


class ReportError(ValueError):
    """A file that is not a bench report this version can read."""


def load_report(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ReportError(f"bench report not found: {p}")
    try:
        report = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"{p} is not JSON ({e.__class__.__name__}); expected a report written by "
                          "`instructavatar bench`") from None
    problems = validate(report)
    if problems:
        raise ReportError(f"{p} is not a bench report: {problems[0]}")
    return report


def validate(report) -> list[str]:
    """Schema problems (empty when the report is well formed): keys present, every stat finite and ordered."""
    if not isinstance(report, dict):
        return ["the top level is not an object"]
    problems = [f"missing key {k!r}" for k in REQUIRED if k not in report]
    if problems:
        return problems
    if report["schema"] != SCHEMA:
        return [f"schema {report['schema']!r}, expected {SCHEMA!r}"]
    problems += [f"machine.{k} missing" for k in MACHINE_KEYS if k not in report["machine"]]
    for name, b in report["backends"].items():
        problems += [f"backends.{name}.{s} missing" for s in SECTIONS if s not in b]
    for path, value in _stats(report):
        vals = [value[k] for k in ("min", "median", "max")]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals):
            problems.append(f"{path}: not finite numbers {vals}")
        elif not vals[0] <= vals[1] <= vals[2]:
            problems.append(f"{path}: min <= median <= max does not hold {vals}")
    return problems


def _stats(node, path: str = ""):
    if is_stat(node):
        yield path, node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _stats(v, f"{path}.{k}" if path else str(k))


def flatten(report: dict) -> dict[str, float]:
    """{path: median} for every stat in the report (backends.torch.components.decode.ms_per_frame, ...)."""
    flat = {p: v["median"] for p, v in _stats(report)}
    summary = ((report.get("server") or {}).get("result") or {}).get("summary") or {}
    flat.update({f"server.summary.{k}": float(v) for k, v in summary.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return flat


def compare(a: dict, b: dict, name_a: str = "A", name_b: str = "B") -> str:
    """Figures both reports hold, side by side: A median, B median, B / A."""
    fa, fb = flatten(a), flatten(b)
    common = [k for k in fa if k in fb]
    extra = {"matmul peak GFLOP/s": (a["matmul_peak"]["peak_gflops"], b["matmul_peak"]["peak_gflops"])}
    width = max([len(k) for k in common] + [30])
    lines = [f"A = {name_a}: {_describe(a)}", f"B = {name_b}: {_describe(b)}",
             f"{'figure (median)':<{width}}  {'A':>12}  {'B':>12}  {'B/A':>8}"]
    lines.append("-" * len(lines[-1]))
    rows = [(k, fa[k], fb[k]) for k in common] + [(k, *v) for k, v in extra.items()]
    for k, x, y in rows:
        ratio = y / x if x else float("nan")
        lines.append(f"{k:<{width}}  {x:>12.4g}  {y:>12.4g}  {ratio:>8.3f}")
    only = sorted(set(fa) ^ set(fb))
    if only:
        lines.append(f"({len(only)} figures in only one of the reports, not shown)")
    return "\n".join(lines)


def _describe(r: dict) -> str:
    m, o = r["machine"], r["options"]
    return (f"{o['config']} / {','.join(r['backends']) or 'no backend'} / {m['threads']} threads / "
            f"{o['plan']['name']} on {m['cpu']} ({m['cores']} cores{', ' + m['gpu'] if m.get('gpu') else ''}), "
            f"{m['date']}, commit {(m.get('git_commit') or 'unknown')[:12]}")


# ------------------------------------------------------------------------------------------------ table
def _m(s) -> str:
    return "-" if s is None else f"{s['median']:.3g}"


def _range(s) -> str:
    return "-" if s is None else f"{s['min']:.3g}-{s['max']:.3g}"


def _threads(n) -> str:
    return "default threads" if not n else f"{n} thread" + ("" if n == 1 else "s")


def format_report(report: dict) -> str:
    """The on-screen summary: medians (min-max) of the headline figures, per backend."""
    m, o = report["machine"], report["options"]
    pk = report["matmul_peak"]
    gpu = f", GPU {m['gpu']}" if m["gpu"] else ""
    lines = [f"instructavatar bench ({o['plan']['name']}): config {o['config']}, {_threads(m['threads'])}; {m['cpu']} "
             f"({m['cores']} cores, load {' '.join(map(str, m['load_average']))}){gpu}; {m['date']}",
             f"matmul peak ({pk['library']} {pk['dtype']}): {pk['peak_gflops']:.1f} GFLOP/s at n={pk['peak_size']}"
             + (f"; onnxruntime {report['matmul_peak_ort']['peak_gflops']:.1f} GFLOP/s at "
                f"n={report['matmul_peak_ort']['peak_size']}" if report.get("matmul_peak_ort") else "")]
    for name, b in report["backends"].items():
        lines.append("")
        heavy = ", heavy: estimates" if b["heavy"] else ""
        lines.append(f"== backend {name} ({b['weights']} weights, {b['steps']} DDIM steps, guidance {b['guidance']:g}, "
                     f"chunk {b['chunk_frames']} + prefix {b['prefix_frames']}{heavy})")
        lines += _components(b.get("components"))
        lines += _pipeline(b.get("pipeline"))
        lines += _scaling(b.get("scaling"))
        lines += _efficiency(b.get("efficiency"))
    for name, why in report.get("skipped", {}).items():
        lines.append(f"skipped backend {name}: {why}")
    server = report.get("server")
    if server:
        lines.append("")
        if server.get("available"):
            summary = server["result"].get("summary", {})
            lines.append(f"server ({server.get('backend')}, real websocket clients at 1x real time): "
                         + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                     for k, v in summary.items()))
        else:
            lines.append(f"server: not run ({server['reason']})")
    if report["errors"]:
        lines.append("")
        lines += [f"ERROR {e}" for e in report["errors"]]
    lines.append(f"\n{report.get('seconds', float('nan')):.0f} s in all; load average at the end "
                 f"{' '.join(map(str, m.get('load_average_end', [])))}")
    return "\n".join(lines)


def _components(c) -> list[str]:
    if not c:
        return []
    out = [f"{'component':<18} {'ms/call':>9} {'min-max':>15} {'ms/frame':>9} {'GFLOP/call':>11} {'GFLOP/s':>8}  shape"]
    for k, v in c.items():
        if not isinstance(v, dict):
            out.append(f"{k}: {v:.3g} ms/frame")
            continue
        gf, gs = v["gflop_per_call"], v["gflops"]
        out.append(f"{k:<18} {_m(v['ms_per_call']):>9} {_range(v['ms_per_call']):>15} {_m(v['ms_per_frame']):>9} "
                   f"{'-' if gf is None else f'{gf:.3g}':>11} {'-' if gs is None else f'{gs:.1f}':>8}  {v['shape']}")
    return out


def _pipeline(p) -> list[str]:
    if not p:
        return []
    if "estimated" in p:
        e = p["estimated"]
        return [f"estimated from the components: {e['ms_per_frame']:.4g} ms/frame, RTF {e['rtf']:.4g}, first chunk "
                f"{e['first_chunk_ms']:.4g} ms"]
    s = p["stream"]
    out = [f"stream {s['audio_seconds']:g} s x {s['repeats']}: RTF {_m(s['rtf'])} ({_range(s['rtf'])}), steady "
           f"{_m(s['steady_rtf'])}; first frame {_m(s['first_frame_latency_ms'])} ms compute, "
           f"{s['first_frame_latency_with_fill_ms']:.0f} ms with the {s['chunk_audio_ms']:.0f} ms of audio; chunk "
           f"{_m(s['chunk_latency_ms'])} ms (p95 {s['chunk_latency_ms'].get('p95', float('nan')):.3g}, "
           f"{_range(s['chunk_latency_ms'])})"]
    st = s["stage_ms_per_frame"]
    total = sum(v["median"] for v in st.values())
    out.append("per frame: " + ", ".join(f"{k} {v['median']:.3g} ms ({100 * v['median'] / total:.0f}%)"
                                        for k, v in sorted(st.items(), key=lambda kv: -kv[1]["median"])))
    ss = p["session_start"]
    out.append(f"session start: portrait {_m(ss['prepare_portrait_ms'])} ms, new session {_m(ss['new_session_ms'])} ms "
               f"(tokenizer {_m(ss['tokenizer_ms'])}, text encoding {_m(ss['text_encoding_ms'])}, conditioning "
               f"{_m(ss['conditioning_ms'])} ms)")
    out.append("steps sweep: " + "; ".join(f"{k}: RTF {_m(v['rtf'])}, first {_m(v['first_frame_latency_ms'])} ms"
                                          for k, v in p["steps_sweep"].items()))
    out.append("chunk sweep: " + "; ".join(f"{k} frames: RTF {_m(v['rtf'])}, first frame "
                                          f"{v['first_frame_latency_with_fill_ms']:.0f} ms with fill"
                                          for k, v in p["chunk_sweep"].items()))
    return out


def _fit_words(f) -> str:
    lin, pw = f["linear"], f["power"]
    return (f"{lin['slope']:.3g} ms per unit + {lin['intercept']:.3g} (R2 {lin['r2']:.2f}), "
            f"log-log exponent {pw['exponent']:.2f}")


def _scaling(s) -> list[str]:
    if not s:
        return []
    out = []
    w = s["window"]
    out.append("window: " + ", ".join(f"T={k} denoise {_m(v['denoise_ms'])} audio {_m(v['encode_audio_ms'])}"
                                      for k, v in w["points"].items()))
    out.append(f"  denoise vs window: {_fit_words(w['fits']['denoise_ms'])}")
    if "sessions" in s:
        se = s["sessions"]
        out.append("sessions: " + ", ".join(f"B={k} step {_m(v['step_ms'])} ms" for k, v in se["points"].items())
                   + f"; real time (< {se['chunk_audio_ms']:.0f} ms): {se['real_time_sessions_measured']} measured, "
                   f"{se['real_time_sessions_fit']} by the fit")
        out.append(f"  step vs sessions: {_fit_words(se['fits'])}")
    if "resolution" in s:
        r = s["resolution"]
        out.append("resolution (random weights): " + ", ".join(
            f"{k}px decode {_m(v['decode_ms_per_frame'])} ms/frame" for k, v in r["points"].items()))
        out.append(f"  decode vs side: {_fit_words(r['fits']['decode_ms_per_frame'])}")
    return out


def _efficiency(e) -> list[str]:
    if not e:
        return []
    if "components" not in e:
        return [f"efficiency: {e.get('unavailable', 'not measured')}"]
    libs = e["peak"].get("libraries")
    of = (f"the best measured peak, {e['peak']['library']}'s {e['peak']['peak_gflops']:.1f} GFLOP/s"
          + (" (" + ", ".join(f"{k} {v:.1f}" for k, v in libs.items()) + ")" if libs and len(libs) > 1 else "")
          if libs else f"the {e['peak']['peak_gflops']:.1f} GFLOP/s peak")
    out = [f"efficiency with {e['sessions']} sessions (fraction of {of}):"]
    for k, v in e["components"].items():
        target = e["targets"].get(k)
        out.append(f"  {k:<13} {v['gflops']:8.1f} GFLOP/s  {v['fraction_of_peak']:.2f}"
                   + (f" (target {target})" if target else "") + f"  [{v['shape']}]")
    return out
