"""Issue 28 experiment: a learned gate for the intensity clause. A logistic regression over the demo MiniLM's
pooled embedding of single clauses, trained on the train split only (positives: the train idioms and hedges,
alone and as cut out of idiom/hedge instructions; negatives: every other clause of those instructions, of the
world's train phrasings and of the other new forms), then asked on held-out texts: is the intensity clause
found, and does the gate fire on clauses that are not intensity phrases (the world's held-out phrasings, the
evaluation set, the other forms)?

    python scripts/intensity_gate_learned_probe.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from intensity_gate_probe import candidates  # noqa: E402  (the same clause split)

FORMS_OTHER = ("graded", "exclamation", "comparison", "described", "combination")


def main() -> int:
    from instructavatar.avatarworld import instructions as W
    from instructavatar.avatarworld import phrasings as P
    from instructavatar.engine.loader import load_pipeline
    from instructavatar.training.quality import eval_clips

    pipe = load_pipeline("demo", threads=1, announce=lambda m: None)
    emotions, motions = list(W.SYNONYMS), list(W.MOTIONS)
    lists = (P.INTENSITY_IDIOMS, P.HEDGES)

    def encode(texts: list[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), 64):
            t = pipe.tokenizer(texts[i:i + 64])
            e = pipe.backend.encode_text(t.ids, t.mask)[1]
            out.append(e / np.linalg.norm(e, axis=1, keepdims=True))
        return np.concatenate(out)

    def form_texts(form: str, split: str, n: int, seed: int) -> list[str]:
        out = []
        for k in range(n):
            emo = None if form == "described" else list(P.GRADED_ADJ)[k % len(P.GRADED_ADJ)]
            mot = [motions[k % len(motions)]] if form in ("described", "combination") else []
            t = P.form_instruction(form, emo, 1 + k % 3, mot, np.random.default_rng(seed + k), split)
            if t is not None:
                out.append(t)
        return out

    def world_texts(split: str, n: int, seed: int) -> list[str]:
        rng, out = np.random.default_rng(seed), []
        for _ in range(n):
            e, lv = emotions[rng.integers(len(emotions))], int(rng.integers(1, 4))
            out.append(W.emotion_instruction(e, lv, rng, split))
            out.append(W.combined_instruction(e, lv, [motions[rng.integers(len(motions))]], rng, split))
        return out

    def labelled(text: str, split: str) -> tuple[list[str], str | None]:
        """The text's candidate clauses and the one holding a known phrase of `split` (the truth)."""
        phrases = [p for d in lists for ps in d.values() for p in P._split(ps, split)]
        c = candidates(text)
        hit = [x for x in c if any(p in x for p in phrases)]
        return c, (min(hit, key=len) if hit else None)

    pos, neg = [], []
    for form in ("idiom", "hedge"):
        for t in form_texts(form, "train", 300, 0):
            c, h = labelled(t, "train")
            for x in c:
                (pos if x == h else neg).append(x)
    for t in world_texts("train", 300, 1):
        neg += candidates(t)
    for form in FORMS_OTHER:
        for t in form_texts(form, "train", 200, 2):
            neg += candidates(t)
    pos += [p for d in lists for ps in d.values() for p in P._split(ps, "train")]
    pos, neg = list(dict.fromkeys(pos)), list(dict.fromkeys(neg))
    x = np.concatenate([encode(pos), encode(neg)])
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    weight = np.where(y == 1, len(neg) / len(pos), 1.0)          # balance the classes
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(3000):                                         # logistic regression, gradient descent
        g = (1 / (1 + np.exp(-(x @ w + b))) - y) * weight
        w -= 0.5 * (x.T @ g / len(y) + 1e-3 * w)
        b -= 0.5 * float(g.mean())
    print(f"gate trained on {len(pos)} intensity clauses and {len(neg)} others (train split only)")

    def gate(texts: list[str]) -> np.ndarray:
        return 1 / (1 + np.exp(-(encode(texts) @ w + b)))

    for form in ("idiom", "hedge"):
        found = total = 0
        for t in form_texts(form, "heldout", 150, 5):
            c, h = labelled(t, "heldout")
            s = gate(c)
            found += bool(s.max() > 0.5 and c[int(np.argmax(s))] == h)
            total += 1
        print(f"{form} held out: the intensity clause found in {found} of {total}")
    others = [("world phrasings, held out", world_texts("heldout", 300, 7)),
              ("evaluation set", [c.spec.instruction for c in eval_clips(48)])]
    others += [(f"{form}, held out", form_texts(form, "heldout", 150, 9)) for form in FORMS_OTHER]
    for name, texts in others:
        fired = sum(1 for t in texts if candidates(t) and gate(candidates(t)).max() > 0.5)
        print(f"{name}: the gate fires on {fired} of {len(texts)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
