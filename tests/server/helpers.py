"""Small raw-websocket helpers for the server tests (the client library is tested separately)."""

from __future__ import annotations

import base64
import json
import time

from websockets.exceptions import ConnectionClosed

from instructavatar.server.client import ws_connect as connect
from instructavatar.server.protocol import AudioFormat, pack_audio, parse_frame


def start_msg(portrait: bytes | None = None, **kw) -> str:
    msg = {"type": "session.start", "version": 1, "request_id": "start"}
    if portrait is not None:
        msg["portrait"] = base64.b64encode(portrait).decode()
    msg.update(kw)
    return json.dumps(msg)


def recv_json(ws, types=None, timeout=30) -> dict:
    """Next JSON message (frames skipped), optionally of given types (others skipped too)."""
    deadline = time.monotonic() + timeout
    while True:
        m = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(m, bytes):
            continue
        ev = json.loads(m)
        if types is None or ev["type"] in types:
            return ev


def open_session(url, portrait: bytes, **kw):
    ws = connect(url, max_size=2**26, compression=None)
    ws.send(start_msg(portrait, **kw))
    ready = recv_json(ws, {"session.ready", "error"})
    assert ready["type"] == "session.ready", ready
    return ws, ready


def send_audio(ws, audio, piece: int = 1600, fmt: AudioFormat | None = None, seq0: int = 0) -> int:
    fmt, seq = fmt or AudioFormat(), seq0
    for i in range(0, len(audio), piece):
        ws.send(pack_audio(seq, audio[i:i + piece], fmt))
        seq += 1
    return seq


def collect(ws, timeout=60):
    """Frames and JSON events until the server closes the connection."""
    frames, events = [], []
    deadline = time.monotonic() + timeout
    try:
        while True:
            m = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            if isinstance(m, bytes):
                frames.append(parse_frame(m))
            else:
                events.append(json.loads(m))
    except ConnectionClosed:
        pass
    return frames, events
