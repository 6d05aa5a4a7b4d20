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

    def load_processor(
        self, folder: str | Path, min_pixels: int | None = None, max_pixels: int | None = None
    ) -> ImageOnlyQwen3VLProcessor:
        self.processor = load_processor(folder, min_pixels=min_pixels, max_pixels=max_pixels)
        self.processor.tokenizer.padding_side = "left"
        return self.processor

    def save_processor(self, path: str | Path) -> None:
        save_processor(self.processor, path, processor_class=STANDARD_PROCESSOR_CLASS)
