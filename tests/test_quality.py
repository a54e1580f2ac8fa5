"""The quality-table plumbing (training/quality.py): the evaluation set, phrasings, boundary measure."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from instructavatar.avatarworld import identity, instructions
from instructavatar.avatarworld.clips import spec_for_index
from instructavatar.training import quality as Q

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def test_evaluation_set_is_held_out_and_deterministic():
    specs = [spec_for_index(Q.EVAL_SEED, i, "heldout") for i in range(40)]
    held = set(identity.identity_ids("heldout"))
    assert all(s.identity in held for s in specs)
    assert specs == [spec_for_index(Q.EVAL_SEED, i, "heldout") for i in range(40)]
    assert {s.kind for s in specs} == {"talk", "motion", "talk_neutral"}


def test_seen_phrasings_are_train_split_and_held_out_ones_are_not():
    train, heldout = SplitLanguage("train"), SplitLanguage("heldout")
    specs = [spec_for_index(Q.EVAL_SEED, i, "heldout") for i in range(40)]
    pairs = [(Q.seen_text(_Clip(s), i), Q.heldout_text(_Clip(s), i)) for i, s in enumerate(specs)]
    for s, (seen, held) in zip(specs, pairs):
        if s.kind == "talk_neutral":
            assert seen is None and held is None
            continue
        assert seen and held and seen != held
        assert seen in train and seen not in heldout, seen      # membership, not just "some text"
        assert held in heldout and held not in train, held
    # deterministic per clip
    assert pairs == [(Q.seen_text(_Clip(s), i), Q.heldout_text(_Clip(s), i)) for i, s in enumerate(specs)]


# ----------------------------------------------------------------- which split's lists can produce a sentence
def _norm(text):
    return re.sub(r"\ban\b", "a", re.sub(r"\s+", " ", text.lower()))


def _parts(template):
    """'look {int} {adj} while' -> [('lit','look '), ('slot','int'), ...]"""
    out, pos = [], 0
    for m in re.finditer(r"\{(\w+)\}", template):
        if m.start() > pos:
            out.append(("lit", _norm(template[pos:m.start()])))
        out.append(("slot", m.group(1)))
        pos = m.end()
    if pos < len(template):
        out.append(("lit", _norm(template[pos:])))
    return out


def _fits(parts, text, slots):
    if not parts:
        return text == ""
    kind, value = parts[0]
    if kind == "lit":
        return text.startswith(value) and _fits(parts[1:], text[len(value):], slots)
    rest = parts[1:]
    ends = [len(text)] if not rest else [m.start() for m in re.finditer(re.escape(rest[0][1]), text)] \
        if rest[0][0] == "lit" else range(1, len(text))
    return any(slots[value](text[:e]) and _fits(rest, text[e:], slots) for e in ends if e > 0)


class SplitLanguage:
    """Whether a sentence can be produced from one split's lists (templates, synonyms, phrasings, joiners)."""

    def __init__(self, split):
        ph = instructions.all_phrasings(split)
        self.adverbs = {_norm(a) for v in ph["intensity_adverbs"].values() for a in v}
        self.nmods = {_norm(a) for v in ph["intensity_noun_mods"].values() for a in v}
        self.words = {k: {_norm(w) for e in ph["synonyms"].values() for w in e.get(k, ())}
                      for k in ("adj", "noun", "manner")}
        self.templates = [_parts(t) for temps in ph["templates"].values() for t in temps]
        self.neutral = {_norm(t) for t in ph["neutral"]}
        self.motions = {_norm(p) for v in ph["motions"].values() for p in v}
        self.joiners = [_norm(j) for v in ph["motion_joiners"].values() for j in v]
        self.triples = [_parts(t) for v in ph["motion_triples"].values() for t in v]
        self.combined = [_parts(p) for p in ph["combined_patterns"]]
        self.slots = {"int": self.adverbs.__contains__, "nint": self.nmods.__contains__,
                      "adj": self.words["adj"].__contains__, "noun": self.words["noun"].__contains__,
                      "manner": self.words["manner"].__contains__, "e": self.emotion, "m": self.motion,
                      "a": self.motions.__contains__, "b": self.motions.__contains__, "c": self.motions.__contains__}

    def emotion(self, text):
        return text in self.neutral or any(_fits(t, text, self.slots) for t in self.templates)

    def motion(self, text):
        if text in self.motions:
            return True
        if any(_fits([("slot", "a"), ("lit", j), ("slot", "b")], text, self.slots) for j in self.joiners):
            return True
        return any(_fits(t, text, self.slots) for t in self.triples)

    def __contains__(self, sentence):
        text = _norm(sentence)
        if not text.endswith("."):
            return False
        text = text[:-1]
        return self.emotion(text) or self.motion(text) or any(_fits(p, text, self.slots) for p in self.combined)


def test_split_language_tells_the_splits_apart():
    rng = np.random.default_rng(0)
    train, heldout = SplitLanguage("train"), SplitLanguage("heldout")
    for split, own, other in (("train", train, heldout), ("heldout", heldout, train)):
        for i in range(60):
            texts = (instructions.emotion_instruction(instructions.EMOTIONS[i % 8], 1 + i % 3, rng, split),
                     instructions.motion_instruction([instructions.MOTIONS[i % 22], instructions.MOTIONS[(i * 7) % 22]]
                                                     [: 1 + i % 2], rng, split),
                     instructions.combined_instruction(instructions.EMOTIONS[i % 7], 1 + i % 3,
                                                       [instructions.MOTIONS[i % 22]], rng, split))
            for text in texts:
                assert text in own and text not in other, (split, text)
    assert "Do a backflip." not in train and "Do a backflip." not in heldout


class _Clip:
    """Just the spec (the phrasing functions read nothing else)."""

    def __init__(self, spec):
        self.spec = spec


def test_boundary_ratio():
    rng = np.random.default_rng(0)
    smooth = np.cumsum(rng.normal(0, 0.1, (60, 8)), axis=0)
    assert 0.5 < Q.boundary_ratio(smooth, 10) < 2.0
    jumpy = smooth.copy()
    for k in range(10, 60, 10):
        jumpy[k:] += 3.0                       # a jump at every chunk boundary
    assert Q.boundary_ratio(jumpy, 10) > 5.0


def test_psnr():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[1] = 255
    p = Q._psnr(a, b)
    assert p[0] > 90 and abs(p[1]) < 1e-6


@needs_espeak
def test_markdown_table_rows():
    clips = Q.eval_clips(2)
    assert all(c.n_frames > 0 and len(c.audio) == c.n_frames * 640 for c in clips)
    res = Q.SystemResult("x", {"au_f1": 0.5, "lipsync_corr": None}, [], 1.0, 10)
    table = Q.markdown_table([res])
    assert table.splitlines()[2].startswith("| x | 0.500 | - |")
    assert res.ms_per_chunk == pytest.approx(100.0)


def test_au_f1_by_kind_averages_per_kind():
    def clip(kind, f1):
        return {"kind": kind, "au_f1": f1}

    ours = Q.SystemResult("ours", {}, [clip("talk", 1.0), clip("talk", 0.5), clip("motion", 0.2)], 1.0, 1)
    base = Q.SystemResult("base", {}, [clip("talk", 0.0), clip("talk", 0.25), clip("motion", None)], 1.0, 1)
    lines = Q.au_f1_by_kind([ours, base]).splitlines()
    assert lines[0] == "| system | AU_F1, motion (1) | AU_F1, talk (2) |"
    assert lines[2] == "| ours | 0.200 | 0.750 |"
    assert lines[3] == "| base | - | 0.125 |"


def test_vae_sheet_layout(tmp_path):
    from PIL import Image

    from instructavatar.engine.loader import load_pipeline

    pipe = load_pipeline("demo", random_weights=True, threads=1, announce=lambda m: None)
    S = pipe.cfg.media.image_size                                  # the keyframe head (warp) needs the model's size
    path = Q.vae_sheet(pipe.backend, tmp_path / "s.png", S, pipe.cfg.vae, identities=2)
    img = np.asarray(Image.open(path))
    cols = 1 + len(Q.SHEET_EXPRESSIONS)
    assert img.shape == (2 * 2 * S, cols * S, 3)                  # (truth, reconstruction) per identity
    truth_row = img[:S]
    assert np.abs(truth_row[:, :S].astype(int) - truth_row[:, S:2 * S]).max() > 0   # expressions differ


def test_guidance_list_must_be_numbers(capsys):
    with pytest.raises(SystemExit) as e:
        Q.main(["guidance", "--guidance-list", "1,x"])
    assert e.value.code == 2 and "--guidance-list" in capsys.readouterr().err


def test_repeated_clips_are_sampled_with_other_seeds_and_the_same_text(monkeypatch):
    calls = []

    class Pipe:
        def prepare(self, image):
            return "portrait"

    monkeypatch.setattr(Q, "portrait_of", lambda clip, size: None)
    monkeypatch.setattr(Q, "generate_offline",
                        lambda pipe, portrait, audio, text, seed: calls.append((text, seed)) or (None, None))
    clips = [type("Clip", (), {"audio": None, "name": f"c{i}"})() for i in range(3)]
    text_of = lambda clip, i: f"{clip.name}/{i}"            # noqa: E731
    single = Q.model_output(Pipe(), text_of, 8)
    for i, c in enumerate(clips):
        single(i, c)
    assert calls == [("c0/0", 0), ("c1/1", 1), ("c2/2", 2)]
    calls.clear()
    repeated = Q.model_output(Pipe(), text_of, 8, n_clips=3)
    for j, c in enumerate(clips * 2):
        repeated(j, c)
    # the first pass is the single-seed table's; the second: the same clips and texts, seeds 3..5
    assert calls == [("c0/0", 0), ("c1/1", 1), ("c2/2", 2), ("c0/0", 3), ("c1/1", 4), ("c2/2", 5)]


def test_sample_seeds_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exc:
        Q.main(["main", "--sample-seeds", "0"])
    assert exc.value.code == 2 and "--sample-seeds must be >= 1" in capsys.readouterr().err


def test_phrasing_forms_table_plumbing():
    """Per-form paraphrase rows (training/quality_forms.py): which clips each form can say, texts from the right
    split, and the summary's gaps and level-3 counts."""
    from instructavatar.avatarworld import phrasings
    from instructavatar.training import quality_forms as F

    assert F.parse_forms("all") == phrasings.FORMS and F.parse_forms("none") == ()
    assert F.parse_forms("graded,hedge") == ("graded", "hedge")
    with pytest.raises(ValueError, match="expected 'all'"):
        F.parse_forms("graded,sonnet")
    specs = [_Clip(spec_for_index(Q.EVAL_SEED, i, "heldout")) for i in range(48)]
    for form in phrasings.FORMS:
        keep = F.clips_for(form, specs)
        assert keep, form
        for c in keep:
            s = c.spec
            assert s.kind != "talk_neutral"
            if form in phrasings.EMOTION_FORMS:
                assert s.kind == "talk" and not s.motions and s.emotion != "neutral"
                assert form in phrasings.EMOTION_FORMS_BY_LEVEL[s.intensity]
            seen, held = F.form_text(form, "train")(c, 0), F.form_text(form, "heldout")(c, 0)
            assert seen and held and seen != held
            assert F.form_text(form, "train")(c, 0) == seen           # deterministic per clip
    assert not F.clips_for("exclamation", [c for c in specs if c.spec.intensity != 3])

    def rec(level, pred, f1):
        return {"intensity": level, "intensity_pred": pred, "intensity_acc": float(level == pred), "au_f1": f1,
                "au_emo": 1.0}

    text, data = F.summary_table({"graded": {"train": [rec(3, 3, 0.6), rec(2, 2, 0.6)],
                                             "heldout": [rec(3, 2, 0.5), rec(2, 2, 0.6)]}})
    d = data["graded"]
    assert d["seen"]["intensity_acc"] == 1.0 and d["heldout"]["intensity_acc"] == 0.5
    assert d["intensity_gap"] == -0.5 and not d["intensity_ok"]
    assert d["heldout"]["top_read"] == 0 and d["heldout"]["top_n"] == 1 and d["heldout"]["level_error"] == -0.5
    assert abs(d["au_f1_gap"] + 0.05) < 1e-9 and not d["au_f1_ok"]
    assert "| graded | 2 |" in text and "no / no" in text


def test_bad_forms_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        Q.main(["paraphrase", "--forms", "graded,limerick"])
    assert exc.value.code == 2 and "--forms 'graded,limerick': expected" in capsys.readouterr().err


def test_precision_table_runs_fp32_and_int8_on_the_same_clips_and_pairs_them(monkeypatch):
    import instructavatar.engine.loader as L

    loaded, runs = [], []

    class Pipe:
        cfg = type("Cfg", (), {"stream": type("S", (), {"chunk_frames": 10})()})()

    def fake_load(config, **kw):
        loaded.append((kw["backend"], kw["precision"]))
        return Pipe()

    per_row = {"fp32": [0.5, 0.25, None], "int8": [0.5, 0.75, 0.4]}

    def fake_run(name, clips, produce, ev, chunk, probe=None, log=print):
        runs.append((name, len(clips)))
        prec = "int8" if "int8" in name else "fp32"
        return Q.SystemResult(name, {"au_f1": 0.0}, [{"au_f1": v} for v in per_row[prec]], 1.0, 1)

    monkeypatch.setattr(L, "load_pipeline", fake_load)
    monkeypatch.setattr(Q, "run_system", fake_run)
    monkeypatch.setattr(Q, "_ours", lambda pipe: "ours")
    monkeypatch.setattr(Q, "model_output", lambda pipe, text_of, size, n: None)
    args = type("A", (), {"sample_seeds": 3, "weights": None, "steps": None, "threads": 1, "guidance": None})()
    text, _ = Q.table_precision(args, ["c0"], None, 128, None)
    assert loaded == [("ort", "fp32"), ("ort", "int8")]
    assert [n for _, n in runs] == [3, 3]                       # one clip x 3 seeds, both rows
    # paired over the samples both rows scored: (0.5 - 0.5 + 0.75 - 0.25) / 2
    assert "AU_F1: int8 - fp32 = +0.2500 over 2 paired clip samples" in text
    assert "1 samples differ" in text
