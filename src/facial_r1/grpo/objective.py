"""The GRPO objective as plain torch functions (no Lightning / transformers / Hydra).

For a prompt, G completions o_i are sampled from pi_old and scored r_i. Per token t of o_i:

    A_i   = (r_i - mean_g(r)) / (std_g(r) + eps)                         group_advantages
    rho   = exp(logp_theta - logp_old)                                   clipped_surrogate
            (GSPO, importance_level=sequence: exp(mean_t(logp_theta - logp_old)), one rho per completion)
    L_t   = -w_t * min(rho * A_i, clip(rho, 1 - eps_low, 1 + eps_high) * A_i) + beta * KL_t
    w_t   = constant truncated importance weight of a rollout engine (``grpo.tis``; 1 without correction)
    KL_t  = k1 | k2 | k3 estimate of KL(pi_theta || pi_ref)              kl_estimate
    loss  = aggregate(L, mask)  (grpo | bnpo | dr_grpo | dapo)           aggregate_loss

``grpo_loss`` chains them under a ``GRPOConfig``. Shapes: B completions in a (micro-)batch, T completion tokens
(right-padded), V vocabulary, N completions in a generation batch, K prompts (groups). Masks are boolean
(non-zero = the token is in the loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from facial_r1.grpo.config import (
    AdvantageScale,
    GRPOConfig,
    ImportanceLevel,
    KLEstimator,
    LossAggregation,
    ZeroStd,
    parse_enum,
)

# exp() of a log-ratio beyond this overflows float32 gradients (0 * inf = NaN); verl clamps at the same bound.
LOG_RATIO_BOUND = 20.0


# ADVANTAGES -------------------------------------------------------------------------------------------------------


@dataclass
class AdvantageStats:
    """Group statistics behind ``group_advantages``; groups are indexed 0..K-1 in sorted order of their ids."""

    group_index: Tensor  # [N] long: dense index of each sample's group
    group_mean: Tensor  # [K] mean of the valid rewards (0 when none)
    group_std: Tensor  # [K] std of the valid rewards (0 when fewer than 2)
    zero_std_group: Tensor  # [K] bool: all valid rewards equal, or fewer than 2 valid rewards
    zero_std: Tensor  # [N] bool: this sample's group is zero-std
    frac_zero_std: Tensor  # 0-d: fraction of the K groups that are zero-std
    valid: Tensor  # [N] bool: the reward took part (not NaN and not excluded by ``valid``)


def _scatter_sum(values: Tensor, index: Tensor, size: int) -> Tensor:
    return values.new_zeros(size).index_add_(0, index, values)


def group_advantages(
    rewards: Tensor,
    group_ids: Tensor,
    scale: AdvantageScale | str = AdvantageScale.GROUP,
    eps: float = 1e-4,
    valid: Tensor | None = None,
    unbiased: bool = True,
) -> tuple[Tensor, AdvantageStats]:
    """Group-relative advantages, one per completion.

    A_i = (r_i - mean_g(r)) / D, with g the group of i and D = std_g(r) + eps (``group``), std(r) + eps over the whole
    batch of raw rewards (``batch``, centring still per group) or 1 (``none``, Dr. GRPO).

    Args:
        rewards: [N] float. NaN = "no reward for this completion" (None upstream): excluded from the group's mean
            and std, and its advantage is 0.
        group_ids: [N] long, any values, any order, groups of any size (one id per prompt).
        valid: [N] bool, optional extra exclusion, treated like NaN.
        unbiased: Bessel-corrected std (n - 1), as ``torch.std`` and the official code.

    Returns:
        advantages [N] (float32 or the rewards' float64), exactly 0 for every sample of a zero-std group. A group
        is zero-std when all its valid rewards are equal (tested exactly as max == min, so float noise in the mean
        cannot leak +-tiny advantages) or when it has fewer than 2 valid rewards (std undefined).
        ``AdvantageStats`` with the per-group / per-sample zero-std flags and the zero-std fraction.
    """
    scale = parse_enum(AdvantageScale, scale, "scale")
    r = rewards if rewards.dtype == torch.float64 else rewards.float()
    ok = ~torch.isnan(r) if valid is None else ~torch.isnan(r) & valid.bool()
    _, gidx = torch.unique(group_ids, return_inverse=True)
    k = int(gidx.max()) + 1 if gidx.numel() else 0
    r0 = torch.where(ok, r, 0.0)

    n = _scatter_sum(ok.to(r.dtype), gidx, k)  # [K] valid count
    mean = _scatter_sum(r0, gidx, k) / n.clamp(min=1)
    dev = torch.where(ok, r - mean[gidx], 0.0)  # [N] centred reward
    std = (_scatter_sum(dev.square(), gidx, k) / (n - int(unbiased)).clamp(min=1)).sqrt()
    r_max = r.new_full((k,), -torch.inf).scatter_reduce(0, gidx, torch.where(ok, r, -torch.inf), "amax")
    r_min = r.new_full((k,), torch.inf).scatter_reduce(0, gidx, torch.where(ok, r, torch.inf), "amin")
    zero_group = (n < 2) | (r_max == r_min)
    zero = zero_group[gidx]

    if scale == AdvantageScale.GROUP:
        denom = std[gidx] + eps
    elif scale == AdvantageScale.BATCH:
        n_all = ok.sum()
        batch_mean = r0.sum() / n_all.clamp(min=1)
        batch_var = torch.where(ok, r - batch_mean, 0.0).square().sum() / (n_all - int(unbiased)).clamp(min=1)
        denom = batch_var.sqrt() + eps
    else:
        denom = torch.ones_like(r)
    advantages = torch.where(ok & ~zero, dev / denom, 0.0)
    frac = zero_group.to(r.dtype).mean() if k else r.new_zeros(())
    return advantages, AdvantageStats(gidx, mean, std, zero_group, zero, frac, ok)


# KL ---------------------------------------------------------------------------------------------------------------


def kl_estimate(
    logp: Tensor, ref_logp: Tensor, kind: KLEstimator | str = KLEstimator.K3, clamp: float | None = 10.0
) -> Tensor:
    """Per-token estimate of KL(pi_theta || pi_ref) from sampled tokens; [B,T] -> [B,T].

    With log-ratio d = ref_logp - logp:  k1 = -d;  k2 = d^2 / 2;  k3 = exp(d) - d - 1 (>= 0, unbiased).

    ``clamp`` bounds the *estimate* to [-clamp, clamp], as EasyR1 / verl do for k3 (so the penalty's gradient
    vanishes where it is clamped); None disables it (the official code). Independently, for k3 only, d is kept in
    [-20, 20] so exp(d) and its gradient stay finite (e.g. ref_logp = -inf for a token the reference forbids).
    """
    kind = parse_enum(KLEstimator, kind, "kind")
    d = ref_logp - logp
    if kind == KLEstimator.K1:
        kl = -d
    elif kind == KLEstimator.K2:
        kl = 0.5 * d.square()
    else:
        d = d.clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND)
        kl = torch.exp(d) - d - 1
    return kl if clamp is None else kl.clamp(-clamp, clamp)


# SURROGATE --------------------------------------------------------------------------------------------------------


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of x [B,T] over mask [B,T] (bool); 0 when the mask is empty."""
    return torch.where(mask, x, 0.0).sum() / mask.sum().clamp(min=1)


def clipped_surrogate(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    mask: Tensor | None = None,
    level: ImportanceLevel | str = ImportanceLevel.TOKEN,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO clipped surrogate, negated to a per-token loss.

    rho = exp(logp - old_logp);  loss_t = -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A).

    ``level="sequence"`` is GSPO (Zheng et al. 2025): one ratio per completion, the length-normalised sequence
    ratio s_i = exp(sum_t mask_t * (logp_t - old_logp_t) / |o_i|) (|o_i| = the row's mask count), clipped per
    sequence and shared by all its tokens; the gradient reaches every token through the mean. With "grpo"
    aggregation the loss is GSPO's -1/G sum_i min(s_i A_i, clip(s_i) A_i). With old_logp = logp.detach() s_i == 1
    and the gradient equals token-level GRPO's under "grpo" aggregation; the two differ once mu > 1. The paper's
    clip range is far narrower (eps_low 3e-4, eps_high 4e-4) because a mean log-ratio moves much less than a
    token's.

    The min is pessimistic: for A > 0 and rho > 1 + eps_high, or A < 0 and rho < 1 - eps_low, the clipped (constant)
    branch is taken and the gradient is 0. With old_logp = logp.detach() (mu = 1) rho == 1 exactly and
    d loss_t = -A * d logp. The log-ratio is kept in [-20, 20] (verl) so exp() cannot overflow.

    Args:
        logp, old_logp: [B,T] log-probs of the sampled tokens under pi_theta and pi_old.
        advantages: [B] (one per completion) or [B,T] (per token).
        mask: [B,T] bool, tokens the statistics are taken over (all when None); at sequence level also the tokens
            of each completion's mean log-ratio. The loss itself is not masked.
        level: ``token`` (PPO / GRPO) or ``sequence`` (GSPO).

    Returns:
        per-token loss [B,T]; stats (detached 0-d tensors over the mask): ``clip_frac_low`` / ``clip_frac_high``
        (share of tokens whose gradient the lower / upper clip removed; at sequence level a clipped sequence counts
        all its tokens), ``clip_frac`` (their sum), ``ratio_mean``, ``ratio_min``, ``ratio_max`` (1 when the mask
        is empty).
    """
    level = parse_enum(ImportanceLevel, level, "level")
    m = torch.ones_like(logp, dtype=torch.bool) if mask is None else mask.bool()
    adv = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages
    log_ratio = logp - old_logp
    if level == ImportanceLevel.SEQUENCE:
        # torch.where, not a product: a padding position may hold -inf, and 0 * inf is NaN.
        seq = torch.where(m, log_ratio, 0.0).sum(-1) / m.sum(-1).clamp(min=1)  # [B]
        log_ratio = seq.unsqueeze(-1).expand_as(logp)
    ratio = torch.exp(log_ratio.clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND))
    pg_loss1 = ratio * adv
    pg_loss2 = ratio.clamp(1 - eps_low, 1 + eps_high) * adv
    per_token_loss = -torch.minimum(pg_loss1, pg_loss2)

    with torch.no_grad():
        low = (ratio < 1 - eps_low) & (adv < 0)
        high = (ratio > 1 + eps_high) & (adv > 0)
        any_token = m.any()
        stats = {
            "clip_frac_low": _masked_mean(low.float(), m),
            "clip_frac_high": _masked_mean(high.float(), m),
            "clip_frac": _masked_mean((low | high).float(), m),
            "ratio_mean": torch.where(any_token, _masked_mean(ratio, m), 1.0),
            "ratio_min": torch.where(any_token, torch.where(m, ratio, torch.inf).min(), 1.0),
            "ratio_max": torch.where(any_token, torch.where(m, ratio, -torch.inf).max(), 1.0),
        }
    return per_token_loss, stats


# AGGREGATION ------------------------------------------------------------------------------------------------------


def aggregate_loss(
    per_token_loss: Tensor,
    mask: Tensor,
    mode: LossAggregation | str = LossAggregation.GRPO,
    max_completion_length: int | None = None,
    num_active_tokens: float | Tensor | None = None,
) -> Tensor:
    """Per-token loss [B,T] and mask [B,T] -> scalar. With S = sum over active tokens of the loss:

    - ``grpo``:    mean over sequences of (sum_t loss / |o_i|). Only sequences with at least one active token
      count, so rows dropped by a mask (truncated / zero-std) do not dilute the rest (identical to TRL otherwise).
    - ``bnpo``:    S / (active tokens in this batch).
    - ``dr_grpo``: S / (B * max_completion_length); constant by design, masked rows still count in B.
    - ``dapo``:    S / num_active_tokens, the active tokens of the whole accumulated generation batch, counted at
      generation time (after masking) so the micro-batch losses sum to the full-batch loss. Under DDP, which
      averages gradients over ranks, pass global_count / world_size.

    Masked positions are filled with 0 (not multiplied) so a NaN / inf there cannot reach the value. All-zero mask
    rows (or an all-zero mask) give 0, never NaN.
    """
    mode = parse_enum(LossAggregation, mode, "mode")
    m = mask.bool()
    masked = per_token_loss.masked_fill(~m, 0.0)
    if mode == LossAggregation.GRPO:
        seq_len = m.sum(-1)  # [B]
        seq_mean = masked.sum(-1) / seq_len.clamp(min=1)
        return seq_mean.sum() / (seq_len > 0).sum().clamp(min=1)
    if mode == LossAggregation.BNPO:
        return masked.sum() / m.sum().clamp(min=1)
    if mode == LossAggregation.DR_GRPO:
        if max_completion_length is None:
            raise ValueError("mode='dr_grpo' needs max_completion_length (Dr. GRPO's constant denominator)")
        return masked.sum() / (per_token_loss.shape[0] * max_completion_length)
    if num_active_tokens is None:
        raise ValueError(
            "mode='dapo' needs num_active_tokens: the active tokens of the whole generation batch (DAPO)"
        )
    denom = torch.as_tensor(num_active_tokens, dtype=masked.dtype, device=masked.device)
    return masked.sum() / denom.clamp(min=1)


# MASKS ------------------------------------------------------------------------------------------------------------


def drop_sequences(mask: Tensor, drop: Tensor) -> Tensor:
    """mask [B,T] with the rows where drop [B] is True zeroed: they leave the loss and every token count."""
    return mask.bool() & ~drop.bool().unsqueeze(-1)


def build_loss_mask(mask: Tensor, truncated: Tensor, zero_std: Tensor, cfg: GRPOConfig) -> Tensor:
    """The loss mask [B,T] the switches ask for: ``mask_truncated`` drops truncated [B] rows; ``zero_std`` "mask"
    (and "resample", for groups still flat after the last round) drops zero-std [B] rows. Count ``dapo``'s
    ``num_active_tokens`` on this mask."""
    drop = truncated.bool() if cfg.mask_truncated else torch.zeros_like(truncated, dtype=torch.bool)
    if cfg.zero_std in (ZeroStd.MASK, ZeroStd.RESAMPLE):
        drop = drop | zero_std.bool()
    return drop_sequences(mask, drop)


# LOG-PROBS --------------------------------------------------------------------------------------------------------


# THE LOSS ---------------------------------------------------------------------------------------------------------


def grpo_loss(
    logp: Tensor,
    old_logp: Tensor | None,
    ref_logp: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    cfg: GRPOConfig,
    num_active_tokens: float | Tensor | None = None,
    rollout_weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """loss = aggregate(-w * min(rho A, clip(rho) A) + beta * KL, mask) under ``cfg`` (rho per token, or per
    sequence with ``cfg.importance_level="sequence"``: GSPO).

    Args:
        logp: [B,T] log-probs under pi_theta (with grad); old_logp: [B,T] under pi_old, or None for mu = 1
            (then logp.detach(), rho == 1); ref_logp: [B,T] under pi_ref, or None (only allowed with beta == 0;
            given with beta == 0 it is used for the KL metric only).
        advantages: [B] or [B,T]; mask: [B,T] bool (the loss mask, see ``build_loss_mask``).
        num_active_tokens: for ``dapo`` aggregation (see ``aggregate_loss``).
        rollout_weights: [B,T] truncated importance weights pi_old / pi_engine of a rollout engine
            (``grpo.tis.truncated_importance_weights``), or None (all 1). Constants: they scale the surrogate's
            per-token loss, not the KL penalty (which compares pi_theta with pi_ref, not the sampler), as TRL and
            verl apply them.

    Returns:
        scalar loss; metrics (detached 0-d tensors, over the mask's tokens) keyed ``policy/loss``, ``policy/pg_loss``
        (the surrogate part, aggregated the same way), ``policy/kl`` (when ref_logp is given),
        ``policy/clip_frac_low|high``, ``policy/clip_frac``, ``policy/ratio_mean|min|max``,
        ``policy/advantage_mean``.
    """
    if cfg.beta > 0 and ref_logp is None:
        raise ValueError(
            f"beta={cfg.beta} > 0 needs ref_logp (set beta=0 to train without a reference model)"
        )
    m = mask.bool()
    old = logp.detach() if old_logp is None else old_logp
    pg_per_token, clip_stats = clipped_surrogate(
        logp, old, advantages, cfg.eps_low, cfg.eps_high, m, level=cfg.importance_level
    )
    if rollout_weights is not None:
        if rollout_weights.shape != logp.shape:
            raise ValueError(
                f"rollout_weights {tuple(rollout_weights.shape)} must have logp's [B,T] shape {tuple(logp.shape)}"
            )
        pg_per_token = pg_per_token * rollout_weights.detach()
    per_token = pg_per_token
    kl = None
    if ref_logp is not None:
        kl = kl_estimate(logp, ref_logp, cfg.kl_estimator, cfg.kl_clamp)
        if cfg.beta > 0:
            per_token = per_token + cfg.beta * kl
    agg = (cfg.loss_aggregation, cfg.max_completion_length, num_active_tokens)
    loss = aggregate_loss(per_token, m, *agg)

    with torch.no_grad():
        adv = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages
        metrics = {
            "policy/loss": loss.detach(),
            "policy/pg_loss": aggregate_loss(pg_per_token.detach(), m, *agg),
            **{f"policy/{k}": v for k, v in clip_stats.items()},
            "policy/advantage_mean": _masked_mean(adv.expand_as(logp).float(), m),
        }
        if kl is not None:
            metrics["policy/kl"] = _masked_mean(kl.detach(), m)
    return loss, metrics
