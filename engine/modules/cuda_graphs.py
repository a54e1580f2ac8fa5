"""Static-buffer calls keyed by shape, replayed as CUDA graphs: the torch backend's fast path on a GPU.

A `StaticCall` owns input buffers allocated once for one shape; calling it copies the new inputs into them and
runs the captured work, whose outputs are static buffers too (read them before the next call). Two kinds:
  - `CudaGraphCall`: the work is captured once as a CUDA graph (after warm-up runs on a side stream, which also
    compiles a torch.compile'd module) and every call is one `graph.replay()`: no Python, no launch overhead.
  - `EagerCall`: the same buffer protocol, the work run eagerly each call (CPU, or CUDA without graphs), so the
    plumbing that feeds a graph is the plumbing tested on a CPU.
`ShapeCache` is the small LRU of such calls, one per (batch, window, ...) key; the capture is injected, so its
logic is tested without CUDA. All graphs of one cache share one memory pool: their intermediates may alias,
which is safe because calls are serialised by the cache's lock and every output is copied out before the next
call (what `ShapeCache.run` does).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..shape_lru import ShapeLRU


class StaticCall:
    """Input buffers for one shape; `__call__(*tensors)` copies them in and returns the (static) outputs."""

    inputs: list[Tensor]
    outputs: Any

    def _load(self, tensors: Sequence[Tensor]) -> None:
        if len(tensors) != len(self.inputs):
            raise ValueError(f"expected {len(self.inputs)} inputs, got {len(tensors)}")
        for dst, src in zip(self.inputs, tensors):
            if dst.shape != src.shape:
                raise ValueError(f"input of shape {tuple(src.shape)} fed to a buffer of shape {tuple(dst.shape)}")
            dst.copy_(src, non_blocking=True)


class EagerCall(StaticCall):
    def __init__(self, fn: Callable, examples: Sequence[Tensor], pool=None):
        self.fn = fn
        self.inputs = [t.clone() for t in examples]
        self.outputs = None

    def __call__(self, *tensors: Tensor):
        self._load(tensors)
        with torch.inference_mode():
            self.outputs = self.fn(*self.inputs)
        return self.outputs


class CudaGraphCall(StaticCall):
    """fn(*inputs) captured once as a CUDA graph on the inputs' device."""

    def __init__(self, fn: Callable, examples: Sequence[Tensor], pool=None, warmup: int = 2):
        self.inputs = [t.clone() for t in examples]
        side = torch.cuda.Stream(device=self.inputs[0].device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(warmup):                 # cuBLAS/cuDNN workspaces, torch.compile, lazy init
                fn(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph, pool=pool):
            self.outputs = fn(*self.inputs)

    def __call__(self, *tensors: Tensor):
        self._load(tensors)
        self.graph.replay()
        return self.outputs


class ShapeCache:
    """LRU (engine/shape_lru.py) of `StaticCall`s by key. `make(fn, examples)` builds one on a miss (default: a
    CUDA graph when `graphs`, else an eager call); the least recently used is dropped past `capacity`."""

    def __init__(self, capacity: int = 8, graphs: bool = False, make: Callable | None = None):
        self.lru = ShapeLRU(capacity)
        self.graphs = graphs
        self._make = make
        self._pool = None
        self.lock = threading.Lock()

    hits = property(lambda self: self.lru.hits)
    misses = property(lambda self: self.lru.misses)
    evictions = property(lambda self: self.lru.evictions)

    def __len__(self) -> int:
        return len(self.lru)

    def keys(self) -> list[Hashable]:
        return self.lru.keys()

    def _build(self, fn: Callable, examples: Sequence[Tensor]) -> StaticCall:
        if self._make is not None:
            return self._make(fn, examples)
        if not self.graphs:
            return EagerCall(fn, examples)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        return CudaGraphCall(fn, examples, pool=self._pool)

    def get(self, key: Hashable, fn: Callable, examples: Sequence[Tensor]) -> StaticCall:
        """The call for `key`, built from `fn` and `examples` on a miss."""
        return self.lru.get(key, lambda: self._build(fn, examples))

    def run(self, key: Hashable, fn: Callable, tensors: Sequence[Tensor], read: Callable):
        """Feed `tensors` to the call for `key` and return `read(outputs)` (which must copy them out), all under
        the lock: another call may reuse the shared pool as soon as the lock is released."""
        with self.lock:
            call = self.get(key, fn, tensors)
            return read(call(*tensors))
