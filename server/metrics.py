"""Prometheus metrics of the streaming server (prometheus-client), one registry per server instance.

Served as text at GET /metrics. Names are prefixed `instructavatar_`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 4.0)
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


class ServerMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions = Gauge("instructavatar_sessions", "Sessions streaming now", registry=r)
        self.sessions_started = Counter("instructavatar_sessions_started", "Sessions started", registry=r)
        self.refused = Counter("instructavatar_refused", "Messages or sessions refused, by error code", ["code"],
                               registry=r)
        self.frames = Counter("instructavatar_frames_rendered", "Frames rendered by the model worker", registry=r)
        self.frames_sent = Counter("instructavatar_frames_sent", "Frames sent to clients", registry=r)
        self.drops = Counter("instructavatar_frames_dropped", "Frames dropped for slow readers", registry=r)
        self.audio_to_frame = Histogram("instructavatar_audio_to_frame_seconds",
                                        "From the arrival of the last audio sample a frame depends on to the frame "
                                        "leaving the server", buckets=LATENCY_BUCKETS, registry=r)
        self.stage_seconds = Histogram("instructavatar_stage_seconds", "Model stage wall time per call", ["stage"],
                                       buckets=STAGE_BUCKETS, registry=r)
        self.step_seconds = Histogram("instructavatar_step_seconds", "One scheduler step (all ready sessions)",
                                      buckets=STAGE_BUCKETS + (2.0,), registry=r)
        self.batch = Histogram("instructavatar_step_sessions", "Sessions advanced per scheduler step",
                               buckets=(1, 2, 3, 4, 6, 8, 12, 16), registry=r)
        self.out_queue = Gauge("instructavatar_out_queue_frames", "Frames waiting to be sent, all sessions", registry=r)
        self.audio_queue = Gauge("instructavatar_audio_queue_seconds", "Audio buffered and not yet rendered, all "
                                 "sessions", registry=r)

    def observe_step(self, seconds: float, sessions: int) -> None:
        self.step_seconds.observe(seconds)
        self.batch.observe(sessions)

    def render(self) -> bytes:
        return generate_latest(self.registry)
