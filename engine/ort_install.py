"""Detect a broken ONNX Runtime install: several `onnxruntime*` distributions side by side.

`onnxruntime` (CPU) and `onnxruntime-gpu` (CUDA / TensorRT providers) both install the one `onnxruntime`
module; with both present, whichever was installed last wins file by file and the CUDA provider silently
disappears (or the import breaks). The engine checks before it builds an ORT session and names the fix.
Torch-free: importlib.metadata only.
"""

from __future__ import annotations

from importlib import metadata

# Distributions that each provide the `onnxruntime` module.
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino",
                     "onnxruntime-qnn", "onnxruntime-rocm", "onnxruntime-training")


def installed_onnxruntime() -> dict[str, str]:
    """{distribution name: version} of every installed `onnxruntime*` distribution."""
    found = {}
    for name in ORT_DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def onnxruntime_conflict(found: dict[str, str] | None = None) -> str | None:
    """A one-line explanation and fix when more than one ONNX Runtime build is installed, else None."""
    found = installed_onnxruntime() if found is None else found
    if len(found) < 2:
        return None
    names = ", ".join(f"{k} {v}" for k, v in sorted(found.items()))
    keep = "onnxruntime-gpu" if "onnxruntime-gpu" in found else sorted(n for n in found if n != "onnxruntime")[0]
    drop = " ".join(sorted(n for n in found if n != keep))
    return (f"several ONNX Runtime builds are installed side by side ({names}); they overwrite each other's "
            f"files. Fix: pip uninstall -y {drop} {keep} && pip install {keep}")
