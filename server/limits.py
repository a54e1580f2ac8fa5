"""Named limits and settings of the streaming server, checked at the edge (server/app.py).

One frozen dataclass so `instructavatar serve` flags, tests and the benchmark all name the same knobs.
"""

from __future__ import annotations

from dataclasses import dataclass

# `instructavatar serve`'s chunk length for sessions that name none: 4 frames (160 ms). Measured against 2, 6 and
# 10 (benchmarks/RESULTS.md, "Server"): the same lip sync and AU_F1 as 10 in `train quality streaming`, a latency
# floor of 160 ms instead of 400 ms, for 1.2x the compute per frame of 10 (2 frames: 1.5x).
SERVE_DEFAULT_CHUNK_FRAMES = 4


@dataclass(frozen=True)
class ServerLimits:
    max_sessions: int = 8                    # concurrent sessions; one more is refused (too_many_sessions)
    max_message_bytes: int = 8 * 2**20       # any websocket message; larger closes with 1009 (message too big)
    max_portrait_bytes: int = 4 * 2**20      # decoded portrait image bytes (base64 in JSON is 4/3 of this)
    max_audio_rate: float = 4.0              # audio may arrive at most this many times faster than real time ...
    audio_burst_s: float = 10.0              # ... plus this many seconds ahead of the wall clock
    max_pending_audio_s: float = 20.0        # audio buffered but not yet rendered, per session (buffer_full)
    idle_timeout_s: float = 60.0             # no message (audio, keepalive, anything) for this long: session ends
    out_queue_frames: int = 50               # frames waiting to be sent per session; past it the oldest is dropped
    stats_interval_s: float = 1.0            # how often `stats` is sent (0 = never)
    idle_fill_after_s: float = 0.5           # no audio for this long past the audio clock: render silence (idle)
    max_uploaded_portraits: int = 64         # prepared portraits kept for `portrait_id` (least recently used go)
    max_instruction_chars: int = 1000
    default_chunk_frames: int | None = None  # a session's chunk length when session.start names none (None: the
                                             # config's); benchmarks/RESULTS.md "Server" measures the choice
    token: str | None = None                 # shared secret; session.start must carry it (constant-time compare)
    allowed_origins: tuple[str, ...] | None = None   # browser origins allowed; None = any (loopback default)

    def __post_init__(self):
        for name in ("max_sessions", "max_message_bytes", "max_portrait_bytes", "out_queue_frames",
                     "max_uploaded_portraits", "max_instruction_chars"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ServerLimits.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_audio_rate", "max_pending_audio_s", "idle_timeout_s"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"ServerLimits.{name} must be > 0, got {getattr(self, name)}")
