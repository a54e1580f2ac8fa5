"""A small LRU of objects built per shape key (captured CUDA graphs, static buffers): torch-free, shared by the
torch device path (engine/modules/cuda_graphs.py) and the TensorRT backend (engine/trt_backend.py)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class ShapeLRU:
    """`get(key, build)` returns the object for key, calling `build()` on a miss; past `capacity` entries the least
    recently used is dropped (its memory is freed when nothing else holds it)."""

    def __init__(self, capacity: int = 8):
        if capacity < 1:
            raise ValueError(f"graph cache capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = self.misses = self.evictions = 0

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[Hashable]:
        return list(self._items)

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        item = self._items.get(key)
        if item is not None:
            self.hits += 1
            self._items.move_to_end(key)
            return item
        self.misses += 1
        item = build()
        self._items[key] = item
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
            self.evictions += 1
        return item
