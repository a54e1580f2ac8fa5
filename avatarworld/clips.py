"""Clips of the synthetic world: one identity, an instruction, audio and the per-frame controls it causes.

A :class:`ClipSpec` is a small, JSON-able description of a clip (who, what is said, by which voice, which
instruction, which random seed); :func:`make_clip` turns it into a :class:`Clip` deterministically (the
audio comes from espeak-ng through speech.synthesize and is cached when a ``cache_dir`` is given).

Kinds of clips (the three data sources of the paper, section 4):

- ``"talk"`` (MEAD analogue): speech + an emotion at an intensity, in 20% of them also a simultaneous
  motion instruction; the instruction names the emotion (and the motion).
- ``"motion"`` (CC v1 analogue): one to three motion instructions ("then": one after another, "and":
  together), silent audio (zeros), neutral face, intensity 0.
- ``"talk_neutral"`` (HDTF analogue): plain neutral speech with an empty instruction ``""``.

Labels (same rules as metrics.py):

- per-frame AU activity: ``controls.active_aus`` (intensity >= AU_ACTIVE_THRESHOLD);
- clip-level AU set: an AU is active in the clip when it is active in at least 3 frames of the whole clip
  (metrics.clip_au_labels; the paper's "intersection over 3 random frames" would miss short events such as
  blinks and winks and would be noisy for motions that hold only part of a clip);
- ``target_aus``: the AUs the instruction asks for (behaviour.emotion_target_aus / motion_target_aus),
  without the incidental ones (idle blinks);
- intensity 1..3 for talk clips (neutral: 1, as in MEAD), 0 for motion-only clips.

Keyframe (paper 3.3): the controls of one frame of the SAME identity showing ANOTHER emotion than the
clip's (a still portrait: no speech, no blink), so that the keyframe cannot leak the clip's emotion.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np

from . import behaviour, identity, instructions, speech
from .controls import (
    AU_IDS,
    INDEX,
    NUM_CONTROLS,
    POSE_SLICE,
    ROTATION_SLICE,
    SPEECH_SLICE,
    active_aus,
    clip_controls,
)

FPS = behaviour.FPS
SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
KINDS: tuple[str, ...] = ("talk", "motion", "talk_neutral")
KIND_P: tuple[float, ...] = (0.55, 0.35, 0.10)
TALK_SECONDS = (3.0, 8.0)
MOTION_SECONDS = (3.0, 5.0)
CLIP_MIN_FRAMES = 3
EMOTIONS = behaviour.EMOTIONS

# Motions that must not run at the same time ("and"): they drive the same channels.
_CONFLICT_GROUPS: tuple[frozenset[str], ...] = (
    frozenset({"nod", "look_up", "look_down"}),
    frozenset({"shake_head", "turn_head_left", "turn_head_right", "look_left", "look_right"}),
    frozenset({"tilt_head_left", "tilt_head_right"}),
    frozenset({"close_eyes", "wink_left", "wink_right", "blink", "squint", "widen_eyes"}),
    frozenset({"smile", "open_mouth_wide", "press_lips", "part_lips", "drop_jaw", "stretch_lips",
               "lip_corners_down"}),
    frozenset({"raise_eyebrows", "frown", "raise_inner_brows"}),
)


@dataclass(frozen=True)
class ClipSpec:
    """Everything that determines a clip. JSON-able (``to_json`` / ``from_json``)."""

    identity: int
    kind: str                      # "talk" | "motion" | "talk_neutral"
    split: str                     # "train" | "heldout": where identity, sentence, voice, phrasing come from
    emotion: str                   # behaviour.EMOTIONS; "neutral" for motion / talk_neutral clips
    intensity: int                 # 1..3 for talk clips, 0 for motion-only clips
    motions: tuple[str, ...]       # motion instructions, () if none
    sequential: bool               # motions one after another ("then") rather than together ("and")
    timing: str                    # what the instruction says: "sequence" | "together" | "either" | ""
    instruction: str               # the text instruction ("" for talk_neutral)
    keyframe_emotion: str          # the other emotion the keyframe shows
    keyframe_intensity: int
    seed: int                      # the behaviour's random stream
    sentence_id: int | None = None  # speech (talk kinds only): corpus.SENTENCES index
    voice: str | None = None       # espeak-ng voice name (speech.VOICES)
    speed_wpm: int = 0
    pitch: int = 0
    duration_s: float = 0.0        # motion clips: length; talk clips: 0 (the speech sets it)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | dict) -> ClipSpec:
        d = json.loads(text) if isinstance(text, str) else dict(text)
        d["motions"] = tuple(d["motions"])
        return cls(**d)

    @property
    def has_speech(self) -> bool:
        return self.kind in ("talk", "talk_neutral")

    def speech_spec(self) -> speech.SpeechSpec:
        return speech.SpeechSpec(sentence_id=self.sentence_id, voice=self.voice, speed_wpm=self.speed_wpm,
                                 pitch=self.pitch)


@dataclass
class Clip:
    """A generated clip: audio, per-frame controls and labels. Frames are rendered on demand
    (dataset.iter_frames) unless a dataset stored them (``frames``)."""

    spec: ClipSpec
    audio: np.ndarray          # (S,) float32, 16 kHz mono, S = T * 640
    controls: np.ndarray       # (T, NUM_CONTROLS) float32
    au_frames: np.ndarray      # (T, len(AU_IDS)) bool, per-frame activity
    au_clip: np.ndarray        # (len(AU_IDS),) bool, active in >= 3 frames
    target_aus: np.ndarray     # (len(AU_IDS),) bool, what the instruction asks for
    keyframe: np.ndarray       # (NUM_CONTROLS,) float32: same identity, another emotion
    frames: np.ndarray | None = field(default=None, repr=False)  # (T, H, W, 3) uint8 if stored
    landmarks: np.ndarray | None = field(default=None, repr=False)  # (T, K, 2) float32 if stored

    @property
    def n_frames(self) -> int:
        return int(self.controls.shape[0])

    @property
    def duration_s(self) -> float:
        return self.n_frames / FPS

    @property
    def pose(self) -> np.ndarray:
        """(T, 3) yaw / pitch / roll in degrees."""
        return self.controls[:, ROTATION_SLICE]

    @property
    def speech(self) -> np.ndarray:
        """(T, 3) speech_jaw / speech_width / speech_round (from the audio)."""
        return self.controls[:, SPEECH_SLICE]

    @property
    def identity(self) -> int:
        return self.spec.identity

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def instruction(self) -> str:
        return self.spec.instruction

    @property
    def emotion(self) -> int:
        """Index of the clip's emotion in EMOTIONS (neutral for motion-only clips)."""
        return EMOTIONS.index(self.spec.emotion)

    @property
    def intensity(self) -> int:
        return self.spec.intensity

    @property
    def keyframe_emotion(self) -> int:
        return EMOTIONS.index(self.spec.keyframe_emotion)


# --------------------------------------------------------------------------------------------------
# sampling specs


@lru_cache(maxsize=4)
def _identities(split: str) -> tuple[int, ...]:
    return tuple(identity.identity_ids(split))


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def sample_motions(rng: np.random.Generator, vocabulary: tuple[str, ...] | None = None
                   ) -> tuple[tuple[str, ...], bool, str]:
    """One to three distinct motions (60/30/10%), whether they run one after another, and the timing the
    instruction states (instructions.TIMINGS: 80% the true one, 20% the ambiguous "either"; "" for a
    single motion). Simultaneous motions never share a conflict group (nod and look_up both pitch)."""
    vocab = vocabulary or motion_vocabulary()
    count = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
    sequential = count == 3 or (count == 2 and rng.random() < 0.5)
    chosen: list[str] = []
    while len(chosen) < count:
        m = _pick(rng, vocab)
        if m in chosen:
            continue
        if not sequential and any(m in g and c in g for g in _CONFLICT_GROUPS for c in chosen):
            continue
        chosen.append(m)
    timing = ""
    if count > 1:
        timing = ("sequence" if sequential else "together") if rng.random() < 0.8 else "either"
    return tuple(chosen), sequential, timing


@lru_cache(maxsize=1)
def motion_vocabulary() -> tuple[str, ...]:
    """Motions both the instruction vocabulary can phrase and the behaviour can perform."""
    return tuple(m for m in instructions.MOTIONS if m in behaviour.MOTION_PROGRAMS)


def sample_clip_spec(rng: np.random.Generator, split: str = "train") -> ClipSpec:
    """A random clip of ``split``: identity, sentence, voice and instruction phrasing all come from that
    split only (held-out ones never appear in train specs, and vice versa)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    kind = KINDS[int(rng.choice(len(KINDS), p=KIND_P))]
    ident = int(_pick(rng, _identities(split)))
    motions: tuple[str, ...] = ()
    sequential, timing = False, ""
    speech_args: dict = {}
    duration = 0.0
    if kind == "motion":
        emotion, intensity = "neutral", 0
        motions, sequential, timing = sample_motions(rng)
        duration = float(np.round(rng.uniform(*MOTION_SECONDS), 2))
        instruction = instructions.motion_instruction(list(motions), rng, split, timing=timing or None)
    else:
        sp = speech.sample_spec(rng, split)  # sentence and voice of ``split``, speed and pitch uniform
        speech_args = dict(sentence_id=int(sp.sentence_id), voice=str(sp.voice), speed_wpm=int(sp.speed_wpm),
                           pitch=int(sp.pitch))
        if kind == "talk_neutral":
            emotion, intensity, instruction = "neutral", 1, ""
        else:
            emotion = _pick(rng, EMOTIONS)
            intensity = 1 if emotion == "neutral" else int(rng.integers(1, 4))
            if rng.random() < 0.2:
                motions, sequential = (_pick(rng, motion_vocabulary()),), False
                instruction = instructions.combined_instruction(emotion, intensity, list(motions), rng, split)
            else:
                instruction = instructions.emotion_instruction(emotion, intensity, rng, split)
    others = [e for e in EMOTIONS if e != emotion]
    kf_emotion = _pick(rng, others)
    kf_intensity = 1 if kf_emotion == "neutral" else int(rng.integers(1, 4))
    seed = int(rng.integers(0, 2**62))
    return ClipSpec(identity=ident, kind=kind, split=split, emotion=emotion, intensity=intensity,
                    motions=motions, sequential=sequential, timing=timing, instruction=str(instruction),
                    keyframe_emotion=kf_emotion, keyframe_intensity=kf_intensity, seed=seed,
                    duration_s=duration, **speech_args)


def spec_for_index(seed: int, index: int, split: str = "train") -> ClipSpec:
    """The spec of clip ``index`` of a data set generated with ``seed``: a pure function of (seed, index,
    split), so a data set is the same however it is chunked or resumed."""
    rng = np.random.default_rng([int(seed), int(index), 0 if split == "train" else 1])
    return sample_clip_spec(rng, split)


# --------------------------------------------------------------------------------------------------
# making clips


def _fit_audio(audio: np.ndarray) -> np.ndarray:
    """Clamp talk audio to TALK_SECONDS (pad silence / cut with a 20 ms fade) on a whole number of frames."""
    audio = np.asarray(audio, np.float32).reshape(-1)
    lo, hi = (int(s * SAMPLE_RATE) for s in TALK_SECONDS)
    if len(audio) > hi:
        audio = audio[:hi].copy()
        fade = SAMPLE_RATE // 50
        audio[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    n_frames = max(int(round(max(len(audio), lo) / SAMPLES_PER_FRAME)), 1)
    out = np.zeros(n_frames * SAMPLES_PER_FRAME, np.float32)
    out[:min(len(audio), len(out))] = audio[:len(out)]
    return out


def _speech_head_motion(jaw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Small speech-driven head bobbing (pitch, degrees) following the smoothed jaw energy."""
    k = np.ones(7) / 7.0
    env = np.convolve(np.pad(jaw, 3, mode="edge"), k, mode="valid")
    return rng.uniform(1.0, 3.0) * (env - env.mean())


def keyframe_controls(emotion: str, intensity: int, rng: np.random.Generator) -> np.ndarray:
    """A still portrait frame (NUM_CONTROLS,) of ``emotion``: a frame after the onset, no blink, no speech."""
    c = behaviour.emotion_controls(emotion, intensity, 2 * FPS, rng)
    frame = c[int(rng.integers(FPS, 2 * FPS))].copy()
    frame[INDEX["au45"]] = 0.0
    frame[SPEECH_SLICE] = 0.0
    return frame


def clip_controls_for(spec: ClipSpec, n_frames: int, speech_track: np.ndarray | None) -> np.ndarray:
    """The (T, NUM_CONTROLS) controls of a spec, given its speech mouth track (T, 3) or None (silent)."""
    rng = np.random.default_rng([spec.seed, 0])
    if spec.kind == "motion":
        c = behaviour.motion_controls(spec.motions, n_frames, rng, sequential=spec.sequential)
    else:
        level = max(spec.intensity, 1)
        c = behaviour.emotion_controls(spec.emotion, level, n_frames, rng)
        if spec.motions:
            c = behaviour.apply_motions(c, spec.motions, rng, sequential=spec.sequential)
    c = c.astype(np.float64)
    if speech_track is not None:
        c[:, SPEECH_SLICE] = speech_track[:n_frames]
        c[:, INDEX["pitch"]] += _speech_head_motion(speech_track[:n_frames, 0], rng)
    return clip_controls(c)


def target_aus(spec: ClipSpec) -> tuple[int, ...]:
    """AUs the clip's instruction asks for."""
    aus = set(behaviour.motion_target_aus(spec.motions))
    if spec.kind == "talk":
        aus.update(behaviour.emotion_target_aus(spec.emotion, max(spec.intensity, 1)))
    return tuple(sorted(aus))


def clip_labels(controls: np.ndarray, min_frames: int = CLIP_MIN_FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (T, A) and clip-level (A,) AU activity of controls (clip: active in >= 3 frames)."""
    frames = active_aus(controls)
    return frames, frames.sum(0) >= min(min_frames, max(len(frames), 1))


def make_clip(spec: ClipSpec, cache_dir: str | None = None) -> Clip:
    """Generate the clip of ``spec`` (deterministic). ``cache_dir`` caches the synthesized speech."""
    if spec.has_speech:
        audio = _fit_audio(speech.synthesize(spec.speech_spec(), cache_dir=cache_dir))
        n_frames = len(audio) // SAMPLES_PER_FRAME
        track = np.asarray(speech.mouth_track(audio, sr=SAMPLE_RATE, fps=FPS, n_frames=n_frames), np.float32)
    else:
        n_frames = int(round(spec.duration_s * FPS))
        audio = np.zeros(n_frames * SAMPLES_PER_FRAME, np.float32)
        track = None
    controls = clip_controls_for(spec, n_frames, track)
    au_frames, au_clip = clip_labels(controls)
    target = np.isin(np.array(AU_IDS), target_aus(spec))
    keyframe = keyframe_controls(spec.keyframe_emotion, spec.keyframe_intensity,
                                 np.random.default_rng([spec.seed, 1]))
    return Clip(spec=spec, audio=audio, controls=controls, au_frames=au_frames, au_clip=au_clip,
                target_aus=target, keyframe=keyframe)


__all__ = ["Clip", "ClipSpec", "EMOTIONS", "FPS", "KINDS", "NUM_CONTROLS", "POSE_SLICE", "SAMPLE_RATE",
           "clip_controls_for", "clip_labels", "keyframe_controls", "make_clip", "sample_clip_spec",
           "spec_for_index", "target_aus"]
