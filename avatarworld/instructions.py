"""Instruction texts of the synthetic world (our own text, after InstructAvatar section 3.2).

The paper turns emotion labels and action-unit (AU) descriptions into sentences and paraphrases them with
GPT-4V/ChatGPT. We have no language model, so templates x synonyms x intensity words x phrasings carry
the diversity:

- Emotion instructions (``emotion_instruction``): a template with one of three slot kinds, filled with an
  emotion synonym of that kind and an intensity word of the right kind:
  ``adj`` ("Look {int} {adj} while talking": "Look slightly angry while talking"),
  ``noun`` ("Speak with {nint} {noun}": "Speak with a touch of anger") and
  ``manner`` ("Talk {int} {manner}": "Talk very sadly"). Neutral has its own phrasings
  ("Keep a neutral face while you talk") and ignores the intensity.
- Motion instructions (``motion_instruction``): one to three motions from ``MOTIONS``; each motion has
  several imperative phrasings, plain ones ("raise your eyebrows") and AU-description style ones
  ("raise the inner and outer parts of the brows"), joined by joiners ("and", ", then", "while you").
  Left/right always mean the SUBJECT's own left/right (``wink_left`` closes ``eye_close_l``;
  ``look_left``/``turn_head_left`` go towards the subject's left, i.e. image right).
- Combined instructions (``combined_instruction``): an emotion clause and a motion clause joined by a
  combination pattern.

Held-out split: in every list below (templates per slot kind, synonyms per emotion and kind, intensity
words per level and kind, neutral phrasings, phrasings per motion, joiners, patterns) the items at
positions ``i % 5 == 4`` are held out (about 20%) and never produced with ``split="train"``; they measure
paraphrase generalisation. Lists are append-only: never reorder or edit items, or the split changes.
Every held-out string is distinct from every train string (tests check that no held-out item shows up
in train outputs and vice versa).

Output format: one sentence (sometimes two), first letter upper case, ending in a period.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

EMOTIONS: tuple[str, ...] = ("angry", "contempt", "disgusted", "fear", "happy", "sad", "surprised", "neutral")
INTENSITIES: tuple[int, ...] = (1, 2, 3)
SPLITS: tuple[str, ...] = ("train", "heldout")

# ---------------------------------------------------------------------------------------------- emotion
# Templates: {int} = intensity adverb (INTENSITY_ADVERBS), {adj}/{manner} = emotion adjective/adverb;
# {nint} = intensity noun modifier (INTENSITY_NOUN_MODS), {noun} = emotion noun.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "adj": (
        "look {int} {adj} while talking",
        "speak in a {int} {adj} way",
        "talk in a {int} {adj} manner",
        "appear {int} {adj} as you speak",
        "be {int} {adj} while you talk",
        "act {int} {adj} while speaking",
        "seem {int} {adj} when you talk",
        "say this with a {int} {adj} face",
        "wear a {int} {adj} expression while speaking",
        "speak like someone who is {int} {adj}",
        "talk as if you were {int} {adj}",
        "deliver the line looking {int} {adj}",
        "make a {int} {adj} face as you talk",
        "your face should look {int} {adj} while you speak",
        "put on a {int} {adj} look and talk",
        "show a {int} {adj} expression during the speech",
        "talk with a {int} {adj} look on your face",
        "keep a {int} {adj} expression while talking",
        "read the sentence looking {int} {adj}",
        "pretend to be {int} {adj} while you speak",
    ),
    "noun": (
        "talk with {nint} {noun}",
        "speak with {nint} {noun}",
        "show {nint} {noun} while talking",
        "express {nint} {noun} as you speak",
        "let {nint} {noun} show on your face while talking",
        "say it with {nint} {noun} in your expression",
        "talk and display {nint} {noun}",
        "speak while conveying {nint} {noun}",
        "deliver the words with {nint} {noun}",
        "let your face reveal {nint} {noun} as you talk",
        "talk, showing {nint} {noun}",
        "speak with {nint} {noun} written on your face",
        "put {nint} {noun} into your expression while speaking",
        "read the line with {nint} {noun}",
        "your expression should carry {nint} {noun} while you speak",
    ),
    "manner": (
        "talk {int} {manner}",
        "speak {int} {manner}",
        "say the words {int} {manner}",
        "answer {int} {manner}",
        "read this out {int} {manner}",
        "deliver your lines {int} {manner}",
        "chat {int} {manner}",
        "talk to me {int} {manner}",
        "tell the story {int} {manner}",
        "speak {int} {manner} to the camera",
        "address the viewer {int} {manner}",
        "reply {int} {manner}",
        "recite the sentence {int} {manner}",
        "go on talking {int} {manner}",
    ),
}

SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "angry": {
        "adj": ("angry", "annoyed", "irritated", "furious", "mad", "cross", "irate"),
        "noun": ("anger", "irritation", "annoyance", "fury", "rage", "frustration", "indignation"),
        "manner": ("angrily", "furiously", "irritably", "crossly", "heatedly", "indignantly", "resentfully"),
    },
    "contempt": {
        "adj": ("contemptuous", "scornful", "disdainful", "dismissive", "sneering", "condescending",
                "haughty"),
        "noun": ("contempt", "scorn", "disdain", "derision", "condescension", "disrespect"),
        "manner": ("contemptuously", "scornfully", "disdainfully", "dismissively", "mockingly",
                   "condescendingly", "derisively"),
    },
    "disgusted": {
        "adj": ("disgusted", "repulsed", "revolted", "grossed out", "sickened", "nauseated", "appalled"),
        "noun": ("disgust", "revulsion", "distaste", "repugnance", "loathing", "aversion"),
        "manner": ("disgustedly", "distastefully", "squeamishly", "queasily", "nauseously", "loathingly"),
    },
    "fear": {
        "adj": ("scared", "frightened", "fearful", "afraid", "anxious", "nervous", "alarmed", "worried"),
        "noun": ("fear", "fright", "anxiety", "dread", "terror", "alarm", "apprehension"),
        "manner": ("fearfully", "nervously", "anxiously", "timidly", "apprehensively", "shakily", "warily"),
    },
    "happy": {
        "adj": ("happy", "cheerful", "joyful", "glad", "delighted", "pleased", "merry", "joyous"),
        "noun": ("happiness", "joy", "cheerfulness", "delight", "glee", "pleasure", "gladness"),
        "manner": ("happily", "cheerfully", "joyfully", "gladly", "merrily", "brightly", "gleefully",
                   "joyously"),
    },
    "sad": {
        "adj": ("sad", "unhappy", "sorrowful", "gloomy", "miserable", "downcast", "melancholy", "dejected"),
        "noun": ("sadness", "sorrow", "grief", "gloom", "despair", "misery", "unhappiness"),
        "manner": ("sadly", "sorrowfully", "gloomily", "mournfully", "miserably", "glumly", "dejectedly",
                   "wistfully"),
    },
    "surprised": {
        "adj": ("surprised", "astonished", "amazed", "startled", "shocked", "stunned", "astounded"),
        "noun": ("surprise", "astonishment", "amazement", "shock", "wonder", "disbelief"),
        "manner": ("surprisedly", "amazedly", "incredulously", "wonderingly", "wide-eyed",
                   "in astonishment"),
    },
}

INTENSITY_ADVERBS: dict[int, tuple[str, ...]] = {
    1: ("slightly", "a little", "a bit", "mildly", "somewhat", "a tad", "faintly"),
    2: ("moderately", "fairly", "quite", "rather", "reasonably", "pretty", "noticeably"),
    3: ("extremely", "very", "intensely", "overwhelmingly", "incredibly", "really", "terribly",
        "exceedingly"),
}
INTENSITY_NOUN_MODS: dict[int, tuple[str, ...]] = {
    1: ("a hint of", "a touch of", "slight", "mild", "a trace of", "a bit of", "faint"),
    2: ("moderate", "noticeable", "some", "clear", "a fair amount of", "visible", "evident"),
    3: ("intense", "extreme", "overwhelming", "strong", "tremendous", "great", "deep"),
}

NEUTRAL_PHRASES: tuple[str, ...] = (
    "talk calmly",
    "keep a neutral face while you talk",
    "speak with a neutral expression",
    "talk without showing any emotion",
    "keep your face relaxed while speaking",
    "speak in a calm, even manner",
    "talk normally, with no particular emotion",
    "stay expressionless as you talk",
    "keep a straight face while talking",
    "speak with a composed, neutral look",
    "talk plainly and evenly",
    "say it with a calm and neutral face",
    "read the sentence in a neutral way",
    "speak calmly and keep your expression neutral",
    "talk in an impassive, matter-of-fact way",
)

# ----------------------------------------------------------------------------------------------- motion
# Each phrasing is an imperative verb phrase starting in lower case; AU-description style ones included.
MOTION_PHRASES: dict[str, tuple[str, ...]] = {
    "raise_eyebrows": (
        "raise your eyebrows", "lift your brows", "raise the inner and outer parts of the brows",
        "pull your eyebrows up", "arch your eyebrows high", "raise both brows",
        "lift the inner and outer brows upward", "move your eyebrows up", "push your brows upward",
        "elevate your eyebrows",
    ),
    "frown": (
        "frown", "knit your brows", "lower and draw the brows together", "furrow your brow",
        "pull your eyebrows down and together", "scowl", "lower your eyebrows",
        "draw your brows down into a frown", "bring the brows down and toward each other",
        "crease your forehead in a frown",
    ),
    "close_eyes": (
        "close your eyes", "shut your eyes", "close both eyelids and keep them shut",
        "keep your eyes closed for a moment", "lower your eyelids fully", "shut both eyes",
        "let your eyes fall shut", "close your eyes and hold them closed", "squeeze both eyes shut",
        "bring your eyelids down and keep them down",
    ),
    "wink_left": (
        "wink your left eye", "wink with your left eye", "close only your left eye briefly",
        "give a wink with the left eye", "shut your left eye for a moment", "do a quick left-eye wink",
        "briefly close the left eyelid", "wink using your left eye", "flash a wink with your left eye",
        "close and reopen just your left eye",
    ),
    "wink_right": (
        "wink your right eye", "wink with your right eye", "close only your right eye briefly",
        "give a wink with the right eye", "shut your right eye for a moment", "do a quick right-eye wink",
        "briefly close the right eyelid", "wink using your right eye", "flash a wink with your right eye",
        "close and reopen just your right eye",
    ),
    "blink": (
        "blink", "blink your eyes", "close and reopen the eyelids quickly", "give a quick blink",
        "blink once", "do a fast blink", "flutter your eyelids shut and open",
        "blink both eyes briefly", "shut your eyes for an instant", "bat your eyelids once",
    ),
    "widen_eyes": (
        "widen your eyes", "open your eyes wide", "raise the upper eyelids", "make your eyes big",
        "open your eyes as wide as you can", "stretch your eyes wide open", "lift your upper lids",
        "show the whites of your eyes", "make your eyes go wide", "pull your upper eyelids up",
    ),
    "squint": (
        "squint", "narrow your eyes", "tighten the lids around your eyes", "squint your eyes",
        "make your eyes narrow", "tense your lower eyelids", "look through narrowed eyes",
        "half close your eyes", "tighten your eyelids", "squeeze your eyes into slits",
    ),
    "wrinkle_nose": (
        "wrinkle your nose", "scrunch up your nose", "wrinkle the nose and raise the upper lip slightly",
        "crinkle your nose", "screw up your nose", "pull your nose upward into wrinkles",
        "make your nose wrinkle", "scrunch your nose", "tense the skin along the sides of your nose",
        "crumple your nose",
    ),
    "smile": (
        "smile", "give a smile", "pull the lip corners up", "raise the cheeks and pull the lip corners up",
        "grin", "put on a smile", "smile broadly", "turn up the corners of your mouth",
        "lift the corners of your lips", "flash a big smile",
    ),
    "open_mouth_wide": (
        "open your mouth wide", "drop your jaw", "drop the jaw and part the lips widely",
        "let your mouth fall open", "open your mouth as wide as you can", "gape", "lower your jaw fully",
        "make a wide open mouth", "part your lips and drop your jaw", "stretch your mouth wide open",
    ),
    "press_lips": (
        "press your lips together", "tighten your lips", "press the lips together tightly",
        "purse your lips", "clamp your lips shut", "make a thin line with your lips",
        "squeeze your lips tight", "tense your lips against each other", "raise the chin and press the lips",
        "pinch your lips together",
    ),
    "nod": (
        "nod", "nod your head", "move the head down and up", "give a nod", "nod in agreement",
        "bob your head up and down", "tip your head forward and back", "nod a few times",
        "dip your head down and raise it again", "nod slowly",
    ),
    "shake_head": (
        "shake your head", "shake your head no", "turn the head from side to side",
        "give a shake of the head", "move your head left and right", "swing your head side to side",
        "shake your head slowly", "turn your head back and forth",
        "rotate your head left and right a few times",
        "signal no by shaking your head",
    ),
    "tilt_head_left": (
        "tilt your head to the left", "lean your head toward your left shoulder", "tilt the head left",
        "incline your head to your left", "cock your head to the left", "tip your head to the left side",
        "bend your neck so your head leans left", "let your head tilt left", "drop your head toward the left",
        "angle your head to the left",
    ),
    "tilt_head_right": (
        "tilt your head to the right", "lean your head toward your right shoulder", "tilt the head right",
        "incline your head to your right", "cock your head to the right", "tip your head to the right side",
        "bend your neck so your head leans right", "let your head tilt right",
        "drop your head toward the right", "angle your head to the right",
    ),
    "turn_head_left": (
        "turn your head to the left", "turn your face to your left", "rotate the head to the left",
        "face toward your left", "swivel your head left", "turn to the left",
        "point your face to the left side", "twist your head toward the left", "look over to your left side",
        "swing your face to the left",
    ),
    "turn_head_right": (
        "turn your head to the right", "turn your face to your right", "rotate the head to the right",
        "face toward your right", "swivel your head right", "turn to the right",
        "point your face to the right side", "twist your head toward the right",
        "look over to your right side", "swing your face to the right",
    ),
    "look_left": (
        "look to the left", "glance left", "move your eyes to the left", "shift your gaze left",
        "cast your eyes to your left", "look left", "turn your eyes leftward", "glance to your left",
        "direct your gaze to the left", "let your eyes drift left",
    ),
    "look_right": (
        "look to the right", "glance right", "move your eyes to the right", "shift your gaze right",
        "cast your eyes to your right", "look right", "turn your eyes rightward", "glance to your right",
        "direct your gaze to the right", "let your eyes drift right",
    ),
    "look_up": (
        "look up", "glance upward", "raise your gaze", "move your eyes up", "roll your eyes upward",
        "look up at the ceiling", "turn your eyes up", "lift your eyes", "direct your gaze upward",
        "gaze up above",
    ),
    "look_down": (
        "look down", "glance downward", "lower your gaze", "move your eyes down", "cast your eyes down",
        "look down at the floor", "turn your eyes down", "drop your eyes", "direct your gaze downward",
        "gaze down below",
    ),
}
MOTIONS: tuple[str, ...] = tuple(MOTION_PHRASES)

# Two-motion joiners by timing; "either" joiners do not say whether the motions overlap.
MOTION_JOINERS: dict[str, tuple[str, ...]] = {
    "together": (" while you ", " as you ", " and at the same time ", " and meanwhile ",
                 " and simultaneously "),
    "sequence": (", then ", " and then ", ", and after that ", ", and next ", ", and afterwards "),
    "either": (" and ", ", and also ", " and also ", ", plus ", ", and additionally "),
}
# Three-motion patterns by timing.
MOTION_TRIPLES: dict[str, tuple[str, ...]] = {
    "together": ("{a}, {b} and {c} all at once", "{a} and {b} while you {c}", "{a} and {b} as you {c}",
                 "{a}, {b} and {c} at the same time", "{a} and {b}, all while you {c}"),
    "sequence": ("first {a}, then {b}, and finally {c}", "{a}, then {b}, then {c}",
                 "{a}, after that {b}, and then {c}", "{a}, next {b}, and last {c}",
                 "to begin, {a}; afterwards {b}; to finish, {c}"),
    "either": ("{a}, {b}, and {c}", "{a}, {b} and {c}", "{a}, {b}, and also {c}", "{a} and {b}, and {c} too",
               "{a}, {b}, and additionally {c}"),
}
TIMINGS: tuple[str, ...] = ("together", "sequence", "either")

# Emotion clause {e} + motion clause {m}.
COMBINED_PATTERNS: tuple[str, ...] = (
    "{e}, and {m}",
    "{e} and {m}",
    "{m}, and {e}",
    "{e}; meanwhile, {m}",
    "{e}. Also, {m}",
    "{m} and {e}",
    "{e}, and also {m}",
    "{m}; also {e}",
    "{e}. At some point, {m}",
    "{e}, and at one moment {m}",
)

# Canonical (demo) phrasings: all are train-split items.
_CANONICAL_ADVERB = {1: "slightly", 2: "moderately", 3: "very"}


# ------------------------------------------------------------------------------------------------ split
def _split(items: Sequence[str], split: str) -> tuple[str, ...]:
    if split == "train":
        return tuple(x for i, x in enumerate(items) if i % 5 != 4)
    if split == "heldout":
        return tuple(x for i, x in enumerate(items) if i % 5 == 4)
    raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")


def all_phrasings(split: str) -> dict:
    """Every list item of one split, by list: templates, synonyms, intensity words, phrasings, joiners."""
    return {
        "templates": {k: _split(v, split) for k, v in TEMPLATES.items()},
        "synonyms": {e: {k: _split(v, split) for k, v in kinds.items()} for e, kinds in SYNONYMS.items()},
        "intensity_adverbs": {lvl: _split(v, split) for lvl, v in INTENSITY_ADVERBS.items()},
        "intensity_noun_mods": {lvl: _split(v, split) for lvl, v in INTENSITY_NOUN_MODS.items()},
        "neutral": _split(NEUTRAL_PHRASES, split),
        "motions": {m: _split(v, split) for m, v in MOTION_PHRASES.items()},
        "motion_joiners": {k: _split(v, split) for k, v in MOTION_JOINERS.items()},
        "motion_triples": {k: _split(v, split) for k, v in MOTION_TRIPLES.items()},
        "combined_patterns": _split(COMBINED_PATTERNS, split),
    }


# ---------------------------------------------------------------------------------------------- builder
def _pick(rng: np.random.Generator, items: Sequence[str]) -> str:
    return items[int(rng.integers(len(items)))]


_ARTICLE = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])")


def _finish(text: str) -> str:
    text = _ARTICLE.sub(lambda m: m.group(1) + "n ", text)
    text = re.sub(r"\s+", " ", text).strip()
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _check_emotion(emotion: str, intensity: int) -> None:
    if emotion not in EMOTIONS:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {EMOTIONS}")
    if intensity not in INTENSITIES:
        raise ValueError(f"intensity must be one of {INTENSITIES}, not {intensity!r}")


def _emotion_clause(emotion: str, intensity: int, rng: np.random.Generator, split: str) -> str:
    _check_emotion(emotion, intensity)
    if emotion == "neutral":
        return _pick(rng, _split(NEUTRAL_PHRASES, split))
    kind = _pick(rng, tuple(TEMPLATES))
    template = _pick(rng, _split(TEMPLATES[kind], split))
    word = _pick(rng, _split(SYNONYMS[emotion][kind], split))
    if kind == "noun":
        return template.format(nint=_pick(rng, _split(INTENSITY_NOUN_MODS[intensity], split)), noun=word)
    degree = _pick(rng, _split(INTENSITY_ADVERBS[intensity], split))
    return template.format(int=degree, **{kind: word})


def _motion_clause(motions: Sequence[str], rng: np.random.Generator, split: str, timing: str | None) -> str:
    motions = [motions] if isinstance(motions, str) else list(motions)
    if not 1 <= len(motions) <= 3:
        raise ValueError(f"need 1 to 3 motions, got {len(motions)}")
    for m in motions:
        if m not in MOTION_PHRASES:
            raise ValueError(f"unknown motion {m!r}; expected one of {MOTIONS}")
    if timing is not None and timing not in TIMINGS:
        raise ValueError(f"timing must be one of {TIMINGS} or None, not {timing!r}")
    phrases = [_pick(rng, _split(MOTION_PHRASES[m], split)) for m in motions]
    if len(phrases) == 1:
        return phrases[0]
    kind = timing if timing is not None else _pick(rng, TIMINGS)
    if len(phrases) == 2:
        return phrases[0] + _pick(rng, _split(MOTION_JOINERS[kind], split)) + phrases[1]
    return _pick(rng, _split(MOTION_TRIPLES[kind], split)).format(a=phrases[0], b=phrases[1], c=phrases[2])


def emotion_instruction(emotion: str, intensity: int, rng: np.random.Generator, split: str = "train") -> str:
    """A random emotion instruction ("Look slightly angry while talking.") from ``split``'s phrasings.

    ``intensity`` is 1 (slight), 2 (moderate) or 3 (extreme); it is validated but not expressed for
    ``"neutral"``.
    """
    return _finish(_emotion_clause(emotion, intensity, rng, split))


def motion_instruction(motions: Sequence[str], rng: np.random.Generator, split: str = "train",
                       timing: str | None = None) -> str:
    """A random instruction for one to three motions, in the given order ("Nod, then look up.").

    ``timing``: ``"together"`` (joiners say the motions overlap: "while you", "at the same time"),
    ``"sequence"`` (one after another: "then", "after that"), ``"either"`` (plain "and") or ``None``
    (any of the three, drawn at random) -- pass it when the clip's motions are timed one way.
    """
    return _finish(_motion_clause(motions, rng, split, timing))


def combined_instruction(emotion: str, intensity: int, motions: Sequence[str], rng: np.random.Generator,
                         split: str = "train", timing: str | None = None) -> str:
    """An emotion clause and a motion clause in one instruction ("Talk very sadly, and tilt your head...")."""
    e = _emotion_clause(emotion, intensity, rng, split)
    m = _motion_clause(motions, rng, split, timing)
    return _finish(_pick(rng, _split(COMBINED_PATTERNS, split)).format(e=e, m=m))


def canonical_instruction(emotion: str | None = None, intensity: int | None = None,
                          motions: Sequence[str] = ()) -> str:
    """One fixed, plain phrasing from the train split (for the demo), e.g. "Talk slightly happily.".

    Emotion only: "Talk {slightly|moderately|very} {manner}." (neutral: "Talk calmly."); motions only: the
    first phrasing of each motion joined by " and " / ", "; both: "{emotion clause}, and {motions}.".
    No emotion and no motions gives "" (the unconditioned instruction).
    """
    motions = [motions] if isinstance(motions, str) else list(motions)
    parts = []
    if emotion is not None:
        intensity = 2 if intensity is None else intensity
        _check_emotion(emotion, intensity)
        if emotion == "neutral":
            parts.append(NEUTRAL_PHRASES[0])
        else:
            parts.append(f"talk {_CANONICAL_ADVERB[intensity]} {SYNONYMS[emotion]['manner'][0]}")
    if motions:
        for m in motions:
            if m not in MOTION_PHRASES:
                raise ValueError(f"unknown motion {m!r}; expected one of {MOTIONS}")
        phrases = [MOTION_PHRASES[m][0] for m in motions]
        parts.append(phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1])
    if not parts:
        return ""
    return _finish(", and ".join(parts))
