"""PNG plots of a bench report (matplotlib, the `bench` extra): latency distribution, stage breakdown,
DDIM steps against quality and time, sessions against latency.

Quality is not measured by the bench (it needs the evaluators and minutes per clip): the steps plot reads the
recorded `instructavatar train quality steps` table of the README (demo checkpoint, 32 clips) when the README
is there, and says so in its title; without it the plot shows time only.
"""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def recorded_steps_quality(readme: Path = README) -> dict[int, dict[str, float]]:
    """{steps: {"AU_F1": .., "lip-sync corr": ..}} from the README's DDIM-steps table (video rows), or {}."""
    if not readme.is_file():
        return {}
    header, rows = None, {}
    for line in readme.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| system |") and "AU_F1" in cells:
            header = cells
            continue
        m = re.fullmatch(r"(\d+) steps", cells[0]) if header and line.startswith("|") else None
        if m:
            try:
                rows[int(m.group(1))] = {k: float(cells[header.index(k)]) for k in ("AU_F1", "lip-sync corr")}
            except (ValueError, IndexError):
                continue
        elif header and rows and not line.startswith("|"):
            break
    return rows


def write_plots(report: dict, out_dir: str | Path) -> list[Path]:
    """Write the PNGs for every backend in the report; returns their paths. Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m = report["machine"]
    threads = f"{m['threads']} thread{'' if m['threads'] == 1 else 's'}" if m["threads"] else "default threads"
    end = m.get("load_average_end")
    load = f"load {m['load_average'][0]:g}" + (f" -> {end[0]:g}" if end else "")
    title = (f"{report['options']['config']} config, {threads}, {m['cpu']} ({m['cores']} cores, {load}), "
             f"{m['date'][:10]}")
    backends = {k: b for k, b in report["backends"].items() if "pipeline" in b and "stream" in b["pipeline"]}
    paths = []

    def save(fig, name):
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)

    if backends:
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, b in backends.items():
            s = b["pipeline"]["stream"]
            n = len(s["chunk_latencies_ms"])
            ax.hist(s["chunk_latencies_ms"], bins=30, alpha=0.6, label=f"{name} ({n} chunks)")
            budget = s["chunk_audio_ms"]
        ax.axvline(budget, color="k", ls="--", lw=1, label=f"real-time budget {budget:.0f} ms / chunk")
        ax.set_xlabel("ms to produce one chunk (compute)")
        ax.set_ylabel("chunks")
        ax.set_title(f"Per-chunk latency: {title}", fontsize=9)
        ax.legend(fontsize=8)
        save(fig, "bench_latency.png")

        fig, ax = plt.subplots(figsize=(9, 1.6 + 0.5 * len(backends)))
        names = list(backends)
        stages = sorted({k for b in backends.values() for k in b["pipeline"]["stream"]["stage_ms_per_frame"]})
        left = [0.0] * len(names)
        for stage in stages:
            vals = [backends[n]["pipeline"]["stream"]["stage_ms_per_frame"].get(stage, {"median": 0})["median"]
                    for n in names]
            ax.barh(names, vals, left=left, label=stage)
            left = [a + v for a, v in zip(left, vals)]
        ax.set_xlabel("ms per output frame (stream, median)")
        ax.set_title(f"Stage breakdown: {title}", fontsize=9)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        save(fig, "bench_stages.png")

        fig, ax = plt.subplots(figsize=(7, 4))
        for name, b in backends.items():
            sw = b["pipeline"]["steps_sweep"]
            xs = [int(k) for k in sw]
            ax.plot(xs, [sw[str(x)]["rtf"]["median"] for x in xs], "o-", label=f"{name}: real-time factor")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("DDIM steps")
        ax.set_ylabel("real-time factor (< 1: faster than real time)")
        quality = recorded_steps_quality() if report["options"]["config"] == "demo" else {}
        if quality:
            q = ax.twinx()
            xs = sorted(quality)
            for key, style in (("AU_F1", "s--"), ("lip-sync corr", "^--")):
                q.plot(xs, [quality[x][key] for x in xs], style, color="gray", label=f"{key} (recorded)")
            q.set_ylabel("quality (README table, not measured here)")
            q.legend(fontsize=8, loc="center right")
        ax.set_title(f"DDIM steps: time (measured) and quality ({'recorded' if quality else 'not available'}): "
                     f"{report['options']['config']}", fontsize=9)
        ax.legend(fontsize=8, loc="upper left")
        save(fig, "bench_steps.png")

    scaled = {k: b for k, b in report["backends"].items() if "sessions" in b.get("scaling", {})}
    if scaled:
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, b in scaled.items():
            pts = b["scaling"]["sessions"]["points"]
            xs = [int(k) for k in pts]
            med = [pts[str(x)]["step_ms"]["median"] for x in xs]
            lo = [pts[str(x)]["step_ms"]["min"] for x in xs]
            hi = [pts[str(x)]["step_ms"]["max"] for x in xs]
            ax.errorbar(xs, med, yerr=[[m - a for m, a in zip(med, lo)], [b_ - m for m, b_ in zip(med, hi)]],
                        fmt="o-", capsize=3, label=f"{name}: one batched step")
            budget = b["scaling"]["sessions"]["chunk_audio_ms"]
        ax.axhline(budget, color="k", ls="--", lw=1, label=f"real-time budget {budget:.0f} ms")
        ax.set_xlabel("sessions in one batched Pipeline.step")
        ax.set_ylabel("ms per chunk step (min-median-max)")
        ax.set_title(f"Sessions against latency: {title}", fontsize=9)
        ax.legend(fontsize=8)
        save(fig, "bench_sessions.png")
    return paths
