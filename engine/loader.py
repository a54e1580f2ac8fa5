"""Build a ready pipeline by name: config + weights + backend + tokenizer.

The shipped files are found through the installed `instructavatar` package (instructavatar/assets/), so a
wheel install finds them as an editable checkout does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import instructavatar

from .backend import BackendError, resolve_backend
from .config import ModelConfig, get_config
from .pipeline import Pipeline
from .tokenizer import build_tokenizer

ASSETS = Path(instructavatar.__file__).resolve().parent / "assets"
DEMO_WEIGHTS = ASSETS / "demo" / "demo.safetensors"
DEMO_ONNX = ASSETS / "demo" / "onnx"          # made by `instructavatar export --config demo --format onnx`


class MissingWeightsError(FileNotFoundError):
    pass


def default_weights(cfg: ModelConfig) -> Path | None:
    return DEMO_WEIGHTS if cfg.name == "demo" and DEMO_WEIGHTS.is_file() else None


def default_onnx_dir(cfg: ModelConfig, weights: Path | None) -> Path | None:
    """The shipped export of the demo checkpoint (only for the shipped weights)."""
    if cfg.name != "demo" or (DEMO_ONNX / "manifest.json").is_file() is False:
        return None
    return DEMO_ONNX if weights is None or Path(weights).resolve() == DEMO_WEIGHTS.resolve() else None


def _weights_path(cfg: ModelConfig, weights, random_weights: bool) -> Path | None:
    path = Path(weights) if weights else (None if random_weights else default_weights(cfg))
    if path is None and not random_weights:
        raise MissingWeightsError(
            f"no weights for config {cfg.name!r}: pass --weights FILE, or --random-weights to run with "
            "random weights (output will be noise-like)")
    return path


def build_model(cfg: ModelConfig, weights: str | Path | None = None, random_weights: bool = False,
                clip_weights: str | Path | None = None, seed: int = 0):
    """InstructAvatar with weights loaded strictly (or random ones, only when asked for explicitly)."""
    import torch

    from .modules.model import InstructAvatar
    from .modules.weights import load_checkpoint

    path = Path(weights) if weights else (None if random_weights else default_weights(cfg))
    if path is None and not random_weights:
        raise MissingWeightsError(
            f"no weights for config {cfg.name!r}: pass --weights FILE, or --random-weights to run with "
            "random weights (output will be noise-like)")
    if path is not None and not path.is_file():
        from .modules.weights import WeightsError

        raise WeightsError(f"weights file not found: {path}")
    torch.manual_seed(seed)
    model = InstructAvatar(cfg, pretrained_text=(cfg.text.kind == "minilm"))
    if path is not None:
        load_checkpoint(model, path)
    if cfg.text.kind == "clip" and clip_weights:
        from .modules.text_encoder import load_clip_text_weights

        load_clip_text_weights(model.text_encoder, clip_weights)
    return model.eval()


def load_pipeline(config: str | ModelConfig = "demo", weights: str | Path | None = None,
                  random_weights: bool = False, backend: str = "auto", steps: int | None = None,
                  eta: float | None = None, device: str = "cpu", threads: int | None = None,
                  clip_weights: str | Path | None = None, seed: int = 0, announce=None,
                  guidance: float | None = None, onnx_dir: str | Path | None = None, precision: str | None = None,
                  cuda_graphs: bool | None = None, compile: bool = False) -> Pipeline:
    """`backend`: ort (ONNX Runtime over an export folder: `onnx_dir`, or the shipped demo export; imports no
    torch), torch (eager), torch-cuda (torch on `device` cuda: `precision` fp32|fp16|bf16, default bf16, the
    chunk loop and decoder as CUDA graphs unless `cuda_graphs` is False, torch.compile if `compile`), trt
    (TensorRT engines in `onnx_dir`/trt: export --format trt), or auto (the fastest present that can run this
    model, announced on stderr; docs/gpu.md)."""
    cfg = get_config(config) if isinstance(config, str) else config
    say = announce or (lambda m: print(m, file=sys.stderr))
    folder = Path(onnx_dir) if onnx_dir else None
    if folder is None and not random_weights:
        folder = default_onnx_dir(cfg, _weights_path(cfg, weights, random_weights))
    ort_usable = folder is not None and not (random_weights and not weights)
    trt_usable = folder is not None and (folder / "trt").is_dir()
    name = resolve_backend(backend, usable=lambda n: (n != "ort" or ort_usable) and (n != "trt" or trt_usable))
    pipeline = _named_pipeline(name, cfg, weights, random_weights, folder, steps, eta, device, threads, guidance,
                               precision, clip_weights, seed, say, cuda_graphs, compile)
    if backend == "auto":                      # announced once the pipeline stands (a load error stays one line)
        why = {"ort": f"ONNX Runtime over {folder}", "trt": f"TensorRT engines in {folder}/trt",
               "torch-cuda": "an NVIDIA GPU is present"}.get(name, "no ONNX export for this model here")
        say(f"backend: {name} (auto: the fastest present; {why})")
    return pipeline


def _named_pipeline(name: str, cfg: ModelConfig, weights, random_weights: bool, folder: Path | None, steps, eta,
                    device: str, threads, guidance, precision, clip_weights, seed: int, say, cuda_graphs,
                    compile: bool) -> Pipeline:
    if name == "ort":
        return _ort_pipeline(cfg, weights, random_weights, folder, steps, eta, device, threads, guidance, precision)
    if name == "trt":
        from .trt_backend import load_trt_backend

        if folder is None:
            raise BackendError(f"--backend trt needs an export folder with engines: instructavatar export --config "
                               f"{cfg.name} --format trt --precision fp16 --feed-weights no --out DIR")
        return Pipeline(cfg, load_trt_backend(folder, cfg, precision or "fp16"), build_tokenizer(cfg.text),
                        steps=steps, eta=eta, guidance=guidance)
    if precision == "int8":                    # the torch backends check their own precisions (fp32/fp16/bf16)
        raise BackendError(f"--backend {name} runs fp32, fp16 or bf16 weights, not int8 (int8: --backend ort, "
                           "the export's int8 graphs)")
    model = build_model(cfg, weights, random_weights, clip_weights, seed)
    if random_weights and not weights:
        say(f"*** RANDOM WEIGHTS: config {cfg.name!r} is running untrained; the video will not follow "
            "the audio or the instruction ***")
    from .modules.torch_backend import TorchBackend

    options = {"precision": precision or "fp32", "cuda_graphs": bool(cuda_graphs), "compile": compile}
    if name == "torch-cuda":
        device = "cuda" if device == "cpu" else device
        options.update(precision=precision or "bf16", cuda_graphs=cuda_graphs is not False)
    return Pipeline(cfg, TorchBackend(model, device=device, threads=threads, **options), build_tokenizer(cfg.text),
                    steps=steps, eta=eta, guidance=guidance)


def _ort_pipeline(cfg: ModelConfig, weights, random_weights: bool, folder: Path | None, steps, eta, device: str,
                  threads, guidance, precision: str | None = None) -> Pipeline:
    """The ONNX Runtime pipeline: torch is never imported. `precision` int8: the components with an int8 graph
    in the folder run it (the shipped demo: the decoder)."""
    from .backend import BackendError
    from .ort_backend import OrtBackend, available_providers

    if random_weights and not weights:
        raise BackendError("--random-weights runs eager torch: use --backend torch (ORT runs exported graphs)")
    if folder is None:
        raise BackendError(f"no ONNX export for config {cfg.name!r} with these weights: make one with "
                           f"`instructavatar export --config {cfg.name} --format onnx --out DIR` and pass it, "
                           "or use --backend torch")
    path = _weights_path(cfg, weights, random_weights)
    if path is not None and not path.is_file():
        raise MissingWeightsError(f"weights file not found: {path}")
    from .ort_install import onnxruntime_conflict

    conflict = onnxruntime_conflict()                  # onnxruntime and onnxruntime-gpu side by side
    if conflict is not None:
        raise BackendError(conflict)
    providers = None
    if device != "cpu":
        have = available_providers()
        if "CUDAExecutionProvider" not in have:
            raise BackendError(f"--device {device} with --backend ort needs onnxruntime-gpu (providers here: "
                               f"{', '.join(have)})")
        providers = [p for p in have if p != "CPUExecutionProvider"] + ["CPUExecutionProvider"]
    if precision not in (None, "fp32", "int8"):
        raise BackendError(f"--backend ort runs fp32 or int8 graphs, not {precision!r}")
    backend = OrtBackend(folder, cfg, weights=path, threads=threads, providers=providers, precision=precision or "fp32")
    return Pipeline(cfg, backend, build_tokenizer(cfg.text), steps=steps, eta=eta, guidance=guidance)
