"""The Qwen2.5-VL adapter on the tiny model: batching, rollout log-probs, prefix sharing, LoRA, reference, export.

The tiny model has a random vision tower here (``warm_start_steps=0``): these tests check mechanics, not quality.
Fixtures (``make_adapter``, ``tiny_model_dir``, ``face_samples``) live in conftest.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from facial_r1.models.adapter import PromptBatch, SamplingParams
from facial_r1.models.qwen2_5_vl import Qwen25VLAdapter, expand_prompt_inputs

TEXTS = [
    "What emotion is shown?",
    "Cite AUs in <think>, then the emotion in <answer>, one of: anger, disgust, fear, happiness, sadness, surprise.",
    "Which face is this? Cite AUs in <think>.",
    "Emotion?",
]
TARGETS = [
    "<think>Cheeks raised (AU6), lip corners pulled (AU12).</think><answer>happiness</answer>",
    "<think>Brows lowered (AU4).</think><answer>anger</answer>",
]
SAMPLED = SamplingParams(max_new_tokens=12, temperature=0.7, top_p=0.9, num_samples=3, seed=0)


@pytest.fixture(scope="module")
def adapter(make_adapter) -> Qwen25VLAdapter:
    """A read-only adapter (full fine-tuning mode) for tests that never update weights."""
    return make_adapter()


def prompts(adapter: Qwen25VLAdapter, samples, n: int, offset: int = 0) -> PromptBatch:
    rows = samples[offset : offset + n]
    return adapter.encode_prompts([im for im, _ in rows], TEXTS[offset : offset + n])


def grid_rows(batch: PromptBatch) -> list[int]:
    return batch.inputs["image_grid_thw"].prod(dim=-1).tolist()


def sft_step(adapter: Qwen25VLAdapter, samples, lr: float = 1e-2) -> float:
    """One AdamW step on the SFT loss of two samples; returns the loss."""
    params = [p for p in adapter.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    rows = samples[:2]
    batch = adapter.encode_sft([im for im, _ in rows], TEXTS[:2], TARGETS)
    loss, _ = adapter.sft_loss(batch)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def trainable_names(module: torch.nn.Module) -> set[str]:
    return {name for name, p in module.named_parameters() if p.requires_grad}


# --------------------------------------------------------------------------- batching and rollouts


def test_batched_greedy_matches_one_by_one(adapter, face_samples):
    batch = prompts(adapter, face_samples, 3)
    lengths = batch.inputs["attention_mask"].sum(dim=1).tolist()
    assert len(set(lengths)) == 3, "prompts should differ in length (left padding exercised)"
    assert len(set(grid_rows(batch))) >= 2, "images should differ in size"
    params = SamplingParams.greedy(12)
    together = adapter.generate(batch, params)
    for i in range(3):
        alone = adapter.generate(prompts(adapter, face_samples, 1, offset=i), params)
        n = int(alone.completion_mask[0].sum())
        assert int(together.completion_mask[i].sum()) == n
        assert together.completion_ids[i, :n].tolist() == alone.completion_ids[0, :n].tolist()
        assert together.texts[i] == alone.texts[0]


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_recomputed_logprobs_match_rollout(make_adapter, face_samples, shared_prefix):
    adapter = make_adapter(shared_prefix=shared_prefix)
    batch = prompts(adapter, face_samples, 2)
    rollout = adapter.generate(batch, SAMPLED)
    assert rollout.completion_ids.shape[0] == 2 * SAMPLED.num_samples
    assert rollout.prompt_index.tolist() == [0, 0, 0, 1, 1, 1]
    assert len({tuple(r) for r in rollout.completion_ids.tolist()}) > 1, "G samples should differ"
    with torch.no_grad():
        logp, entropy = adapter.completion_logprobs(
            batch,
            rollout.completion_ids,
            rollout.prompt_index,
            temperature=SAMPLED.temperature,
            with_entropy=True,
        )
    mask = rollout.completion_mask.bool()
    assert logp.shape == rollout.logprobs.shape
    assert (logp - rollout.logprobs)[mask].abs().max().item() < 1e-4
    assert torch.isfinite(entropy[mask]).all()


def test_sampling_seed_makes_rollouts_reproducible(adapter, face_samples):
    batch = prompts(adapter, face_samples, 2)
    a, b = adapter.generate(batch, SAMPLED), adapter.generate(batch, SAMPLED)
    assert torch.equal(a.completion_ids, b.completion_ids) and a.texts == b.texts
    other = SamplingParams(**{**SAMPLED.__dict__, "seed": 1})
    assert not torch.equal(adapter.generate(batch, other).completion_ids, a.completion_ids)


def test_a_prompt_samples_the_same_completions_in_any_batch(adapter, face_samples):
    """Per-prompt seeds: prompt b's G samples depend on its seed only, not on the prompts batched with it (what makes
    a DDP run, whose ranks hold half the prompts each, reproduce the single-process rollout)."""
    params = SamplingParams(max_new_tokens=10, temperature=1.0, num_samples=3, prompt_seeds=(11, 22, 33))
    together = adapter.generate(prompts(adapter, face_samples, 3), params)
    alone = adapter.generate(
        prompts(adapter, face_samples, 1, offset=1),
        SamplingParams(**{**params.__dict__, "prompt_seeds": (22,)}),
    )
    assert together.texts[3:6] == alone.texts
    with pytest.raises(ValueError, match="2 prompt seeds for 3 prompts"):
        params.__class__(prompt_seeds=(1, 2)).seeds_for(3)


def test_sampling_with_generators_draws_from_the_distribution():
    """The exponential race used with per-prompt generators is an exact sample: frequencies match the softmax."""
    from facial_r1.models.sampling import sample_next

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(4000, 1)
    gens = [torch.Generator().manual_seed(i) for i in range(8)]  # 8 blocks of 500 rows
    tokens, logp = sample_next(logits, temperature=1.0, top_p=1.0, do_sample=True, generators=gens)
    freq = torch.bincount(tokens, minlength=4).float() / len(tokens)
    assert torch.allclose(freq, logits[0].softmax(-1), atol=0.025), freq
    assert torch.allclose(logp, logits.log_softmax(-1).gather(-1, tokens[:, None]).squeeze(-1))
    top = sample_next(logits, temperature=1.0, top_p=0.5, do_sample=True, generators=gens)[0]
    assert set(top.tolist()) == {0}  # p(token 0) = 0.64 >= top_p: nucleus keeps only it


def test_synced_decoding_keeps_stepping_without_changing_completions(adapter, face_samples):
    """Under sharding a finished rank keeps decoding until every rank is done (its rows emit padding): the hook
    ``decode_sync`` returning False must change the number of steps, never the completions."""
    batch = prompts(adapter, face_samples, 2)
    params = SamplingParams(max_new_tokens=40, temperature=1.0, num_samples=2, seed=3)
    alone = adapter.generate(batch, params)
    calls: list[bool] = []
    adapter.decode_sync = lambda done: calls.append(done) or False  # another rank is never done
    try:
        synced = adapter.generate(batch, params)
    finally:
        adapter.decode_sync = None
    assert synced.completion_ids.shape[1] == params.max_new_tokens and len(calls) == params.max_new_tokens
    assert synced.texts == alone.texts
    assert torch.equal(synced.completion_mask.sum(1), alone.completion_mask.sum(1))
    assert torch.equal(synced.truncated, alone.truncated)


def test_rollout_runs_vision_and_prefill_once_per_prompt(adapter, face_samples):
    B, G = 2, 4
    batch = prompts(adapter, face_samples, B)
    vision_calls: list[int] = []
    lm_batches: list[tuple[int, int]] = []

    def on_vision(module, args, output):
        vision_calls.append(1)

    def on_language_model(module, args, kwargs):
        embeds = kwargs.get("inputs_embeds")
        x = embeds if embeds is not None else kwargs["input_ids"]
        lm_batches.append((x.shape[0], x.shape[1]))

    hooks = [
        adapter.base_model.model.visual.register_forward_hook(on_vision),
        adapter.base_model.model.language_model.register_forward_pre_hook(
            on_language_model, with_kwargs=True
        ),
    ]
    try:
        rollout = adapter.generate(batch, SamplingParams(max_new_tokens=5, num_samples=G, seed=0))
        assert len(vision_calls) == 1, "the vision tower must run once for B prompts x G samples"
        prompt_len = batch.inputs["input_ids"].shape[1]
        assert lm_batches[0] == (B, prompt_len), "prefill processes B prompt rows, not B*G"
        assert all(b == (B * G, 1) for b in lm_batches[1:]), "decoding steps run one token for all B*G rows"
        assert len(lm_batches) == rollout.completion_ids.shape[1]

        # The loss-time recomputation shares the prefix the same way.
        vision_calls.clear()
        lm_batches.clear()
        with torch.no_grad():
            adapter.completion_logprobs(batch, rollout.completion_ids, rollout.prompt_index)
        assert len(vision_calls) == 1
        assert lm_batches[0] == (B, prompt_len)
        assert lm_batches[1] == (B * G, rollout.completion_ids.shape[1] - 1)
    finally:
        for h in hooks:
            h.remove()


def test_vision_tokens_are_never_sampled(adapter, face_samples):
    """Even when the (hooked) model prefers vision tokens by a wide margin, the sampler never emits them."""
    suppress = torch.tensor(adapter.suppress_ids)
    assert len(set(adapter.suppress_ids)) == 4 and adapter.tokenizer.unk_token_id not in adapter.suppress_ids

    def boost(module, args, output):
        return output.index_fill(-1, suppress.to(output.device), 30.0)

    batch = prompts(adapter, face_samples, 2)
    hook = adapter.base_model.lm_head.register_forward_hook(boost)
    try:
        with torch.no_grad():
            logits = adapter.model(**batch.inputs).logits[:, -1]
        assert bool(torch.isin(logits.argmax(-1), suppress).all()), "the hook should make vision tokens win"
        params = SamplingParams(max_new_tokens=24, temperature=5.0, num_samples=8, seed=1)
        rollout = adapter.generate(batch, params)
    finally:
        hook.remove()
    assert rollout.num_tokens > 100
    assert not bool(torch.isin(rollout.completion_ids, suppress).any())
    # And without the hook, at a high temperature over many tokens.
    rollout = adapter.generate(batch, params)
    assert not bool(torch.isin(rollout.completion_ids, suppress).any())


def test_shared_prefix_logits_equal_full_reforward(adapter, face_samples):
    """M-RoPE positions and mm_token_type_ids continued over completions: both paths give the same logits."""
    batch = prompts(adapter, face_samples, 3)
    rollout = adapter.generate(batch, SAMPLED)
    ids, index = rollout.completion_ids, rollout.prompt_index
    with torch.no_grad():

        def logits(path, completion):  # the paths return consecutive segments along the completion
            return torch.cat(path(adapter.model, batch.inputs, completion, index), dim=1)

        shared = logits(adapter._completion_logits_shared, ids)
        full = logits(adapter._completion_logits_full, ids)
        first_shared = logits(adapter._completion_logits_shared, ids[:, :1])
        first_full = logits(adapter._completion_logits_full, ids[:, :1])
    assert shared.shape == full.shape == (*ids.shape, full.shape[-1])
    mask = rollout.completion_mask.bool()
    assert (shared - full)[mask].abs().max().item() < 1e-4
    assert (first_shared - first_full).abs().max().item() < 1e-4


def test_expand_prompt_inputs_moves_pixel_blocks_with_rows(adapter, face_samples):
    batch = prompts(adapter, face_samples, 2)  # 112x112 and 112x140 -> different numbers of pixel rows
    inputs = batch.inputs
    n0, n1 = grid_rows(batch)
    assert n0 != n1
    pixels = inputs["pixel_values"]
    block0, block1 = pixels[:n0], pixels[n0 : n0 + n1]
    out = expand_prompt_inputs(inputs, torch.tensor([1, 0, 1]))
    assert torch.equal(out["pixel_values"], torch.cat([block1, block0, block1]))
    assert torch.equal(out["image_grid_thw"], inputs["image_grid_thw"][[1, 0, 1]])
    for key in ("input_ids", "attention_mask", "mm_token_type_ids"):
        assert torch.equal(out[key], inputs[key][[1, 0, 1]])
    assert torch.equal(out["position_ids"], inputs["position_ids"][:, [1, 0, 1]])


# --------------------------------------------------------------------------- trainable parts and reference


def test_lora_trains_language_model_only(make_adapter):
    adapter = make_adapter(lora={"r": 4, "alpha": 8})
    names = trainable_names(adapter.model)
    assert names and all("lora_" in n for n in names)
    assert not any(".visual." in n for n in names), "no LoRA parameter may sit in the vision tower"
    assert any("language_model" in n for n in names)
    assert not any("lora" in n for n, _ in adapter.base_model.model.visual.named_modules())
    assert adapter.reference_mode == "lora_disabled"


def test_freeze_vision_leaves_no_trainable_vision_parameter(make_adapter):
    adapter = make_adapter(freeze_vision=True)
    names = trainable_names(adapter.model)
    assert not any(".visual." in n for n in names)
    assert any("language_model" in n for n in names)
    assert not trainable_names(adapter.base_model.model.visual)


def test_reference_option_is_validated(make_adapter):
    with pytest.raises(ValueError, match="lora_disabled needs model.lora"):
        make_adapter(reference="lora_disabled")
    with pytest.raises(ValueError, match="allowed values are auto, lora_disabled, frozen_copy"):
        make_adapter(reference="frozen")
    assert make_adapter().reference_mode == "frozen_copy"


def _policy_and_reference_logprobs(adapter, batch, rollout) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        policy, _ = adapter.completion_logprobs(batch, rollout.completion_ids, rollout.prompt_index)
        with adapter.reference() as ref:
            reference, _ = adapter.completion_logprobs(
                batch, rollout.completion_ids, rollout.prompt_index, model=ref
            )
    return policy, reference


@pytest.mark.parametrize(
    "kwargs", [{"lora": {"r": 4, "alpha": 8}}, {"reference": "frozen_copy"}], ids=["lora", "frozen_copy"]
)
def test_reference_policy_unchanged_by_an_update(make_adapter, face_samples, kwargs):
    adapter = make_adapter(**kwargs)
    adapter.init_reference()  # no-op for LoRA; the snapshot for full fine-tuning
    batch = prompts(adapter, face_samples, 2)
    rollout = adapter.generate(batch, SamplingParams(max_new_tokens=8, num_samples=2, seed=0))
    mask = rollout.completion_mask.bool()
    policy0, ref0 = _policy_and_reference_logprobs(adapter, batch, rollout)
    assert (policy0 - ref0)[mask].abs().max().item() < 1e-5, "before any update policy == reference"
    sft_step(adapter, face_samples)
    policy1, ref1 = _policy_and_reference_logprobs(adapter, batch, rollout)
    assert (ref1 - ref0)[mask].abs().max().item() < 1e-6, "the reference must not move"
    assert (policy1 - policy0)[mask].abs().max().item() > 1e-3, "the policy must move"


# --------------------------------------------------------------------------- export


def _logits(model: torch.nn.Module, batch: PromptBatch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch.inputs).logits


def test_export_reload_gives_identical_outputs(make_adapter, face_samples, tmp_path):
    from transformers import AutoModelForImageTextToText

    adapter = make_adapter()
    sft_step(adapter, face_samples)  # weights that differ from the build
    export = adapter.export(tmp_path / "model", extra_files={"facial_r1_export.json": {"stage": "sft"}})
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "chat_template.jinja",
        "facial_r1_export.json",
    ):
        assert (export / name).is_file(), name
    batch = prompts(adapter, face_samples, 3)
    plain = AutoModelForImageTextToText.from_pretrained(export, dtype=torch.float32)
    assert torch.equal(_logits(plain, batch), _logits(adapter.model, batch))

    reloaded = Qwen25VLAdapter(path=str(export), dtype="float32")
    batch2 = prompts(reloaded, face_samples, 3)
    for key, value in batch.inputs.items():  # the exported processor encodes exactly as the original
        assert torch.equal(batch2.inputs[key], value), key
    greedy = SamplingParams.greedy(16)
    a, b = adapter.generate(batch, greedy), reloaded.generate(batch2, greedy)
    assert torch.equal(a.completion_ids, b.completion_ids)
    assert a.texts == b.texts


def test_lora_export_is_merged_and_training_continues(make_adapter, face_samples, tiny_model_dir, tmp_path):
    from transformers import AutoModelForImageTextToText, Qwen2_5_VLForConditionalGeneration

    adapter = make_adapter(lora={"r": 4, "alpha": 8})
    sft_step(adapter, face_samples)  # LoRA B matrices leave zero: the merge changes the weights
    names_before = trainable_names(adapter.model)
    lora_before = {n: p.detach().clone() for n, p in adapter.model.named_parameters() if p.requires_grad}
    export = adapter.export(tmp_path / "model")

    saved = load_file(export / "model.safetensors")
    assert not any("lora_" in k or "base_layer" in k for k in saved)
    assert set(saved) == set(load_file(Path(tiny_model_dir) / "model.safetensors"))
    plain = AutoModelForImageTextToText.from_pretrained(export, dtype=torch.float32)
    assert type(plain) is Qwen2_5_VLForConditionalGeneration
    batch = prompts(adapter, face_samples, 3)
    policy_logits = _logits(adapter.model, batch)
    assert (_logits(plain, batch) - policy_logits).abs().max().item() < 1e-4
    reloaded = Qwen25VLAdapter(path=str(export), dtype="float32")
    greedy = SamplingParams.greedy(16)
    assert torch.equal(
        adapter.generate(batch, greedy).completion_ids, reloaded.generate(batch, greedy).completion_ids
    )

    # The live adapter is untouched by the export (merged on a copy) and keeps training.
    assert trainable_names(adapter.model) == names_before
    for n, p in adapter.model.named_parameters():
        if n in lora_before:
            assert torch.equal(p, lora_before[n]), n
    assert torch.isfinite(torch.tensor(sft_step(adapter, face_samples)))
    assert any(
        not torch.equal(p, lora_before[n]) for n, p in adapter.model.named_parameters() if n in lora_before
    )
    assert (_logits(adapter.model, batch) - policy_logits).abs().max().item() > 1e-4


# --------------------------------------------------------------------------- tiny build and processor


def _assert_same_folder_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()


def test_tiny_build_is_deterministic(tiny_model_dir, tmp_path):
    from facial_r1.models.tiny import TinySpec, tiny_model_path

    again = tiny_model_path(tmp_path / "other_cache", TinySpec(warm_start_steps=0))
    assert again != tiny_model_dir
    _assert_same_folder_weights(tiny_model_dir, again)


def test_a_ten_step_warm_start_builds(tmp_path):
    """OneCycleLR divides by zero at exactly 10 steps with a 10 % warm-up; the warm start picks another there."""
    from facial_r1.models.tiny import TinySpec, build_tiny_model

    out = build_tiny_model(tmp_path / "tiny", TinySpec(warm_start_steps=10, warm_start_images=16))
    assert (out / "warm_start.json").is_file()


def test_tiny_build_with_warm_start_is_deterministic(tiny_model_dir, tmp_path):
    from facial_r1.models.tiny import TinySpec, tiny_model_path

    spec = TinySpec(warm_start_steps=5, warm_start_images=32)
    first = tiny_model_path(tmp_path / "a", spec)
    second = tiny_model_path(tmp_path / "b", spec)
    _assert_same_folder_weights(first, second)
    assert (first / "warm_start.json").is_file()
    warm, cold = load_file(first / "model.safetensors"), load_file(tiny_model_dir / "model.safetensors")
    visual = [k for k in warm if "visual" in k]
    assert any(not torch.equal(warm[k], cold[k]) for k in visual), "the warm start should change the tower"
    text = [k for k in warm if "language_model" in k]
    assert all(torch.equal(warm[k], cold[k]) for k in text), "the warm start must leave the text model alone"


def test_load_processor_is_image_only(tiny_model_dir):
    from transformers import AutoProcessor

    from facial_r1.models.processor import ImageOnlyQwen2_5_VLProcessor, load_processor

    processor = load_processor(tiny_model_dir)
    assert type(processor) is ImageOnlyQwen2_5_VLProcessor
    assert type(AutoProcessor.from_pretrained(str(tiny_model_dir))) is ImageOnlyQwen2_5_VLProcessor
    assert processor.image_token == "<|image_pad|>"
    assert processor.image_token_id == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert "torchvision" not in sys.modules


@pytest.mark.parametrize("kwargs", [{}, {"lora": {"r": 4, "alpha": 8}}], ids=["full", "lora"])
def test_shared_prefix_gradients_equal_full_reforward(make_adapter, face_samples, kwargs):
    """The policy gradient flows through the expanded KV cache exactly as through G separate forwards."""
    adapter = make_adapter(**kwargs)
    if kwargs.get("lora"):
        sft_step(adapter, face_samples)  # non-zero LoRA B, so A gets gradient too
    batch = prompts(adapter, face_samples, 2)
    rollout = adapter.generate(batch, SAMPLED)
    mask = rollout.completion_mask
    grads = []
    for shared in (True, False):
        adapter.shared_prefix = shared
        adapter.model.zero_grad(set_to_none=True)
        logp, _ = adapter.completion_logprobs(
            batch, rollout.completion_ids, rollout.prompt_index, temperature=SAMPLED.temperature
        )
        ((logp * mask).sum() / mask.sum()).backward()
        grads.append({n: p.grad.clone() for n, p in adapter.model.named_parameters() if p.grad is not None})
    shared_grads, full_grads = grads
    trainable = trainable_names(adapter.model)
    assert set(shared_grads) == set(full_grads)
    assert len(shared_grads) >= 0.9 * len(trainable), "nearly every trainable parameter gets a gradient"
    assert any(".visual." in n for n in shared_grads) == (not kwargs), "the vision tower learns in full FT"
    for name, g in full_grads.items():
        scale = g.abs().max().item() + 1e-8
        assert (shared_grads[name] - g).abs().max().item() <= 1e-4 * max(1.0, scale), name


def test_activation_checkpointing_recomputes_the_same_logprobs_with_gradients(make_adapter, face_samples):
    adapter = make_adapter(activation_checkpointing=True)
    adapter.model.train()  # checkpointing is only active in training mode
    batch = prompts(adapter, face_samples, 2)
    rollout = adapter.generate(batch, SAMPLED)
    logp, _ = adapter.completion_logprobs(
        batch, rollout.completion_ids, rollout.prompt_index, temperature=SAMPLED.temperature
    )
    mask = rollout.completion_mask.bool()
    assert (logp.detach() - rollout.logprobs)[mask].abs().max().item() < 1e-4
    logp[mask].mean().backward()
    assert adapter.base_model.model.language_model.layers[0].mlp.up_proj.weight.grad is not None


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_logprobs_of_micro_batches_equal_the_whole_batch(make_adapter, face_samples, shared_prefix):
    """GRPO scores micro-batches of completions (any subset of rows, groups split across them)."""
    adapter = make_adapter(shared_prefix=shared_prefix)
    batch = prompts(adapter, face_samples, 2)
    rollout = adapter.generate(batch, SAMPLED)
    ids, pidx, mask = rollout.completion_ids, rollout.prompt_index, rollout.completion_mask.bool()
    with torch.no_grad():
        whole, _ = adapter.completion_logprobs(batch, ids, pidx, temperature=SAMPLED.temperature)
        for rows in ([0, 1], [2, 3, 4], [5], [5, 0, 3]):
            idx = torch.tensor(rows)
            part, _ = adapter.completion_logprobs(batch, ids[idx], pidx[idx], temperature=SAMPLED.temperature)
            assert (part - whole[idx])[mask[idx]].abs().max().item() < 1e-4, rows


def test_pixel_bounds_override_the_folder(make_adapter, face_samples):
    """model.min_pixels / max_pixels (the 3B/7B presets) replace the folder's image-size bounds."""
    image = face_samples[0][0].resize((224, 224))
    default = make_adapter()
    pinned = default.encode_prompts([image], ["Emotion?"])  # tiny folder: pinned to 112 x 112
    assert pinned.inputs["image_grid_thw"].tolist() == [[1, 8, 8]]
    free = make_adapter(min_pixels=3136, max_pixels=401408).encode_prompts([image], ["Emotion?"])
    assert free.inputs["image_grid_thw"].tolist() == [[1, 16, 16]]
    image_pad = free.inputs["input_ids"] == default.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int(image_pad.sum()) == 16 * 16 // 4, "one token per 2x2 merged patch"


def test_preallocated_kv_cache_changes_no_rollout(adapter, face_samples, monkeypatch):
    """``generate`` decodes into preallocated KV buffers (``kv_cache.preallocate``, written in place): the same
    tokens and log-probs, bit for bit, as the ``DynamicCache`` it replaces (``torch.cat`` at every step)."""
    import facial_r1.models.kv_cache as kv_cache

    batch = prompts(adapter, face_samples, 2)
    switched: list[bool] = []
    preallocate = kv_cache.preallocate

    def spy(cache, extra_tokens):
        out = preallocate(cache, extra_tokens)
        switched.append(all(isinstance(layer, kv_cache.PreallocatedLayer) for layer in out.layers))
        return out

    monkeypatch.setattr(kv_cache, "preallocate", spy)
    new = adapter.generate(batch, SAMPLED)
    assert switched == [True]
    monkeypatch.setattr(kv_cache, "preallocate", lambda cache, extra_tokens: cache)  # the DynamicCache path
    old = adapter.generate(batch, SAMPLED)
    assert torch.equal(new.completion_ids, old.completion_ids) and new.texts == old.texts
    assert torch.equal(new.logprobs, old.logprobs)


@pytest.mark.parametrize("checkpointing", [False, True], ids=["shared_prefix", "full_reforward"])
def test_logits_exist_only_at_completion_positions_in_micro_batches(
    make_adapter, face_samples, checkpointing
):
    """A long prompt (~1.5k tokens) and 8-token completions: the lm_head never sees a prompt position beyond the
    last, nor more rows than the micro-batch - in the log-prob passes (both paths) and in the SFT loss."""
    adapter = make_adapter(activation_checkpointing=checkpointing, system_prompt="Describe the face. " * 300)
    sizes = []
    hook = adapter.base_model.get_output_embeddings().register_forward_hook(
        lambda _m, _i, out: sizes.append(tuple(out.shape[:2]))
    )
    try:
        images = [img for img, _ in face_samples[:2]]
        batch = adapter.encode_prompts(images, ["What emotion?"] * 2)
        prompt_len = batch.inputs["input_ids"].shape[1]
        assert prompt_len > 1000
        # completions never hold vision tokens (the engines suppress them; one would ask the re-forward for an image)
        allowed = torch.tensor([i for i in range(200) if i not in set(adapter.suppress_ids)])
        ids = allowed[torch.randint(0, len(allowed), (6, 8), generator=torch.Generator().manual_seed(0))]
        index = torch.tensor([0, 0, 0, 1, 1, 1])
        with torch.no_grad():
            whole, _ = adapter.completion_logprobs(batch, ids, index)
            sizes.clear()
            chunked, _ = adapter.completion_logprobs(batch, ids, index, micro_batch_size=2)
        torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)
        assert max(r for r, _ in sizes) <= 2  # rows per lm_head call: the micro-batch
        assert (
            max(t for _, t in sizes) <= ids.shape[1]
        )  # positions per row: the completion's, never the prompt's
        sizes.clear()
        sft = adapter.encode_sft(
            images, ["What emotion?"] * 2, ["<think>AU12</think><answer>happy</answer>"] * 2
        )
        adapter.sft_loss(sft)
        target_len = int((sft.labels != -100).sum(dim=1).max())
        assert sizes == [
            (2, target_len + 1)
        ]  # the targets (+ the position predicting the first), not 1k+ prompt
    finally:
        hook.remove()


def test_sft_loss_equals_the_full_sequence_cross_entropy(make_adapter, face_samples):
    adapter = make_adapter()
    images = [img for img, _ in face_samples[:3]]
    sft = adapter.encode_sft(
        images, ["What emotion?", "Which AUs?", "Emotion"], ["<answer>a</answer>", "b", "AU12 AU6 ok"]
    )
    loss, n = adapter.sft_loss(sft)
    with torch.no_grad():
        logits = adapter.model(**sft.inputs, use_cache=False).logits[:, :-1]
    labels = sft.labels[:, 1:]
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
    assert n == int((labels != -100).sum())
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)


PLAIN_LOAD = """
import json, sys
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer
folder = sys.argv[1]
model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
image_processor = AutoImageProcessor.from_pretrained(folder)
tokenizer = AutoTokenizer.from_pretrained(folder)
try:
    processor = type(AutoProcessor.from_pretrained(folder)).__name__
except ImportError as err:  # no torchvision: transformers names it instead of returning a bare tokenizer
    processor = "ImportError: " + str(err).split(chr(10))[1]
messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Emotion?"}]}]
text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
grid = image_processor(images=[Image.new("RGB", (112, 112), (120, 90, 60))], return_tensors="pt")
n = int(grid["image_grid_thw"].prod()) // image_processor.merge_size**2
text = text.replace("<|image_pad|>", "<|image_pad|>" * n)
ids = tokenizer([text], return_tensors="pt")
# what Qwen2_5_VLProcessor adds: which tokens are image tokens (M-RoPE positions depend on it)
ids["mm_token_type_ids"] = (ids["input_ids"] == tokenizer.convert_tokens_to_ids("<|image_pad|>")).long()
with torch.no_grad():
    out = model(**ids, pixel_values=grid["pixel_values"], image_grid_thw=grid["image_grid_thw"])
print(json.dumps({"model": type(model).__name__, "processor": processor, "image_processor": type(image_processor).__name__,
                  "text": text, "last_logits": out.logits[0, -1, :8].tolist(),
                  "torchvision": "torchvision" in sys.modules}))
"""


def test_export_loads_with_plain_auto_classes_in_a_fresh_process(make_adapter, tmp_path):
    """No project import in the loading process: the export is a standard Qwen2.5-VL folder."""
    import json
    import subprocess
    from importlib.util import find_spec

    from PIL import Image

    adapter = make_adapter()
    folder = adapter.export(tmp_path / "export")
    for name in ("processor_config.json", "tokenizer_config.json"):
        assert json.loads((folder / name).read_text())["processor_class"] == "Qwen2_5_VLProcessor"
    assert json.loads((folder / "preprocessor_config.json").read_text())["image_processor_type"]
    proc = subprocess.run(
        [sys.executable, "-c", PLAIN_LOAD, str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["model"] == "Qwen2_5_VLForConditionalGeneration"
    if find_spec("torchvision") is None:
        assert "Torchvision" in out["processor"]  # a clear error, not a silently returned tokenizer
    else:
        assert out["processor"] == "Qwen2_5_VLProcessor"
    # the same prompt text and the same logits as the project's own encoding of that image
    batch = adapter.encode_prompts([Image.new("RGB", (112, 112), (120, 90, 60))], ["Emotion?"])
    assert out["text"] == adapter.tokenizer.decode(batch.inputs["input_ids"][0])
    with torch.no_grad():
        logits = adapter.model(**batch.inputs).logits[0, -1, :8]
    torch.testing.assert_close(torch.tensor(out["last_logits"]), logits, rtol=1e-4, atol=1e-4)


def test_chat_template_json_is_honoured(tiny_model_dir, tmp_path):
    import json
    import shutil

    from facial_r1.models.processor import load_processor

    folder = tmp_path / "legacy"
    shutil.copytree(tiny_model_dir, folder)
    template = (folder / "chat_template.jinja").read_text()
    (folder / "chat_template.jinja").unlink()
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer_config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": "LEGACY " + template}))
    assert load_processor(folder).chat_template.startswith("LEGACY ")


def test_building_the_tiny_model_leaves_the_callers_rng_alone(tmp_path):
    """A cold cache must not change what a run samples or how LoRA initialises (the build seeds torch itself)."""
    from facial_r1.models.tiny import TinySpec, tiny_model_path

    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    tiny_model_path(tmp_path, TinySpec(warm_start_steps=0, seed=7))
    assert torch.equal(torch.rand(3), expected)
