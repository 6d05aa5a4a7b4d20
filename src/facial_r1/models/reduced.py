"""A real-width, reduced-depth Qwen-VL built from a published architecture, for checks the tiny model hides.

The tiny model is 128 wide with a 768-token vocabulary: nothing about it shows what a 151,936-row vocabulary, a
2048-wide residual stream, a 1280-wide vision tower with windowed and full-attention blocks, bf16 shards or the
published folder layout do to memory, dtypes and presets (for Qwen3-VL: DeepStack mergers at real width). This
builds a folder with the published widths (``configs/<arch>.json``: the architecture fields of the published
``config.json``) and only a few layers, random weights, saved as bf16 ``safetensors`` shards with an index - the
layout of a downloaded checkpoint - so ``model=qwen2_5_vl_3b model.path=<folder>`` (or ``model=qwen3_vl_4b ...``)
runs through the same code a real checkpoint does.

The tokenizer is the tiny model's (no download): its ids, special tokens included, sit inside the full vocabulary,
and the config's special-token ids point at them. Rows of the embedding beyond the tokenizer are never sampled
(the adapter masks them, as it would a real checkpoint's padded vocabulary rows).

    python -m facial_r1.models.reduced --out /tmp/qwen2_5_vl_3b_reduced   # ~1.2 GB, ~20 s on 2 cores
    python -m facial_r1.models.reduced --arch qwen3_vl_4b --out /tmp/qwen3_vl_4b_reduced
"""

from __future__ import annotations

import argparse
import json
import shutil
from importlib.resources import files
from pathlib import Path

import torch

from facial_r1.models.families import family_class

# Every published architecture with a config file here (configs/<arch>.json); a family adds its own files.
ARCHITECTURES = tuple(
    sorted(
        f.name[: -len(".json")]
        for f in files("facial_r1.models").joinpath("configs").iterdir()
        if f.name.endswith(".json")
    )
)


def published_config(arch: str) -> dict:
    """The published ``config.json`` fields of ``arch`` (a file in this package)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch={arch!r}: allowed values are {', '.join(ARCHITECTURES)}")
    return json.loads(files("facial_r1.models").joinpath("configs", f"{arch}.json").read_text())


def build_reduced_model(
    out_dir: str | Path,
    *,
    tokenizer_dir: str | Path,
    arch: str = "qwen2_5_vl_3b",
    text_layers: int = 2,
    vision_depth: int = 4,
    max_shard_size: str = "300MB",
    seed: int = 0,
) -> Path:
    """Write a ``arch``-wide model with ``text_layers`` decoder layers and ``vision_depth`` vision blocks to
    ``out_dir`` (the family's block pattern kept: its family class's ``reduced_architecture``)."""
    from facial_r1.models.processor import load_processor, read_chat_template

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = load_processor(tokenizer_dir).tokenizer
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens}
    special = {
        "bos_token_id": "<|endoftext|>",
        "eos_token_id": "<|im_end|>",
        "pad_token_id": "<|endoftext|>",
        "vision_start_token_id": "<|vision_start|>",
        "vision_end_token_id": "<|vision_end|>",
        "image_token_id": "<|image_pad|>",
        "video_token_id": "<|video_pad|>",
    }
    config = published_config(arch)
    # Qwen2.5-VL's published config is flat; Qwen3-VL's nests the text model's fields (ids, vocabulary) under
    # text_config and keeps the vision token ids at the top.
    text = config.get("text_config", config)
    vocab_size = text["vocab_size"]
    for key, token in special.items():
        (text if key in ("bos_token_id", "eos_token_id", "pad_token_id") else config)[key] = ids.get(
            token, tokenizer.convert_tokens_to_ids(token)
        )
    if len(tokenizer) > vocab_size:
        raise ValueError(
            f"tokenizer of {tokenizer_dir} has {len(tokenizer)} ids, more than {arch}'s {vocab_size}"
        )
    hf_config, model_class, image_processor = family_class(config["model_type"]).reduced_architecture(
        config, text_layers, vision_depth
    )
    torch.manual_seed(seed)
    model = model_class(hf_config).to(torch.bfloat16)
    model.generation_config.eos_token_id = [text["eos_token_id"], text["bos_token_id"]]
    model.generation_config.pad_token_id = text["pad_token_id"]
    model.generation_config.bos_token_id = text["bos_token_id"]
    model.save_pretrained(out, max_shard_size=max_shard_size)
    tokenizer.save_pretrained(out)
    template = read_chat_template(tokenizer_dir)
    if template:
        (out / "chat_template.jinja").write_text(template)
    image_processor.save_pretrained(out)
    (out / "reduced_model.json").write_text(
        json.dumps(
            {"arch": arch, "text_layers": text_layers, "vision_depth": vision_depth, "seed": seed}, indent=2
        )
    )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write")
    parser.add_argument("--arch", default="qwen2_5_vl_3b", choices=ARCHITECTURES)
    parser.add_argument("--text-layers", type=int, default=2)
    parser.add_argument("--vision-depth", type=int, default=4)
    parser.add_argument(
        "--tokenizer-dir", help="a model folder whose tokenizer to use (default: the tiny model)"
    )
    parser.add_argument("--cache-dir", default=".cache/facial_r1")
    args = parser.parse_args(argv)
    tokenizer_dir = args.tokenizer_dir
    if tokenizer_dir is None:
        from facial_r1.models.tiny import TinySpec, tiny_model_path

        tokenizer_dir = tiny_model_path(args.cache_dir, TinySpec(warm_start_steps=0))
    if Path(args.out).exists():
        shutil.rmtree(args.out)
    folder = build_reduced_model(
        args.out,
        tokenizer_dir=tokenizer_dir,
        arch=args.arch,
        text_layers=args.text_layers,
        vision_depth=args.vision_depth,
    )
    print(folder)


if __name__ == "__main__":
    main()
