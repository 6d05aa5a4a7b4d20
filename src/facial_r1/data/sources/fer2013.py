"""FER2013 from ``fer2013.csv`` (for the image-folder variant, use :class:`ImageFolderSource` with ``class_folders``).

On disk::

    <root>/fer2013.csv    columns emotion (0 anger, 1 disgust, 2 fear, 3 happiness, 4 sadness, 5 surprise,
                          6 neutral), pixels (48x48 grayscale, 2304 space-separated ints), Usage

The Kaggle ICML-challenge file ``icml_face_data.csv`` (header ``emotion, Usage, pixels``, spaces included) works
too: header names are stripped, and ``csv_file="auto"`` (the default) reads ``fer2013.csv`` or, when that is absent,
``icml_face_data.csv``.

Splits: ``Usage`` Training -> train, PublicTest -> val, PrivateTest -> test.

Records hold image paths, so each row's pixels are written once as ``<cache_dir>/<csv key>/<row>.png`` (the key
changes when the CSV file changes) and reused on the next load. Each PNG is written to a temporary name and renamed,
so an interrupted run never leaves a half-written image behind.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from facial_r1.data.schema import DataError, make_record
from facial_r1.data.sources.base import Row, SampleError, Source, default_cache_dir, read_csv_rows
from facial_r1.facs import LABEL_ORDERS

USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
SIDE = 48
CSV_NAMES = ("fer2013.csv", "icml_face_data.csv")  # csv_file="auto" reads the first that exists


class Fer2013Source(Source):
    """FER2013, 7 classes, with pixels materialised to cached PNGs."""

    name = "fer2013"

    def __init__(
        self,
        root: str | os.PathLike,
        on_error: str = "raise",
        report_path: str | None = None,
        csv_file: str = "auto",
        cache_dir: str | os.PathLike | None = None,
    ):
        super().__init__(root, on_error, report_path)
        if csv_file == "auto":
            present = [name for name in CSV_NAMES if (self.root / name).is_file()]
            csv_file = present[0] if present else CSV_NAMES[0]
        self.csv_path = self.root / csv_file
        self.cache_root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir("fer2013")
        self.label_order = LABEL_ORDERS["fer2013"]
        self._folder: Path | None = None

    def _rows(self, split: str) -> Iterator[Row]:
        if not self.csv_path.is_file():
            raise DataError("FER2013 CSV not found", str(self.csv_path))
        for row in read_csv_rows(
            str(self.csv_path), ("emotion", "pixels", "Usage"), self.name, strip_header=True
        ):
            usage = USAGE_TO_SPLIT.get(row.data["Usage"].strip())
            # An unknown Usage goes to train, where _parse reports it.
            if usage == split or (usage is None and split == "train"):
                yield row

    def _parse(self, row: Row) -> dict[str, Any]:
        data = row.data
        if data["Usage"].strip() not in USAGE_TO_SPLIT:
            raise SampleError("malformed_line", f"unknown Usage {data['Usage']!r}", row.file, row.line)
        if not data["emotion"].strip().isdigit() or int(data["emotion"]) >= len(self.label_order):
            raise SampleError("unknown_label", f"emotion {data['emotion']!r} not in 0..6", row.file, row.line)
        # Data rows start at line 2 of a one-line-per-row file; the line number is a stable, unique id.
        row_id = f"{row.line:05d}"
        return make_record(
            id=row_id,
            dataset=self.name,
            image=self._materialise(row_id, data["pixels"] or "", row),
            aus=None,
            labels=[self.label_order[int(data["emotion"])]],
            label_set=sorted(self.label_order),
            meta_info={"usage": data["Usage"].strip(), **self.origin(row)},
        )

    def _materialise(self, row_id: str, pixels: str, row: Row) -> str:
        path = self._cache_folder() / f"{row_id}.png"
        if path.is_file():
            return str(path)
        values = pixels.split()
        if len(values) != SIDE * SIDE or not all(v.isdigit() and int(v) <= 255 for v in values):
            raise SampleError(
                "bad_pixels",
                f"pixels must be {SIDE * SIDE} ints in 0..255, got {len(values)} values",
                row.file,
                row.line,
            )
        image = Image.fromarray(np.fromiter(map(int, values), np.uint8, SIDE * SIDE).reshape(SIDE, SIDE))
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        image.save(tmp, format="PNG")
        os.replace(tmp, path)
        return str(path)

    def _cache_folder(self) -> Path:
        if self._folder is None:
            stat = self.csv_path.stat()
            key = f"{self.csv_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
            self._folder = self.cache_root / hashlib.sha1(key.encode()).hexdigest()[:16]
            self._folder.mkdir(parents=True, exist_ok=True)
        return self._folder
