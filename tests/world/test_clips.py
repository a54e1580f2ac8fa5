"""Clip specs and clips: determinism, held-out splits, labels, keyframes, lengths."""

from __future__ import annotations

import re

import numpy as np
import pytest

from instructavatar.avatarworld import behaviour, clips, instructions, speech
from instructavatar.avatarworld.controls import AU_IDS, INDEX, ROTATION_SLICE, SPEECH_SLICE, active_aus
from instructavatar.avatarworld.corpus import sentence_ids
from instructavatar.avatarworld.identity import split_of
from instructavatar.avatarworld.metrics import clip_au_labels


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("speech"))


def first_spec(kind: str, split: str = "train", start: int = 0) -> clips.ClipSpec:
    for i in range(start, start + 500):
        s = clips.spec_for_index(1, i, split)
        if s.kind == kind and (kind != "talk" or (s.emotion != "neutral" and not s.motions)):
            return s
    raise AssertionError(kind)


def test_spec_determinism_and_json_roundtrip():
    a = [clips.spec_for_index(3, i) for i in range(50)]
    b = [clips.spec_for_index(3, i) for i in range(50)]
    assert a == b
    assert a != [clips.spec_for_index(4, i) for i in range(50)]
    for s in a:
        assert clips.ClipSpec.from_json(s.to_json()) == s
    kinds = {s.kind for s in a}
    assert kinds == set(clips.KINDS)


def _heldout_only_phrases() -> list[str]:
    """Held-out phrase items that are not contained in any train item (so finding one proves a leak)."""
    def flat(x):
        if isinstance(x, dict):
            for v in x.values():
                yield from flat(v)
        elif isinstance(x, (tuple, list)):
            for v in x:
                yield from flat(v)
        else:
            yield str(x)

    held = set(flat(instructions.all_phrasings("heldout")))
    train = [t.lower() for t in flat(instructions.all_phrasings("train"))]
    out = []
    for h in held:
        core = re.sub(r"\{[a-z]+\}", "", h).strip(" ,.;").lower()
        if len(core) >= 4 and "{" not in core and not any(core in t for t in train):
            out.append(core)
    return out


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_splits_never_leak(split):
    other = "heldout" if split == "train" else "train"
    other_phrases = _heldout_only_phrases() if split == "train" else []
    other_sentences = set(sentence_ids(other))
    other_voices = {speech.VOICES[i] for i in speech.voice_ids(other)}
    n = 0
    for seed in range(6):
        for i in range(150):
            s = clips.spec_for_index(seed, i, split)
            assert s.split == split
            assert split_of(s.identity) == split
            if s.has_speech:
                assert s.sentence_id not in other_sentences
                assert s.voice not in other_voices
            text = s.instruction.lower()
            for p in other_phrases:
                assert not re.search(r"\b" + re.escape(p) + r"\b", text), (p, s.instruction)
            n += 1
    assert n == 900


def test_heldout_phrases_do_appear_in_heldout():
    """The leak test above is not vacuous: held-out-only phrases show up in held-out specs."""
    phrases = _heldout_only_phrases()
    assert len(phrases) > 20
    texts = " | ".join(clips.spec_for_index(0, i, "heldout").instruction.lower() for i in range(300))
    assert sum(bool(re.search(r"\b" + re.escape(p) + r"\b", texts)) for p in phrases) > 10


def test_make_clip_deterministic(cache):
    spec = first_spec("talk")
    a, b = clips.make_clip(spec, cache), clips.make_clip(spec, cache)
    assert np.array_equal(a.audio, b.audio) and np.array_equal(a.controls, b.controls)
    assert np.array_equal(a.keyframe, b.keyframe)
    m = first_spec("motion")
    assert np.array_equal(clips.make_clip(m).controls, clips.make_clip(m).controls)


@pytest.mark.parametrize("kind", clips.KINDS)
def test_clip_contents_and_labels(kind, cache):
    spec = first_spec(kind)
    c = clips.make_clip(spec, cache)
    T = c.n_frames
    assert c.controls.shape == (T, len(c.keyframe)) and c.controls.dtype == np.float32
    assert c.audio.dtype == np.float32 and len(c.audio) == T * clips.SAMPLES_PER_FRAME
    # labels consistent with the controls
    assert np.array_equal(c.au_frames, active_aus(c.controls))
    assert np.array_equal(c.au_clip, clip_au_labels(c.au_frames))
    assert np.array_equal(c.pose, c.controls[:, ROTATION_SLICE])
    assert c.pose.shape == (T, 3)
    if kind == "motion":
        assert 3.0 <= c.duration_s <= 5.0 + 1e-6
        assert np.all(c.audio == 0) and np.all(c.speech == 0)
        assert c.intensity == 0 and spec.emotion == "neutral" and spec.motions
        assert spec.instruction
    else:
        assert 3.0 <= c.duration_s <= 8.0 + 1e-6
        # the speech channels come from the audio only
        track = speech.mouth_track(c.audio, sr=16000, fps=25, n_frames=T)
        assert np.allclose(c.speech, track, atol=1e-6)
        assert c.speech[:, 0].max() > 0.3
        assert 1 <= c.intensity <= 3
    if kind == "talk":
        # the instructed emotion's clearly-active AUs are in the clip label and in the target
        nominal = behaviour.emotion_magnitudes(spec.emotion, spec.intensity)
        for a in behaviour.emotion_target_aus(spec.emotion, spec.intensity):
            assert c.target_aus[AU_IDS.index(a)]
            if nominal[AU_IDS.index(a)] >= 0.4:
                assert c.au_clip[AU_IDS.index(a)], a
    if kind == "talk_neutral":
        assert spec.instruction == "" and not c.target_aus.any()
    assert clips.EMOTIONS[c.emotion] == spec.emotion


def test_keyframe_is_another_emotion_of_the_same_identity(cache):
    for i in range(40):
        spec = clips.spec_for_index(2, i)
        assert spec.keyframe_emotion != spec.emotion
        assert spec.keyframe_emotion in behaviour.EMOTIONS
    spec = first_spec("talk")
    c = clips.make_clip(spec, cache)
    kf = c.keyframe
    assert kf[INDEX["au45"]] == 0 and np.all(kf[SPEECH_SLICE] == 0)  # a still portrait
    # the keyframe shows the keyframe emotion's pattern, not the clip's
    kf_targets = behaviour.emotion_target_aus(spec.keyframe_emotion, spec.keyframe_intensity)
    nominal = behaviour.emotion_magnitudes(spec.keyframe_emotion, spec.keyframe_intensity)
    for a in kf_targets:
        if nominal[AU_IDS.index(a)] >= 0.45:
            assert kf[INDEX[f"au{a:02d}"]] >= 0.3, a
    assert c.identity == spec.identity and c.keyframe_emotion != c.emotion


def test_motion_clip_follows_its_motions():
    for i in range(200):
        spec = clips.spec_for_index(5, i)
        if spec.kind != "motion":
            continue
        c = clips.make_clip(spec)
        for m in spec.motions:
            for a in behaviour.MOTION_PROGRAMS[m].aus:
                assert c.au_clip[AU_IDS.index(a)], (spec.motions, a)
            if m in ("nod", "shake_head"):
                axis = INDEX["pitch" if m == "nod" else "yaw"]
                assert c.controls[:, axis].std() > 2.0
        if len(spec.motions) > 1:
            assert spec.timing in ("sequence", "together", "either")
            if not spec.sequential:  # simultaneous motions never fight over a channel
                groups = [g for g in clips._CONFLICT_GROUPS if len(g & set(spec.motions)) > 1]
                assert not groups


def test_sample_clip_spec_rejects_unknown_split():
    with pytest.raises(ValueError):
        clips.sample_clip_spec(np.random.default_rng(0), "test")


def test_truth_passes_the_evaluators_motion_check():
    """The metrics' "does the instructed motion happen" rule holds on the ground truth itself."""
    from instructavatar.avatarworld.metrics import motion_happens, truth_channels

    checked = 0
    for i in range(400):
        spec = clips.spec_for_index(9, i)
        if spec.kind != "motion":
            continue
        c = clips.make_clip(spec).controls
        for m in spec.motions:
            ok = motion_happens(truth_channels(c), m)
            assert ok is None or ok, (spec.motions, spec.sequential, m)
            checked += ok is not None
    assert checked > 50
