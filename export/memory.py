"""Device memory of a GPU deployment (TensorRT or torch on CUDA; Jetson-class edge boards share it with the CPU),
computed from the export contract's tensor shapes (export/specs.py) and the tabled parameter counts
(engine/costs.py): what is shared by every session (weights) and what each session adds (its resident
instruction and portrait tensors and its share of the per-chunk I/O buffers). Activation scratch is per engine,
not per session, and is known only once TensorRT has built the engines (`engine.device_memory_size`): it is
reported from the engines when a folder of them is given, else left out and said so.

    python -m instructavatar.export.memory --config paper --precision fp16 --sessions 1,2,4
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from ..engine.config import ModelConfig, get_config
from ..engine.costs import component_costs
from .specs import runtime_specs

BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1, "fp8": 1}
WEIGHT_PARTS = {  # component tabled in engine/costs.py -> the runtime component holding its weights
    "text_encoder": "text_encoder", "denoiser": "denoiser", "audio_encoder": "audio_encoder",
    "vae.appearance_encoder": "appearance_encoder", "vae.keyframe_encoder": "keyframe_encoder",
    "vae.decoder": "decoder"}
FP32_PARTS = ("text_encoder", "keyframe_encoder")      # kept fp32 in the TensorRT build (export/trt_build.py)


@dataclass(frozen=True)
class MemoryEstimate:
    weights_mib: float                  # shared by all sessions
    per_session_mib: float              # resident instruction + portrait tensors and per-chunk I/O, one session
    parts: dict[str, float]             # MiB per named part (per session ones marked "session:")

    def total_mib(self, sessions: int) -> float:
        return self.weights_mib + sessions * self.per_session_mib


def _numel(spec_tensor, sizes: dict[str, int]) -> int:
    n = 1
    for d in spec_tensor.concrete(sizes):
        n *= d
    return n


def estimate(cfg: ModelConfig, precision: str = "fp16", guided: bool = True) -> MemoryEstimate:
    """Weights (the precision's bytes; fp32 parts at 4) and one session's device buffers (fp32 I/O)."""
    if precision not in BYTES:
        raise ValueError(f"precision must be one of {', '.join(BYTES)}, got {precision!r}")
    mib = 1 / 2**20
    costs, _ = component_costs(cfg)
    parts: dict[str, float] = {}
    for c in costs:
        comp = WEIGHT_PARTS.get(c.name)
        if comp is None:
            continue
        b = 4 if comp in FP32_PARTS else BYTES[precision]
        parts[f"weights:{comp}"] = c.params * b * mib
    specs = runtime_specs(cfg)
    C, W = cfg.stream.chunk_frames, cfg.stream.window_frames
    rows = 2 if guided else 1                      # the instructed row and the default instruction's
    per = {"T": W, "N": cfg.text.context, "B": 1, "R": rows, "F": C}
    den, cond, dec = specs["denoiser"], specs["condition"], specs["decoder"]
    inst = sum(_numel(t, {**per, "B": 1}) for t in cond.outputs) * 4 * rows      # const, keys, values
    parts["session:instruction tensors"] = inst * mib
    parts["session:portrait (appearance latent)"] = _numel(specs["appearance_encoder"].outputs[0], per) * 4 * mib
    loop = sum(_numel(t, per) for t in den.inputs if t.name not in ("const", "keys", "values")) * 4
    loop += 4 * _numel(den.outputs[0], per) * 4                                  # x ping-pong, rows, out
    loop += cfg.diffusion.sample_steps * W * cfg.motion_dim * 4                 # per-step noise (eta > 0)
    parts["session:denoising loop buffers"] = loop * mib
    parts["session:decoder I/O (one chunk)"] = sum(_numel(t, per) for t in dec.inputs + dec.outputs) * 4 * mib
    weights = sum(v for k, v in parts.items() if k.startswith("weights:"))
    session = sum(v for k, v in parts.items() if k.startswith("session:"))
    return MemoryEstimate(weights, session, parts)


def engine_scratch_mib(engines: dict) -> float:
    """Activation scratch of built engines (TrtEngine objects), MiB: shared by sessions, one per engine."""
    return sum(e.scratch.nbytes for e in engines.values()) / 2**20


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="device memory of a deployment, from the export specs")
    ap.add_argument("--config", default="paper")
    ap.add_argument("--precision", default="fp16", choices=tuple(BYTES))
    ap.add_argument("--sessions", default="1,2,4,8")
    ap.add_argument("--no-guidance", action="store_true", help="one denoiser row per session instead of two")
    args = ap.parse_args(argv)
    est = estimate(get_config(args.config), args.precision, guided=not args.no_guidance)
    print(f"{args.config}, {args.precision} weights (text encoder and keyframe encoder fp32), I/O fp32:")
    for k, v in est.parts.items():
        print(f"  {k:<45}{v:>10.1f} MiB")
    print(f"  {'weights (shared)':<45}{est.weights_mib:>10.1f} MiB")
    print(f"  {'per session':<45}{est.per_session_mib:>10.1f} MiB")
    for n in (int(s) for s in args.sessions.split(",")):
        print(f"  {n} session(s): {est.total_mib(n):.0f} MiB + the engines' activation scratch (shared; printed "
              "by the TensorRT backend once built)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
