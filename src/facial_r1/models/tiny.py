"""The embedded default model: a tiny, randomly initialised Qwen-VL built deterministically and cached on disk.

It is the real transformers class (``Qwen2_5_VLForConditionalGeneration`` by default, ``Qwen3VLForConditionalGeneration``
with ``family="qwen3_vl"``), only small, so every code path a 3B-8B checkpoint takes is exercised on a CPU. It is
written as an ordinary Hugging Face folder (config, safetensors, tokenizer, image processor config, chat template)
and loaded back through the same code that loads a real checkpoint folder. Both families share the byte-level
tokenizer (``models/tokenizer.py``) and the vision warm start (``models/warmstart.py``).

Default size (``TinySpec()``): text 128 wide x 2 layers, vision 64 wide x 2 layers, patch 14 / merge 2 (a 112 px face
is 16 image tokens), ~0.75 M parameters. Its vision tower is warm-started on SynthFACS faces of a separate
``pretrain`` split (``models/warmstart.py``), standing in for the pretrained tower of a real checkpoint; the language
model stays random. The project's prototype runs found this size learns
procedural faces fastest on 2 CPU cores; 2.6x wider learned slower within a minutes budget.

Qwen3-VL (``family="qwen3_vl"``) at the same widths keeps what transformers implements for it: 16 px patches with a
learned, bilinearly resampled position grid, DeepStack (the merged features of the vision blocks in
``deepstack_visual_indexes`` are added to the image positions of the first text layers), interleaved M-RoPE and
Qwen3's q/k norms. Its image processor resizes to multiples of 32 px, so a 112 px face is resized to
``processor_image_size`` = 128 px: 16 image tokens, the same vision compute (64 patches) as the Qwen2.5-VL tiny.
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


FAMILIES = ("qwen2_5_vl", "qwen3_vl")


@dataclass(frozen=True)
class TinySpec:
    """Every number that defines the tiny model (it is part of the cache key, see :func:`cache_key`)."""

    family: str = "qwen2_5_vl"  # architecture: qwen2_5_vl | qwen3_vl
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
    # Side of the square the saved image processor resizes every image to; None = image_size. Qwen3-VL's 32 px
    # units (patch 16 x merge 2) cannot hold 112 px exactly: 128 keeps 16 image tokens.
    processor_image_size: int | None = None
    # Qwen3-VL only: vision blocks whose merged features are added to text layers 0, 1, ... (DeepStack).
    deepstack_visual_indexes: tuple[int, ...] = (0,)

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"model.tiny.family={self.family!r}: allowed values are {', '.join(FAMILIES)}")
        # Hydra hands lists; a tuple keeps the frozen spec hashable.
        object.__setattr__(self, "deepstack_visual_indexes", tuple(self.deepstack_visual_indexes))
        bad = [i for i in self.deepstack_visual_indexes if not 0 <= i < self.vision_depth]
        if bad or len(self.deepstack_visual_indexes) > self.num_layers:
            raise ValueError(
                f"model.tiny.deepstack_visual_indexes={list(self.deepstack_visual_indexes)}: needs vision blocks "
                f"in [0, {self.vision_depth}) and at most num_layers={self.num_layers} of them"
            )


# Fields added with the second family. For Qwen2.5-VL they are left out of the cache key while at their defaults,
# so the folders built before they existed (and the README's results) keep their keys.
_ADDED_FIELDS = ("family", "processor_image_size", "deepstack_visual_indexes")


def cache_key(spec: TinySpec, texts: list[str]) -> str:
    """The JSON string whose hash names the cache folder of ``spec`` (written beside it as ``tiny_spec.json``)."""
    fields = dataclasses.asdict(spec)
    if spec.family == "qwen2_5_vl":
        defaults = TinySpec()
        for name in _ADDED_FIELDS:
            if getattr(spec, name) == getattr(defaults, name):
                del fields[name]
    return json.dumps(
        {
            "spec": fields,
            "v": BUILD_VERSION,
            "synthfaces": _synthfaces_version() if spec.warm_start_steps > 0 else None,
            "corpus": hashlib.sha256("\n".join(texts).encode()).hexdigest(),
        },
        sort_keys=True,
    )


def _default_corpus(n: int, seed: int) -> list[str]:
    """Text the tokenizer is trained on: the project's prompts and teacher reasoning (see teachers.template)."""
    try:
        from facial_r1.data.teachers.template import tokenizer_corpus
    except ImportError:  # pragma: no cover - only while the teacher module is missing
        from facial_r1.facs import ACTION_UNITS, EMOTIONS

        return [f"{au.appearance} ({au.code}) {au.name}" for au in ACTION_UNITS.values()] + list(EMOTIONS)
    return tokenizer_corpus(n=n, seed=seed)


def _qwen2_5_vl(spec: TinySpec, tokenizer, ids: dict[str, int]):
    """Config, model class and image processor of the tiny Qwen2.5-VL."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    # mrope_section splits head_dim/2 rotary frequencies over (temporal, height, width); must sum to head_dim/2.
    # Same proportions as the 7B model's [16, 24, 24] of 64: a quarter temporal, the rest split height/width.
    half = (spec.hidden_size // spec.num_heads) // 2
    spatial = (half - half // 4) // 2
    mrope = [half - 2 * spatial, spatial, spatial]
    config = Qwen2_5_VLConfig(
        text_config={
            **_text_config(spec, tokenizer, ids),
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
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
        **_vision_token_ids(tokenizer),
        tie_word_embeddings=False,
    )
    pixels = (spec.processor_image_size or spec.image_size) ** 2
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=pixels, max_pixels=pixels, patch_size=spec.patch_size, merge_size=spec.merge_size
    )
    return config, Qwen2_5_VLForConditionalGeneration, image_processor


def _qwen3_vl(spec: TinySpec, tokenizer, ids: dict[str, int]):
    """Config, model class and image processor of the tiny Qwen3-VL (fields as in the published config.json)."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    head_dim = spec.hidden_size // spec.num_heads
    # The published [24, 20, 20] of head_dim/2 = 64, scaled; transformers interleaves the three (T H W T H W ...).
    half = head_dim // 2
    spatial = (half * 20) // 64
    mrope = [half - 2 * spatial, spatial, spatial]
    side = spec.processor_image_size or spec.image_size
    grid = side // spec.patch_size
    if grid * spec.patch_size != side or grid % spec.merge_size:
        raise ValueError(
            f"model.tiny.processor_image_size={side}: must be a multiple of patch_size x merge_size "
            f"({spec.patch_size * spec.merge_size}) for the family qwen3_vl"
        )
    config = Qwen3VLConfig(
        text_config={
            **_text_config(spec, tokenizer, ids),
            "head_dim": head_dim,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": mrope,
                "mrope_interleaved": True,
            },
        },
        vision_config={
            "depth": spec.vision_depth,
            "hidden_size": spec.vision_hidden_size,
            "intermediate_size": spec.vision_intermediate_size,
            "num_heads": spec.vision_heads,
            "patch_size": spec.patch_size,
            "spatial_merge_size": spec.merge_size,
            "out_hidden_size": spec.hidden_size,  # must equal the text width or image features do not fit
            # The learned position grid (published: 48 x 48, resampled to each image) sized to the tiny's images.
            "num_position_embeddings": grid * grid,
            "deepstack_visual_indexes": list(spec.deepstack_visual_indexes),
        },
        **_vision_token_ids(tokenizer),
        tie_word_embeddings=False,
    )
    # The published Qwen3-VL preprocessor normalises with mean = std = 0.5 (Qwen2.5-VL: CLIP's statistics).
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=side * side,
        max_pixels=side * side,
        patch_size=spec.patch_size,
        merge_size=spec.merge_size,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return config, Qwen3VLForConditionalGeneration, image_processor


_ARCHITECTURES = {"qwen2_5_vl": _qwen2_5_vl, "qwen3_vl": _qwen3_vl}


def _text_config(spec: TinySpec, tokenizer, ids: dict[str, int]) -> dict:
    return {
        "vocab_size": len(tokenizer),  # not tokenizer.vocab_size, which omits added tokens
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_kv_heads,
        "max_position_embeddings": 4096,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "tie_word_embeddings": False,
    }


def _vision_token_ids(tokenizer) -> dict[str, int]:
    return {
        "image_token_id": tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        "video_token_id": tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        "vision_start_token_id": tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        "vision_end_token_id": tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    }


def build_tiny_model(
    out_dir: str | Path, spec: TinySpec = TinySpec(), corpus: Callable[[int, int], list[str]] | None = None
) -> Path:
    """Write a tiny ``spec.family`` Hugging Face folder to ``out_dir`` (deterministic for a given spec and corpus)."""
    out_dir = Path(out_dir)
    texts = (corpus or _default_corpus)(spec.corpus_size, spec.seed)
    tokenizer = train_tokenizer(texts, vocab_size=spec.vocab_size)
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in ("<|endoftext|>", "<|im_end|>")}
    config, model_class, image_processor = _ARCHITECTURES[spec.family](spec, tokenizer, ids)
    torch.manual_seed(spec.seed)
    model = model_class(config)
    if spec.warm_start_steps > 0:
        from facial_r1.models.warmstart import warm_start_vision

        metrics = warm_start_vision(
            model,
            image_processor,
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
    image_processor.save_pretrained(out_dir)
    return out_dir


def _synthfaces_version() -> int:
    from facial_r1.data.synthfaces.sampling import VERSION

    return VERSION


def tiny_model_path(cache_dir: str | Path, spec: TinySpec = TinySpec()) -> Path:
    """Folder of the tiny model for ``spec`` under ``cache_dir``, built on first use (atomically) and reused after."""
    texts = _default_corpus(spec.corpus_size, spec.seed)
    key = cache_key(spec, texts)
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
