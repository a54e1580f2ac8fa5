"""Instruction texts: coverage, determinism, length, and the fixed held-out split (no leaks either way)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from instructavatar.avatarworld import instructions as I

SPLITS = ("train", "heldout")


def _sample(split: str, seed: int, n: int) -> list[str]:
    """n emotion, n motion and n combined instructions of one split."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        e = I.EMOTIONS[int(rng.integers(len(I.EMOTIONS)))]
        lvl = int(rng.integers(1, 4))
        k = int(rng.integers(1, 4))
        ms = [I.MOTIONS[j] for j in rng.choice(len(I.MOTIONS), size=k, replace=False)]
        out.append(I.emotion_instruction(e, lvl, rng, split))
        out.append(I.motion_instruction(ms, rng, split))
        out.append(I.combined_instruction(e, lvl, ms, rng, split))
    return out


@pytest.fixture(scope="module")
def samples() -> dict[str, str]:
    """All sampled texts per split, lower-cased and joined (one per line)."""
    return {s: "\n".join(_sample(s, 1234, 1000)).lower() for s in SPLITS}


def _items(split: str) -> dict[str, list[str]]:
    """Filler items of one split (synonyms, intensity words, neutral and motion phrasings), by kind."""
    p = I.all_phrasings(split)
    syn = [w for kinds in p["synonyms"].values() for ws in kinds.values() for w in ws]
    ints = [w for ws in p["intensity_adverbs"].values() for w in ws]
    ints += [w for ws in p["intensity_noun_mods"].values() for w in ws]
    motions = [w for ws in p["motions"].values() for w in ws]
    return {"synonyms": syn, "intensity": ints, "neutral": list(p["neutral"]), "motions": motions}


def _slot_regex() -> dict[str, str]:
    """Regex alternatives of every filler (both splits) of each emotion-template slot."""
    words = {"int": [w for ws in I.INTENSITY_ADVERBS.values() for w in ws],
             "nint": [w for ws in I.INTENSITY_NOUN_MODS.values() for w in ws]}
    for kind in I.TEMPLATES:
        words[kind] = [w for kinds in I.SYNONYMS.values() for w in kinds[kind]]
    return {k: "(?:" + "|".join(re.escape(w) for w in sorted(v, key=len, reverse=True)) + ")"
            for k, v in words.items()}


def _template_regex(template: str) -> re.Pattern:
    """Regex of the texts a template yields (emotion slots: any filler; motion/clause slots: anything)."""
    slots = _slot_regex()
    out, pos = [], 0
    for m in re.finditer(r"\{([a-z_]+)\}", template):
        out.append(re.escape(template[pos:m.start()]))
        out.append(slots.get(m.group(1), ".+?"))
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out))


def test_constants():
    assert I.EMOTIONS == ("angry", "contempt", "disgusted", "fear", "happy", "sad", "surprised", "neutral")
    assert I.INTENSITIES == (1, 2, 3)
    required = {"raise_eyebrows", "frown", "close_eyes", "wink_left", "wink_right", "smile",
                "open_mouth_wide", "nod", "shake_head", "tilt_head_left", "tilt_head_right", "look_left",
                "look_right", "look_up", "look_down", "blink"}
    assert required <= set(I.MOTIONS)
    assert set(I.MOTIONS) == set(I.MOTION_PHRASES)


def test_inventory_sizes():
    assert sum(len(v) for v in I.TEMPLATES.values()) >= 40
    for emo, kinds in I.SYNONYMS.items():
        assert set(kinds) == set(I.TEMPLATES), emo
        for kind, words in kinds.items():
            assert len(words) >= 6 and len(I._split(words, "train")) >= 5, (emo, kind)
            assert len(set(words)) == len(words)
    assert set(I.SYNONYMS) == set(I.EMOTIONS) - {"neutral"}
    for lvl in I.INTENSITIES:
        assert len(I._split(I.INTENSITY_ADVERBS[lvl], "train")) >= 4
        assert len(I._split(I.INTENSITY_NOUN_MODS[lvl], "train")) >= 4
    assert len(I.NEUTRAL_PHRASES) >= 10
    for m, phrases in I.MOTION_PHRASES.items():
        assert len(phrases) >= 8, m
        assert len(I._split(phrases, "train")) >= 6, m
        assert len(set(phrases)) == len(phrases), m


def test_split_is_fixed_and_about_20_percent():
    train, held = I.all_phrasings("train"), I.all_phrasings("heldout")
    n_train = sum(len(v) for v in train["templates"].values())
    n_held = sum(len(v) for v in held["templates"].values())
    assert 0.15 <= n_held / (n_train + n_held) <= 0.25
    assert held["templates"]["adj"][0] == I.TEMPLATES["adj"][4]  # rule: index % 5 == 4, append-only lists
    for split_items in (_items("train"), _items("heldout")):
        assert all(split_items.values())
    tr, he = _items("train"), _items("heldout")
    for kind in tr:
        assert not set(tr[kind]) & set(he[kind]), kind
    with pytest.raises(ValueError):
        I.all_phrasings("test")


@pytest.mark.parametrize("split", SPLITS)
def test_every_emotion_intensity_and_motion_yields_text(split):
    rng = np.random.default_rng(0)
    for emo in I.EMOTIONS:
        for lvl in I.INTENSITIES:
            for _ in range(5):
                text = I.emotion_instruction(emo, lvl, rng, split)
                assert isinstance(text, str) and len(text.split()) >= 2
                assert text[0].isupper() and text.endswith(".")
                assert "{" not in text and "  " not in text
    for m in I.MOTIONS:
        for timing in (None, *I.TIMINGS):
            text = I.motion_instruction([m], rng, split, timing=timing)
            assert text and "{" not in text
        assert I.combined_instruction("happy", 2, [m], rng, split)


def test_builder_covers_every_motion_phrase():
    """Every train phrasing of every motion shows up in train output (the builder reaches all of them)."""
    rng = np.random.default_rng(5)
    for m in I.MOTIONS:
        seen = {I.motion_instruction([m], rng).lower().rstrip(".") for _ in range(300)}
        assert seen == set(I._split(I.MOTION_PHRASES[m], "train")), m


def test_intensity_is_expressed():
    rng = np.random.default_rng(3)
    for lvl in I.INTENSITIES:
        words = I.INTENSITY_ADVERBS[lvl] + I.INTENSITY_NOUN_MODS[lvl]
        for _ in range(50):
            text = I.emotion_instruction("sad", lvl, rng).lower()
            assert any(re.search(rf"\b{re.escape(w)}\b", text) for w in words), text


def test_deterministic_by_seed():
    a = _sample("train", 7, 50)
    b = _sample("train", 7, 50)
    c = _sample("train", 8, 50)
    assert a == b
    assert a != c


@pytest.mark.parametrize("split", SPLITS)
def test_length_limit(split, samples):
    for text in samples[split].split("\n"):
        assert len(text.split()) <= 60, text
    longest = I.combined_instruction(
        "disgusted", 3, ["raise_eyebrows", "tilt_head_right", "shake_head"],
        np.random.default_rng(0), split)
    assert len(longest.split()) <= 60


def test_articles(samples):
    for split in SPLITS:
        assert not re.search(r"\ba [aeiou]", samples[split]), split


def test_no_heldout_item_in_train_outputs_and_vice_versa(samples):
    train_text, held_text = samples["train"], samples["heldout"]
    for kind, items in _items("heldout").items():
        for item in items:
            pat = rf"(?<![\w-]){re.escape(item.lower())}(?![\w-])"
            assert not re.search(pat, train_text), (kind, item)
    # the held-out split only uses held-out fillers: no multi-word train item appears in held-out outputs
    for kind, items in _items("train").items():
        for item in items:
            if kind == "motions" and len(item.split()) < 3:
                continue  # one- and two-word motion phrasings ("nod", "look up") are parts of longer ones
            pat = rf"(?<![\w-]){re.escape(item.lower())}(?![\w-])"
            assert not re.search(pat, held_text), (kind, item)


def test_no_heldout_template_in_train_outputs_and_vice_versa():
    for src, dst in (("heldout", "train"), ("train", "heldout")):
        rng = np.random.default_rng(11)
        texts = [re.sub(r"\ban\b", "a", I.emotion_instruction(e, lvl, rng, dst).lower().rstrip("."))
                 for e in I.EMOTIONS if e != "neutral" for lvl in I.INTENSITIES for _ in range(60)]
        for kind, templates in I.all_phrasings(src)["templates"].items():
            for t in templates:
                rx = _template_regex(t)
                hits = [x for x in texts if rx.fullmatch(x)]
                assert not hits, (src, kind, t, hits[:3])
        # and every emotion text of dst matches one of dst's own templates
        own = [_template_regex(t) for ts in I.all_phrasings(dst)["templates"].values() for t in ts]
        assert all(any(rx.fullmatch(x) for rx in own) for x in texts)


def test_heldout_joiners_and_patterns_not_in_train(samples):
    held = I.all_phrasings("heldout")
    train_text = samples["train"]
    for joiners in held["motion_joiners"].values():
        for j in joiners:
            assert j.lower() not in train_text, j
    for pat in held["combined_patterns"]:
        assert not re.search(_template_regex(pat.lower()), train_text), pat


def test_canonical():
    assert I.canonical_instruction("happy", 1) == "Talk slightly happily."
    assert I.canonical_instruction("sad", 3) == "Talk very sadly."
    assert I.canonical_instruction("neutral", 1) == "Talk calmly."
    assert I.canonical_instruction(motions=["nod"]) == "Nod."
    assert I.canonical_instruction("angry", 2, ["raise_eyebrows", "nod"]) == \
        "Talk moderately angrily, and raise your eyebrows and nod."
    assert I.canonical_instruction() == ""
    train = _items("train")
    for emo in I.EMOTIONS:
        for lvl in I.INTENSITIES:
            assert I.canonical_instruction(emo, lvl) == I.canonical_instruction(emo, lvl)
    for m in I.MOTIONS:
        assert I.MOTION_PHRASES[m][0] in train["motions"]


def test_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        I.emotion_instruction("bored", 1, rng)
    with pytest.raises(ValueError):
        I.emotion_instruction("happy", 4, rng)
    with pytest.raises(ValueError):
        I.motion_instruction(["fly"], rng)
    with pytest.raises(ValueError):
        I.motion_instruction([], rng)
    with pytest.raises(ValueError):
        I.motion_instruction(["nod", "smile"], rng, timing="later")
    with pytest.raises(ValueError):
        I.emotion_instruction("happy", 1, rng, split="test")
