"""FACS facts the whole project shares: Action Units, emotion words, prototypes, benchmark subsets, label orders.

One source of truth: prompts, the renderer, dataset adapters, rewards and evaluation all read from here.
Sources: Ekman & Friesen's FACS manual and EMFACS, Du et al. 2014 (compound facial expressions, PNAS), and each
dataset's own label documentation (the orders below).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass


@dataclass(frozen=True)
class ActionUnit:
    number: int
    name: str  # FACS name, lowercase ("inner brow raiser")
    appearance: str  # what a coder sees, phrased as an observation ("the inner brows are raised")

    @property
    def code(self) -> str:
        return f"AU{self.number}"


# The 30 AUs of the Facial-R1 prompt plus AU11/13/21 are not needed; this is the prompt's list (1 2 4 5 6 7 9-20
# 22-32 43). `appearance` is written as a short visible change so a teacher can cite it with the number.
ACTION_UNITS: dict[int, ActionUnit] = {
    au.number: au
    for au in [
        ActionUnit(1, "inner brow raiser", "the inner corners of the eyebrows are raised"),
        ActionUnit(2, "outer brow raiser", "the outer parts of the eyebrows are raised"),
        ActionUnit(4, "brow lowerer", "the eyebrows are lowered and drawn together"),
        ActionUnit(5, "upper lid raiser", "the upper eyelids are raised, widening the eyes"),
        ActionUnit(6, "cheek raiser", "the cheeks are raised, pushing up the lower eyelids"),
        ActionUnit(7, "lid tightener", "the eyelids are tightened, narrowing the eyes"),
        ActionUnit(9, "nose wrinkler", "the nose is wrinkled"),
        ActionUnit(10, "upper lip raiser", "the upper lip is raised"),
        ActionUnit(11, "nasolabial deepener", "the nasolabial furrows are deepened"),
        ActionUnit(12, "lip corner puller", "the lip corners are pulled up and outward"),
        ActionUnit(13, "sharp lip puller", "the lip corners are pulled up sharply"),
        ActionUnit(14, "dimpler", "the lip corners are tightened into dimples"),
        ActionUnit(15, "lip corner depressor", "the lip corners are pulled down"),
        ActionUnit(16, "lower lip depressor", "the lower lip is pulled down"),
        ActionUnit(17, "chin raiser", "the chin is pushed up"),
        ActionUnit(18, "lip pucker", "the lips are puckered"),
        ActionUnit(19, "tongue show", "the tongue is shown"),
        ActionUnit(20, "lip stretcher", "the lips are stretched sideways"),
        ActionUnit(22, "lip funneler", "the lips are funneled outward"),
        ActionUnit(23, "lip tightener", "the lips are tightened and narrowed"),
        ActionUnit(24, "lip pressor", "the lips are pressed together"),
        ActionUnit(25, "lips part", "the lips are parted"),
        ActionUnit(26, "jaw drop", "the jaw is dropped"),
        ActionUnit(27, "mouth stretch", "the mouth is stretched wide open"),
        ActionUnit(28, "lip suck", "the lips are sucked in"),
        ActionUnit(29, "jaw thrust", "the jaw is thrust forward"),
        ActionUnit(30, "jaw sideways", "the jaw is shifted sideways"),
        ActionUnit(31, "jaw clencher", "the jaw is clenched"),
        ActionUnit(32, "lip bite", "the lip is bitten"),
        ActionUnit(43, "eyes closed", "the eyes are closed"),
    ]
}

# Benchmark AU vocabularies (what a dataset annotates) and the subsets F1 is usually reported on.
AU_VOCAB: dict[str, tuple[int, ...]] = {
    "facial_r1": (
        1,
        2,
        4,
        5,
        6,
        7,
        9,
        10,
        11,
        12,
        13,
        14,
        15,
        16,
        17,
        18,
        19,
        20,
        22,
        23,
        24,
        25,
        26,
        27,
        28,
        29,
        30,
        31,
        32,
        43,
    ),
    "faba": (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 16, 17, 20, 23, 24, 25, 26, 27, 43),
    "disfa": (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26),
    "bp4d": (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24),
    "raf_au": (
        1,
        2,
        4,
        5,
        6,
        7,
        9,
        10,
        12,
        14,
        15,
        16,
        17,
        18,
        19,
        20,
        22,
        23,
        24,
        25,
        26,
        27,
        28,
        29,
        30,
        32,
        43,
    ),
}
AU_EVAL_SUBSET: dict[str, tuple[int, ...]] = {
    "disfa8": (1, 2, 4, 6, 9, 12, 25, 26),
    "disfa12": AU_VOCAB["disfa"],
    "bp4d12": (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24),
    "faba12": (1, 2, 4, 5, 6, 10, 12, 17, 24, 25, 26, 43),
}

# Facial-R1's label words: lowercase nouns.
EMOTIONS: tuple[str, ...] = (
    "anger",
    "contempt",
    "disgust",
    "fear",
    "happiness",
    "neutral",
    "sadness",
    "surprise",
)
BASIC7: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")

# Label index orders of the public datasets, as each dataset documents them. Index -> word.
LABEL_ORDERS: dict[str, tuple[str, ...]] = {
    # RAF-DB basic is 1-indexed on disk: label 1 -> surprise.
    "rafdb": ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"),
    "affectnet": ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt"),
    "fer2013": ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"),
    "faba": ("happiness", "sadness", "surprise", "anger", "neutral", "disgust", "fear"),
    "raf_au": ("anger", "disgust", "fear", "happiness", "sadness", "surprise"),
}

# Canonical prototype per class (documented choice: the FACS "most intense" table where it exists, EMFACS for
# anger/disgust/contempt). Contempt is one-sided: R12 + R14 (right side), coded here as AU12 + AU14 with side "R".
EMOTION_PROTOTYPES: dict[str, tuple[int, ...]] = {
    "happiness": (6, 12, 25),
    "sadness": (1, 4, 15),
    "surprise": (1, 2, 5, 26),  # 26 implies 25 (coupling applied by the renderer and label generator)
    "fear": (1, 2, 4, 5, 20, 25),
    "anger": (4, 5, 7, 23),
    "disgust": (9, 10, 17),
    "contempt": (12, 14),  # unilateral
    "neutral": (),
}

# Synonyms a model (or a dataset) may use for each word. Matching is on the whole normalised answer, never on
# substrings: "unhappy" is not "happy".
EMOTION_SYNONYMS: dict[str, tuple[str, ...]] = {
    "anger": ("anger", "angry", "mad", "irate", "annoyed", "furious", "rage"),
    "contempt": ("contempt", "contemptuous", "disdain", "scorn"),
    "disgust": ("disgust", "disgusted", "disgusting", "revulsion"),
    "fear": ("fear", "afraid", "scared", "fearful", "frightened", "terrified"),
    "happiness": ("happiness", "happy", "joy", "joyful", "smiling", "smile", "pleased", "delighted"),
    "neutral": ("neutral", "neutrality", "calm", "expressionless"),
    "sadness": ("sadness", "sad", "unhappy", "sorrow", "sorrowful", "grief"),
    "surprise": ("surprise", "surprised", "astonished", "amazed", "astonishment"),
}
_SYNONYM_TO_LABEL = {syn: label for label, syns in EMOTION_SYNONYMS.items() for syn in syns}
_PUNCT = str.maketrans("", "", string.punctuation)

_AU_TOKEN = re.compile(r"^\s*au\s*0*(\d{1,3})\s*$", re.IGNORECASE)
_AU_NUMBER = re.compile(r"^\s*0*(\d{1,3})\s*$")


def normalize_emotion(word: str, label_set: tuple[str, ...] | list[str] | None = None) -> str | None:
    """Map a label word to Facial-R1's lowercase noun, or None if it is not one.

    Case, surrounding whitespace and punctuation are ignored; synonyms map to their class ("Happy." -> "happiness").
    With ``label_set`` the result must also lie in that closed set. The whole string must be one label: multi-word
    or multi-label strings return None (no substring matching).
    """
    key = " ".join(word.translate(_PUNCT).lower().split())
    label = _SYNONYM_TO_LABEL.get(key)
    if label is None or (label_set is not None and label not in label_set):
        return None
    return label


def normalize_au(token: str | int) -> str | None:
    """Canonical ``AU<n>`` for "AU06", "au 6", "6" or 6; None for anything else or an unknown AU number."""
    if isinstance(token, int):
        number = token
    else:
        match = _AU_TOKEN.match(token) or _AU_NUMBER.match(token)
        if match is None:
            return None
        number = int(match.group(1))
    return f"AU{number}" if number in ACTION_UNITS else None


def au_number(code: str) -> int:
    """``"AU12"`` -> 12 (input must be canonical)."""
    return int(code[2:])


def sort_aus(codes) -> list[str]:
    """Canonical AU codes, deduplicated, in numeric order."""
    return sorted(set(codes), key=au_number)


def au_codes(numbers) -> list[str]:
    return [f"AU{n}" for n in numbers]
