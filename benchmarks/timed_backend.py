"""Time what a running pipeline spends in each backend call and in its own arithmetic between them.

`TimedBackend` wraps any `Backend` (engine/backend.py) and records wall-clock ms per call of each method; the
pipeline cannot tell it from the wrapped backend (other attributes, e.g. an optional `denoise_chunk`, pass
through, timed too). `timed_sampler` does the same for the pipeline's DDIM sampler (`step`, `initial_noise`),
so a chunk's time splits into backend components, the sampler's arithmetic, and the rest (batching, guidance
mix, frame conversion), which is measured as the remainder.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

COMPONENTS = ("encode_appearance", "encode_keyframe", "encode_text", "condition", "encode_audio", "denoise",
              "decode")
TIMED = (*COMPONENTS, "encode_motion", "denoise_chunk")


class CallLog:
    """ms per call, by name."""

    def __init__(self):
        self.ms: dict[str, list[float]] = defaultdict(list)

    def clear(self) -> None:
        self.ms.clear()

    def total(self, names=None) -> float:
        return sum(sum(v) for k, v in self.ms.items() if names is None or k in names)

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.ms[name].append((time.perf_counter() - t0) * 1e3)

        return timed


class TimedBackend:
    """A backend that times its inner backend's calls into `log`."""

    def __init__(self, inner, log: CallLog):
        self.inner, self.log = inner, log
        self.name = getattr(inner, "name", type(inner).__name__)
        for method in TIMED:
            fn = getattr(inner, method, None)
            if fn is not None:
                setattr(self, method, log.wrap(method, fn))

    def __getattr__(self, attr):                         # anything else: the inner backend's own
        return getattr(self.inner, attr)


@contextmanager
def timed_sampler(sampler, log: CallLog):
    """Inside the block, the sampler's `step` and `initial_noise` calls are timed into `log` as `ddim_step`
    and `initial_noise` (instance attributes shadow the methods; removed afterwards)."""
    sampler.step = log.wrap("ddim_step", type(sampler).step.__get__(sampler))
    sampler.initial_noise = log.wrap("initial_noise", type(sampler).initial_noise.__get__(sampler))
    try:
        yield
    finally:
        del sampler.step, sampler.initial_noise


@contextmanager
def instrumented(pipeline, log: CallLog):
    """Inside the block the pipeline's backend and sampler are timed into `log`."""
    backend = pipeline.backend
    pipeline.backend = TimedBackend(backend, log)
    try:
        with timed_sampler(pipeline.sampler, log):
            yield
    finally:
        pipeline.backend = backend
