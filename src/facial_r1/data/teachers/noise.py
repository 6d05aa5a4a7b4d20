"""An imperfect teacher on purpose: omitted, hallucinated AUs and wrong emotions at set rates.

The paper's SFT data came from GPT-4o-mini, whose AU F1 is ~50-60% (the paper's tables); a clean template teacher is
far better than that. :class:`TeacherNoise` lets experiments reproduce a teacher of a chosen quality. Every draw comes
from :func:`stable_rng` keyed by (seed, record id), so the same record always gets the same noise.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

from facial_r1.data.prompts import defined_aus, offered_labels
from facial_r1.facs import sort_aus


def stable_rng(seed: int, *keys: object) -> random.Random:
    """A ``random.Random`` seeded from (seed, keys) through SHA-256: stable across processes (unlike ``hash``)."""
    digest = hashlib.sha256(repr((seed, *keys)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass(frozen=True)
class TeacherNoise:
    """Rates of teacher mistakes, all off by default.

    - ``omit_au_rate``: each gold AU is left out of the reasoning with this probability (per AU).
    - ``hallucinate_au_rate``: with this probability (per sample) one AU the face does not show is added, drawn from
      the record's AU vocabulary (the prompt's 30 AUs when it has none).
    - ``wrong_emotion_rate``: with this probability (per sample) the conclusion and answer name another word from the
      record's offered labels (see ``prompts.offered_labels``).
    """

    omit_au_rate: float = 0.0
    hallucinate_au_rate: float = 0.0
    wrong_emotion_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("omit_au_rate", "hallucinate_au_rate", "wrong_emotion_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"TeacherNoise.{name} must lie in [0, 1], got {getattr(self, name)}")

    @property
    def active(self) -> bool:
        return bool(self.omit_au_rate or self.hallucinate_au_rate or self.wrong_emotion_rate)

    def apply(
        self, aus: list[str], emotion: str, record: dict[str, Any], rng: random.Random
    ) -> tuple[list[str], str, dict[str, Any]]:
        """Corrupt (aus, emotion) for ``record``; returns the noisy pair and ``{"omitted", "hallucinated",
        "wrong_emotion"}`` (lists of AU codes, and the replaced emotion or None)."""
        kept = [au for au in aus if rng.random() >= self.omit_au_rate]
        omitted = [au for au in aus if au not in kept]
        hallucinated: list[str] = []
        if rng.random() < self.hallucinate_au_rate:
            pool = [f"AU{n}" for n in defined_aus(record) if f"AU{n}" not in aus]
            if pool:
                hallucinated.append(rng.choice(pool))
        wrong = None
        if rng.random() < self.wrong_emotion_rate:
            pool = [label for label in offered_labels(record) if label != emotion]
            if pool:
                wrong = rng.choice(pool)
        info = {"omitted": omitted, "hallucinated": hallucinated, "wrong_emotion": wrong}
        return sort_aus(kept + hallucinated), wrong or emotion, info
