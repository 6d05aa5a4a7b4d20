"""Mixed precision that learns: bf16 weights with fp32 master copies follow the fp32 run."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from facial_r1.training.optim import MasterWeightAdamW, build_optimizer

STAGE = SimpleNamespace(lr=1e-6, weight_decay=0.0, betas=(0.9, 0.999), warmup_steps=0, scheduler="constant",
                        min_lr_ratio=1.0)  # fmt: skip


def _pair():
    torch.manual_seed(0)
    fp32 = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.LayerNorm(64), torch.nn.Linear(64, 8))
    with torch.no_grad():  # start from bf16-representable weights so both runs start equal
        for p in fp32.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    bf16 = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.LayerNorm(64), torch.nn.Linear(64, 8))
    bf16.load_state_dict(fp32.state_dict())
    return fp32, bf16.to(torch.bfloat16)


def _run_40_steps(make_opt):
    """40 steps at lr 1e-6 of an fp32 AdamW run and a bf16 run, both fed the fp32 run's gradients (so only the
    update arithmetic differs). Returns (fp32 model, bf16 model, bf16 optimizer, bf16 start weights)."""
    fp32, bf16 = _pair()
    ref = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.LayerNorm(64), torch.nn.Linear(64, 8))
    opt32, opt16 = build_optimizer(fp32, STAGE, 10)["optimizer"], make_opt(bf16)
    x, y = torch.randn(16, 64), torch.randn(16, 8)
    start = [p.detach().clone() for p in bf16.parameters()]
    for step in range(1, 41):
        ref.load_state_dict(fp32.state_dict())
        grads = torch.autograd.grad(torch.nn.functional.mse_loss(ref(x), y), list(ref.parameters()))
        for model, opt in ((fp32, opt32), (bf16, opt16)):
            opt.zero_grad()
            for p, g in zip(model.parameters(), grads, strict=True):
                p.grad = g.to(p.dtype)
            opt.step()
        if step == 1 and isinstance(opt16, MasterWeightAdamW):
            # one step at lr 1e-6: the fp32 masters moved exactly as the fp32 run's weights
            for p16, p32 in zip(bf16.parameters(), fp32.parameters(), strict=True):
                torch.testing.assert_close(opt16.state[p16]["master"], p32.detach(), rtol=0, atol=1e-9)
    return fp32, bf16, opt16, start


def _off_trajectory(fp32, bf16) -> int:
    """bf16 weights that differ from the fp32 run's weights rounded to bf16."""
    return sum(
        int((p16 != p32.detach().to(torch.bfloat16)).sum())
        for p16, p32 in zip(bf16.parameters(), fp32.parameters(), strict=True)
    )


def test_bf16_weights_with_master_copies_follow_the_fp32_run_at_lr_1e_6():
    fp32, bf16, opt, start = _run_40_steps(lambda m: build_optimizer(m, STAGE, 10)["optimizer"])
    assert isinstance(opt, MasterWeightAdamW)  # chosen because the trainable weights are bf16
    assert _off_trajectory(fp32, bf16) == 0  # every bf16 weight = the fp32 run's, rounded
    assert any(not torch.equal(p, s) for p, s in zip(bf16.parameters(), start, strict=True))


def test_plain_adamw_on_bf16_weights_leaves_the_fp32_trajectory():
    """The defect the master copies fix: torch's AdamW on bf16 weights rounds lr 1e-6 updates away."""
    fp32, bf16, _, _ = _run_40_steps(lambda m: torch.optim.AdamW(m.parameters(), lr=1e-6))
    assert _off_trajectory(fp32, bf16) > 100


def test_master_copies_survive_a_state_dict_round_trip_in_fp32():
    _, bf16 = _pair()
    opt = build_optimizer(bf16, STAGE, 10)["optimizer"]
    for p in bf16.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    saved = opt.state_dict()
    _, fresh = _pair()
    fresh.load_state_dict(bf16.state_dict())
    opt2 = build_optimizer(fresh, STAGE, 10)["optimizer"]
    opt2.load_state_dict(saved)
    for p, q in zip(bf16.parameters(), fresh.parameters(), strict=True):
        assert q.dtype == torch.bfloat16
        for key in ("master", "exp_avg", "exp_avg_sq"):
            assert opt2.state[q][key].dtype == torch.float32
            assert torch.equal(opt2.state[q][key], opt.state[p][key])
