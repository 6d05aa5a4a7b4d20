"""``rollout=vllm`` with the second family: the tiny Qwen3-VL served by vLLM (the plugin's image-only
``Qwen3VLProcessor``) against the ``hf`` engine on the same folder - greedy tokens, log-probs, weight sync.

Run in the vLLM environment: ``OMP_NUM_THREADS=1 .venv-vllm/bin/python -m pytest tests/vllm_rollout -m vllm -q -n 0``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("vllm")

from omegaconf import OmegaConf  # noqa: E402

from facial_r1.models.adapter import SamplingParams  # noqa: E402
from facial_r1.rollout.types import RolloutPrompt  # noqa: E402

pytestmark = pytest.mark.vllm

REPO = Path(__file__).resolve().parents[2]
LOGPROB_TOL = 1e-4  # float32 on both sides; measured max |diff| ~5e-7
TEXTS = ["What emotion is shown?", "Describe the face.", "Which action units are active? Answer in <answer>."]


@pytest.fixture(scope="module")
def qwen3_dir(tiny_cache: Path) -> Path:
    """The tiny Qwen3-VL of ``model=tiny_qwen3_vl model.tiny.warm_start_steps=0``."""
    from facial_r1.models.tiny import TinySpec, tiny_model_path

    tiny = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "model" / "tiny_qwen3_vl.yaml").model.tiny)
    return tiny_model_path(tiny_cache, TinySpec(**{**tiny, "warm_start_steps": 0}))


@pytest.fixture(scope="module")
def policy(qwen3_dir: Path):
    from facial_r1.models.policy import Policy
    from facial_r1.models.qwen3_vl import Qwen3VLFamily

    return Policy(family=Qwen3VLFamily(), path=str(qwen3_dir), dtype="float32")


@pytest.fixture(scope="module")
def qwen3_engine(policy):
    """Built as ``rollout=vllm`` builds it: over the folder the policy was loaded from, in the policy's dtype."""
    from facial_r1.rollout.vllm_engine import VLLMEngine

    return VLLMEngine.from_policy(policy, max_model_len=2048, kv_cache_gib=0.25)


@pytest.fixture(scope="module")
def qwen3_prompts(policy, face_samples):
    images = [image for image, _ in face_samples[: len(TEXTS)]]
    prompts = [RolloutPrompt(policy.family.chat_text(t), im) for t, im in zip(TEXTS, images, strict=True)]
    return prompts, policy.encode_prompts(images, TEXTS)


def _max_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    return float(((a - b) * mask).abs().max())


def test_qwen3_vl_greedy_is_token_identical_to_the_hf_engine(qwen3_engine, policy, qwen3_prompts):
    prompts, batch = qwen3_prompts
    assert qwen3_engine.stop_ids == sorted(policy.stop_ids)
    assert qwen3_engine.suppress_ids == sorted(policy.suppress_ids)
    params = SamplingParams.greedy(max_new_tokens=32)
    ours, ref = qwen3_engine.generate(prompts, params), policy.generate(batch, params)
    assert torch.equal(ours.completion_ids, ref.completion_ids)
    assert torch.equal(ours.completion_mask, ref.completion_mask)
    assert ours.texts == ref.texts
    assert _max_diff(ours.logprobs, ref.logprobs, ref.completion_mask) < LOGPROB_TOL


def test_qwen3_vl_sync_follows_the_policy_and_restores(qwen3_engine, policy, qwen3_prompts):
    prompts, batch = qwen3_prompts
    params = SamplingParams.greedy(max_new_tokens=24)
    model = policy.model
    original = {k: v.clone() for k, v in model.state_dict().items()}
    before = qwen3_engine.generate(prompts, params)
    gen = torch.Generator().manual_seed(0)
    try:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.is_floating_point() and p.numel() > 1 and "language_model" in name:
                    p.add_(torch.randn(p.shape, generator=gen) * 0.05)
        qwen3_engine.sync(policy)
        ours, ref = qwen3_engine.generate(prompts, params), policy.generate(batch, params)
        assert not torch.equal(ref.completion_ids, before.completion_ids), "the perturbation changed nothing"
        assert torch.equal(ours.completion_ids, ref.completion_ids)
        assert _max_diff(ours.logprobs, ref.logprobs, ref.completion_mask) < LOGPROB_TOL
    finally:
        model.load_state_dict(original)
        qwen3_engine.sync(policy)
    assert torch.equal(qwen3_engine.generate(prompts, params).completion_ids, before.completion_ids)
