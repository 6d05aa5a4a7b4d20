"""The ``hf`` rollout engine: a prefix-shared KV-cache decode loop on the policy's own module (no second copy).

The vision tower and the prompt prefill run once per prompt; the KV cache is then expanded to the G continuations
(no G-fold repetition of image or prompt) and moved into buffers sized for prompt + ``max_new_tokens``, written in
place at each step (:mod:`facial_r1.models.kv_cache`). Positions come from the policy's family, so the loop is the
same for every family.
"""

from __future__ import annotations

import torch

from facial_r1.models.adapter import PromptBatch, Rollout, SamplingParams
from facial_r1.models.sampling import sample_next
from facial_r1.rollout.types import RolloutPrompt


class HFEngine:
    """Samples with the policy's module; nothing to sync (it is the module being trained)."""

    # Its log-probs come from the trainer's own module and kernels: GRPO's rollout_correction=auto leaves TIS off.
    exact_policy_logprobs = True

    def __init__(self, policy):
        self.policy = policy

    def generate(
        self, prompts: list[RolloutPrompt], params: SamplingParams, encoded: PromptBatch | None = None
    ) -> Rollout:
        """``encoded``: the same prompts already encoded by the policy (GRPO encodes them for scoring anyway)."""
        if encoded is None:
            encoded = self.policy.encode_chat([p.chat_text for p in prompts], [p.image for p in prompts])
        return decode(self.policy, encoded, params)

    def sync(self, policy) -> None:
        """Nothing to do: this engine samples from the module the optimizer updates."""

    def sleep(self) -> None:
        """Nothing to free: the engine's memory is the policy's."""


@torch.no_grad()
def decode(
    policy, batch: PromptBatch, params: SamplingParams, model: torch.nn.Module | None = None
) -> Rollout:
    """Sample ``params.num_samples`` completions per prompt of ``batch`` with ``model`` (default: the policy's)."""
    from facial_r1.models.kv_cache import preallocate

    model = model or policy.model
    device = policy.device
    batch = batch.to(device)
    inputs = batch.inputs
    G = params.num_samples
    prompt_index = torch.arange(batch.num_prompts, device=device).repeat_interleave(G)
    last_logits, cache = policy.prefill(model, inputs)
    policy.select_cache(cache, prompt_index)
    preallocate(cache, params.max_new_tokens)
    logits = last_logits[prompt_index]
    prompt_mask = inputs["attention_mask"][prompt_index]
    P = prompt_mask.shape[1]
    attn_buffer = torch.ones(
        (prompt_mask.shape[0], P + params.max_new_tokens), dtype=prompt_mask.dtype, device=device
    )
    attn_buffer[:, :P] = prompt_mask
    next_pos = policy.family.next_positions(inputs)[prompt_index]
    seeds = params.seeds_for(batch.num_prompts) if params.do_sample else None
    generators = None if seeds is None else [torch.Generator(device).manual_seed(s) for s in seeds]
    N = prompt_index.numel()
    stop = torch.tensor(policy.stop_ids, device=device)
    finished = torch.zeros(N, dtype=torch.bool, device=device)
    tokens, logps = [], []
    for t in range(params.max_new_tokens):
        policy.mask_unsampled(logits, float("-inf"))
        tok, lp = sample_next(
            logits,
            temperature=params.temperature,
            top_p=params.top_p,
            do_sample=params.do_sample,
            generators=generators,
        )
        tok = torch.where(finished, torch.full_like(tok, policy.pad_id), tok)
        tokens.append(tok)
        logps.append(torch.where(finished, torch.zeros_like(lp), lp))
        finished = finished | torch.isin(tok, stop)
        done = bool(finished.all())
        if (
            policy.decode_sync is not None
        ):  # sharded: keep stepping (emitting padding) until every rank is done
            done = policy.decode_sync(done)
        if done or t == params.max_new_tokens - 1:
            break
        out = model(
            input_ids=tok[:, None],
            attention_mask=attn_buffer[:, : P + t + 1],
            position_ids=policy.family.text_positions(next_pos + t, 1),
            **{policy.cache_kwarg: cache},
            use_cache=True,
        )
        logits = out.logits[:, -1]
    ids = torch.stack(tokens, dim=1)
    mask, truncated = policy.completion_mask(ids)
    texts = policy.tokenizer.batch_decode(
        ids * mask.long() + policy.pad_id * (1 - mask.long()), skip_special_tokens=True
    )
    rollout = Rollout(
        prompt_index=prompt_index,
        completion_ids=ids,
        completion_mask=mask,
        logprobs=torch.stack(logps, dim=1) * mask,
        truncated=truncated,
        texts=texts,
    )
    return rollout
