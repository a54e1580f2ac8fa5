"""Bad export folders and bad inputs: one-line errors naming the file and what was expected, never an ORT crash."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from instructavatar.engine.config import get_config
from instructavatar.engine.loader import DEMO_WEIGHTS
from instructavatar.engine.onnx_manifest import ExportMismatchError
from instructavatar.engine.ort_backend import OrtBackend, OrtInputError


@pytest.fixture
def folder(demo_export, tmp_path):
    """A private copy of the shipped demo export (its graphs are small: the weights are fed at load)."""
    out = tmp_path / "onnx"
    shutil.copytree(demo_export, out)
    return out


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_the_copy_loads(folder):
    OrtBackend(folder, get_config("demo"), weights=DEMO_WEIGHTS, threads=1)


def test_missing_graph(folder):
    (folder / "decoder.onnx").unlink()
    with pytest.raises(ExportMismatchError) as e:
        OrtBackend(folder, get_config("demo"), weights=DEMO_WEIGHTS)
    assert "decoder.onnx" in _one_line(e) and "missing" in str(e.value)


def test_corrupt_graph(folder):
    data = bytearray((folder / "denoiser.onnx").read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64
    (folder / "denoiser.onnx").write_bytes(bytes(data))
    with pytest.raises(ExportMismatchError) as e:
        OrtBackend(folder, get_config("demo"), weights=DEMO_WEIGHTS)
    assert "denoiser.onnx" in _one_line(e) and "sha256" in str(e.value)
    (folder / "denoiser.onnx").write_bytes(b"not a graph")          # unchecked: ORT's own failure, one line
    with pytest.raises(ExportMismatchError) as e:
        OrtBackend(folder, get_config("demo"), weights=DEMO_WEIGHTS, verify_files=False)
    assert "denoiser.onnx" in _one_line(e) and "cannot load" in str(e.value)


def test_manifest_from_another_config(folder):
    other = replace(get_config("demo"), stream=replace(get_config("demo").stream, chunk_frames=8))
    with pytest.raises(ExportMismatchError) as e:
        OrtBackend(folder, other, weights=DEMO_WEIGHTS)
    assert "manifest.json" in _one_line(e) and "config" in str(e.value)


def test_manifest_from_other_weights(folder):
    with pytest.raises(ExportMismatchError) as e:
        OrtBackend(folder, get_config("demo"), weights=DEMO_WEIGHTS.parent / "audio_only.safetensors")
    assert "sha256" in _one_line(e) and "demo.safetensors" in str(e.value)


def test_manifest_of_another_version(folder):
    m = json.loads((folder / "manifest.json").read_text())
    m["manifest_version"] = 99
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ExportMismatchError) as e:
        OrtBackend(folder, get_config("demo"), weights=DEMO_WEIGHTS)
    assert "version 99" in _one_line(e)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(ExportMismatchError) as e:
        OrtBackend(folder, get_config("demo"), weights=DEMO_WEIGHTS)
    assert "manifest.json" in _one_line(e)


def test_fed_weights_are_required(folder):
    with pytest.raises(ExportMismatchError) as e:
        OrtBackend(folder, get_config("demo"), weights=None)
    assert "--weights" in _one_line(e)


def test_wrong_shape_and_dtype(demo_export):
    cfg = get_config("demo")
    be = OrtBackend(demo_export, cfg, weights=DEMO_WEIGHTS, threads=1)
    M, Ca = cfg.motion_dim, cfg.vae.appearance_channels
    a = cfg.media.image_size // cfg.vae.app_downsample
    with pytest.raises(OrtInputError) as e:                                  # wrong fixed size
        be.decode(np.zeros((2, M + 1), np.float32), np.zeros((2, Ca, a, a), np.float32))
    assert "decoder.onnx" in _one_line(e) and f"motion float32 (F, {M})" in str(e.value)
    with pytest.raises(OrtInputError) as e:                                  # inconsistent batch
        be.decode(np.zeros((2, M), np.float32), np.zeros((3, Ca, a, a), np.float32))
    assert "F=2" in _one_line(e)
    with pytest.raises(OrtInputError) as e:                                  # wrong rank
        be.encode_appearance(np.zeros((3, 128, 128), np.float32))
    assert "appearance_encoder.onnx" in _one_line(e)
    with pytest.raises(OrtInputError) as e:                                  # wrong dtype
        be.encode_text(np.array([["a", "b"]]), np.ones((1, 2), np.int64))
    assert "int64" in _one_line(e)
    with pytest.raises(OrtInputError) as e:                                  # wave not a whole number of frames
        be.encode_audio(np.zeros((1, 1000), np.float32), np.zeros((1, 1), np.float32))
    assert "audio_encoder.onnx" in _one_line(e)
    out = be.decode(np.zeros((2, M), np.float64), np.zeros((2, Ca, a, a), np.float32))   # float64 is cast
    assert out.shape == (2, 3, cfg.media.image_size, cfg.media.image_size)
