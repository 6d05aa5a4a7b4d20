"""Where a model family is found, by its ``model_type`` (``config.json``'s), with no list to extend.

A family lives in ``facial_r1/models/<model_type>.py`` and names its class there as ``FAMILY``. Everything that needs
a family by name - the tiny build (``TinySpec.family``), the real-width reduced build (the published config's
``model_type``), the vLLM plugin (every family's processor) - asks this module, so none of them keeps a list to
extend. (What they still share is Qwen's vocabulary of special tokens, chat template and vision-tower layout: a
Qwen-VL family needs nothing more, a family of another lineage would also touch the tokenizer and the warm start.)
"""

from __future__ import annotations

import importlib
import pkgutil


def family_class(model_type: str) -> type:
    """The family class of ``model_type`` (``qwen2_5_vl``, ``qwen3_vl``, ...); a clear error for an unknown one."""
    module_name = f"facial_r1.models.{model_type}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise  # the family file exists but one of its imports does not
        module = None
    family = getattr(module, "FAMILY", None)
    if family is None:
        raise ValueError(f"model family {model_type!r}: allowed values are {', '.join(family_names())}")
    if getattr(family, "model_type", None) != model_type:  # e.g. a subclass that kept its parent's
        raise ValueError(
            f"{module_name}.FAMILY = {family.__name__} declares model_type={getattr(family, 'model_type', None)!r}; "
            f"the file name says {model_type!r}"
        )
    return family


def family_names() -> tuple[str, ...]:
    """Every family in this package: the modules of ``facial_r1.models`` that define ``FAMILY``."""
    import facial_r1.models as package

    names = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or info.ispkg:
            continue
        if getattr(importlib.import_module(f"{package.__name__}.{info.name}"), "FAMILY", None) is not None:
            names.append(info.name)
    return tuple(sorted(names))
