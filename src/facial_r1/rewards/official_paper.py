"""The paper-era official reward: the authors' GRPO script as it stood for the paper's run (commit 0c3fc1c, 2025-07-29).

``reward=official`` follows the final published code (exact-match accuracy, unit weights, from 2025-08-02 on).
The script the paper's numbers most likely come from differed in two ways, reproduced here:

* **Accuracy** = the Levenshtein ratio between the cleaned prediction and the cleaned first gold label, where
  cleaning takes the last ``<answer>...</answer>`` (the whole completion without one), turns line breaks into
  spaces, strips, removes trailing "." and lowercases. The ratio is ``python-Levenshtein``'s ``ratio``:
  ``1 - indel_distance / (len(a) + len(b))`` (a substitution costs 2), so "sadness" vs "happiness" scores 0.625 -
  a wrong emotion earns most of the reward. A sample without a label scores a constant 0.5, *not* weighted.
* **Per-sample weights**: every other reward value (accuracy, AU, format) is multiplied by the sample's weight
  before the rewards are summed and clamped to [-10, 10], so the clamp can bind (3 x 10 = 30). The weight is the
  inverse AU frequency of the sample's dataset: per dataset (the published script: per data file), each AU gets
  ``1 / (count / total + 1e-6)`` normalised to sum 1 over the dataset's AUs; a sample's raw weight is the sum over
  its gold AUs; raw weights are min-max normalised over the dataset's samples and multiplied by 10 (range 0-10;
  a dataset whose samples all have the same raw weight gets weight 0 everywhere, as published).

Departures from the published script: a sample without AUs (``AUs`` None or empty) has raw weight 0 instead of
crashing the script; math_verify (inert for word labels) is not run; weights are computed from the records passed
to :meth:`PaperWeightedReward.prepare` (the training split) instead of a hand-written frequency file, and a sample
outside them is weighted with its dataset's table, clipped to [0, 10].
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

from facial_r1.rewards.base import RewardComponent, Sample
from facial_r1.rewards.composite import Component, CompositeReward, RewardOutput
from facial_r1.rewards.official import official_answers

_EPSILON = 1e-6  # the published script's smoothing of AU frequencies
_SPACE_BEFORE = re.compile(r"(?<=\s)[\n\r]")
_NO_SPACE_BEFORE = re.compile(r"(?<!\s)[\n\r]")


def levenshtein_ratio(a: str, b: str) -> float:
    """``Levenshtein.ratio(a, b)``: ``1 - d / (len(a) + len(b))`` with d the insert/delete distance (substitution
    = delete + insert), i.e. ``2 * LCS / (len(a) + len(b))``; 1.0 for two empty strings."""
    total = len(a) + len(b)
    if total == 0:
        return 1.0
    previous = [0] * (len(b) + 1)  # LCS by rows: O(len(a) * len(b)) time, O(len(b)) memory
    for ch in a:
        current = [0]
        for j, other in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if ch == other else max(previous[j], current[j - 1]))
        previous = current
    return 2 * previous[-1] / total


def paper_clean(text: str) -> str:
    """The published ``clean_text``: last answer block if any, line breaks -> spaces, strip, drop trailing ".",
    lowercase."""
    answers = official_answers(text)
    if answers:
        text = answers[-1]
    text = _SPACE_BEFORE.sub("", text)
    text = _NO_SPACE_BEFORE.sub(" ", text)
    return text.strip().rstrip(".").lower()


class OfficialPaperAccuracyReward(RewardComponent):
    """Levenshtein ratio of the cleaned last answer and the cleaned first gold label; 0.5 (unweighted) without one."""

    name = "official_paper_accuracy"

    def score(self, completion: str, sample: Sample) -> float | None:
        labels = sample.get("labels") or []
        gold = str(labels[0]).replace("<answer>", "").replace("</answer>", "").strip() if labels else ""
        if not gold:
            return 0.5
        answers = official_answers(completion)
        prediction = (answers[-1] if answers else completion).strip()
        return levenshtein_ratio(paper_clean(prediction), paper_clean(gold))

    def apply_weight(self, value: float, weight: float, sample: Sample) -> float:
        """The no-label constant returns before the published code multiplies by the weight."""
        return value if not (sample.get("labels") or []) else value * weight


class InverseAUFrequencyWeights:
    """Per-sample weights of the paper-era script (module docstring): ``prepare(records)``, then ``weight(sample)``."""

    def __init__(self, scale: float = 10.0):
        self.scale = float(scale)
        self.au_weights: dict[str, dict[str, float]] = {}  # dataset -> AU -> normalised inverse frequency
        self.bounds: dict[str, tuple[float, float]] = {}  # dataset -> (min, max) raw weight

    @property
    def prepared(self) -> bool:
        return bool(self.bounds)

    def prepare(self, records: Iterable[Sample]) -> None:
        """AU frequencies and raw-weight bounds per dataset, from ``records`` (the training split)."""
        by_dataset: dict[str, list[Sample]] = defaultdict(list)
        for record in records:
            by_dataset[str(record.get("dataset"))].append(record)
        for dataset, samples in by_dataset.items():
            counts = Counter(str(au).upper() for s in samples for au in s.get("AUs") or [])
            total = sum(counts.values())
            inverse = {au: 1 / (n / total + _EPSILON) for au, n in counts.items()}
            norm = sum(inverse.values())
            self.au_weights[dataset] = {au: w / norm for au, w in inverse.items()}
            raw = [self._raw(dataset, s) for s in samples]
            self.bounds[dataset] = (min(raw), max(raw))

    def _raw(self, dataset: str, sample: Sample) -> float:
        table = self.au_weights.get(dataset, {})
        return sum(table.get(str(au).upper(), 0.0) for au in sample.get("AUs") or [])

    def weight(self, sample: Sample) -> float:
        dataset = str(sample.get("dataset"))
        if dataset not in self.bounds:
            known = sorted(self.bounds) or "none (prepare() was not called)"
            raise ValueError(
                f"reward=official_paper: no AU-frequency weights for dataset {dataset!r}; prepared: {known}"
            )
        low, high = self.bounds[dataset]
        denom = high - low if high > low else 1.0  # the published guard against a zero range
        normalised = (self._raw(dataset, sample) - low) / denom
        return self.scale * min(max(normalised, 0.0), 1.0)


class PaperWeightedReward(CompositeReward):
    """A :class:`CompositeReward` whose component values are each multiplied by the sample's weight before the sum
    and the clamp (``per_component`` holds the weighted values: they are what the total adds up).

    A component may define ``apply_weight(value, weight, sample)`` to apply the weight its own way (the paper-era
    accuracy leaves its no-label constant unweighted). Call :meth:`prepare` with the training records first.
    """

    def __init__(
        self,
        components: Mapping[str, Component],
        weights: InverseAUFrequencyWeights,
        clamp: Sequence[float] | None = None,
    ):
        super().__init__(components, clamp)
        self.weights = weights

    def prepare(self, records: Iterable[Sample]) -> None:
        self.weights.prepare(records)

    def __call__(self, completions: Sequence[str], samples: Sequence[Sample]) -> RewardOutput:
        if len(completions) != len(samples):
            raise ValueError(f"{len(completions)} completions but {len(samples)} samples")
        weights = [self.weights.weight(s) for s in samples]
        per_component: dict[str, list[float | None]] = {}
        for name, component in self.components.items():
            apply = getattr(component, "apply_weight", None)
            values = component(completions, samples)
            per_component[name] = [
                None if v is None else (apply(v, w, s) if apply else v * w)
                for v, w, s in zip(values, weights, samples, strict=True)
            ]
        total = []
        for i in range(len(completions)):
            value = sum(self.weight(n) * v[i] for n, v in per_component.items() if v[i] is not None)
            if self.clamp is not None:
                value = min(max(value, self.clamp[0]), self.clamp[1])
            total.append(float(value))
        return RewardOutput(per_component=per_component, total=total)


def paper_weights(records: Iterable[Sample], scale: float = 10.0) -> list[float]:
    """Weights of ``records`` prepared on themselves (a convenience for inspection and tests)."""
    records = list(records)
    weights = InverseAUFrequencyWeights(scale)
    weights.prepare(records)
    return [weights.weight(r) for r in records]


__all__ = [
    "InverseAUFrequencyWeights",
    "OfficialPaperAccuracyReward",
    "PaperWeightedReward",
    "levenshtein_ratio",
    "paper_clean",
    "paper_weights",
]
