"""The embedded default model: a tiny, randomly initialised Qwen2.5-VL built deterministically and cached on disk.

It is the real ``Qwen2_5_VLForConditionalGeneration`` (vision tower with window attention, patch merger, M-RoPE text
decoder), only small, so every code path the 7B model takes is exercised on a CPU. It is written as an ordinary
Hugging Face folder (config, safetensors, tokenizer, image processor config, chat template) and loaded back through
the same adapter code that loads a real checkpoint folder.

Default size (``TinySpec()``): text 128 wide x 2 layers, vision 64 wide x 2 layers, patch 14 / merge 2 (a 112 px face
is 16 image tokens), ~0.75 M parameters. Its vision tower is warm-started on SynthFACS faces of a separate
``pretrain`` split (``models/warmstart.py``), standing in for the pretrained tower of a real checkpoint; the language
model stays random. The prototype in ``shared/reference/prototype.md`` found this size learns
procedural faces fastest on 2 CPU cores; 2.6x wider learned slower within a minutes budget.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from facial_r1.models.tokenizer import CHAT_TEMPLATE, train_tokenizer

log = logging.getLogger(__name__)

BUILD_VERSION = 2  # bump when the build recipe changes, so stale caches are not reused


@dataclass(frozen=True)
class TinySpec:
    """Every number that defines the tiny model (it is part of the cache key)."""

    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 256
    vision_hidden_size: int = 64
    vision_depth: int = 2
    vision_heads: int = 2
    vision_intermediate_size: int = 128
    patch_size: int = 14
    merge_size: int = 2
    vocab_size: int = (
        768  # BPE target; the real vocabulary is what the corpus saturates at, plus added tokens
    )
    image_size: int = 112  # min/max pixels of the saved image processor pin images to image_size^2
    corpus_size: int = 2000
    seed: int = 0
    # Vision warm start (see models/warmstart.py): 0 steps = a fully random tower.
    warm_start_steps: int = 400
    warm_start_images: int = 3000


def _default_corpus(n: int, seed: int) -> list[str]:
    """Text the tokenizer is trained on: the project's prompts and teacher reasoning (see teachers.template)."""
    try:
        from facial_r1.data.teachers.template import tokenizer_corpus
    except ImportError:  # pragma: no cover - only while the teacher module is missing
        from facial_r1.facs import ACTION_UNITS, EMOTIONS

        return [f"{au.appearance} ({au.code}) {au.name}" for au in ACTION_UNITS.values()] + list(EMOTIONS)
    return tokenizer_corpus(n=n, seed=seed)


def build_tiny_model(
    out_dir: str | Path, spec: TinySpec = TinySpec(), corpus: Callable[[int, int], list[str]] | None = None
) -> Path:
    """Write a tiny Qwen2.5-VL Hugging Face folder to ``out_dir`` (deterministic for a given spec and corpus)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    out_dir = Path(out_dir)
    texts = (corpus or _default_corpus)(spec.corpus_size, spec.seed)
    tokenizer = train_tokenizer(texts, vocab_size=spec.vocab_size)
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in ("<|endoftext|>", "<|im_end|>")}
    head_dim = spec.hidden_size // spec.num_heads
    # mrope_section splits head_dim/2 rotary frequencies over (temporal, height, width); must sum to head_dim/2.
    # Same proportions as the 7B model's [16, 24, 24] of 64: a quarter temporal, the rest split height/width.
    half = head_dim // 2
    spatial = (half - half // 4) // 2
    mrope = [half - 2 * spatial, spatial, spatial]
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),  # not tokenizer.vocab_size, which omits added tokens
            "hidden_size": spec.hidden_size,
            "intermediate_size": spec.intermediate_size,
            "num_hidden_layers": spec.num_layers,
            "num_attention_heads": spec.num_heads,
            "num_key_value_heads": spec.num_kv_heads,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": spec.vision_depth,
            "hidden_size": spec.vision_hidden_size,
            "intermediate_size": spec.vision_intermediate_size,
            "num_heads": spec.vision_heads,
            "patch_size": spec.patch_size,
            "spatial_merge_size": spec.merge_size,
            "out_hidden_size": spec.hidden_size,  # must equal the text width or image features do not fit
            "window_size": spec.patch_size * spec.merge_size * 4,
            "fullatt_block_indexes": [
                spec.vision_depth - 1
            ],  # default (7, 15, ...) would leave none at depth 2
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    torch.manual_seed(spec.seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    if spec.warm_start_steps > 0:
        from facial_r1.models.warmstart import warm_start_vision

        pixels = spec.image_size * spec.image_size
        probe_processor = Qwen2VLImageProcessorPil(
            min_pixels=pixels, max_pixels=pixels, patch_size=spec.patch_size, merge_size=spec.merge_size
        )
        metrics = warm_start_vision(
            model,
            probe_processor,
            num_images=spec.warm_start_images,
            steps=spec.warm_start_steps,
            seed=spec.seed,
            image_size=spec.image_size,
        )
        (out_dir / "warm_start.json").parent.mkdir(parents=True, exist_ok=True)
        (out_dir / "warm_start.json").write_text(json.dumps(metrics, indent=2))
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.bos_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    pixels = spec.image_size * spec.image_size
    Qwen2VLImageProcessorPil(
        min_pixels=pixels, max_pixels=pixels, patch_size=spec.patch_size, merge_size=spec.merge_size
    ).save_pretrained(out_dir)
    return out_dir


def _synthfaces_version() -> int:
    from facial_r1.data.synthfaces.sampling import VERSION

    return VERSION


def tiny_model_path(cache_dir: str | Path, spec: TinySpec = TinySpec()) -> Path:
    """Folder of the tiny model for ``spec`` under ``cache_dir``, built on first use (atomically) and reused after."""
    texts = _default_corpus(spec.corpus_size, spec.seed)
    key = json.dumps(
        {
            "spec": dataclasses.asdict(spec),
            "v": BUILD_VERSION,
            "synthfaces": _synthfaces_version() if spec.warm_start_steps > 0 else None,
            "corpus": hashlib.sha256("\n".join(texts).encode()).hexdigest(),
        },
        sort_keys=True,
    )
    folder = Path(cache_dir) / "tiny_models" / hashlib.sha256(key.encode()).hexdigest()[:16]
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
    try:
        # The build seeds torch itself; forking keeps the caller's RNG stream (LoRA init, sampling) the same
        # whether the model was built now or found in the cache.
        with torch.random.fork_rng(devices=[]):
            build_tiny_model(tmp, spec, corpus=lambda n, s: texts)
        (tmp / "tiny_spec.json").write_text(key)
        try:
            os.replace(tmp, folder)  # atomic: a concurrent builder either wins or finds the folder complete
        except OSError:
            if not (folder / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("tiny model built at %s", folder)
    return folder
