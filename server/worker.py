"""The model worker: one thread per device that owns the pipeline and steps every session as batches.

The asyncio event loop (server/app.py) never runs model code. It puts validated audio into a session's inbox
and control commands on the worker's queue; the worker, in a loop: runs the commands (open a session:
portrait encoders and text encoder; set an instruction: text encoder; end, interrupt, close), moves each
session's inbox into its engine `Session` (bounded), fills silence for sessions whose audio stopped (idle: the
avatar keeps moving on the wall clock), and calls `Pipeline.step_ready` on every session with a ready chunk,
which batches them by window shape. Frames are encoded (JPEG or raw RGB) here and handed to the session's
`deliver` callback, which the event loop wires to the connection's bounded output queue. Sessions join and
leave between steps; a session whose step fails is stepped alone and, if it fails again, ended with an error
while the others keep streaming.
"""

from __future__ import annotations

import hashlib
import io
import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine.pipeline import Pipeline, Portrait, Session
from .limits import ServerLimits
from .metrics import ServerMetrics
from .protocol import FLAG_IDLE, ProtocolError, SessionStart, frame_pts_us, pack_frame

log = logging.getLogger("instructavatar.server")

Deliver = Callable[[list[tuple]], None]      # items: ("frame", bytes, arrival_s | None, index) | ("json", dict)


@dataclass
class StreamState:
    """Server-side state of one session. The inbox is shared with the event loop (under `lock`); everything
    else is the worker's."""

    id: str
    start: SessionStart
    deliver: Deliver
    engine: Session | None = None
    portrait_id: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    inbox: deque = field(default_factory=deque)              # (16 kHz float32 samples, arrival monotonic s)
    received16: int = 0                                      # 16 kHz samples put in the inbox (event loop)
    inserted16: int = 0                                      # idle silence the worker added
    real_end: int = 0                                        # session position after the last real sample fed
    arrivals: deque = field(default_factory=deque)           # (session position end, arrival s)
    idle_ranges: deque = field(default_factory=deque)        # (start, end) session positions of idle silence
    idle_log: deque = field(default_factory=lambda: deque(maxlen=4096))   # (input position, inserted so far)
    dropped16: int = 0                                       # audio dropped by interrupt
    t0: float = 0.0                                          # wall clock of session.ready
    ending: bool = False                                     # audio.end: flush, then session.end
    closed: bool = False
    frames: int = 0

    def buffered16(self) -> int:
        """Audio received and not yet rendered (16 kHz samples; read from any thread, approximate)."""
        eng = self.engine
        taken = eng.taken_samples if eng is not None else 0
        return max(0, self.received16 + self.inserted16 - self.dropped16 - taken)


def _understood(pipeline: Pipeline, text: str, warnings: list[str]) -> Any:
    """What the instruction was understood as: Pipeline.understand(text) where the engine has it."""
    understand = getattr(pipeline, "understand", None)
    if not callable(understand):
        return {"text": text, "warnings": warnings}
    try:
        u = understand(text)
    except Exception as e:                                           # never let a report break a session
        return {"text": text, "warnings": warnings + [f"understand failed: {type(e).__name__}"]}
    if u is None:                                                    # the config ships no reference table
        return {"text": text, "warnings": warnings}
    out = {"text": text, "warnings": sorted(set(warnings) | set(getattr(u, "warnings", [])))}
    for name in ("label", "similarity", "nearest", "second", "second_similarity", "unknown_fraction"):
        v = getattr(u, name, None)
        out[name] = round(v, 4) if isinstance(v, float) else v
    reading = getattr(u, "reading", None)
    if reading is not None:                  # issue 28: intensity said by an idiom, hedge or "!", restated
        out["read"] = {"emotion": reading.emotion, "level": reading.level, "cue": reading.cue,
                       "restated": reading.restated}
    if hasattr(u, "describe"):
        out["description"] = u.describe()
    return out


class ModelWorker(threading.Thread):
    def __init__(self, pipeline: Pipeline, limits: ServerLimits, metrics: ServerMetrics, model_name: str = ""):
        super().__init__(name="instructavatar-model-worker", daemon=True)
        self.pipeline, self.limits, self.metrics = pipeline, limits, metrics
        self.model_name = model_name or pipeline.cfg.name
        self.commands: queue.Queue = queue.Queue()
        self.sessions: dict[str, StreamState] = {}
        self.portraits: OrderedDict[str, Portrait] = OrderedDict()
        self._wake = threading.Event()
        self._stopping = False
        self._stage_seen: dict[str, int] = {}
        self.steps = 0
        self.batch_sizes: deque[int] = deque(maxlen=1000)

    # -- called from the event loop (thread-safe) -----------------------------------------------------
    def submit(self, *command) -> None:
        self.commands.put(command)
        self._wake.set()

    def push_audio(self, st: StreamState, samples16: np.ndarray, arrival: float) -> None:
        with st.lock:
            st.inbox.append((samples16, arrival))
            st.received16 += len(samples16)
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    # -- the loop -----------------------------------------------------------------------------------------
    def run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            self._run_commands()
            now = time.monotonic()
            active = [st for st in self.sessions.values() if not st.closed]
            for st in active:
                self._intake(st, now)
            ready = [st for st in active if self._has_chunk(st)]
            if ready:
                self._step(ready)
            for st in active:
                if st.ending and not self._has_chunk(st) and not st.inbox:
                    self._finish(st, "audio_end")
            if not ready:
                self._wake.wait(self._sleep_s(active, time.monotonic()))

    def _sleep_s(self, active: list[StreamState], now: float) -> float:
        wait = 0.5
        for st in active:
            if st.start.idle and not st.ending:
                clock = (st.engine.taken_samples + len(st.engine.pending)) / self.pipeline.cfg.media.sample_rate
                wait = min(wait, st.t0 + clock + self.limits.idle_fill_after_s - now)
        return max(0.002, wait)

    def _has_chunk(self, st: StreamState) -> bool:
        eng = st.engine
        return eng is not None and (len(eng.pending) >= eng.chunk_samples or (eng.audio_ended and len(eng.pending) > 0))

    def _run_commands(self) -> None:
        while True:
            try:
                cmd = self.commands.get_nowait()
            except queue.Empty:
                return
            name, *args = cmd
            try:
                getattr(self, "_cmd_" + name)(*args)
            except ProtocolError as e:
                args[0].deliver([("json", e.to_json())]) if isinstance(args[0], StreamState) else None
            except Exception as e:                                       # a bug: that session only
                log.exception("worker command %s failed", name)
                if isinstance(args[0], StreamState):
                    self._fail(args[0], e)

    # -- commands -------------------------------------------------------------------------------------
    def _portrait(self, data: bytes) -> tuple[str, Portrait]:
        pid = hashlib.sha256(data).hexdigest()[:24]
        p = self.portraits.get(pid)
        if p is None:
            try:
                p = self.pipeline.prepare(data)
            except ValueError as e:
                raise ProtocolError("bad_portrait", f"portrait refused: {e}") from None
            self.portraits[pid] = p
            while len(self.portraits) > self.limits.max_uploaded_portraits:
                self.portraits.popitem(last=False)
        self.portraits.move_to_end(pid)
        return pid, p

    def _cmd_upload(self, deliver: Deliver, data: bytes, request_id) -> None:
        try:
            pid, _ = self._portrait(data)
        except ProtocolError as e:
            e.request_id = request_id
            deliver([("json", e.to_json())])
            return
        deliver([("json", {"type": "portrait.ready", "portrait_id": pid, "request_id": request_id})])

    def _cmd_open(self, st: StreamState, request_id, on_fail: Callable[[], None]) -> None:
        s = st.start
        try:
            if s.portrait is not None:
                pid, portrait = self._portrait(s.portrait)
            else:
                portrait = self.portraits.get(s.portrait_id)
                if portrait is None:
                    raise ProtocolError("unknown_portrait", f"no uploaded portrait with id {s.portrait_id!r} "
                                        "(upload it with portrait.upload, or send its bytes)")
                self.portraits.move_to_end(s.portrait_id)
                pid = s.portrait_id
            sr = self.pipeline.cfg.media.sample_rate
            max_pending = int(self.limits.max_pending_audio_s * sr) + 2 * self.pipeline.cfg.stream.window_frames * 640
            try:
                chunk = s.chunk_frames or self.limits.default_chunk_frames
                engine, warnings = self.pipeline.new_session(portrait, s.instruction, seed=s.seed,
                                                             idle_blinks=s.idle_blinks, chunk_frames=chunk,
                                                             max_pending_samples=max_pending)
            except ValueError as e:
                raise ProtocolError("bad_message", f"session.start: {e}") from None
        except ProtocolError as e:
            e.request_id = request_id
            st.deliver([("json", e.to_json())])
            on_fail()
            return
        st.engine, st.portrait_id = engine, pid
        st.t0 = time.monotonic()
        self.sessions[st.id] = st
        cfg = self.pipeline.cfg
        ready = {
            "type": "session.ready", "request_id": request_id, "protocol": 1, "session_id": st.id,
            "fps": cfg.media.fps, "width": cfg.media.image_size, "height": cfg.media.image_size,
            "sample_rate": sr, "chunk_frames": engine.chunk_frames, "prefix_frames": cfg.stream.prefix_frames,
            "backend": getattr(self.pipeline.backend, "name", "?"), "model": self.model_name,
            "steps": self.pipeline.sampler.num_steps, "portrait_id": pid,
            "instruction": {"text": engine.instruction_text,
                            "understood_as": _understood(self.pipeline, engine.instruction_text, warnings)},
            "warnings": warnings,
            "audio": {"format": s.audio.format, "rate": s.audio.rate, "channels": s.audio.channels},
            "output": {"format": s.output.format, "quality": s.output.quality}, "idle": s.idle,
            "limits": {"max_pending_audio_s": self.limits.max_pending_audio_s,
                       "max_audio_rate": self.limits.max_audio_rate, "idle_timeout_s": self.limits.idle_timeout_s,
                       "max_message_bytes": self.limits.max_message_bytes},
        }
        st.deliver([("ready", ready)])

    def _cmd_instruct(self, st: StreamState, text, at16: int | None, request_id) -> None:
        eng = st.engine
        if st.closed or eng is None:
            return
        if at16 is None:
            where = eng.taken_samples + len(eng.pending)          # "now": the chunk after the audio received
        else:
            where = at16 + self._inserted_before(st, at16)      # input clock -> session clock
        warnings = eng.schedule_instruction(text, where)
        effective = next(e[1] for e in eng.scheduled if e[0] == where)
        st.deliver([("json", {"type": "instruction.ack", "request_id": request_id, "text": effective,
                              "understood_as": _understood(self.pipeline, effective, warnings),
                              "session_sample": int(where), "warnings": warnings})])

    def _inserted_before(self, st: StreamState, at16: int) -> int:
        """Idle silence inserted before input position at16 (16 kHz samples of the client's audio)."""
        total = 0
        for input_pos, cumulative in st.idle_log:             # in order of insertion
            if input_pos > at16:
                break
            total = cumulative
        if at16 >= st.received16:                               # not received yet: everything inserted so far
            total = st.inserted16
        return total

    def _cmd_end(self, st: StreamState) -> None:
        if st.engine is not None and not st.closed:
            st.ending = True

    def _cmd_interrupt(self, st: StreamState, request_id) -> None:
        if st.engine is None or st.closed:
            return
        with st.lock:
            dropped = sum(len(a) for a, _ in st.inbox)
            st.inbox.clear()
            dropped += st.engine.drop_pending()
            st.arrivals.clear()
            st.dropped16 += dropped                             # received but never rendered
        st.real_end = st.engine.taken_samples
        st.t0 = time.monotonic() - st.engine.taken_samples / self.pipeline.cfg.media.sample_rate   # idle from now
        sr = self.pipeline.cfg.media.sample_rate
        st.deliver([("interrupted", {"type": "interrupted", "request_id": request_id,
                                     "dropped_audio_ms": round(1e3 * dropped / sr, 1)})])

    def _cmd_close(self, st: StreamState, reason: str) -> None:
        self._finish(st, reason)

    # -- per loop -------------------------------------------------------------------------------------
    def _intake(self, st: StreamState, now: float) -> None:
        eng = st.engine
        if eng is None:
            return
        with st.lock:
            items = list(st.inbox)
            st.inbox.clear()
        for samples, arrival in items:
            if st.ending:
                eng.audio_ended = False
            eng.pending = np.concatenate([eng.pending, samples])    # bounded at the edge (buffer_full)
            st.real_end = eng.taken_samples + len(eng.pending)
            st.arrivals.append((st.real_end, arrival))
        if st.ending:
            eng.end_audio()
            return
        if items or not st.start.idle:
            return
        sr = self.pipeline.cfg.media.sample_rate
        clock = (eng.taken_samples + len(eng.pending)) / sr
        if now - st.t0 - clock > self.limits.idle_fill_after_s and len(eng.pending) < eng.chunk_samples:
            n = eng.chunk_samples - len(eng.pending)
            start = eng.taken_samples + len(eng.pending)
            eng.feed(np.zeros(n, np.float32))
            st.inserted16 += n
            st.idle_ranges.append((start, start + n))
            st.idle_log.append((st.received16 - st.dropped16, st.inserted16))
            while len(st.idle_ranges) > 4096:
                st.idle_ranges.popleft()
            for i, e in enumerate(eng.scheduled):                # instructions on the input clock move with it
                if e[0] >= start:
                    eng.scheduled[i] = (e[0] + n, *e[1:])

    def _step(self, ready: list[StreamState]) -> None:
        before = {st.id: (st.engine.frames_emitted, st.engine.taken_samples) for st in ready}
        t0 = time.perf_counter()
        try:
            results = self.pipeline.step_ready([st.engine for st in ready], isolate=True)
        except Exception as e:                          # outside any one session's step: these sessions only
            log.exception("scheduler step failed")
            for st in ready:
                self._fail(st, e)
            return
        self.metrics.observe_step(time.perf_counter() - t0, len(ready))
        self._observe_stages()
        self.steps += 1
        self.batch_sizes.append(len(ready))
        by_engine = {id(st.engine): st for st in ready}
        for eng, frames in results:
            st = by_engine[id(eng)]
            if isinstance(frames, Exception):
                self._fail(st, frames)
                continue
            first, a = before[st.id]
            self._emit(st, frames, first, a, eng.taken_samples)

    def _observe_stages(self) -> None:
        t = self.pipeline.timings
        for stage, count in list(t.count.items()):
            new = count - self._stage_seen.get(stage, 0)
            self._stage_seen[stage] = count
            if new > 0:
                for ms in t.recent(stage)[-new:]:
                    self.metrics.stage_seconds.labels(stage=stage).observe(ms / 1e3)

    def _emit(self, st: StreamState, frames: np.ndarray, first: int, a: int, b: int) -> None:
        last_dep = min(b, st.real_end)
        arrival = None
        while st.arrivals and st.arrivals[0][0] < last_dep:
            st.arrivals.popleft()
        if st.arrivals and a < last_dep:
            arrival = st.arrivals[0][1]
        while st.idle_ranges and st.idle_ranges[0][1] <= a:
            st.idle_ranges.popleft()
        idle = any(x < b and y > a for x, y in st.idle_ranges)
        fps = self.pipeline.cfg.media.fps
        out = st.start.output
        items = []
        for k, f in enumerate(frames):
            h, w = f.shape[:2]
            if out.format == "jpeg":
                from PIL import Image

                buf = io.BytesIO()
                Image.fromarray(f).save(buf, format="JPEG", quality=out.quality)
                payload = buf.getvalue()
            else:
                payload = np.ascontiguousarray(f).tobytes()
            idx = first + k
            items.append(("frame", pack_frame(idx, frame_pts_us(idx, fps), w, h, out.format,
                                              FLAG_IDLE if idle else 0, payload), arrival, idx))
        st.frames += len(frames)
        self.metrics.frames.inc(len(frames))
        st.deliver(items)

    def _fail(self, st: StreamState, exc: Exception) -> None:
        log.error("session %s failed: %s: %s", st.id, type(exc).__name__, exc)
        err = ProtocolError("internal", f"session failed in the model worker ({type(exc).__name__}); other sessions "
                                        "are unaffected", fatal=True)
        st.deliver([("json", err.to_json())])
        self._finish(st, "error")

    def _finish(self, st: StreamState, reason: str) -> None:
        if st.closed:
            return
        st.closed = True
        self.sessions.pop(st.id, None)
        sr = self.pipeline.cfg.media.sample_rate
        with st.lock:
            st.inbox.clear()
        totals = {"type": "session.end", "session_id": st.id, "reason": reason, "frames": st.frames,
                  "audio_ms": round(1e3 * st.received16 / sr, 1), "idle_ms": round(1e3 * st.inserted16 / sr, 1),
                  "duration_s": round(time.monotonic() - st.t0, 3) if st.t0 else 0.0}
        st.engine = None
        st.arrivals.clear()
        st.idle_ranges.clear()
        st.deliver([("end", totals)])
