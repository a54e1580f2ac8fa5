"""Issue 28 experiment: can the frozen MiniLM text embedding say the level of a held-out intensity idiom, and do
more train idioms help? A ridge read-out of the level (1-3) from the pooled embedding of idiom-form instructions
(avatarworld/phrasings.py), fitted on 900 train-split texts, scored on 300 held-out-split texts (held-out idioms
and patterns), without and with 20 extra train idioms per level (EXTRA, written for this test; none is a
held-out item or a near copy of one). A proxy for the generator, which reads the same embeddings.
Then the intensity phrase alone, cut out of its instruction: each held-out idiom and hedge embedded by itself,
given the level of the nearest train phrase of its list (cosine) and of the nearest level centroid.

    python scripts/idiom_readout_probe.py
"""

from __future__ import annotations

import numpy as np

from instructavatar.avatarworld import phrasings as P
from instructavatar.engine.loader import load_pipeline

EXTRA = {
    1: ("a hint of it", "only a trace", "a whisper of it", "the slightest bit", "just a pinch", "barely a hint",
        "a tiny amount", "only a speck", "a touch of it", "a drop of it", "a sliver", "just a dash",
        "a faint trace", "not much at all", "a little tiny bit", "just a fraction", "only a crumb", "a mere hint",
        "low key", "dialled right down"),
    2: ("at normal strength", "a moderate amount", "at an even level", "at an ordinary level",
        "neither weak nor strong", "a medium amount", "at a balanced level", "in between", "at a regular strength",
        "about average", "at a middling level", "reasonably", "a decent amount", "at a comfortable level",
        "at mid strength", "somewhere in the middle", "at a typical level", "at a sensible level",
        "halfway up the dial", "an average amount"),
    3: ("at full strength", "as much as you can", "to the extreme", "cranked all the way up", "at maximum",
        "full throttle", "like never before", "at a roar", "turned up to eleven", "at the highest level",
        "as strongly as possible", "as hard as you can", "to the limit", "maxed out", "at fever pitch",
        "in full force", "at peak power", "big time", "as intensely as you can", "dialled all the way up"),
}
LAMBDAS = (0.1, 1.0, 10.0, 100.0)


def idiom_texts(split: str, n: int, extra: bool = False, seed: int = 0) -> list[tuple[str, int]]:
    """n (instruction, level) pairs in the idiom form; with `extra`, 70% use an EXTRA idiom instead."""
    rng = np.random.default_rng(seed)
    emotions = list(P.GRADED_ADJ)
    out = []
    for _ in range(n):
        emotion = emotions[rng.integers(len(emotions))]
        level = int(rng.integers(1, 4))
        if extra and rng.random() < 0.7:
            clause = P._graded_clause(emotion, "plain", rng, split)
            pattern = P._pick(rng, P._split(P.IDIOM_PATTERNS, split))
            idiom = EXTRA[level][rng.integers(len(EXTRA[level]))]
            text = P._finish(pattern.format(clause=clause, idiom=idiom))
        else:
            text = P.form_instruction("idiom", emotion, level, [], rng, split)
        out.append((text, level))
    return out


def pooled_embeddings(pipe, items) -> tuple[np.ndarray, np.ndarray]:
    tokens = pipe.tokenizer([t for t, _ in items])
    _, pooled = pipe.backend.encode_text(tokens.ids, tokens.mask)
    return pooled, np.array([level for _, level in items])


def ridge(x: np.ndarray, y: np.ndarray, lam: float):
    """A one-vs-all ridge classifier on standardised features -> predict(x) -> levels."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    a = (x - mu) / sd
    w = np.linalg.solve(a.T @ a + 0.01 * lam * len(a) * np.eye(a.shape[1]), a.T @ np.eye(3)[y - 1])
    return lambda z: (((z - mu) / sd) @ w).argmax(1) + 1


def main() -> int:
    pipe = load_pipeline("demo", threads=1, announce=lambda m: None)
    held = idiom_texts("heldout", 300, seed=9)
    xh, yh = pooled_embeddings(pipe, held)
    for extra in (False, True):
        xt, yt = pooled_embeddings(pipe, idiom_texts("train", 900, extra=extra, seed=1))
        acc = {lam: float((ridge(xt, yt, lam)(xh) == yh).mean()) for lam in LAMBDAS}
        print(("with" if extra else "without") + " extra train idioms: held-out level accuracy by ridge lambda",
              {k: round(v, 3) for k, v in acc.items()})
        predict = ridge(xt, yt, max(acc, key=acc.get))
        pred = predict(xh)
        for level in (1, 2, 3):
            for idiom in P._split(P.INTENSITY_IDIOMS[level], "heldout"):
                sel = np.array([idiom in t for t, _ in held])
                if sel.any():
                    print(f"    level {level} {idiom!r}: read as levels 1/2/3",
                          np.bincount(pred[sel], minlength=4)[1:].tolist())
    unit = lambda e: e / np.linalg.norm(e, axis=1, keepdims=True)  # noqa: E731
    for name, lists in (("idiom", P.INTENSITY_IDIOMS), ("hedge", P.HEDGES)):
        refs = {lv: unit(pooled_embeddings(pipe, [(t, lv) for t in P._split(lists[lv], "train")])[0])
                for lv in lists}
        right = total = 0
        for level in lists:
            for phrase in P._split(lists[level], "heldout"):
                e = unit(pooled_embeddings(pipe, [(phrase, level)])[0])[0]
                nearest = max(refs, key=lambda lv: float((refs[lv] @ e).max()))
                centroid = max(refs, key=lambda lv: float(unit(refs[lv].mean(0, keepdims=True))[0] @ e))
                right += centroid == level
                total += 1
                print(f"    {name} alone, level {level} {phrase!r}: nearest train phrase's level {nearest}, "
                      f"nearest centroid's {centroid}")
        print(f"{name} phrases alone: held-out level by centroid {right}/{total}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
