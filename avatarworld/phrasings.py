"""Instructions as people type them: intensity carried by the emotion word, idioms, exclamation, comparison
and hedging; motions described by their purpose or look rather than named (issue 28).

The world's own phrasings (``instructions.py``) carry intensity with one adverb or noun modifier from a fixed
list ("Talk very sadly."), and name each motion. People also write "Look furious.", "Be angry, and don't hold
back.", "Angry! Seriously!", "Look sadder than usual.", "Look happy, but don't overdo it." or "Show that you
agree." This module adds those forms, each with its own lists, kept apart from the world's:

- ``graded``: an emotion word that carries the level itself, in a template with no intensity word: mild words
  mean level 1 ("annoyed"), plain words level 2 ("angry"), strong words level 3 ("furious"), for adjectives
  (``GRADED_ADJ``) and nouns (``GRADED_NOUN``). A strong word alone means the strongest level.
- ``idiom``: a plain word with an intensity idiom (``INTENSITY_IDIOMS``: "just barely" 1, "halfway" 2,
  "and don't hold back" 3).
- ``exclamation``: level 3 only, said by exclaiming ("Angry! Seriously!").
- ``comparison``: a comparative against the usual face ("a shade angrier than usual" 1, "angrier than usual"
  2, "angrier than you have ever been" 3).
- ``hedge``: levels 1 and 2, a plain clause with a hedge ("just a touch" 1, "but don't overdo it" 2).
- ``described``: each motion by what it is for or looks like (``MOTION_DESCRIPTIONS``: nod -> "show that you
  agree").
- ``combination``: a graded-word emotion clause with a described motion (the world's combination patterns).

``EMOTION_FORMS_BY_LEVEL`` says which emotion forms can say which level. Neutral keeps the world's neutral
phrasings (it has no level).

Held-out split, as in ``instructions.py``: in every list here the items at positions ``i % 5 == 4`` are held
out and never produced with ``split="train"``; lists are append-only. No held-out item here is a train item
of the world's lists or of this module, and no train item here is a held-out item of the world's (tests check
both, on the lists and on sampled texts). The world's clips and evaluation set never use these forms, so the
existing data and tables are unchanged; training adds them with ``train prepare --free-texts N``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from . import instructions as W
from .instructions import _pick, _split

FORMS: tuple[str, ...] = ("graded", "idiom", "exclamation", "comparison", "hedge", "described", "combination")
EMOTION_FORMS: tuple[str, ...] = ("graded", "idiom", "exclamation", "comparison", "hedge")
EMOTION_FORMS_BY_LEVEL: dict[int, tuple[str, ...]] = {
    1: ("graded", "idiom", "comparison", "hedge"),
    2: ("graded", "idiom", "comparison", "hedge"),
    3: ("graded", "idiom", "exclamation", "comparison"),
}
GRADES: tuple[str, ...] = ("mild", "plain", "strong")      # level 1, 2, 3

# ------------------------------------------------------------------------------------- graded emotion words
# Per emotion and grade; hand-written (no affect lexicon package: the ones on the registries grade valence and
# arousal, not the three levels of one emotion).
GRADED_ADJ: dict[str, dict[str, tuple[str, ...]]] = {
    "angry": {
        "mild": ("peeved", "bothered", "put out", "miffed", "vexed", "testy"),
        "plain": ("angry", "cross", "sore", "annoyed at someone", "indignant", "upset with someone"),
        "strong": ("furious", "livid", "enraged", "seething", "fuming", "incensed", "raging"),
    },
    "contempt": {
        "mild": ("unimpressed", "aloof", "smug", "snooty", "superior", "snobbish"),
        "plain": ("contemptuous", "scornful", "disdainful", "condescending", "supercilious", "dismissive"),
        "strong": ("withering", "scathing", "derisive", "jeering", "insolent", "venomous"),
    },
    "disgusted": {
        "mild": ("put off", "squeamish", "queasy", "turned off", "off-put", "grossed out a bit"),
        "plain": ("disgusted", "grossed out", "repulsed", "icked out", "repelled", "revolted"),
        "strong": ("nauseated", "sick to the stomach", "appalled", "revolted to the core", "disgusted beyond words",
                   "utterly repulsed"),
    },
    "fear": {
        "mild": ("uneasy", "jittery", "tense", "edgy", "on edge", "worried"),
        "plain": ("scared", "afraid", "frightened", "fearful", "spooked", "alarmed"),
        "strong": ("terrified", "petrified", "panicked", "panic-stricken", "terror-struck", "scared stiff"),
    },
    "happy": {
        "mild": ("content", "pleased", "amused", "satisfied", "cheery", "chuffed"),
        "plain": ("happy", "cheerful", "joyful", "merry", "jolly", "upbeat"),
        "strong": ("ecstatic", "elated", "overjoyed", "thrilled", "euphoric", "jubilant"),
    },
    "sad": {
        "mild": ("down", "blue", "wistful", "low", "downhearted", "a little blue"),
        "plain": ("sad", "unhappy", "sorrowful", "gloomy", "mournful", "dejected"),
        "strong": ("heartbroken", "devastated", "grief-stricken", "despairing", "distraught", "inconsolable"),
    },
    "surprised": {
        "mild": ("intrigued", "puzzled", "curious", "taken aback", "caught off guard", "bemused"),
        "plain": ("surprised", "amazed", "astonished", "amazed at the news", "wide-eyed", "caught by surprise"),
        "strong": ("stunned", "astounded", "flabbergasted", "dumbfounded", "thunderstruck", "gobsmacked"),
    },
}
GRADED_NOUN: dict[str, dict[str, tuple[str, ...]]] = {
    "angry": {
        "mild": ("displeasure", "impatience", "vexation", "exasperation", "mild irritation", "grumpiness"),
        "plain": ("anger", "indignation", "resentment", "temper", "ill temper", "crossness"),
        "strong": ("wrath", "outrage", "ire", "white-hot fury", "rage", "boiling anger"),
    },
    "contempt": {
        "mild": ("disapproval", "coolness", "superiority", "smugness", "aloofness", "snobbery"),
        "plain": ("contempt", "scorn", "disdain", "disrespect", "haughtiness", "dismissiveness"),
        "strong": ("derision", "mockery", "ridicule", "insolence", "withering scorn", "venom"),
    },
    "disgusted": {
        "mild": ("distaste", "dislike", "squeamishness", "queasiness", "mild distaste", "slight revulsion"),
        "plain": ("disgust", "revulsion", "aversion", "repugnance", "repulsion", "grossness"),
        "strong": ("abhorrence", "nausea", "abject disgust", "detestation", "sheer revulsion", "utter disgust"),
    },
    "fear": {
        "mild": ("nervousness", "worry", "jitters", "trepidation", "edginess", "mild worry"),
        "plain": ("fear", "fright", "anxiety", "alarm", "fearfulness", "nervous fear"),
        "strong": ("panic", "horror", "hysteria", "blind panic", "sheer terror", "mortal fear"),
    },
    "happy": {
        "mild": ("contentment", "amusement", "satisfaction", "cheer", "mild amusement", "good humour"),
        "plain": ("happiness", "joy", "cheerfulness", "gladness", "merriment", "good cheer"),
        "strong": ("ecstasy", "elation", "euphoria", "jubilation", "bliss", "rapture"),
    },
    "sad": {
        "mild": ("wistfulness", "disappointment", "glumness", "low spirits", "a heavy heart", "melancholy"),
        "plain": ("sadness", "sorrow", "unhappiness", "gloom", "dejection", "mournfulness"),
        "strong": ("grief", "heartbreak", "anguish", "devastation", "desolation", "inconsolable sorrow"),
    },
    "surprised": {
        "mild": ("curiosity", "puzzlement", "intrigue", "bemusement", "mild surprise", "interest"),
        "plain": ("surprise", "amazement", "astonishment", "disbelief", "startlement", "bewilderment"),
        "strong": ("shock", "awe", "stupefaction", "incredulity", "utter shock", "total astonishment"),
    },
}
# Templates with no intensity slot: the word alone carries the level. {adj} / {noun} as above.
GRADED_TEMPLATES: dict[str, tuple[str, ...]] = {
    "adj": (
        "look {adj} as you talk",
        "be {adj} while you say this",
        "say the line like you're {adj}",
        "talk like you are {adj}",
        "come across as {adj} while speaking",
        "speak, looking {adj}",
        "play it {adj}",
        "you're {adj}; talk like it",
        "let us see that you are {adj}",
        "show me you're {adj} while you speak",
        "act {adj} as you deliver this",
        "imagine you're {adj} and speak",
        "look {adj}",
        "sound and look {adj}",
        "talk, and be {adj} about it",
    ),
    "noun": (
        "talk with {noun} on your face",
        "say it with {noun}",
        "let {noun} show while you talk",
        "your face should show {noun}",
        "read this with {noun} in your eyes",
        "put {noun} into your face as you speak",
        "deliver it with {noun}",
        "speak and let {noun} come through",
        "talk, your face showing {noun}",
        "say this with {noun} in your look",
    ),
}

# ------------------------------------------------------------------------------------------- idioms, hedges
# A clause in a bare template with a PLAIN word, then one of these: the idiom alone says the level.
INTENSITY_IDIOMS: dict[int, tuple[str, ...]] = {
    1: ("just barely", "by a hair", "the tiniest bit", "only a smidge", "ever so slightly", "a teeny bit",
        "by a whisker", "only a shade", "a wee bit", "no more than a flicker"),
    2: ("halfway", "at half strength", "a fair bit", "in moderation", "middle of the road",
        "at medium strength", "about halfway", "at a medium level", "in the middle range", "at a steady medium"),
    3: ("and don't hold back", "all the way", "to the max", "and go all out", "with everything you've got",
        "and really lay it on thick", "through the roof", "at full blast", "over the top", "with no restraint"),
}
IDIOM_PATTERNS: tuple[str, ...] = ("{clause}, {idiom}", "{clause} - {idiom}", "{clause} ({idiom})",
                                   "{clause}; {idiom}", "{clause}, {idiom}, please")
HEDGES: dict[int, tuple[str, ...]] = {
    1: ("just a touch", "keep it very subtle", "barely show it", "only a little, really", "hardly at all",
        "keep it faint", "so subtle it's almost not there", "only the faintest sign of it", "keep it tiny",
        "don't show much of it at all"),
    2: ("but don't overdo it", "not too much though", "but keep it in check", "nothing over the top",
        "within reason", "but don't go overboard", "just don't exaggerate", "but not too strongly",
        "keep it reasonable", "not over the top, not too little"),
}
HEDGE_PATTERNS: tuple[str, ...] = ("{clause}, {hedge}", "{clause} - {hedge}", "{clause}; {hedge}",
                                   "{clause}. {hedge}", "{clause} ({hedge})")

# ------------------------------------------------------------------------------------- exclamation (level 3)
EXCLAMATIONS: tuple[str, ...] = (
    "{adj}! be {adj} as you talk!",
    "come on, {adj}!",
    "be {adj}, seriously!",
    "I want to see you {adj}!!",
    "{adj}! {adj}! say it {adj}!",
    "so {adj}! talk like that!",
    "show me {adj}, now!",
    "now talk, {adj}! really show it!",
    "{adj}!!! let it out!",
    "{adj} face, go!",
)

# -------------------------------------------------------------------------------------------- comparison
COMPARATIVES: dict[str, tuple[str, ...]] = {
    "angry": ("angrier", "crosser", "more irritated"),
    "contempt": ("more scornful", "more disdainful", "more contemptuous"),
    "disgusted": ("more disgusted", "more grossed out", "more repulsed"),
    "fear": ("more scared", "more frightened", "more afraid"),
    "happy": ("happier", "more cheerful", "merrier"),
    "sad": ("sadder", "gloomier", "unhappier"),
    "surprised": ("more surprised", "more amazed", "more astonished"),
}
COMPARISONS: dict[int, tuple[str, ...]] = {
    1: ("look a shade {comp} than usual", "be {comp} than your resting face, but only just",
        "speak only a hair {comp} than normal", "look a whisker {comp} than neutral",
        "talk a tiny step {comp} than usual", "be the slightest degree {comp} than you normally are"),
    2: ("look {comp} than usual", "talk {comp} than you normally would", "be {comp} than your everyday self",
        "speak {comp} than normal", "look {comp} than you usually are", "say it {comp} than a normal day"),
    3: ("look {comp} than you have ever been", "be {comp} than anyone alive", "talk {comp} than you ever were",
        "look as {adj} as anyone could be", "be {comp} than ever before in your life",
        "look {comp} than anyone has ever looked"),
}

# ---------------------------------------------------------------------------------------- described motions
MOTION_DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "raise_eyebrows": ("give a questioning look with your brows", "show interest by lifting your brow line",
                       "make your forehead wrinkle upward", "look impressed with your brows",
                       "send your brows toward your hairline", "do the eyebrow flash"),
    "frown": ("give a stern look", "show that you are thinking hard", "look puzzled with a creased brow",
              "make a disapproving face", "look like you are deep in thought", "put on a serious, knitted brow"),
    "close_eyes": ("rest your eyes", "pretend to sleep", "block out the view for a moment",
                   "act as if you are sleeping", "take a moment with the world shut out",
                   "hide your eyes behind your lids"),
    "wink_left": ("give a knowing look with your left eye", "flirt with your left eye",
                  "let the viewer in on a joke with your left eye", "signal a secret with your left eye",
                  "make a cheeky left-eyed signal", "tip off the viewer with your left eye"),
    "wink_right": ("give a knowing look with your right eye", "flirt with your right eye",
                   "let the viewer in on a joke with your right eye", "signal a secret with your right eye",
                   "make a cheeky right-eyed signal", "tip off the viewer with your right eye"),
    "blink": ("clear your vision once", "let your lids flicker once", "reset your eyes for a split second",
              "refresh your eyes quickly", "do one flick of the eyelids", "moisten your eyes in one quick motion"),
    "widen_eyes": ("look wide awake", "make saucer eyes", "stare with big round eyes",
                   "look like a deer in headlights", "give a bug-eyed stare", "let your eyes pop"),
    "squint": ("look as if the sun is in your eyes", "peer at something far away",
               "give a suspicious look through narrow lids", "try to read tiny print",
               "screw up your eyes against bright light", "give the camera a doubtful, narrow look"),
    "wrinkle_nose": ("react to a bad smell", "sniff at something stinky", "make a face at a foul odour",
                     "show that something stinks", "pull a face at a bad smell",
                     "act like you smelled something rotten"),
    "smile": ("beam at the camera", "give a friendly look", "show some teeth in a warm way",
              "make a welcoming face", "look like you are enjoying this", "light up your face with your mouth"),
    "open_mouth_wide": ("act out a big yawn", "look like you are about to shout",
                        "show the inside of your mouth to a dentist", "make a big round O with your mouth",
                        "pretend to take a huge bite", "let your jaw hang all the way down"),
    "press_lips": ("keep your mouth sealed", "show that your lips are sealed",
                   "look like you are holding back words", "keep a secret with your mouth",
                   "hold back a comment behind closed lips", "look determined with your mouth"),
    "nod": ("show that you agree", "signal yes with your head", "agree without words", "say yes with your head",
            "show you understand with your head", "give a sign of approval with your head"),
    "shake_head": ("refuse without a word", "say no with your head", "show that you disagree with your head",
                   "disagree silently with your head", "deny it with your head",
                   "show disbelief with a head gesture"),
    "tilt_head_left": ("look quizzical, head leaning to your left", "listen closely with your head leaning left",
                       "look like a curious puppy, head to your left",
                       "rest your head on an imaginary pillow on your left",
                       "show you are puzzled by dropping your head toward your left",
                       "put your left ear toward your left shoulder"),
    "tilt_head_right": ("look quizzical, head leaning to your right",
                        "listen closely with your head leaning right",
                        "look like a curious puppy, head to your right",
                        "rest your head on an imaginary pillow on your right",
                        "show you are puzzled by dropping your head toward your right",
                        "put your right ear toward your right shoulder"),
    "turn_head_left": ("check what is on your left", "face the person standing on your left",
                       "respond to a sound on your left", "show the camera your profile, facing your left",
                       "look behind you toward the left", "answer someone calling from your left"),
    "turn_head_right": ("check what is on your right", "face the person standing on your right",
                        "respond to a sound on your right", "show the camera your profile, facing your right",
                        "look behind you toward the right", "answer someone calling from your right"),
    "look_left": ("peek at something on your left", "steal a glance at your left",
                  "check the left side with your eyes only", "eye something to your left",
                  "watch something on your left without moving your head", "sneak a look leftward"),
    "look_right": ("peek at something on your right", "steal a glance at your right",
                   "check the right side with your eyes only", "eye something to your right",
                   "watch something on your right without moving your head", "sneak a look rightward"),
    "look_up": ("look at the sky", "check the ceiling with your eyes", "roll your eyes toward the heavens",
                "watch a bird flying overhead", "search your memory with your eyes up", "eye the top of the room"),
    "look_down": ("look at your shoes", "check your feet with your eyes", "read something on the table",
                  "look at the phone in your lap", "avert your gaze to the floor", "look bashful, eyes to the ground"),
}


# ------------------------------------------------------------------------------------------------- split
def all_free_phrasings(split: str) -> dict:
    """Every list item of this module in one split, by list (templates, graded words, idioms, ...)."""
    return {
        "graded_adj": {e: {g: _split(v, split) for g, v in grades.items()} for e, grades in GRADED_ADJ.items()},
        "graded_noun": {e: {g: _split(v, split) for g, v in grades.items()} for e, grades in GRADED_NOUN.items()},
        "graded_templates": {k: _split(v, split) for k, v in GRADED_TEMPLATES.items()},
        "idioms": {lvl: _split(v, split) for lvl, v in INTENSITY_IDIOMS.items()},
        "idiom_patterns": _split(IDIOM_PATTERNS, split),
        "hedges": {lvl: _split(v, split) for lvl, v in HEDGES.items()},
        "hedge_patterns": _split(HEDGE_PATTERNS, split),
        "exclamations": _split(EXCLAMATIONS, split),
        "comparisons": {lvl: _split(v, split) for lvl, v in COMPARISONS.items()},
        "motion_descriptions": {m: _split(v, split) for m, v in MOTION_DESCRIPTIONS.items()},
    }


# ----------------------------------------------------------------------------------------------- builder
def _finish(text: str) -> str:
    """The world's sentence finish, plus an upper-case letter after each inner sentence end ("Angry! Seriously!")."""
    return re.sub(r"([.!?] )([a-z])", lambda m: m.group(1) + m.group(2).upper(), W._finish(text))


def _one_word(words: Sequence[str]) -> tuple[str, ...]:
    """The one-word items (exclamations and "as X as" read badly with a phrase)."""
    return tuple(w for w in words if " " not in w)


def _graded_clause(emotion: str, grade: str, rng: np.random.Generator, split: str) -> str:
    """A bare template filled with a word of one grade: "look furious as you talk"."""
    kind = _pick(rng, tuple(GRADED_TEMPLATES))
    words = (GRADED_ADJ if kind == "adj" else GRADED_NOUN)[emotion][grade]
    return _pick(rng, _split(GRADED_TEMPLATES[kind], split)).format(
        **{kind: _pick(rng, _split(words, split))})


def _emotion_form_clause(emotion: str, intensity: int, form: str, rng: np.random.Generator, split: str) -> str:
    if form == "graded":
        return _graded_clause(emotion, GRADES[intensity - 1], rng, split)
    if form == "idiom":
        return _pick(rng, _split(IDIOM_PATTERNS, split)).format(
            clause=_graded_clause(emotion, "plain", rng, split),
            idiom=_pick(rng, _split(INTENSITY_IDIOMS[intensity], split)))
    if form == "hedge":
        return _pick(rng, _split(HEDGE_PATTERNS, split)).format(
            clause=_graded_clause(emotion, "plain", rng, split), hedge=_pick(rng, _split(HEDGES[intensity], split)))
    if form == "exclamation":
        words = _split(GRADED_ADJ[emotion]["plain"], split) + _split(GRADED_ADJ[emotion]["strong"], split)
        adj = _pick(rng, _one_word(words))
        return _pick(rng, _split(EXCLAMATIONS, split)).replace("{adj}", adj)
    # comparison
    return _pick(rng, _split(COMPARISONS[intensity], split)).format(
        comp=_pick(rng, COMPARATIVES[emotion]), adj=_pick(rng, _one_word(_split(GRADED_ADJ[emotion]["plain"], split))))


def _check_form(emotion: str, intensity: int, form: str | None) -> None:
    W._check_emotion(emotion, intensity)
    if form is not None and form not in EMOTION_FORMS:
        raise ValueError(f"unknown emotion form {form!r}; expected one of {EMOTION_FORMS}")
    if form is not None and emotion != "neutral" and form not in EMOTION_FORMS_BY_LEVEL[intensity]:
        raise ValueError(f"form {form!r} cannot say intensity {intensity}; "
                         f"level {intensity} forms: {EMOTION_FORMS_BY_LEVEL[intensity]}")


def free_emotion_clause(emotion: str, intensity: int, rng: np.random.Generator, split: str = "train",
                        form: str | None = None) -> str:
    """An emotion clause in one of the EMOTION_FORMS (drawn among the level's forms when `form` is None)."""
    _check_form(emotion, intensity, form)
    if emotion == "neutral":
        return _pick(rng, _split(W.NEUTRAL_PHRASES, split))
    form = form if form is not None else _pick(rng, EMOTION_FORMS_BY_LEVEL[intensity])
    return _emotion_form_clause(emotion, intensity, form, rng, split)


def free_emotion_instruction(emotion: str, intensity: int, rng: np.random.Generator, split: str = "train",
                             form: str | None = None) -> str:
    """One emotion instruction as people type it ("Look furious as you talk.", "Look sad, but don't overdo it.")."""
    return _finish(free_emotion_clause(emotion, intensity, rng, split, form))


def described_motion_clause(motions: Sequence[str], rng: np.random.Generator, split: str = "train",
                            timing: str | None = None) -> str:
    """One to three motions, each described by its purpose or look, joined as the world joins named ones."""
    motions = [motions] if isinstance(motions, str) else list(motions)
    if not 1 <= len(motions) <= 3:
        raise ValueError(f"need 1 to 3 motions, got {len(motions)}")
    for m in motions:
        if m not in MOTION_DESCRIPTIONS:
            raise ValueError(f"unknown motion {m!r}; expected one of {tuple(MOTION_DESCRIPTIONS)}")
    if timing is not None and timing not in W.TIMINGS:
        raise ValueError(f"timing must be one of {W.TIMINGS} or None, not {timing!r}")
    phrases = [_pick(rng, _split(MOTION_DESCRIPTIONS[m], split)) for m in motions]
    if len(phrases) == 1:
        return phrases[0]
    kind = timing if timing is not None else _pick(rng, W.TIMINGS)
    if len(phrases) == 2:
        return phrases[0] + _pick(rng, _split(W.MOTION_JOINERS[kind], split)) + phrases[1]
    return _pick(rng, _split(W.MOTION_TRIPLES[kind], split)).format(a=phrases[0], b=phrases[1], c=phrases[2])


def described_motion_instruction(motions: Sequence[str], rng: np.random.Generator, split: str = "train",
                                 timing: str | None = None) -> str:
    """A motion instruction with the motions described, not named ("Show that you agree, then look at the sky.")."""
    return _finish(described_motion_clause(motions, rng, split, timing))


def combination_instruction(emotion: str, intensity: int, motions: Sequence[str], rng: np.random.Generator,
                            split: str = "train", timing: str | None = None) -> str:
    """A graded-word emotion clause and a described motion clause in one of the world's combination patterns."""
    _check_form(emotion, intensity, None)
    e = (_pick(rng, _split(W.NEUTRAL_PHRASES, split)) if emotion == "neutral"
         else _graded_clause(emotion, GRADES[intensity - 1], rng, split))
    m = described_motion_clause(motions, rng, split, timing)
    return _finish(_pick(rng, _split(W.COMBINED_PATTERNS, split)).format(e=e, m=m))


def free_instruction(emotion: str | None, intensity: int, motions: Sequence[str], rng: np.random.Generator,
                     split: str = "train", timing: str | None = None) -> str:
    """A free phrasing of a clip's content: emotion only, motions only (described) or both (combination)."""
    motions = [motions] if isinstance(motions, str) else list(motions)
    if emotion is None and not motions:
        raise ValueError("need an emotion, motions or both")
    if not motions:
        return free_emotion_instruction(emotion, intensity, rng, split)
    if emotion is None:
        return described_motion_instruction(motions, rng, split, timing)
    return combination_instruction(emotion, intensity, motions, rng, split, timing)


def form_instruction(form: str, emotion: str | None, intensity: int, motions: Sequence[str],
                     rng: np.random.Generator, split: str = "train", timing: str | None = None) -> str | None:
    """The clip content in one given form, or None when the form cannot say it (the quality table's rows):
    emotion forms need a non-neutral emotion at a level they can say and no motions; ``described`` needs
    motions and no emotion; ``combination`` both."""
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; expected one of {FORMS}")
    motions = list(motions)
    has_emotion = emotion is not None and emotion != "neutral"
    if form in EMOTION_FORMS:
        if motions or not has_emotion or form not in EMOTION_FORMS_BY_LEVEL[intensity]:
            return None
        return free_emotion_instruction(emotion, intensity, rng, split, form)
    if form == "described":
        return None if (emotion is not None or not motions) else described_motion_instruction(motions, rng, split,
                                                                                              timing)
    return combination_instruction(emotion, intensity, motions, rng, split, timing) if has_emotion and motions \
        else None


def grade_of_word(emotion: str, word: str) -> int | None:
    """The level (1-3) a graded word of `emotion` carries, or None when it is not one of them."""
    w = word.lower().strip()
    for lists in (GRADED_ADJ, GRADED_NOUN):
        for g, words in lists.get(emotion, {}).items():
            if w in words:
                return GRADES.index(g) + 1
    return None
