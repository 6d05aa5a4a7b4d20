"""BP4D(+): per-sequence AU occurrence CSVs and the sequences' frames.

On disk::

    <root>/<labels_dir>/F001_T1.csv        (searched recursively; names <subject>_<task>.csv, task T1..T8)
        header: frame column first, then one column per AU ("1,2,4,..." or "AU01,AU02,...")
        rows: frame number, then 0 (absent) / 1 (present) / 9 (not coded) per AU
    <root>/<frames_dir>/F001/T1/<frame>.jpg (any zero padding, any image extension)

Only the AUs of ``au_vocab`` (BP4D's usual 12 by default) are read; every one must have a column, other AU
columns are ignored. A code 9 means
"not coded for this frame": that AU is left out of the gold set and listed in ``meta_info["unknown_aus"]`` (so an
evaluation can mask it), and a frame with 9 for every AU is left out (reason ``not_annotated``, not an error).
Splits: subject-exclusive folds, as for DISFA (:func:`subject_splits`).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from facial_r1.data.schema import DataError, make_record
from facial_r1.data.sources.base import Drop, Row, SampleError, text_lines
from facial_r1.data.sources.video import VideoAuSource, frame_files
from facial_r1.facs import AU_VOCAB

_SEQUENCE_FILE = re.compile(r"^(?P<subject>[A-Za-z]+\d+)_(?P<task>T\d+)\.csv$", re.IGNORECASE)
_AU_COLUMN = re.compile(r"^\s*(?:AU)?\s*0*(\d{1,3})\s*$", re.IGNORECASE)


class Bp4dSource(VideoAuSource):
    """BP4D AU occurrence per frame."""

    name = "bp4d"

    def __init__(
        self,
        root: str | os.PathLike,
        labels_dir: str = "AUCoding",
        au_vocab: Sequence[int | str] = AU_VOCAB["bp4d"],
        **options: Any,
    ):
        """``options``: the shared ones of :class:`VideoAuSource` (frames_dir, folds, frame_step, on_error, ...)."""
        super().__init__(root, labels_dir=labels_dir, au_vocab=au_vocab, **options)
        self._sequences: dict[str, list[tuple[str, Path]]] | None = None

    def sequences(self) -> dict[str, list[tuple[str, Path]]]:
        """subject -> [(task, csv path)], sorted."""
        if self._sequences is None:
            if not self.labels_dir.is_dir():
                raise DataError("BP4D AU coding folder not found", str(self.labels_dir))
            found: dict[str, list[tuple[str, Path]]] = {}
            for path in sorted(self.labels_dir.rglob("*.csv")):
                match = _SEQUENCE_FILE.match(path.name)
                if match:
                    found.setdefault(match["subject"], []).append((match["task"], path))
            if not found:
                raise DataError("no '<subject>_<task>.csv' AU files found", str(self.labels_dir))
            self._sequences = found
        return self._sequences

    def subjects(self) -> list[str]:
        return sorted(self.sequences())

    def _rows(self, split: str) -> Iterator[Row]:
        for subject in self.split_subjects(split):
            for task, path in self.sequences()[subject]:
                frames = frame_files(self.frames_dir / subject / task)
                reader = csv.reader(text_lines(path))
                columns = self._columns(next(reader, []), str(path))
                for index, cells in enumerate(reader):
                    if cells and index % self.frame_step == 0:
                        yield Row(str(path), reader.line_num, (f"{subject}/{task}", cells, columns, frames))

    def _columns(self, header: list[str], path: str) -> dict[str, int]:
        """AU code -> column index for the AUs of ``au_vocab``.

        The original files also code numbers that are no FACS AU of this project (3, 8, 21, ...); those columns are
        ignored. A header cell that is not an AU number at all, or a missing ``au_vocab`` column, raises.
        """
        columns: dict[str, int] = {}
        for index, name in enumerate(header[1:], start=1):
            match = _AU_COLUMN.match(name)
            if match is None:
                raise DataError(f"column {name!r} is not an AU (header: {header})", path, 1)
            columns[f"AU{int(match.group(1))}"] = index
        missing = [au for au in self.au_vocab if au not in columns]
        if missing:
            raise DataError(f"missing AU columns {missing} (header: {header})", path, 1)
        return {au: columns[au] for au in self.au_vocab}

    def _parse(self, row: Row) -> dict[str, Any] | Drop:
        video, cells, columns, frames = row.data
        if not cells[0].strip().isdigit() or len(cells) <= max(columns.values()):
            raise SampleError(
                "malformed_line", f"expected a frame number and {len(columns)} AU codes", row.file, row.line
            )
        codes = {au: cells[i].strip() for au, i in columns.items()}
        bad = {au: c for au, c in codes.items() if c not in ("0", "1", "9")}
        if bad:
            raise SampleError("malformed_line", f"AU codes must be 0, 1 or 9, got {bad}", row.file, row.line)
        unknown = [au for au, c in codes.items() if c == "9"]
        if len(unknown) == len(codes):
            return Drop("not_annotated", f"every AU coded 9 at {row.file}:{row.line}")
        frame = int(cells[0])
        image = self.frame_image(frames, frame, video, row)
        if isinstance(image, Drop):
            return image
        subject, task = video.split("/")
        meta = {"subject": subject, "task": task, "frame": frame, "unknown_aus": unknown, **self.origin(row)}
        return make_record(
            id=f"{video}/{frame}",
            dataset=self.name,
            image=image,
            aus=[au for au, c in codes.items() if c == "1"],
            labels=[],
            label_set=self.label_set,
            au_vocab=self.au_vocab,
            meta_info=meta,
        )
