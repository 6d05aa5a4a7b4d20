"""vLLM plugin (entry point ``vllm.general_plugins: facial_r1``): runs the project's families in vLLM without torchvision.

vLLM loads general plugins in every process it starts (the engine core, the model inspection subprocess), so the
patches below reach all of them; importing ``facial_r1`` alone changes nothing. They apply only where torchvision
is absent (the CPU build's environment from ``scripts/setup_vllm_env.sh``, whose CUDA torchvision wheels cannot load
beside the CPU torch); with a working torchvision vLLM runs unpatched.

1. vLLM's ``qwen2_vl`` model code imports ``smart_resize`` from
   ``transformers.models.qwen2_vl.image_processing_qwen2_vl``, the torchvision image processor module. An import
   hook serves that module name from the PIL backend module, which defines the same ``smart_resize``.
2. vLLM builds the family's processor itself (``Qwen2_5_VLProcessor`` / ``Qwen3VLProcessor``, whatever the folder's
   ``processor_class``), and every video processor imports torchvision. For every family
   (:func:`facial_r1.models.families.family_names`) the class its vLLM model module names (the family's
   ``vllm_processor``) is replaced by the family's image-only processor carrying a video-processor stand-in, because
   vLLM reads ``processor.video_processor.valid_kwargs`` when it lists the kwargs a model accepts. Videos are then
   refused.
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
    """Stands in for the torchvision-only video processor; any use other than listing its kwargs or sizing the
    (zero) video budget is an error. vLLM sizes that budget from ``size`` and ``temporal_patch_size`` even with
    ``limit_mm_per_prompt={"video": 0}`` (Qwen3-VL), so they mirror the image processor's."""

    valid_kwargs = NoVideoKwargs

    def __init__(self, image_processor=None):
        self.size = dict(getattr(image_processor, "size", None) or {})
        self.temporal_patch_size = getattr(image_processor, "temporal_patch_size", None) or 2

    def __call__(self, *args, **kwargs):
        raise NotImplementedError(
            "facial_r1's vLLM plugin serves the model for images only: video inputs need torchvision, which this "
            "environment lacks (see scripts/setup_vllm_env.sh)"
        )


def _vllm_processor_class(image_only: type) -> type:
    """``image_only`` (a family's image-only processor) plus the video-processor stand-in vLLM inspects."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        image_only.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)
        self.video_processor = NoVideoProcessor(self.image_processor)

    return type(f"VLLM{image_only.__name__}", (image_only,), {"__init__": __init__})


def processor_substitutions() -> dict[tuple[str, str], type]:
    """(vLLM model module, processor class name it passes to ``ctx.get_hf_processor``) -> the image-only class, for
    every family that declares ``vllm_processor``."""
    from facial_r1.models.families import family_class, family_names

    out = {}
    for name in family_names():
        family = family_class(name)
        target = getattr(family, "vllm_processor", None)
        if target is None:
            continue
        target = tuple(target)
        if target in out and not issubclass(out[target], family.image_only_processor):
            raise ValueError(
                f"model families {name!r} and another both claim vLLM's {'.'.join(target)} with different "
                "processors: set the family's own vllm_processor (a subclass inherits its parent's)"
            )
        out.setdefault(target, _vllm_processor_class(family.image_only_processor))
    return out


def substitute_processors() -> None:
    """Point each family's vLLM model module at its image-only processor (imports those modules)."""
    for (module_name, attribute), replacement in processor_substitutions().items():
        install_pil_alias()  # the model module imports smart_resize at import time
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise  # the model module exists but one of its imports does not: say so, do not skip it
            log.debug("facial_r1 vLLM plugin: %s not in this vLLM", module_name)  # nothing to serve or patch
            continue
        current = getattr(module, attribute)
        if current.__name__ != replacement.__name__:  # once per process (classes are rebuilt per call)
            setattr(module, attribute, replacement)
            log.debug("facial_r1 vLLM plugin: %s.%s -> image-only processor", module_name, attribute)
