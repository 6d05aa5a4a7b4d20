"""The GRPO objective against hand-computed numbers (and a naive reference for the advantages)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from facial_r1.grpo.config import (
    AdvantageScale,
    GRPOConfig,
    ImportanceLevel,
    KLEstimator,
    LossAggregation,
    RolloutCorrection,
    ZeroStd,
)
from facial_r1.grpo.objective import (
    aggregate_loss,
    build_loss_mask,
    clipped_surrogate,
    drop_sequences,
    group_advantages,
    grpo_loss,
    kl_estimate,
)
from facial_r1.models.logprobs import token_entropy_from_logits, token_logprobs_from_logits

EPS = 1e-4
nan = float("nan")


def close(a, b, tol=1e-6):
    return torch.allclose(
        torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64), atol=tol
    )


# ADVANTAGES -------------------------------------------------------------------------------------------------------


def test_group_advantages_unsorted_unequal_groups_nan_and_zero_std():
    # group 7: {1, 0}; group 3: {2, 0, 1}; group 9: {.5, .5} flat; group 11: {1, None, 3}; group 5: {4} single;
    # group 2: {None, 2} (one valid reward)
    ids = torch.tensor([7, 3, 7, 3, 3, 9, 9, 11, 11, 11, 5, 2, 2])
    r = torch.tensor([1.0, 2.0, 0.0, 0.0, 1.0, 0.5, 0.5, 1.0, nan, 3.0, 4.0, nan, 2.0])
    adv, stats = group_advantages(r, ids)
    s7, s11 = math.sqrt(0.5), math.sqrt(2.0)  # unbiased stds
    expected = [
        0.5 / (s7 + EPS), 1 / (1 + EPS), -0.5 / (s7 + EPS), -1 / (1 + EPS), 0.0,
        0.0, 0.0,
        -1 / (s11 + EPS), 0.0, 1 / (s11 + EPS),
        0.0,
        0.0, 0.0,
    ]  # fmt: skip
    assert close(adv, expected)
    # groups sorted by id: 2, 3, 5, 7, 9, 11
    assert stats.zero_std_group.tolist() == [True, False, True, False, True, False]
    assert stats.zero_std.tolist() == [
        False,
        False,
        False,
        False,
        False,
        True,
        True,
        False,
        False,
        False,
        True,
        True,
        True,
    ]
    assert close(stats.frac_zero_std, 0.5)
    assert close(stats.group_mean, [2.0, 1.0, 4.0, 0.5, 0.5, 2.0])
    assert stats.valid.tolist() == [not math.isnan(x) for x in r.tolist()]
    assert not torch.isnan(adv).any()


def test_zero_std_group_is_exactly_zero_despite_float_noise():
    adv, stats = group_advantages(
        torch.tensor([0.1, 0.1, 0.1, 0.7, 0.7, 0.7]), torch.tensor([0, 0, 0, 1, 1, 1])
    )
    assert (adv == 0).all() and stats.zero_std_group.all() and stats.frac_zero_std == 1


def test_batch_and_none_scaling_centre_per_group():
    r, ids = torch.tensor([0.0, 2.0, 1.0, 1.0]), torch.tensor([0, 0, 1, 1])
    batch_std = math.sqrt(2 / 3)  # unbiased std of {0, 2, 1, 1}
    adv, _ = group_advantages(r, ids, scale="batch")
    assert close(adv, [-1 / (batch_std + EPS), 1 / (batch_std + EPS), 0, 0])
    adv, _ = group_advantages(r, ids, scale=AdvantageScale.NONE)
    assert close(adv, [-1, 1, 0, 0])
    adv, _ = group_advantages(r, ids, unbiased=False)  # biased std of {0, 2} is 1
    assert close(adv, [-1 / (1 + EPS), 1 / (1 + EPS), 0, 0])


def test_valid_mask_excludes_like_nan():
    r, ids = torch.tensor([0.0, 2.0, 100.0]), torch.tensor([0, 0, 0])
    adv, _ = group_advantages(r, ids, valid=torch.tensor([True, True, False]))
    assert close(adv, [-1 / (math.sqrt(2) + EPS), 1 / (math.sqrt(2) + EPS), 0])


def test_bad_scale_names_the_allowed_values():
    with pytest.raises(ValueError, match=r"scale='std'.*'group', 'batch', 'none'"):
        group_advantages(torch.zeros(2), torch.zeros(2, dtype=torch.long), scale="std")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 4), st.one_of(st.none(), st.integers(-3, 3))), min_size=1, max_size=20),
    st.sampled_from(["group", "batch", "none"]),
)
def test_group_advantages_match_naive_loop(samples, scale):
    ids = torch.tensor([g for g, _ in samples])
    r = torch.tensor([nan if x is None else float(x) for _, x in samples], dtype=torch.float64)
    adv, _ = group_advantages(r, ids, scale=scale)
    all_valid = r[~torch.isnan(r)]
    for i, (g, x) in enumerate(samples):
        group = r[(ids == g) & ~torch.isnan(r)]
        if x is None or len(group) < 2 or (group == group[0]).all():
            assert adv[i] == 0
            continue
        denom = {"group": group.std() + EPS, "batch": all_valid.std() + EPS, "none": 1.0}[scale]
        assert close(adv[i], (x - group.mean()) / denom, 1e-9)


# KL ---------------------------------------------------------------------------------------------------------------


def test_kl_estimators_at_known_values():
    half, quarter, ln2 = math.log(0.5), math.log(0.25), math.log(2)
    logp, ref = torch.tensor([[half, quarter]]), torch.tensor([[quarter, half]])
    assert close(kl_estimate(logp, ref, "k1"), [[ln2, -ln2]])
    assert close(kl_estimate(logp, ref, "k2"), [[0.5 * ln2**2, 0.5 * ln2**2]])
    assert close(kl_estimate(logp, ref, KLEstimator.K3), [[0.5 + ln2 - 1, 2 - ln2 - 1]])


@pytest.mark.parametrize("kind", ["k1", "k2", "k3"])
def test_kl_is_zero_when_policy_equals_reference(kind):
    logp = torch.randn(3, 5)
    assert (kl_estimate(logp, logp.clone(), kind) == 0).all()


def test_k3_is_nonnegative():
    assert (kl_estimate(torch.randn(50, 20) * 3, torch.randn(50, 20) * 3, "k3", clamp=None) >= 0).all()


def test_kl_clamp_bounds_the_estimate_and_none_disables_it():
    logp, ref = torch.tensor([[0.0, -3.0, 0.0]]), torch.tensor([[5.0, 0.0, 0.5]])
    assert close(kl_estimate(logp, ref, "k3"), [[10.0, 10.0, math.exp(0.5) - 1.5]])
    assert close(
        kl_estimate(logp, ref, "k3", clamp=None),
        [[math.exp(5) - 6, math.exp(3) - 4, math.exp(0.5) - 1.5]],
        1e-4,
    )
    assert close(kl_estimate(logp, ref, "k1", clamp=3.0), [[-3.0, -3.0, -0.5]])


def test_k3_stays_finite_for_forbidden_reference_tokens():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    kl = kl_estimate(logp, torch.tensor([[-math.inf, -math.inf]]), "k3", clamp=None)
    kl.sum().backward()
    assert torch.isfinite(kl).all() and torch.isfinite(logp.grad).all()


# CLIPPED SURROGATE ------------------------------------------------------------------------------------------------


def _surrogate_grad(ratio: float, adv: float) -> float:
    old = torch.tensor([[-1.0]])
    logp = (old + math.log(ratio)).requires_grad_()
    loss, _ = clipped_surrogate(logp, old, torch.tensor([adv]))
    loss.sum().backward()
    return logp.grad.item()


@pytest.mark.parametrize(("ratio", "adv"), [(1.5, 1.0), (1.21, 2.0), (0.5, -1.0), (0.79, -3.0)])
def test_gradient_vanishes_outside_the_clip_region_in_the_pessimistic_direction(ratio, adv):
    assert _surrogate_grad(ratio, adv) == 0


@pytest.mark.parametrize(("ratio", "adv"), [(1.1, 2.0), (0.9, -1.0), (0.5, 1.0), (1.5, -1.0)])
def test_gradient_flows_inside_the_clip_region_and_on_the_optimistic_side(ratio, adv):
    # d/dlogp of -rho*A is -rho*A
    assert close(_surrogate_grad(ratio, adv), -ratio * adv, 1e-5)


def test_clip_fractions_and_ratio_stats_over_the_mask():
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.0, 3.0]]))
    loss, stats = clipped_surrogate(
        logp, old, torch.tensor([[1.0, -1.0, 1.0, 1.0]]), mask=torch.tensor([[1, 1, 1, 0]])
    )
    assert close(loss, [[-1.2, 0.8, -1.0, -1.2]], 1e-6)
    assert close(stats["clip_frac_high"], 1 / 3) and close(stats["clip_frac_low"], 1 / 3)
    assert close(stats["clip_frac"], 2 / 3)
    assert (
        close(stats["ratio_mean"], 1.0) and close(stats["ratio_min"], 0.5) and close(stats["ratio_max"], 1.5)
    )


def test_ratio_is_exactly_one_and_gradient_is_minus_advantage_when_old_is_detached():
    logp = torch.randn(3, 4, requires_grad=True)
    adv = torch.tensor([1.5, -0.5, 0.0])
    loss, stats = clipped_surrogate(logp, logp.detach(), adv)
    assert stats["ratio_min"] == 1 and stats["ratio_max"] == 1 and stats["clip_frac"] == 0
    loss.sum().backward()
    assert torch.equal(logp.grad, -adv[:, None].expand(3, 4))


# AGGREGATION ------------------------------------------------------------------------------------------------------

LOSS = torch.tensor([[1.0, 2.0, 3.0, nan], [4.0, 100.0, 100.0, 100.0]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)


@pytest.mark.parametrize(
    ("mode", "kwargs", "expected"),
    [
        ("grpo", {}, (2.0 + 4.0) / 2),
        ("bnpo", {}, 10 / 4),
        ("dr_grpo", {"max_completion_length": 5}, 10 / (2 * 5)),
        ("dapo", {"num_active_tokens": 8}, 10 / 8),
    ],
)
def test_aggregation_modes_by_hand(mode, kwargs, expected):
    assert close(aggregate_loss(LOSS, MASK, mode, **kwargs), expected)


def test_dapo_micro_batches_sum_to_the_full_batch_loss():
    full = aggregate_loss(LOSS, MASK, LossAggregation.DAPO, num_active_tokens=4)
    parts = [aggregate_loss(LOSS[i : i + 1], MASK[i : i + 1], "dapo", num_active_tokens=4) for i in range(2)]
    assert close(full, 2.5) and close(sum(parts), full)


@pytest.mark.parametrize("mode", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_empty_rows_and_empty_masks_give_no_nan(mode):
    kwargs = {"max_completion_length": 4, "num_active_tokens": 0}
    loss = torch.cat([LOSS, torch.full((1, 4), nan)])
    mask = torch.cat([MASK, torch.zeros(1, 4, dtype=torch.bool)])
    assert torch.isfinite(aggregate_loss(loss, mask, mode, **kwargs))
    assert aggregate_loss(loss, torch.zeros_like(mask), mode, **kwargs) == 0
    if mode in ("grpo", "bnpo"):  # an empty row does not dilute a mean
        assert close(aggregate_loss(loss, mask, mode), aggregate_loss(LOSS, MASK, mode))


def test_aggregation_missing_arguments_are_reported():
    with pytest.raises(ValueError, match="max_completion_length"):
        aggregate_loss(LOSS, MASK, "dr_grpo")
    with pytest.raises(ValueError, match="num_active_tokens"):
        aggregate_loss(LOSS, MASK, "dapo")
    with pytest.raises(ValueError, match="'grpo', 'bnpo', 'dr_grpo', 'dapo'"):
        aggregate_loss(LOSS, MASK, "mean")


# LOG-PROBS --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.3])
def test_token_logprobs_match_log_softmax_gather(temperature):
    torch.manual_seed(0)
    logits = torch.randn(3, 8, 11, requires_grad=True)
    sliced = logits[:, :-1]  # the usual off-by-one slice, non-contiguous
    tokens = torch.randint(0, 11, (3, 7))
    got = token_logprobs_from_logits(sliced, tokens, temperature, chunk_size=3)
    ref = torch.log_softmax(sliced / temperature, -1).gather(-1, tokens[..., None]).squeeze(-1)
    assert got.dtype == torch.float32 and close(got, ref, 1e-5)
    (g_got,) = torch.autograd.grad(got.sum(), logits)
    (g_ref,) = torch.autograd.grad(ref.sum(), logits)
    assert close(g_got, g_ref, 1e-5)


def test_token_logprobs_upcast_half_precision():
    logits = torch.randn(2, 5, 13).bfloat16()
    tokens = torch.randint(0, 13, (2, 5))
    ref = torch.log_softmax(logits.float(), -1).gather(-1, tokens[..., None]).squeeze(-1)
    assert close(token_logprobs_from_logits(logits, tokens), ref, 1e-5)


def test_token_entropy_matches_definition():
    logits = torch.randn(2, 6, 9)
    p = torch.softmax(logits / 0.5, -1)
    assert close(token_entropy_from_logits(logits, 0.5, chunk_size=4), -(p * p.log()).sum(-1), 1e-5)


# MASKS ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mask_truncated", "zero_std", "rows"),
    [
        (False, "keep", [3, 3, 3]),
        (True, "keep", [3, 0, 3]),
        (False, "mask", [3, 3, 0]),
        (True, "resample", [3, 0, 0]),
    ],
)
def test_build_loss_mask(mask_truncated, zero_std, rows):
    cfg = GRPOConfig(mask_truncated=mask_truncated, zero_std=zero_std)
    mask = torch.ones(3, 3, dtype=torch.bool)
    out = build_loss_mask(mask, torch.tensor([False, True, False]), torch.tensor([False, False, True]), cfg)
    assert out.sum(-1).tolist() == rows


def test_dropped_sequences_leave_token_denominators():
    loss = torch.tensor([[1.0, 1.0], [5.0, 5.0]])
    mask = drop_sequences(torch.ones(2, 2), torch.tensor([False, True]))
    assert aggregate_loss(loss, mask, "bnpo") == 1 and aggregate_loss(loss, mask, "grpo") == 1


# THE LOSS ---------------------------------------------------------------------------------------------------------


def test_grpo_loss_value_and_metrics_with_k3_penalty():
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.9], [0.5, 0.9, 0.9]])).requires_grad_()
    ref = torch.log(torch.tensor([[0.25, 0.5, 0.9], [0.5, 0.9, 0.9]]))
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    adv = torch.tensor([1.0, -2.0])
    cfg = GRPOConfig(beta=0.1)
    loss, metrics = grpo_loss(logp, None, ref, adv, mask, cfg)
    k3a, k3b = 0.5 + math.log(2) - 1, 2 - math.log(2) - 1
    seq0 = (-1.0 + 0.1 * k3a - 1.0 + 0.1 * k3b) / 2
    seq1 = 2.0
    assert close(loss, (seq0 + seq1) / 2, 1e-6)
    assert close(metrics["policy/pg_loss"], (-1.0 + 2.0) / 2)
    assert close(metrics["policy/kl"], (k3a + k3b) / 3, 1e-6)
    assert close(metrics["policy/advantage_mean"], 0.0) and metrics["policy/ratio_mean"] == 1
    assert metrics["policy/clip_frac"] == 0 and not any(v.requires_grad for v in metrics.values())


def test_grpo_loss_gradient_at_mu_1_is_advantage_weighted_logprob_gradient():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 7, requires_grad=True)
    tokens = torch.randint(0, 7, (2, 4))
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    adv = torch.tensor([0.7, -1.3])
    logp = token_logprobs_from_logits(logits, tokens)
    loss, _ = grpo_loss(logp, None, None, adv, mask, GRPOConfig(beta=0.0))
    (got,) = torch.autograd.grad(loss, logits, retain_graph=True)
    lengths = mask.sum(-1)
    reference = (
        -(adv[:, None] * logp * mask).sum(-1) / lengths
    )  # d/dtheta of -A * mean_t logp, mean over seqs
    (want,) = torch.autograd.grad(reference.mean(), logits)
    assert close(got, want, 1e-6)


def test_grpo_loss_beta_zero_ignores_kl_and_beta_positive_needs_a_reference():
    logp = torch.zeros(1, 2, requires_grad=True)
    mask = torch.ones(1, 2, dtype=torch.bool)
    loss, metrics = grpo_loss(
        logp, None, torch.full((1, 2), -5.0), torch.tensor([1.0]), mask, GRPOConfig(beta=0)
    )
    assert close(loss, -1.0) and metrics["policy/kl"] > 0
    with pytest.raises(ValueError, match="needs ref_logp"):
        grpo_loss(logp, None, None, torch.tensor([1.0]), mask, GRPOConfig())


def test_grpo_loss_with_stale_old_logps_clips():
    logp = torch.log(torch.tensor([[0.6, 0.3]])).requires_grad_()
    old = torch.log(torch.tensor([[0.4, 0.3]]))  # ratio 1.5, 1.0
    cfg = GRPOConfig(beta=0.0, num_iterations=2, loss_aggregation="bnpo")
    loss, metrics = grpo_loss(logp, old, None, torch.tensor([1.0]), torch.ones(1, 2), cfg)
    assert close(loss, -(1.2 + 1.0) / 2, 1e-6) and close(metrics["policy/clip_frac_high"], 0.5)


def test_grpo_loss_scales_the_surrogate_by_rollout_weights_but_not_the_kl():
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.9], [0.5, 0.9, 0.9]])).requires_grad_()
    ref = torch.log(torch.tensor([[0.25, 0.5, 0.9], [0.5, 0.9, 0.9]]))
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    adv = torch.tensor([1.0, -2.0])
    weights = torch.tensor([[2.0, 0.5, 7.0], [1.5, 9.0, 9.0]])  # outside the mask: junk that must not count
    loss, metrics = grpo_loss(logp, None, ref, adv, mask, GRPOConfig(beta=0.1), rollout_weights=weights)
    k3a, k3b = 0.5 + math.log(2) - 1, 2 - math.log(2) - 1
    seq0 = (-2.0 * 1 + 0.1 * k3a - 0.5 * 1 + 0.1 * k3b) / 2  # -w_t * A + beta * KL_t, KL unweighted
    seq1 = -1.5 * -2.0
    assert close(loss, (seq0 + seq1) / 2, 1e-6)
    assert close(metrics["policy/pg_loss"], ((-2.0 - 0.5) / 2 + 3.0) / 2, 1e-6)  # 0.875
    assert close(metrics["policy/kl"], (k3a + k3b) / 3, 1e-6)
    # mu = 1 (rho == 1): d loss / d logp_t = -w_t * A / |o_i| / (number of sequences)
    loss, _ = grpo_loss(logp, None, None, adv, mask, GRPOConfig(beta=0.0), rollout_weights=weights)
    (grad,) = torch.autograd.grad(loss, logp)
    assert close(grad, [[-0.5, -0.125, 0.0], [1.5, 0.0, 0.0]], 1e-6)
    with pytest.raises(ValueError, match="rollout_weights"):
        grpo_loss(logp, None, None, adv, mask, GRPOConfig(beta=0.0), rollout_weights=weights[:, :2])


def test_unit_rollout_weights_leave_the_loss_unchanged():
    torch.manual_seed(0)
    logp = torch.randn(3, 4).requires_grad_()
    mask = torch.rand(3, 4) > 0.3
    adv = torch.randn(3)
    cfg = GRPOConfig(beta=0.0, loss_aggregation="bnpo")
    plain, _ = grpo_loss(logp, None, None, adv, mask, cfg)
    weighted, _ = grpo_loss(logp, None, None, adv, mask, cfg, rollout_weights=torch.ones(3, 4))
    assert torch.equal(plain, weighted)


# GSPO (importance_level="sequence") -------------------------------------------------------------------------------

# log-ratios logp - old_logp: row 0 [0.3, -0.1 | padding], rows 1 and 2 [0.5, 0.1, 0.0]
GSPO_OLD = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0]])
GSPO_LOG_RATIO = torch.tensor([[0.3, -0.1, 0.0], [0.5, 0.1, 0.0], [0.5, 0.1, 0.0]])
GSPO_MASK = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 1, 1]], dtype=torch.bool)
GSPO_ADV = torch.tensor([1.0, 1.0, -1.0])


def gspo_logp() -> torch.Tensor:
    logp = GSPO_OLD + GSPO_LOG_RATIO
    logp[0, 2] = -math.inf  # a padding position may hold anything
    return logp.requires_grad_()


def test_gspo_ratio_is_the_length_normalised_sequence_ratio_clipped_per_sequence():
    logp = gspo_logp()
    per_token, stats = clipped_surrogate(logp, GSPO_OLD, GSPO_ADV, 0.2, 0.2, GSPO_MASK, level="sequence")
    s0, s1 = math.exp((0.3 - 0.1) / 2), math.exp((0.5 + 0.1 + 0.0) / 3)  # 1.105171, 1.221403
    # row 0 inside [0.8, 1.2]; row 1 (A > 0) above 1.2: clipped; row 2 (A < 0): the pessimistic unclipped branch
    expected = torch.tensor([[-s0, -s0, -s0], [-1.2] * 3, [s1] * 3])
    assert close(torch.where(GSPO_MASK, per_token, 0.0), torch.where(GSPO_MASK, expected, 0.0), 1e-6)
    assert close(stats["clip_frac_high"], 3 / 8) and close(stats["clip_frac_low"], 0.0)
    assert close(stats["ratio_mean"], (2 * s0 + 6 * s1) / 8, 1e-6)
    assert close(stats["ratio_max"], s1, 1e-6) and close(stats["ratio_min"], s0, 1e-6)

    cfg = GRPOConfig(beta=0.0, num_iterations=2, importance_level="sequence")
    loss, _ = grpo_loss(logp, GSPO_OLD, None, GSPO_ADV, GSPO_MASK, cfg)
    assert close(loss, (-s0 - 1.2 + s1) / 3, 1e-6)  # -0.361256: GSPO's -1/G sum_i min(s_i A_i, clip(s_i) A_i)
    (grad,) = torch.autograd.grad(loss, logp)
    # d s_i / d logp_t = s_i / |o_i|; each sequence weighs 1/3; the clipped sequence and the padding get nothing
    g0, g2 = -s0 / 2 / 3, s1 / 3 / 3  # -0.184195, 0.135711
    assert close(grad, [[g0, g0, 0.0], [0.0] * 3, [g2] * 3], 1e-6)

    token_loss, _ = grpo_loss(
        logp, GSPO_OLD, None, GSPO_ADV, GSPO_MASK, GRPOConfig(beta=0.0, num_iterations=2)
    )
    # token level: row 0's e^0.3 = 1.35 is clipped to 1.2 on its own, e^-0.1 is not -> another value
    assert not close(token_loss, loss, 1e-3)


def test_gspo_gradient_equals_grpo_at_mu_1():
    torch.manual_seed(1)
    logits = torch.randn(3, 5, 9, requires_grad=True)
    tokens = torch.randint(0, 9, (3, 5))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    adv = torch.tensor([0.4, -1.1, 0.9])
    grads = []
    for level in ("token", "sequence"):
        logp = token_logprobs_from_logits(logits, tokens)
        loss, _ = grpo_loss(logp, None, None, adv, mask, GRPOConfig(beta=0.0, importance_level=level))
        grads.append(torch.autograd.grad(loss, logits)[0])
    assert close(grads[0], grads[1], 1e-6)


# CONFIG -----------------------------------------------------------------------------------------------------------


def test_config_defaults_are_the_official_run_and_strings_are_coerced():
    cfg = GRPOConfig(loss_aggregation="dapo", kl_estimator="k1", zero_std="mask", advantage_scale="none")
    assert cfg.loss_aggregation is LossAggregation.DAPO and cfg.kl_estimator is KLEstimator.K1
    assert cfg.zero_std is ZeroStd.MASK and cfg.advantage_scale is AdvantageScale.NONE
    d = GRPOConfig()
    assert (d.num_generations, d.beta, d.kl_estimator, d.eps_low, d.eps_high, d.num_iterations) == (
        8, 0.04, "k3", 0.2, 0.2, 1,
    )  # fmt: skip
    assert (d.loss_aggregation, d.advantage_scale, d.adv_eps, d.temperature) == ("grpo", "group", 1e-4, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"loss_aggregation": "sum"},
            r"loss_aggregation='sum' is not one of \['grpo', 'bnpo', 'dr_grpo', 'dapo'\]",
        ),
        ({"advantage_scale": "std"}, r"advantage_scale='std' is not one of \['group', 'batch', 'none'\]"),
        ({"kl_estimator": "k4"}, r"kl_estimator='k4' is not one of \['k1', 'k2', 'k3'\]"),
        ({"zero_std": "drop"}, r"zero_std='drop' is not one of \['keep', 'mask', 'resample'\]"),
        ({"num_generations": 1}, r"num_generations=1: .*Shao et al. 2024"),
        ({"beta": -0.1}, r"beta=-0.1"),
        ({"kl_clamp": 0.0}, r"kl_clamp=0.0"),
        ({"eps_low": 1.0}, r"eps_low=1.0: .*Schulman et al. 2017"),
        ({"eps_high": 0.0}, r"eps_high=0.0"),
        ({"num_iterations": 0}, r"num_iterations=0"),
        ({"temperature": 0.0}, r"temperature=0.0"),
        ({"top_p": 1.5}, r"top_p=1.5"),
        ({"max_completion_length": 0}, r"max_completion_length=0"),
        ({"adv_eps": -1e-4}, r"adv_eps=-0.0001"),
        ({"zero_std": "resample", "max_resample_rounds": 0}, r"max_resample_rounds=0: .*DAPO"),
        ({"max_grad_norm": 0.0}, r"max_grad_norm=0.0"),
        ({"importance_level": "batch"}, r"importance_level='batch' is not one of \['token', 'sequence'\]"),
        (
            {"rollout_correction": "on"},
            r"rollout_correction='on' is not one of \['auto', 'none', 'token', 'sequence'\]",
        ),
        ({"rollout_correction_cap": 0.0}, r"rollout_correction_cap=0.0: .*Yao et al. 2025"),
        (
            {"importance_level": "sequence", "loss_aggregation": "dapo"},
            r"importance_level='sequence' with loss_aggregation='dapo': GSPO.*Set loss_aggregation=grpo",
        ),
        (
            {"importance_level": "sequence", "rollout_correction": "token"},
            r"rollout_correction='token' with importance_level='sequence'.*Set rollout_correction=sequence",
        ),
    ],
)
def test_config_validation_messages(kwargs, message):
    with pytest.raises(ValueError, match=rf"GRPOConfig\.{message}"):
        GRPOConfig(**kwargs)


@pytest.mark.parametrize(
    ("correction", "level", "exact", "applied"),
    [
        ("auto", "token", True, None),  # hf: the trainer's own log-probs
        ("auto", "token", False, "token"),  # vllm
        ("auto", "sequence", False, "sequence"),  # GSPO + vllm: the correction follows the ratio's level
        ("auto", "sequence", True, None),
        ("none", "token", False, None),
        ("token", "token", True, "token"),  # explicit wins, whatever the engine
        ("sequence", "token", False, "sequence"),
    ],
)
def test_rollout_correction_level(correction, level, exact, applied):
    cfg = GRPOConfig(rollout_correction=correction, importance_level=level)
    assert cfg.rollout_correction is RolloutCorrection(correction)
    assert cfg.importance_level is ImportanceLevel(level)
    assert cfg.correction_level(engine_logprobs_are_policy=exact) == applied
