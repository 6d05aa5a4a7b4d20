"""vLLM plugin (entry point ``vllm.general_plugins: facial_r1``): runs Qwen2.5-VL in vLLM without torchvision.

vLLM loads general plugins in every process it starts (the engine core, the model inspection subprocess), so the
patches below reach all of them; importing ``facial_r1`` alone changes nothing. They apply only where torchvision
is absent (the CPU build's environment from ``scripts/setup_vllm_env.sh``, whose CUDA torchvision wheels cannot load
beside the CPU torch); with a working torchvision vLLM runs unpatched.

1. vLLM's ``qwen2_vl`` model code imports ``smart_resize`` from
   ``transformers.models.qwen2_vl.image_processing_qwen2_vl``, the torchvision image processor module. An import
   hook serves that module name from the PIL backend module, which defines the same ``smart_resize``.
2. vLLM builds ``Qwen2_5_VLProcessor.from_pretrained(folder)`` itself (whatever the folder's ``processor_class``),
   and every video processor imports torchvision. The class it names is replaced by an image-only processor (the
   project's, see :mod:`facial_r1.models.processor`) carrying a video-processor stand-in, because vLLM reads
   ``processor.video_processor.valid_kwargs`` when it lists the kwargs a model accepts. Videos are then refused.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
from types import ModuleType
from typing import TypedDict

log = logging.getLogger(__name__)

TORCHVISION_MODULE = "transformers.models.qwen2_vl.image_processing_qwen2_vl"
PIL_MODULE = "transformers.models.qwen2_vl.image_processing_pil_qwen2_vl"
# vLLM module -> the processor class name it passes to ``ctx.get_hf_processor``; extend for another family.
PROCESSOR_SUBSTITUTIONS = {"vllm.model_executor.models.qwen2_5_vl": "Qwen2_5_VLProcessor"}


def register() -> None:
    """The entry point vLLM calls in each of its processes (idempotent)."""
    if importlib.util.find_spec("torchvision") is not None:
        return
    install_pil_alias()
    substitute_processors()


# 1. smart_resize ---------------------------------------------------------------------------------------------------


class _PilAliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports of ``TORCHVISION_MODULE`` get a module re-exporting the public names of ``PIL_MODULE``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != TORCHVISION_MODULE:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        source = importlib.import_module(PIL_MODULE)
        module.__dict__.update({k: v for k, v in vars(source).items() if not k.startswith("__")})


def install_pil_alias() -> None:
    if not any(isinstance(f, _PilAliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PilAliasFinder())


# 2. image-only processor -------------------------------------------------------------------------------------------


class NoVideoKwargs(TypedDict, total=False):
    """The video processor's ``valid_kwargs`` (vLLM lists them, transformers validates against them): none."""


class NoVideoProcessor:
    """Stands in for the torchvision-only video processor; any use other than listing its kwargs is an error."""

    valid_kwargs = NoVideoKwargs

    def __call__(self, *args, **kwargs):
        raise NotImplementedError(
            "facial_r1's vLLM plugin serves Qwen2.5-VL for images only: video inputs need torchvision, which this "
            "environment lacks (see scripts/setup_vllm_env.sh)"
        )


def _image_only_processor_class() -> type:
    from facial_r1.models.processor import ImageOnlyQwen2_5_VLProcessor

    class VLLMImageOnlyQwen2_5_VLProcessor(ImageOnlyQwen2_5_VLProcessor):  # noqa: N801 - transformers naming
        """``ImageOnlyQwen2_5_VLProcessor`` plus the video-processor stand-in vLLM inspects."""

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)
            self.video_processor = NoVideoProcessor()

    return VLLMImageOnlyQwen2_5_VLProcessor


def substitute_processors() -> None:
    """Point each vLLM model module's processor class at the image-only one (imports those modules)."""
    replacement = _image_only_processor_class()
    for module_name, attribute in PROCESSOR_SUBSTITUTIONS.items():
        install_pil_alias()  # the model module imports smart_resize at import time
        module = importlib.import_module(module_name)
        if getattr(module, attribute) is not replacement:
            setattr(module, attribute, replacement)
            log.debug("facial_r1 vLLM plugin: %s.%s -> image-only processor", module_name, attribute)
