"""The project's own reward components: AU F-beta, emotion accuracy, format, reasoning-answer consistency.

All read completions through :func:`facial_r1.parsing.parse`, so training rewards and evaluation metrics agree.
"""

from __future__ import annotations

from facial_r1.parsing import parse
from facial_r1.rewards.base import (
    RewardComponent,
    Sample,
    f_beta,
    gold_aus,
    gold_label,
    label_set_of,
    masked_aus,
)


class AUF1Reward(RewardComponent):
    """Set F-beta between the AUs the reasoning names and the gold AUs, in [0, 1] (``signed``: 2F - 1 in [-1, 1]).

    None when the sample has no AU annotation. A sample annotated with no active AU scores 1.0 when nothing is
    predicted (a correct "nothing active") and 0.0 (or -1 signed) otherwise. AUs the sample does not record
    (:func:`~facial_r1.rewards.base.masked_aus`: BP4D's code 9, AUs outside its dataset's ``au_vocab``) are
    masked with ``restrict_to_vocab``: naming them neither earns nor costs reward.

    Args:
        weight: weight in the composite total.
        beta: recall weight of the F-beta score (1 = F1).
        signed: map F to 2F - 1 (the published code's range).
        drop_negated: ignore negated mentions ("no AU12"); False counts them like the published code.
        map_au_names: read FACS names ("lip corner puller") as AUs.
        scope: ``"think"`` (AUs of the reasoning only) or ``"completion"`` (the whole text).
        restrict_to_vocab: ignore predicted AUs the sample does not record (outside its ``au_vocab``, or in
            ``meta_info["unknown_aus"]``), so that a true but uncoded AU is not a false positive (default True;
            False scores them as absent, as the published code does).
    """

    name = "au_f1"

    def __init__(
        self,
        weight: float = 1.0,
        beta: float = 1.0,
        signed: bool = False,
        drop_negated: bool = True,
        map_au_names: bool = True,
        scope: str = "think",
        restrict_to_vocab: bool = True,
    ):
        super().__init__(weight)
        if beta <= 0:
            raise ValueError(f"beta must be positive, got {beta}")
        if scope not in ("think", "completion"):
            raise ValueError(f"scope must be 'think' or 'completion', got {scope!r}")
        self.beta, self.signed, self.scope = float(beta), bool(signed), scope
        self.drop_negated, self.map_au_names, self.restrict_to_vocab = (
            drop_negated,
            map_au_names,
            restrict_to_vocab,
        )
        self.low = -1.0 if self.signed else 0.0

    def score(self, completion: str, sample: Sample) -> float | None:
        gold = gold_aus(sample)
        if gold is None:
            return None
        parsed = parse(
            completion,
            label_set=label_set_of(sample),
            drop_negated=self.drop_negated,
            map_au_names=self.map_au_names,
            au_scope=self.scope,
        )
        predicted = set(parsed.aus)
        if self.restrict_to_vocab:
            predicted -= masked_aus(sample, predicted)
        f = 1.0 if not gold and not predicted else f_beta(predicted, set(gold), self.beta)
        return 2.0 * f - 1.0 if self.signed else f


class EmotionAccuracyReward(RewardComponent):
    """1 when the answer, normalised to the sample's label set, equals the first gold label; else 0.

    None when the sample has no emotion label. Several labels, a label outside the set, or no answer block score 0.
    """

    name = "emotion_accuracy"

    def score(self, completion: str, sample: Sample) -> float | None:
        gold = gold_label(sample)
        if gold is None:
            return None
        return float(parse(completion, label_set=label_set_of(sample)).emotion == gold)


class FormatReward(RewardComponent):
    """1 for the think-then-answer structure, strict (the whole completion) or lenient (see :mod:`parsing`).

    With ``va=True`` (the affect prompts) the structure must end in a valid ``<va>valence, arousal</va>`` block
    after the answer (``format_strict_va`` / ``format_lenient_va``); with ``va=False`` such a block breaks the
    strict format, as before.
    """

    name = "format"

    def __init__(self, weight: float = 1.0, strict: bool = True, va: bool = False):
        super().__init__(weight)
        self.strict, self.va = bool(strict), bool(va)

    def score(self, completion: str, sample: Sample) -> float | None:
        parsed = parse(completion, label_set=label_set_of(sample))
        if self.va:
            return float(parsed.format_strict_va if self.strict else parsed.format_lenient_va)
        return float(parsed.format_strict if self.strict else parsed.format_lenient)


class ConsistencyReward(RewardComponent):
    """1 when the emotion the reasoning concludes equals the answer's emotion, else 0.

    Aimed at Facial-R1's "reasoning-recognition misalignment". Needs no gold label, so it always applies. A
    missing side (no emotion named in the reasoning, or no valid answer) scores 0: otherwise a model could earn it
    by never naming an emotion while reasoning.
    """

    name = "consistency"

    def score(self, completion: str, sample: Sample) -> float | None:
        parsed = parse(completion, label_set=label_set_of(sample))
        return float(parsed.emotion is not None and parsed.emotion == parsed.concluded_emotion)
