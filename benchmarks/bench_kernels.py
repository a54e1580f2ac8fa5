"""Perf report for the denoiser block's gated cross-attention: Triton vs SDPA (folded) vs unfused eager.

Rows: both configs' shapes (demo: d 192, 4 heads, 64 tokens; paper: d 768, 12 heads, 77 tokens) over batch sizes
(rows = sessions x (1 + guided)) and windows, per dtype. Implementations:
  eager  — the pre-fold path module by module: LayerNorm, q Linear, SDPA, out Linear, gate Linear, + const + h;
  sdpa   — kernels/reference.py with out + gate folded into one matrix (what CPU and export run);
  sdpa_unfolded — the same functional path with the gate as a second linear map (isolates the fold's effect);
  triton — kernels/cross_attention.py (CUDA only; autotuned on first use, outside the timing).
On CUDA each row also gives the achieved memory bandwidth: the bytes the step must move at least (h, k, v, bias,
const and the weights read once, the new hidden state written once) over the time, against the card's peak
(spec sheet where the card is known, and a measured device copy). On the CPU only eager and sdpa run: timings of
the Triton interpreter are never performance figures.

    python -m instructavatar.benchmarks.bench_kernels                      # CUDA if present, else CPU
    python -m instructavatar.benchmarks.bench_kernels --device cpu --threads 1 --dtypes float32

Prints a table and the JSON (also written to --out). Runs in about a minute or two on one GPU, without network.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from ..kernels.reference import CrossAttentionWeights, attention_bias_rows, fold_output_gate, gated_cross_attention
from ..kernels.reference import gated_cross_attention_unfused as unfused
from .measure import _copy_bandwidth, machine_info, set_threads, stat

# Spec-sheet HBM bandwidth, GB/s (matched by substring of torch.cuda.get_device_name).
PEAK_GBS = {"H200": 4800.0, "H100 SXM": 3350.0, "H100 PCIe": 2000.0, "H100": 3350.0, "A100-SXM4-80GB": 2039.0,
            "A100-SXM4-40GB": 1555.0, "A100": 1555.0, "L40S": 864.0, "L4": 300.0, "A10G": 600.0, "RTX 4090": 1008.0}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Shape:
    """One problem: config name, rows B, window T, tokens N, d_model D, heads H."""

    config: str
    batch: int
    window: int
    tokens: int
    d_model: int
    heads: int


CONFIGS = {"demo": dict(tokens=64, d_model=192, heads=4, windows=(10, 20)),
           "paper": dict(tokens=77, d_model=768, heads=12, windows=(25, 50))}


class Block(nn.Module):
    """The modules of one block's motion branch, with gates set to non-zero (trained-looking) values."""

    def __init__(self, d: int):
        super().__init__()
        self.norm, self.q, self.out, self.gate = nn.LayerNorm(d), nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        with torch.no_grad():
            self.gate.weight.normal_(0, 0.2 / d ** 0.5)
            self.norm.weight.normal_(1, 0.1)

    def folded(self) -> CrossAttentionWeights:
        w, b = fold_output_gate(self.out, self.gate)
        return CrossAttentionWeights(self.norm.weight, self.norm.bias, self.norm.eps, self.q.weight, self.q.bias, w, b)


def min_bytes(s: Shape, elem: int) -> int:
    """Bytes one call must move at least: inputs and weights read once, the new hidden state written once."""
    B, T, N, D = s.batch, s.window, s.tokens, s.d_model
    acts = B * T * D * 2 + 2 * B * N * D + B * D            # h in and out, k, v, const
    weights = 2 * D * D + 4 * D                             # Wq, Wf; bq, bf, LayerNorm weight and bias
    return (acts + weights) * elem + B * N * 4              # + the float32 key bias


def _timer(device: str):
    if device.startswith("cuda"):
        def run(fn, reps: int) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(reps):
                fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / reps
    else:
        def run(fn, reps: int) -> float:
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            return (time.perf_counter() - t0) * 1e3 / reps
    return run


def bench_shape(s: Shape, dtype: torch.dtype, device: str, repeats: int, inner: int, triton_ok: bool) -> dict:
    g = torch.Generator().manual_seed(0)
    block = Block(s.d_model).to(device=device, dtype=dtype).eval()
    B, T, N, D = s.batch, s.window, s.tokens, s.d_model
    r = lambda *shape: torch.randn(*shape, generator=g).to(device=device, dtype=dtype)   # noqa: E731
    h, k, v, const = r(B, T, D), r(B, N, D), r(B, N, D), r(B, D)
    mask = (torch.arange(N)[None, :] < torch.randint(1, N + 1, (B, 1), generator=g)).float()
    bias = attention_bias_rows(mask).to(device)
    weights = block.folded()
    unfolded = replace(weights, out_weight=block.out.weight, out_bias=block.out.bias)    # gate applied after
    fns = {
        "eager": lambda: unfused(h, block.norm, block.q, k, v, bias, const, s.heads, block.out, block.gate),
        "sdpa_unfolded": lambda: gated_cross_attention(h, unfolded, k, v, bias, const, s.heads, gate=block.gate),
        "sdpa": lambda: gated_cross_attention(h, weights, k, v, bias, const, s.heads),
    }
    if triton_ok:
        from ..kernels.cross_attention import fused_gated_cross_attention

        fns["triton"] = lambda: fused_gated_cross_attention(h, weights, k, v, bias, const, s.heads)
    timer = _timer(device)
    row: dict = {"shape": vars(s), "dtype": str(dtype).replace("torch.", ""), "ms": {}, "max_abs_diff_vs_eager": {}}
    with torch.inference_mode():
        want = fns["eager"]().float()
        for name, fn in fns.items():
            got = fn()                                         # warm-up (and the autotuner's search, once per key)
            row["max_abs_diff_vs_eager"][name] = float((got.float() - want).abs().max())
            timer(fn, max(1, inner // 4))
        samples: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(repeats):                               # round-robin: a load change hits every row alike
            for name, fn in fns.items():
                samples[name].append(timer(fn, inner))
        row["ms"] = {name: stat(ms) for name, ms in samples.items()}
    med = {name: m["median"] for name, m in row["ms"].items()}
    row["speedup_vs_eager"] = {name: med["eager"] / t for name, t in med.items()}
    if "triton" in med:
        row["speedup_triton_vs_sdpa"] = med["sdpa"] / med["triton"]
    if device.startswith("cuda"):
        nbytes = min_bytes(s, torch.tensor([], dtype=dtype).element_size())
        row["min_bytes"] = nbytes
        row["achieved_gbs"] = {name: nbytes / (t * 1e-3) / 1e9 for name, t in med.items()}
    return row


def peak_gbs(device: str) -> dict:
    if not device.startswith("cuda"):
        return {}
    name = torch.cuda.get_device_name(0)
    spec = next((gbs for key, gbs in PEAK_GBS.items() if key in name), None)
    return {"device": name, "spec_gbs": spec, "copy_gbs": _copy_bandwidth(torch, device)["median"]}


def table(rows: list[dict], peak: dict) -> str:
    impls = [name for name in ("eager", "sdpa_unfolded", "sdpa", "triton") if any(name in r["ms"] for r in rows)]
    head = ["config", "dtype", "B", "T"] + [f"{n} ms" for n in impls] + ["fold x (unfolded/sdpa)", "sdpa/triton x"]
    cuda = bool(peak)
    if cuda:
        head += ["triton GB/s", "% of peak"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ref = peak.get("spec_gbs") or peak.get("copy_gbs")
    for r in rows:
        s, med = r["shape"], {n: m["median"] for n, m in r["ms"].items()}
        cells = [s["config"], r["dtype"], str(s["batch"]), str(s["window"])]
        cells += [f"{med[n]:.4f}" if n in med else "-" for n in impls]
        cells += [f"{med['sdpa_unfolded'] / med['sdpa']:.2f}",
                  f"{r['speedup_triton_vs_sdpa']:.2f}" if "triton" in med else "-"]
        if cuda:
            gbs = r["achieved_gbs"].get("triton")
            cells += [f"{gbs:.0f}" if gbs else "-", f"{100 * gbs / ref:.1f}" if gbs and ref else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--configs", default="demo,paper")
    ap.add_argument("--batches", default="2,8,32", help="rows per call: sessions x (1 + guided)")
    ap.add_argument("--windows", default=None, help="override each config's windows (default demo 10,20; paper 25,50)")
    ap.add_argument("--dtypes", default=None, help="default float16,bfloat16 on CUDA (float32 compiles slowly; "
                    "add it with --dtypes float16,bfloat16,float32); float32 on CPU")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--inner", type=int, default=None, help="calls per timed repeat (default 50 CUDA, 10 CPU)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="write the JSON here too")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is visible")
    dtypes = [DTYPES[d] for d in (args.dtypes or ("float16,bfloat16" if cuda else "float32")).split(",")]
    triton_ok = cuda
    if cuda:
        try:
            import triton  # noqa: F401
        except ImportError:
            triton_ok = False
    inner = args.inner or (50 if cuda else 10)
    t0 = time.perf_counter()
    rows = []
    for name in args.configs.split(","):
        c = CONFIGS[name]
        windows = [int(w) for w in args.windows.split(",")] if args.windows else c["windows"]
        for dtype in dtypes:
            for batch in (int(b) for b in args.batches.split(",")):
                for window in windows:
                    s = Shape(name, batch, window, c["tokens"], c["d_model"], c["heads"])
                    rows.append(bench_shape(s, dtype, args.device, args.repeats, inner, triton_ok))
                    print(f"[{time.perf_counter() - t0:6.1f}s] {name} {rows[-1]['dtype']} B {batch} T {window}: "
                          + ", ".join(f"{n} {m['median']:.4f} ms" for n, m in rows[-1]["ms"].items()), file=sys.stderr)
    peak = peak_gbs(args.device)
    report = {"benchmark": "kernels.gated_cross_attention", "machine": machine_info(args.threads),
              "device": args.device, "triton": triton_ok, "peak": peak, "rows": rows,
              "seconds": round(time.perf_counter() - t0, 1),
              "command": sys.argv[1:] if argv is None else argv}
    print(table(rows, peak))
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return report


if __name__ == "__main__":
    main()
