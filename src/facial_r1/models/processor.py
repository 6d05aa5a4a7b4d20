"""An image-only Qwen2.5-VL processor, so nothing here needs torchvision.

``Qwen2_5_VLProcessor`` insists on a video processor, and every video processor imports torchvision, whose PyPI
build does not load beside the CPU torch these machines use. Faces are still images, so this subclass drops the
video part and keeps Qwen's exact image path (``Qwen2VLImageProcessorPil``: smart resize to multiples of
patch x merge, 14 px patches, flattened ``pixel_values``). Always load processors through :func:`load_processor`:
``AutoProcessor.from_pretrained`` would silently return just the tokenizer for a folder it cannot fully build.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoProcessor, AutoTokenizer, Qwen2_5_VLConfig
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):  # noqa: N801 - mirrors the transformers class name
    """Qwen2.5-VL processor for images and text only (no video processor, hence no torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        # Skip Qwen2_5_VLProcessor.__init__ (it wants a video processor) but set the same token attributes.
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        super(Qwen2_5_VLProcessor, self).__init__(image_processor, tokenizer, chat_template=chat_template)


def load_processor(
    path: str | Path, *, min_pixels: int | None = None, max_pixels: int | None = None
) -> ImageOnlyQwen2_5_VLProcessor:
    """Build the image-only processor from a local model folder (a real Qwen2.5-VL checkpoint or a tiny export).

    ``min_pixels``/``max_pixels`` bound the resized image area (Qwen's smart resize); None keeps the folder's values.
    """
    pixel_kwargs = {
        k: v for k, v in {"min_pixels": min_pixels, "max_pixels": max_pixels}.items() if v is not None
    }
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(str(path), **pixel_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(str(path), padding_side="left")
    chat_template = tokenizer.chat_template
    template_file = Path(path) / "chat_template.jinja"
    if template_file.is_file():
        chat_template = template_file.read_text()
    processor = ImageOnlyQwen2_5_VLProcessor(image_processor, tokenizer, chat_template=chat_template)
    register_auto_processor()
    return processor


def register_auto_processor() -> None:
    """Make ``AutoProcessor`` return the image-only processor for Qwen2.5-VL folders (idempotent)."""
    AutoProcessor.register(Qwen2_5_VLConfig, ImageOnlyQwen2_5_VLProcessor, exist_ok=True)
