"""Affect rewards beyond the paper: AU intensity, valence/arousal, compound emotion accuracy.

Each reads completions through :func:`facial_r1.parsing.parse` (the parser the metrics use) and returns None where
the sample carries no such annotation (``data/schema.py``: ``AU_intensity``, ``valence``/``arousal``,
``compound``), like :class:`~facial_r1.rewards.AUF1Reward` does for samples without AUs. Values lie in [0, 1].
"""

from __future__ import annotations

from facial_r1.affect import MAX_INTENSITY, compound_components
from facial_r1.parsing import parse
from facial_r1.rewards.base import RewardComponent, Sample, gold_aus, label_set_of

_MAX_LEVEL_ERROR = MAX_INTENSITY - 1  # levels 1..5: the largest error between two stated levels
_MAX_VA_ERROR = 4.0  # |dv| + |da|, each at most 2 on [-1, 1]


def gold_intensities(sample: Sample) -> dict[str, int] | None:
    """The levels the intensity reward checks: ``AU_intensity`` restricted to the gold ``AUs`` when the sample
    has them (so that an AU below the dataset's occurrence threshold - DISFA level 1 - is not asked for, in line with
    the AU F1 reward), all of ``AU_intensity`` otherwise; None without intensity coding."""
    coded = sample.get("AU_intensity")
    if coded is None:
        return None
    aus = gold_aus(sample)
    return {au: int(level) for au, level in coded.items() if aus is None or au in aus}


def gold_va(sample: Sample) -> tuple[float, float] | None:
    """(valence, arousal) of the sample, or None when it has none."""
    v, a = sample.get("valence"), sample.get("arousal")
    return None if v is None or a is None else (float(v), float(a))


class AUIntensityReward(RewardComponent):
    """1 - mean normalised intensity error over the gold AUs, in [0, 1].

    Per gold AU with level g: ``1 - |p - g| / 4`` when the reasoning states level p for it ("(AU12, D)"), 0 when it
    names the AU without a level, with a malformed or out-of-range level, or not at all. The reward is the mean over
    the gold AUs. False positives are the AU F1 reward's business; ``count_extra=True`` also adds a 0 term for each
    non-gold AU the reasoning gives a level to, so naming every AU cannot pay here either. A sample coded with no
    active AU scores 1 when no level is stated and 0 otherwise. None without intensity coding.

    Args:
        weight: weight in the composite total.
        count_extra: count levelled non-gold AUs as 0 terms.
        drop_negated, map_au_names, scope: parser options, as :class:`~facial_r1.rewards.AUF1Reward`.
    """

    name = "au_intensity"

    def __init__(
        self,
        weight: float = 1.0,
        count_extra: bool = False,
        drop_negated: bool = True,
        map_au_names: bool = True,
        scope: str = "think",
    ):
        super().__init__(weight)
        if scope not in ("think", "completion"):
            raise ValueError(f"scope must be 'think' or 'completion', got {scope!r}")
        self.count_extra, self.drop_negated, self.map_au_names, self.scope = (
            bool(count_extra),
            drop_negated,
            map_au_names,
            scope,
        )

    def score(self, completion: str, sample: Sample) -> float | None:
        gold = gold_intensities(sample)
        if gold is None:
            return None
        parsed = parse(
            completion,
            label_set=label_set_of(sample),
            drop_negated=self.drop_negated,
            map_au_names=self.map_au_names,
            au_scope=self.scope,
        )
        stated = parsed.au_intensities
        if not gold:
            return float(not stated and not parsed.intensity_errors)
        terms = [
            1.0 - abs(stated[au] - level) / _MAX_LEVEL_ERROR if au in stated else 0.0
            for au, level in gold.items()
        ]
        if self.count_extra:
            terms += [0.0] * len(set(stated) - set(gold))
        return sum(terms) / len(terms)


class ValenceArousalReward(RewardComponent):
    """1 - normalised L1 error of the ``<va>`` block: ``1 - (|v' - v| + |a' - a|) / 4``, in [0, 1].

    Why L1 and not CCC: CCC (the metric) is a statistic of a whole set of predictions - it needs their variance -
    and has no per-completion value; the L1 score is its per-sample stand-in: bounded, linear (every step closer
    pays the same) and zero only at the far corner. A missing, malformed or out-of-range block scores 0. None when
    the sample has no valence/arousal.
    """

    name = "valence_arousal"

    def score(self, completion: str, sample: Sample) -> float | None:
        gold = gold_va(sample)
        if gold is None:
            return None
        va = parse(completion, label_set=label_set_of(sample)).va
        if va is None:
            return 0.0
        return 1.0 - (abs(va[0] - gold[0]) + abs(va[1] - gold[1])) / _MAX_VA_ERROR


class CompoundAccuracyReward(RewardComponent):
    """1 when the answer names the gold compound class, ``partial_credit`` when it shares exactly one of its two
    emotions, else 0.

    The answer is read by the parser as a compound ("happily surprised", "happiness and surprise") or a basic
    emotion ("happy"). Partial credit goes to a wrong compound with one right component ("happily disgusted" for
    happily surprised) and to a single basic emotion that is one of the components ("surprise"): both get half the
    blend right. Anything else - a compound sharing nothing, three emotions, free text - scores 0. None when the
    sample has no compound label.

    Args:
        weight: weight in the composite total.
        partial_credit: reward for exactly one right component, in [0, 1] (0 = plain accuracy).
    """

    name = "compound_accuracy"

    def __init__(self, weight: float = 1.0, partial_credit: float = 0.5):
        super().__init__(weight)
        if not 0.0 <= partial_credit <= 1.0:
            raise ValueError(f"partial_credit must lie in [0, 1], got {partial_credit}")
        self.partial_credit = float(partial_credit)

    def score(self, completion: str, sample: Sample) -> float | None:
        gold = sample.get("compound")
        if gold is None:
            return None
        parsed = parse(completion, label_set=label_set_of(sample))
        if parsed.compound == gold:
            return 1.0
        shared = parsed.answer_emotions & set(compound_components(gold))
        return self.partial_credit if len(shared) == 1 else 0.0
