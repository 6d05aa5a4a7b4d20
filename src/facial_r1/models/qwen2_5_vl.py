"""Qwen2.5-VL adapter: the one file that knows this model family.

The same code loads a local 3B/7B checkpoint folder (``model=qwen2_5_vl_7b model.path=/models/Qwen2.5-VL-7B-Instruct``)
or the tiny embedded model (``model=tiny``, built once into the cache). Family details handled here:

- flattened ``pixel_values``: sample i owns a contiguous block of ``prod(image_grid_thw[i])`` rows;
- M-RoPE: 3-D position ids computed once per prompt from ``mm_token_type_ids`` + ``image_grid_thw`` and continued as
  plain text positions over completions (what transformers 5.x would silently get wrong if ``mm_token_type_ids``
  were not extended);
- vision tokens suppressed during sampling (a sampled ``<|image_pad|>`` breaks the next forward);
- the rollout engine: the vision tower and prompt prefill run once per prompt, the KV cache is then expanded to the
  G continuations (no G-fold repetition of image or prompt); the same prefix sharing is used when log-probs of
  completions are recomputed for the loss;
- LoRA on the language model only (a regex, since vision blocks also have ``gate_proj``/``up_proj``/``down_proj``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from facial_r1.models.adapter import PromptBatch, Rollout, SamplingParams, TokenizedSFTBatch
from facial_r1.models.processor import load_processor, save_processor
from facial_r1.models.sampling import sample_next

log = logging.getLogger(__name__)

# Language-model linear layers only; fullmatch against PEFT's module names.
LORA_TARGET_REGEX = r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
VISION_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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
        raise ValueError("model: set model.path (a local Qwen2.5-VL folder), model.init_from, or model.tiny")
    from facial_r1.models.tiny import TinySpec, tiny_model_path

    return tiny_model_path(cache_dir, TinySpec(**dict(tiny)))


class Qwen25VLAdapter:
    """Loads a Qwen2.5-VL folder and implements :class:`facial_r1.models.adapter.VLMAdapter`."""

    def __init__(
        self,
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

        self.folder = resolve_model_folder(path, init_from, tiny, cache_dir)
        self.processor = load_processor(self.folder, min_pixels=min_pixels, max_pixels=max_pixels)
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        self.system_prompt = system_prompt
        self.shared_prefix = shared_prefix
        self.activation_checkpointing = activation_checkpointing
        self._load_kwargs = {"dtype": resolve_dtype(dtype), "attn_implementation": attn_implementation}
        model = AutoModelForImageTextToText.from_pretrained(self.folder, **self._load_kwargs)
        if device:
            model.to(device)
        self.base_model = model
        self.model: torch.nn.Module = model
        self.pad_id = self.tokenizer.pad_token_id
        eos = model.generation_config.eos_token_id
        self.stop_ids = sorted(
            {*([eos] if isinstance(eos, int) else list(eos or [])), self.tokenizer.eos_token_id}
        )
        self.suppress_ids = [self.tokenizer.convert_tokens_to_ids(t) for t in VISION_TOKENS]
        # Embedding rows past the tokenizer (a real checkpoint pads 151,665 ids to 151,936) decode to nothing.
        self.vocab_limit = len(self.tokenizer)
        if freeze_vision:
            for p in self._visual().parameters():
                p.requires_grad_(False)
        self.lora_enabled = bool(lora)
        self._lora = dict(lora) if lora else None
        if lora:
            self.apply_lora(**self._lora)
        if activation_checkpointing:
            self.model.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False}
            )
        if reference not in ("auto", "lora_disabled", "frozen_copy"):
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
    def _visual(self) -> torch.nn.Module:
        return self.base_model.model.visual

    def apply_lora(
        self,
        r: int = 16,
        alpha: int = 32,
        dropout: float = 0.0,
        target_regex: str = LORA_TARGET_REGEX,
        **_: Any,
    ) -> None:
        """Wrap the language model's linear layers with LoRA; the vision tower gets no adapter."""
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_regex, bias="none"
        )
        self.model = get_peft_model(self.base_model, config)
        self.lora_enabled = True

    # ------------------------------------------------------------------ sharding (FSDP2)
    def shard_units(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        """What FSDP2 shards one by one: every vision block and every language decoder layer (the rest: the root)."""
        inner = model.model
        return [*inner.visual.blocks, *inner.language_model.layers]

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

    # ------------------------------------------------------------------ encoding
    def _chat_text(self, text: str, target: str | None = None) -> str:
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]})
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _rope(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """3-D M-RoPE position ids [3, B, L] for left-padded rows (pad positions are 0 and masked anyway)."""
        position_ids, _ = self.base_model.model.get_rope_index(
            inputs["input_ids"],
            mm_token_type_ids=inputs["mm_token_type_ids"],
            image_grid_thw=inputs["image_grid_thw"],
            attention_mask=inputs["attention_mask"],
        )
        return position_ids

    def encode_prompts(self, images: list[Image.Image], texts: list[str]) -> PromptBatch:
        """Chat-format B prompts (image then text), left-pad, and precompute their M-RoPE positions."""
        chat = [self._chat_text(t) for t in texts]
        enc = self.processor(text=chat, images=images, padding=True, return_tensors="pt")
        inputs = {
            k: enc[k]
            for k in ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw")
        }
        inputs["position_ids"] = self._rope(inputs)
        return PromptBatch(inputs, num_prompts=len(texts))

    def encode_sft(
        self, images: list[Image.Image], texts: list[str], targets: list[str]
    ) -> TokenizedSFTBatch:
        """Prompt + assistant target + end-of-turn; labels cover the target and its end token only."""
        prompts = self.encode_prompts(images, texts).inputs
        end = self.tokenizer.eos_token  # <|im_end|>: the model must learn to stop
        target_ids = [self.tokenizer(t + end, add_special_tokens=False)["input_ids"] for t in targets]
        rows, types, labels = [], [], []
        for i, tgt in enumerate(target_ids):
            keep = prompts["attention_mask"][i].bool()
            p_ids = prompts["input_ids"][i][keep].tolist()
            p_types = prompts["mm_token_type_ids"][i][keep].tolist()
            rows.append(p_ids + tgt)
            types.append(p_types + [0] * len(tgt))
            labels.append([-100] * len(p_ids) + tgt)
        width = max(len(r) for r in rows)

        def left_pad(seqs: list[list[int]], value: int) -> torch.Tensor:
            return torch.tensor([[value] * (width - len(s)) + s for s in seqs], dtype=torch.long)

        inputs = {
            "input_ids": left_pad(rows, self.pad_id),
            "attention_mask": left_pad([[1] * len(r) for r in rows], 0),
            "mm_token_type_ids": left_pad(types, 0),
            "pixel_values": prompts["pixel_values"],
            "image_grid_thw": prompts["image_grid_thw"],
        }
        inputs["position_ids"] = self._rope(inputs)
        return TokenizedSFTBatch(inputs, left_pad(labels, -100))

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

    def _prefill(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]):
        """Run vision tower + prompt once; returns (logits of the last prompt position [B, V], KV cache)."""
        from transformers import DynamicCache

        cache = DynamicCache(config=self.base_model.config.get_text_config())
        out = model(**inputs, cache=cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1], out.cache if getattr(out, "cache", None) is not None else cache

    @staticmethod
    def _select_cache(cache, index: torch.Tensor) -> None:
        for layer in cache.layers:
            layer.batch_select_indices(index)

    def _next_positions(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """First completion position of each prompt row [B]: one past its largest M-RoPE position."""
        return inputs["position_ids"].amax(dim=(0, 2)) + 1

    @torch.no_grad()
    def generate(
        self, batch: PromptBatch, params: SamplingParams, model: torch.nn.Module | None = None
    ) -> Rollout:
        """Sample ``params.num_samples`` completions per prompt; prefill once per prompt, then expand the KV cache.

        After the expansion every cache layer (and the attention mask) moves into a buffer sized for prompt +
        ``max_new_tokens``, written in place at each step instead of re-concatenated (see
        :mod:`facial_r1.models.kv_cache`).
        """
        from facial_r1.models.kv_cache import preallocate

        model = model or self.model
        start = time.perf_counter()
        batch = batch.to(self.device)
        inputs = batch.inputs
        G = params.num_samples
        prompt_index = torch.arange(batch.num_prompts, device=self.device).repeat_interleave(G)
        last_logits, cache = self._prefill(model, inputs)
        self._select_cache(cache, prompt_index)
        preallocate(cache, params.max_new_tokens)
        logits = last_logits[prompt_index]
        prompt_mask = inputs["attention_mask"][prompt_index]
        P = prompt_mask.shape[1]
        attn_buffer = torch.ones(
            (prompt_mask.shape[0], P + params.max_new_tokens), dtype=prompt_mask.dtype, device=self.device
        )
        attn_buffer[:, :P] = prompt_mask
        next_pos = self._next_positions(inputs)[prompt_index]
        seeds = params.seeds_for(batch.num_prompts) if params.do_sample else None
        generators = None if seeds is None else [torch.Generator(self.device).manual_seed(s) for s in seeds]
        N = prompt_index.numel()
        stop = torch.tensor(self.stop_ids, device=self.device)
        finished = torch.zeros(N, dtype=torch.bool, device=self.device)
        tokens, logps = [], []
        for t in range(params.max_new_tokens):
            self.mask_unsampled(logits, float("-inf"))
            tok, lp = sample_next(
                logits,
                temperature=params.temperature,
                top_p=params.top_p,
                do_sample=params.do_sample,
                generators=generators,
            )
            tok = torch.where(finished, torch.full_like(tok, self.pad_id), tok)
            tokens.append(tok)
            logps.append(torch.where(finished, torch.zeros_like(lp), lp))
            finished = finished | torch.isin(tok, stop)
            done = bool(finished.all())
            if (
                self.decode_sync is not None
            ):  # sharded: keep stepping (emitting padding) until every rank is done
                done = self.decode_sync(done)
            if done or t == params.max_new_tokens - 1:
                break
            pos = (next_pos + t).view(1, N, 1).expand(3, N, 1)
            out = model(
                input_ids=tok[:, None],
                attention_mask=attn_buffer[:, : P + t + 1],
                position_ids=pos,
                cache=cache,
                use_cache=True,
            )
            logits = out.logits[:, -1]
        ids = torch.stack(tokens, dim=1)
        mask, truncated = self._completion_mask(ids)
        texts = self.tokenizer.batch_decode(
            ids * mask.long() + self.pad_id * (1 - mask.long()), skip_special_tokens=True
        )
        seconds = time.perf_counter() - start
        rollout = Rollout(
            prompt_index=prompt_index,
            completion_ids=ids,
            completion_mask=mask,
            logprobs=torch.stack(logps, dim=1) * mask,
            truncated=truncated,
            texts=texts,
            seconds=seconds,
        )
        rollout.stats = {
            "tokens": float(rollout.num_tokens),
            "tokens_per_s": rollout.num_tokens / max(seconds, 1e-9),
        }
        return rollout

    def _completion_mask(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """1 up to and including the first stop token; rows without one are truncated (all generated tokens count)."""
        is_stop = torch.isin(ids, torch.tensor(self.stop_ids, device=ids.device))
        after_stop = (is_stop.cumsum(dim=1) - is_stop.long()) > 0
        return (~after_stop).float(), ~is_stop.any(dim=1)

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

        Logits are divided by ``temperature`` and vision tokens suppressed before the log-softmax, exactly as when
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
            inputs = expand_prompt_inputs(batch.inputs, prompts)
            logp, entropy = self._completion_logprobs_rows(
                model, inputs, completion_ids[rows], local_index, temperature, with_entropy
            )
            logps.append(logp)
            entropies.append(entropy)
        entropy = torch.cat(entropies) if with_entropy else None
        return torch.cat(logps), entropy

    def mask_unsampled(self, logits: torch.Tensor, value: float) -> None:
        """In place: vision tokens (a sampled ``<|image_pad|>`` breaks the next forward) and ids past the tokenizer
        get ``value``. In place is safe for autograd: the logits are a fresh lm_head output its backward does not
        need, and no [N, T, V] copy is made."""
        logits[..., self.suppress_ids] = value
        if self.vocab_limit < logits.shape[-1]:
            logits[..., self.vocab_limit :] = value

    def _completion_logprobs_rows(
        self, model, inputs, completion_ids, prompt_index, temperature, with_entropy
    ):
        from facial_r1.grpo.objective import token_entropy_from_logits, token_logprobs_from_logits

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
        last_logits, cache = self._prefill(model, inputs)
        self._select_cache(cache, prompt_index)
        N, T = completion_ids.shape
        first = last_logits[prompt_index][:, None]
        if T == 1:
            return [first]
        attn = torch.cat(
            [inputs["attention_mask"][prompt_index], torch.ones_like(completion_ids[:, :-1])], dim=1
        )
        pos = self._next_positions(inputs)[prompt_index][:, None] + torch.arange(
            T - 1, device=completion_ids.device
        )
        out = model(
            input_ids=completion_ids[:, :-1],
            attention_mask=attn,
            position_ids=pos[None].expand(3, N, T - 1),
            cache=cache,
            use_cache=True,
        )
        return [first, out.logits]

    def _completion_logits_full(self, model, inputs, completion_ids, prompt_index) -> list[torch.Tensor]:
        """One forward over prompt + completion per row (image and prompt repeated per row); logits are computed
        only at the T positions that predict completion tokens (``logits_to_keep``)."""
        rows = expand_prompt_inputs(inputs, prompt_index)
        T = completion_ids.shape[1]
        body = completion_ids[:, :-1]  # the last token predicts nothing we score
        full = {
            "input_ids": torch.cat([rows["input_ids"], body], dim=1),
            "attention_mask": torch.cat([rows["attention_mask"], torch.ones_like(body)], dim=1),
            "mm_token_type_ids": torch.cat([rows["mm_token_type_ids"], torch.zeros_like(body)], dim=1),
            "pixel_values": rows["pixel_values"],
            "image_grid_thw": rows["image_grid_thw"],
        }
        full["position_ids"] = self._rope(full)
        return [model(**full, use_cache=False, logits_to_keep=T).logits]

    # ------------------------------------------------------------------ text
    def decode(self, ids: torch.Tensor) -> list[str]:
        return self.tokenizer.batch_decode(ids, skip_special_tokens=True)

    # ------------------------------------------------------------------ export
    def export(self, path: str | Path, extra_files: dict[str, Any] | None = None) -> Path:
        """Write a Hugging Face folder (LoRA merged into a copy) that ``AutoModelForImageTextToText`` reloads."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        model = self.model
        if self.lora_enabled:
            model = copy.deepcopy(self.model).merge_and_unload()
        model.save_pretrained(path)
        save_processor(self.processor, path)
        for name, content in (extra_files or {}).items():
            (path / name).write_text(content if isinstance(content, str) else json.dumps(content, indent=2))
        return path


def expand_prompt_inputs(inputs: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    """Select prompt rows ``index`` (with repeats), moving each row's block of flattened ``pixel_values`` with it.

    ``pixel_values`` is [sum_i prod(grid_i), D]: a plain ``repeat`` would pair rows with the wrong images when B > 1.
    """
    grid = inputs["image_grid_thw"]
    sizes = grid.prod(dim=-1)
    starts = torch.cumsum(sizes, 0) - sizes
    pixel_rows = torch.cat(
        [torch.arange(int(starts[i]), int(starts[i] + sizes[i]), device=grid.device) for i in index.tolist()]
    )
    out = {k: inputs[k][index] for k in ("input_ids", "attention_mask", "mm_token_type_ids")}
    out["pixel_values"] = inputs["pixel_values"][pixel_rows]
    out["image_grid_thw"] = grid[index]
    if "position_ids" in inputs:
        out["position_ids"] = inputs["position_ids"][:, index]
    return out
