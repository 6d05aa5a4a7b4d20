"""The family-neutral policy: the trained module and everything done to it.

A :class:`Policy` owns the Hugging Face module of any family (:mod:`facial_r1.models.qwen2_5_vl`, ...) and does what
training needs: load (a checkpoint folder, a previous stage's export or the tiny model), LoRA, the KL reference,
FSDP2 sharding and consolidation, the SFT loss, completion log-probs (with one prompt prefill shared by the G
completions of a group), and the export. Everything family-specific - chat text, image tensors, position ids, which
tokens are never sampled, LoRA targets, shard units - is asked of ``self.family``. Sampling lives in the rollout
engines (:mod:`facial_r1.rollout`); :meth:`Policy.generate` is the ``hf`` engine's decode loop on this module.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from facial_r1.models.adapter import PromptBatch, Rollout, SamplingParams, TokenizedSFTBatch
from facial_r1.models.logprobs import token_entropy_from_logits, token_logprobs_from_logits
from facial_r1.models.sampling import completion_mask

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
REFERENCE_MODES = ("auto", "lora_disabled", "frozen_copy")


def resolve_dtype(name: str) -> torch.dtype:
    """``auto`` = bf16 on a GPU, float32 on a CPU (CPU bf16 matmuls are slow and lossy for tiny models)."""
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    if name not in _DTYPES:
        raise ValueError(f"model.dtype={name!r}: allowed values are auto, {', '.join(_DTYPES)}")
    return _DTYPES[name]


def resolve_model_folder(path: str | None, init_from: str | None, tiny: dict | None, cache_dir: str) -> Path:
    """Which folder to load: ``init_from`` (a previous stage's export) > ``path`` > the tiny model built from ``tiny``."""
    if init_from:
        folder = Path(init_from)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"model.init_from={init_from}: no Hugging Face model folder (config.json) there"
            )
        return folder
    if path:
        folder = Path(path)
        if folder.is_dir() and not (folder / "config.json").is_file():
            raise FileNotFoundError(f"model.path={path}: folder has no config.json")
        return folder  # may be a hub id for users with a network; transformers resolves it
    if tiny is None:
        raise ValueError("model: set model.path (a local model folder), model.init_from, or model.tiny")
    from facial_r1.models.tiny import TinySpec, tiny_model_path

    return tiny_model_path(cache_dir, TinySpec(**dict(tiny)))


def check_model_type(folder: str | Path, expected: str | None) -> None:
    """Refuse a local folder of another family: its processor would encode prompts its model does not expect
    (e.g. 14 px patches for a 16 px tower), or fail far from the cause."""
    config = Path(folder) / "config.json"
    if expected is None or not config.is_file():
        return  # a hub id: transformers resolves it, and its own checks apply
    model_type = json.loads(config.read_text()).get("model_type")
    if model_type != expected:
        raise ValueError(
            f"{config}: model_type is {model_type!r}, but model.family is the {expected} family; pick the model "
            f"config of that checkpoint's family (conf/model/), or a {expected} folder"
        )


class Policy:
    """A vision-language policy of any family; implements :class:`facial_r1.models.adapter.VLMAdapter`."""

    def __init__(
        self,
        family,
        path: str | None = None,
        tiny: dict | None = None,
        init_from: str | None = None,
        cache_dir: str = ".cache/facial_r1",
        dtype: str = "auto",
        attn_implementation: str = "sdpa",
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        system_prompt: str | None = None,
        lora: dict | None = None,
        freeze_vision: bool = False,
        activation_checkpointing: bool = False,
        reference: str = "auto",
        shared_prefix: bool = True,
        device: str | None = None,
    ):
        from transformers import AutoModelForImageTextToText

        self.family = family
        if system_prompt is not None:
            family.system_prompt = system_prompt
        self.folder = resolve_model_folder(path, init_from, tiny, cache_dir)
        check_model_type(self.folder, getattr(family, "model_type", None))
        self.processor = family.load_processor(self.folder, min_pixels=min_pixels, max_pixels=max_pixels)
        self.tokenizer = self.processor.tokenizer
        self.shared_prefix = shared_prefix
        self.activation_checkpointing = activation_checkpointing
        self._load_kwargs = {"dtype": resolve_dtype(dtype), "attn_implementation": attn_implementation}
        model = AutoModelForImageTextToText.from_pretrained(self.folder, **self._load_kwargs)
        if device:
            model.to(device)
        self.base_model = model
        self.model: torch.nn.Module = model
        # transformers 5.2x names the KV-cache argument `cache`; 5.19 (the vLLM environment's pin) calls it
        # `past_key_values` and silently ignores `cache=` - every decoding step would then see only its own token.
        forward_args = inspect.signature(type(model).forward).parameters
        self.cache_kwarg = "cache" if "cache" in forward_args else "past_key_values"
        self.pad_id = self.tokenizer.pad_token_id
        eos = model.generation_config.eos_token_id
        self.stop_ids = sorted(
            {*([eos] if isinstance(eos, int) else list(eos or [])), self.tokenizer.eos_token_id}
        )
        self.suppress_ids = family.suppress_ids()
        # Embedding rows past the tokenizer (a real checkpoint pads 151,665 ids to 151,936) decode to nothing.
        self.vocab_limit = len(self.tokenizer)
        if freeze_vision:
            for p in family.visual(model).parameters():
                p.requires_grad_(False)
        self.lora_enabled = bool(lora)
        self._lora = dict(lora) if lora else None
        if lora:
            self.apply_lora(**self._lora)
        if activation_checkpointing:
            # transformers 5.2x: activation_checkpointing_enable; 5.19 (the vLLM environment): the older name
            enable = getattr(self.model, "activation_checkpointing_enable", None)
            if enable is not None:
                enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                self.model.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs={"use_reentrant": False}
                )
        if reference not in REFERENCE_MODES:
            raise ValueError(
                f"model.reference={reference!r}: allowed values are auto, lora_disabled, frozen_copy"
            )
        if reference == "lora_disabled" and not self.lora_enabled:
            raise ValueError(
                "model.reference=lora_disabled needs model.lora (full fine-tuning has no adapter to disable)"
            )
        self.reference_mode = "lora_disabled" if (reference == "auto" and self.lora_enabled) else reference
        if self.reference_mode == "auto":
            self.reference_mode = "frozen_copy"
        self._frozen_reference: torch.nn.Module | None = None
        # Called once per decoding step with "this rank is finished"; returns "every rank is finished". Set by
        # :meth:`shard`: sharded forwards are collectives, so ranks must decode the same number of steps.
        self.decode_sync: Callable[[bool], bool] | None = None

    # ------------------------------------------------------------------ structure
    def apply_lora(
        self, r: int = 16, alpha: int = 32, dropout: float = 0.0, target_regex: str | None = None, **_: Any
    ) -> None:
        """Wrap the family's LoRA targets (the language model's linear layers) with LoRA adapters."""
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=r,
            lora_alpha=alpha,
            lora_dropout=dropout,
            target_modules=target_regex or self.family.lora_target_regex,
            bias="none",
        )
        self.model = get_peft_model(self.base_model, config)
        self.lora_enabled = True

    def shard_units(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        return self.family.shard_units(model)

    def shard(self, mesh) -> None:
        """Shard the policy (and the frozen reference, if already taken) over ``mesh``; decoding becomes synced."""
        from facial_r1.models.sharding import all_ranks_done, fully_shard_model, is_sharded

        if is_sharded(self.model):  # Lightning may call configure_model more than once
            return
        fully_shard_model(self.model, self.shard_units(self.base_model), mesh)
        if self._frozen_reference is not None:
            fully_shard_model(self._frozen_reference, self.shard_units(self._frozen_reference), mesh)
        self.decode_sync = all_ranks_done

    def consolidate(self) -> None:
        """After sharded training, gather the full weights (every rank must call this); rank 0 then holds them in a
        plain model, so export and evaluation run on one process without collectives. A no-op when not sharded."""
        from facial_r1.models.sharding import full_state_dict, is_sharded

        if not is_sharded(self.model):
            return
        device = self.device
        state = full_state_dict(self.model)
        self._frozen_reference, self.decode_sync = None, None
        if torch.distributed.get_rank() != 0:
            return
        from transformers import AutoModelForImageTextToText

        self.base_model = self.model = AutoModelForImageTextToText.from_pretrained(
            self.folder, **self._load_kwargs
        )
        if self._lora:
            self.apply_lora(**self._lora)
        self.model.load_state_dict(state)
        self.model.to(device)

    def init_reference(self) -> None:
        """Snapshot the reference policy now (call before any update; a no-op for LoRA, whose base is the reference)."""
        if self.reference_mode == "frozen_copy" and self._frozen_reference is None:
            self._frozen_reference = copy.deepcopy(self.base_model).eval().requires_grad_(False)

    @contextlib.contextmanager
    def reference(self) -> Iterator[torch.nn.Module]:
        """The reference policy: the model with LoRA disabled, or a frozen copy taken by :meth:`init_reference`."""
        if self.reference_mode == "lora_disabled":
            with self.model.disable_adapter():
                yield self.model
        else:
            self.init_reference()
            ref = self._frozen_reference
            device = next(self.model.parameters()).device
            if next(ref.parameters()).device != device:
                ref.to(device)
            yield ref

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ encoding (the family's)
    def chat_text(self, text: str) -> str:
        return self.family.chat_text(text)

    def encode_chat(self, chat_texts: list[str], images: list[Image.Image]) -> PromptBatch:
        return self.family.encode_chat(self.base_model, chat_texts, images)

    def encode_prompts(self, images: list[Image.Image], texts: list[str]) -> PromptBatch:
        """Chat-format B prompts (image then text), left-pad, and precompute their positions."""
        return self.encode_chat([self.family.chat_text(t) for t in texts], images)

    def encode_sft(
        self, images: list[Image.Image], texts: list[str], targets: list[str]
    ) -> TokenizedSFTBatch:
        return self.family.encode_sft(self.base_model, images, texts, targets)

    # ------------------------------------------------------------------ forward passes
    def sft_loss(self, batch: TokenizedSFTBatch) -> tuple[torch.Tensor, int]:
        """Mean token cross-entropy over assistant tokens; returns (loss, number of target tokens).

        Rows are left-padded, so every target sits in the last K positions: logits are computed there only
        (``logits_to_keep``), not over the prompt and image tokens.
        """
        labels = batch.labels
        is_target = labels != -100
        L = labels.shape[1]
        first = int(is_target.float().argmax(dim=1).min()) if bool(is_target.any()) else L - 1
        keep = L - first + 1  # + the position before the first target, which predicts it
        out = self.model(**batch.inputs, use_cache=False, logits_to_keep=min(keep, L))
        logits = out.logits[:, :-1]  # logits at t predict token t+1
        labels = labels[:, L - logits.shape[1] :]
        n = int((labels != -100).sum())
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(),
            labels.reshape(-1),
            ignore_index=-100,
            reduction="sum",
        )
        return loss / max(n, 1), n

    def prefill(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]):
        """Run vision tower + prompt once; returns (logits of the last prompt position [B, V], KV cache)."""
        from transformers import DynamicCache

        cache = DynamicCache(config=self.base_model.config.get_text_config())
        out = model(**inputs, **{self.cache_kwarg: cache}, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1], cache  # filled in place

    @staticmethod
    def select_cache(cache, index: torch.Tensor) -> None:
        for layer in cache.layers:
            layer.batch_select_indices(index)

    def mask_unsampled(self, logits: torch.Tensor, value: float) -> None:
        """In place: tokens the family never samples (vision tokens) and ids past the tokenizer get ``value``. In
        place is safe for autograd: the logits are a fresh lm_head output its backward does not need, and no
        [N, T, V] copy is made."""
        logits[..., self.suppress_ids] = value
        if self.vocab_limit < logits.shape[-1]:
            logits[..., self.vocab_limit :] = value

    def completion_mask(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """1 up to and including the first stop token; rows without one are truncated (all generated tokens count:
        the decode loop pads only after a stop). Float mask [N, T], truncated [N] bool."""
        mask, truncated = completion_mask(ids, self.stop_ids)
        return mask.float(), truncated

    def generate(
        self, batch: PromptBatch, params: SamplingParams, model: torch.nn.Module | None = None
    ) -> Rollout:
        """Sample with the ``hf`` engine's decode loop on this module (:func:`facial_r1.rollout.hf.decode`)."""
        from facial_r1.rollout.hf import decode

        return decode(self, batch, params, model=model)

    def completion_logprobs(
        self,
        batch: PromptBatch,
        completion_ids: torch.Tensor,
        prompt_index: torch.Tensor,
        *,
        temperature: float = 1.0,
        model: torch.nn.Module | None = None,
        with_entropy: bool = False,
        micro_batch_size: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-token log-probs [N, T] of given completions under ``model`` (default: the policy), with gradients.

        Logits are divided by ``temperature`` and unsampled tokens masked before the log-softmax, exactly as when
        sampling, so recomputed log-probs match the rollout's (the mu = 1 ratio is then exactly 1). Memory scales
        with the completions, not the prompts: logits exist only at completion positions, for at most
        ``micro_batch_size`` rows at a time (None = all N), and are never copied whole.
        """
        model = model or self.model
        batch = batch.to(self.device)
        completion_ids = completion_ids.to(self.device)
        prompt_index = prompt_index.to(self.device)
        logps, entropies = [], []
        for rows in torch.arange(completion_ids.shape[0], device=self.device).split(
            int(micro_batch_size or completion_ids.shape[0])
        ):
            # only the prompts these rows continue are re-encoded
            prompts, local_index = prompt_index[rows].unique(return_inverse=True)
            inputs = self.family.select_prompts(batch.inputs, prompts)
            logp, entropy = self._completion_logprobs_rows(
                model, inputs, completion_ids[rows], local_index, temperature, with_entropy
            )
            logps.append(logp)
            entropies.append(entropy)
        entropy = torch.cat(entropies) if with_entropy else None
        return torch.cat(logps), entropy

    def _completion_logprobs_rows(
        self, model, inputs, completion_ids, prompt_index, temperature, with_entropy
    ):
        if self.shared_prefix and not self.activation_checkpointing:
            segments = self._completion_logits_shared(model, inputs, completion_ids, prompt_index)
        else:  # HF turns the KV cache off under activation checkpointing: one forward per row instead
            segments = self._completion_logits_full(model, inputs, completion_ids, prompt_index)
        logp, entropy, t0 = [], [], 0
        for logits in segments:  # consecutive completion positions: [N, t, V] each
            # The sampler never offers masked tokens, so the policy being scored is the renormalised distribution.
            # (-1e4 rather than -inf: exp underflows to exactly 0 either way, and the entropy stays finite.)
            self.mask_unsampled(logits, -1e4)
            ids = completion_ids[:, t0 : t0 + logits.shape[1]]
            t0 += logits.shape[1]
            logp.append(token_logprobs_from_logits(logits, ids, temperature))
            if with_entropy:
                entropy.append(token_entropy_from_logits(logits.detach(), temperature))
        return torch.cat(logp, dim=1), (torch.cat(entropy, dim=1) if with_entropy else None)

    def _completion_logits_shared(self, model, inputs, completion_ids, prompt_index) -> list[torch.Tensor]:
        """Prompt prefill once per prompt (with grad), KV cache expanded to the G completions; returns the logits
        predicting completion token 0 [N, 1, V] and tokens 1.. [N, T-1, V]."""
        last_logits, cache = self.prefill(model, inputs)
        self.select_cache(cache, prompt_index)
        N, T = completion_ids.shape
        first = last_logits[prompt_index][:, None]
        if T == 1:
            return [first]
        attn = torch.cat(
            [inputs["attention_mask"][prompt_index], torch.ones_like(completion_ids[:, :-1])], dim=1
        )
        start = self.family.next_positions(inputs)[prompt_index]
        out = model(
            input_ids=completion_ids[:, :-1],
            attention_mask=attn,
            position_ids=self.family.text_positions(start, T - 1),
            **{self.cache_kwarg: cache},
            use_cache=True,
        )
        return [first, out.logits]

    def _completion_logits_full(self, model, inputs, completion_ids, prompt_index) -> list[torch.Tensor]:
        """One forward over prompt + completion per row (image and prompt repeated per row); logits are computed
        only at the T positions that predict completion tokens (``logits_to_keep``)."""
        rows = self.family.select_prompts(inputs, prompt_index)
        T = completion_ids.shape[1]
        # the last completion token predicts nothing we score
        full = self.family.append_completions(self.base_model, rows, completion_ids[:, :-1])
        return [model(**full, use_cache=False, logits_to_keep=T).logits]

    # ------------------------------------------------------------------ export
    def merged_state_items(self) -> Iterator[tuple[str, torch.Tensor]]:
        """The current weights under the base model's names (LoRA merged), for a rollout engine's weight sync."""
        if not self.lora_enabled:
            yield from self.base_model.state_dict().items()
            return
        merged = copy.deepcopy(self.model).merge_and_unload()
        yield from merged.state_dict().items()

    def export(self, path: str | Path, extra_files: dict[str, Any] | None = None) -> Path:
        """Write a Hugging Face folder (LoRA merged into a copy) that ``AutoModelForImageTextToText`` reloads."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        model = self.model
        if self.lora_enabled:
            model = copy.deepcopy(self.model).merge_and_unload()
        model.save_pretrained(path)
        self.family.save_processor(path)
        for name, content in (extra_files or {}).items():
            (path / name).write_text(content if isinstance(content, str) else json.dumps(content, indent=2))
        return path
