"""Identities: deterministic, thousands of distinct faces, a fixed disjoint train/heldout split."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from instructavatar.avatarworld.controls import neutral
from instructavatar.avatarworld.identity import (
    ACCESSORIES,
    HAIR_STYLES,
    NUM_IDENTITIES,
    Identity,
    identity,
    identity_ids,
    split_of,
)
from instructavatar.avatarworld.render import FaceRenderer


def test_deterministic_and_hashable():
    assert NUM_IDENTITIES >= 10000
    a, b = identity(123), identity(123)
    assert a == b and hash(a) == hash(b) and isinstance(a, Identity)
    assert identity(124) != a
    with pytest.raises(ValueError):
        identity(NUM_IDENTITIES)
    with pytest.raises(ValueError):
        identity(-1)


def test_variety_of_styles_and_accessories():
    ids = [identity(i) for i in range(500)]
    assert {i.hair_style for i in ids} == set(HAIR_STYLES) and len(HAIR_STYLES) >= 6
    assert {i.accessory for i in ids} == set(ACCESSORIES)
    assert len({i.skin for i in ids}) > 400
    assert len({i.background_top for i in ids}) > 400


def test_thousands_of_distinct_faces():
    r = FaceRenderer(64)
    n = 1200  # kept small so the file stays fast on a loaded machine
    hashes = {hashlib.sha1(r.render(identity(i), neutral()).tobytes()).hexdigest() for i in range(n)}
    assert len(hashes) == n


def test_split_rule_fixed_and_disjoint():
    splits = [split_of(i) for i in range(NUM_IDENTITIES)]
    assert set(splits) == {"train", "heldout"}
    frac = splits.count("heldout") / NUM_IDENTITIES
    assert 0.05 <= frac <= 0.10
    heldout = identity_ids("heldout")
    train = identity_ids("train")
    assert not set(heldout) & set(train)
    assert len(heldout) + len(train) == NUM_IDENTITIES
    assert heldout == sorted(heldout) and train[:5] == sorted(train[:5])
    assert identity_ids("train", 10) == train[:10]
    assert all(split_of(i) == "heldout" for i in identity_ids("heldout", 50))
    with pytest.raises(ValueError):
        identity_ids("test")


def test_split_values_are_pinned():
    """The rule is fixed: these values must never change (datasets and checkpoints depend on them)."""
    first = identity_ids("heldout", 8)
    assert first == PINNED_HELDOUT, first
    assert np.all(np.diff(first) > 0)


PINNED_HELDOUT: list[int] = [1, 14, 24, 45, 69, 86, 121, 131]
