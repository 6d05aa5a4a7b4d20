"""Affect facts beyond the basic emotions: FACS intensity letters, valence/arousal anchors, compound emotions.

One source of truth, like :mod:`facial_r1.facs`: the schema, SynthFACS, the dataset sources, the parser, the rewards
and the metrics read these.

* **Intensity**: FACS codes an active AU at A (trace) < B (slight) < C (marked) < D (severe) < E (maximum), stored
  as levels 1..5. DISFA's 0-5 uses the same steps with 0 = absent.
* **Valence / arousal** lie in [-1, 1] (AffectNet's convention). :data:`VA_ANCHORS` places each Facial-R1 emotion
  on Russell's circumplex (approximate positions chosen for this project from the circumplex layout, not measured
  values); SynthFACS scales them by expression strength (:func:`expression_va`).
* **Compound emotions**: the 11 classes of RAF-DB's compound subset, in its published 1-indexed label order
  (RAF-DB documentation: 1 Happily Surprised, 2 Happily Disgusted, 3 Sadly Fearful, 4 Sadly Angry, 5 Sadly
  Surprised, 6 Sadly Disgusted, 7 Fearfully Angry, 8 Fearfully Surprised, 9 Angrily Surprised, 10 Angrily
  Disgusted, 11 Disgustedly Surprised). Each is "<adverb> <adjective>", two basic emotions; the unordered pair
  identifies the class (no two classes share a pair).
"""

from __future__ import annotations

import re
import string

from facial_r1.facs import normalize_emotion

INTENSITY_LETTERS = "ABCDE"  # level k (1..5) is INTENSITY_LETTERS[k - 1]
MAX_INTENSITY = 5

# (valence, arousal) of each emotion at full expression strength. Neutral is the origin.
VA_ANCHORS: dict[str, tuple[float, float]] = {
    "happiness": (0.8, 0.4),
    "surprise": (0.2, 0.8),
    "fear": (-0.5, 0.8),
    "anger": (-0.7, 0.6),
    "disgust": (-0.7, 0.3),
    "contempt": (-0.5, 0.1),
    "sadness": (-0.7, -0.4),
    "neutral": (0.0, 0.0),
}

# RAF-DB compound subset, index i -> label i + 1 on disk.
COMPOUND_EMOTIONS: tuple[str, ...] = (
    "happily surprised",
    "happily disgusted",
    "sadly fearful",
    "sadly angry",
    "sadly surprised",
    "sadly disgusted",
    "fearfully angry",
    "fearfully surprised",
    "angrily surprised",
    "angrily disgusted",
    "disgustedly surprised",
)

# The adverb of a compound name -> its basic emotion ("surprisedly" never occurs in RAF-DB but reads the same way).
_ADVERBS = {
    "happily": "happiness",
    "sadly": "sadness",
    "fearfully": "fear",
    "angrily": "anger",
    "disgustedly": "disgust",
    "surprisedly": "surprise",
}


def compound_components(name: str) -> tuple[str, str]:
    """``"sadly angry"`` -> ``("sadness", "anger")``: (modifier, main) emotion of a canonical compound name."""
    adverb, adjective = name.split()
    return _ADVERBS[adverb], normalize_emotion(adjective) or adjective


COMPOUND_BY_PAIR: dict[frozenset[str], str] = {
    frozenset(compound_components(c)): c for c in COMPOUND_EMOTIONS
}

_PUNCT_TO_SPACE = str.maketrans({c: " " for c in string.punctuation})
_PAIR_SPLIT = re.compile(r"\s*(?:\band\b|\bwith\b|[+&/,;])\s*")


def answer_components(answer: str | None) -> frozenset[str]:
    """The basic emotions an answer names, read as one label: a compound ("Happily-Surprised", "surprisedly
    happy"), a pair ("happiness and surprise", "fear + anger") or one basic word ("happy"). Empty when the answer
    is none of these (free text, three emotions, a word that is no emotion)."""
    if not answer:
        return frozenset()
    text = " ".join(answer.lower().split())
    words = text.translate(_PUNCT_TO_SPACE).split()
    if len(words) == 2 and words[0] in _ADVERBS:
        main = normalize_emotion(words[1])
        if main is not None and main != _ADVERBS[words[0]]:
            return frozenset((_ADVERBS[words[0]], main))
        return frozenset()
    parts = [p for p in _PAIR_SPLIT.split(text) if p.strip()]
    if 1 <= len(parts) <= 2:
        labels = [normalize_emotion(p) for p in parts]
        if None not in labels and len(set(labels)) == len(labels):
            return frozenset(labels)
    return frozenset()


def normalize_compound(answer: str | None) -> str | None:
    """The canonical compound name an answer states (see :func:`answer_components`), or None if it names no
    compound class (a single emotion, a pair outside the 11 classes, free text)."""
    components = answer_components(answer)
    return COMPOUND_BY_PAIR.get(components) if len(components) == 2 else None


def expression_va(emotions: tuple[str, ...] | list[str], levels: list[int]) -> tuple[float, float]:
    """Valence/arousal of an expression before noise: the mean anchor of ``emotions`` scaled by strength.

    Strength is the mean FACS level of the expression's AUs divided by 5 (a face at E everywhere is at its anchor; a
    face with no AU active is at the origin, whatever the emotion). Documented, deterministic mapping used by
    SynthFACS.
    """
    if not emotions:
        raise ValueError("expression_va needs at least one emotion")
    strength = sum(levels) / (MAX_INTENSITY * len(levels)) if levels else 0.0
    v = sum(VA_ANCHORS[e][0] for e in emotions) / len(emotions)
    a = sum(VA_ANCHORS[e][1] for e in emotions) / len(emotions)
    return strength * v, strength * a
