"""The reward-component contract and small helpers shared by all components.

A component scores a batch: ``component(completions, samples) -> list[float | None]``, one value per completion,
``None`` where the signal does not apply to that sample (no gold AUs for an AU reward, no gold label for an
accuracy reward). Values are unweighted and lie in ``[low, high]``; ``weight`` is applied by
:class:`~facial_r1.rewards.composite.CompositeReward`. ``samples`` are records of :mod:`facial_r1.data.schema`
(``AUs``, ``labels``, ``label_set``, ``au_vocab``), aligned with ``completions`` (the GRPO loop repeats each
prompt's sample for its G completions).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from facial_r1.facs import normalize_au, normalize_emotion, sort_aus

Sample = Mapping[str, Any]


class RewardComponent:
    """Base class: subclasses set ``name``, ``low``, ``high`` and implement :meth:`score`."""

    name: str = "reward"
    low: float = 0.0
    high: float = 1.0

    def __init__(self, weight: float = 1.0):
        self.weight = float(weight)

    def score(self, completion: str, sample: Sample) -> float | None:
        """The reward of one completion for one sample, or None when it does not apply."""
        raise NotImplementedError

    def __call__(self, completions: Sequence[str], samples: Sequence[Sample]) -> list[float | None]:
        if len(completions) != len(samples):
            raise ValueError(f"{self.name}: {len(completions)} completions but {len(samples)} samples")
        return [
            self.score(c if isinstance(c, str) else "", s) for c, s in zip(completions, samples, strict=True)
        ]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weight={self.weight})"


def label_set_of(sample: Sample) -> tuple[str, ...] | None:
    """The sample's closed label set, or None (= every Facial-R1 emotion word) when it has none."""
    labels = sample.get("label_set")
    return tuple(labels) if labels else None


def gold_aus(sample: Sample) -> list[str] | None:
    """Canonical gold AU codes, ``[]`` when annotated but none active, None when the sample has no AU annotation.

    Codes that are not FACS AUs ("AU3") are dropped: a prediction could never be credited for them.
    """
    aus = sample.get("AUs")
    if aus is None:
        return None
    return sort_aus(code for code in map(_canonical_au, aus) if code is not None)


def gold_label(sample: Sample) -> str | None:
    """The first gold emotion label normalised to a Facial-R1 word, or None when the sample has no label."""
    labels = sample.get("labels") or []
    if not labels:
        return None
    first = str(labels[0])
    return normalize_emotion(first) or first.strip().lower()


def au_vocab_of(sample: Sample) -> set[str] | None:
    """The AUs the sample's dataset codes, or None when unknown."""
    vocab = sample.get("au_vocab")
    if not vocab:
        return None
    return {code for code in map(_canonical_au, vocab) if code is not None}


def masked_aus(sample: Sample, codes: Iterable[str]) -> set[str]:
    """The AUs among ``codes`` whose state ``sample`` does not record: unknown, never absent.

    An AU is unrecorded when the sample's ``meta_info["unknown_aus"]`` lists it (BP4D's code 9, "not coded for
    this frame") or when the sample's dataset has an AU vocabulary (``au_vocab``) that does not contain it. Such
    AUs are left out of AU scores for that sample - neither a hit nor a false positive - because counting them as
    absent would charge a model for naming an AU that may well be there.
    """
    meta = sample.get("meta_info")
    unknown = meta.get("unknown_aus") if isinstance(meta, Mapping) else None
    unknown_codes = {code for code in map(_canonical_au, unknown or ()) if code is not None}
    vocab = au_vocab_of(sample)
    return {code for code in codes if code in unknown_codes or (vocab is not None and code not in vocab)}


def _canonical_au(token: object) -> str | None:
    # bool is an int in Python: True would read as AU1
    return normalize_au(token) if isinstance(token, (str, int)) and not isinstance(token, bool) else None


def f_beta(predicted: set[str], gold: set[str], beta: float = 1.0) -> float:
    """Set F-beta; 0 when either set is empty (the caller decides what two empty sets score)."""
    hits = len(predicted & gold)
    if hits == 0:
        return 0.0
    precision, recall = hits / len(predicted), hits / len(gold)
    b2 = beta * beta
    return (1 + b2) * precision * recall / (b2 * precision + recall)
