"""The export contract: one frozen spec per exported component, read by the exporter, the runtimes and the tests.

Each `ComponentSpec` names the ONNX file, the torch entry point that is traced (a small wrapper module with
fixed inputs and outputs: the VAE has entry methods and no `forward`), every input and output with its dtype
and shape (symbolic axes by name), and the size range of each symbolic axis (`AxisRange`: TensorRT's
min/opt/max optimisation profile, the exporter's example size, and the sizes the parity tests run).
All sizes derive from a `ModelConfig`; nothing here is per backend.

This module imports no torch at module level: the ONNX Runtime backend reads the same specs torch-free.
`build_wrapper(spec, model)` (torch) returns the module to trace.

Axes (names used in shapes):
  B  sessions (rows) in a batch; the denoiser's rows include guidance's second row per guided session
  T  window frames (prefix + chunk; a flush or a first chunk is shorter)
  S  audio samples = T * samples_per_frame (the audio encoder's input)
  N  instruction tokens
  F  frames in one decoder batch
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from ..engine.config import ModelConfig

MAX_SESSIONS = 8            # TensorRT profile max for per-session inputs (guided denoiser rows: 2x this)
OPSET = 18                  # >= 17; 18 is the dynamo exporter's native opset here


@dataclass(frozen=True)
class AxisRange:
    """One symbolic axis: TensorRT profile min/opt/max, the export example size, and the test sizes."""

    name: str
    min: int
    opt: int
    max: int
    example: int            # size used to trace (>= 2 where the axis is dynamic, so nothing specialises to 1)
    test_sizes: tuple[int, ...]

    def __post_init__(self):
        if not (1 <= self.min <= self.opt <= self.max and self.min <= self.example <= self.max):
            raise ValueError(f"axis {self.name}: need 1 <= min <= opt <= max and example within, got {self}")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str                          # numpy dtype name: "float32" or "int64"
    shape: tuple[int | str, ...]        # ints are fixed; strings name an axis (or "S" = samples)

    def concrete(self, sizes: dict[str, int]) -> tuple[int, ...]:
        return tuple(d if isinstance(d, int) else sizes[d] for d in self.shape)

    def describe(self) -> str:
        return f"{self.name} {self.dtype} ({', '.join(str(d) for d in self.shape)})"


@dataclass(frozen=True)
class ComponentSpec:
    name: str                           # also the ONNX file stem: <name>.onnx
    entry: str                          # what is traced, for the docs (module.method)
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    axes: dict[str, AxisRange] = field(hash=False, compare=False)
    samples_per_frame: int = 640
    runtime: bool = True                # used by the inference pipeline (False: training-only component)

    @property
    def file(self) -> str:
        return f"{self.name}.onnx"

    def sizes(self, **given: int) -> dict[str, int]:
        """Concrete sizes of every axis (example sizes where not given); S follows T."""
        out = {k: given.get(k, a.example) for k, a in self.axes.items()}
        if "T" in out:
            out["S"] = out["T"] * self.samples_per_frame
        return out

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """torch.onnx-style {tensor: {axis index: axis name}} for every input and output."""
        return {t.name: {i: d for i, d in enumerate(t.shape) if isinstance(d, str)}
                for t in self.inputs + self.outputs}

    def profile(self, which: str) -> dict[str, tuple[int, ...]]:
        """TensorRT optimisation profile shapes for `which` in min/opt/max, per input."""
        sizes = {k: getattr(a, which) for k, a in self.axes.items()}
        if "T" in sizes:
            sizes["S"] = sizes["T"] * self.samples_per_frame
        return {t.name: t.concrete(sizes) for t in self.inputs}


def _axes(cfg: ModelConfig, decode_batch: int = 16) -> dict[str, AxisRange]:
    window, chunk = cfg.stream.window_frames, cfg.stream.chunk_frames
    n = cfg.text.context
    return {
        "B": AxisRange("B", 1, 2, MAX_SESSIONS, example=2, test_sizes=(1, 3)),
        "R": AxisRange("R", 1, 2, 2 * MAX_SESSIONS, example=2, test_sizes=(1, 3)),       # denoiser rows
        "T": AxisRange("T", 1, window, window, example=max(3, chunk // 2),
                       test_sizes=(2, window)),
        "N": AxisRange("N", 1, n, n, example=min(n, 7), test_sizes=(3, n)),
        "F": AxisRange("F", 1, min(chunk, decode_batch), decode_batch, example=3, test_sizes=(1, 4)),
    }


def component_specs(cfg: ModelConfig, decode_batch: int = 16) -> dict[str, ComponentSpec]:
    """Every exported component of `cfg`, by name (runtime ones first, in pipeline order)."""
    ax = _axes(cfg, decode_batch)
    S = cfg.media.image_size
    M, Dt = cfg.motion_dim, cfg.text.width
    D, L = cfg.denoiser.conformer.d_model, cfg.denoiser.conformer.layers
    Ca = cfg.vae.appearance_channels
    a = S // cfg.vae.app_downsample
    spf = cfg.media.samples_per_frame
    f32, i64 = "float32", "int64"

    def spec(name, entry, inputs, outputs, axes, runtime=True):
        used = {d for t in inputs + outputs for d in t.shape if isinstance(d, str)} - {"S"}
        return ComponentSpec(name, entry, tuple(inputs), tuple(outputs), {k: ax[k] for k in axes if k in used},
                             samples_per_frame=spf, runtime=runtime)

    audio_in = [TensorSpec("wave", f32, ("B", "S"))]
    if cfg.audio.blink_cue:
        audio_in.append(TensorSpec("blink", f32, ("B", "T")))
    motion_in = (TensorSpec("points", f32, ("B", cfg.vae.landmark_points, 2)) if cfg.vae.landmark_points else
                 TensorSpec("landmarks", f32, ("B", 3, cfg.vae.landmark_size, cfg.vae.landmark_size)))
    specs = [
        spec("text_encoder", "text_encoder.forward",
             [TensorSpec("ids", i64, ("B", "N")), TensorSpec("mask", i64, ("B", "N"))],
             [TensorSpec("tokens", f32, ("B", "N", Dt)), TensorSpec("pooled", f32, ("B", Dt))], "BN"),
        spec("condition", "denoiser.condition",
             [TensorSpec("tokens", f32, ("B", "N", Dt)), TensorSpec("pooled", f32, ("B", Dt)),
              TensorSpec("keyframe", f32, ("B", M))],
             [TensorSpec("const", f32, ("B", L, D)), TensorSpec("keys", f32, ("B", L, "N", D)),
              TensorSpec("values", f32, ("B", L, "N", D))], "BN"),
        spec("audio_encoder", "audio_encoder.encode_with_blink" if cfg.audio.blink_cue else "audio_encoder.encode",
             audio_in, [TensorSpec("audio", f32, ("B", "T", D))], "BT"),
        spec("appearance_encoder", "vae.encode_appearance", [TensorSpec("image", f32, ("B", 3, S, S))],
             [TensorSpec("appearance", f32, ("B", Ca, a, a))], "B"),
        spec("keyframe_encoder", "vae.encode_keyframe", [TensorSpec("image", f32, ("B", 3, S, S))],
             [TensorSpec("keyframe", f32, ("B", M))], "B"),
        spec("denoiser", "denoiser.forward (one DDIM step's x0 prediction)",
             [TensorSpec("x_t", f32, ("R", "T", M)), TensorSpec("t", i64, ("R",)),
              TensorSpec("audio", f32, ("R", "T", D)), TensorSpec("known", f32, ("R", "T")),
              TensorSpec("const", f32, ("R", L, D)), TensorSpec("keys", f32, ("R", L, "N", D)),
              TensorSpec("values", f32, ("R", L, "N", D)), TensorSpec("mask", f32, ("R", "N"))],
             [TensorSpec("x0", f32, ("R", "T", M))], "RTN"),
        spec("decoder", "vae.decode",
             [TensorSpec("motion", f32, ("F", M)), TensorSpec("appearance", f32, ("F", Ca, a, a))],
             [TensorSpec("frames", f32, ("F", 3, S, S))], "F"),
        spec("motion_encoder", "vae.encode_motion", [motion_in], [TensorSpec("motion", f32, ("B", M))], "B",
             runtime=False),
    ]
    return {s.name: s for s in specs}


def runtime_specs(cfg: ModelConfig) -> dict[str, ComponentSpec]:
    """The components the inference pipeline runs (what the demo ships and the runtime requires)."""
    return {k: s for k, s in component_specs(cfg).items() if s.runtime}


# ---------------------------------------------------------------------------------------- torch wrappers

@cache
def _wrapper_classes() -> dict:
    """The modules that are traced, one per component (torch imported only here)."""
    from torch import nn

    class TextEncoderGraph(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.text_encoder = m.text_encoder

        def forward(self, ids, mask):
            return self.text_encoder(ids, mask)

    class ConditionGraph(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.denoiser = m.denoiser

        def forward(self, tokens, pooled, keyframe):
            return self.denoiser.condition(tokens, pooled, keyframe)

    class AudioEncoderGraph(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.audio_encoder = m.audio_encoder

        def forward(self, wave):
            return self.audio_encoder.encode(wave)

    class AudioBlinkEncoderGraph(AudioEncoderGraph):
        def forward(self, wave, blink):
            return self.audio_encoder.encode_with_blink(wave, blink)

    class AppearanceGraph(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.vae = m.vae

        def forward(self, image):
            return self.vae.encode_appearance(image)

    class KeyframeGraph(AppearanceGraph):
        def forward(self, image):
            return self.vae.encode_keyframe(image)

    class MotionGraph(AppearanceGraph):
        def forward(self, landmarks):
            return self.vae.encode_motion(landmarks)

    class DecoderGraph(AppearanceGraph):
        def forward(self, motion, appearance):
            return self.vae.decode(motion, appearance)

    class DenoiserGraph(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.denoiser = m.denoiser

        def forward(self, x_t, t, audio, known, const, keys, values, mask):
            return self.denoiser(x_t, t, audio, known, const, keys, values, mask)

    return {"text_encoder": TextEncoderGraph, "condition": ConditionGraph, "audio_encoder": AudioEncoderGraph,
            "audio_encoder+blink": AudioBlinkEncoderGraph, "appearance_encoder": AppearanceGraph,
            "keyframe_encoder": KeyframeGraph, "motion_encoder": MotionGraph, "decoder": DecoderGraph,
            "denoiser": DenoiserGraph}


def build_wrapper(spec: ComponentSpec, model):
    """The eval-mode module to trace for `spec` from an `InstructAvatar` (its inputs are spec.inputs, in order)."""
    key = spec.name + ("+blink" if spec.name == "audio_encoder" and len(spec.inputs) == 2 else "")
    return _wrapper_classes()[key](model).eval()


def example_inputs(spec: ComponentSpec, seed: int = 0, **sizes: int) -> dict:
    """Numpy inputs for `spec` at the given axis sizes (example sizes by default): valid ranges per input
    (token ids within the vocabulary, a mask with one real token at least, timesteps within the schedule)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    concrete = spec.sizes(**sizes)
    out = {}
    for t in spec.inputs:
        shape = t.concrete(concrete)
        if t.name == "ids":
            out[t.name] = rng.integers(1, 1000, shape).astype(np.int64)
        elif t.name == "t":
            out[t.name] = rng.integers(0, 1000, shape).astype(np.int64)
        elif t.name == "mask":
            m = (rng.random(shape) < 0.7)
            m[..., 0] = True
            out[t.name] = m.astype(t.dtype)
        elif t.name in ("known", "blink"):
            out[t.name] = (rng.random(shape) < 0.4).astype(np.float32)
        elif t.name in ("image", "landmarks", "points"):
            out[t.name] = rng.uniform(-1, 1, shape).astype(np.float32)
        elif t.name == "wave":
            out[t.name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            out[t.name] = rng.standard_normal(shape).astype(np.float32)
    return out
