"""Truncated importance sampling weights against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from facial_r1.grpo.tis import truncated_importance_weights

# Two completions, T = 3; the second has 2 real tokens (its padding holds a junk log-prob that must not count).
# log-ratios d = logp_old - logp_engine: row 0 [0.5, -1, 0], row 1 [ln 3, -0.2].
LOGP_OLD = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.1, -7.0]])
LOGP_ENGINE = torch.tensor([[-1.5, -1.0, -0.5], [-0.3 - math.log(3.0), 0.1, 0.0]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)


def test_token_level_weights_cap_and_stats():
    w, stats = truncated_importance_weights(LOGP_OLD, LOGP_ENGINE, MASK, cap=2.0)
    # ratios e^0.5 = 1.648721, e^-1 = 0.367879, 1, 3 -> capped at 2, e^-0.2 = 0.818731; padding 0
    expected = torch.tensor([[1.648721, 0.367879, 1.0], [2.0, 0.818731, 0.0]])
    assert torch.allclose(w, expected, atol=1e-6)
    assert stats.capped_frac.item() == pytest.approx(1 / 5)
    assert stats.mean_weight.item() == pytest.approx((1.648721 + 0.367879 + 1 + 2 + 0.818731) / 5, abs=1e-6)
    # k3 terms e^d - 1 - d: 0.148721, 0.367879, 0, 3 - 1 - ln 3 = 0.901388, 0.018731
    assert stats.mismatch_kl.item() == pytest.approx(
        (0.148721 + 0.367879 + 0 + 0.901388 + 0.018731) / 5, abs=1e-6
    )


def test_sequence_level_weights_share_one_capped_ratio():
    w, stats = truncated_importance_weights(LOGP_OLD, LOGP_ENGINE, MASK, cap=2.0, level="sequence")
    # row 0: e^(0.5 - 1 + 0) = 0.606531; row 1: e^(ln 3 - 0.2) = 2.456192 -> capped at 2
    expected = torch.tensor([[0.606531] * 3, [2.0, 2.0, 0.0]])
    assert torch.allclose(w, expected, atol=1e-6)
    assert stats.capped_frac.item() == pytest.approx(1 / 2)


def test_cap_is_configurable_and_identical_policies_give_unit_weights():
    w, stats = truncated_importance_weights(LOGP_OLD, LOGP_ENGINE, MASK, cap=1.5)
    assert w[0, 0].item() == pytest.approx(1.5) and w[1, 0].item() == pytest.approx(1.5)
    assert stats.capped_frac.item() == pytest.approx(2 / 5)
    same, stats = truncated_importance_weights(LOGP_OLD, LOGP_OLD, MASK)
    assert torch.equal(same, MASK.float()) and stats.mismatch_kl.item() == 0.0 and stats.capped_frac == 0


def test_weights_carry_no_gradient():
    logp_old = LOGP_OLD.clone().requires_grad_(True)
    w, _ = truncated_importance_weights(logp_old, LOGP_ENGINE, MASK)
    assert not w.requires_grad


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="same"):
        truncated_importance_weights(LOGP_OLD, LOGP_ENGINE[:, :2], MASK)
    with pytest.raises(ValueError, match="cap"):
        truncated_importance_weights(LOGP_OLD, LOGP_ENGINE, MASK, cap=0.0)
    with pytest.raises(ValueError, match="tis.level"):
        truncated_importance_weights(LOGP_OLD, LOGP_ENGINE, MASK, level="batch")
