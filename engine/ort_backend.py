"""`OrtBackend`: the `Backend` interface (engine/backend.py) on ONNX Runtime, torch-free (numpy only).

Reads an export folder (export/onnx_export.py: one graph per component of export/specs.py + manifest.json),
checks the manifest against the config and weights (engine/onnx_manifest.py), feeds the graphs' "fed"
initializers from the checkpoint and the MiniLM package at load time (SessionOptions.add_external_initializers),
and runs one InferenceSession per component.

Session options are chosen for latency (`session_options`): sequential execution, `threads` intra-op threads
(inter-op 1), graph optimisation level ALL, the CPU memory arena and memory patterns on (the pipeline's shapes
repeat chunk after chunk), and no spinning: each component has its own session and thread pool, and a pool
that spins after its run (ORT's default) holds the cores the next component's pool needs (on 2 cores with 2
threads the streaming chunk loop ran 1.8x faster at chunk 4 without it; benchmarks/RESULTS.md). Execution
providers: TensorRT, CUDA, then CPU, in that order where the installed onnxruntime has them (`providers=`
overrides).

Inputs are checked against the contract before ORT sees them: a wrong dtype, rank or size is a one-line
`OrtInputError` naming the graph file and the expected shape, never an ORT crash. Per-instruction tensors are
`InstructionTensors` of numpy arrays (on the CPU provider a numpy array is the resident form).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .backend import BackendError, InstructionTensors
from .config import ModelConfig
from .onnx_manifest import ExportMismatchError, check_manifest, component_entry, fed_initializers, file_sha256


class OrtInputError(ValueError):
    """An input that does not fit a graph's contract (one line: file, input, expected, got)."""


PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def available_providers() -> list[str]:
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    return [p for p in PREFERRED_PROVIDERS if p in have]


def _load_sources(manifest: dict, folder: Path, weights: Path | None) -> dict[str, dict[str, np.ndarray]]:
    """The tensors the manifest's fed initializers come from, after checking each file's sha256."""
    from safetensors.numpy import load_file

    where = folder / "manifest.json"
    out = {}
    for src, info in manifest.get("fed_sources", {}).items():
        if src == "weights":
            if weights is None:
                raise ExportMismatchError(f"{where}: the graphs read their weights from {info['file']}; pass "
                                          "--weights FILE")
            path = weights
        elif src == "minilm":
            from .tokenizer import minilm_model_dir

            path = minilm_model_dir() / "model.safetensors"
        else:
            raise ExportMismatchError(f"{where}: unknown weights source {src!r}")
        if not Path(path).is_file():
            raise ExportMismatchError(f"{path}: missing (the graphs in {folder} read their weights from it)")
        if file_sha256(path) != info["sha256"]:
            raise ExportMismatchError(f"{path}: sha256 differs from the one {where} was exported with "
                                      f"({info['sha256'][:12]}); re-export")
        out[src] = load_file(str(path))
    return out


def session_options(threads: int | None = None, spin: bool = False):
    """The SessionOptions every ORT session of the engine uses (see the module docstring). `threads` None or 0:
    ORT's default (one per core). `spin` True keeps ORT's spinning pool threads (lower latency for a single
    session that runs back to back, at the cost of cores held idle)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = int(threads or 0)
    opts.inter_op_num_threads = 1
    opts.enable_cpu_mem_arena = True
    opts.enable_mem_pattern = True
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin else "0")
    return opts


class OrtBackend:
    """ONNX Runtime over an export folder. `components` defaults to the runtime ones in the manifest."""

    name = "ort"

    def __init__(self, folder: str | Path, cfg: ModelConfig, weights: str | Path | None = None,
                 threads: int | None = None, providers: list[str] | None = None, verify_files: bool = True,
                 components: list[str] | None = None, precision: str = "fp32", spin: bool = False):
        import onnxruntime as ort

        from ..export.specs import component_specs

        self.cfg = cfg
        self.folder = Path(folder)
        self.specs = component_specs(cfg)
        required = components or [n for n, s in self.specs.items() if s.runtime]
        weights = Path(weights) if weights else None
        self.manifest = check_manifest(self.folder, cfg, weights, required, precision=precision,
                                       verify_files=verify_files)
        self.precision = precision          # "int8": the components that have an int8 graph run it
        sources = _load_sources(self.manifest, self.folder, weights)
        self.providers = providers or available_providers()
        self.threads = threads
        self.sessions: dict[str, ort.InferenceSession] = {}
        self._fed_keepalive: list = []          # ORT reads fed initializers in place: keep them alive
        names = [n for n in self.specs
                 if n in self.manifest["components"] and (components is None or n in components)]
        for name in names:
            entry = component_entry(self.manifest, name, precision)
            opts = session_options(threads, spin)
            fed = fed_initializers(self.manifest, name, sources, self.folder / "manifest.json", precision)
            if fed:
                values = [ort.OrtValue.ortvalue_from_numpy(v) for v in fed.values()]
                opts.add_external_initializers(list(fed), values)
                self._fed_keepalive += [fed, values]
            path = self.folder / entry["file"]
            try:
                self.sessions[name] = ort.InferenceSession(str(path), opts, providers=self.providers)
            except Exception as e:  # noqa: BLE001 - ORT raises several types; one line for the user
                raise ExportMismatchError(f"{path}: ONNX Runtime cannot load it "
                                          f"({str(e).splitlines()[0][:160]}); re-export") from None

    # -- checked runs ---------------------------------------------------------------------------------
    def run(self, name: str, **feeds: np.ndarray) -> list[np.ndarray]:
        """Run component `name` with inputs checked against its spec; outputs in spec order."""
        spec = self.specs[name]
        if name not in self.sessions:
            raise BackendError(f"{self.folder / spec.file}: component {name!r} was not exported to this folder")
        file = self.folder / spec.file
        sizes: dict[str, int] = {}
        clean = {}
        for t in spec.inputs:
            if t.name not in feeds:
                raise OrtInputError(f"{file}: missing input {t.describe()}")
            a = np.asarray(feeds[t.name])
            if a.dtype != np.dtype(t.dtype):
                if t.dtype == "float32" and a.dtype.kind == "f" or t.dtype == "int64" and a.dtype.kind in "iu":
                    a = a.astype(t.dtype)
                else:
                    raise OrtInputError(f"{file}: input {t.name} must be {t.dtype}, got {a.dtype}")
            if a.ndim != len(t.shape):
                raise OrtInputError(f"{file}: input {t.name} expected {t.describe()}, got shape {a.shape}")
            for i, (want, got) in enumerate(zip(t.shape, a.shape)):
                if isinstance(want, int):
                    ok = want == got
                else:
                    ok = sizes.setdefault(want, got) == got and got >= 1
                if not ok:
                    raise OrtInputError(f"{file}: input {t.name} expected {t.describe()} with "
                                        f"{', '.join(f'{k}={v}' for k, v in sizes.items())}, got shape {a.shape} "
                                        f"(axis {i})")
            clean[t.name] = np.ascontiguousarray(a)
        if "S" in sizes and "T" in sizes and sizes["S"] != sizes["T"] * spec.samples_per_frame:
            raise OrtInputError(f"{file}: wave has {sizes['S']} samples, expected T * {spec.samples_per_frame} = "
                                f"{sizes['T'] * spec.samples_per_frame} for T={sizes['T']}")
        session = self.sessions[name]
        used = {i.name for i in session.get_inputs()}          # an exporter may drop an input the graph ignores
        return session.run(None, {k: v for k, v in clean.items() if k in used})

    # -- the Backend interface ------------------------------------------------------------------------
    def encode_appearance(self, image):
        return self.run("appearance_encoder", image=image)[0]

    def encode_keyframe(self, image):
        return self.run("keyframe_encoder", image=image)[0]

    def encode_motion(self, landmarks):
        key = "points" if self.cfg.vae.landmark_points else "landmarks"
        return self.run("motion_encoder", **{key: landmarks})[0]

    def encode_text(self, ids, mask):
        tokens, pooled = self.run("text_encoder", ids=ids, mask=mask)
        return tokens, pooled

    def condition(self, tokens, mask, pooled, keyframe):
        const, keys, values = self.run("condition", tokens=tokens, pooled=pooled, keyframe=keyframe)
        return InstructionTensors(const=const, keys=keys, values=values, mask=np.asarray(mask, np.float32))

    def stack_instructions(self, items: list[InstructionTensors]) -> InstructionTensors:
        return InstructionTensors.stack(items)

    def encode_audio(self, wave, blink=None):
        if self.cfg.audio.blink_cue:
            wave = np.asarray(wave, np.float32)
            if blink is None:
                blink = np.zeros((wave.shape[0], wave.shape[-1] // self.cfg.media.samples_per_frame), np.float32)
            return self.run("audio_encoder", wave=wave, blink=blink)[0]
        return self.run("audio_encoder", wave=wave)[0]

    def denoise(self, x_t, t, audio, known, inst):
        return self.run("denoiser", x_t=x_t, t=t, audio=audio, known=known, const=inst.const, keys=inst.keys,
                        values=inst.values, mask=inst.mask)[0]

    def decode(self, motion, appearance):
        return self.run("decoder", motion=motion, appearance=appearance)[0]
