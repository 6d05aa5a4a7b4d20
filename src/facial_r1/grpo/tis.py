"""Truncated importance sampling (TIS): correcting for a rollout engine whose log-probs differ from the trainer's.

A separate inference engine (vLLM) samples completions from pi_engine, which differs numerically from the trainer's
pi_theta_old (other kernels, another precision, batch-dependent reductions). The GRPO surrogate assumes the samples
came from pi_old, so each token's loss is reweighted by the importance ratio, capped at C to bound the variance
(Yao et al. 2025, "Your efficient RL framework secretly brings you off-policy RL training"):

    token level:     w_t = min(exp(logp_old_t - logp_engine_t), C)
    sequence level:  w_t = min(exp(sum_s mask_s * (logp_old_s - logp_engine_s)), C)   for every t of the sequence

The weights are constants (no gradient flows through them). Shapes: B completions, T completion tokens
(right-padded), masks boolean or 0/1 (non-zero = the token is in the loss). Plain torch, no model code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from facial_r1.grpo.config import _StrEnum, parse_enum
from facial_r1.grpo.objective import LOG_RATIO_BOUND


class TISLevel(_StrEnum):
    """Where the importance ratio is taken and capped."""

    TOKEN = "token"  # one ratio per token (the TIS paper's default)
    SEQUENCE = "sequence"  # the product of a sequence's token ratios, shared by all its tokens


@dataclass
class TISStats:
    """What to log about the train / inference mismatch (0-d tensors, masked tokens only)."""

    # k3 estimate of KL(pi_engine || pi_old): mean of exp(d) - 1 - d, d = logp_old - logp_engine
    mismatch_kl: Tensor
    capped_frac: Tensor  # fraction of tokens (token level) or sequences (sequence level) with ratio > C
    mean_weight: Tensor  # mean weight over the masked tokens


def truncated_importance_weights(
    logp_old: Tensor,
    logp_engine: Tensor,
    mask: Tensor,
    cap: float = 2.0,
    level: TISLevel | str = TISLevel.TOKEN,
) -> tuple[Tensor, TISStats]:
    """Per-token TIS weights [B, T] (0 outside ``mask``) and mismatch statistics.

    Args:
        logp_old: [B, T] log-probs of the sampled tokens under the trainer's pre-update policy.
        logp_engine: [B, T] log-probs the rollout engine reported when it sampled them (same temperature).
        mask: [B, T] which tokens are in the loss.
        cap: C > 0, the upper bound of a weight.
        level: ``token`` or ``sequence``.
    """
    if logp_old.shape != logp_engine.shape or logp_old.shape != mask.shape:
        raise ValueError(
            f"logp_old {tuple(logp_old.shape)}, logp_engine {tuple(logp_engine.shape)} and mask "
            f"{tuple(mask.shape)} must have the same [B, T] shape"
        )
    if not cap > 0:
        raise ValueError(f"TIS cap={cap}: must be > 0")
    level = parse_enum(TISLevel, level, "tis.level")
    m = mask.to(logp_old.dtype if logp_old.is_floating_point() else torch.float32)
    # Padding positions may hold anything (the engine writes 0, the trainer a real log-prob): zero them first.
    log_ratio = ((logp_old.detach() - logp_engine.detach()) * m).clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND)
    if level is TISLevel.TOKEN:
        ratio = log_ratio.exp()
        capped = (ratio > cap) & (m > 0)
        capped_frac = capped.sum() / m.sum().clamp_min(1)
    else:
        seq_log_ratio = log_ratio.sum(dim=1, keepdim=True).clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND)
        ratio = seq_log_ratio.exp().expand_as(log_ratio)
        has_tokens = m.sum(dim=1) > 0
        capped_frac = ((ratio[:, 0] > cap) & has_tokens).sum() / has_tokens.sum().clamp_min(1)
    weights = ratio.clamp(max=cap) * m
    n = m.sum().clamp_min(1)
    stats = TISStats(
        # expm1(d) - d, not exp(d) - 1 - d: at float32 the latter rounds a 1e-5 log-ratio's 5e-11 to noise
        mismatch_kl=((torch.expm1(log_ratio) - log_ratio) * m).sum() / n,
        capped_frac=capped_frac,
        mean_weight=weights.sum() / n,
    )
    return weights, stats
