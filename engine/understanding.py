"""What the model took an instruction to mean: the nearest known behaviour, by the text encoder's similarity.

The demo model was trained on the synthetic world's phrasings (avatarworld/instructions.py): 8 emotions
(3 intensities) and 22 motions. An instruction far from all of them ("do a backflip") or one the tokenizer
cannot read ("笑着说话" is all [UNK] for the English MiniLM vocabulary) still produces *some* expression; this
module says which one the words are closest to, so the user is not left guessing:

    Understanding(label="happy", similarity=0.83, unknown_fraction=0.0, nearest="Talk very happily.", ...)

The reference is a small table shipped with the checkpoint (instructavatar/assets/demo/instruction_reference.npz:
the pooled text embeddings, fp16, of train-split phrasings of every behaviour, with their labels and texts),
made by `python -m instructavatar.engine.understanding --write` (torch). At run time nothing is embedded twice:
the user's text goes through the backend's `encode_text` once (as the pipeline does anyway) and its pooled
vector is compared with the table (cosine; the demo encoder's pooled vectors are L2-normalised). The label is
the behaviour of the nearest reference phrasing; `second` the next different behaviour (a combined
instruction is near both of its parts).

Warnings (one line each, in the API's warnings, printed by the CLI): mostly unknown tokens
(`unknown_fraction` >= UNKNOWN_WARN), or a similarity below FAR_WARN (nothing like the training phrasings).
The intensity level (#28) slots in as `Understanding.intensity`, shown by `describe()` when present.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

import instructavatar

REFERENCE_FILE = Path(instructavatar.__file__).resolve().parent / "assets" / "demo" / "instruction_reference.npz"
UNKNOWN_WARN = 0.5        # warn when at least half of the instruction's tokens are [UNK]
FAR_WARN = 0.43           # warn below this cosine to the nearest training phrasing: held-out phrasings of the
#                           trained behaviours score 0.44-0.99 (5th percentile 0.50), unrelated requests
#                           ("do a backflip", "order a pizza", "sing a song") 0.21-0.41
EMOTION_SAMPLES = 12      # train-split phrasings per emotion and intensity in the reference
FREE_SAMPLES = 4          # and phrasings as people type them (avatarworld/phrasings.py, issue 28) per emotion, level


@dataclass(frozen=True)
class Understanding:
    label: str                     # the nearest behaviour: an emotion ("happy") or a motion ("nod")
    similarity: float              # cosine similarity to its nearest reference phrasing
    nearest: str                   # that phrasing
    second: str | None             # the next different behaviour (combined instructions are near both parts)
    second_similarity: float | None
    unknown_fraction: float        # share of the instruction's tokens the tokenizer could not read ([UNK])
    intensity: object | None = None    # issue 28: engine/intensity_read.IntensityRead, when read
    reading: object | None = None      # issue 28: engine/instruction_reader.Reading, when restated

    @property
    def warnings(self) -> list[str]:
        out = []
        if self.unknown_fraction >= UNKNOWN_WARN:
            out.append(f"{100 * self.unknown_fraction:.0f}% of the instruction's tokens are unknown to the text "
                       "encoder (it reads English): the model acts an arbitrary expression")
        elif self.similarity < FAR_WARN:
            out.append(f"the instruction is far from every phrasing the model was trained on (nearest behaviour "
                       f"{self.label!r}, similarity {self.similarity:.2f}): it may act something arbitrary")
        return out

    def describe(self) -> str:
        """One line: 'understood as happy (similarity 0.83, like "Talk very happily.")'."""
        text = f"understood as {self.label}"
        if self.intensity is not None and hasattr(self.intensity, "describe"):
            text = f"understood as {self.intensity.describe(self.label)}"
        text += f" (similarity {self.similarity:.2f}, like \"{self.nearest}\")"
        if self.second is not None and self.second_similarity is not None:
            text += f"; next: {self.second} ({self.second_similarity:.2f})"
        if self.reading is not None and hasattr(self.reading, "describe"):
            text += f"; {self.reading.describe()}"
        return text

    def with_intensity(self, intensity) -> Understanding:
        return replace(self, intensity=intensity)

    def with_reading(self, reading) -> Understanding:
        return replace(self, reading=reading)


@dataclass(frozen=True)
class ReferenceTable:
    embeddings: np.ndarray         # (R, D) float32, L2-normalised
    labels: tuple[str, ...]        # (R,)
    texts: tuple[str, ...]         # (R,)

    @staticmethod
    def load(path: Path = REFERENCE_FILE) -> ReferenceTable | None:
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as z:
            emb = z["embeddings"].astype(np.float32)
            return ReferenceTable(_normalise(emb), tuple(str(x) for x in z["labels"]),
                                  tuple(str(x) for x in z["texts"]))

    def nearest(self, pooled: np.ndarray) -> tuple[str, float, str, str | None, float | None]:
        sims = self.embeddings @ _normalise(pooled.reshape(1, -1).astype(np.float32))[0]     # (R,)
        order = np.argsort(-sims)
        best = int(order[0])
        second = next((int(i) for i in order if self.labels[int(i)] != self.labels[best]), None)
        return (self.labels[best], float(sims[best]), self.texts[best],
                None if second is None else self.labels[second], None if second is None else float(sims[second]))


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def unknown_fraction(tokenizer, ids: np.ndarray, mask: np.ndarray) -> float:
    """Share of real tokens (special start/end tokens excluded) that are the tokenizer's unknown token."""
    unk = getattr(tokenizer, "unk_id", None)
    if unk is None:                          # byte-level BPE (CLIP) reads any text
        return 0.0
    real = ids[mask.astype(bool)][1:-1]      # drop [CLS] ... [SEP]
    return float(np.mean(real == unk)) if real.size else 0.0


def understand(table: ReferenceTable | None, tokenizer, ids: np.ndarray, mask: np.ndarray,
               pooled: np.ndarray) -> Understanding | None:
    """One instruction's Understanding from its tokens and pooled embedding (None without a table)."""
    if table is None or pooled.shape[-1] != table.embeddings.shape[1]:
        return None
    label, sim, text, second, second_sim = table.nearest(pooled)
    return Understanding(label=label, similarity=sim, nearest=text, second=second, second_similarity=second_sim,
                         unknown_fraction=unknown_fraction(tokenizer, ids, mask))


def reference_phrasings(split: str = "train", seed: int = 0) -> list[tuple[str, str]]:
    """(label, text) pairs: every neutral and motion phrasing of `split`, and EMOTION_SAMPLES random phrasings
    per emotion and intensity (templates x synonyms x intensity words), plus each emotion's canonical one."""
    from ..avatarworld import instructions as ins

    rng = np.random.default_rng(seed)
    pairs: list[tuple[str, str]] = []
    phr = ins.all_phrasings(split)
    pairs += [("neutral", ins._finish(t)) for t in phr["neutral"]]
    for motion, texts in phr["motions"].items():
        pairs += [(motion, ins._finish(t)) for t in texts]
    for emotion in ins.EMOTIONS:
        if emotion == "neutral":
            continue
        for level in ins.INTENSITIES:
            if split == "train":
                pairs.append((emotion, ins.canonical_instruction(emotion, level)))
            pairs += [(emotion, ins.emotion_instruction(emotion, level, rng, split)) for _ in range(EMOTION_SAMPLES)]
    pairs += _free_phrasings(split, seed)
    seen, out = set(), []
    for label, text in pairs:
        if text not in seen:
            seen.add(text)
            out.append((label, text))
    return out


def _free_phrasings(split: str, seed: int) -> list[tuple[str, str]]:
    """Issue 28's forms, after the world's (their own random stream: the world's draws above are unchanged):
    FREE_SAMPLES per emotion and level (graded words, idioms, exclamation, comparison, hedging) and every
    described motion of `split`, so that "Look livid." is near anger and "Show that you agree." near a nod."""
    from ..avatarworld import instructions as ins
    from ..avatarworld import phrasings as free

    rng = np.random.default_rng([seed, 28])
    pairs = [(emotion, free.free_emotion_instruction(emotion, level, rng, split))
             for emotion in ins.EMOTIONS if emotion != "neutral" for level in ins.INTENSITIES
             for _ in range(FREE_SAMPLES)]
    for motion, texts in free.all_free_phrasings(split)["motion_descriptions"].items():
        pairs += [(motion, free._finish(t)) for t in texts]
    return pairs


def embed(pipeline, texts: list[str], batch: int = 64) -> np.ndarray:
    """Pooled embeddings (N, D) of texts through the pipeline's tokenizer and backend. Tokens are trimmed to the
    batch's longest text: the pooled vector does not change (tests/engine/test_text_encoder.py), the cost falls
    with the padding (5-7x for short texts)."""
    out = []
    for i in range(0, len(texts), batch):
        tokens = pipeline.tokenizer(texts[i:i + batch]).trim()
        out.append(pipeline.backend.encode_text(tokens.ids, tokens.mask)[1])
    return np.concatenate(out).astype(np.float32)


def write_reference(pipeline, path: Path = REFERENCE_FILE) -> Path:
    pairs = reference_phrasings("train")
    emb = embed(pipeline, [t for _, t in pairs])
    np.savez_compressed(path, embeddings=emb.astype(np.float16), labels=np.array([lb for lb, _ in pairs]),
                        texts=np.array([t for _, t in pairs]))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m instructavatar.engine.understanding",
                                 description="Write (or query) the shipped instruction reference table.")
    ap.add_argument("--write", action="store_true", help=f"embed the reference phrasings into {REFERENCE_FILE}")
    ap.add_argument("text", nargs="*", help="instructions to explain with the shipped table")
    args = ap.parse_args(argv)
    from .loader import load_pipeline

    pipe = load_pipeline("demo", threads=1)
    if args.write:
        print(write_reference(pipe))
        pipe.reference = ReferenceTable.load()
    for text in args.text:
        u = pipe.understand(text)
        print(f"{text!r}: {u.describe() if u else 'no reference table'}", *(u.warnings if u else []), sep="\n  ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
