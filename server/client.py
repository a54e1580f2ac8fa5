"""Python client of the streaming server (protocol v1, docs/protocol.md).

    with AvatarClient("ws://127.0.0.1:8765/ws") as c:
        ready = c.start(portrait="face.png", instruction="smile", audio_rate=16000)
        c.send_audio(samples)                 # float (S,) at audio_rate; any size; paced by the caller
        c.end()                               # flush: the remaining frames, then session.end
        for frame in c.frames():              # protocol.Frame (index, pts, rgb()) until session.end
            ...

A reader thread collects everything the server sends: frames go to `frames()`, JSON events to `events`
(errors too; `errors` lists them). `render(url, portrait, audio, ...)` does a whole file in one call.
"""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from .protocol import PROTOCOL_VERSION, AudioFormat, Frame, pack_audio, parse_frame

_END = object()


def ws_connect(url: str, **kw):
    """websockets' sync connect for direct (non-context-manager) use, without its deprecation warning."""
    try:
        return connect(url, legacy=True, **kw)
    except TypeError:                               # websockets < 17 has no `legacy` flag
        return connect(url, **kw)


class ServerError(RuntimeError):
    def __init__(self, event: dict):
        super().__init__(f"{event.get('code')}: {event.get('message')}")
        self.event = event


class AvatarClient:
    def __init__(self, url: str = "ws://127.0.0.1:8765/ws", open_timeout: float = 30,
                 max_size: int | None = 64 * 2**20, origin: str | None = None):
        self.ws = ws_connect(url, open_timeout=open_timeout, max_size=max_size, compression=None,
                          origin=origin)
        self.events: list[dict] = []
        self.errors: list[dict] = []
        self.ready: dict | None = None
        self.end_event: dict | None = None
        self._frames: queue.Queue = queue.Queue()
        self._json: queue.Queue = queue.Queue()
        self._seq = 0
        self._fmt = AudioFormat()
        self._reader = threading.Thread(target=self._read, daemon=True, name="avatar-client-reader")
        self._reader.start()

    # -- plumbing -------------------------------------------------------------------------------------
    def _read(self) -> None:
        try:
            for msg in self.ws:
                if isinstance(msg, bytes):
                    self._frames.put(parse_frame(msg))
                    continue
                ev = json.loads(msg)
                self.events.append(ev)
                if ev.get("type") == "error":
                    self.errors.append(ev)
                if ev.get("type") == "session.end":
                    self.end_event = ev
                self._json.put(ev)
        except ConnectionClosed:
            pass
        finally:
            self._frames.put(_END)
            self._json.put(_END)

    def send_json(self, msg: dict) -> None:
        self.ws.send(json.dumps(msg))

    def wait_for(self, *types: str, timeout: float = 60) -> dict:
        """The next JSON event of one of `types` (others are kept in `events`); ServerError on an error."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                ev = self._json.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no {'/'.join(types)} within {timeout} s") from None
            if ev is _END:
                raise ConnectionError(f"connection closed before {'/'.join(types)}")
            if ev.get("type") in types:
                return ev
            if ev.get("type") == "error" and "error" not in types:
                raise ServerError(ev)

    # -- protocol -------------------------------------------------------------------------------------
    def upload_portrait(self, portrait, request_id: str = "upload") -> str:
        self.send_json({"type": "portrait.upload", "data": _b64(portrait), "request_id": request_id})
        return self.wait_for("portrait.ready")["portrait_id"]

    def start(self, portrait=None, portrait_id: str | None = None, instruction: str | None = None,
              audio_format: str = "pcm16", audio_rate: int = 16000, channels: int = 1,
              chunk_frames: int | None = None, output: str = "jpeg", quality: int = 85, token: str | None = None,
              seed: int = 0, idle: bool = True, timeout: float = 60, **extra) -> dict:
        msg = {"type": "session.start", "version": PROTOCOL_VERSION, "request_id": "start",
               "audio": {"format": audio_format, "rate": audio_rate, "channels": channels},
               "output": {"format": output, "quality": quality}, "seed": seed, "idle": idle}
        if portrait_id is not None:
            msg["portrait_id"] = portrait_id
        else:
            msg["portrait"] = _b64(portrait)
        for k, v in (("instruction", instruction), ("chunk_frames", chunk_frames), ("token", token)):
            if v is not None:
                msg[k] = v
        msg.update(extra)
        self._fmt = AudioFormat(audio_format, audio_rate, channels)
        self.send_json(msg)
        self.ready = self.wait_for("session.ready", timeout=timeout)
        return self.ready

    def send_audio(self, samples: np.ndarray) -> None:
        """(S,) or (S, channels) float audio in [-1, 1] at the session's rate, as one binary message."""
        self.ws.send(pack_audio(self._seq, samples, self._fmt))
        self._seq += 1

    def stream_audio(self, samples: np.ndarray, piece_s: float = 0.1, speed: float | None = 1.0) -> None:
        """Send audio in pieces of `piece_s` seconds, at `speed` x real time (None: as fast as possible)."""
        n = max(1, int(round(piece_s * self._fmt.rate)))
        t0 = time.monotonic()
        for i in range(0, len(samples), n):
            if speed:
                wait = t0 + i / self._fmt.rate / speed - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            self.send_audio(samples[i:i + n])

    def set_instruction(self, text: str | None, at_sample: int | None = None, request_id: str = "instruct") -> None:
        msg = {"type": "instruction.set", "text": text, "request_id": request_id}
        if at_sample is not None:
            msg["at_sample"] = int(at_sample)
        self.send_json(msg)

    def end(self) -> None:
        self.send_json({"type": "audio.end"})

    def interrupt(self) -> None:
        self.send_json({"type": "interrupt", "request_id": "interrupt"})

    def keepalive(self) -> None:
        self.send_json({"type": "keepalive"})

    def close_session(self) -> None:
        self.send_json({"type": "close"})

    def frames(self, timeout: float = 120) -> Iterator[Frame]:
        """Frames until the connection ends (after session.end)."""
        while True:
            f = self._frames.get(timeout=timeout)
            if f is _END:
                return
            yield f

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self._reader.join(5)

    def __enter__(self) -> AvatarClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _b64(portrait) -> str:
    if isinstance(portrait, (bytes, bytearray)):
        data = bytes(portrait)
    elif isinstance(portrait, (str, Path)):
        data = Path(portrait).read_bytes()
    else:
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.asarray(portrait, np.uint8)).save(buf, format="PNG")
        data = buf.getvalue()
    return base64.b64encode(data).decode("ascii")


def render(url: str, portrait, audio: np.ndarray, rate: int = 16000, instruction: str | None = None,
           speed: float | None = 2.0, piece_s: float = 0.1, **start) -> tuple[list[Frame], dict, dict]:
    """Stream a whole clip through the server: (frames received, session.ready, session.end)."""
    with AvatarClient(url) as c:
        ready = c.start(portrait, instruction=instruction, audio_rate=rate, **start)
        frames: list[Frame] = []
        reader = threading.Thread(target=lambda: frames.extend(c.frames()), daemon=True)
        reader.start()
        c.stream_audio(audio, piece_s=piece_s, speed=speed)
        c.end()
        reader.join()
        if c.end_event is None:
            raise ServerError(c.errors[-1] if c.errors else {"code": "closed", "message": "no session.end"})
        return frames, ready, c.end_event
