"""Instructions as people type them (avatarworld/phrasings.py): levels carried by words and idioms, described
motions, and a held-out split of every new list that training never sees (and that never meets the world's)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from instructavatar.avatarworld import instructions as W
from instructavatar.avatarworld import phrasings as P

EMOS = tuple(e for e in W.EMOTIONS if e != "neutral")


def _flat(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _flat(v)
    elif isinstance(x, (tuple, list)):
        for v in x:
            yield from _flat(v)
    else:
        yield str(x)


def _fillers(split: str, world: bool = False) -> set[str]:
    """Filler items (no template slots) of this module's split, or of the world's."""
    items = _flat(W.all_phrasings(split) if world else P.all_free_phrasings(split))
    return {x.lower() for x in items if "{" not in x}


def _has(text: str, item: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(item)}(?![\w-])", text) is not None


def _sample(split: str, seed: int, n: int) -> str:
    """n texts of each kind (every emotion form at every level it can say, described motions, combinations)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        e = EMOS[int(rng.integers(len(EMOS)))]
        lvl = int(rng.integers(1, 4))
        ms = [W.MOTIONS[j] for j in rng.choice(len(W.MOTIONS), size=int(rng.integers(1, 4)), replace=False)]
        for form in P.EMOTION_FORMS_BY_LEVEL[lvl]:
            out.append(P.free_emotion_instruction(e, lvl, rng, split, form))
        out.append(P.described_motion_instruction(ms, rng, split))
        out.append(P.combination_instruction(e, lvl, ms, rng, split))
    return "\n".join(out).lower()


@pytest.fixture(scope="module")
def samples() -> dict[str, str]:
    return {s: _sample(s, 99, 400) for s in ("train", "heldout")}


def test_every_list_has_a_held_out_part_and_lists_are_disjoint():
    train, held = P.all_free_phrasings("train"), P.all_free_phrasings("heldout")
    for key in train:
        assert list(_flat(held[key])), key            # every new form has held-out items
        assert not set(_flat(train[key])) & set(_flat(held[key])), key
    for lists in (P.GRADED_ADJ, P.GRADED_NOUN):
        assert set(lists) == set(EMOS)
        for e, grades in lists.items():
            assert set(grades) == set(P.GRADES), e
            for g, words in grades.items():
                assert len(words) >= 5 and len(W._split(words, "heldout")) >= 1, (e, g)
    assert set(P.MOTION_DESCRIPTIONS) == set(W.MOTIONS)


def test_new_held_out_items_are_not_train_items_of_either_vocabulary():
    train = _fillers("train") | _fillers("train", world=True)
    for item in _fillers("heldout"):
        hits = [t for t in train if _has(t, item)]
        assert not hits, (item, hits[:3])
    # and no train item here is (or contains) one of the world's held-out items
    for item in _fillers("heldout", world=True):
        hits = [t for t in _fillers("train") if _has(t, item)]
        assert not hits, (item, hits[:3])


def test_held_out_forms_never_appear_in_training_phrasings(samples):
    train_text = samples["train"]
    for item in _fillers("heldout"):
        assert not _has(train_text, item), item
    # held-out templates/patterns: their fixed text around the slots never shows up in train outputs
    held = P.all_free_phrasings("heldout")
    templates = (list(_flat(held["graded_templates"])) + list(_flat(held["idiom_patterns"]))
                 + list(_flat(held["hedge_patterns"])) + list(_flat(held["exclamations"]))
                 + list(_flat(held["comparisons"])))
    for t in templates:
        cores = [c.strip(" ,.;!-()").lower() for c in re.split(r"\{[a-z]+\}", t)]
        core = max(cores, key=len)
        if len(core.split()) >= 3:                    # short glue ("; ", " - ") is shared by design
            assert core not in train_text, (t, core)


def test_train_outputs_are_train_only_and_held_out_outputs_use_held_out_words(samples):
    # a train phrasing of the world's held-out split never slips in through the new forms
    for item in _fillers("heldout", world=True):
        if len(item) >= 4:
            assert not _has(samples["train"], item), item
    # held-out samples contain no new train graded word of 5+ letters that is not part of a held-out item
    held_items = _fillers("heldout")
    for e in EMOS:
        for g in P.GRADES:
            comparatives = " ".join(P.COMPARATIVES[e])         # shared by both splits (comparison templates split)
            for w in W._split(P.GRADED_ADJ[e][g], "train") + W._split(P.GRADED_NOUN[e][g], "train"):
                if len(w) >= 5 and not any(_has(h, w.lower()) for h in held_items) and w not in comparatives:
                    assert not _has(samples["heldout"], w.lower()), w


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_a_strong_word_alone_means_the_top_level(split):
    rng = np.random.default_rng(4)
    for e in EMOS:
        strong = {w.lower() for w in W._split(P.GRADED_ADJ[e]["strong"], split) + W._split(P.GRADED_NOUN[e]["strong"],
                                                                                             split)}
        for _ in range(30):
            text = P.free_emotion_instruction(e, 3, rng, split, "graded").lower()
            assert any(_has(text, w) for w in strong), text
            # no intensity adverb, modifier or idiom: the word alone carries the level
            words = [w for lvl in W.INTENSITIES for w in W.INTENSITY_ADVERBS[lvl] + W.INTENSITY_NOUN_MODS[lvl]]
            words += [w for ws in P.INTENSITY_IDIOMS.values() for w in ws]
            assert not any(_has(text, w) for w in words if w not in strong), text
        for w in strong:
            assert P.grade_of_word(e, w) == 3
        for lvl, g in enumerate(P.GRADES, 1):
            for w in P.GRADED_ADJ[e][g]:
                assert P.grade_of_word(e, w) == lvl


def test_each_form_says_its_level():
    rng = np.random.default_rng(8)
    for lvl in W.INTENSITIES:
        for _ in range(20):
            t = P.free_emotion_instruction("angry", lvl, rng, "train", "idiom").lower()
            assert any(_has(t, i) for i in W._split(P.INTENSITY_IDIOMS[lvl], "train")), t
            t = P.free_emotion_instruction("sad", lvl, rng, "train", "comparison").lower()
            assert any(c in t for c in P.COMPARATIVES["sad"]) or "as " in t, t
    t = P.free_emotion_instruction("happy", 2, rng, "train", "hedge").lower()
    assert any(_has(t, h.lower()) for h in W._split(P.HEDGES[2], "train")), t
    assert "!" in P.free_emotion_instruction("fear", 3, rng, "train", "exclamation")
    with pytest.raises(ValueError, match="cannot say intensity 3"):
        P.free_emotion_instruction("fear", 3, rng, "train", "hedge")
    with pytest.raises(ValueError, match="cannot say intensity 1"):
        P.free_emotion_instruction("fear", 1, rng, "train", "exclamation")
    with pytest.raises(ValueError, match="unknown emotion form"):
        P.free_emotion_instruction("fear", 1, rng, "train", "poem")


def test_described_motions_do_not_name_them_and_cover_every_phrasing():
    rng = np.random.default_rng(6)
    for m in W.MOTIONS:
        seen = {P.described_motion_instruction([m], rng).lower().rstrip(".") for _ in range(200)}
        assert seen == {x.lower() for x in W._split(P.MOTION_DESCRIPTIONS[m], "train")}, m
        for d in P.MOTION_DESCRIPTIONS[m]:
            assert d not in W.MOTION_PHRASES[m], d


def test_form_instruction_matches_clip_content():
    rng = np.random.default_rng(1)
    assert P.form_instruction("graded", "angry", 3, [], rng) is not None
    assert P.form_instruction("graded", "angry", 3, ["nod"], rng) is None        # that is a combination
    assert P.form_instruction("graded", "neutral", 1, [], rng) is None
    assert P.form_instruction("hedge", "sad", 3, [], rng) is None
    assert P.form_instruction("described", None, 1, ["nod"], rng) is not None
    assert P.form_instruction("combination", "happy", 2, ["smile"], rng) is not None
    with pytest.raises(ValueError, match="unknown form"):
        P.form_instruction("haiku", "happy", 2, [], rng)


def test_sentences_are_finished(samples):
    for split in samples:
        for text in samples[split].split("\n"):
            assert text.endswith((".", "!", "?")) and "{" not in text and "  " not in text, text
            assert not re.search(r"\ba [aeiou]", text), text


def test_deterministic_by_seed():
    assert _sample("train", 5, 20) == _sample("train", 5, 20)
    assert _sample("train", 5, 20) != _sample("train", 6, 20)
