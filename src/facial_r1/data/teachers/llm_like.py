"""An LLM-like teacher: systematic mistakes, as a zero-shot GPT-4o-class model makes them on faces.

:class:`~facial_r1.data.teachers.noise.TeacherNoise` draws random mistakes, which average out over thousands of
samples. The paper's teacher (GPT-4o-mini) errs the same way on the same kind of face: GPT-4o itself reaches 62.7 %
emotion accuracy on RAF-DB, 48.9 % on AffectNet and 47-60 AU F1 zero-shot (the paper's tables), and its errors
follow the literature's confusion pairs. :class:`LLMLikeNoise` models these rules, each drawn from
:func:`~facial_r1.data.teachers.noise.stable_rng` keyed by (seed, record id), so a record always gets the same text:

1. **A confusion matrix** (``confusions``: gold emotion -> {believed emotion: probability}). The defaults hold the
   pairs such models are known to confuse: fear -> surprise, surprise -> fear, disgust -> anger, contempt ->
   neutral, sadness -> neutral, anger -> disgust, neutral -> sadness / contempt; happiness is nearly always right.
   A believed emotion outside the record's offered labels is not used (its mass stays on the gold label). Records
   without an emotion label get the prototype-matching emotion of their AUs first (as the template teacher), then
   the same confusions.
2. **AUs invented to fit the belief**: the believed emotion's signature AUs (``signature_aus``, e.g. AU12 whenever
   it says happiness) are always cited, and each other prototype AU of that emotion
   (:data:`facial_r1.facs.EMOTION_PROTOTYPES`) with ``invent_au_rate``.
3. **Subtle AUs omitted, look-alikes misread**: a gold AU at FACS intensity ``subtle_max_level`` or lower (A = 1 ...
   C = 3: trace, slight, marked; from the record's ``AU_intensity``) is left out with ``omit_subtle_rate``, any other
   gold AU with ``omit_au_rate``; a gold AU that is kept is cited as a neighbouring look-alike (``au_confusions``:
   AU6 <-> AU7, AU23 <-> AU24, AU25 <-> AU26, ...) with the probability its row gives.

With the defaults (``conf/teacher/llm_like.yaml``) the teacher scores ~0.61 emotion accuracy and ~0.57 AU micro-F1
against the gold labels of SynthFACS's first 1,000 training faces (``tests/test_teachers.py`` checks both ranges and
that the confusion rows reproduce their rates).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from facial_r1.data.prompts import defined_aus, offered_labels
from facial_r1.facs import EMOTION_PROTOTYPES, au_codes, sort_aus

DEFAULT_CONFUSIONS: dict[str, dict[str, float]] = {
    "fear": {"surprise": 0.5},
    "surprise": {"fear": 0.3},
    "disgust": {"anger": 0.5},
    "contempt": {"neutral": 0.6},
    "sadness": {"neutral": 0.5},
    "anger": {"disgust": 0.4},
    "neutral": {"sadness": 0.2, "contempt": 0.1},
    "happiness": {"surprise": 0.1},
}
# Look-alike AUs read for one another (neighbouring muscles, same region): gold AU -> {AU cited instead: probability}.
DEFAULT_AU_CONFUSIONS: dict[str, dict[str, float]] = {
    "AU1": {"AU2": 0.6},
    "AU2": {"AU1": 0.6},
    "AU5": {"AU7": 0.4},
    "AU6": {"AU7": 0.8},
    "AU7": {"AU6": 0.8},
    "AU9": {"AU10": 0.6},
    "AU10": {"AU9": 0.8},
    "AU12": {"AU14": 0.4},
    "AU14": {"AU12": 0.8},
    "AU15": {"AU17": 0.6},
    "AU17": {"AU15": 0.6},
    "AU20": {"AU12": 0.6},
    "AU23": {"AU24": 0.9},
    "AU24": {"AU23": 0.9},
    "AU25": {"AU26": 0.6},
    "AU26": {"AU25": 0.6},
}
# What such a model cites whenever it names the emotion (the most recognisable AU(s) of each prototype).
DEFAULT_SIGNATURE_AUS: dict[str, list[str]] = {
    "happiness": ["AU12"],
    "sadness": ["AU15"],
    "surprise": ["AU1", "AU2"],
    "fear": ["AU20"],
    "anger": ["AU4"],
    "disgust": ["AU9"],
    "contempt": ["AU14"],
}


@dataclass(frozen=True)
class LLMLikeNoise:
    """Systematic teacher mistakes (module docstring); same interface as ``TeacherNoise`` (``active``, ``apply``)."""

    confusions: Mapping[str, Mapping[str, float]] = field(default_factory=lambda: DEFAULT_CONFUSIONS)
    signature_aus: Mapping[str, list[str]] = field(default_factory=lambda: DEFAULT_SIGNATURE_AUS)
    au_confusions: Mapping[str, Mapping[str, float]] = field(default_factory=lambda: DEFAULT_AU_CONFUSIONS)
    invent_au_rate: float = 0.3
    omit_subtle_rate: float = 0.9
    subtle_max_level: int = 3
    omit_au_rate: float = 0.35

    def __post_init__(self) -> None:
        for name in ("invent_au_rate", "omit_subtle_rate", "omit_au_rate"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"LLMLikeNoise.{name} must lie in [0, 1], got {getattr(self, name)}")
        if not 0 <= int(self.subtle_max_level) <= 5:
            raise ValueError(f"LLMLikeNoise.subtle_max_level must lie in 0..5, got {self.subtle_max_level}")
        for name in ("confusions", "au_confusions"):
            for gold, row in getattr(self, name).items():
                bad = {k: v for k, v in row.items() if not 0.0 <= float(v) <= 1.0}
                if bad or sum(float(v) for v in row.values()) > 1.0 + 1e-9:
                    raise ValueError(
                        f"LLMLikeNoise.{name}[{gold!r}] = {dict(row)}: probabilities in [0, 1] summing to <= 1"
                    )

    @property
    def active(self) -> bool:
        return True

    def believed_emotion(self, emotion: str, record: dict[str, Any], rng: random.Random) -> str:
        """``emotion`` after one draw from its confusion row (labels the record does not offer are skipped)."""
        believed = _draw(self.confusions.get(emotion), rng)
        return believed if believed is not None and believed in set(offered_labels(record)) else emotion

    def apply(
        self, aus: list[str], emotion: str, record: dict[str, Any], rng: random.Random
    ) -> tuple[list[str], str, dict[str, Any]]:
        """(the AUs cited, the emotion concluded, what was done): ``omitted`` / ``hallucinated`` AU codes and
        ``wrong_emotion`` (the believed emotion when it differs from ``emotion``, else None)."""
        believed = self.believed_emotion(emotion, record, rng)
        levels = record.get("AU_intensity") or {}
        vocabulary = set(au_codes(defined_aus(record)))  # what the record's prompt may cite
        kept = []
        for au in aus:
            level = levels.get(au)
            subtle = level is not None and int(level) <= int(self.subtle_max_level)
            if rng.random() < (self.omit_subtle_rate if subtle else self.omit_au_rate):
                continue
            misread = _draw(self.au_confusions.get(au), rng)
            kept.append(misread if misread is not None and misread in vocabulary else au)
        kept = list(dict.fromkeys(kept))
        invented = [au for au in self.signature_aus.get(believed, []) if au not in kept]
        for au in au_codes(EMOTION_PROTOTYPES.get(believed, ())):
            if au not in kept and au not in invented and rng.random() < self.invent_au_rate:
                invented.append(au)
        info = {
            "omitted": [au for au in aus if au not in kept],
            "hallucinated": [au for au in invented if au not in aus],
            "wrong_emotion": believed if believed != emotion else None,
        }
        return sort_aus(kept + invented), believed, info


def _draw(row: Mapping[str, float] | None, rng: random.Random) -> str | None:
    """One draw from a row of probabilities (the remainder: None, i.e. no change)."""
    draw, cumulative = rng.random(), 0.0
    for outcome, p in (row or {}).items():
        cumulative += float(p)
        if draw < cumulative:
            return outcome
    return None
