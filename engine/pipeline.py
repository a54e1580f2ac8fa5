"""From portrait + audio + instruction to frames, offline or chunk by chunk.

Pipeline (shared, stateless apart from timings) owns the backend, tokenizer and DDIM schedule.
Session (one per avatar stream) owns everything that belongs to one user: the cached appearance latent
and keyframe, the instruction tensors, the motion prefix and audio carried between chunks, the frame
clock and the random generator. `Pipeline.step(sessions, chunks)` advances several sessions by one chunk
as one batch; a session's `push_audio` / `flush` call it for one.

Scheduler-facing use (server/worker.py): `Session.feed` appends audio to a bounded pending buffer,
`Session.schedule_instruction` queues an instruction for an audio sample time, and `Pipeline.step_ready(sessions)`
takes every session's ready chunk and advances them grouped by window shape (prefix length, chunk length), one
batch per group. Everything a step reads (the portrait's neutral instruction, a guided session's instruction
pair) is computed when the portrait, session or instruction is made, never inside `step`. Each session has its
own chunk length (`chunk_frames`, 2..10 frames for the demo; the prefix is the config's).

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

import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .audio_input import SessionAudio, as_float_frames, check_seconds, check_whole_input
from .backend import Backend, InstructionTensors, stack_instructions
from .blinks import BlinkSchedule
from .chunk_loop import denoise_chunk, draw_step_noise
from .config import ModelConfig
from .ddim import DDIMSampler
from .instruction_reader import InstructionReader, ReaderTable, Reading, pipeline_encoder
from .media import image_io
from .media.image_io import load_portrait, to_frames, to_model_input
from .tokenizer import InstructionTokenizer
from .understanding import ReferenceTable, Understanding, understand

DEFAULT_INSTRUCTION = "Talk with a neutral expression."


class StageTimings:
    """Wall-clock milliseconds per stage, reachable from code (benchmarks read `.samples`).

    `.samples[stage]` holds the last `keep` samples (a bounded ring: a long-running server does not grow);
    `.count` / `.total_ms` are running totals over every sample since the last `clear`. Thread-safe."""

    def __init__(self, keep: int = 4096):
        self.keep = keep
        self.samples: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=self.keep))
        self.count: dict[str, int] = defaultdict(int)
        self.total_ms: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    def add(self, stage: str, ms: float) -> None:
        with self._lock:
            self.samples[stage].append(ms)
            self.count[stage] += 1
            self.total_ms[stage] += ms

    def clear(self) -> None:
        with self._lock:
            self.samples.clear()
            self.count.clear()
            self.total_ms.clear()

    def recent(self, stage: str) -> list[float]:
        """A copy of the stage's retained samples (safe to read while another thread adds)."""
        with self._lock:
            return list(self.samples.get(stage, ()))

    def summary(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {k: {"count": self.count[k], "mean_ms": self.total_ms[k] / self.count[k],
                        "total_ms": self.total_ms[k]} for k in self.samples if self.count[k]}


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
    neutral: InstructionTensors | None = None   # the default instruction with this keyframe (guidance; set by prepare)
    decoder: object | None = None   # a decoder beside the VAE's, `decode(latents (N,M)) -> (N,H,W,3) uint8` and
    #                                 `frame_shape` (photo mode: engine/photo/decoder.py); None = backend.decode
    warnings: list[str] = field(default_factory=list)   # what the model cannot use as given (transparency, ...)
    grayscale: bool = False    # the portrait has no colour: its frames are kept grey


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
    chunk_frames: int = 0                       # new frames per chunk (set by new_session; 0 = the config's)
    max_pending_samples: int | None = None      # bound of `feed`'s buffer (None = unbounded)
    taken_samples: int = 0                      # session sample clock: 16 kHz samples taken into chunks so far
    scheduled: list[tuple[int, str, InstructionTensors, InstructionTensors | None]] = field(default_factory=list)
    audio_ended: bool = False                   # `end_audio` was called: the next take pads the remainder
    audio_in: SessionAudio | None = None        # push_audio's checks, mono mix and resampler (engine/audio_input.py)

    def __post_init__(self):
        if self.audio_in is None:
            self.audio_in = SessionAudio(self.pipeline.cfg.media.sample_rate)
        if not self.chunk_frames:
            self.chunk_frames = self.pipeline.cfg.stream.chunk_frames
        self.paired = self._pair(self.instruction)

    @property
    def chunk_samples(self) -> int:
        return self.chunk_frames * self.pipeline.samples_per_frame

    @property
    def prefix_len(self) -> int:
        return 0 if self.prefix_motion is None else len(self.prefix_motion)

    def _pair(self, inst: InstructionTensors) -> InstructionTensors | None:
        if self.pipeline.guidance == 1.0 or self.portrait.neutral is None:
            return None
        return stack_instructions(self.pipeline.backend, [inst, self.portrait.neutral])

    @property
    def guided(self) -> bool:
        """Whether this session's steps use instruction guidance (on, and a non-default instruction)."""
        return self.pipeline.guidance != 1.0 and self.instruction_text != DEFAULT_INSTRUCTION

    def set_instruction(self, text: str | None) -> list[str]:
        """Switch behaviour; takes effect from the next chunk. Returns warnings (e.g. truncation)."""
        self.instruction, self.instruction_text, warnings = self.pipeline.encode_instruction(
            text, self.portrait.keyframe)
        self.paired = self._pair(self.instruction)
        return warnings

    def schedule_instruction(self, text: str | None, at_sample: int) -> list[str]:
        """Switch behaviour in the chunk that holds 16 kHz sample `at_sample` of this session's clock (a time
        already taken: the next chunk). The text is encoded now, on the caller's thread. Returns warnings."""
        inst, text, warnings = self.pipeline.encode_instruction(text, self.portrait.keyframe)
        self.scheduled.append((int(at_sample), text, inst, self._pair(inst)))
        self.scheduled.sort(key=lambda e: e[0])
        return warnings

    def feed(self, samples: np.ndarray) -> None:
        """Append 16 kHz mono float32 audio to the pending buffer without stepping (the scheduler steps).
        Raises PendingAudioFull (nothing appended) past `max_pending_samples`."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        if self.max_pending_samples is not None and len(self.pending) + len(samples) > self.max_pending_samples:
            raise PendingAudioFull(f"pending audio would exceed {self.max_pending_samples} samples "
                                   f"({len(self.pending)} buffered, {len(samples)} more)")
        self.pending = np.concatenate([self.pending, samples])
        self.audio_ended = False

    def end_audio(self) -> None:
        """No more audio for now: the next `take_chunk` pads the remainder with silence to whole frames."""
        self.audio_ended = True

    def drop_pending(self) -> int:
        """Barge-in: forget buffered audio and scheduled instructions. Returns the samples dropped."""
        n = len(self.pending)
        self.pending = np.zeros(0, np.float32)
        self.scheduled.clear()
        self.audio_ended = False
        return n

    def take_chunk(self) -> np.ndarray | None:
        """The next chunk's audio (chunk_samples, or the padded remainder after `end_audio`), removed from
        the buffer, with any instruction scheduled inside it applied; None when no chunk is ready."""
        n = self.chunk_samples
        if len(self.pending) >= n:
            chunk, self.pending = self.pending[:n], self.pending[n:]
        elif self.audio_ended and len(self.pending):
            spf = self.pipeline.samples_per_frame
            chunk = np.zeros(-(-len(self.pending) // spf) * spf, np.float32)
            chunk[: len(self.pending)] = self.pending
            self.pending = np.zeros(0, np.float32)
        else:
            return None
        if len(self.pending) == 0:
            self.audio_ended = False
        end = self.taken_samples + len(chunk)
        while self.scheduled and self.scheduled[0][0] < end:
            _, self.instruction_text, self.instruction, self.paired = self.scheduled.pop(0)
        self.taken_samples = end
        return chunk

    def push_audio(self, samples: np.ndarray, sample_rate: int | None = None) -> np.ndarray:
        """Append audio, (S,) or (S, C) int16/int32/uint8/float, at `sample_rate` (default the model's, 16 kHz;
        another is resampled per session); returns the frames of every chunk completed (n,S,S,3) uint8.
        Bad audio (NaN, wrong shape or dtype, another rate mid-session) raises AudioInputError and changes
        nothing (engine/audio_input.py)."""
        samples = self.audio_in.convert(samples, sample_rate)
        out = []
        for i in range(0, len(samples), self.chunk_samples):      # piecewise: the buffer stays within a chunk
            self.pending = np.concatenate([self.pending, samples[i:i + self.chunk_samples]])
            while (chunk := self.take_chunk()) is not None:
                out.append(self.pipeline.step([self], [chunk])[0])
        return np.concatenate(out) if out else self.pipeline.empty_frames(self.portrait)

    def push_silence(self, seconds: float) -> np.ndarray:
        rate = self.audio_in.rate or self.pipeline.cfg.media.sample_rate      # the session's input rate
        return self.push_audio(np.zeros((int(round(seconds * rate)), self.audio_in.channels or 1), np.float32),
                               sample_rate=rate)

    def flush(self) -> np.ndarray:
        """Emit the frames of the remaining audio (padded with silence to whole frames)."""
        tail = self.audio_in.flush()                       # a resampled session's filter delay
        if len(tail):
            self.pending = np.concatenate([self.pending, tail])
        if len(self.pending) == 0:
            return self.pipeline.empty_frames(self.portrait)
        self.end_audio()
        out = []
        while (chunk := self.take_chunk()) is not None:
            out.append(self.pipeline.step([self], [chunk])[0])
        return np.concatenate(out)

    @property
    def clock_seconds(self) -> float:
        """Presentation time of the next frame on the audio sample clock."""
        return self.frames_emitted / self.pipeline.cfg.media.fps


class PendingAudioFull(ValueError):
    """`Session.feed` past the session's pending-audio bound."""


def check_chunk_frames(cfg: ModelConfig, chunk_frames: int | None) -> int:
    """A session's chunk length: the config's by default; 2 .. max(10, the config's) frames, or ValueError."""
    if chunk_frames is None:
        return cfg.stream.chunk_frames
    hi = max(10, cfg.stream.chunk_frames)
    if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, (int, np.integer)) \
            or not 2 <= chunk_frames <= hi:
        raise ValueError(f"chunk_frames must be an integer from 2 to {hi}, got {chunk_frames!r}")
    return int(chunk_frames)


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
        # the demo's instruction reference (engine/understanding.py): what an instruction is taken to mean
        self.reference = ReferenceTable.load() if cfg.name == "demo" else None
        # ... and its reader of instructions as people type them (engine/instruction_reader.py, issue 28):
        # intensity said by an idiom, a hedge or exclaiming is restated in the world's words before encoding.
        # None = every instruction goes to the generator as typed.
        reader_table = ReaderTable.load() if cfg.name == "demo" else None
        self.reader = None if reader_table is None else InstructionReader(reader_table, pipeline_encoder(self))

    # -- sizes ----------------------------------------------------------------------------------------
    @property
    def samples_per_frame(self) -> int:
        return self.cfg.media.samples_per_frame

    @property
    def chunk_samples(self) -> int:
        return self.cfg.stream.chunk_frames * self.samples_per_frame

    def empty_frames(self, portrait: Portrait | None = None) -> np.ndarray:
        if portrait is not None and portrait.decoder is not None:
            return np.zeros((0, *portrait.decoder.frame_shape), np.uint8)
        s = self.cfg.media.image_size
        return np.zeros((0, s, s, 3), np.uint8)

    # -- once per portrait / instruction --------------------------------------------------------------
    def prepare(self, portrait) -> Portrait:
        """Portrait (path, bytes, PIL image or array) -> cached appearance latent and keyframe. What the model
        cannot use as given goes to the Portrait's `warnings` (new_session returns them)."""
        warnings: list[str] = []
        rgb = load_portrait(portrait, self.cfg.media.image_size, warnings)
        if self.cfg.name == "demo" and not image_io.looks_like_world_face(rgb):
            warnings.append("this portrait does not look like a face of the demo model's synthetic world "
                            "(avatarworld): the demo model repaints it in that world's cartoon style")
        x = to_model_input(rgb)
        with _timed(self.timings, "portrait"):
            appearance = self.backend.encode_appearance(x)
            keyframe = self.backend.encode_keyframe(x) / self.scale
        neutral = self.encode_instruction(None, keyframe)[0]              # for guidance; never written in step
        return Portrait(image=rgb, appearance=appearance, keyframe=keyframe, neutral=neutral, warnings=warnings,
                        grayscale=image_io.is_grayscale(rgb))

    def encode_instruction(self, text: str | None, keyframe: np.ndarray) -> tuple[InstructionTensors, str, list[str]]:
        """Text -> the generator's instruction tensors for one portrait's keyframe, the text as typed, warnings.
        The demo first reads the text (`read_instruction`): a restated instruction is what gets encoded."""
        text = DEFAULT_INSTRUCTION if text is None else text
        tokens = self.tokenizer([text])
        warnings = []
        if tokens.truncated[0]:
            warnings.append(f"instruction truncated to {self.tokenizer.context} tokens")
        with _timed(self.timings, "text"):
            emb, pooled = self.backend.encode_text(tokens.ids, tokens.mask)
            u = understand(self.reference, self.tokenizer, tokens.ids[0], tokens.mask[0], pooled[0])
            reading = self._read(text, u)
            if reading is not None:
                tokens = self.tokenizer([reading.restated])
                emb, pooled = self.backend.encode_text(tokens.ids, tokens.mask)
            inst = self.backend.condition(emb, tokens.mask, pooled, keyframe)
        if u is not None:                                  # unreadable or unlike anything trained on
            warnings.extend(u.warnings)
        return inst, text, warnings

    def _read(self, text: str, u: Understanding | None) -> Reading | None:
        if self.reader is None or text == DEFAULT_INSTRUCTION:
            return None
        return self.reader.read(text, understood=None if u is None else u.label)

    def read_instruction(self, text: str | None) -> Reading | None:
        """How the demo's reader restates `text` before encoding (engine/instruction_reader.py), or None when
        the text goes to the generator as typed (no reader, a neutral or world-style instruction, no idiom,
        hedge or exclaiming found)."""
        if text is None or not text.strip() or self.reader is None:
            return None
        return self._read(text, self._nearest(text))

    def understand(self, text: str | None) -> Understanding | None:
        """What the model takes `text` to mean: the nearest trained behaviour and its similarity, the share of
        unknown tokens (engine/understanding.py). None when the config ships no reference table."""
        text = DEFAULT_INSTRUCTION if text is None else text
        u = self._nearest(text)
        reading = None if u is None else self._read(text, u)
        return u if reading is None else u.with_reading(reading)

    def _nearest(self, text: str) -> Understanding | None:
        if self.reference is None:
            return None
        tokens = self.tokenizer([text])
        pooled = self.backend.encode_text(tokens.ids, tokens.mask)[1]
        return understand(self.reference, self.tokenizer, tokens.ids[0], tokens.mask[0], pooled[0])

    def _neutral(self, portrait: Portrait) -> InstructionTensors:
        """The default instruction's tensors for this portrait (set by `prepare` / `new_session`)."""
        if portrait.neutral is None:
            raise ValueError("portrait has no neutral instruction: make it with Pipeline.prepare")
        return portrait.neutral

    def _denoiser_instruction(self, sessions: list[Session], guided: list[int]) -> InstructionTensors:
        """One row per session, then the default instruction for each guided session. A session stepping
        alone reuses its instruction (and its cached pair when guided): nothing is stacked per chunk."""
        if len(sessions) == 1:
            s = sessions[0]
            if not guided:
                return s.instruction
            if s.paired is not None:
                return s.paired
            return stack_instructions(self.backend, [s.instruction, self._neutral(s.portrait)])
        return stack_instructions(self.backend, [s.instruction for s in sessions]
                                        + [self._neutral(sessions[b].portrait) for b in guided])

    def new_session(self, portrait, instruction: str | None = None, seed: int = 0,
                    keep_motion: bool = False, idle_blinks: bool = True, chunk_frames: int | None = None,
                    max_pending_samples: int | None = None) -> tuple[Session, list[str]]:
        """A stream for one portrait. `idle_blinks` (models with a blink cue): the engine schedules blinks
        (engine/blinks.py); off, the avatar blinks only when the instruction asks for it. `chunk_frames`: new
        frames per chunk (check_chunk_frames). `max_pending_samples` bounds `feed`'s buffer."""
        chunk_frames = check_chunk_frames(self.cfg, chunk_frames)
        p = portrait if isinstance(portrait, Portrait) else self.prepare(portrait)
        if p.neutral is None:                                  # a Portrait made by hand: complete it now, once
            p.neutral = self.encode_instruction(None, p.keyframe)[0]
        inst, text, found = self.encode_instruction(instruction, p.keyframe)
        warnings = [*p.warnings, *found]
        blinks = None
        if self.cfg.audio.blink_cue:
            blinks = BlinkSchedule(self.cfg.blinks, self.cfg.media.fps, seed, enabled=idle_blinks)
        session = Session(pipeline=self, portrait=p, instruction_text=text, instruction=inst,
                          rng=np.random.default_rng(seed), keep_motion=keep_motion, blinks=blinks,
                          chunk_frames=chunk_frames, max_pending_samples=max_pending_samples)
        return session, warnings

    def step_ready(self, sessions: Iterable[Session], isolate: bool = False) -> list[tuple[Session, np.ndarray]]:
        """Take every session's ready chunk (`Session.take_chunk`) and advance them, one batched `step` per
        window shape (prefix length, chunk length). Returns (session, new frames (C,S,S,3) uint8) for each
        session that had a chunk, in the order given. `isolate`: when a batch fails, each of its sessions is
        stepped alone and one that fails again gets its exception in place of frames (the others go on)."""
        groups: dict[tuple[int, int], list[tuple[Session, np.ndarray]]] = defaultdict(list)
        order = []
        for s in sessions:
            chunk = s.take_chunk()
            if chunk is not None:
                groups[(s.prefix_len, len(chunk))].append((s, chunk))
                order.append(s)
        done: dict[int, np.ndarray] = {}
        for group in groups.values():
            try:
                frames = self.step([s for s, _ in group], [c for _, c in group])
            except Exception:
                if not isolate:
                    raise
                frames = []
                for s, c in group:
                    try:
                        frames.append(self.step([s], [c])[0])
                    except Exception as e:            # this session's failure, reported to its owner
                        frames.append(e)
            for (s, _), f in zip(group, frames):
                done[id(s)] = f
        return [(s, done[id(s)]) for s in order]

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
        if any(s.portrait.decoder is not None for s in sessions):
            return self._decode_own(motion, sessions)
        B, C, M = motion.shape
        raw = (motion * self.scale).reshape(B * C, M)
        app = np.concatenate([np.repeat(s.portrait.appearance, C, axis=0) for s in sessions])
        out = []
        with _timed(self.timings, "decode"):
            for i in range(0, B * C, self.decode_batch):
                out.append(self.backend.decode(raw[i:i + self.decode_batch], app[i:i + self.decode_batch]))
        frames = to_frames(np.concatenate(out))
        return [image_io.to_grey_frames(frames[b * C:(b + 1) * C]) if sessions[b].portrait.grayscale
                else frames[b * C:(b + 1) * C] for b in range(B)]

    def _decode_own(self, motion: np.ndarray, sessions: list[Session]) -> list[np.ndarray]:
        """Sessions whose portrait has its own decoder (photo mode) decode there; the rest through the backend."""
        out: list[np.ndarray | None] = [None] * len(sessions)
        rest = [b for b, s in enumerate(sessions) if s.portrait.decoder is None]
        if rest:
            for b, frames in zip(rest, self._decode(motion[rest], [sessions[b] for b in rest])):
                out[b] = frames
        for b, s in enumerate(sessions):
            if s.portrait.decoder is not None:
                with _timed(self.timings, "photo_decode"):
                    out[b] = s.portrait.decoder.decode(motion[b] * self.scale)
        return out

    # -- whole inputs ---------------------------------------------------------------------------------
    def generate(self, portrait, audio: np.ndarray | None = None, seconds: float | None = None,
                 instruction: str | None = None, seed: int = 0, progress=None,
                 warnings: list[str] | None = None, idle_blinks: bool = True,
                 sample_rate: int | None = None) -> np.ndarray:
        """Offline: all frames (N,S,S,3) uint8 for `audio` or `seconds` of silence (motion only).
        `audio`: (S,) or (S, C) int16/int32/uint8/float at `sample_rate` (default the model's, 16 kHz); it is
        checked whole before any compute (AudioInputError). `idle_blinks`: see `new_session`.
        Warnings (e.g. a truncated instruction) are appended to `warnings` when a list is given."""
        return np.concatenate(list(self.iter_frames(portrait, audio, seconds, instruction, seed, progress,
                                                    warnings, idle_blinks, sample_rate)))

    def iter_frames(self, portrait, audio: np.ndarray | None = None, seconds: float | None = None,
                    instruction: str | None = None, seed: int = 0, progress=None,
                    warnings: list[str] | None = None, idle_blinks: bool = True,
                    sample_rate: int | None = None) -> Iterator[np.ndarray]:
        """`generate`, chunk by chunk: yields each completed chunk's frames (for writing as they come)."""
        if (audio is None) == (seconds is None):
            raise ValueError("give either audio or seconds")
        media = self.cfg.media
        if audio is None:
            seconds = check_seconds(seconds, self.cfg.max_audio_seconds, 1.0 / media.fps)
            audio, sample_rate = np.zeros(int(round(seconds * media.sample_rate)), np.float32), None
        else:
            rate = SessionAudio(media.sample_rate).checked_rate(sample_rate)
            check_whole_input(as_float_frames(audio), rate, media.fps, self.cfg.max_audio_seconds)
        session, found = self.new_session(portrait, instruction, seed, idle_blinks=idle_blinks)
        if warnings is not None:
            warnings.extend(found)
        yield from self.stream(session, _chunks(audio, self.chunk_samples), progress, sample_rate)

    def stream(self, session: Session, audio_chunks: Iterable[np.ndarray], progress=None,
               sample_rate: int | None = None) -> Iterator[np.ndarray]:
        """Frames as each chunk completes, then the flushed remainder (chunks at `sample_rate`, see push_audio)."""
        for chunk in audio_chunks:
            frames = session.push_audio(chunk, sample_rate)
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
