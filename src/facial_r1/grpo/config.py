"""Every GRPO switch in one validated dataclass, the variants as ``str`` enums.

Defaults are the settings of the official Facial-R1 GRPO run (the authors' scripts, RobitsG/Facial-R1): G = 8,
beta 0.04 with the k3 estimator, eps 0.2, one update per rollout batch, temperature 1, ``grpo`` aggregation, group
std scaling with eps 1e-4 and the unbiased std, max completion 2048. The one deliberate difference: ``kl_clamp``
defaults to 10 (EasyR1 / verl); the official code leaves k3 unclamped (``kl_clamp=None``).

Papers cited in the messages: GRPO = Shao et al. 2024 (DeepSeekMath); PPO = Schulman et al. 2017; DAPO = Yu et al.
2025; Dr. GRPO = Liu et al. 2025 ("Understanding R1-Zero-Like Training"); GSPO = Zheng et al. 2025 ("Group Sequence
Policy Optimization"); TIS = Yao et al. 2025 ("Your efficient RL framework secretly brings you off-policy RL
training").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TypeVar


class _StrEnum(str, Enum):
    """A ``str`` enum that prints as its value (``StrEnum`` needs Python 3.11)."""

    def __str__(self) -> str:
        return self.value


class LossAggregation(_StrEnum):
    """How per-token losses become one number (see ``objective.aggregate_loss``)."""

    GRPO = "grpo"  # mean over each sequence's tokens, then over sequences (GRPO paper; length-biased)
    BNPO = "bnpo"  # token mean over the local (micro-)batch
    DR_GRPO = "dr_grpo"  # token sum / (B * max_completion_length) (Dr. GRPO)
    DAPO = "dapo"  # token sum / active tokens of the whole accumulated generation batch (DAPO)


class AdvantageScale(_StrEnum):
    """What the group-centred reward is divided by (see ``objective.group_advantages``)."""

    GROUP = "group"  # std of the group (GRPO)
    BATCH = "batch"  # std of the whole batch
    NONE = "none"  # nothing: centre only (Dr. GRPO)


class KLEstimator(_StrEnum):
    """Per-token estimator of KL(pi_theta || pi_ref) (Schulman's k1 / k2 / k3; see ``objective.kl_estimate``)."""

    K1 = "k1"
    K2 = "k2"
    K3 = "k3"


class ZeroStd(_StrEnum):
    """What to do with groups whose rewards all agree (their advantages are exactly 0)."""

    KEEP = "keep"  # leave them in: their tokens count in denominators and get the KL gradient when beta > 0
    MASK = "mask"  # drop their tokens from the loss and from every token-count denominator
    RESAMPLE = (
        "resample"  # DAPO dynamic sampling: regenerate them; groups still flat after the rounds are masked
    )


class ImportanceLevel(_StrEnum):
    """Where the policy ratio pi_theta / pi_old is taken and clipped (see ``objective.clipped_surrogate``)."""

    TOKEN = "token"  # one ratio per token (PPO / GRPO)
    SEQUENCE = "sequence"  # GSPO: exp(mean over the sequence's tokens of the log-ratio), one per completion


class RolloutCorrection(_StrEnum):
    """Truncated importance sampling for a rollout engine whose log-probs differ from the trainer's (``grpo.tis``)."""

    AUTO = "auto"  # on for engines that compute log-probs with another implementation (vllm), off for hf
    NONE = "none"
    TOKEN = "token"  # w_t = min(pi_old / pi_engine of the token, cap)
    SEQUENCE = "sequence"  # w = min(product over the sequence's tokens of pi_old / pi_engine, cap)


E = TypeVar("E", bound=Enum)


def parse_enum(enum_cls: type[E], value: str | E, key: str) -> E:
    """``value`` as a member of ``enum_cls``; ValueError naming ``key`` and the allowed values otherwise."""
    try:
        return enum_cls(value)
    except ValueError:
        allowed = [m.value for m in enum_cls]
        raise ValueError(f"{key}={value!r} is not one of {allowed}") from None


@dataclass
class GRPOConfig:
    """The GRPO objective's switches; validated on construction (``validate`` raises ``ValueError``)."""

    num_generations: int = 8  # G, completions sampled per prompt
    beta: float = 0.04  # KL coefficient; 0 = no reference model at all
    kl_estimator: KLEstimator | str = KLEstimator.K3
    kl_clamp: float | None = (
        10.0  # clamp of the per-token KL estimate (EasyR1 / verl); None = official (none)
    )
    eps_low: float = 0.2  # ratio clipped below at 1 - eps_low
    eps_high: float = 0.2  # ratio clipped above at 1 + eps_high (DAPO clip-higher: 0.28)
    num_iterations: int = 1  # mu: policy updates per rollout batch; 1 makes the ratio exactly 1
    temperature: float = 1.0  # sampling temperature; logits are divided by it when logps are recomputed
    top_p: float = 1.0
    max_completion_length: int = 2048  # also the constant in the dr_grpo denominator
    loss_aggregation: LossAggregation | str = LossAggregation.GRPO
    advantage_scale: AdvantageScale | str = AdvantageScale.GROUP
    adv_eps: float = 1e-4  # A = (r - mean) / (std + adv_eps)
    adv_unbiased_std: bool = True  # torch.std's default, as in the official code
    mask_truncated: bool = False  # completions without a stop token get no loss
    zero_std: ZeroStd | str = ZeroStd.KEEP
    max_resample_rounds: int = (
        3  # zero_std="resample": regeneration rounds for flat groups before masking them
    )
    max_grad_norm: float | None = 1.0  # None = no gradient clipping
    importance_level: ImportanceLevel | str = ImportanceLevel.TOKEN  # sequence = GSPO
    rollout_correction: RolloutCorrection | str = RolloutCorrection.AUTO
    rollout_correction_cap: float = 2.0  # C, the upper bound of a TIS weight (Yao et al. 2025)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Coerce the enum fields from strings and reject values no GRPO run can use."""
        self.kl_estimator = parse_enum(KLEstimator, self.kl_estimator, "GRPOConfig.kl_estimator")
        self.loss_aggregation = parse_enum(
            LossAggregation, self.loss_aggregation, "GRPOConfig.loss_aggregation"
        )
        self.advantage_scale = parse_enum(AdvantageScale, self.advantage_scale, "GRPOConfig.advantage_scale")
        self.zero_std = parse_enum(ZeroStd, self.zero_std, "GRPOConfig.zero_std")
        self.importance_level = parse_enum(
            ImportanceLevel, self.importance_level, "GRPOConfig.importance_level"
        )
        self.rollout_correction = parse_enum(
            RolloutCorrection, self.rollout_correction, "GRPOConfig.rollout_correction"
        )
        sequence = self.importance_level == ImportanceLevel.SEQUENCE
        checks = [
            (
                self.num_generations >= 2,
                f"num_generations={self.num_generations}: GRPO's baseline is the mean reward of a group of "
                "G >= 2 completions per prompt (Shao et al. 2024, sec. 4.1); with G < 2 every advantage is 0",
            ),
            (
                self.beta >= 0,
                f"beta={self.beta}: the KL coefficient must be >= 0 (0 disables the reference model)",
            ),
            (
                self.kl_clamp is None or self.kl_clamp > 0,
                f"kl_clamp={self.kl_clamp}: must be > 0, or None for no clamp",
            ),
            (
                0 < self.eps_low < 1,
                f"eps_low={self.eps_low}: must be in (0, 1) so that the lower clip bound 1 - eps_low is a "
                "positive ratio (PPO, Schulman et al. 2017)",
            ),
            (
                0 < self.eps_high < 1,
                f"eps_high={self.eps_high}: must be in (0, 1) (PPO uses 0.2; DAPO's clip-higher 0.28, Yu et al. 2025)",
            ),
            (
                self.num_iterations >= 1,
                f"num_iterations={self.num_iterations}: mu counts policy updates per rollout batch and must be >= 1 "
                "(Shao et al. 2024, Algorithm 1)",
            ),
            (self.temperature > 0, f"temperature={self.temperature}: must be > 0 (logits are divided by it)"),
            (0 < self.top_p <= 1, f"top_p={self.top_p}: must be in (0, 1]"),
            (
                self.max_completion_length >= 1,
                f"max_completion_length={self.max_completion_length}: must be >= 1",
            ),
            (self.adv_eps >= 0, f"adv_eps={self.adv_eps}: must be >= 0"),
            (
                self.zero_std != ZeroStd.RESAMPLE or self.max_resample_rounds >= 1,
                f"max_resample_rounds={self.max_resample_rounds}: zero_std='resample' (DAPO dynamic sampling, "
                "Yu et al. 2025) needs at least one round",
            ),
            (
                self.max_grad_norm is None or self.max_grad_norm > 0,
                f"max_grad_norm={self.max_grad_norm}: must be > 0, or None for no clipping",
            ),
            (
                self.rollout_correction_cap > 0,
                f"rollout_correction_cap={self.rollout_correction_cap}: must be > 0 (TIS caps each weight at it, "
                "Yao et al. 2025)",
            ),
            (
                not sequence or self.loss_aggregation == LossAggregation.GRPO,
                f"importance_level='sequence' with loss_aggregation={str(self.loss_aggregation)!r}: GSPO's objective "
                "averages one clipped sequence ratio per completion (Zheng et al. 2025, eq. 5), which is the 'grpo' "
                "aggregation (token mean per sequence, then sequence mean); token-weighted aggregations would weight "
                "a sequence's shared ratio by its length. Set loss_aggregation=grpo",
            ),
            (
                not sequence or self.rollout_correction != RolloutCorrection.TOKEN,
                "rollout_correction='token' with importance_level='sequence': a sequence-level ratio (GSPO) needs a "
                "sequence-level correction, or the tokens of one completion get different weights. Set "
                "rollout_correction=sequence (or auto, which follows importance_level)",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"GRPOConfig.{message}")

    def correction_level(self, engine_logprobs_are_policy: bool) -> str | None:
        """The TIS level this run applies: ``token`` / ``sequence``, or None for no correction.

        ``auto`` corrects only where the rollout engine's log-probs come from another implementation than the
        trainer's (``engine_logprobs_are_policy=False``: vLLM's kernels, possibly another precision), at the level of
        the policy ratio (``importance_level``).
        """
        if self.rollout_correction == RolloutCorrection.NONE:
            return None
        if self.rollout_correction == RolloutCorrection.AUTO:
            return None if engine_logprobs_are_policy else str(self.importance_level)
        return str(self.rollout_correction)
