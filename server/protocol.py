"""Protocol v1 of the streaming server: message parsing and validation, binary headers (docs/protocol.md).

Everything that comes off the wire goes through `parse_text` (JSON control messages) or `parse_audio`
(binary audio), which return validated values or raise `ProtocolError(code, message, request_id)` and never
anything else (a property-based test feeds them arbitrary input). Unknown fields are reported back, not fatal;
unknown message types are an error that leaves the session running.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PROTOCOL_VERSION = 1

AUDIO_MAGIC = b"IAA1"
AUDIO_HEADER = struct.Struct("<4sI")            # magic, sequence number (u32, +1 per message)
FRAME_MAGIC = b"IAF1"
FRAME_HEADER = struct.Struct("<4sIqHHBBH")      # magic, frame index, pts (microseconds), width, height,
                                                # format (0 jpeg, 1 rgb), flags (bit 0: idle), reserved
FRAME_FORMATS = {"jpeg": 0, "rgb": 1}
FLAG_IDLE = 1
AUDIO_FORMATS = {"pcm16": np.dtype("<i2"), "float32": np.dtype("<f4")}
MAX_CHANNELS = 8
MIN_RATE, MAX_RATE = 8000, 192000

# stable error codes (docs/protocol.md, "Errors")
ERROR_CODES = (
    "bad_json", "bad_message", "unknown_type", "unsupported_version", "unauthorized", "too_many_sessions",
    "bad_portrait", "unknown_portrait", "not_started", "already_started", "bad_audio", "bad_sequence",
    "audio_too_fast", "buffer_full", "idle_timeout", "internal",
)


class ProtocolError(ValueError):
    """A refused message: `code` (ERROR_CODES), a one-line message, the request id it answers."""

    def __init__(self, code: str, message: str, request_id: Any = None, fatal: bool = False):
        super().__init__(message)
        assert code in ERROR_CODES, code
        self.code, self.message, self.request_id, self.fatal = code, message, request_id, fatal

    def to_json(self) -> dict:
        return {"type": "error", "code": self.code, "message": self.message, "request_id": self.request_id,
                "fatal": self.fatal}


# --------------------------------------------------------------------------------------------- fields
def _str(v, name, max_len=100_000):
    if not isinstance(v, str):
        raise TypeError(f"{name} must be a string")
    if len(v) > max_len:
        raise ValueError(f"{name} is longer than {max_len} characters")
    return v


def _int(v, name, lo=None, hi=None):
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} must be an integer")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name} must be in {lo}..{hi}, got {v}")
    return v


def _bool(v, name):
    if not isinstance(v, bool):
        raise TypeError(f"{name} must be true or false")
    return v


def _choice(v, name, options):
    if not isinstance(v, str) or v not in options:
        raise ValueError(f"{name} must be one of {', '.join(options)}, got {v!r}"[:200])
    return v


def _b64(v, name):
    _str(v, name, max_len=2**31)
    try:
        return base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{name} is not valid base64") from None


@dataclass(frozen=True)
class AudioFormat:
    format: str = "pcm16"
    rate: int = 16000
    channels: int = 1

    @property
    def frame_bytes(self) -> int:
        return AUDIO_FORMATS[self.format].itemsize * self.channels


@dataclass(frozen=True)
class OutputFormat:
    format: str = "jpeg"
    quality: int = 85


@dataclass(frozen=True)
class SessionStart:
    version: int
    portrait: bytes | None
    portrait_id: str | None
    instruction: str | None
    audio: AudioFormat
    output: OutputFormat
    chunk_frames: int | None
    token: str | None
    seed: int
    idle: bool
    idle_blinks: bool


@dataclass(frozen=True)
class Message:
    type: str
    request_id: Any
    body: Any = None                                  # SessionStart, or a dict of the type's fields
    unknown_fields: tuple[str, ...] = field(default_factory=tuple)


def _audio_format(v) -> AudioFormat:
    if not isinstance(v, dict):
        raise TypeError("audio must be an object {format, rate, channels}")
    extra = set(v) - {"format", "rate", "channels"}
    if extra:
        raise ValueError(f"audio has unknown fields: {', '.join(sorted(map(str, extra)))}"[:200])
    return AudioFormat(format=_choice(v.get("format", "pcm16"), "audio.format", tuple(AUDIO_FORMATS)),
                       rate=_int(v.get("rate", 16000), "audio.rate", MIN_RATE, MAX_RATE),
                       channels=_int(v.get("channels", 1), "audio.channels", 1, MAX_CHANNELS))


def _output_format(v) -> OutputFormat:
    if not isinstance(v, dict):
        raise TypeError("output must be an object {format, quality}")
    extra = set(v) - {"format", "quality"}
    if extra:
        raise ValueError(f"output has unknown fields: {', '.join(sorted(map(str, extra)))}"[:200])
    return OutputFormat(format=_choice(v.get("format", "jpeg"), "output.format", tuple(FRAME_FORMATS)),
                        quality=_int(v.get("quality", 85), "output.quality", 1, 100))


# type -> {field: (validator, required)}; "type" and "request_id" are common to all
FIELDS: dict[str, dict[str, tuple]] = {
    "session.start": {
        "version": (lambda v: _int(v, "version"), True),
        "portrait": (lambda v: _b64(v, "portrait"), False),
        "portrait_id": (lambda v: _str(v, "portrait_id", 128), False),
        "instruction": (lambda v: v if v is None else _str(v, "instruction"), False),
        "audio": (_audio_format, False),
        "output": (_output_format, False),
        "chunk_frames": (lambda v: _int(v, "chunk_frames"), False),
        "token": (lambda v: _str(v, "token", 4096), False),
        "seed": (lambda v: _int(v, "seed", 0, 2**63 - 1), False),
        "idle": (lambda v: _bool(v, "idle"), False),
        "idle_blinks": (lambda v: _bool(v, "idle_blinks"), False),
    },
    "portrait.upload": {"data": (lambda v: _b64(v, "data"), True)},
    "instruction.set": {
        "text": (lambda v: v if v is None else _str(v, "text"), True),
        "at_sample": (lambda v: _int(v, "at_sample", 0, 2**53), False),
    },
    "audio.end": {},
    "interrupt": {},
    "keepalive": {},
    "close": {},
}


def _request_id(obj: dict):
    rid = obj.get("request_id")
    if rid is None or isinstance(rid, str) and len(rid) <= 128 or (isinstance(rid, int) and not isinstance(rid, bool)
                                                                 and abs(rid) < 2**53):
        return rid
    return None


def parse_text(text: str | bytes) -> Message:
    """A JSON control message -> Message (validated), or ProtocolError."""
    try:
        obj = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError, UnicodeDecodeError) as e:
        raise ProtocolError("bad_json", f"message is not valid JSON ({type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_json", f"message must be a JSON object, got {type(obj).__name__}")
    rid = _request_id(obj)
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_message", "message has no string field 'type'", rid)
    spec = FIELDS.get(kind)
    if spec is None:
        raise ProtocolError("unknown_type", f"unknown message type {kind[:64]!r}; known: {', '.join(FIELDS)}", rid)
    values = {}
    for name, (check, required) in spec.items():
        if name not in obj:
            if required:
                raise ProtocolError("bad_message", f"{kind} needs the field {name!r}", rid)
            continue
        try:
            values[name] = check(obj[name])
        except (TypeError, ValueError) as e:
            raise ProtocolError("bad_message", f"{kind}: {e}", rid) from None
    unknown = tuple(sorted(str(k)[:64] for k in obj if k not in spec and k not in ("type", "request_id")))
    body: Any = values
    if kind == "session.start":
        body = _session_start(values, rid)
    return Message(kind, rid, body, unknown)


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def _session_start(v: dict, rid) -> SessionStart:
    if v["version"] != PROTOCOL_VERSION:
        raise ProtocolError("unsupported_version",
                            f"protocol version {v['version']} is not supported; this server speaks {PROTOCOL_VERSION}",
                            rid)
    if ("portrait" in v) == ("portrait_id" in v):
        raise ProtocolError("bad_message", "session.start needs exactly one of 'portrait' (base64) or 'portrait_id'",
                            rid)
    return SessionStart(version=v["version"], portrait=v.get("portrait"), portrait_id=v.get("portrait_id"),
                        instruction=v.get("instruction"), audio=v.get("audio", AudioFormat()),
                        output=v.get("output", OutputFormat()), chunk_frames=v.get("chunk_frames"),
                        token=v.get("token"), seed=v.get("seed", 0), idle=v.get("idle", True),
                        idle_blinks=v.get("idle_blinks", True))


def parse_audio(data: bytes, fmt: AudioFormat) -> tuple[int, np.ndarray]:
    """A binary audio message -> (sequence number, (S, channels) float32 in [-1, 1]), or ProtocolError."""
    if len(data) < AUDIO_HEADER.size:
        raise ProtocolError("bad_audio", f"binary message is {len(data)} bytes, shorter than the "
                                         f"{AUDIO_HEADER.size}-byte audio header")
    magic, seq = AUDIO_HEADER.unpack_from(data)
    if magic != AUDIO_MAGIC:
        raise ProtocolError("bad_audio", f"binary message does not start with {AUDIO_MAGIC!r} (got {magic!r})")
    payload = memoryview(data)[AUDIO_HEADER.size:]
    if len(payload) % fmt.frame_bytes:
        raise ProtocolError("bad_audio", f"audio payload is {len(payload)} bytes, not a multiple of "
                                         f"{fmt.frame_bytes} ({fmt.format}, {fmt.channels} channel(s))")
    x = np.frombuffer(payload, AUDIO_FORMATS[fmt.format]).reshape(-1, fmt.channels)
    if fmt.format == "pcm16":
        x = x.astype(np.float32) / 32768.0
    else:
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise ProtocolError("bad_audio", "audio contains NaN or infinite samples; nothing of this message "
                                             "was used")
        if np.abs(x).max(initial=0.0) > 16.0:
            raise ProtocolError("bad_audio", "float32 audio must lie in [-1, 1] (found samples beyond +-16)")
    return seq, x


def pack_audio(seq: int, samples: np.ndarray, fmt: AudioFormat) -> bytes:
    """Client side: (S,) or (S, channels) float audio -> one binary audio message."""
    x = np.asarray(samples, np.float32).reshape(-1, fmt.channels)
    if fmt.format == "pcm16":
        data = (np.clip(x, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
    else:
        data = x.astype("<f4").tobytes()
    return AUDIO_HEADER.pack(AUDIO_MAGIC, seq % 2**32) + data


def pack_frame(index: int, pts_us: int, width: int, height: int, fmt: str, flags: int, payload: bytes) -> bytes:
    return FRAME_HEADER.pack(FRAME_MAGIC, index % 2**32, pts_us, width, height, FRAME_FORMATS[fmt], flags, 0) + payload


@dataclass(frozen=True)
class Frame:
    index: int
    pts_us: int
    width: int
    height: int
    format: str
    idle: bool
    payload: bytes

    @property
    def pts(self) -> float:
        return self.pts_us / 1e6

    def rgb(self) -> np.ndarray:
        """(H, W, 3) uint8."""
        if self.format == "rgb":
            return np.frombuffer(self.payload, np.uint8).reshape(self.height, self.width, 3)
        import io

        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(self.payload)).convert("RGB"))


def parse_frame(data: bytes) -> Frame:
    if len(data) < FRAME_HEADER.size:
        raise ValueError(f"frame message is {len(data)} bytes, shorter than its header")
    magic, index, pts_us, w, h, fmt, flags, _ = FRAME_HEADER.unpack_from(data)
    if magic != FRAME_MAGIC:
        raise ValueError(f"frame message does not start with {FRAME_MAGIC!r}")
    name = {v: k for k, v in FRAME_FORMATS.items()}.get(fmt)
    if name is None:
        raise ValueError(f"unknown frame format {fmt}")
    return Frame(index, pts_us, w, h, name, bool(flags & FLAG_IDLE), bytes(data[FRAME_HEADER.size:]))


def frame_pts_us(index: int, fps: int) -> int:
    """Presentation time of frame `index` on the session's audio sample clock."""
    return int(math.floor(index * 1_000_000 / fps + 0.5))
