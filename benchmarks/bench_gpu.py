"""GPU benchmark of the torch CUDA path (paper config, random weights): one script, one run, everything named.

    python -m instructavatar.benchmarks.bench_gpu --json gpu.json          # on a CUDA machine (< 8 min on an H200)
    python -m instructavatar.benchmarks.bench_gpu --smoke                  # tiny sizes, CPU: checks the script runs

Measures, side by side in one process, for each precision (fp32, fp16, bf16) and mode (eager: the per-call device
path; graphs: the static calls replayed as CUDA graphs; compile: torch.compile + graphs, bf16 only by default):
  decoder     ms/frame at a decode batch of 16 (the pipeline's), and TFLOP/s achieved (5.4 TFLOP per paper frame)
  denoiser    ms/step of the whole 8-step guided chunk loop (rows = 2 per session), divided by its steps
  sessions    the full pipeline (Pipeline.step, guided, a prefix window) with B sessions batched: chunk time,
              real-time factor, and the most sessions that keep 25 fps (chunk time <= chunk duration)
Prints a table and the GPU's name; `--json` writes every figure with the machine and library versions. Needs no
network (random weights; the CLIP tokenizer ships with the package) and no TensorRT or onnxruntime-gpu. A time
budget (`--budget-s`, default 420) skips what would not fit and says so.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from dataclasses import replace

import numpy as np

PRECISIONS = "fp32,fp16,bf16"
PAPER_FRAME_TFLOP = 5.4          # one 256 px decoder frame (instructavatar info --config paper: 5396 GFLOP)


def smoke_config():
    """The paper architecture at tiny depth and width (64 px frames), for --smoke on a CPU."""
    from ..engine.config import AdapterConfig, AutoencoderConfig, ConformerConfig, get_config

    cfg = get_config("paper")
    ae = lambda cin, cout: AutoencoderConfig(in_channels=cin, out_channels=cout, ch=16, ch_mult=(1, 2, 4),  # noqa: E731
                                             num_res_blocks=1, norm_groups=8)
    conf = ConformerConfig(d_model=64, layers=1, heads=4, ffn_dim=128, kernel=5)
    adapter = AdapterConfig(hidden=64, layers=2)
    return replace(cfg, media=replace(cfg.media, image_size=64),
                   vae=replace(cfg.vae, appearance=ae(3, 3), motion=ae(3, 3), decoder=ae(6, 3), keyframe_ch=8),
                   audio=replace(cfg.audio, conformer=conf),
                   text=replace(cfg.text, width=64, layers=1, heads=4, ffn_dim=128),
                   denoiser=replace(cfg.denoiser, conformer=replace(conf, layers=2), emotion_adapter=adapter,
                                    motion_adapter=adapter, keyframe_adapter=adapter),
                   stream=replace(cfg.stream, chunk_frames=4, prefix_frames=4))


class Clock:
    """Wall time of GPU work: synchronise before and after (CUDA), median of `reps`."""

    def __init__(self, torch, device):
        self.torch, self.cuda = torch, device.type == "cuda"

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def median_s(self, fn, reps: int, warmup: int = 1) -> float:
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(reps):
            self.sync()
            t0 = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - t0)
        return float(np.median(times))


def machine(torch, device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "numpy": np.__version__, "device": str(device), "cpu": platform.processor() or platform.machine()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=torch.cuda.get_device_name(device), compute_capability=f"{p.major}.{p.minor}",
                    gpu_memory_gib=round(p.total_memory / 2**30, 1))
        try:
            import triton

            info["triton"] = triton.__version__
        except ImportError:
            pass
    return info


def backend_for(model, device, precision, mode):
    from ..engine.modules.torch_backend import TorchBackend

    return TorchBackend(model, device=str(device), precision=precision, device_loop=True,
                        cuda_graphs=(mode in ("graphs", "compile") and device.type == "cuda"),
                        compile=(mode == "compile"))


def bench_decoder(model, cfg, device, precision, mode, clock, reps, batch=16) -> dict:
    backend = backend_for(model, device, precision, mode)
    rng = np.random.default_rng(0)
    S = cfg.media.image_size
    image = rng.uniform(-1, 1, (1, 3, S, S)).astype(np.float32)
    app = np.repeat(backend.encode_appearance(image), batch, 0)
    motion = rng.standard_normal((batch, cfg.motion_dim)).astype(np.float32)
    s = clock.median_s(lambda: backend.decode(motion, app), reps, warmup=2)
    ms = s * 1e3 / batch
    out = {"ms_per_frame": round(ms, 3), "frames_per_s": round(1e3 / ms, 1), "batch": batch}
    if cfg.name == "paper" and S == 256:
        out["tflop_per_s"] = round(PAPER_FRAME_TFLOP * 1e3 / ms, 1)
    return out


def bench_denoiser(model, cfg, device, precision, mode, clock, reps, sessions=1) -> dict:
    """The whole guided chunk loop for `sessions` (2 rows each), through the backend's denoise_chunk."""
    from ..engine.ddim import DDIMSampler

    backend = backend_for(model, device, precision, mode)
    sampler = DDIMSampler(cfg.diffusion)
    sampler.set_timesteps(cfg.diffusion.sample_steps)
    rng = np.random.default_rng(1)
    B, P, C = sessions, cfg.stream.prefix_frames, cfg.stream.chunk_frames
    T, M, D = P + C, cfg.motion_dim, cfg.denoiser.conformer.d_model
    L, N = cfg.denoiser.conformer.layers, cfg.text.context
    ids = np.zeros((1, N), np.int64)
    ids[0, :4] = (49406, 320, 1929, 49407)
    mask = (ids != 0).astype(np.int64)
    mask[0, 0] = 1
    tokens, pooled = backend.encode_text(ids, mask)
    key = rng.standard_normal((1, M)).astype(np.float32)
    inst = backend.stack_instructions([backend.condition(tokens, mask, pooled, key)] * (2 * B))
    x = rng.standard_normal((B, T, M)).astype(np.float32)
    prefix = rng.standard_normal((B, P, M)).astype(np.float32)
    audio = rng.standard_normal((2 * B, T, D)).astype(np.float32)
    known = np.zeros((2 * B, T), np.float32)
    known[:, :P] = 1
    rows = np.r_[np.arange(B), np.arange(B)].astype(np.int64)
    guided = np.arange(B, dtype=np.int64)
    run = lambda: backend.denoise_chunk(sampler, x.copy(), prefix, audio, known, inst, rows, guided, 1.5, None)  # noqa: E731
    s = clock.median_s(run, reps, warmup=2)
    del L
    return {"ms_per_step": round(s * 1e3 / sampler.num_steps, 3), "ms_per_chunk_loop": round(s * 1e3, 2),
            "rows": 2 * B, "window": T, "steps": sampler.num_steps}


def bench_sessions(model, cfg, device, precision, mode, clock, reps, counts, guidance=1.5) -> list[dict]:
    """Pipeline.step for B sessions in one batch (a prefix window: the steady state), each guided when
    guidance != 1 (two denoiser rows per session: the costlier case)."""
    from ..engine.pipeline import Pipeline
    from ..engine.tokenizer import build_tokenizer

    backend = backend_for(model, device, precision, mode)
    pipe = Pipeline(cfg, backend, build_tokenizer(cfg.text), guidance=guidance)
    rng = np.random.default_rng(2)
    S = cfg.media.image_size
    portrait = pipe.prepare(rng.integers(0, 255, (S, S, 3), dtype=np.uint8))
    chunk_s = cfg.stream.chunk_frames / cfg.media.fps
    rows = []
    def chunks(n: int) -> list[np.ndarray]:
        return [(0.1 * rng.standard_normal(pipe.chunk_samples)).astype(np.float32) for _ in range(n)]

    for B in counts:
        sessions = [pipe.new_session(portrait, "Smile while you talk.", seed=b)[0] for b in range(B)]
        pipe.step(sessions, chunks(B))          # first chunk (no prefix): captures those shapes
        s = clock.median_s(lambda group=sessions: pipe.step(group, chunks(len(group))), reps, warmup=1)
        rows.append({"sessions": B, "chunk_ms": round(s * 1e3, 1), "rtf": round(s / chunk_s, 3),
                     "real_time": bool(s <= chunk_s), "guidance": guidance, "chunk_frames": cfg.stream.chunk_frames})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (checks the script, no figures)")
    ap.add_argument("--config", default="paper", help="paper (default) or demo")
    ap.add_argument("--device", default=None, help="cuda (default) or cpu (--smoke default)")
    ap.add_argument("--precisions", default=PRECISIONS, help=f"comma-separated (default {PRECISIONS}; --smoke: fp32)")
    ap.add_argument("--modes", default="eager,graphs,compile")
    ap.add_argument("--compile-precisions", default="bf16", help="torch.compile only these (compiling is minutes)")
    ap.add_argument("--sessions", default="1,2,3,4,6,8", help="session counts for the pipeline rows")
    ap.add_argument("--session-precision", default="bf16")
    ap.add_argument("--guidance", type=float, default=1.5, help="sessions rows: instruction guidance (1 = off)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--budget-s", type=float, default=420.0, help="skip what starts after this many seconds")
    ap.add_argument("--json", help="write all figures here")
    args = ap.parse_args(argv)

    import torch

    from ..engine.config import get_config
    from ..engine.loader import build_model

    t_start = time.perf_counter()
    device = torch.device(args.device or ("cpu" if args.smoke else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"error: no CUDA device visible to torch {torch.__version__} (use --smoke on a CPU)", file=sys.stderr)
        return 2
    cfg = smoke_config() if args.smoke else get_config(args.config)
    reps = 1 if args.smoke else args.reps
    counts = [1] if args.smoke else [int(c) for c in args.sessions.split(",")]
    batch = 2 if args.smoke else 16                       # decode batch (the pipeline's is 16)
    precisions = ["fp32"] if args.smoke and args.precisions == PRECISIONS else args.precisions.split(",")
    session_precision = "fp32" if args.smoke else args.session_precision
    torch.backends.cuda.matmul.allow_tf32 = True          # fp32 rows use TF32 tensor cores (torch's fast default)
    torch.backends.cudnn.allow_tf32 = True
    model = build_model(cfg, random_weights=True)
    report = {"schema": 1, "config": cfg.name + (" (smoke: tiny sizes)" if args.smoke else ""),
              "machine": machine(torch, device), "decoder": [], "denoiser": [], "sessions": [], "skipped": [],
              "errors": []}
    clock = Clock(torch, device)
    modes = args.modes.split(",")
    if device.type != "cuda":
        modes = [m for m in modes if m == "eager"] or ["eager"]     # CUDA graphs need CUDA; compile is GPU-only here
    compile_ok = set(args.compile_precisions.split(","))

    def timed(kind: str, label: dict, fn):
        if time.perf_counter() - t_start > args.budget_s:
            report["skipped"].append({"what": kind, **label, "why": f"time budget {args.budget_s:g} s"})
            return
        try:
            res = fn()
        except Exception as e:                                        # one failure does not lose the rest
            report["errors"].append({"what": kind, **label, "error": f"{type(e).__name__}: {e}"[:300]})
            print(f"  {kind} {label}: FAILED {type(e).__name__}: {str(e)[:160]}", file=sys.stderr)
            return
        finally:
            gc.collect()                                              # drop the last backend's graphs and pools
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if isinstance(res, list):
            for r in res:
                report[kind].append({**label, **r})
        else:
            report[kind].append({**label, **res})
        print(f"  {kind} {label}: {res}  [{time.perf_counter() - t_start:.0f} s]", file=sys.stderr)

    print(f"bench_gpu: {cfg.name} on {report['machine'].get('gpu', device)}", file=sys.stderr)
    for precision in precisions:
        for mode in modes:
            if mode == "compile" and precision not in compile_ok:
                continue
            label = {"precision": precision, "mode": mode}
            timed("denoiser", label, lambda p=precision, m=mode: bench_denoiser(model, cfg, device, p, m, clock, reps))
            timed("decoder", label, lambda p=precision, m=mode: bench_decoder(model, cfg, device, p, m, clock, reps,
                                                                              batch))
    best_mode = "graphs" if "graphs" in modes else modes[0]
    timed("sessions", {"precision": session_precision, "mode": best_mode},
          lambda: bench_sessions(model, cfg, device, session_precision, best_mode, clock, reps, counts,
                                 args.guidance))
    live = [r["sessions"] for r in report["sessions"] if r["real_time"]]
    report["sessions_at_25fps"] = max(live) if live else 0
    report["total_s"] = round(time.perf_counter() - t_start, 1)
    print_table(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


def print_table(report: dict) -> None:
    m = report["machine"]
    print(f"\n{report['config']} on {m.get('gpu', m['device'])} (torch {m['torch']}, CUDA {m['cuda']})")
    print(f"{'precision':<10}{'mode':<9}{'decoder ms/frame':>18}{'TFLOP/s':>10}{'denoiser ms/step':>18}")
    dec = {(r["precision"], r["mode"]): r for r in report["decoder"]}
    den = {(r["precision"], r["mode"]): r for r in report["denoiser"]}
    for k in dict.fromkeys(list(dec) + list(den)):
        d, n = dec.get(k, {}), den.get(k, {})
        print(f"{k[0]:<10}{k[1]:<9}{d.get('ms_per_frame', '-'):>18}{d.get('tflop_per_s', '-'):>10}"
              f"{n.get('ms_per_step', '-'):>18}")
    for r in report["sessions"]:
        print(f"sessions {r['sessions']}: chunk {r['chunk_ms']} ms, RTF {r['rtf']} ({r['precision']}, {r['mode']})")
    print(f"sessions at 25 fps: {report['sessions_at_25fps']}   total {report['total_s']} s")
    for e in report["errors"]:
        print(f"error: {e}")
    for s in report["skipped"]:
        print(f"skipped: {s}")


if __name__ == "__main__":
    sys.exit(main())
