"""Issue 28: what the instruction reader (engine/instruction_reader.py) does with each phrasing form, text side
only (no video): how often it restates an instruction, at the right level, on train- and held-out-split texts
of the idiom, hedge and exclamation forms; and how often it touches what it should leave alone (the world's
phrasings of both splits, the 48 evaluation clips, held-out graded, comparison, described and combination
texts).

    python scripts/instruction_reader_probe.py [--n 150]
"""

from __future__ import annotations

import argparse

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=150, help="texts per form and split")
    args = ap.parse_args(argv)
    from instructavatar.avatarworld import instructions as W
    from instructavatar.avatarworld import phrasings as P
    from instructavatar.engine.loader import load_pipeline
    from instructavatar.training.quality import eval_clips

    pipe = load_pipeline("demo", threads=1, announce=lambda m: None)
    emotions, motions = list(P.GRADED_ADJ), list(W.MOTIONS)
    levels = {"idiom": (1, 2, 3), "hedge": (1, 2), "exclamation": (3,)}

    def form_texts(form: str, split: str, seed: int) -> list[tuple[str, int]]:
        out = []
        for k in range(args.n):
            lv = levels.get(form, (1, 2, 3))[k % len(levels.get(form, (1, 2, 3)))]
            emo = None if form == "described" else emotions[k % len(emotions)]
            mot = [motions[k % len(motions)]] if form in ("described", "combination") else []
            t = P.form_instruction(form, emo, lv, mot, np.random.default_rng(seed + k), split)
            if t is not None:
                out.append((t, lv))
        return out

    print("| form | split | texts | restated | at the asked level |\n|---|---|---:|---:|---:|")
    for form in levels:
        for split in ("train", "heldout"):
            texts = form_texts(form, split, 5)
            reads = [pipe.read_instruction(t) for t, _ in texts]
            fired = sum(r is not None for r in reads)
            right = sum(r is not None and r.level == lv for r, (_, lv) in zip(reads, texts))
            print(f"| {form} | {split} | {len(texts)} | {fired} | {right} |")
    rng = np.random.default_rng(7)
    world = []
    for split in ("train", "heldout"):
        for k in range(args.n):
            e = W.EMOTIONS[int(rng.integers(len(W.EMOTIONS)))]
            world.append(W.emotion_instruction(e, int(rng.integers(1, 4)), rng, split))
            world.append(W.combined_instruction(e, int(rng.integers(1, 4)), [motions[k % len(motions)]], rng, split))
    others = [("the world's phrasings, both splits", world),
              ("the 48 evaluation clips", [c.spec.instruction for c in eval_clips(48)])]
    others += [(f"{form}, held out", [t for t, _ in form_texts(form, "heldout", 9)])
               for form in ("graded", "comparison", "described", "combination")]
    print("\n| left alone? | texts | restated | examples |\n|---|---:|---:|---|")
    for name, texts in others:
        hits = [(t, r.restated) for t in texts for r in [pipe.read_instruction(t)] if r is not None]
        shown = "; ".join(f"{t!r} -> {s!r}" for t, s in hits[:2])
        print(f"| {name} | {len(texts)} | {len(hits)} | {shown} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
