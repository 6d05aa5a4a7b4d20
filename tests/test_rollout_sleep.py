"""The vLLM engine's sleep mode (``rollout.sleep_level``) as a sequence of vLLM calls, against a recording stand-in
for ``vllm.LLM``: vLLM's sleep needs a GPU (its CPU build refuses ``enable_sleep_mode``), so the real calls run only
on one (``benchmarks/gpu_check.py``). What is checked here is the order the engine makes them in, the order TRL's
colocate mode uses: sleep after a step's rollouts; at the sync wake the weights, load, then wake the KV cache."""

from __future__ import annotations

import pytest
import torch

from facial_r1.rollout.vllm_engine import VLLMEngine


class RecordingLLM:
    """Records the calls the engine makes; ``wake_up`` reports fully awake once both allocations are back."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.asleep: set[str] = set()
        self.llm_engine = self

    def sleep(self, level: int) -> None:
        self.calls.append(("sleep", level))
        self.asleep = {"weights", "kv_cache"}

    def wake_up(self, tags=None) -> bool:
        self.calls.append(("wake_up", tuple(tags) if tags else None))
        self.asleep -= set(tags or ("weights", "kv_cache"))
        return not self.asleep

    def collective_rpc(self, method: str, kwargs: dict) -> None:
        assert "weights" not in self.asleep, "weights loaded into freed memory"
        self.calls.append((method, len(list(kwargs["weights_iterator"]))))

    def reset_encoder_cache(self) -> None:
        self.calls.append(("reset_encoder_cache",))

    def reset_prefix_cache(self) -> bool:
        self.calls.append(("reset_prefix_cache",))
        return True


def engine(level: int) -> VLLMEngine:
    eng = object.__new__(VLLMEngine)  # the real methods; the vllm.LLM they drive is the recorder
    eng.llm, eng.sleep_level, eng.asleep, eng.weights_dropped = RecordingLLM(), level, False, False
    return eng


WEIGHTS = [("w", torch.zeros(2)), ("b", torch.zeros(1))]


@pytest.mark.parametrize("level", [1, 2])
def test_sleep_then_sync_wakes_weights_before_loading_and_the_kv_cache_after(level):
    eng = engine(level)
    eng.sleep()
    eng.sleep()  # already asleep: nothing more
    assert eng.asleep
    eng.load_weights(WEIGHTS)
    assert eng.llm.calls == [
        ("sleep", level),
        ("wake_up", ("weights",)),
        ("reload_weights", 2),
        ("wake_up", ("kv_cache",)),
        ("reset_encoder_cache",),
        ("reset_prefix_cache",),
    ]
    assert not eng.asleep and not eng.weights_dropped
    eng.wake_up()  # awake: nothing to do
    assert len(eng.llm.calls) == 6


def test_level_one_wakes_fully_when_generate_comes_before_a_sync():
    eng = engine(1)
    eng.sleep()
    eng.wake_up()  # what generate() does first
    assert eng.llm.calls == [("sleep", 1), ("wake_up", None)] and not eng.asleep


def test_level_two_refuses_to_sample_from_dropped_weights():
    eng = engine(2)
    eng.sleep()
    with pytest.raises(RuntimeError, match="sleep_level=2 dropped the weights; sync"):
        eng.wake_up()


def test_level_zero_never_sleeps():
    eng = engine(0)
    eng.sleep()
    eng.load_weights(WEIGHTS)
    assert [c[0] for c in eng.llm.calls] == ["reload_weights", "reset_encoder_cache", "reset_prefix_cache"]


def test_the_hf_engine_has_nothing_to_free():
    from facial_r1.rollout.hf import HFEngine
    from facial_r1.rollout.types import RolloutEngine

    hf = HFEngine(policy=None)
    hf.sleep()
    assert isinstance(hf, RolloutEngine)


@pytest.mark.parametrize(("ckpt_path", "synced"), [(None, []), ("run/checkpoints/last.ckpt", ["policy"])])
def test_a_resumed_grpo_run_syncs_the_engine_before_its_first_rollout(ckpt_path, synced):
    """The engine is built over the starting export; after a resume the policy holds later weights."""
    from types import SimpleNamespace

    from facial_r1.training.grpo import GRPOModule

    calls = []
    module = SimpleNamespace(
        trainer=SimpleNamespace(ckpt_path=ckpt_path),
        engine=SimpleNamespace(sync=calls.append),
        adapter="policy",
    )
    GRPOModule.on_train_start(module)
    assert calls == synced
