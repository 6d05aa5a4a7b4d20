"""A folder of images, for predictions (or a class-per-folder layout such as FER2013's image release).

Layouts::

    <root>/<any/sub/path>/x.jpg        class_folders=False: no labels (labels=[], AUs=None), searched recursively
    <root>/happy/x.jpg                 class_folders=True: the folder name is the label (normalised: "happy" ->
                                       happiness; a name outside ``label_set`` is an unknown-label error)

Either layout may sit under ``<root>/train``, ``<root>/val``, ``<root>/test``: when any of these exists, each split
is its folder (and a missing one is an error) - except ``val``: without a ``val/`` folder (FER2013's image release
has only ``train/`` and ``test/``), ``val`` is a seeded ``val_fraction`` slice of ``train/`` and ``train`` is the
rest (logged when it happens). Without split folders the whole root serves every split. Files without an image
extension are left out and counted (reason ``not_an_image``). Ids are paths relative to the split folder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from facial_r1.data.images import IMAGE_EXTENSIONS, resolve_image
from facial_r1.data.schema import DataError, make_record
from facial_r1.data.sources.base import SPLITS, Drop, Row, Source
from facial_r1.data.sources.labels import check_label_set, check_labels
from facial_r1.facs import EMOTIONS

log = logging.getLogger(__name__)


class ImageFolderSource(Source):
    """Images from a folder, unlabeled or labeled by class folder."""

    def __init__(
        self,
        root: str | os.PathLike,
        on_error: str = "raise",
        report_path: str | None = None,
        class_folders: bool = False,
        label_set: Sequence[str] = EMOTIONS,
        name: str = "image_folder",
        val_fraction: float = 0.1,
        seed: int = 0,
    ):
        super().__init__(root, on_error, report_path, val_fraction, seed)
        self.name = name
        self.class_folders = class_folders
        self.label_set = check_label_set(list(label_set))
        self._told = False  # the carved-val notice is logged once per source

    def _val_is_holdout(self) -> bool:
        holdout = (self.root / "train").is_dir() and not (self.root / "val").is_dir()
        if holdout and not self._told:
            log.info(
                "%s: no val/ folder; val = a seeded %.0f%% slice of train/ (seed %d)",
                self.root,
                100 * self.val_fraction,
                self.seed,
            )
            self._told = True
        return holdout

    def _rows(self, split: str) -> Iterator[Row]:
        if not self.root.is_dir():
            raise DataError("image folder not found", str(self.root))
        split_layout = any((self.root / s).is_dir() for s in SPLITS)
        base = self.root / split if split_layout else self.root
        if not base.is_dir():
            raise DataError(f"no folder for split {split!r} (the root has split folders)", str(base))
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            yield Row(str(path), None, base)

    def _parse(self, row: Row) -> dict[str, Any] | Drop:
        base: Path = row.data
        relpath = Path(row.file).relative_to(base)
        if relpath.suffix.lower() not in IMAGE_EXTENSIONS:
            return Drop("not_an_image", str(relpath))
        labels = []
        if self.class_folders:
            if len(relpath.parts) < 2:
                return Drop("outside_class_folder", f"{relpath} is not inside a class folder")
            labels = check_labels([relpath.parts[0]], self.label_set, path=row.file)
        return make_record(
            id=relpath.as_posix(),
            dataset=self.name,
            image=resolve_image(base, str(relpath), row.file),
            aus=None,
            labels=labels,
            label_set=self.label_set,
            meta_info={"source_file": row.file},
        )
