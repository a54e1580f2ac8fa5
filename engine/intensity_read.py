"""The intensity level the generator read from an instruction (issue 28): "angry, level 2" for an instruction
the user meant as level 3 tells them to say it more strongly.

The reading is the generator's own: its intensity head (engine/modules/denoiser.py, trained on talk clips to
classify the instructed level 1-3 from the motion it makes, pooled over the window) applied to the motion a
session emitted, or to a short silent probe generation of the instruction (`read_instruction_level`). It is what
the model did with the words, not a parse of them. Backends without the head (ONNX Runtime: the training heads
are not exported) give None, and callers show no level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEVELS: tuple[int, ...] = (1, 2, 3)
LEVEL_NAMES: dict[int, str] = {1: "slight", 2: "moderate", 3: "strong"}


@dataclass(frozen=True)
class IntensityRead:
    level: int                 # 1..3, the most probable
    probs: tuple[float, ...]   # (3,) the head's softmax over levels 1..3

    @property
    def confidence(self) -> float:
        return self.probs[self.level - 1]

    def describe(self, emotion: str | None = None) -> str:
        """ "angry, level 2 (moderate; p 0.71)" (or "level 2 (...)" without an emotion)."""
        head = f"{emotion}, level {self.level}" if emotion else f"level {self.level}"
        return f"{head} ({LEVEL_NAMES[self.level]}; p {self.confidence:.2f})"


def _head(backend):
    model = getattr(backend, "model", None)
    return getattr(getattr(model, "denoiser", None), "intensity_head", None)


def has_intensity_head(backend) -> bool:
    return _head(backend) is not None


def read_motion_level(backend, motion: np.ndarray) -> IntensityRead | None:
    """The intensity head on emitted motion (T, M) in the diffusion scale (Session.motion_log, concatenated);
    None when the backend has no head or there is no motion."""
    head = _head(backend)
    motion = np.asarray(motion, np.float32)
    if head is None or motion.ndim != 2 or len(motion) == 0:
        return None
    import torch

    p = next(head.parameters())
    with torch.inference_mode():
        logits = head(torch.from_numpy(motion.mean(0, keepdims=True)).to(p.device, p.dtype)).float()
    probs = torch.softmax(logits[0], dim=-1).cpu().numpy().astype(float)
    return IntensityRead(level=int(np.argmax(probs)) + 1, probs=tuple(float(x) for x in probs))


def read_instruction_level(pipe, portrait, text: str, seconds: float = 1.2, seed: int = 0) -> IntensityRead | None:
    """The level the generator reads from `text`: a silent probe session of `seconds` on a prepared portrait
    (Pipeline.prepare), its emitted motion through the intensity head. Costs about seconds / chunk length
    chunk steps; None without a head."""
    if not has_intensity_head(pipe.backend):
        return None
    session, _ = pipe.new_session(portrait, text, seed=seed, keep_motion=True)
    silence = np.zeros(int(seconds * pipe.cfg.media.sample_rate), np.float32)
    session.push_audio(silence)
    session.flush()
    return read_motion_level(pipe.backend, np.concatenate(session.motion_log))


def understand_with_level(pipe, portrait, text: str | None, seconds: float = 1.2, seed: int = 0):
    """Pipeline.understand(text) (engine/understanding.py) with the level the generator read added when the
    instruction was taken as an emotion other than neutral: describe() then says "understood as angry, level 2
    (moderate; p 0.71) (similarity ...)". `portrait`: Pipeline.prepare's result (the probe session needs it).
    None when the pipeline has no reference table."""
    u = pipe.understand(text)
    if u is None or not text or u.label not in EMOTION_LABELS:
        return u
    read = read_instruction_level(pipe, portrait, text, seconds=seconds, seed=seed)
    return u if read is None else u.with_intensity(read)


EMOTION_LABELS: tuple[str, ...] = ("angry", "contempt", "disgusted", "fear", "happy", "sad", "surprised")
