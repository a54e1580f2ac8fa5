"""Instructions as people type them, restated in the world's words before encoding (issue 28,
engine/instruction_reader.py): intensity said by an idiom, a hedge or exclaiming reaches the generator as the
world's intensity word; the world's own phrasings, comparisons, graded words, motions and neutral
instructions go as typed; the reader is made from the train split only."""

import numpy as np
import pytest

from instructavatar.avatarworld import instructions as W
from instructavatar.avatarworld import phrasings as P
from instructavatar.engine import instruction_reader as R
from instructavatar.engine.loader import load_pipeline


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("demo", steps=1, threads=1)


@pytest.mark.parametrize("text, level, restated", [
    ("Look angry, and really lay it on thick.", 3, "Talk very angrily."),
    ("Look sad, just a touch.", 1, "Talk slightly sadly."),
    ("Say it with resentment - just don't exaggerate.", 2, "Talk moderately angrily."),
    ("I want to see you furious!!", 3, "I want to see you very furious."),   # a clause that says more keeps it
    ("Come across as indignant while speaking, ever so slightly.", 1, "Talk slightly angrily."),  # held-out idiom
    # a word it does not know keeps the user's word, with the world's level word before it
    ("Talk, and be repelled about it, middle of the road, please.", 2,
     "Talk, and be moderately repelled about it, please."),
    ("Fuming! Fuming! Say it fuming!", 3, "Very Fuming."),
])
def test_intensity_phrases_and_exclaiming_are_restated_in_the_worlds_words(pipe, text, level, restated):
    r = pipe.read_instruction(text)
    assert r is not None and r.level == level and r.restated == restated, r
    assert f"level {level}" in r.describe() and restated in r.describe()


@pytest.mark.parametrize("text", [
    "Talk very sadly.", "Speak with a touch of anger.", "Look somewhat sad while talking.",   # the world's own
    "Look a shade angrier than usual.",                       # comparisons follow their level as typed
    "Look livid as you talk.",                                # a graded word: the generator's to read
    "Show that you agree.", "Nod, then look up.",             # motions
    "Keep a neutral face while you talk.", "Talk calmly.",    # neutral
    "Don't look angry, and really lay it on thick.",          # negated: not ours to guess
])
def test_other_instructions_go_as_typed(pipe, text):
    assert pipe.read_instruction(text) is None


def test_no_instruction_reads_as_nothing(pipe):
    assert pipe.read_instruction(None) is None and pipe.read_instruction("  ") is None


def test_the_worlds_phrasings_are_never_restated(pipe):
    rng = np.random.default_rng(3)
    texts = []
    for split in ("train", "heldout"):
        for k in range(12):
            e = W.EMOTIONS[k % 7]
            texts.append(W.emotion_instruction(e, 1 + k % 3, rng, split))
            texts.append(W.combined_instruction(e, 1 + k % 3, [W.MOTIONS[k]], rng, split))
    assert [t for t in texts if pipe.read_instruction(t) is not None] == []


@pytest.mark.parametrize("form", ["idiom", "hedge", "exclamation"])
def test_heldout_intensity_phrases_are_read_at_their_level(pipe, form):
    levels = {"idiom": (1, 2, 3), "hedge": (1, 2), "exclamation": (3,)}[form]
    right = total = 0
    for k in range(18):
        level = levels[k % len(levels)]
        text = P.form_instruction(form, W.EMOTIONS[k % 7], level, [], np.random.default_rng(k), "heldout")
        r = pipe.read_instruction(text)
        total += 1
        right += r is not None and r.level == level
    assert right / total >= 0.7, (form, right, total)     # measured on 150 each: 0.81 / 1.00 / 1.00


def test_the_generator_is_given_the_restated_instruction(pipe):
    portrait = pipe.prepare(np.full((128, 128, 3), 200, np.uint8))
    key = portrait.keyframe
    typed = "Look angry, and really lay it on thick."
    read, text, _ = pipe.encode_instruction(typed, key)
    world, _, _ = pipe.encode_instruction("Talk very angrily.", key)
    assert text == typed                                   # the session keeps what the user typed
    for field in ("const", "keys", "values", "mask"):
        np.testing.assert_allclose(getattr(read, field), getattr(world, field), atol=1e-6)
    reader, pipe.reader = pipe.reader, None
    try:
        as_typed, _, _ = pipe.encode_instruction(typed, key)
    finally:
        pipe.reader = reader
    assert not np.allclose(as_typed.const, world.const)


def test_understanding_reports_what_was_read(pipe):
    u = pipe.understand("Look sad, just a touch.")
    assert "read as sad, level 1" in u.describe() and "Talk slightly sadly." in u.describe()
    assert pipe.understand("Talk very sadly.").reading is None


def test_the_table_holds_train_items_only():
    words, adverbs, phrases = R._train_items()
    held = P.all_free_phrasings("heldout")
    held_words = {w for lists in (held["graded_adj"], held["graded_noun"]) for grades in lists.values()
                  for ws in grades.values() for w in ws}
    held_phrases = {p for lists in (held["idioms"], held["hedges"]) for ps in lists.values() for p in ps}
    held_world = {a for lists in (W.all_phrasings("heldout")["intensity_adverbs"],
                                  W.all_phrasings("heldout")["intensity_noun_mods"]) for ws in lists.values()
                  for a in ws}
    assert not {w for w, *_ in words} & held_words
    assert not {p for p, _ in phrases} & held_phrases and not set(adverbs) & held_world
    items, _ = R._span_examples()
    assert not set(items) & (held_words | held_phrases)
    pos, neg = R._gate_examples()
    assert not any(p in c for c in pos + neg for p in held_phrases)


def test_shipped_table_is_current():
    table = R.ReaderTable.load()
    words, _, phrases = R._train_items()
    assert table.word_text == tuple(w for w, *_ in words)
    assert tuple(table.phrase_level) == tuple(lv for _, lv in phrases)


def test_phrase_level_is_the_vote_of_three_readouts():
    d = 4
    phrases = np.eye(d, dtype=np.float32)[:3]
    table = R.ReaderTable(words=phrases, word_emotion=("a", "b", "c"),
                          word_text=("x", "y", "z"), word_kind=("adj",) * 3, adverbs=phrases,
                          phrases=phrases, phrase_level=np.array([1, 2, 3]), centroids=phrases,
                          ridge=np.eye(d, 3, dtype=np.float32)[:, [1, 0, 2]], gate_w=np.zeros(d, np.float32),
                          gate_b=0.0, span_w=np.zeros((d, 3), np.float32), span_b=np.zeros(3, np.float32))
    e = np.eye(d, dtype=np.float32)[0]
    assert R.phrase_level(table, e) == 1                   # centroid and nearest say 1, ridge says 2
    table2 = R.ReaderTable(**{**table.__dict__, "centroids": np.eye(d, dtype=np.float32)[[2, 0, 1]]})
    assert R.phrase_level(table2, e) == 2                  # three different answers: the ridge's


def test_an_older_table_is_not_loaded(tmp_path):
    path = tmp_path / "old.npz"
    np.savez(path, words=np.zeros((1, 4), np.float16))
    assert R.ReaderTable.load(path) is None


def test_modifier_mode_keeps_the_users_word(pipe):
    reader = R.InstructionReader(pipe.reader.table, pipe.reader.encode, restate="modifier")
    assert reader.read("Look angry, and really lay it on thick.").restated == "Look very angry."
    assert reader.read("Say it with resentment - just don't exaggerate.").restated == "Say it with moderate resentment."


def test_clauses_and_spans():
    assert R.clauses("Look angry, and don't hold back.") == ["Look angry", "and don't hold back"]
    assert R.clauses("Angry! Seriously!") == ["Angry", "Seriously"]
    assert "be repelled" not in R.spans("Talk, and be repelled about it")       # function words are not words
    assert "repelled" in R.spans("Talk, and be repelled about it")


def test_the_server_reports_the_reading(pipe):
    from instructavatar.server.worker import _understood

    report = _understood(pipe, "Look sad, just a touch.", [])
    assert report["read"] == {"emotion": "sad", "level": 1, "cue": "phrase 'just a touch'",
                              "restated": "Talk slightly sadly."}
    assert "read" not in _understood(pipe, "Talk very sadly.", [])


def test_a_text_encoder_of_another_size_reads_nothing(pipe):
    reader = R.InstructionReader(pipe.reader.table, lambda texts: np.ones((len(texts), 8), np.float32))
    assert reader.read("Look angry, and really lay it on thick.") is None


def test_an_overlong_instruction_is_left_as_typed_without_embedding_its_spans():
    calls = []

    def encode(texts):
        calls.append(len(texts))
        return np.ones((len(texts), 4), np.float32)

    reader = R.InstructionReader(R.ReaderTable.load(), encode)
    assert reader.read("Look angry! " + "and talk " * (R.MAX_WORDS // 2)) is None and calls == []
