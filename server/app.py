"""The websocket server: protocol v1 at the edge, HTTP health/metrics/browser page, one model worker.

`AvatarServer(pipeline, limits)` serves on the `websockets` package's asyncio API. Each connection carries at
most one session. The event loop only parses and checks messages (server/protocol.py), resamples audio to
16 kHz, and sends what the model worker (server/worker.py) hands back; it never runs model code. Per session
the outgoing frames wait in a bounded queue: when a client reads too slowly the oldest queued frame is
dropped (every frame keeps its index and timestamp, drops are counted in `stats` and `session.end`).

HTTP (same port): GET /healthz (JSON), GET /metrics (Prometheus text), GET / (the browser client,
server/static/). The websocket endpoint is any path with an Upgrade header (the page uses /ws).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import threading
import time
from collections import deque
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ..engine.loader import ASSETS
from ..engine.media.audio_io import AudioInputError, StreamResampler
from ..engine.pipeline import Pipeline
from .limits import ServerLimits
from .metrics import ServerMetrics
from .protocol import PROTOCOL_VERSION, Message, ProtocolError, SessionStart, parse_audio, parse_text
from .worker import ModelWorker, StreamState

log = logging.getLogger("instructavatar.server")
STATIC = Path(__file__).resolve().parent / "static"
DEMO_PORTRAIT = ASSETS / "demo_portrait.png"
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8"}
CLOSE_POLICY, CLOSE_TRY_LATER, CLOSE_INTERNAL = 1008, 1013, 1011


class AvatarServer:
    def __init__(self, pipeline: Pipeline, limits: ServerLimits | None = None, model_name: str = ""):
        self.pipeline = pipeline
        self.limits = limits or ServerLimits()
        self.metrics = ServerMetrics()
        self.worker = ModelWorker(pipeline, self.limits, self.metrics, model_name)
        self.active = 0                       # sessions holding a slot (starting or streaming)
        self.connections: set[Connection] = set()
        self._server = None
        self.port: int | None = None

    # -- lifecycle --------------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 8765):
        if not self.worker.is_alive():
            self.worker.start()
        origins = None if self.limits.allowed_origins is None else [None, *self.limits.allowed_origins]
        self._server = await serve(self._handle, host, port, max_size=self.limits.max_message_bytes,
                                   origins=origins, process_request=self._process_request, compression=None,
                                   ping_interval=20, ping_timeout=20, max_queue=64)
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.worker.stop()

    async def serve_forever(self, host: str, port: int, announce=None) -> None:
        await self.start(host, port)
        if announce is not None:
            announce(self.port)
        try:
            await asyncio.Future()
        finally:
            await self.stop()

    # -- HTTP -------------------------------------------------------------------------------------------
    def _process_request(self, connection: ServerConnection, request):
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            body = json.dumps({"status": "ok", "protocol": PROTOCOL_VERSION, "sessions": self.active,
                               "max_sessions": self.limits.max_sessions, "worker_alive": self.worker.is_alive(),
                               "backend": getattr(self.pipeline.backend, "name", "?"), "model": self.worker.model_name})
            return _respond(connection, 200 if self.worker.is_alive() else 503, body, "application/json")
        if path == "/metrics":
            return _respond(connection, 200, self.metrics.render().decode(), CONTENT_TYPE_LATEST)
        if path == "/portrait.png" and DEMO_PORTRAIT.is_file():             # the browser page's default portrait
            return _respond_bytes(connection, DEMO_PORTRAIT.read_bytes(), "image/png")
        name = {"/": "index.html"}.get(path, path.removeprefix("/static/") if path.startswith("/static/") else None)
        files = {p.name: p for p in STATIC.iterdir()} if STATIC.is_dir() else {}
        if name in files and files[name].suffix in STATIC_TYPES:          # a fixed set of names: no traversal
            return _respond(connection, 200, files[name].read_text(), STATIC_TYPES[files[name].suffix])
        return _respond(connection, 404, "not found\n", "text/plain; charset=utf-8")

    async def _handle(self, ws: ServerConnection) -> None:
        conn = Connection(self, ws)
        self.connections.add(conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)


def _respond_bytes(connection: ServerConnection, body: bytes, content_type: str):
    r = connection.respond(200, "")
    r.body = body
    for name, value in (("Content-Length", str(len(body))), ("Content-Type", content_type)):
        del r.headers[name]                       # Headers is a multi-dict: replace, never add a second
        r.headers[name] = value
    return r


def _respond(connection: ServerConnection, status: int, text: str, content_type: str):
    r = connection.respond(status, text)
    del r.headers["Content-Type"]
    r.headers["Content-Type"] = content_type
    r.headers["Cache-Control"] = "no-store"
    return r


class Connection:
    """One websocket: at most one session. Runs on the event loop; `deliver` is the worker's way in."""

    def __init__(self, server: AvatarServer, ws: ServerConnection):
        self.server, self.ws, self.limits = server, ws, server.limits
        self.loop = asyncio.get_running_loop()
        self.out: deque = deque()
        self.out_frames = 0
        self.wake = asyncio.Event()
        self.state: StreamState | None = None
        self.start: SessionStart | None = None
        self.resampler: StreamResampler | None = None
        self.holds_slot = False
        self.ready = False
        self.finished = False
        self.next_seq: int | None = None
        self.audio_ended = False
        self.gone = False                          # run() has finished: nothing more is sent
        self.audio_in_s = 0.0
        self.t_start = 0.0
        self.sent = self.dropped = 0
        self.latency_ms: deque[float] = deque(maxlen=4096)

    # -- from the worker thread ---------------------------------------------------------------------------
    def deliver(self, items: list[tuple]) -> None:
        try:
            self.loop.call_soon_threadsafe(self._enqueue, items)
        except RuntimeError:                       # the loop is gone (server shut down)
            pass

    def _enqueue(self, items: list[tuple]) -> None:
        cap = self.limits.out_queue_frames
        for it in items:
            kind = it[0]
            if kind == "frame":
                if self.finished:
                    continue
                if self.out_frames >= cap:
                    self._drop_oldest_frame()
                self.out.append(it)
                self.out_frames += 1
            elif kind == "interrupted":
                msg = dict(it[1])
                n = self._drop_all_frames(count=False)
                msg["dropped_frames"] = n
                self.out.append(("json", msg))
            elif kind == "ready":
                if self.gone:                      # the client left while its session was being opened
                    continue
                self.ready = True
                self.t_start = time.monotonic()
                self.server.metrics.sessions.inc()
                self.server.metrics.sessions_started.inc()
                self.out.append(("json", it[1]))
            elif kind == "end":
                self.out.append(it)
            else:
                self.out.append(it)
        self.server.metrics.out_queue.set(sum(c.out_frames for c in self.server.connections))
        self.wake.set()

    def _drop_oldest_frame(self) -> None:
        for i, it in enumerate(self.out):
            if it[0] == "frame":
                del self.out[i]
                self.out_frames -= 1
                self.dropped += 1
                self.server.metrics.drops.inc()
                return

    def _drop_all_frames(self, count: bool) -> int:
        kept = deque(it for it in self.out if it[0] != "frame")
        n = len(self.out) - len(kept)
        self.out, self.out_frames = kept, 0
        if count:
            self.dropped += n
        return n

    # -- sending ------------------------------------------------------------------------------------------
    async def _sender(self) -> None:
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                while self.out:
                    it = self.out.popleft()
                    kind = it[0]
                    if kind == "frame":
                        self.out_frames -= 1
                        await self.ws.send(it[1])
                        self.sent += 1
                        self.server.metrics.frames_sent.inc()
                        if it[2] is not None:
                            lat = time.monotonic() - it[2]
                            self.latency_ms.append(lat * 1e3)
                            self.server.metrics.audio_to_frame.observe(lat)
                    elif kind == "json":
                        await self.ws.send(json.dumps(it[1]))
                    elif kind == "end":
                        totals = dict(it[1], frames_sent=self.sent, frames_dropped=self.dropped,
                                      latency_ms=self._latency_summary())
                        self._session_over()
                        await self.ws.send(json.dumps(totals))
                        await self.ws.close(1000, totals["reason"][:100])
                        return
                    elif kind == "close":
                        await self.ws.close(it[1], it[2])
                        return
        except ConnectionClosed:
            return

    def _send_json(self, msg: dict) -> None:
        self.out.append(("json", msg))
        self.wake.set()

    def _error(self, e: ProtocolError) -> None:
        self.server.metrics.refused.labels(code=e.code).inc()
        self._send_json(e.to_json())

    def _fatal(self, e: ProtocolError, close_code: int) -> None:
        e.fatal = True
        self._error(e)
        self.out.append(("close", close_code, e.code))
        self.wake.set()

    def _session_over(self) -> None:
        if self.ready:
            self.server.metrics.sessions.dec()
            self.ready = False
        self.finished = True
        self._release_slot()

    def _release_slot(self) -> None:
        if self.holds_slot:
            self.holds_slot = False
            self.server.active -= 1

    # -- receiving ----------------------------------------------------------------------------------------
    async def run(self) -> None:
        sender = asyncio.create_task(self._sender())
        stats = asyncio.create_task(self._stats_loop())
        try:
            while not sender.done():
                try:
                    msg = await asyncio.wait_for(self.ws.recv(), timeout=self.limits.idle_timeout_s)
                except (TimeoutError, asyncio.TimeoutError):
                    self._idle_timeout()
                    break
                except ConnectionClosed:
                    break
                try:
                    if isinstance(msg, bytes):
                        self._on_audio(msg)
                    else:
                        self._on_text(msg)
                except ProtocolError as e:
                    if e.fatal:
                        break
                    self._error(e)
        finally:
            self.gone = True
            stats.cancel()
            st = self.state
            if st is not None and not st.closed:
                self.server.worker.submit("close", st, "disconnected")
            if self.ws.state.name in ("OPEN", "CLOSING"):
                try:
                    await asyncio.wait_for(sender, timeout=5)
                except (TimeoutError, asyncio.TimeoutError):
                    sender.cancel()
            else:
                sender.cancel()
            if self.ready:
                self.server.metrics.sessions.dec()
                self.ready = False
            self._release_slot()
            self.out.clear()

    def _idle_timeout(self) -> None:
        e = ProtocolError("idle_timeout", f"no message for {self.limits.idle_timeout_s:g} s; session ended",
                          fatal=True)
        self._error(e)
        st = self.state
        if st is not None and not st.closed:
            self.server.worker.submit("close", st, "idle_timeout")        # session.end, then close
        else:
            self.out.append(("close", 1000, "idle_timeout"))
            self.wake.set()

    async def _stats_loop(self) -> None:
        every = self.limits.stats_interval_s
        if not every or every <= 0:
            return
        while True:
            await asyncio.sleep(every)
            if self.ready and self.state is not None and not self.finished:
                self._send_json(self.stats())

    def _latency_summary(self) -> dict:
        """Audio-to-frame latency of the last frames sent (up to 4096): p50, p95, max, last, count."""
        lat = sorted(self.latency_ms)

        def q(p):
            return None if not lat else round(lat[min(len(lat) - 1, int(p * len(lat)))], 1)

        return {"p50": q(0.5), "p95": q(0.95), "max": q(1.0),
                "last": round(self.latency_ms[-1], 1) if self.latency_ms else None, "count": len(lat)}

    def stats(self) -> dict:
        st, sr = self.state, self.server.pipeline.cfg.media.sample_rate
        return {"type": "stats", "session_id": st.id, "frames_rendered": st.frames, "frames_sent": self.sent,
                "frames_dropped": self.dropped, "out_queue_frames": self.out_frames,
                "audio_buffered_ms": round(1e3 * st.buffered16() / sr, 1),
                "audio_received_ms": round(1e3 * st.received16 / sr, 1),
                "idle_inserted_ms": round(1e3 * st.inserted16 / sr, 1),
                "latency_ms": self._latency_summary()}

    def _on_text(self, text: str) -> None:
        msg = parse_text(text)
        if msg.unknown_fields:
            self._send_json({"type": "warning", "code": "unknown_field", "request_id": msg.request_id,
                             "message": f"ignored unknown field(s) of {msg.type}: {', '.join(msg.unknown_fields)}"})
        getattr(self, "_on_" + msg.type.replace(".", "_"))(msg)

    def _need_session(self, msg: Message) -> StreamState:
        if self.state is None or self.state.closed:
            raise ProtocolError("not_started", f"{msg.type} needs a session: send session.start first", msg.request_id)
        return self.state

    def _on_session_start(self, msg: Message) -> None:
        s: SessionStart = msg.body
        rid, lim = msg.request_id, self.limits
        if self.state is not None:
            raise ProtocolError("already_started", "this connection already has a session (one per connection)", rid)
        if lim.token is not None and not hmac.compare_digest((s.token or "").encode(), lim.token.encode()):
            self._fatal(ProtocolError("unauthorized", "missing or wrong token", rid), CLOSE_POLICY)
            raise ProtocolError("unauthorized", "", rid, fatal=True)
        if s.portrait is not None and len(s.portrait) > lim.max_portrait_bytes:
            raise ProtocolError("bad_portrait", f"portrait is {len(s.portrait)} bytes; the limit is "
                                f"{lim.max_portrait_bytes}", rid)
        if s.instruction is not None and len(s.instruction) > lim.max_instruction_chars:
            raise ProtocolError("bad_message", f"instruction is longer than {lim.max_instruction_chars} characters",
                                rid)
        if self.server.active >= lim.max_sessions:
            self._fatal(ProtocolError("too_many_sessions", f"the server is at its limit of {lim.max_sessions} "
                                      "sessions; try again later", rid), CLOSE_TRY_LATER)
            raise ProtocolError("too_many_sessions", "", rid, fatal=True)
        try:
            self.resampler = StreamResampler(s.audio.rate, self.server.pipeline.cfg.media.sample_rate,
                                             s.audio.channels)
        except AudioInputError as e:
            raise ProtocolError("bad_message", f"session.start audio: {e}", rid) from None
        self.server.active += 1
        self.holds_slot = True
        self.start = s
        self.state = StreamState(id=secrets.token_hex(8), start=s, deliver=self.deliver)
        self.t_start = time.monotonic()
        self.server.worker.submit("open", self.state, rid, self._open_failed)

    def _open_failed(self) -> None:              # worker thread
        def undo():
            self.state = None
            self.start = None
            self._release_slot()
        try:
            self.loop.call_soon_threadsafe(undo)
        except RuntimeError:
            pass

    def _on_portrait_upload(self, msg: Message) -> None:
        data = msg.body["data"]
        if len(data) > self.limits.max_portrait_bytes:
            raise ProtocolError("bad_portrait", f"portrait is {len(data)} bytes; the limit is "
                                f"{self.limits.max_portrait_bytes}", msg.request_id)
        self.server.worker.submit("upload", self.deliver, data, msg.request_id)

    def _on_instruction_set(self, msg: Message) -> None:
        st = self._need_session(msg)
        text, at = msg.body["text"], msg.body.get("at_sample")
        if text is not None and len(text) > self.limits.max_instruction_chars:
            raise ProtocolError("bad_message", f"instruction is longer than {self.limits.max_instruction_chars} "
                                "characters", msg.request_id)
        sr = self.server.pipeline.cfg.media.sample_rate
        at16 = None if at is None else int(round(at * sr / self.start.audio.rate))
        self.server.worker.submit("instruct", st, text, at16, msg.request_id)

    def _on_audio_end(self, msg: Message) -> None:
        st = self._need_session(msg)
        self.audio_ended = True
        tail = self.resampler.flush()
        if len(tail):
            self.server.worker.push_audio(st, tail, time.monotonic())
        self.server.worker.submit("end", st)

    def _on_interrupt(self, msg: Message) -> None:
        st = self._need_session(msg)
        self._drop_all_frames(count=False)
        self.server.worker.submit("interrupt", st, msg.request_id)

    def _on_keepalive(self, msg: Message) -> None:
        pass                                      # receiving it reset the idle timer

    def _on_close(self, msg: Message) -> None:
        st = self.state
        if st is None or st.closed:
            self.out.append(("close", 1000, "client_close"))
            self.wake.set()
            return
        self.server.worker.submit("close", st, "client_close")

    def _on_audio(self, data: bytes) -> None:
        st = self.state
        if st is None or st.closed:
            raise ProtocolError("not_started", "binary audio needs a session: send session.start first")
        if st.ending or self.audio_ended:
            raise ProtocolError("bad_audio", "audio after audio.end is refused")
        fmt = self.start.audio
        seq, x = parse_audio(data, fmt)
        if self.next_seq is not None and seq != self.next_seq:
            if (seq - self.next_seq) % 2**32 >= 2**31:          # older than expected: a repeat or reordering
                raise ProtocolError("bad_sequence", f"audio sequence number {seq} is not after the previous one "
                                    f"(expected {self.next_seq}); message dropped")
            self._send_json({"type": "warning", "code": "audio_gap", "request_id": None,
                             "message": f"audio sequence jumped from {self.next_seq} to {seq}: "
                                        f"{(seq - self.next_seq) % 2**32} message(s) missing"})
        seconds = len(x) / fmt.rate
        elapsed = time.monotonic() - self.t_start
        if self.audio_in_s + seconds > self.limits.max_audio_rate * elapsed + self.limits.audio_burst_s:
            raise ProtocolError("audio_too_fast", f"audio is arriving faster than {self.limits.max_audio_rate:g}x "
                                f"real time (+{self.limits.audio_burst_s:g} s); message {seq} dropped, resend later")
        sr = self.server.pipeline.cfg.media.sample_rate
        if st.buffered16() + seconds * sr > self.limits.max_pending_audio_s * sr:
            raise ProtocolError("buffer_full", f"more than {self.limits.max_pending_audio_s:g} s of audio waiting to "
                                f"be rendered; message {seq} dropped, resend later")
        self.next_seq = (seq + 1) % 2**32
        self.audio_in_s += seconds
        samples16 = self.resampler.push(x)
        if len(samples16):
            self.server.worker.push_audio(st, samples16, time.monotonic())


def run_server(pipeline: Pipeline, host: str = "127.0.0.1", port: int = 8765, limits: ServerLimits | None = None,
               model_name: str = "", announce=None) -> None:
    """Blocking: serve until interrupted (Ctrl-C). `announce(port)` is called once listening."""
    server = AvatarServer(pipeline, limits, model_name)
    try:
        asyncio.run(server.serve_forever(host, port, announce))
    except KeyboardInterrupt:
        pass


class ServerThread:
    """An AvatarServer on its own event loop in a background thread (tests, benchmarks, embedding)."""

    def __init__(self, pipeline: Pipeline, limits: ServerLimits | None = None, host: str = "127.0.0.1",
                 port: int = 0, model_name: str = ""):
        self.server = AvatarServer(pipeline, limits, model_name)
        self.host = host
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(host, port), daemon=True, name="avatar-server")

    def _run(self, host, port):
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self.server.start(host, port))
        self._started.set()
        self._loop.run_forever()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError("server did not start")
        return self

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.server.port}/ws"

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.server.port}"

    def call(self, fn):
        """Run fn() on the server's loop and return its result (for inspecting state from tests)."""
        done = threading.Event()
        box = {}

        def wrap():
            box["v"] = fn()
            done.set()
        self._loop.call_soon_threadsafe(wrap)
        done.wait(10)
        return box.get("v")

    def __exit__(self, *exc) -> None:
        fut = asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop)
        try:
            fut.result(15)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(15)
            self.server.worker.join(15)
