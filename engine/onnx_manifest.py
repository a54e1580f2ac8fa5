"""The manifest of an ONNX export folder and its checks (torch-free: the ONNX Runtime backend reads it).

`manifest.json` (written by export/onnx_export.py) records the config (name and a digest of all its sizes),
the weights file's sha256, exporter and library versions, per-component files with their sha256, exporter,
inputs/outputs, and the "fed" initializers: tensors stored not in the graph but read at load time from the
checkpoint (`weights`) or the MiniLM package (`minilm`). `check_manifest` refuses, with one line naming the
file and what was expected, a folder from another config, weights or manifest version, a missing or altered
graph, or a missing weights source.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .config import ModelConfig

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
FED_LOCATION = "fed-at-load"     # external-data location of a fed initializer (never a real file)


class ExportMismatchError(RuntimeError):
    """An export folder that does not fit what the runtime was asked for (one-line message)."""


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def config_digest(cfg: ModelConfig) -> str:
    """sha256 of the config's sizes (extras excluded), so a folder from a changed config is refused."""
    d = asdict(cfg)
    d.pop("extras", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ExportMismatchError(f"{path}: missing; make the folder with `instructavatar export --format onnx`")
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ExportMismatchError(f"{path}: not a readable manifest ({e})") from None
    version = m.get("manifest_version") if isinstance(m, dict) else None
    if version != MANIFEST_VERSION:
        raise ExportMismatchError(f"{path}: manifest version {version}, expected {MANIFEST_VERSION}; re-export")
    return m


def check_manifest(folder: str | Path, cfg: ModelConfig, weights: str | Path | None, components: list[str],
                   precision: str | None = None, verify_files: bool = True) -> dict:
    """The folder's manifest, after checking it fits `cfg`, `weights` and holds `components` intact."""
    folder = Path(folder)
    m = read_manifest(folder)
    where = folder / MANIFEST
    if m.get("config") != cfg.name or m.get("config_digest") != config_digest(cfg):
        raise ExportMismatchError(f"{where}: exported for config {m.get('config')!r} "
                                  f"(digest {m.get('config_digest')}), expected {cfg.name!r} ({config_digest(cfg)})")
    if precision not in (None, "fp32") and not any(precision in c for c in m.get("components", {}).values()):
        raise ExportMismatchError(f"{where}: has no {precision} graphs (make them with `instructavatar export "
                                  f"--precision {precision}`)")
    want = m.get("weights")
    if weights is not None and want is not None:
        got = file_sha256(weights)
        if got != want.get("sha256"):
            raise ExportMismatchError(f"{where}: exported from weights {want.get('file')} (sha256 "
                                      f"{want.get('sha256', '')[:12]}), but {weights} has sha256 {got[:12]}; re-export")
    for name in components:
        if m.get("components", {}).get(name) is None:
            raise ExportMismatchError(f"{where}: has no component {name!r} (has {sorted(m.get('components', {}))})")
        entry = component_entry(m, name, precision)
        path = folder / entry["file"]
        if not path.is_file():
            raise ExportMismatchError(f"{path}: missing (listed in {where})")
        if verify_files and file_sha256(path) != entry["sha256"]:
            raise ExportMismatchError(f"{path}: sha256 differs from {where} (altered or corrupt); re-export")
    return m


def component_entry(manifest: dict, name: str, precision: str | None = None) -> dict:
    """A component's manifest entry: its `precision` variant (e.g. "int8", written by export/quantize.py) where
    the folder has one, else the fp32 graph."""
    entry = manifest["components"][name]
    return entry.get(precision, entry) if precision not in (None, "fp32") else entry


def fed_initializers(manifest: dict, component: str, sources: dict[str, dict[str, np.ndarray]],
                     where: Path, precision: str | None = None) -> dict[str, np.ndarray]:
    """{initializer name: fp32 array} for one component's fed tensors, from the loaded source files."""
    out = {}
    for init, ref in component_entry(manifest, component, precision).get("fed", {}).items():
        src = sources.get(ref["source"])
        if src is None or ref["key"] not in src:
            raise ExportMismatchError(f"{where}: {component} needs tensor {ref['key']!r} from source "
                                      f"{ref['source']!r}, which is not available")
        value = np.asarray(src[ref["key"]], dtype=np.float32)
        value = value.T if ref.get("transpose") else value
        if value.size == int(np.prod(ref["shape"])):      # exporters may also reshape (e.g. a bias to (1, D))
            value = value.reshape(ref["shape"])
        value = np.ascontiguousarray(value)
        if list(value.shape) != list(ref["shape"]):
            raise ExportMismatchError(f"{where}: {component} needs {ref['key']!r} of shape {ref['shape']}, the "
                                      f"{ref['source']} file has {list(value.shape)}")
        out[init] = value
    return out
