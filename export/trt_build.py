"""TensorRT engines from the ONNX export: build choices, the engine cache and its keys, the builder.

Read with export/specs.py (the contract) and engine/trt_backend.py (the runtime). Nothing here imports tensorrt
at module level: the build choices, profiles and cache keys are plain data, tested on a machine without a GPU.

What the peers taught (docs/gpu.md, "TensorRT"):
  - FasterLivePortrait builds one engine per component and keeps whole sensitive components in fp32
    (`-p fp32` for its motion extractor), but its builder uses TensorRT 8 calls removed in 10 (workspace size,
    STRICT_TYPES, build_engine) and loads a 3-D grid-sample plugin from a fixed path: engines and scripts pinned
    to one TensorRT, and the plugin load is what its users hit first. Ditto shells out to polygraphy with
    `--fp16`, a hardware-compatibility level and the same plugin.
  - Here: TensorRT 10 API only; our warp is a 2-D GridSample (ONNX opset >= 16), which TensorRT parses into its
    native IGridSampleLayer, so no plugin is needed or loaded; fp16 by default with the numerically delicate
    layers pinned to fp32 (normalisation, softmax, reductions, grid sample) and the once-per-instruction
    components (text encoder, conditioning) and the keyframe encoder (its output is a conditioning signal)
    kept wholly fp32; INT8/FP8 only when asked, and only behind a quality gate (`quality_gate`).
  - The cache key holds the GPU name and compute capability, the TensorRT version, the profile, the precision
    choices and the ONNX file's sha256: an engine from another TensorRT, GPU generation or graph is rebuilt,
    never deserialised (a foreign plan would fail or, worse, load).
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from ..engine.config import ModelConfig
from .specs import ComponentSpec, runtime_specs

PRECISIONS = ("fp32", "fp16", "int8", "fp8")
FP32_COMPONENTS = ("text_encoder", "condition", "keyframe_encoder")   # once per instruction/portrait: exactness
FP32_LAYER_TYPES = ("NORMALIZATION", "SOFTMAX", "REDUCE", "GRID_SAMPLE")  # trt.LayerType names kept in fp32
QUANTIZABLE = ("decoder",)                 # INT8/FP8 candidates (the decoder is > 99% of a chunk's FLOPs)
CACHE_VERSION = 1


class TrtUnavailable(RuntimeError):
    """TensorRT or the CUDA Python bindings are missing or too old (one-line message with the install)."""


class TrtBuildError(RuntimeError):
    """A graph TensorRT could not parse or build (one line naming the file and the first parser error)."""


def import_tensorrt():
    """The tensorrt module (>= 10), or TrtUnavailable saying how to get it."""
    try:
        import tensorrt as trt
    except ImportError:
        raise TrtUnavailable("TensorRT is not installed: pip install 'tensorrt>=10' (a CUDA GPU and driver are "
                             "needed; docs/gpu.md)") from None
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise TrtUnavailable(f"TensorRT {trt.__version__} is too old: this engine needs tensorrt>=10 "
                             "(pip install -U 'tensorrt>=10')")
    return trt


@dataclass(frozen=True)
class DeviceInfo:
    name: str                       # e.g. "NVIDIA H200"
    compute_capability: tuple[int, int]

    def describe(self) -> str:
        return f"{self.name} (sm_{self.compute_capability[0]}{self.compute_capability[1]})"


@dataclass(frozen=True)
class BuildChoice:
    """How one component's engine is built (all of it goes into the cache key)."""

    component: str
    precision: str                              # the engine's precision: fp32 | fp16 | int8 | fp8
    fp32_layers: tuple[str, ...]                # trt.LayerType names pinned to fp32 (empty when precision fp32)
    profile: dict[str, dict[str, tuple[int, ...]]]   # input -> {"min"|"opt"|"max": shape}
    optimization_level: int = 3                 # builder optimisation level (TensorRT default 3; 5 = slowest build)
    workspace_mib: int = 4096


def profile_of(spec: ComponentSpec) -> dict[str, dict[str, tuple[int, ...]]]:
    """The TensorRT optimisation profile of a component, from its spec: input -> {min, opt, max} shapes."""
    per = {which: spec.profile(which) for which in ("min", "opt", "max")}
    return {t.name: {which: per[which][t.name] for which in per} for t in spec.inputs}


def build_choices(cfg: ModelConfig, precision: str = "fp16", components: list[str] | None = None,
                  optimization_level: int = 3) -> dict[str, BuildChoice]:
    """One `BuildChoice` per runtime component for a requested precision (fp16 default)."""
    if precision not in PRECISIONS:
        raise ValueError(f"TensorRT precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    specs = runtime_specs(cfg)
    names = list(specs) if components is None else components
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise ValueError(f"unknown components {unknown}; the runtime components are {list(specs)}")
    out = {}
    for name in names:
        if precision == "fp32" or name in FP32_COMPONENTS:
            p = "fp32"
        elif precision in ("int8", "fp8") and name not in QUANTIZABLE:
            p = "fp16"                          # quantize only where it pays; the rest stays fp16
        else:
            p = precision
        out[name] = BuildChoice(name, p, () if p == "fp32" else FP32_LAYER_TYPES, profile_of(specs[name]),
                                optimization_level=optimization_level)
    return out


def ddim_step_choices(cfg: ModelConfig) -> dict[str, BuildChoice]:
    """The DDIM step graphs (export/ddim_graph.py), fp32 (a handful of element-wise ops: exactness is free)."""
    specs = runtime_specs(cfg)
    b, r, t = specs["audio_encoder"].axes["B"], specs["denoiser"].axes["R"], specs["denoiser"].axes["T"]
    M = cfg.motion_dim
    out = {}
    for guided in (False, True):
        sizes = {w: {"B": getattr(b, w), "R": getattr(r, w), "T": getattr(t, w),
                     "G": 1 if w != "max" else b.max} for w in ("min", "opt", "max")}
        shape = {"x": ("B", "T", M), "out": ("R", "T", M), "noise": ("B", "T", M), "coef": (5,),
                 "prefix": ("B", "T", M), "known": ("B", "T", 1), "rows": ("R",)}
        if guided:
            shape.update(guided=("G",), guidance=(1,))
        profile = {n: {w: tuple(sizes[w][d] if isinstance(d, str) else d for d in dims) for w in sizes}
                   for n, dims in shape.items()}
        name = "ddim_step_guided" if guided else "ddim_step"
        out[name] = BuildChoice(name, "fp32", (), profile)
    return out


def engine_key(choice: BuildChoice, onnx_sha256: str, device: DeviceInfo, trt_version: str) -> str:
    """sha256 over everything an engine depends on; a change of any part means a rebuild."""
    blob = json.dumps({"cache": CACHE_VERSION, "choice": asdict(choice), "onnx": onnx_sha256,
                       "gpu": device.name, "sm": list(device.compute_capability), "tensorrt": trt_version},
                      sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()


def engine_path(cache_dir: str | Path, choice: BuildChoice, key: str) -> Path:
    return Path(cache_dir) / f"{choice.component}-{choice.precision}-{key[:16]}.plan"


def quality_gate(reference_psnr_db: float, candidate_psnr_db: float, max_drop_db: float = 0.5) -> None:
    """INT8/FP8 engines ship only if their PSNR (against the same ground truth as the fp16 engine) drops by at
    most `max_drop_db` (the issue's 0.5 dB); raises ValueError otherwise."""
    drop = reference_psnr_db - candidate_psnr_db
    if drop > max_drop_db:
        raise ValueError(f"quantized engine fails the quality gate: PSNR {candidate_psnr_db:.2f} dB is "
                         f"{drop:.2f} dB below the reference {reference_psnr_db:.2f} dB (allowed {max_drop_db} dB)")


# ------------------------------------------------------------------------------------------ the builder

def current_device(cudart=None) -> DeviceInfo:
    """The GPU this process would build for (CUDA Python bindings)."""
    from ..engine.trt_backend import check_cuda, import_cudart

    cudart = cudart or import_cudart()
    props = check_cuda(cudart.cudaGetDeviceProperties(0), "cudaGetDeviceProperties")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return DeviceInfo(name.strip("\x00 "), (int(props.major), int(props.minor)))


def _pin_fp32_layers(trt, network, layer_types: tuple[str, ...]) -> int:
    """Pin every layer of the given types (and their outputs) to fp32; returns how many were pinned."""
    wanted = {getattr(trt.LayerType, n) for n in layer_types if hasattr(trt.LayerType, n)}
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in wanted:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                if layer.get_output(j).dtype in (trt.float32, trt.float16):
                    layer.set_output_type(j, trt.float32)
            pinned += 1
    return pinned


def build_engine(onnx_path: str | Path, choice: BuildChoice, calibrator=None, log=None) -> bytes:
    """Parse one ONNX file and build its serialised engine per `choice` (TensorRT 10 API)."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)                 # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):      # external data (> 2 GB) resolved next to the file
        first = parser.get_error(0) if parser.num_errors else "unknown error"
        raise TrtBuildError(f"{onnx_path}: TensorRT cannot parse it: {first}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, choice.workspace_mib << 20)
    config.builder_optimization_level = choice.optimization_level
    profile = builder.create_optimization_profile()
    for name, shapes in choice.profile.items():
        profile.set_shape(name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    if choice.precision != "fp32":
        config.set_flag(trt.BuilderFlag.FP16)
        pinned = _pin_fp32_layers(trt, network, choice.fp32_layers)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        if log:
            log(f"  {choice.component}: {pinned} layers pinned to fp32 ({', '.join(choice.fp32_layers)})")
    if choice.precision == "int8":
        if calibrator is None:
            raise TrtBuildError(f"{onnx_path}: int8 needs calibration data (world frames); none was given")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
    elif choice.precision == "fp8":
        config.set_flag(trt.BuilderFlag.FP8)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise TrtBuildError(f"{onnx_path}: TensorRT failed to build a {choice.precision} engine (see its log)")
    return bytes(plan)


def cached_engine(onnx_path: Path, onnx_sha256: str, choice: BuildChoice, cache_dir: Path, device: DeviceInfo,
                  log=None) -> Path:
    """The engine file for this graph, choice, GPU and TensorRT: from the cache, or built and stored."""
    trt = import_tensorrt()
    key = engine_key(choice, onnx_sha256, device, trt.__version__)
    path = engine_path(cache_dir, choice, key)
    if path.is_file():
        return path
    if log:
        log(f"building {choice.component} ({choice.precision}) for {device.describe()}, TensorRT {trt.__version__}")
    plan = build_engine(onnx_path, choice, log=log)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(plan)
    tmp.replace(path)                                   # atomic: two processes never read half a plan
    path.with_suffix(".json").write_text(json.dumps(
        {"component": choice.component, "precision": choice.precision, "onnx_sha256": onnx_sha256,
         "gpu": device.name, "sm": list(device.compute_capability), "tensorrt": trt.__version__,
         "profile": choice.profile, "fp32_layers": list(choice.fp32_layers)}, indent=1, default=list))
    return path


def build_folder(onnx_dir: str | Path, cfg: ModelConfig, precision: str = "fp16", cache_dir: str | Path | None = None,
                 components: list[str] | None = None, log=None) -> dict[str, Path]:
    """Engines for every runtime component of an ONNX export folder (checked against its manifest)."""
    from ..engine.onnx_manifest import ExportMismatchError, check_manifest

    onnx_dir = Path(onnx_dir)
    choices = build_choices(cfg, precision, components)
    manifest = check_manifest(onnx_dir, cfg, None, list(choices))
    fed = [n for n in choices if manifest["components"][n].get("fed")]
    if fed:
        raise ExportMismatchError(f"{onnx_dir}: {', '.join(fed)} store their weights by reference (fed at load); "
                                  "TensorRT needs whole graphs: export with --feed-weights no")
    device = current_device()
    cache_dir = Path(cache_dir) if cache_dir else onnx_dir / "trt"
    engines = {name: cached_engine(onnx_dir / manifest["components"][name]["file"],
                                   manifest["components"][name]["sha256"], choice, cache_dir, device, log)
               for name, choice in choices.items()}
    if components is None:                              # the device-resident chunk loop's step graphs
        from ..engine.onnx_manifest import file_sha256
        from .ddim_graph import write_ddim_step

        for name, choice in ddim_step_choices(cfg).items():
            path = write_ddim_step(cache_dir / "onnx", guided=name.endswith("guided"))
            engines[name] = cached_engine(path, file_sha256(path), choice, cache_dir, device, log)
    return engines


def main_from_args(args) -> int:
    """`instructavatar export --format trt`: export ONNX (whole graphs) to --out if needed, then build engines
    into --out/trt (cached by GPU, TensorRT version, profile and graph digest)."""
    from ..cli import UsageError
    from ..engine.config import get_config
    from ..engine.trt_backend import import_cudart

    cfg = get_config(args.config)
    try:
        import_tensorrt()
        import_cudart()
    except TrtUnavailable as e:
        raise UsageError(str(e)) from None
    precision = args.precision
    out = Path(args.out)
    say = lambda m: print(m, file=sys.stderr)  # noqa: E731
    if not (out / "manifest.json").is_file():
        from ..engine.loader import _weights_path, build_model
        from .onnx_export import export_onnx

        path = _weights_path(cfg, args.weights, args.random_weights)
        model = build_model(cfg, path, random_weights=path is None)
        say(f"exporting {cfg.name} ONNX (whole graphs, for TensorRT) to {out}")
        export_onnx(model, cfg, out, weights=path, feed_weights=False, check=not args.no_check, log=say)
    comps = args.components.split(",") if args.components else None
    engines = build_folder(out, cfg, precision, components=comps, log=say)
    for name, path in engines.items():
        say(f"  {name}: {path}")
    return 0
