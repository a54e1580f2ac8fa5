"""The intensity level the generator read from an instruction (issue 28): "angry, level 2" for an instruction
the user meant as level 3 tells them to say it more strongly.

The reading is the generator's own: its intensity head (engine/modules/denoiser.py, trained on talk clips to
classify the instructed level 1-3 from the motion it makes, pooled over the window) applied to the motion a
session emitted, or to a short silent probe generation of the instruction (`read_instruction_level`). It is what
the model did with the words, not a parse of them. The torch backend runs its own head; a backend without it
(ONNX Runtime: the training heads are not exported) reads the same head from the checkpoint file in numpy
(`weights=`, two small matrices); with neither, None, and callers show no level.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

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


HEAD_KEY = "denoiser.intensity_head."      # Linear(M, D) -> SiLU -> Linear(D, 3) in the checkpoint


def _head(backend):
    model = getattr(backend, "model", None)
    return getattr(getattr(model, "denoiser", None), "intensity_head", None)


@lru_cache(maxsize=4)
def numpy_head(weights: str) -> tuple[np.ndarray, ...] | None:
    """(W1 (D,M), b1 (D,), W2 (3,D), b2 (3,)) float32 from a checkpoint file, or None if it has no head."""
    from safetensors import safe_open

    names = [HEAD_KEY + n for n in ("0.weight", "0.bias", "2.weight", "2.bias")]
    with safe_open(str(weights), "np") as f:
        if not set(names) <= set(f.keys()):
            return None
        return tuple(f.get_tensor(n).astype(np.float32) for n in names)


def has_intensity_head(backend, weights: str | Path | None = None) -> bool:
    return _head(backend) is not None or (weights is not None and numpy_head(str(weights)) is not None)


def _logits(backend, pooled: np.ndarray, weights: str | Path | None) -> np.ndarray | None:
    """(3,) logits of the head on pooled motion (M,): the backend's torch head, else the checkpoint's in numpy."""
    head = _head(backend)
    if head is not None:
        import torch

        p = next(head.parameters())
        with torch.inference_mode():
            return head(torch.from_numpy(pooled[None]).to(p.device, p.dtype)).float()[0].cpu().numpy()
    w = numpy_head(str(weights)) if weights is not None else None
    if w is None:
        return None
    h = w[0] @ pooled + w[1]
    h = h / (1.0 + np.exp(-h))                                   # SiLU
    return w[2] @ h + w[3]


def read_motion_level(backend, motion: np.ndarray, weights: str | Path | None = None) -> IntensityRead | None:
    """The intensity head on emitted motion (T, M) in the diffusion scale (Session.motion_log, concatenated);
    None when there is no head (neither the backend's nor one in `weights`) or no motion."""
    motion = np.asarray(motion, np.float32)
    if motion.ndim != 2 or len(motion) == 0:
        return None
    logits = _logits(backend, motion.mean(0), weights)
    if logits is None:
        return None
    e = np.exp(logits - logits.max())
    probs = e / e.sum()
    return IntensityRead(level=int(np.argmax(probs)) + 1, probs=tuple(float(x) for x in probs))


def read_instruction_level(pipe, portrait, text: str, seconds: float = 1.2, seed: int = 0,
                           weights: str | Path | None = None) -> IntensityRead | None:
    """The level the generator reads from `text`: a silent probe session of `seconds` on a prepared portrait
    (Pipeline.prepare), its emitted motion through the intensity head (`weights`: the checkpoint the backend
    runs, for backends without the head). Costs about seconds / chunk length chunk steps; None without a head."""
    if not has_intensity_head(pipe.backend, weights):
        return None
    session, _ = pipe.new_session(portrait, text, seed=seed, keep_motion=True)
    silence = np.zeros(int(seconds * pipe.cfg.media.sample_rate), np.float32)
    session.push_audio(silence)
    session.flush()
    return read_motion_level(pipe.backend, np.concatenate(session.motion_log), weights)


def understand_with_level(pipe, portrait, text: str | None, seconds: float = 1.2, seed: int = 0,
                          weights: str | Path | None = None):
    """Pipeline.understand(text) (engine/understanding.py) with the level the generator read added when the
    instruction was taken as an emotion other than neutral: describe() then says "understood as angry, level 2
    (moderate; p 0.71) (similarity ...)". `portrait`: Pipeline.prepare's result (the probe session needs it).
    None when the pipeline has no reference table."""
    u = pipe.understand(text)
    if u is None or not text or u.label not in EMOTION_LABELS:
        return u
    read = read_instruction_level(pipe, portrait, text, seconds=seconds, seed=seed, weights=weights)
    return u if read is None else u.with_intensity(read)


EMOTION_LABELS: tuple[str, ...] = ("angry", "contempt", "disgusted", "fear", "happy", "sad", "surprised")
