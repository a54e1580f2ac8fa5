"""train prepare --free-texts (training/motion_data.py): the extra phrasings are train-split free forms of the
clip's own content, and a phrasing too long to store is drawn again."""

from __future__ import annotations

import numpy as np

from instructavatar.avatarworld import instructions as W
from instructavatar.avatarworld import phrasings as P
from instructavatar.avatarworld.clips import spec_for_index
from instructavatar.engine.pipeline import DEFAULT_INSTRUCTION
from instructavatar.training import motion_data as D


class _Clip:
    def __init__(self, spec):
        self.spec = spec


def _specs(n=60):
    return [spec_for_index(0, i, "train") for i in range(n)]


def test_free_texts_say_the_clips_content_from_the_train_split():
    held = {w.lower() for e in P.GRADED_ADJ for g in P.GRADES for w in P.GRADED_ADJ[e][g][4::5]}
    held |= {d.lower() for m in P.MOTION_DESCRIPTIONS for d in P.MOTION_DESCRIPTIONS[m][4::5]}
    rng = np.random.default_rng(0)
    kinds = set()
    for s in _specs():
        texts = D.free_texts(_Clip(s), rng, 2)
        assert len(texts) == 2
        kinds.add(s.kind)
        if s.kind == "talk_neutral":
            assert texts == [DEFAULT_INSTRUCTION] * 2
            continue
        for t in texts:
            low = t.lower()
            assert not any(f" {h} " in f" {low} " or f" {h}." in f" {low}" for h in held), t
            if s.kind == "motion":                 # described, never named by the world's own phrasings
                assert not any(low.rstrip(".") == p for m in s.motions for p in W.MOTION_PHRASES[m]), t
    assert kinds == {"talk", "motion", "talk_neutral"}


def test_a_phrasing_too_long_to_store_is_drawn_again():
    s = next(x for x in _specs(200) if x.kind == "motion" and len(x.motions) == 3)
    short = D.free_texts(_Clip(s), np.random.default_rng(1), 5, fits=lambda t: len(t.split()) <= 20)
    assert all(len(t.split()) <= 20 for t in short)
    try:
        D.free_texts(_Clip(s), np.random.default_rng(1), 1, fits=lambda t: False, tries=3)
    except RuntimeError as e:
        assert "fits in" in str(e)
    else:
        raise AssertionError("an unfittable phrasing must be an error")
