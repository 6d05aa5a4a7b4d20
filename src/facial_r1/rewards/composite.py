"""A weighted sum of named reward components, as GRPO consumes it.

The names are the keys of ``components`` (the config keys, which are also the metric names:
``train/reward/<name>``). Each component's values are kept unweighted in ``per_component``; the total is
``sum(weight * value)`` over the components that apply to that completion. A None (not applicable) adds nothing:
an AU-only sample is scored by its AU and format rewards alone, and its total is not pulled towards a neutral
constant. (The ``official`` preset's components return the published constants 0.0 / 0.5 instead of None, so its
totals match the published numbers.) A completion no component applies to totals 0.0. ``clamp`` bounds the total,
as the published trainer does with [-10, 10].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from facial_r1.rewards.base import Sample

Component = Callable[[Sequence[str], Sequence[Sample]], list[float | None]]


@dataclass(frozen=True)
class RewardOutput:
    """Scores of one batch: unweighted per-component values (None = not applicable) and weighted totals."""

    per_component: dict[str, list[float | None]]
    total: list[float]

    @property
    def names(self) -> list[str]:
        return list(self.per_component)

    def rows(self) -> list[dict[str, float | None]]:
        """Per completion: ``{name: value, ..., "total": total}`` (for prediction tables)."""
        return [
            {**{name: values[i] for name, values in self.per_component.items()}, "total": self.total[i]}
            for i in range(len(self.total))
        ]

    def summary(self, prefix: str = "") -> dict[str, float]:
        """Mean and population std of each component over the completions it applies to, and of the total.

        Keys ``{prefix}{name}/mean``, ``{prefix}{name}/std``, ``{prefix}{name}/applicable`` (fraction of
        completions with a value); a component that applies nowhere is left out.
        """
        out: dict[str, float] = {}
        for name, values in [*self.per_component.items(), ("total", self.total)]:
            present = [v for v in values if v is not None]
            if not present:
                continue
            mean = sum(present) / len(present)
            out[f"{prefix}{name}/mean"] = mean
            out[f"{prefix}{name}/std"] = math.sqrt(sum((v - mean) ** 2 for v in present) / len(present))
            if name != "total":
                out[f"{prefix}{name}/applicable"] = len(present) / len(values)
        return out


class CompositeReward:
    """Score completions with several named components and combine them into one total per completion.

    Args:
        components: ``{name: component}``; a dict or the DictConfig Hydra passes (kept in its order).
        clamp: optional ``(low, high)`` bounds of the total (a list from YAML works).
    """

    def __init__(self, components: Mapping[str, Component], clamp: Sequence[float] | None = None):
        if not components:
            raise ValueError("CompositeReward needs at least one component")
        self.components: dict[str, Component] = {str(name): c for name, c in components.items()}
        for name, component in self.components.items():
            if not callable(component):
                raise TypeError(
                    f"reward component {name!r} is not callable (was it instantiated?): {component!r}"
                )
        if clamp is not None:
            low, high = (float(x) for x in clamp)
            if low > high:
                raise ValueError(f"clamp low {low} > high {high}")
            clamp = (low, high)
        self.clamp: tuple[float, float] | None = clamp

    @property
    def names(self) -> list[str]:
        return list(self.components)

    def weight(self, name: str) -> float:
        return float(getattr(self.components[name], "weight", 1.0))

    def __call__(self, completions: Sequence[str], samples: Sequence[Sample]) -> RewardOutput:
        if len(completions) != len(samples):
            raise ValueError(f"{len(completions)} completions but {len(samples)} samples")
        per_component = {name: list(c(completions, samples)) for name, c in self.components.items()}
        total = []
        for i in range(len(completions)):
            value = sum(self.weight(n) * v[i] for n, v in per_component.items() if v[i] is not None)
            if self.clamp is not None:
                value = min(max(value, self.clamp[0]), self.clamp[1])
            total.append(float(value))
        return RewardOutput(per_component=per_component, total=total)

    def __repr__(self) -> str:
        return f"CompositeReward({self.components!r}, clamp={self.clamp})"
