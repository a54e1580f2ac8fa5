"""From portrait + audio + instruction to frames, offline or chunk by chunk.

Pipeline (shared, stateless apart from timings) owns the backend, tokenizer and DDIM schedule.
Session (one per avatar stream) owns everything that belongs to one user: the cached appearance latent
and keyframe, the instruction tensors, the motion prefix and audio carried between chunks, the frame
clock and the random generator. `Pipeline.step(sessions, chunks)` advances several sessions by one chunk
as one batch; a session's `push_audio` / `flush` call it for one.

Streaming: audio is cut into chunks of `chunk_frames` video frames (640 samples each at 16 kHz/25 fps).
Each chunk is sampled as a window = [prefix of `prefix_frames` previous frames | chunk]; the prefix's
motion is the motion already emitted, given to the denoiser clean and flagged `known` at every DDIM step
(the model is trained with such prefixes), and its audio is the audio already heard, so the new frames
continue the old ones. Offline generation is
the same loop over the whole input, so streaming and offline give identical frames however the input
audio is split.

Idle blinks (models with `audio.blink_cue`, the demo config): each session has a `BlinkSchedule`
(engine/blinks.py) whose per-frame cue for the window's frames goes to the audio encoder with the audio, so the
engine decides when the avatar blinks and the model renders it; the cue depends on the seed and the frame index
only, so it too is the same however the audio is split.

Instruction guidance (`guidance` g > 1, classifier-free-guidance style with the neutral default instruction
as the reference): for a session whose instruction is not the default one, every DDIM step also runs the
denoiser with the default instruction (same noisy motion, audio and keyframe, in the same batch) and uses
x0 = x0_neutral + g * (x0_instructed - x0_neutral): what the instruction changes is amplified, what the audio
drives is shared by both and kept. It costs one extra denoiser row per guided session per step.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .backend import Backend, InstructionTensors
from .blinks import BlinkSchedule
from .chunk_loop import denoise_chunk, draw_step_noise
from .config import ModelConfig
from .ddim import DDIMSampler
from .media.image_io import load_portrait, to_frames, to_model_input
from .tokenizer import InstructionTokenizer

DEFAULT_INSTRUCTION = "Talk with a neutral expression."


class StageTimings:
    """Wall-clock milliseconds per stage, reachable from code (benchmarks read `.samples`)."""

    def __init__(self):
        self.samples: dict[str, list[float]] = defaultdict(list)

    def add(self, stage: str, ms: float) -> None:
        self.samples[stage].append(ms)

    def clear(self) -> None:
        self.samples.clear()

    def summary(self) -> dict[str, dict[str, float]]:
        return {k: {"count": len(v), "mean_ms": float(np.mean(v)), "total_ms": float(np.sum(v))}
                for k, v in self.samples.items() if v}


class _timed:
    def __init__(self, timings: StageTimings, stage: str):
        self.timings, self.stage = timings, stage

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        self.timings.add(self.stage, (time.perf_counter() - self.t0) * 1e3)


@dataclass
class Portrait:
    image: np.ndarray          # (S,S,3) uint8 as the model sees it
    appearance: np.ndarray     # (1,Ca,h,w)
    keyframe: np.ndarray       # (1,M) motion latent, diffusion scale
    neutral: InstructionTensors | None = None   # the default instruction with this keyframe (guidance)


@dataclass
class Session:
    """Per-stream state. Create with `Pipeline.new_session`; never share between streams."""

    pipeline: Pipeline
    portrait: Portrait
    instruction_text: str
    instruction: InstructionTensors
    rng: np.random.Generator
    prefix_motion: np.ndarray | None = None     # (P', M) last emitted motion, diffusion scale
    prefix_audio: np.ndarray | None = None      # (P' * 640,) the audio of those frames
    pending: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    frames_emitted: int = 0
    motion_log: list[np.ndarray] = field(default_factory=list)   # emitted motion per chunk (diffusion scale)
    keep_motion: bool = False
    paired: InstructionTensors | None = None   # [instruction; default instruction] stacked, for a guided step alone
    blinks: BlinkSchedule | None = None         # idle-blink cue (models with `audio.blink_cue`); None = no cue

    @property
    def guided(self) -> bool:
        """Whether this session's steps use instruction guidance (on, and a non-default instruction)."""
        return self.pipeline.guidance != 1.0 and self.instruction_text != DEFAULT_INSTRUCTION

    def set_instruction(self, text: str | None) -> list[str]:
        """Switch behaviour; takes effect from the next chunk. Returns warnings (e.g. truncation)."""
        self.instruction, self.instruction_text, warnings = self.pipeline.encode_instruction(
            text, self.portrait.keyframe)
        self.paired = None
        return warnings

    def push_audio(self, samples: np.ndarray) -> np.ndarray:
        """Append 16 kHz mono float32 audio; returns the frames of every chunk completed (n,S,S,3) uint8."""
        self.pending = np.concatenate([self.pending, np.asarray(samples, np.float32).reshape(-1)])
        per_chunk = self.pipeline.chunk_samples
        out = []
        while len(self.pending) >= per_chunk:
            chunk, self.pending = self.pending[:per_chunk], self.pending[per_chunk:]
            out.append(self.pipeline.step([self], [chunk])[0])
        return np.concatenate(out) if out else self.pipeline.empty_frames()

    def push_silence(self, seconds: float) -> np.ndarray:
        return self.push_audio(np.zeros(int(round(seconds * self.pipeline.cfg.media.sample_rate)), np.float32))

    def flush(self) -> np.ndarray:
        """Emit the frames of the remaining audio (padded with silence to whole frames)."""
        if len(self.pending) == 0:
            return self.pipeline.empty_frames()
        spf = self.pipeline.samples_per_frame
        n = -(-len(self.pending) // spf)
        chunk = np.zeros(n * spf, np.float32)
        chunk[: len(self.pending)] = self.pending
        self.pending = np.zeros(0, np.float32)
        return self.pipeline.step([self], [chunk])[0]

    @property
    def clock_seconds(self) -> float:
        """Presentation time of the next frame on the audio sample clock."""
        return self.frames_emitted / self.pipeline.cfg.media.fps


def check_guidance(guidance: float) -> float:
    """A valid instruction-guidance scale (finite, >= 0; 1 = off) as a float, or ValueError."""
    g = float(guidance)
    if not (np.isfinite(g) and g >= 0.0):
        raise ValueError(f"guidance must be a finite number >= 0 (1 = off), got {guidance}")
    return g


class Pipeline:
    def __init__(self, cfg: ModelConfig, backend: Backend, tokenizer: InstructionTokenizer,
                 steps: int | None = None, eta: float | None = None, decode_batch: int = 16,
                 guidance: float | None = None):
        self.cfg = cfg
        self.guidance = check_guidance(cfg.diffusion.guidance if guidance is None else guidance)
        self.backend = backend
        self.tokenizer = tokenizer
        self.sampler = DDIMSampler(cfg.diffusion)
        self.sampler.set_timesteps(cfg.diffusion.sample_steps if steps is None else steps, eta)
        self.decode_batch = decode_batch
        self.timings = StageTimings()
        self.scale = cfg.diffusion.latent_scale

    # -- sizes ----------------------------------------------------------------------------------------
    @property
    def samples_per_frame(self) -> int:
        return self.cfg.media.samples_per_frame

    @property
    def chunk_samples(self) -> int:
        return self.cfg.stream.chunk_frames * self.samples_per_frame

    def empty_frames(self) -> np.ndarray:
        s = self.cfg.media.image_size
        return np.zeros((0, s, s, 3), np.uint8)

    # -- once per portrait / instruction --------------------------------------------------------------
    def prepare(self, portrait) -> Portrait:
        """Portrait (path, bytes, PIL image or array) -> cached appearance latent and keyframe."""
        rgb = load_portrait(portrait, self.cfg.media.image_size)
        x = to_model_input(rgb)
        with _timed(self.timings, "portrait"):
            appearance = self.backend.encode_appearance(x)
            keyframe = self.backend.encode_keyframe(x) / self.scale
        return Portrait(image=rgb, appearance=appearance, keyframe=keyframe)

    def encode_instruction(self, text: str | None, keyframe: np.ndarray) -> tuple[InstructionTensors, str, list[str]]:
        text = DEFAULT_INSTRUCTION if text is None else text
        tokens = self.tokenizer([text])
        warnings = []
        if tokens.truncated[0]:
            warnings.append(f"instruction truncated to {self.tokenizer.context} tokens")
        with _timed(self.timings, "text"):
            emb, pooled = self.backend.encode_text(tokens.ids, tokens.mask)
            inst = self.backend.condition(emb, tokens.mask, pooled, keyframe)
        return inst, text, warnings

    def _neutral(self, portrait: Portrait) -> InstructionTensors:
        """The default instruction's tensors for this portrait (computed once, kept on the portrait)."""
        if portrait.neutral is None:
            portrait.neutral = self.encode_instruction(None, portrait.keyframe)[0]
        return portrait.neutral

    def _denoiser_instruction(self, sessions: list[Session], guided: list[int]) -> InstructionTensors:
        """One row per session, then the default instruction for each guided session. A session stepping
        alone reuses its instruction (and its cached pair when guided): nothing is stacked per chunk."""
        if len(sessions) == 1:
            s = sessions[0]
            if not guided:
                return s.instruction
            if s.paired is None:
                s.paired = InstructionTensors.stack([s.instruction, self._neutral(s.portrait)])
            return s.paired
        return InstructionTensors.stack([s.instruction for s in sessions]
                                        + [self._neutral(sessions[b].portrait) for b in guided])

    def new_session(self, portrait, instruction: str | None = None, seed: int = 0,
                    keep_motion: bool = False, idle_blinks: bool = True) -> tuple[Session, list[str]]:
        """A stream for one portrait. `idle_blinks` (models with a blink cue): the engine schedules blinks
        (engine/blinks.py); off, the avatar blinks only when the instruction asks for it."""
        p = portrait if isinstance(portrait, Portrait) else self.prepare(portrait)
        inst, text, warnings = self.encode_instruction(instruction, p.keyframe)
        blinks = None
        if self.cfg.audio.blink_cue:
            blinks = BlinkSchedule(self.cfg.blinks, self.cfg.media.fps, seed, enabled=idle_blinks)
        session = Session(pipeline=self, portrait=p, instruction_text=text, instruction=inst,
                          rng=np.random.default_rng(seed), keep_motion=keep_motion, blinks=blinks)
        return session, warnings

    # -- once per chunk -------------------------------------------------------------------------------
    def step(self, sessions: list[Session], chunks: list[np.ndarray]) -> list[np.ndarray]:
        """Advance each session by its chunk of audio (all chunks the same length, all sessions at the
        same prefix length: the caller groups them). Returns each session's new frames (C,S,S,3) uint8."""
        spf = self.samples_per_frame
        C = len(chunks[0]) // spf
        prefix_lens = {0 if s.prefix_motion is None else len(s.prefix_motion) for s in sessions}
        if len(prefix_lens) != 1 or any(len(c) != C * spf for c in chunks):
            raise ValueError("a batched step needs equal chunk and prefix lengths")
        P = prefix_lens.pop()
        B, T, M = len(sessions), P + C, self.cfg.motion_dim

        wave = np.stack([c if P == 0 else np.concatenate([s.prefix_audio, c]) for s, c in zip(sessions, chunks)])
        blink = None
        if self.cfg.audio.blink_cue:                                                   # (B, T) idle-blink cue
            blink = np.stack([s.blinks.cue(s.frames_emitted - P, T) if s.blinks is not None
                              else np.zeros(T, np.float32) for s in sessions])
        with _timed(self.timings, "audio"):
            audio = self.backend.encode_audio(wave.astype(np.float32), blink)          # (B, T, D)
        # denoiser rows: every session, then each guided session again with the default instruction
        guided = [b for b, s in enumerate(sessions) if s.guided]
        rows = np.r_[np.arange(B), guided].astype(np.int64)                            # (B + G,)
        inst = self._denoiser_instruction(sessions, guided)
        known = np.zeros((len(rows), T), np.float32)
        known[:, :P] = 1.0
        if guided:
            audio = audio[rows]

        x = np.stack([self.sampler.initial_noise((T, M), s.rng) for s in sessions])   # (B, T, M)
        prefix = np.stack([s.prefix_motion for s in sessions]) if P else None          # (B, P, M)
        noises = draw_step_noise(self.sampler, lambda: np.stack(                       # eta > 0: per step
            [s.rng.standard_normal((T, M), dtype=np.float32) for s in sessions]))
        g_idx = np.asarray(guided, np.int64) if guided else None
        device_loop = getattr(self.backend, "denoise_chunk", None)                     # optional (backend.py)
        if device_loop is not None:
            with _timed(self.timings, "denoise_chunk"):
                x = device_loop(self.sampler, x, prefix, audio, known, inst, rows, g_idx, self.guidance, noises)
        else:
            def denoise(x_rows: np.ndarray, i: int) -> np.ndarray:
                with _timed(self.timings, "denoise_step"):
                    t = np.full(len(rows), self.sampler.timesteps[i], np.int64)
                    return self.backend.denoise(x_rows, t, audio, known, inst)

            x = denoise_chunk(self.sampler, denoise, x, prefix, rows if guided else None, g_idx, self.guidance,
                              noises).astype(np.float32)
        motion = x[:, P:]                                                             # (B, C, M)

        frames = self._decode(motion, sessions)
        keep = self.cfg.stream.prefix_frames
        for b, s in enumerate(sessions):
            if keep:
                history = motion[b] if P == 0 else np.concatenate([s.prefix_motion, motion[b]])
                s.prefix_motion = history[-keep:].copy()
                s.prefix_audio = wave[b][-len(s.prefix_motion) * spf:].copy()
            s.frames_emitted += C
            if s.keep_motion:
                s.motion_log.append(motion[b].copy())
        return frames

    def _decode(self, motion: np.ndarray, sessions: list[Session]) -> list[np.ndarray]:
        B, C, M = motion.shape
        raw = (motion * self.scale).reshape(B * C, M)
        app = np.concatenate([np.repeat(s.portrait.appearance, C, axis=0) for s in sessions])
        out = []
        with _timed(self.timings, "decode"):
            for i in range(0, B * C, self.decode_batch):
                out.append(self.backend.decode(raw[i:i + self.decode_batch], app[i:i + self.decode_batch]))
        frames = to_frames(np.concatenate(out))
        return [frames[b * C:(b + 1) * C] for b in range(B)]

    # -- whole inputs ---------------------------------------------------------------------------------
    def generate(self, portrait, audio: np.ndarray | None = None, seconds: float | None = None,
                 instruction: str | None = None, seed: int = 0, progress=None,
                 warnings: list[str] | None = None, idle_blinks: bool = True) -> np.ndarray:
        """Offline: all frames for `audio` (16 kHz mono float32) or `seconds` of silence (motion only).
        `idle_blinks`: see `new_session`.
        Warnings (e.g. a truncated instruction) are appended to `warnings` when a list is given."""
        if (audio is None) == (seconds is None):
            raise ValueError("give either audio or seconds")
        if audio is None:
            audio = np.zeros(int(round(seconds * self.cfg.media.sample_rate)), np.float32)
        session, found = self.new_session(portrait, instruction, seed, idle_blinks=idle_blinks)
        if warnings is not None:
            warnings.extend(found)
        return np.concatenate(list(self.stream(session, _chunks(audio, self.chunk_samples), progress)))

    def stream(self, session: Session, audio_chunks: Iterable[np.ndarray], progress=None) -> Iterator[np.ndarray]:
        """Frames as each chunk completes, then the flushed remainder."""
        for chunk in audio_chunks:
            frames = session.push_audio(chunk)
            if len(frames):
                if progress is not None:
                    progress(len(frames))
                yield frames
        tail = session.flush()
        if len(tail):
            if progress is not None:
                progress(len(tail))
            yield tail


def _chunks(audio: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for i in range(0, len(audio), size):
        yield audio[i:i + size]


def frame_count(num_samples: int, samples_per_frame: int) -> int:
    """Frames produced for an input of num_samples (the last partial frame is padded with silence)."""
    return -(-num_samples // samples_per_frame)
