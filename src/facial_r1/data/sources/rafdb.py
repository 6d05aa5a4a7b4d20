"""RAF-DB basic emotions.

On disk (as distributed)::

    <root>/EmoLabel/list_patition_label.txt     lines "train_00001.jpg 5" (1-indexed: 1 surprise ... 7 neutral)
    <root>/Image/aligned/train_00001_aligned.jpg
    <root>/Image/original/train_00001.jpg      (used with aligned=False)

Splits: the ``train_`` / ``test_`` prefixes give train (12,271) and test (3,068); RAF-DB has no validation split,
so ``val`` is a seeded ``val_fraction`` slice of train and ``train`` is the rest. RAF-DB codes no AUs (``AUs=None``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from facial_r1.data.images import resolve_image
from facial_r1.data.schema import DataError, make_record
from facial_r1.data.sources.base import Row, SampleError, Source, text_lines
from facial_r1.facs import LABEL_ORDERS

LABEL_FILE = "EmoLabel/list_patition_label.txt"


class RafDbSource(Source):
    """RAF-DB basic (7 classes) from ``list_patition_label.txt``."""

    name = "rafdb"

    def __init__(
        self,
        root: str | os.PathLike,
        on_error: str = "raise",
        report_path: str | None = None,
        aligned: bool = True,
        val_fraction: float = 0.1,
        seed: int = 0,
    ):
        super().__init__(root, on_error, report_path, val_fraction, seed)
        self.aligned = aligned
        self.label_order = LABEL_ORDERS["rafdb"]

    def _val_is_holdout(self) -> bool:
        return True

    def _rows(self, split: str) -> Iterator[Row]:
        path = self.root / LABEL_FILE
        if not path.is_file():
            raise DataError("RAF-DB label file not found", str(path))
        for number, text in enumerate(text_lines(path), start=1):
            if not text.strip():
                continue
            # The split is the file-name prefix; a line with neither prefix goes to train, where _parse reports it.
            prefix = text.split()[0].split("_")[0]
            if prefix == split or (split == "train" and prefix not in ("train", "test")):
                yield Row(str(path), number, text)

    def _parse(self, row: Row) -> dict[str, Any]:
        fields = row.data.split()
        if len(fields) != 2 or not fields[1].isdigit() or "." not in fields[0]:
            raise SampleError(
                "malformed_line",
                f"expected '<name>.jpg <label>', got {row.data.strip()!r}",
                row.file,
                row.line,
            )
        name, label = fields[0], int(fields[1])
        if not name.startswith(("train_", "test_")):
            raise SampleError(
                "malformed_line", f"{name!r} starts with neither 'train_' nor 'test_'", row.file, row.line
            )
        if not 1 <= label <= len(self.label_order):
            raise SampleError(
                "unknown_label", f"label {label} not in 1..{len(self.label_order)}", row.file, row.line
            )
        stem, ext = os.path.splitext(name)
        relpath = f"Image/aligned/{stem}_aligned{ext}" if self.aligned else f"Image/original/{name}"
        return make_record(
            id=stem,
            dataset=self.name,
            image=resolve_image(self.root, relpath, row.file, row.line),
            aus=None,
            labels=[self.label_order[label - 1]],
            label_set=sorted(self.label_order),
            meta_info=self.origin(row),
        )
