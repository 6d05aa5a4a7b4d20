"""SynthFACS, the procedural default dataset: generated on first use, cached, then read as Facial-R1 JSON lines.

Each split is rendered once by :func:`facial_r1.data.synthfaces.export_split` into
``<cache_dir>/<key>/{<split>.jsonl, images/<split>/*.jpg}``, where ``key`` hashes everything that shapes the split
(split, size, seed, the full :class:`SynthFacesConfig`, the renderer version if it declares one). Changing any of
them renders a new folder; an unchanged request reuses the old one. Reference descriptions are not generated here
(``describe=None``): the SFT stage writes its own.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from facial_r1.data.sources.base import LoadReport, Source, default_cache_dir
from facial_r1.data.sources.jsonl import FacialR1JsonlSource
from facial_r1.files import exclusive_lock


class SynthFacesSource(Source):
    """SynthFACS rendered on demand (``n_train`` / ``n_val`` / ``n_test`` samples)."""

    name = "synthfaces"
    image_check = (
        "none"  # rendered by this project and written atomically: decoding every one again buys nothing
    )

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        on_error: str = "raise",
        report_path: str | None = None,
        n_train: int = 20000,
        n_val: int = 200,
        n_test: int = 500,
        seed: int = 0,
        image_size: int = 112,
        config: dict[str, Any] | None = None,
        cache_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ):
        # `root` exists for uniformity with the other sources: a cache folder that wins over `cache_dir`.
        cache = root or cache_dir or default_cache_dir("synthfaces")
        super().__init__(cache, on_error, report_path, seed=seed)
        self.sizes = {"train": int(n_train), "val": int(n_val), "test": int(n_test)}
        self.image_size = image_size
        self.config = dict(config or {})
        self.progress = progress

    def generator_config(self) -> Any:
        """The :class:`SynthFacesConfig` every split is rendered with."""
        from facial_r1.data.synthfaces import SynthFacesConfig  # lazy: rendering code is only needed here

        return SynthFacesConfig(image_size=self.image_size, **self.config)

    def split_dir(self, split: str) -> Path:
        """Cache folder of ``split`` for the current arguments (whether or not it exists yet)."""
        from facial_r1.data import synthfaces

        key = {
            "split": split,
            "n": self.sizes[split],
            "seed": self.seed,
            "config": asdict(self.generator_config()),
            "version": getattr(synthfaces, "__version__", None),
        }
        digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return self.root / digest

    def materialise(self, split: str) -> Path:
        """Render ``split`` unless its cache folder is complete; returns the folder.

        Processes that ask for the same split at once (seeds side by side, a parallel multirun) render it once: the
        others wait on the folder's lock, then find it complete."""
        folder = self.split_dir(split)
        done = folder / f"{split}.jsonl"
        if done.is_file():
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(folder / ".render.lock"):
            if not done.is_file():
                from facial_r1.data.synthfaces import export_split

                export_split(
                    folder, split, self.sizes[split], self.seed, self.generator_config(), describe=None,
                    progress=self.progress,
                )  # fmt: skip
        return folder

    def _collect(self, split: str, report: LoadReport) -> list[dict[str, Any]]:
        folder = self.materialise(split)
        config = self.generator_config()
        reader = FacialR1JsonlSource(
            folder, self.on_error, files={split: f"{split}.jsonl"}, name=self.name,
            label_set=config.emotions, au_vocab=config.au_vocab,
        )  # fmt: skip
        return reader._collect(split, report)
