"""An image-only Qwen2.5-VL processor, so nothing here needs torchvision.

``Qwen2_5_VLProcessor`` insists on a video processor, and every video processor imports torchvision, whose PyPI
build does not load beside the CPU torch these machines use. Faces are still images, so this subclass drops the
video part and keeps Qwen's exact image path (``Qwen2VLImageProcessorPil``: smart resize to multiples of
patch x merge, 14 px patches, flattened ``pixel_values``). Inside the project processors are loaded through
:func:`load_processor`; exports written by :func:`save_processor` name the standard ``Qwen2_5_VLProcessor`` so that
plain ``AutoProcessor.from_pretrained(export)`` builds it wherever torchvision is installed (and raises transformers'
"requires the Torchvision library" error, rather than silently returning a tokenizer, where it is not).
"""

from __future__ import annotations

import json
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
    chat_template = read_chat_template(path) or tokenizer.chat_template
    processor = ImageOnlyQwen2_5_VLProcessor(image_processor, tokenizer, chat_template=chat_template)
    register_auto_processor()
    return processor


def register_auto_processor() -> None:
    """Make ``AutoProcessor`` return the image-only processor for Qwen2.5-VL folders (idempotent)."""
    AutoProcessor.register(Qwen2_5_VLConfig, ImageOnlyQwen2_5_VLProcessor, exist_ok=True)


STANDARD_PROCESSOR_CLASS = "Qwen2_5_VLProcessor"


def read_chat_template(path: str | Path) -> str | None:
    """The folder's chat template: ``chat_template.jinja`` (transformers 5) or ``chat_template.json`` (the
    ``{"chat_template": ...}`` file older checkpoints ship); None if neither exists."""
    folder = Path(path)
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text()
    if (folder / "chat_template.json").is_file():
        return json.loads((folder / "chat_template.json").read_text()).get("chat_template")
    return None


def save_processor(
    processor: ImageOnlyQwen2_5_VLProcessor, path: str | Path, processor_class: str = STANDARD_PROCESSOR_CLASS
) -> None:
    """Write tokenizer, image processor and chat template as a published Qwen-VL folder has them: the standard
    processor class (``processor_class``; another family passes its own) in ``processor_config.json`` /
    ``tokenizer_config.json``, ``preprocessor_config.json`` for the image processor, and ``chat_template.jinja``."""
    folder = Path(path)
    processor.save_pretrained(folder)
    processor.tokenizer.save_pretrained(folder)
    processor.image_processor.to_json_file(folder / "preprocessor_config.json")
    for name in ("processor_config.json", "tokenizer_config.json"):
        file = folder / name
        if file.is_file():
            config = json.loads(file.read_text())
            config["processor_class"] = processor_class
            file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    template = processor.chat_template or processor.tokenizer.chat_template
    if template:
        (folder / "chat_template.jinja").write_text(template)
