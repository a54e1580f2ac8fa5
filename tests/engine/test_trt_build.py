"""What of the TensorRT path runs without a GPU: build choices, profiles from the export specs, engine cache keys
and the rebuild-never-load rule, fp32 pinning, the quality gate, and the one-line errors when tensorrt or the CUDA
bindings are missing (export/trt_build.py, engine/trt_backend.py). Real engines: tests/engine/test_gpu_paths.py."""

import sys
import types

import pytest

from instructavatar.engine.config import get_config
from instructavatar.export import trt_build
from instructavatar.export.specs import MAX_SESSIONS
from instructavatar.export.trt_build import (
    FP32_LAYER_TYPES,
    BuildChoice,
    DeviceInfo,
    TrtUnavailable,
    build_choices,
    ddim_step_choices,
    engine_key,
    engine_path,
    quality_gate,
)

H200 = DeviceInfo("NVIDIA H200", (9, 0))


def test_fp16_by_default_with_delicate_parts_fp32():
    ch = build_choices(get_config("demo"))
    for name in ("text_encoder", "condition", "keyframe_encoder"):
        assert ch[name].precision == "fp32" and ch[name].fp32_layers == ()
    for name in ("audio_encoder", "appearance_encoder", "denoiser", "decoder"):
        assert ch[name].precision == "fp16" and set(ch[name].fp32_layers) == set(FP32_LAYER_TYPES)
    assert "GRID_SAMPLE" in FP32_LAYER_TYPES and "NORMALIZATION" in FP32_LAYER_TYPES
    q = build_choices(get_config("demo"), "int8")
    assert q["decoder"].precision == "int8" and q["denoiser"].precision == "fp16" and q["condition"].precision == "fp32"
    assert {c.precision for c in build_choices(get_config("paper"), "fp32").values()} == {"fp32"}
    with pytest.raises(ValueError, match="fp32, fp16, int8, fp8"):
        build_choices(get_config("demo"), "fp4")
    with pytest.raises(ValueError, match="unknown components"):
        build_choices(get_config("demo"), components=["vocoder"])


def test_profiles_come_from_the_specs():
    cfg = get_config("paper")
    den = build_choices(cfg)["denoiser"].profile
    M, L, D, N = cfg.motion_dim, cfg.denoiser.conformer.layers, cfg.denoiser.conformer.d_model, cfg.text.context
    W = cfg.stream.window_frames
    assert den["x_t"] == {"min": (1, 1, M), "opt": (2, W, M), "max": (2 * MAX_SESSIONS, W, M)}
    assert den["keys"]["max"] == (2 * MAX_SESSIONS, L, N, D)
    assert den["t"]["opt"] == (2,)
    audio = build_choices(cfg)["audio_encoder"].profile
    assert audio["wave"]["max"] == (MAX_SESSIONS, W * cfg.media.samples_per_frame)
    step = ddim_step_choices(cfg)
    assert step["ddim_step_guided"].profile["guided"] == {"min": (1,), "opt": (1,), "max": (MAX_SESSIONS,)}
    assert step["ddim_step"].profile["out"]["max"] == (2 * MAX_SESSIONS, W, M)
    assert "guided" not in step["ddim_step"].profile


def test_engine_key_changes_with_everything_an_engine_depends_on(tmp_path):
    choice = build_choices(get_config("demo"))["decoder"]
    base = engine_key(choice, "ab" * 32, H200, "10.9.0")
    assert base == engine_key(choice, "ab" * 32, DeviceInfo("NVIDIA H200", (9, 0)), "10.9.0")
    others = [engine_key(choice, "cd" * 32, H200, "10.9.0"),                      # another graph
              engine_key(choice, "ab" * 32, DeviceInfo("NVIDIA H100", (9, 0)), "10.9.0"),
              engine_key(choice, "ab" * 32, DeviceInfo("NVIDIA H200", (10, 0)), "10.9.0"),
              engine_key(choice, "ab" * 32, H200, "10.10.0"),                     # another TensorRT
              engine_key(BuildChoice(**{**choice.__dict__, "precision": "fp32"}), "ab" * 32, H200, "10.9.0"),
              engine_key(BuildChoice(**{**choice.__dict__, "profile": {}}), "ab" * 32, H200, "10.9.0")]
    assert len({base, *others}) == 7
    assert engine_path(tmp_path, choice, base).name == f"decoder-fp16-{base[:16]}.plan"


def fake_tensorrt(version: str):
    return types.SimpleNamespace(__version__=version)


def test_cache_builds_once_and_rebuilds_for_another_tensorrt(tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(trt_build, "build_engine", lambda onnx, choice, log=None: built.append(choice) or b"plan")
    choice = build_choices(get_config("demo"))["denoiser"]
    onnx = tmp_path / "denoiser.onnx"
    onnx.write_bytes(b"graph")
    monkeypatch.setattr(trt_build, "import_tensorrt", lambda: fake_tensorrt("10.9.0"))
    first = trt_build.cached_engine(onnx, "ab" * 32, choice, tmp_path / "cache", H200)
    again = trt_build.cached_engine(onnx, "ab" * 32, choice, tmp_path / "cache", H200)
    assert first == again and first.read_bytes() == b"plan" and len(built) == 1
    assert '"tensorrt": "10.9.0"' in first.with_suffix(".json").read_text()
    monkeypatch.setattr(trt_build, "import_tensorrt", lambda: fake_tensorrt("10.10.0"))
    newer = trt_build.cached_engine(onnx, "ab" * 32, choice, tmp_path / "cache", H200)
    assert newer != first and len(built) == 2                      # never the other version's plan
    trt_build.cached_engine(onnx, "ab" * 32, choice, tmp_path / "cache", DeviceInfo("NVIDIA L4", (8, 9)))
    assert len(built) == 3


def test_fp32_pinning_marks_only_the_named_layer_types():
    float32, float16 = "f32", "f16"

    class Tensor:
        dtype = float16

    class Layer:
        def __init__(self, kind):
            self.type, self.precision, self.num_outputs, self.out_types = kind, None, 1, {}

        def get_output(self, j):
            return Tensor()

        def set_output_type(self, j, t):
            self.out_types[j] = t

    trt = types.SimpleNamespace(float32=float32, float16=float16,
                                LayerType=types.SimpleNamespace(NORMALIZATION="norm", SOFTMAX="softmax", REDUCE="red",
                                                                GRID_SAMPLE="grid", CONVOLUTION="conv"))
    layers = [Layer(k) for k in ("conv", "norm", "grid", "conv", "softmax")]
    network = types.SimpleNamespace(num_layers=len(layers), get_layer=lambda i: layers[i])
    assert trt_build._pin_fp32_layers(trt, network, FP32_LAYER_TYPES) == 3
    assert [la.precision for la in layers] == [None, float32, float32, None, float32]
    assert layers[1].out_types == {0: float32} and layers[0].out_types == {}


def test_quality_gate():
    quality_gate(31.2, 30.8)
    with pytest.raises(ValueError, match="0.60 dB below"):
        quality_gate(31.2, 30.6)


def test_missing_or_old_libraries_are_one_line_errors(monkeypatch):
    from instructavatar.engine import trt_backend

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(TrtUnavailable, match=r"TensorRT is not installed: pip install 'tensorrt>=10'"):
        trt_build.import_tensorrt()
    with pytest.raises(TrtUnavailable, match="TensorRT is not installed"):
        trt_backend.TrtBackend({})
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("8.6.1"))
    with pytest.raises(TrtUnavailable, match=r"TensorRT 8.6.1 is too old"):
        trt_build.import_tensorrt()
    for mod in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(TrtUnavailable, match="pip install cuda-python"):
        trt_backend.import_cudart()


def test_export_format_trt_without_tensorrt_is_a_usage_error(capsys, monkeypatch, tmp_path):
    from instructavatar.cli import main

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    code = main(["export", "--config", "demo", "--format", "trt", "--precision", "fp16", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "TensorRT is not installed" in err[0]
    assert not any(tmp_path.iterdir())                               # nothing exported before the check


def test_engine_input_checks_name_the_engine_and_the_range(tmp_path):
    """Bad input never reaches TensorRT: wrong rank, a size outside the profile or a wrong dtype is a one-line
    ValueError naming the plan file and what it takes (TrtEngine.check, no GPU needed)."""
    import numpy as np

    from instructavatar.engine.trt_backend import TrtEngine

    eng = object.__new__(TrtEngine)                 # the checks only read the profile's shapes and dtypes
    eng.path = tmp_path / "denoiser-fp16-0123456789abcdef.plan"
    eng.min_shapes, eng.max_shapes = {"x_t": (1, 1, 128)}, {"x_t": (16, 20, 128)}
    eng.dtypes = {"x_t": np.dtype(np.float32)}
    ok = eng.check("x_t", np.zeros((2, 20, 128), np.float64))
    assert ok.dtype == np.float32 and ok.flags.c_contiguous
    with pytest.raises(ValueError, match=r"denoiser-fp16-0123456789abcdef.plan: input 'x_t' of shape \(2, 21, 128\); "
                                         r"this engine takes shapes from \(1, 1, 128\) to \(16, 20, 128\)"):
        eng.check("x_t", np.zeros((2, 21, 128), np.float32))
    with pytest.raises(ValueError, match="of shape \\(20, 128\\)"):
        eng.check("x_t", np.zeros((20, 128), np.float32))
    with pytest.raises(ValueError, match="has dtype int64, expected float32"):
        eng.check("x_t", np.zeros((2, 20, 128), np.int64))


class FakeCudart:
    """cudaMalloc/cudaMemcpyAsync over host memory: "device" pointers are numpy buffers' addresses."""

    class cudaMemcpyKind:                               # noqa: N801 - the bindings' names
        cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice = 1, 2, 3

    def __init__(self):
        self.blocks, self.copies = {}, []

    def cudaMalloc(self, n):                            # noqa: N802
        import numpy as np

        buf = np.zeros(n, np.uint8)
        self.blocks[buf.ctypes.data] = buf
        return 0, buf.ctypes.data

    def cudaFree(self, ptr):                            # noqa: N802
        self.blocks.pop(ptr, None)
        return (0,)

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):   # noqa: N802
        import ctypes

        ctypes.memmove(dst, src, n)
        self.copies.append(kind)
        return (0,)

    def cudaStreamSynchronize(self, stream):            # noqa: N802
        return (0,)

    def read(self, buf, like):
        import numpy as np

        return np.frombuffer(self.blocks[buf.ptr].tobytes()[:like.nbytes], like.dtype).reshape(like.shape)


def test_resident_instruction_handles_upload_once_and_stack_on_the_device():
    import threading

    import numpy as np

    from instructavatar.engine.backend import InstructionTensors
    from instructavatar.engine.trt_backend import INSTRUCTION_FIELDS, DeviceInstruction, TrtBackend

    cu = FakeCudart()
    rng = np.random.default_rng(0)

    def inst(n):
        return InstructionTensors(const=rng.standard_normal((1, 2, 4)).astype(np.float32),
                                  keys=rng.standard_normal((1, 2, n, 4)).astype(np.float32),
                                  values=rng.standard_normal((1, 2, n, 4)).astype(np.float32),
                                  mask=np.ones((1, n), np.float32))

    a, b, c = (DeviceInstruction(cu, 0, inst(n)) for n in (5, 5, 3))
    for f in INSTRUCTION_FIELDS:
        np.testing.assert_array_equal(cu.read(a.buffers[f], getattr(a.host, f)), getattr(a.host, f))
    backend = object.__new__(TrtBackend)
    backend.cudart, backend.stream, backend.lock, backend._stacked = cu, 0, threading.RLock(), {}
    before = len(cu.copies)
    ab = backend.stack_instructions([a, b])
    assert cu.copies[before:] == [3] * 8                            # device to device only: nothing re-uploaded
    assert backend.stack_instructions([a, b]) is ab                 # the same batch again: cached
    want = InstructionTensors.stack([a.host, b.host])
    for f in INSTRUCTION_FIELDS:
        np.testing.assert_array_equal(cu.read(ab.buffers[f], getattr(want, f)), getattr(want, f))
    ac = backend.stack_instructions([a, c])                         # other token counts: padded (host), uploaded
    want = InstructionTensors.stack([a.host, c.host])
    assert ac.host.keys.shape == (2, 2, 5, 4)
    for f in INSTRUCTION_FIELDS:
        np.testing.assert_array_equal(cu.read(ac.buffers[f], getattr(want, f)), getattr(want, f))
