"""Issue 28 experiment: can a plain similarity gate tell an instruction's intensity clause ("..., with no
restraint") from the clauses of the world's own phrasings? Every clause after an instruction's first (and their
join) is embedded alone by the demo's MiniLM; its cosine to the nearest train-split idiom or hedge
(avatarworld/phrasings.py) is the gate's score. Printed: the highest score among 1248 world phrasings (both
splits, emotion and combined, plus the 48 evaluation clips) and the score distribution of each new form's
train and held-out texts, with how many a gate at --accept lets through and how many of those get their level
right from the nearest level centroid.

    python scripts/intensity_gate_probe.py [--accept 0.8]
"""

from __future__ import annotations

import argparse
import re

import numpy as np

SPLIT = re.compile(r"\s*(?:[,;:()\[\]]|\s[-\u2013\u2014]\s|\.(?:\s+|$)|!+\s*|\?+\s*)\s*")


def candidates(text: str) -> list[str]:
    parts = [c.strip() for c in SPLIT.split(text) if c and c.strip()]
    tail = parts[1:]
    return list(dict.fromkeys(tail + ([", ".join(tail)] if len(tail) > 1 else [])))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accept", type=float, default=0.8)
    args = ap.parse_args(argv)
    from instructavatar.avatarworld import instructions as W
    from instructavatar.avatarworld import phrasings as P
    from instructavatar.engine.loader import load_pipeline
    from instructavatar.training.quality import eval_clips

    pipe = load_pipeline("demo", threads=1, announce=lambda m: None)

    def encode(texts):
        t = pipe.tokenizer(texts)
        e = pipe.backend.encode_text(t.ids, t.mask)[1]
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    refs = [(t, lv) for lists in (P.INTENSITY_IDIOMS, P.HEDGES) for lv, ps in lists.items()
            for t in P._split(ps, "train")]
    table, levels = encode([t for t, _ in refs]), np.array([lv for _, lv in refs])
    cents = np.stack([table[levels == lv].mean(0) for lv in (1, 2, 3)])

    def score(text):
        c = candidates(text)
        if not c:
            return 0.0, None
        e = encode(c)
        s = e @ table.T
        i = int(np.argmax(s.max(1)))
        return float(s[i].max()), int(np.argmax(cents @ e[i])) + 1

    rng = np.random.default_rng(0)
    world, emotions, motions = [], list(W.SYNONYMS), list(W.MOTIONS)
    for split in ("train", "heldout"):
        for _ in range(300):
            e, lv = emotions[rng.integers(len(emotions))], int(rng.integers(1, 4))
            world.append(W.emotion_instruction(e, lv, rng, split))
            world.append(W.combined_instruction(e, lv, [motions[rng.integers(len(motions))]], rng, split))
    world += [c.spec.instruction for c in eval_clips(48)]
    ws = [score(t)[0] for t in world]
    print(f"world phrasings: highest clause score {max(ws):.3f} over {len(world)} texts")
    for form in P.FORMS:
        for split in ("train", "heldout"):
            got = []
            for k in range(200):
                lv = 1 + k % 3
                emo = None if form == "described" else list(P.GRADED_ADJ)[k % len(P.GRADED_ADJ)]
                mot = [motions[k % len(motions)]] if form in ("described", "combination") else []
                t = P.form_instruction(form, emo, lv, mot, np.random.default_rng(k), split)
                if t is not None:
                    got.append((*score(t), lv))
            if not got:
                continue
            s = np.array([g[0] for g in got])
            passed = [g for g in got if g[0] >= args.accept]
            print(f"{form:12s} {split:8s} n {len(got):3d}  score p5/p50/p95 "
                  f"{np.percentile(s, 5):.2f}/{np.percentile(s, 50):.2f}/{np.percentile(s, 95):.2f}  "
                  f"pass {len(passed):3d}, level right {sum(g[1] == g[2] for g in passed):3d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
