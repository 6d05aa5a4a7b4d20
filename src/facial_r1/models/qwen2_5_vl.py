"""Qwen2.5-VL: the one file that knows this model family.

The policy (:mod:`facial_r1.models.policy`) and the rollout engines (:mod:`facial_r1.rollout`) are family-neutral; they
call a family object for everything below. Family details handled here:

- chat formatting (image then text, optional system message) and the image-only processor (no torchvision);
- flattened ``pixel_values``: sample i owns a contiguous block of ``prod(image_grid_thw[i])`` rows, which must move
  with its row whenever prompts are selected or repeated (:meth:`Qwen25VLFamily.select_prompts`);
- M-RoPE: 3-D position ids computed once per prompt from ``mm_token_type_ids`` + ``image_grid_thw`` and continued as
  plain text positions over completions (what transformers 5.x would silently get wrong if ``mm_token_type_ids``
  were not extended);
- vision tokens never sampled (a sampled ``<|image_pad|>`` breaks the next forward);
- LoRA on the language model only (a regex: vision blocks also have ``gate_proj``/``up_proj``/``down_proj``);
- FSDP2 shard units: every vision block and every decoder layer.

The same code serves a local 3B/7B checkpoint folder and the tiny embedded model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from facial_r1.models.adapter import PromptBatch, TokenizedSFTBatch
from facial_r1.models.processor import ImageOnlyQwen2_5_VLProcessor, load_processor, save_processor

# Language-model linear layers only; fullmatch against PEFT's module names.
LORA_TARGET_REGEX = r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
VISION_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
PROMPT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw")


class Qwen25VLFamily:
    """Encoding and positions of Qwen2.5-VL. Holds the processor it loaded; otherwise stateless."""

    model_type = "qwen2_5_vl"  # config.json's; the policy refuses a folder of another family
    lora_target_regex = LORA_TARGET_REGEX
    vision_tokens = VISION_TOKENS
    # The image-only processor, and the vLLM model module + processor name its plugin replaces with it
    # (facial_r1.rollout.vllm_plugin: vLLM builds that processor itself, and it needs torchvision).
    image_only_processor = ImageOnlyQwen2_5_VLProcessor
    vllm_processor = ("vllm.model_executor.models.qwen2_5_vl", "Qwen2_5_VLProcessor")

    def __init__(self, system_prompt: str | None = None):
        self.system_prompt = system_prompt
        self.processor = None

    # ------------------------------------------------------------------ processor
    def load_processor(
        self, folder: str | Path, min_pixels: int | None = None, max_pixels: int | None = None
    ):
        self.processor = load_processor(folder, min_pixels=min_pixels, max_pixels=max_pixels)
        self.processor.tokenizer.padding_side = "left"
        return self.processor

    def save_processor(self, path: str | Path) -> None:
        save_processor(self.processor, path)

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    def suppress_ids(self) -> list[int]:
        return [self.tokenizer.convert_tokens_to_ids(t) for t in self.vision_tokens]

    # ------------------------------------------------------------------ structure
    def visual(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.model.visual

    def shard_units(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        """What FSDP2 shards one by one: every vision block and every language decoder layer (the rest: the root)."""
        return [*model.model.visual.blocks, *model.model.language_model.layers]

    # ------------------------------------------------------------------ encoding
    def chat_text(self, text: str) -> str:
        """The chat-formatted prompt (image then ``text``) ending with the assistant turn's opening."""
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]})
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode_chat(
        self, model: torch.nn.Module, chat_texts: list[str], images: list[Image.Image]
    ) -> PromptBatch:
        """Tokenise chat-formatted prompts with their images, left-padded, and precompute their positions."""
        enc = self.processor(text=chat_texts, images=images, padding=True, return_tensors="pt")
        inputs = {k: enc[k] for k in PROMPT_KEYS}
        inputs["position_ids"] = self.position_ids(model, inputs)
        return PromptBatch(inputs, num_prompts=len(chat_texts))

    def encode_sft(
        self, model: torch.nn.Module, images: list[Image.Image], texts: list[str], targets: list[str]
    ) -> TokenizedSFTBatch:
        """Prompt + assistant target + end-of-turn; labels cover the target and its end token only."""
        prompts = self.encode_chat(model, [self.chat_text(t) for t in texts], images).inputs
        end = self.tokenizer.eos_token  # <|im_end|>: the model must learn to stop
        target_ids = [self.tokenizer(t + end, add_special_tokens=False)["input_ids"] for t in targets]
        rows, types, labels = [], [], []
        for i, tgt in enumerate(target_ids):
            keep = prompts["attention_mask"][i].bool()
            p_ids = prompts["input_ids"][i][keep].tolist()
            rows.append(p_ids + tgt)
            types.append(prompts["mm_token_type_ids"][i][keep].tolist() + [0] * len(tgt))
            labels.append([-100] * len(p_ids) + tgt)
        width = max(len(r) for r in rows)

        def left_pad(seqs: list[list[int]], value: int) -> torch.Tensor:
            return torch.tensor([[value] * (width - len(s)) + s for s in seqs], dtype=torch.long)

        inputs = {
            "input_ids": left_pad(rows, self.tokenizer.pad_token_id),
            "attention_mask": left_pad([[1] * len(r) for r in rows], 0),
            "mm_token_type_ids": left_pad(types, 0),
            "pixel_values": prompts["pixel_values"],
            "image_grid_thw": prompts["image_grid_thw"],
        }
        inputs["position_ids"] = self.position_ids(model, inputs)
        return TokenizedSFTBatch(inputs, left_pad(labels, -100))

    # ------------------------------------------------------------------ positions
    def position_ids(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """3-D M-RoPE position ids [3, B, L] for left-padded rows (pad positions are 0 and masked anyway)."""
        position_ids, _ = model.model.get_rope_index(
            inputs["input_ids"],
            mm_token_type_ids=inputs["mm_token_type_ids"],
            image_grid_thw=inputs["image_grid_thw"],
            attention_mask=inputs["attention_mask"],
        )
        return position_ids

    @staticmethod
    def next_positions(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """First completion position of each prompt row [B]: one past its largest M-RoPE position."""
        return inputs["position_ids"].amax(dim=(0, 2)) + 1

    @staticmethod
    def text_positions(start: torch.Tensor, length: int) -> torch.Tensor:
        """Positions [3, N, length] of ``length`` text tokens from ``start`` [N]: text advances all three axes."""
        pos = start[:, None] + torch.arange(length, device=start.device)
        return pos[None].expand(3, *pos.shape)

    def append_completions(
        self, model: torch.nn.Module, rows: dict[str, torch.Tensor], completion_ids: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Prompt rows followed by text tokens (a full re-forward's inputs), positions recomputed over both."""
        full = {
            "input_ids": torch.cat([rows["input_ids"], completion_ids], dim=1),
            "attention_mask": torch.cat([rows["attention_mask"], torch.ones_like(completion_ids)], dim=1),
            "mm_token_type_ids": torch.cat(
                [rows["mm_token_type_ids"], torch.zeros_like(completion_ids)], dim=1
            ),
            "pixel_values": rows["pixel_values"],
            "image_grid_thw": rows["image_grid_thw"],
        }
        full["position_ids"] = self.position_ids(model, full)
        return full

    @staticmethod
    def select_prompts(inputs: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
        return expand_prompt_inputs(inputs, index)

    # ------------------------------------------------------------------ builds from config (no download)
    @staticmethod
    def tiny_architecture(spec, text_config: dict, vision_config: dict, token_ids: dict[str, int]):
        """Config, model class and image processor of the tiny Qwen2.5-VL (:mod:`facial_r1.models.tiny`):
        ``text_config`` holds the widths, vocabulary and special ids, ``vision_config`` the tower's widths, depth and
        patching, ``token_ids`` the vision token ids; the family adds what only it has."""
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        # mrope_section splits head_dim/2 rotary frequencies over (temporal, height, width); must sum to head_dim/2.
        # Same proportions as the 7B model's [16, 24, 24] of 64: a quarter temporal, the rest split height/width.
        half = (spec.hidden_size // spec.num_heads) // 2
        spatial = (half - half // 4) // 2
        mrope = [half - 2 * spatial, spatial, spatial]
        config = Qwen2_5_VLConfig(
            text_config={
                **text_config,
                "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
            },
            vision_config={
                **vision_config,
                "window_size": spec.patch_size * spec.merge_size * 4,
                # the default (7, 15, ...) would leave no full-attention block at depth 2
                "fullatt_block_indexes": [spec.vision_depth - 1],
            },
            **token_ids,
            tie_word_embeddings=False,
        )
        pixels = (spec.processor_image_size or spec.image_size) ** 2
        image_processor = Qwen2VLImageProcessorPil(
            min_pixels=pixels, max_pixels=pixels, patch_size=spec.patch_size, merge_size=spec.merge_size
        )
        return config, Qwen2_5_VLForConditionalGeneration, image_processor

    @staticmethod
    def reduced_architecture(config: dict, text_layers: int, vision_depth: int):
        """The published config (:mod:`facial_r1.models.reduced`) at reduced depth: every other vision block
        full-attention, the rest windowed, as published."""
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        config["num_hidden_layers"] = text_layers
        config["max_window_layers"] = text_layers
        published = config["vision_config"]
        full_attention = (  # the published layout at full depth; every other block when reduced
            published["fullatt_block_indexes"]
            if vision_depth == published["depth"]
            else list(range(1, vision_depth, 2))
        )
        config["vision_config"] = {
            **published,
            "depth": vision_depth,
            "fullatt_block_indexes": full_attention,
        }
        # the published image processor settings: 14 px patches, merge 2, 4 to 16384 tokens per image
        image_processor = Qwen2VLImageProcessorPil(
            min_pixels=3136, max_pixels=12845056, patch_size=14, merge_size=2
        )
        return Qwen2_5_VLConfig(**config), Qwen2_5_VLForConditionalGeneration, image_processor


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


FAMILY = Qwen25VLFamily  # found by model_type (facial_r1.models.families)


def Qwen25VLAdapter(**kwargs):  # noqa: N802 - the class name configs and notebooks used before the split
    """A :class:`~facial_r1.models.policy.Policy` over the Qwen2.5-VL family (``model._target_`` of older configs)."""
    from facial_r1.models.policy import Policy

    system_prompt = kwargs.pop("system_prompt", None)
    return Policy(family=Qwen25VLFamily(system_prompt=system_prompt), **kwargs)
