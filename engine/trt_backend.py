"""The native TensorRT backend (`--backend trt`): torch-free, numpy at the boundary, engines from the ONNX export.

Engines come from export/trt_build.py (`instructavatar export --format trt`, cached by GPU, compute capability,
TensorRT version, profile and ONNX digest). This module needs `tensorrt>=10` and the CUDA Python bindings
(`cuda-python`); without them `TrtBackend` raises `TrtUnavailable` with the install line, and nothing else here
needs them (import is free).

Per engine (`TrtEngine`): device buffers allocated once at the profile's max shapes; a call sets the input
shapes, copies inputs in and outputs out on the backend's own stream. Instruction handles (`DeviceInstruction`)
live on the GPU: uploaded once by `condition`, batched device to device by `stack_instructions`. Each backend
instance owns its streams, contexts and memory (no process-global state: two instances in one process do not
share a stream).
The chunk's denoising loop (`denoise_chunk`, the pipeline's optional whole-loop call): every step is the
denoiser engine then the DDIM step engine (export/ddim_graph.py: the arithmetic of engine/chunk_loop.py and
engine/ddim.py) on device buffers, the whole unrolled loop captured once per shape key as a CUDA graph and
replayed per chunk (`ChunkLoop`); an LRU (engine/shape_lru.py) bounds the captured shapes. Verified only on a
machine with TensorRT (tests/engine/test_trt_backend.py, marked gpu): none was available when it was written.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .backend import InstructionTensors
from .shape_lru import ShapeLRU

NP_OF_TRT = {"FLOAT": np.float32, "HALF": np.float16, "INT64": np.int64, "INT32": np.int32, "BOOL": np.bool_}


def import_cudart():
    """The CUDA runtime bindings of cuda-python (either module layout), or TrtUnavailable."""
    from ..export.trt_build import TrtUnavailable

    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older layout
        except ImportError:
            raise TrtUnavailable("the CUDA Python bindings are not installed: pip install cuda-python "
                                 "(docs/gpu.md)") from None
    return cudart


def check_cuda(result, what: str):
    """cuda-python calls return (error, *values): the values, or RuntimeError naming the call."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error in {what}: {err}")
    return values[0] if len(values) == 1 else (tuple(values) or None)


class DeviceBuffer:
    def __init__(self, cudart, nbytes: int):
        self.cudart, self.nbytes = cudart, max(int(nbytes), 1)
        self.ptr = check_cuda(cudart.cudaMalloc(self.nbytes), "cudaMalloc")

    def __del__(self):
        if getattr(self, "ptr", None):
            self.cudart.cudaFree(self.ptr)
            self.ptr = None


class TrtEngine:
    """One deserialised engine, its context(s) and I/O buffers at the profile's max shapes (allocated once)."""

    def __init__(self, trt, cudart, path: Path, stream, lock: threading.RLock):
        self.trt, self.cudart, self.path, self.stream, self.lock = trt, cudart, Path(path), stream, lock
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            from ..export.trt_build import TrtBuildError

            raise TrtBuildError(f"{self.path}: TensorRT could not load this engine (built by another TensorRT or for "
                                "another GPU?); delete it and rebuild with `instructavatar export --format trt`")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_in = lambda n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT  # noqa: E731
        self.inputs, self.outputs = [n for n in names if is_in(n)], [n for n in names if not is_in(n)]
        self.dtypes = {n: np.dtype(NP_OF_TRT[self.engine.get_tensor_dtype(n).name]) for n in names}
        self.max_shapes = {n: tuple(self.engine.get_tensor_profile_shape(n, 0)[2]) for n in self.inputs}
        self.min_shapes = {n: tuple(self.engine.get_tensor_profile_shape(n, 0)[0]) for n in self.inputs}
        size = getattr(self.engine, "device_memory_size_v2", None) or self.engine.device_memory_size
        self.scratch = DeviceBuffer(cudart, size)        # activations, shared by this engine's contexts
        self.context = self.new_context()
        for n in self.inputs:
            self.context.set_input_shape(n, self.max_shapes[n])
        self.buffers = {n: DeviceBuffer(cudart, self._nbytes(n, self.max_shapes[n])) for n in self.inputs}
        for n in self.outputs:
            self.buffers[n] = DeviceBuffer(cudart, self._nbytes(n, tuple(self.context.get_tensor_shape(n))))

    def new_context(self):
        ctx = self.engine.create_execution_context(self.trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        if hasattr(ctx, "set_device_memory"):          # TensorRT >= 10.1
            ctx.set_device_memory(self.scratch.ptr, self.scratch.nbytes)
        else:                                           # 10.0: the property
            ctx.device_memory = self.scratch.ptr
        return ctx

    def _nbytes(self, name: str, shape: tuple[int, ...]) -> int:
        return int(np.prod(shape)) * self.dtypes[name].itemsize

    def check(self, name: str, a: np.ndarray) -> np.ndarray:
        """The input as the engine's dtype, contiguous; ValueError naming the engine and the allowed shapes."""
        a = np.asarray(a)
        lo, hi = self.min_shapes[name], self.max_shapes[name]
        if a.ndim != len(hi) or any(not lo_ <= d <= hi_ for d, lo_, hi_ in zip(a.shape, lo, hi)):
            raise ValueError(f"{self.path.name}: input {name!r} of shape {a.shape}; this engine takes shapes from "
                             f"{lo} to {hi} (rebuild with a wider profile for more)")
        if a.dtype.kind != self.dtypes[name].kind:
            raise ValueError(f"{self.path.name}: input {name!r} has dtype {a.dtype}, expected {self.dtypes[name]}")
        return np.ascontiguousarray(a, dtype=self.dtypes[name])

    def run(self, **arrays: np.ndarray) -> dict[str, np.ndarray]:
        """Inputs from the host, outputs back (synchronous on the backend's stream)."""
        missing = set(self.inputs) - set(arrays)
        if missing:
            raise ValueError(f"{self.path.name}: missing inputs {sorted(missing)}")
        host = {n: self.check(n, arrays[n]) for n in self.inputs}
        with self.lock:                    # the scratch memory is shared with this engine's loop contexts
            return self._run(host)

    def _run(self, host: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cu = self.cudart
        for n, a in host.items():
            self.context.set_input_shape(n, a.shape)
            check_cuda(cu.cudaMemcpyAsync(self.buffers[n].ptr, a.ctypes.data, a.nbytes,
                                          cu.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream), "cudaMemcpyAsync")
        for n in self.inputs + self.outputs:
            self.context.set_tensor_address(n, self.buffers[n].ptr)
        if not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError(f"{self.path.name}: TensorRT execution failed")
        out = {}
        for n in self.outputs:
            a = np.empty(tuple(self.context.get_tensor_shape(n)), self.dtypes[n])
            check_cuda(cu.cudaMemcpyAsync(a.ctypes.data, self.buffers[n].ptr, a.nbytes,
                                          cu.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream), "cudaMemcpyAsync")
            out[n] = a
        check_cuda(cu.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return {n: a.astype(np.float32) if a.dtype == np.float16 else a for n, a in out.items()}


INSTRUCTION_FIELDS = ("const", "keys", "values", "mask")


class DeviceInstruction:
    """An instruction handle resident on the GPU (engine/backend.py): const (B,L,D), keys/values (B,L,N,D) and
    mask (B,N) in device buffers, uploaded once; `host` keeps the arrays (for the per-step path and for stacking
    rows of another token count, which needs padding)."""

    def __init__(self, cudart, stream, host: InstructionTensors, buffers: dict | None = None):
        self.cudart, self.host = cudart, host
        self.buffers = buffers
        if buffers is None:
            self.buffers = {}
            for f in INSTRUCTION_FIELDS:
                a = np.ascontiguousarray(getattr(host, f), np.float32)
                setattr(host, f, a)
                self.buffers[f] = DeviceBuffer(cudart, a.nbytes)
                check_cuda(cudart.cudaMemcpyAsync(self.buffers[f].ptr, a.ctypes.data, a.nbytes,
                                                  cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream),
                           "cudaMemcpyAsync")
            check_cuda(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    @property
    def rows(self) -> int:
        return self.host.const.shape[0]

    @staticmethod
    def stack(cudart, stream, items: list[DeviceInstruction]) -> DeviceInstruction:
        """Rows of several handles in one: device-to-device copies when the token counts agree (the text encoder
        always pads to its context), else padded on the host and uploaded."""
        host = InstructionTensors.stack([it.host for it in items])
        if len({it.host.keys.shape[2] for it in items}) != 1:
            return DeviceInstruction(cudart, stream, host)
        buffers = {}
        for f in INSTRUCTION_FIELDS:
            buffers[f] = DeviceBuffer(cudart, getattr(host, f).nbytes)
            offset = 0
            for it in items:
                n = it.buffers[f].nbytes if getattr(it.host, f).size else 0
                check_cuda(cudart.cudaMemcpyAsync(int(buffers[f].ptr) + offset, it.buffers[f].ptr, n,
                                                  cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream),
                           "cudaMemcpyAsync")
                offset += n
        check_cuda(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        return DeviceInstruction(cudart, stream, host, buffers)


class ChunkLoop:
    """The unrolled DDIM loop of one shape key on device buffers, captured as one CUDA graph."""

    def __init__(self, backend: TrtBackend, shapes: dict[str, tuple[int, ...]], steps: int, guided: bool):
        self.b, self.cu = backend, backend.cudart
        den, step = backend.engines["denoiser"], backend.engines["ddim_step_guided" if guided else "ddim_step"]
        self.shapes = shapes
        self.buf = {n: DeviceBuffer(self.cu, int(np.prod(s)) * (8 if n in ("t", "rows", "guided") else 4))
                    for n, s in shapes.items()}
        self.stream = check_cuda(self.cu.cudaStreamCreate(), "cudaStreamCreate")    # one stream per batch shape
        self.den_ctx, self.step_ctx = den.new_context(), step.new_context()
        R = shapes["x_rows"][0]
        B, T, M = shapes["x_a"]
        for n, s in {"x_t": (R, T, M), "t": (R,), "audio": shapes["audio"], "known": shapes["known"],
                     "const": shapes["const"], "keys": shapes["keys"], "values": shapes["values"],
                     "mask": shapes["mask"]}.items():
            self.den_ctx.set_input_shape(n, s)
        step_in = {"x": (B, T, M), "out": (R, T, M), "noise": (B, T, M), "coef": (5,), "prefix": (B, T, M),
                   "known": (B, T, 1), "rows": (R,)}
        if guided:
            step_in.update(guided=shapes["guided"], guidance=(1,))
        for n, s in step_in.items():
            self.step_ctx.set_input_shape(n, s)
        self.guided, self.steps, self.dims = guided, steps, (B, R, T, M)
        self.graph = self.exec = None

    def _capture(self) -> None:
        """Record the whole loop as one CUDA graph (after one eager run: TensorRT settles shapes on first enqueue)."""
        check_cuda(self.cu.cudaStreamBeginCapture(
            self.stream, self.cu.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture")
        try:
            self._enqueue_all(*self.dims)
        finally:
            self.graph = check_cuda(self.cu.cudaStreamEndCapture(self.stream), "cudaStreamEndCapture")
        self.exec = check_cuda(self.cu.cudaGraphInstantiate(self.graph, 0), "cudaGraphInstantiate")

    def _enqueue_all(self, B, R, T, M):
        """Per step: denoiser(x_rows) -> out, then step(x, out) -> (x', x_rows); x ping-pongs between a and b."""
        d = self.buf
        sizes = {"t": R * 8, "noise": B * T * M * 4, "coef": 5 * 4}
        for i in range(self.steps):
            src, dst = ("x_a", "x_b") if i % 2 == 0 else ("x_b", "x_a")
            den = {"x_t": d["x_rows"].ptr, "t": int(d["t"].ptr) + i * sizes["t"], "audio": d["audio"].ptr,
                   "known": d["known"].ptr, "const": d["const"].ptr, "keys": d["keys"].ptr,
                   "values": d["values"].ptr, "mask": d["mask"].ptr, "x0": d["out"].ptr}
            for n, p in den.items():
                self.den_ctx.set_tensor_address(n, p)
            if not self.den_ctx.execute_async_v3(int(self.stream)):
                raise RuntimeError("denoiser engine: TensorRT enqueue failed during CUDA-graph capture")
            st = {"x": d[src].ptr, "out": d["out"].ptr, "noise": int(d["noise"].ptr) + i * sizes["noise"],
                  "coef": int(d["coef"].ptr) + i * sizes["coef"], "prefix": d["prefix"].ptr,
                  "known": d["known_bt"].ptr, "rows": d["rows"].ptr, "x_next": d[dst].ptr,
                  "x_rows": d["x_rows"].ptr}
            if self.guided:
                st.update(guided=d["guided"].ptr, guidance=d["guidance"].ptr)
            for n, p in st.items():
                self.step_ctx.set_tensor_address(n, p)
            if not self.step_ctx.execute_async_v3(int(self.stream)):
                raise RuntimeError("ddim step engine: TensorRT enqueue failed during CUDA-graph capture")
        self.result = "x_b" if self.steps % 2 == 1 else "x_a"

    def run(self, host: dict[str, np.ndarray], device: dict[str, DeviceBuffer] | None = None) -> np.ndarray:
        """Copy the inputs in (host arrays; resident buffers device to device), replay, copy the result out."""
        cu = self.cu
        for n, a in host.items():
            a = np.ascontiguousarray(a)
            check_cuda(cu.cudaMemcpyAsync(self.buf[n].ptr, a.ctypes.data, a.nbytes,
                                          cu.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream), "cudaMemcpyAsync")
        for n, b in (device or {}).items():
            check_cuda(cu.cudaMemcpyAsync(self.buf[n].ptr, b.ptr, b.nbytes,
                                          cu.cudaMemcpyKind.cudaMemcpyDeviceToDevice, self.stream), "cudaMemcpyAsync")
        if self.exec is None:
            self._enqueue_all(*self.dims)                   # eager first run (its result is this call's)
            check_cuda(cu.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        else:
            check_cuda(cu.cudaGraphLaunch(self.exec, self.stream), "cudaGraphLaunch")
        out = np.empty(self.shapes["x_a"], np.float32)
        check_cuda(cu.cudaMemcpyAsync(out.ctypes.data, self.buf[self.result].ptr, out.nbytes,
                                      cu.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream), "cudaMemcpyAsync")
        check_cuda(cu.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        if self.exec is None:
            self._capture()
        return out


class TrtBackend:
    """`Backend` over TensorRT engines: `engines` maps component name -> plan file (export/trt_build.py)."""

    name = "trt"
    REQUIRED = ("text_encoder", "condition", "audio_encoder", "appearance_encoder", "keyframe_encoder", "denoiser",
                "decoder")

    def __init__(self, engines: dict[str, Path], graph_cache: int = 8):
        from ..export.trt_build import import_tensorrt

        trt = import_tensorrt()
        self.cudart = import_cudart()
        missing = [n for n in self.REQUIRED if n not in engines]
        if missing:
            raise FileNotFoundError(f"TensorRT engines missing for {missing} (instructavatar export --format trt)")
        self.stream = check_cuda(self.cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.lock = threading.RLock()
        self.engines = {n: TrtEngine(trt, self.cudart, Path(p), self.stream, self.lock) for n, p in engines.items()}
        self.loops = ShapeLRU(graph_cache)
        self._stacked: dict[tuple, tuple] = {}                  # recent stack_instructions results
        if "ddim_step" in self.engines and "ddim_step_guided" in self.engines:
            self.denoise_chunk = self._denoise_chunk        # the pipeline's optional whole-loop call

    def encode_appearance(self, image):
        return self.engines["appearance_encoder"].run(image=image)["appearance"]

    def encode_keyframe(self, image):
        return self.engines["keyframe_encoder"].run(image=image)["keyframe"]

    def encode_motion(self, landmarks):
        raise NotImplementedError("the motion encoder is training-only; it has no TensorRT engine")

    def encode_text(self, ids, mask):
        out = self.engines["text_encoder"].run(ids=ids, mask=mask)
        return out["tokens"], out["pooled"]

    def condition(self, tokens, mask, pooled, keyframe):
        """-> a `DeviceInstruction` (resident; engine/backend.py handles)."""
        out = self.engines["condition"].run(tokens=tokens, pooled=pooled, keyframe=keyframe)
        host = InstructionTensors(const=out["const"], keys=out["keys"], values=out["values"],
                                  mask=mask.astype(np.float32))
        with self.lock:
            return DeviceInstruction(self.cudart, self.stream, host)

    def stack_instructions(self, items: list) -> DeviceInstruction:
        key = tuple(id(it) for it in items)
        with self.lock:
            hit = self._stacked.get(key)
            if hit is not None and all(a is b for a, b in zip(hit[0], items)):
                return hit[1]
            stacked = DeviceInstruction.stack(self.cudart, self.stream, items)
            self._stacked[key] = (list(items), stacked)         # holds the items: their ids stay theirs
            while len(self._stacked) > 32:
                self._stacked.pop(next(iter(self._stacked)))
            return stacked

    def encode_audio(self, wave, blink=None):
        feeds = {"wave": wave} if blink is None else {"wave": wave, "blink": blink}
        return self.engines["audio_encoder"].run(**feeds)["audio"]

    def denoise(self, x_t, t, audio, known, inst):
        inst = inst.host if isinstance(inst, DeviceInstruction) else inst
        return self.engines["denoiser"].run(x_t=x_t, t=t, audio=audio, known=known, const=inst.const, keys=inst.keys,
                                            values=inst.values, mask=inst.mask)["x0"]

    def decode(self, motion, appearance):
        return self.engines["decoder"].run(motion=motion, appearance=appearance)["frames"]

    def _denoise_chunk(self, sampler, x, prefix, audio, known, inst, rows, guided, guidance, noises):
        """The pipeline's whole-loop call (engine/chunk_loop.py shapes): replay of a captured loop per shape."""
        from ..export.ddim_graph import step_coefficients

        B, T, M = x.shape
        P = 0 if prefix is None else prefix.shape[1]
        R, S = len(rows), sampler.num_steps
        g = guided is not None
        prefix_full = np.zeros((B, T, M), np.float32)
        known_bt = np.zeros((B, T, 1), np.float32)
        x = x.copy()
        if P:
            prefix_full[:, :P], known_bt[:, :P] = prefix, 1.0
            x[:, :P] = prefix
        host = {"x_a": x, "x_rows": x[rows], "t": np.repeat(sampler.timesteps[:, None], R, 1).astype(np.int64),
                "noise": np.stack([np.zeros((B, T, M), np.float32) if noises is None or n is None else n
                                   for n in (noises or [None] * S)]),
                "coef": step_coefficients(sampler), "prefix": prefix_full, "known_bt": known_bt,
                "rows": rows.astype(np.int64), "audio": audio, "known": known}
        resident = inst.buffers if isinstance(inst, DeviceInstruction) else None
        fields = inst.host if resident else inst
        shapes_inst = {f: getattr(fields, f).shape for f in INSTRUCTION_FIELDS}
        if resident is None:
            host.update({f: getattr(inst, f) for f in INSTRUCTION_FIELDS})
        if g:
            host.update(guided=guided.astype(np.int64), guidance=np.array([guidance], np.float32))
        shapes = {n: a.shape for n, a in host.items()}
        shapes.update(x_b=(B, T, M), out=(R, T, M), **shapes_inst)
        key = (tuple(sorted(shapes.items())), S)
        with self.lock:
            loop = self.loops.get(key, lambda: ChunkLoop(self, shapes, S, g))
            return loop.run({n: np.asarray(a, np.float32 if n not in ("t", "rows", "guided") else np.int64)
                             for n, a in host.items()}, resident)


def load_trt_backend(engine_dir: str | Path, cfg, precision: str = "fp16") -> TrtBackend:
    """A backend from an export folder whose trt/ holds engines for this GPU and TensorRT (export/trt_build.py)."""
    from ..export.trt_build import build_choices, current_device, engine_key, engine_path, import_tensorrt
    from .onnx_manifest import check_manifest

    trt = import_tensorrt()
    folder = Path(engine_dir)
    manifest = check_manifest(folder, cfg, None, list(TrtBackend.REQUIRED))
    device = current_device()
    engines = {}
    for name, choice in build_choices(cfg, precision).items():
        sha = manifest["components"][name]["sha256"]
        path = engine_path(folder / "trt", choice, engine_key(choice, sha, device, trt.__version__))
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no {name} engine for {device.describe()} and TensorRT {trt.__version__}"
                                    f"; build it: instructavatar export --format trt --out {folder}")
        engines[name] = path
    from ..export.trt_build import ddim_step_choices
    from .onnx_manifest import file_sha256

    for name, choice in ddim_step_choices(cfg).items():       # optional: without them, one call per step
        graph = folder / "trt" / "onnx" / f"{name}.onnx"
        if graph.is_file():
            path = engine_path(folder / "trt", choice, engine_key(choice, file_sha256(graph), device, trt.__version__))
            if path.is_file():
                engines[name] = path
    return TrtBackend(engines)
