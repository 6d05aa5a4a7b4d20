"""The config-built optimizer: bf16 weights with fp32 master copies follow the fp32 run, for AdamW (the default) and
for any other ``torch.optim`` class a user puts in ``stage.optimizer``."""

from __future__ import annotations

import functools
import logging

import pytest
import torch
from conftest import REPO
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from facial_r1.training.optim import MasterWeightAdamW, MasterWeights, build_optimizer

ADAMW = functools.partial(torch.optim.AdamW, lr=1e-6, weight_decay=0.0, betas=(0.9, 0.999))
SGD = functools.partial(torch.optim.SGD, lr=1e-4, momentum=0.9)


def _pair():
    torch.manual_seed(0)
    fp32 = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.LayerNorm(64), torch.nn.Linear(64, 8))
    with torch.no_grad():  # start from bf16-representable weights so both runs start equal
        for p in fp32.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    bf16 = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.LayerNorm(64), torch.nn.Linear(64, 8))
    bf16.load_state_dict(fp32.state_dict())
    return fp32, bf16.to(torch.bfloat16)


def _build(model, factory):
    return build_optimizer(list(model.parameters()), factory)


def _run_40_steps(factory, make_opt):
    """40 steps of an fp32 run with ``factory`` and a bf16 run with ``make_opt``, both fed the fp32 run's gradients
    rounded to bf16 (so only the update arithmetic differs). Returns (fp32 model, bf16 model, bf16 optimizer, bf16 start weights)."""
    fp32, bf16 = _pair()
    ref = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.LayerNorm(64), torch.nn.Linear(64, 8))
    opt32, opt16 = _build(fp32, factory), make_opt(bf16)
    x, y = torch.randn(16, 64), torch.randn(16, 8)
    start = [p.detach().clone() for p in bf16.parameters()]
    for step in range(1, 41):
        ref.load_state_dict(fp32.state_dict())
        grads = torch.autograd.grad(torch.nn.functional.mse_loss(ref(x), y), list(ref.parameters()))
        grads = [g.to(torch.bfloat16).float() for g in grads]  # representable in both runs
        for model, opt in ((fp32, opt32), (bf16, opt16)):
            opt.zero_grad()
            for p, g in zip(model.parameters(), grads, strict=True):
                p.grad = _like(p, g.to(p.dtype))
            opt.step()
        if step == 1 and isinstance(opt16, MasterWeights):
            # one step: the fp32 masters moved exactly as the fp32 run's weights
            for p16, p32 in zip(bf16.parameters(), fp32.parameters(), strict=True):
                master = _full(opt16.state[p16]["master"])
                torch.testing.assert_close(master, p32.detach(), rtol=0, atol=1e-9)
    return fp32, bf16, opt16, start


def _like(param, tensor):
    """``tensor`` laid out as ``param``: a DTensor with its placements for an FSDP2-sharded parameter."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(param, DTensor):
        return distribute_tensor(tensor, param.device_mesh, param.placements)
    return tensor


def _full(tensor):
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def _off_trajectory(fp32, bf16) -> int:
    """bf16 weights that differ from the fp32 run's weights rounded to bf16."""
    return sum(
        int((p16 != p32.detach().to(torch.bfloat16)).sum())
        for p16, p32 in zip(bf16.parameters(), fp32.parameters(), strict=True)
    )


@pytest.mark.parametrize("factory", [ADAMW, SGD], ids=["adamw", "sgd"])
def test_bf16_weights_with_master_copies_follow_the_fp32_run(factory):
    fp32, bf16, opt, start = _run_40_steps(factory, lambda m: _build(m, factory))
    assert isinstance(opt, MasterWeights) and isinstance(
        opt, factory.func
    )  # chosen because the weights are bf16
    assert _off_trajectory(fp32, bf16) == 0  # every bf16 weight = the fp32 run's, rounded
    assert any(not torch.equal(p, s) for p, s in zip(bf16.parameters(), start, strict=True))


def test_adamw_on_bf16_gets_the_named_master_weight_class_and_fp32_stays_plain():
    _, bf16 = _pair()
    assert type(_build(bf16, ADAMW)) is MasterWeightAdamW
    assert type(_build(bf16, torch.optim.AdamW)) is MasterWeightAdamW  # a bare class, no partial
    fp32, _ = _pair()
    assert type(_build(fp32, ADAMW)) is torch.optim.AdamW


@pytest.mark.parametrize("factory", [ADAMW, SGD], ids=["adamw", "sgd"])
def test_plain_optimizer_on_bf16_weights_leaves_the_fp32_trajectory(factory):
    """The defect the master copies fix: torch's optimizers on bf16 weights round small updates away."""
    fp32, bf16, _, _ = _run_40_steps(factory, lambda m: factory(m.parameters()))
    assert _off_trajectory(fp32, bf16) > 100


def test_a_factory_that_is_not_an_optimizer_class_is_warned_about_on_bf16(caplog):
    _, bf16 = _pair()
    with caplog.at_level(logging.WARNING, logger="facial_r1.training.optim"):
        opt = _build(bf16, lambda params: torch.optim.AdamW(params, lr=1e-6))
    assert type(opt) is torch.optim.AdamW
    assert "updates bf16/fp16 weights in place" in caplog.text and "stage.optimizer" in caplog.text


def test_master_copies_survive_a_state_dict_round_trip_in_fp32():
    _, bf16 = _pair()
    opt = _build(bf16, SGD)
    for p in bf16.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    opt.step()  # momentum buffers exist from the second step on
    saved = opt.state_dict()
    _, fresh = _pair()
    fresh.load_state_dict(bf16.state_dict())
    opt2 = _build(fresh, SGD)
    opt2.load_state_dict(saved)
    for p, q in zip(bf16.parameters(), fresh.parameters(), strict=True):
        assert q.dtype == torch.bfloat16
        for key in ("master", "momentum_buffer"):
            assert opt2.state[q][key].dtype == torch.float32
            assert torch.equal(opt2.state[q][key], opt.state[p][key])


@pytest.fixture
def one_rank_group(tmp_path):
    """A one-process gloo group, as FSDP2 (trainer=fsdp) runs under, torn down after the test."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("factory", [ADAMW, SGD], ids=["adamw", "sgd"])
def test_master_copies_follow_the_fp32_run_on_fsdp2_sharded_weights(factory, one_rank_group):
    """trainer=fsdp with bf16 weights (the 7B presets' sharded path): FSDP2 parameters are DTensors, whose dtype a
    `.data` swap does not change; the master copies must still run the update in fp32 and keep every bf16 weight on
    the fp32 run's trajectory, as in the unsharded test above."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    mesh = init_device_mesh("cpu", (1,))

    def sharded(model):
        for layer in model:
            if any(True for _ in layer.parameters()):
                fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        assert all(isinstance(p, DTensor) and p.dtype == torch.bfloat16 for p in model.parameters())
        return _build(model, factory)

    fp32, bf16, opt, start = _run_40_steps(factory, sharded)
    assert isinstance(opt, MasterWeights)
    assert all(opt.state[p]["master"].dtype == torch.float32 for p in bf16.parameters())
    full = [_full(p) for p in bf16.parameters()]
    assert all(
        torch.equal(p, q.detach().to(torch.bfloat16)) for p, q in zip(full, fp32.parameters(), strict=True)
    )
    assert any(not torch.equal(p, _full(s)) for p, s in zip(full, start, strict=True))


@pytest.mark.parametrize(
    ("overrides", "cls"),
    [([], torch.optim.AdamW), (["optimizer=sgd"], torch.optim.SGD), (["stage=grpo"], torch.optim.AdamW),
     (["stage.optimizer._target_=torch.optim.Adam"], torch.optim.Adam)],
)  # fmt: skip
def test_the_optimizer_is_swapped_from_the_command_line(overrides, cls):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["stage.lr=0.01", *overrides])
    module = instantiate(cfg.stage.module)
    model = torch.nn.Linear(2, 2).to(torch.bfloat16)
    opt = build_optimizer(list(model.parameters()), module.keywords["optimizer"])
    assert isinstance(opt, cls) and isinstance(opt, MasterWeights)
    assert opt.param_groups[0]["lr"] == 0.01  # stage.lr reaches every optimizer


def test_any_transformers_schedule_replaces_the_default_from_the_command_line():
    from facial_r1.training.optim import configure_optimizers

    overrides = [
        "~stage.lr_scheduler",
        "+stage.lr_scheduler={_target_: transformers.get_scheduler, _partial_: true, name: cosine_with_restarts, "
        "num_warmup_steps: 10, num_training_steps: ${trainer.max_steps}, scheduler_specific_kwargs: {num_cycles: 2}}",
        "trainer.max_steps=110",
    ]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    module = instantiate(cfg.stage.module)
    conf = configure_optimizers(
        torch.nn.Linear(2, 2), module.keywords["optimizer"], module.keywords["lr_scheduler"]
    )
    factor = conf["lr_scheduler"]["scheduler"].lr_lambdas[0]
    assert [factor(s) for s in (5, 10, 60, 61)] == pytest.approx(
        [0.5, 1.0, 1.0, 1.0], abs=1e-3
    )  # 2 cycles: restart
