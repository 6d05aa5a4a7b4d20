"""Dataset sources: each turns one dataset's native files into schema records (see ``base.py`` for the contract).

Pick one from the config group ``dataset`` (``conf/dataset/<name>.yaml``); every yaml ``_target_``s a class here.
"""

from __future__ import annotations

from typing import Any

from facial_r1.data.sources.affectnet import AffectNetSource
from facial_r1.data.sources.base import SPLITS, LoadReport, SampleError, SkippedItem, Source
from facial_r1.data.sources.bp4d import Bp4dSource
from facial_r1.data.sources.disfa import DisfaSource
from facial_r1.data.sources.faba import FabaInstructSource
from facial_r1.data.sources.fer2013 import Fer2013Source
from facial_r1.data.sources.image_folder import ImageFolderSource
from facial_r1.data.sources.jsonl import FacialR1JsonlSource
from facial_r1.data.sources.rafdb import RafDbSource
from facial_r1.data.sources.rafdb_compound import RafDbCompoundSource
from facial_r1.data.sources.synthfaces import SynthFacesSource

__all__ = [
    "SPLITS",
    "AffectNetSource",
    "Bp4dSource",
    "DisfaSource",
    "FabaInstructSource",
    "FacialR1JsonlSource",
    "Fer2013Source",
    "ImageFolderSource",
    "LoadReport",
    "RafDbCompoundSource",
    "RafDbSource",
    "SampleError",
    "SkippedItem",
    "Source",
    "SynthFacesSource",
    "build_source",
]


def build_source(cfg: Any, **overrides: Any) -> Source:
    """Instantiate a ``dataset`` config node (``hydra.utils.instantiate``): the one way every entry point builds its
    data source. A missing ``root`` fails with the override that supplies it; a target that is not a
    :class:`Source` fails naming it."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    # `.keys()` because `"root" in cfg` reads the value and raises on "???" before we can explain.
    if OmegaConf.is_config(cfg) and "root" in cfg.keys() and OmegaConf.is_missing(cfg, "root"):  # noqa: SIM118
        raise ValueError(
            f"dataset.root is required for {cfg.get('_target_')}: add dataset.root=/path/to/data"
        )
    source = instantiate(cfg, **overrides)
    if not isinstance(source, Source):
        raise TypeError(f"{cfg.get('_target_')} built a {type(source).__name__}, not a Source")
    return source
