"""Qwen3-VL: the second model family (a local 2B/4B/8B checkpoint folder, or the tiny one from ``models/tiny.py``).

:class:`Qwen3VLFamily` is :class:`~facial_r1.models.qwen2_5_vl.Qwen25VLFamily` with its own processor. What differs from Qwen2.5-VL, and where it is handled:

- 16 px patches (32 px units after the 2 x 2 merge), normalised with mean = std = 0.5: the folder's
  ``preprocessor_config.json``, read by the same ``Qwen2VLImageProcessorPil`` (no torchvision);
- a processor class of its own (``Qwen3VLProcessor``, which insists on a video processor, hence torchvision):
  :class:`ImageOnlyQwen3VLProcessor` here;
- DeepStack (merged features of a few vision blocks added to the image positions of the first text layers) and
  interleaved M-RoPE: inside transformers' model; nothing to do on our side, because image features exist only in
  the prompt prefill and completions are text.

What is the same: the chat markup (``<|vision_start|><|image_pad|>...<|vision_end|>``), ``mm_token_type_ids``
(1 on image tokens) and ``get_rope_index(input_ids, mm_token_type_ids, image_grid_thw, attention_mask)``, whose 3-D
positions continue over a completion as plain text positions (one past the prompt's largest), so one prompt prefill
can be shared by G completions exactly as for Qwen2.5-VL.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoProcessor, AutoTokenizer, Qwen3VLConfig
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor

from facial_r1.models.processor import read_chat_template, save_processor
from facial_r1.models.qwen2_5_vl import Qwen25VLFamily

STANDARD_PROCESSOR_CLASS = "Qwen3VLProcessor"


class ImageOnlyQwen3VLProcessor(Qwen3VLProcessor):
    """Qwen3-VL processor for images and text only (no video processor, hence no torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        # Skip Qwen3VLProcessor.__init__ (it wants a video processor) but set the same token attributes.
        for name, default in (
            ("image_token", "<|image_pad|>"),
            ("video_token", "<|video_pad|>"),
            ("vision_start_token", "<|vision_start|>"),
            ("vision_end_token", "<|vision_end|>"),
        ):
            token = getattr(tokenizer, name, None) or default
            setattr(self, name, token)
            setattr(self, f"{name}_id", tokenizer.convert_tokens_to_ids(token))
        super(Qwen3VLProcessor, self).__init__(image_processor, tokenizer, chat_template=chat_template)


def load_processor(
    path: str | Path, *, min_pixels: int | None = None, max_pixels: int | None = None
) -> ImageOnlyQwen3VLProcessor:
    """Build the image-only processor from a local Qwen3-VL folder (a published checkpoint or a tiny export).

    ``min_pixels``/``max_pixels`` bound the resized image area; None keeps the folder's values (published:
    65,536 to 16,777,216 pixels, i.e. 64 to 16,384 image tokens - a preset should lower the minimum for faces).
    """
    pixel_kwargs = {
        k: v for k, v in {"min_pixels": min_pixels, "max_pixels": max_pixels}.items() if v is not None
    }
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(str(path), **pixel_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(str(path), padding_side="left")
    chat_template = read_chat_template(path) or tokenizer.chat_template
    processor = ImageOnlyQwen3VLProcessor(image_processor, tokenizer, chat_template=chat_template)
    AutoProcessor.register(Qwen3VLConfig, ImageOnlyQwen3VLProcessor, exist_ok=True)
    return processor


class Qwen3VLFamily(Qwen25VLFamily):
    """Encoding and positions of Qwen3-VL: chat text, prompt/SFT encoding, 3-D positions and their continuation over
    completions, suppressed vision tokens, LoRA targets (``language_model.layers.N`` linears) and shard units
    (vision blocks + decoder layers; the DeepStack mergers stay with the root) are Qwen2.5-VL's, inherited."""

    model_type = "qwen3_vl"
    image_only_processor = ImageOnlyQwen3VLProcessor
    vllm_processor = ("vllm.model_executor.models.qwen3_vl", "Qwen3VLProcessor")

    def load_processor(
        self, folder: str | Path, min_pixels: int | None = None, max_pixels: int | None = None
    ) -> ImageOnlyQwen3VLProcessor:
        self.processor = load_processor(folder, min_pixels=min_pixels, max_pixels=max_pixels)
        self.processor.tokenizer.padding_side = "left"
        return self.processor

    def save_processor(self, path: str | Path) -> None:
        save_processor(self.processor, path, processor_class=STANDARD_PROCESSOR_CLASS)

    # ------------------------------------------------------------------ builds from config (no download)
    @staticmethod
    def tiny_architecture(spec, text_config: dict, vision_config: dict, token_ids: dict[str, int]):
        """Config, model class and image processor of the tiny Qwen3-VL (fields as in the published config.json).

        What transformers implements for Qwen3-VL is kept at the tiny widths: 16 px patches with a learned,
        bilinearly resampled position grid, DeepStack (the merged features of the vision blocks in
        ``spec.deepstack_visual_indexes`` are added to the image positions of the first text layers), interleaved
        M-RoPE and Qwen3's q/k norms. The image processor resizes to multiples of 32 px, so a 112 px face becomes
        ``spec.processor_image_size`` = 128 px: 16 image tokens, the vision compute of the Qwen2.5-VL tiny.
        """
        from transformers import Qwen3VLForConditionalGeneration

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
                **text_config,
                "head_dim": head_dim,
                "rope_parameters": {
                    "rope_type": "default",
                    "rope_theta": 10000.0,
                    "mrope_section": mrope,
                    "mrope_interleaved": True,
                },
            },
            vision_config={
                **vision_config,
                # The learned position grid (published: 48 x 48, resampled to each image) sized to the tiny's images.
                "num_position_embeddings": grid * grid,
                "deepstack_visual_indexes": list(spec.deepstack_visual_indexes),
            },
            **token_ids,
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

    @staticmethod
    def reduced_architecture(config: dict, text_layers: int, vision_depth: int):
        """The published config at reduced depth: the DeepStack blocks scaled into the reduced tower (at most one
        per text layer, since block k's features are added to text layer k)."""
        from transformers import Qwen3VLForConditionalGeneration

        config["text_config"] = {**config["text_config"], "num_hidden_layers": text_layers}
        vision = config["vision_config"]
        deepstack = sorted({i * vision_depth // vision["depth"] for i in vision["deepstack_visual_indexes"]})
        config["vision_config"] = {
            **vision,
            "depth": vision_depth,
            "deepstack_visual_indexes": deepstack[:text_layers],
        }
        # the published image processor settings: 16 px patches, merge 2, mean = std = 0.5, 64 to 16384 tokens
        image_processor = Qwen2VLImageProcessorPil(
            min_pixels=65536,
            max_pixels=16777216,
            patch_size=16,
            merge_size=2,
            image_mean=[0.5, 0.5, 0.5],
            image_std=[0.5, 0.5, 0.5],
        )
        return Qwen3VLConfig(**config), Qwen3VLForConditionalGeneration, image_processor


FAMILY = Qwen3VLFamily  # found by model_type (facial_r1.models.families)
