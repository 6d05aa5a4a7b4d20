"""DISFA: per-subject, per-AU intensity files and frames extracted from the videos.

On disk::

    <root>/<labels_dir>/SN001/SN001_au1.txt     (a flat <labels_dir>/SN001_au1.txt works too)
        lines "frame,intensity": frame number as in the video (DISFA counts from 1), intensity 0-5
    <root>/<frames_dir>/SN001/<frame>.<ext>     e.g. 1.jpg or 00001.png (any zero padding, any image extension;
                                                 frame_offset=-1 for frames numbered from 0)

Every subject needs one file per AU of ``au_vocab`` (DISFA's 12 by default); files of other AUs are ignored. An
AU occurs when its intensity >= ``threshold`` (2, the usual choice). The intensities are the record's
``AU_intensity`` target (every AU coded 1-5 = A-E, including those below the threshold; 0 = absent, left out) and
stay in ``meta_info`` too. DISFA has no
emotion labels (``labels=[]``). Splits are subject-exclusive folds (see :func:`subject_splits`): ``test`` = fold
``fold``, ``val`` = a seeded slice of the other folds' subjects, ``train`` = the rest.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from facial_r1.data.schema import DataError, make_record
from facial_r1.data.sources.base import Drop, Row, SampleError, text_lines
from facial_r1.data.sources.video import VideoAuSource, frame_files
from facial_r1.facs import AU_VOCAB, normalize_au

_LABEL_FILE = re.compile(r"^(?P<subject>.+)_au(?P<au>\d+)\.txt$", re.IGNORECASE)


class DisfaSource(VideoAuSource):
    """DISFA AU occurrence (intensity >= threshold) per frame."""

    name = "disfa"

    def __init__(
        self,
        root: str | os.PathLike,
        labels_dir: str = "ActionUnit_Labels",
        au_vocab: Sequence[int | str] = AU_VOCAB["disfa"],
        threshold: int = 2,
        **options: Any,
    ):
        """``options``: the shared ones of :class:`VideoAuSource` (frames_dir, folds, frame_step, on_error, ...)."""
        super().__init__(root, labels_dir=labels_dir, au_vocab=au_vocab, **options)
        if not 1 <= threshold <= 5:
            raise ValueError(f"threshold must be in 1..5, got {threshold}")
        self.threshold = threshold
        self._files: dict[str, dict[str, Path]] | None = None

    def label_files(self) -> dict[str, dict[str, Path]]:
        """subject -> AU code -> label file, for the AUs of ``au_vocab``."""
        if self._files is None:
            if not self.labels_dir.is_dir():
                raise DataError("DISFA labels folder not found", str(self.labels_dir))
            files: dict[str, dict[str, Path]] = {}
            for path in sorted([*self.labels_dir.glob("*.txt"), *self.labels_dir.glob("*/*.txt")]):
                match = _LABEL_FILE.match(path.name)
                code = normalize_au(int(match["au"])) if match else None
                if code in self.au_vocab:
                    files.setdefault(match["subject"], {})[code] = path
            for subject, by_au in files.items():
                missing = [au for au in self.au_vocab if au not in by_au]
                if missing:
                    raise DataError(
                        f"subject {subject} has no label file for {missing}", str(self.labels_dir)
                    )
            if not files:
                raise DataError("no '<subject>_au<n>.txt' label files found", str(self.labels_dir))
            self._files = files
        return self._files

    def subjects(self) -> list[str]:
        return sorted(self.label_files())

    def _rows(self, split: str) -> Iterator[Row]:
        for subject in self.split_subjects(split):
            by_au = self.label_files()[subject]
            table: dict[int, dict[str, Any]] = {}  # frame -> AU -> intensity | (error, line)
            lines: dict[int, tuple[str, int]] = {}  # frame -> where it is first labelled
            for code, path in by_au.items():
                for number, text in enumerate(text_lines(path), start=1):
                    if not text.strip():
                        continue
                    fields = [f.strip() for f in text.split(",")]
                    if len(fields) != 2 or not fields[0].isdigit():
                        yield Row(
                            str(path), number, ("malformed", f"expected 'frame,intensity', got {text!r}")
                        )
                        continue
                    frame = int(fields[0])
                    lines.setdefault(frame, (str(path), number))
                    table.setdefault(frame, {})[code] = _intensity(fields[1], str(path), number)
            frames = frame_files(self.frames_dir / subject)
            for frame in sorted(table)[:: self.frame_step]:
                yield Row(*lines[frame], (subject, frame, table[frame], frames))

    def _parse(self, row: Row) -> dict[str, Any] | Drop:
        if row.data[0] == "malformed":
            raise SampleError("malformed_line", row.data[1], row.file, row.line)
        subject, frame, by_au, frames = row.data
        missing = [au for au in self.au_vocab if au not in by_au]
        if missing:
            raise SampleError(
                "missing_field", f"frame {frame} of {subject} has no label for {missing}", row.file, row.line
            )
        for value in by_au.values():
            if isinstance(value, SampleError):
                raise value
        image = self.frame_image(frames, frame, subject, row)
        if isinstance(image, Drop):
            return image
        return make_record(
            id=f"{subject}/{frame}",
            dataset=self.name,
            image=image,
            aus=[au for au in self.au_vocab if by_au[au] >= self.threshold],
            labels=[],
            label_set=self.label_set,
            au_vocab=self.au_vocab,
            meta_info={"subject": subject, "frame": frame, "intensities": by_au, **self.origin(row)},
            au_intensity={au: level for au, level in by_au.items() if level >= 1},
        )


def _intensity(text: str, path: str, line: int) -> int | SampleError:
    """A 0-5 intensity, or the error to raise when that frame is parsed (so it is reported once, for its frame)."""
    if text.isdigit() and int(text) <= 5:
        return int(text)
    return SampleError("malformed_line", f"intensity must be an integer 0-5, got {text!r}", path, line)
