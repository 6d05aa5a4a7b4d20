"""The vLLM rollout engine against the project's ``hf`` engine (``Qwen25VLAdapter``) on the tiny model.

Run in the vLLM environment: ``OMP_NUM_THREADS=1 .venv-vllm/bin/python -m pytest tests/vllm_rollout -m vllm -x -q -n 0``.
Skipped where vLLM is not installed (the main environment).
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("vllm")

from facial_r1.models.adapter import SamplingParams  # noqa: E402
from facial_r1.rollout.types import RolloutPrompt  # noqa: E402
from facial_r1.rollout.vllm_engine import folder_token_ids, sample_seeds  # noqa: E402

pytestmark = pytest.mark.vllm

LOGPROB_TOL = 1e-4  # float32 on both sides; measured max |diff| is ~1e-6


def masked_max_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    return float(((a - b) * mask).abs().max())


def test_token_ids_come_from_the_folder_and_equal_the_adapters(engine, hf_adapter, tiny_model_dir):
    assert engine.stop_ids == sorted(hf_adapter.stop_ids)
    assert engine.suppress_ids == sorted(hf_adapter.suppress_ids)
    assert engine.pad_id == hf_adapter.pad_id
    assert folder_token_ids(tiny_model_dir, hf_adapter.tokenizer) == (engine.stop_ids, engine.suppress_ids)
    assert not set(engine.allowed_ids) & set(engine.suppress_ids)


def test_prompt_token_ids_equal_encode_prompts(engine, prompt_set):
    from vllm import SamplingParams as VLLMSamplingParams

    prompts, batch = prompt_set
    requests = [{"prompt": p.chat_text, "multi_modal_data": {"image": p.image}} for p in prompts]
    outputs = engine.llm.generate(requests, VLLMSamplingParams(max_tokens=1), use_tqdm=False)
    for i, out in enumerate(outputs):
        row = batch.inputs["input_ids"][i][batch.inputs["attention_mask"][i].bool()].tolist()
        assert out.prompt_token_ids == row, f"prompt {i}: vLLM and the adapter tokenise differently"


def test_greedy_is_token_identical_to_the_hf_engine(engine, hf_adapter, prompt_set):
    prompts, batch = prompt_set
    params = SamplingParams.greedy(max_new_tokens=48)
    ours = engine.generate(prompts, params)
    ref = hf_adapter.generate(batch, params)
    assert torch.equal(ours.completion_ids, ref.completion_ids)
    assert torch.equal(ours.completion_mask, ref.completion_mask)
    assert torch.equal(ours.truncated, ref.truncated)
    assert ours.texts == ref.texts
    assert torch.equal(ours.prompt_index, ref.prompt_index)
    assert masked_max_diff(ours.logprobs, ref.logprobs, ref.completion_mask) < LOGPROB_TOL


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_match_the_policy(engine, hf_adapter, prompt_set, temperature):
    prompts, batch = prompt_set
    params = SamplingParams(max_new_tokens=40, temperature=temperature, num_samples=4, seed=11)
    ours = engine.generate(prompts, params)
    N = len(prompts) * 4
    assert ours.completion_ids.shape[0] == N and ours.prompt_index.tolist() == sum(
        ([b] * 4 for b in range(6)), []
    )
    with torch.no_grad():
        ref, _ = hf_adapter.completion_logprobs(
            batch, ours.completion_ids, ours.prompt_index, temperature=temperature
        )
    mask = ours.completion_mask
    assert masked_max_diff(ours.logprobs, ref, mask) < LOGPROB_TOL
    # Rollout conventions: pad and zero log-prob after the stop; the stop token is the last counted one.
    assert torch.all(ours.completion_ids[mask == 0] == engine.pad_id)
    assert torch.all(ours.logprobs[mask == 0] == 0)
    lengths = mask.sum(dim=1).long()
    for i in range(N):
        last = int(ours.completion_ids[i, lengths[i] - 1])
        assert (last in engine.stop_ids) != bool(ours.truncated[i]), f"row {i}: stop token vs truncated flag"
    # ~1000 sampled tokens from a random model: unblocked, the 4 vision ids would appear a few times.
    assert not torch.isin(ours.completion_ids, torch.tensor(engine.suppress_ids)).any()


def test_per_prompt_seeds_reproduce_and_ignore_the_rest_of_the_batch(engine, prompt_set):
    prompts, _ = prompt_set
    params = SamplingParams(max_new_tokens=24, temperature=1.0, num_samples=3, prompt_seeds=(5, 6, 7))
    first = engine.generate(prompts[:3], params)
    again = engine.generate(prompts[:3], params)
    assert torch.equal(first.completion_ids, again.completion_ids)
    # Prompt 2 alone with its seed 7 draws the same three completions as inside the batch.
    alone = engine.generate(
        prompts[2:3], SamplingParams(max_new_tokens=24, temperature=1.0, num_samples=3, prompt_seeds=(7,))
    )
    assert torch.equal(alone.completion_ids, first.completion_ids[6:9, : alone.completion_ids.shape[1]])
    # A prompt's G samples are different draws (seeds drawn from the prompt seed, not seed + g).
    assert len({tuple(r.tolist()) for r in first.completion_ids[:3]}) == 3
    assert len(set(sample_seeds(7, 8))) == 8 and sample_seeds(7, 8) == sample_seeds(7, 8)


def _perturbed_state(model, scale: float = 0.5) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        k: v + scale * v.float().std().nan_to_num(0.0) * torch.randn(v.shape, generator=generator)
        if v.is_floating_point() and v.numel() > 1
        else v.clone()
        for k, v in model.state_dict().items()
    }


def test_sync_follows_the_policy_and_restores(engine, hf_adapter, prompt_set):
    prompts, batch = prompt_set
    params = SamplingParams.greedy(max_new_tokens=32)
    model = hf_adapter.model
    original = {k: v.clone() for k, v in model.state_dict().items()}
    before = engine.generate(prompts, params)
    try:
        model.load_state_dict(_perturbed_state(model))
        engine.load_weights(model.state_dict().items())
        ours, ref = engine.generate(prompts, params), hf_adapter.generate(batch, params)
        assert not torch.equal(ref.completion_ids, before.completion_ids), "the perturbation changed nothing"
        assert torch.equal(ours.completion_ids, ref.completion_ids)
        assert masked_max_diff(ours.logprobs, ref.logprobs, ref.completion_mask) < LOGPROB_TOL
    finally:
        model.load_state_dict(original)
        engine.load_weights(model.state_dict().items())
    restored = engine.generate(prompts, params)
    assert torch.equal(restored.completion_ids, before.completion_ids)
    assert torch.equal(restored.completion_ids, hf_adapter.generate(batch, params).completion_ids)


def test_sync_resets_the_prefix_cache_for_a_long_prompt(engine, hf_adapter, face_samples, to_chat_text):
    """A ~620-token prompt cached under the old weights must not be reused after a sync.

    Control: loading the weights without the prefix-cache reset reuses the stale prompt KV and diverges from the
    policy - what ``sync`` exists to prevent - which shows the check below can fail.
    """
    from facial_r1.data.prompts import load_prompts

    image, record = face_samples[0]
    text = load_prompts()["full_v1"].user_text(record)
    prompt = [RolloutPrompt(to_chat_text(text), image)]
    batch = hf_adapter.encode_prompts([image], [text])
    assert batch.inputs["input_ids"].shape[1] > 400
    params = SamplingParams.greedy(max_new_tokens=24)
    model = hf_adapter.model
    original = {k: v.clone() for k, v in model.state_dict().items()}
    engine.generate(prompt, params)  # fills the prefix cache with the old weights' prompt KV
    try:
        model.load_state_dict(_perturbed_state(model))
        ref = hf_adapter.generate(batch, params)
        # control: weights in, encoder cache reset, prefix cache kept
        engine.llm.collective_rpc(
            "reload_weights", kwargs={"weights_iterator": iter(model.state_dict().items())}
        )
        engine.llm.llm_engine.reset_encoder_cache()
        stale = engine.generate(prompt, params)
        assert not torch.equal(stale.completion_ids, ref.completion_ids), "stale prefix cache not exercised"
        engine.load_weights(model.state_dict().items())
        fresh = engine.generate(prompt, params)
        assert torch.equal(fresh.completion_ids, ref.completion_ids)
    finally:
        model.load_state_dict(original)
        engine.load_weights(model.state_dict().items())
