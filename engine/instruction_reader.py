"""Instructions as people type them, restated in the phrasing the generator follows (issue 28).

The demo generator reads intensity from the world's intensity words ("Talk *very* angrily.") and generalises
to held-out ones, but not to intensity said other ways: an idiom ("Look angry, with everything you've got."), a
hedge ("Look sad, just a touch.") or exclaiming ("Furious! Say it furious!"). The frozen MiniLM encoder does
carry the level of such a phrase once it is embedded on its own (docs/phrasings.md: a held-out idiom embedded
alone lands on its level's train centroid 6 times in 6); inside the instruction, the template drowns it. So this
reader looks at the pieces, then hands the generator the world's own phrasing of what it read:

    "Look angry, and really lay it on thick."   -> angry, level 3 (phrase)     -> "Talk very angrily."
    "Look sad, just a touch."                   -> sad, level 1 (phrase)       -> "Talk slightly sadly."
    "I want to see you furious!!"               -> angry, level 3 (exclaiming) -> "Talk very angrily."
    "Talk, and be repelled about it, middle of the road, please."   (a word it does not know)
        -> level 2 of 'repelled' -> "Talk, and be moderately repelled about it, please."

How it reads (everything from the train split of avatarworld/instructions.py and phrasings.py; the held-out
split is never used, so the quality tables measure it on words, idioms and templates it has not seen):

- The instruction is cut into clauses (at , ; : ( ) - and sentence ends) and every 1-3 word span of a clause
  that does not start or end with a function word is embedded alone. A **span gate** (softmax regression over
  span embeddings: emotion word / neutral word / other, trained on the train emotion words and the spans of
  every train template) finds the emotion word; the nearest train word (graded words and the world's synonyms)
  names its emotion when its cosine is at least WORD_MIN, or when the behaviour the whole instruction is nearest
  (engine/understanding.py) is that same emotion (two reads agreeing: right 89 of 90 times on held-out texts).
- An **intensity phrase** (an idiom or hedge: a clause or two adjacent clauses other than the word's) is found
  by a logistic gate over clause embeddings (train idioms and hedges against every other train clause) and read
  by the vote of three read-outs of the train phrases (`phrase_level`).
- **Exclaiming** ("!") says level 3, as in the forms the generator was taught with; else the phrase's level.
- The restatement: for a word it knows (or whose emotion both reads agree on), the world's canonical clause
  ("Talk very angrily.") with the other clauses (motions) kept; for a word it does not know, the user's word
  stays, with the world's level word before it ("moderately repelled", "intense wrath"). The phrase and
  repeated exclamations are dropped.

It leaves an instruction as typed when the level is said the world's way (a span within ADVERB_MIN of a world
intensity word, in the emotion word's clause: "a little", "extremely"), by comparison ("sadder than usual": the
generator follows comparisons as typed, measured), or by the emotion word alone ("Look livid.": MiniLM reads the
grade of an unseen word 0.58-0.69 of the time, below what the generator manages itself); when there is no
emotion word, when the instruction is neutral, or when the emotion is negated ("don't look angry"). The user is
told what was read and what the generator was given (`Reading.describe`, in `Pipeline.understand` and the
server's `understood_as.read`), so a misread is visible; `--as-typed` (CLI) or `pipeline.reader = None` turns it
off.

The table (`instruction_reader.npz` beside the checkpoint: the words' and phrases' embeddings, fp16, and the
gates) is made by `python -m instructavatar.engine.instruction_reader --write` with any backend; at run time one
batched `encode_text` of the instruction's spans and clauses (tens of short texts, once per instruction) is all
it costs.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import instructavatar

READER_FILE = Path(instructavatar.__file__).resolve().parent / "assets" / "demo" / "instruction_reader.npz"
WORD_MIN = 0.75           # a span is an emotion word of a known emotion when this close to a train graded word
ADVERB_MIN = 0.80         # an instruction names its intensity the world's way when a span is this close to one
GATE_MIN = 0.5            # gate probability for an intensity-phrase clause
SPAN_MIN = 0.5            # span gate probability for an emotion word
MAX_SPAN = 3              # words per span
MAX_WORDS = 64            # a longer instruction is left as typed: the text encoder reads 64 tokens of it anyway,
#                           and the spans to embed grow with its length
RIDGE = 0.1               # the phrase level read-out's L2 strength
LEVEL_ADVERBS = {1: "slightly", 2: "moderately", 3: "very"}          # the world's train intensity words
LEVEL_NOUN_MODS = {1: "a hint of", 2: "moderate", 3: "intense"}
NOUN_ENDINGS = ("ness", "ion", "ment", "ity", "ance", "ence", "ure", "ism", "ery", "th", "ief", "ger", "ror")

_CLAUSE = re.compile(r"\s*(?:[,;:()\[\]]|\s[-\u2013\u2014]\s|\.(?:\s+|$)|!+\s*|\?+\s*)\s*")
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")
_NEGATION = re.compile(r"\b(?:not|no|never|don't|do not|without|stop|avoid)\b", re.I)
_COMPARISON = re.compile(r"\b(?:more|less)\s+\w+\s+than\b|\b\w+er\s+than\b|\bas\s+\w+\s+as\b", re.I)
_LEADING_JOINER = re.compile(r"^(?:and|but|also|then|meanwhile|plus)\b\s*", re.I)
# a span that starts or ends with one of these is not an emotion word ("be repelled", "in your eyes")
FUNCTION_WORDS = frozenset("""a an the and or but so to of in on at with for from by as it its this that you your
you're yourself me my i we us our be is are am was were been being do does let look looks looking talk talking
speak speaking say saying said while when like about face eyes show showing really now go come please seem
appear act play put keep make read deliver""".split())


def clauses(text: str) -> list[str]:
    """The instruction's clauses, in order ("Look angry, and don't hold back." -> ["Look angry", "and don't
    hold back"])."""
    return [c.strip() for c in _CLAUSE.split(text) if c and c.strip()]


def spans(clause: str, longest: int = MAX_SPAN, content: bool = True) -> list[str]:
    """Every run of 1..`longest` words of a clause; with `content`, only those that neither start nor end with a
    function word."""
    words = _WORD.findall(clause)
    out = [words[i:i + n] for n in range(1, longest + 1) for i in range(len(words) - n + 1)]
    return [" ".join(w) for w in out
            if not content or (w[0].lower() not in FUNCTION_WORDS and w[-1].lower() not in FUNCTION_WORDS)]


def _phrase_candidates(parts: list[str]) -> list[tuple[int, ...]]:
    """Clauses, and adjacent pairs of them ("not over the top, not too little" is one hedge)."""
    out = [(k,) for k in range(len(parts))] + [(k, k + 1) for k in range(len(parts) - 1)]
    return [ks for ks in out if any(w.lower() not in FUNCTION_WORDS for w in _WORD.findall(_joined(parts, ks)))]


def _joined(parts: list[str], ks: tuple[int, ...]) -> str:
    return ", ".join(_LEADING_JOINER.sub("", parts[k]) for k in ks)


@dataclass(frozen=True)
class Reading:
    emotion: str | None            # the emotion of the nearest train word, None when no train word is near
    level: int                     # 1..3
    word: str                      # the emotion word it was read from
    cue: str                       # what said the level: "phrase 'just a touch'" or "exclaiming"
    text: str                      # the instruction as typed
    restated: str                  # what the generator is given

    def describe(self) -> str:
        what = f"{self.emotion}, level {self.level}" if self.emotion else f"level {self.level} of '{self.word}'"
        return f"read as {what} ({self.cue}); the generator is given \"{self.restated}\""


TABLE_KEYS = ("words", "word_emotion", "word_text", "word_kind", "adverbs", "phrases",
              "phrase_level", "centroids", "ridge", "gate_w", "gate_b", "span_w", "span_b")


@dataclass(frozen=True)
class ReaderTable:
    words: np.ndarray              # (W, D) float32 unit rows: train graded words
    word_emotion: tuple[str, ...]  # (W,)
    word_text: tuple[str, ...]
    word_kind: tuple[str, ...]     # "adj" or "noun"
    adverbs: np.ndarray            # (A, D) the world's train intensity adverbs and noun modifiers
    phrases: np.ndarray            # (P, D) unit rows: train idioms and hedges
    phrase_level: np.ndarray       # (P,) 1..3
    centroids: np.ndarray          # (3, D) unit rows: their mean per level
    ridge: np.ndarray              # (D, 3) a ridge read-out of the level from them
    gate_w: np.ndarray             # (D,) the intensity-phrase gate over clauses
    gate_b: float
    span_w: np.ndarray             # (D, 3) the span gate: other, emotion word, neutral word
    span_b: np.ndarray             # (3,)

    @staticmethod
    def load(path: Path = READER_FILE) -> ReaderTable | None:
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as z:
            if not set(TABLE_KEYS) <= set(z.files):
                return None                    # a table of an older reader: rewrite it (--write)
            return ReaderTable(words=_unit(z["words"].astype(np.float32)),
                               word_emotion=tuple(str(x) for x in z["word_emotion"]),
                               word_text=tuple(str(x) for x in z["word_text"]),
                               word_kind=tuple(str(x) for x in z["word_kind"]),
                               adverbs=_unit(z["adverbs"].astype(np.float32)),
                               phrases=_unit(z["phrases"].astype(np.float32)),
                               phrase_level=z["phrase_level"].astype(np.int64),
                               centroids=_unit(z["centroids"].astype(np.float32)),
                               ridge=z["ridge"].astype(np.float32),
                               gate_w=z["gate_w"].astype(np.float32), gate_b=float(z["gate_b"]),
                               span_w=z["span_w"].astype(np.float32), span_b=z["span_b"].astype(np.float32))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def phrase_level(table: ReaderTable, e: np.ndarray) -> int:
    """The level (1-3) of an intensity phrase's unit embedding: the vote of three read-outs of the train phrases
    (ridge, nearest level centroid, nearest phrase; ridge when all differ). Chosen by leave-one-phrase-out on the
    40 train phrases: the vote 34/40, ridge 32, centroid 31, nearest 30, 3-nearest 26."""
    ridge = int(np.argmax(e @ table.ridge)) + 1
    centroid = int(np.argmax(table.centroids @ e)) + 1
    nearest = int(table.phrase_level[int(np.argmax(table.phrases @ e))])
    votes = [ridge, centroid, nearest]
    return max(set(votes), key=votes.count) if len(set(votes)) < 3 else ridge


class InstructionReader:
    """Reads an instruction's emotion and level from its pieces (module docstring); `encode(texts) -> (N, D)`
    pooled embeddings, the pipeline's own text encoder."""

    def __init__(self, table: ReaderTable, encode, restate: str = "canonical"):
        self.table = table
        self.encode = encode
        self.restate = restate             # "modifier": the level word before the user's word; "canonical"

    def read(self, text: str, understood: str | None = None) -> Reading | None:
        """The Reading of `text`, or None when the instruction is left as typed. `understood`: the behaviour the
        whole instruction is nearest (engine/understanding.py), a second opinion on a word the reader does not
        know."""
        parts = clauses(text)
        if not parts or _COMPARISON.search(text) or len(_WORD.findall(text)) > MAX_WORDS:
            return None
        per_clause = [spans(c) for c in parts]
        flat = [s for ss in per_clause for s in ss]
        if not flat:
            return None
        t = self.table
        exclaimed = "!" in text
        cands = _phrase_candidates(parts)
        cand_emb = _unit(self.encode([_joined(parts, ks) for ks in cands]).astype(np.float32)) if cands else \
            np.zeros((0, t.words.shape[1]), np.float32)
        if cand_emb.shape[1] != t.words.shape[1]:
            return None                        # another text encoder than the table's (a test double, a checkpoint)
        gate_all = _sigmoid(cand_emb @ t.gate_w + t.gate_b)
        if not exclaimed and not (gate_all >= GATE_MIN).any():
            return None                        # no phrase, no "!": the spans need not be embedded at all
        span_emb = _unit(self.encode(flat).astype(np.float32))
        sims = span_emb @ t.words.T                            # (S, W)
        best = sims.argmax(1)
        best_sim = sims[np.arange(len(flat)), best]
        owner = np.repeat(np.arange(len(parts)), [len(ss) for ss in per_clause])
        # the emotion word: the span the span gate takes most for one
        kind = _softmax(span_emb @ t.span_w + t.span_b)        # (S, 3): other, emotion word, neutral word
        i = int(np.argmax(kind[:, 1]))
        if kind[i, 1] < SPAN_MIN:
            return None                        # no emotion word
        word_clause = int(owner[i])
        # the intensity phrase: the clause (or pair of clauses) besides the word's that the gate takes most for
        # an idiom or hedge
        gate = np.where([word_clause not in ks for ks in cands], gate_all, 0.0)
        c = int(np.argmax(gate)) if cands else 0
        phrase = cands[c] if cands and float(gate[c]) >= GATE_MIN else ()
        if not phrase and not exclaimed:
            return None                        # any level is in the emotion word itself: left to the generator
        if float(kind[~np.isin(owner, phrase), 2].max()) > kind[i, 1]:
            return None                        # a neutral instruction ("talk calmly")
        w = int(best[i])
        word = flat[i]
        nearest = t.word_emotion[w]
        # the emotion is named when the word is known, or when the nearest word and the whole instruction agree
        emotion = nearest if best_sim[i] >= WORD_MIN or nearest == understood else None
        if _NEGATION.search(parts[word_clause]):
            return None
        named = _unit(self.encode(spans(parts[word_clause], content=False)).astype(np.float32))
        if float((named @ t.adverbs.T).max()) >= ADVERB_MIN:
            return None                        # the intensity is named the world's way already ("really", "a little")
        if exclaimed:                          # the exclaiming form says the strongest level
            level, cue = 3, "exclaiming"
        else:
            level, cue = phrase_level(t, cand_emb[c]), f"phrase '{_joined(parts, phrase)}'"
        # drop the phrase and the clauses that repeat the word (exclamations); name the level before the word
        drop = set(phrase)
        if exclaimed:
            drop |= {k for k in range(len(parts)) if k != word_clause
                     and any(word.lower() == x.lower() for x in per_clause[k])}
        noun = word.lower().endswith(NOUN_ENDINGS) or (emotion is not None and t.word_kind[w] == "noun")
        modifier = (LEVEL_NOUN_MODS if noun else LEVEL_ADVERBS)[level]
        said = re.sub(rf"(?i)\b{re.escape(word)}\b", lambda m: f"{modifier} {m.group(0)}", parts[word_clause],
                      count=1)
        said = re.sub(rf"\b([Aa])n? ({re.escape(modifier)})\b",
                      lambda m: m.group(1) + ("n " if modifier[0] in "aeiou" else " ") + m.group(2), said)
        others = [x for x in _WORD.findall(parts[word_clause])
                  if x.lower() not in FUNCTION_WORDS and x.lower() not in word.lower().split()]
        if self.restate == "canonical" and emotion is not None and len(others) <= 1:
            # a word it knows in a clause that says little else ("Look angry"): the world's canonical clause; a
            # clause that says more ("at one moment make a cheeky right-eyed signal") keeps its words
            from ..avatarworld.instructions import canonical_instruction

            said = canonical_instruction(emotion, level).rstrip(".")
            drop |= {k for k in range(len(parts)) if not any(x.lower() not in FUNCTION_WORDS
                                                             for x in _WORD.findall(parts[k]))}
        out = ", ".join(said if k == word_clause else parts[k] for k in range(len(parts)) if k not in drop)
        restated = out[0].upper() + out[1:] + ("" if out.endswith((".", "?")) else ".")
        return Reading(emotion=emotion, level=level, word=word, cue=cue, text=text, restated=restated)


# ------------------------------------------------------------------------------------------------- table
def _train_items():
    """Everything the table is made of, from the train split only."""
    from ..avatarworld import instructions as W
    from ..avatarworld import phrasings as P

    words = []
    for kind, lists in (("adj", P.GRADED_ADJ), ("noun", P.GRADED_NOUN)):
        for emotion, grades in lists.items():
            for items in grades.values():
                words += [(w, emotion, kind) for w in P._split(items, "train")]
    known = {w[0] for w in words}
    for emotion, kinds in W.SYNONYMS.items():          # and the world's own emotion words
        for kind, items in kinds.items():
            words += [(w, emotion, "noun" if kind == "noun" else "adj") for w in W._split(items, "train")
                      if w not in known]
    adverbs = [a for lists in (W.INTENSITY_ADVERBS, W.INTENSITY_NOUN_MODS) for lv, items in lists.items()
               for a in W._split(items, "train")]
    phrases = [(p, lv) for lists in (P.INTENSITY_IDIOMS, P.HEDGES) for lv, items in lists.items()
               for p in P._split(items, "train")]
    return words, adverbs, phrases


def _gate_examples(seed: int = 0) -> tuple[list[str], list[str]]:
    """Train-split clauses: intensity phrases (alone and as cut out of idiom / hedge instructions) and every
    other clause (the world's phrasings, the other forms, the rest of idiom / hedge instructions)."""
    from ..avatarworld import instructions as W
    from ..avatarworld import phrasings as P

    _, _, phrases = _train_items()
    known = [p for p, _ in phrases]
    pos, neg = list(known), []
    emotions, motions = list(P.GRADED_ADJ), list(W.MOTIONS)
    rng = np.random.default_rng(seed)
    for form in P.FORMS:
        for k in range(300):
            emo = None if form == "described" else emotions[k % len(emotions)]
            mot = [motions[int(rng.integers(len(motions)))]] if form in ("described", "combination") else []
            t = P.form_instruction(form, emo, 1 + k % 3, mot, rng, "train")
            if t is None:
                continue
            for c in clauses(t):
                (pos if any(p in c for p in known) and len(c) <= max(len(p) for p in known) + 12 else neg).append(c)
    for _ in range(400):
        e, lv = list(W.SYNONYMS)[int(rng.integers(len(W.SYNONYMS)))], int(rng.integers(1, 4))
        neg += clauses(W.emotion_instruction(e, lv, rng, "train"))
        neg += clauses(W.combined_instruction(e, lv, [motions[int(rng.integers(len(motions)))]], rng, "train"))
        neg += clauses(W.motion_instruction([motions[int(rng.integers(len(motions)))]], rng, "train"))
    pos = list(dict.fromkeys(pos))
    neg = [c for c in dict.fromkeys(neg) if c not in set(pos)]
    return pos, neg


def _span_examples() -> tuple[list[str], np.ndarray]:
    """Train-split spans with their kind: 1 an emotion word (graded words, the world's synonyms), 2 a word of
    the world's neutral phrasings ("calmly"), 0 anything else (the spans of every template, motion phrasing,
    idiom, hedge, intensity word and joiner, with the emotion slots left empty)."""
    from ..avatarworld import instructions as W
    from ..avatarworld import phrasings as P

    tr = W.all_phrasings("train")
    fr = P.all_free_phrasings("train")
    emotion = {w.lower() for lists in (fr["graded_adj"], fr["graded_noun"]) for grades in lists.values()
               for ws in grades.values() for w in ws}
    emotion |= {w.lower() for kinds in tr["synonyms"].values() for ws in kinds.values() for w in ws}
    slot = re.compile(r"\{[a-z]+\}")
    texts = [x for kind in tr["templates"].values() for x in kind]
    texts += [x for kind in fr["graded_templates"].values() for x in kind] + list(fr["exclamations"])
    texts += [x for lv in fr["comparisons"].values() for x in lv] + list(tr["combined_patterns"])
    texts += [x for ms in tr["motions"].values() for x in ms] + [x for ms in fr["motion_descriptions"].values()
                                                                 for x in ms]
    texts += [x for lv in fr["idioms"].values() for x in lv] + [x for lv in fr["hedges"].values() for x in lv]
    texts += [x for lv in tr["intensity_adverbs"].values() for x in lv]
    texts += [x for lv in tr["intensity_noun_mods"].values() for x in lv]
    texts += [x for kind in tr["motion_joiners"].values() for x in kind]
    other = {sp.lower() for x in texts for part in slot.split(x) for sp in spans(part)} - emotion
    neutral = {sp.lower() for x in tr["neutral"] for sp in spans(x)} - emotion - other
    items = sorted(emotion) + sorted(neutral) + sorted(other)
    kinds = np.r_[np.ones(len(emotion)), np.full(len(neutral), 2), np.zeros(len(other))].astype(np.int64)
    return items, kinds


def _fit_softmax(x: np.ndarray, y: np.ndarray, classes: int, steps: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced, L2-regularised multinomial logistic regression by gradient descent."""
    counts = np.bincount(y, minlength=classes)
    weight = (len(y) / (classes * counts))[y][:, None]
    onehot = np.eye(classes)[y]
    w, b = np.zeros((x.shape[1], classes)), np.zeros(classes)
    for _ in range(steps):
        g = (_softmax(x @ w + b) - onehot) * weight
        w -= 0.5 * (x.T @ g / len(y) + 1e-3 * w)
        b -= 0.5 * g.mean(0)
    return w, b


def fit_table(encode, seed: int = 0) -> dict[str, np.ndarray]:
    """The reader's table from the train split, through `encode(texts) -> (N, D)`."""
    words, adverbs, phrases = _train_items()
    word_emb = _unit(encode([w[0] for w in words]).astype(np.float32))
    adverb_emb = _unit(encode(adverbs).astype(np.float32))
    phrase_emb = _unit(encode([p for p, _ in phrases]).astype(np.float32))
    levels = np.array([lv for _, lv in phrases])
    centroids = np.stack([phrase_emb[levels == lv].mean(0) for lv in (1, 2, 3)])
    targets = np.eye(3)[levels - 1] * 2 - 1
    ridge = np.linalg.solve(phrase_emb.T @ phrase_emb + RIDGE * np.eye(phrase_emb.shape[1]), phrase_emb.T @ targets)
    items, kinds = _span_examples()
    span_w, span_b = _fit_softmax(_unit(encode(items).astype(np.float64)), kinds, 3)
    pos, neg = _gate_examples(seed)
    x = _unit(encode(pos + neg).astype(np.float64))
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    weight = np.where(y == 1, len(neg) / len(pos), 1.0)
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(4000):                                     # logistic regression, class-balanced, L2
        g = (_sigmoid(x @ w + b) - y) * weight
        w -= 0.5 * (x.T @ g / len(y) + 1e-3 * w)
        b -= 0.5 * float(g.mean())
    return dict(words=word_emb.astype(np.float16), word_emotion=np.array([w[1] for w in words]),
                word_text=np.array([w[0] for w in words]), word_kind=np.array([w[2] for w in words]),
                adverbs=adverb_emb.astype(np.float16),
                span_w=span_w.astype(np.float32), span_b=span_b.astype(np.float32),
                phrases=phrase_emb.astype(np.float16), phrase_level=levels.astype(np.int8),
                centroids=_unit(centroids).astype(np.float16), ridge=ridge.astype(np.float32),
                gate_w=w.astype(np.float32), gate_b=np.array(b, dtype=np.float32))


def pipeline_encoder(pipeline):
    """`encode(texts)`: pooled embeddings through the pipeline's tokenizer and backend."""
    from .understanding import embed

    return lambda texts: embed(pipeline, list(texts))


def write_table(pipeline, path: Path = READER_FILE) -> Path:
    np.savez_compressed(path, **fit_table(pipeline_encoder(pipeline)))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m instructavatar.engine.instruction_reader",
                                 description="Write (or query) the shipped instruction reader table.")
    ap.add_argument("--write", action="store_true", help=f"fit the reader from the train split into {READER_FILE}")
    ap.add_argument("text", nargs="*", help="instructions to read with the shipped table")
    args = ap.parse_args(argv)
    from .loader import load_pipeline

    pipe = load_pipeline("demo", threads=1)
    if args.write:
        print(write_table(pipe))
        pipe.reader = InstructionReader(ReaderTable.load(), pipeline_encoder(pipe))
    for text in args.text:
        r = pipe.read_instruction(text)
        print(f"{text!r}: {r.describe() if r else 'left as typed'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
