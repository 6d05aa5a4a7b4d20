"""What the video AU datasets (DISFA, BP4D) share: subject-exclusive folds, frame-file lookup, a base class."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from facial_r1.data.images import IMAGE_EXTENSIONS
from facial_r1.data.schema import DataError
from facial_r1.data.sources.base import Drop, Row, SampleError, Source, holdout_ids
from facial_r1.data.sources.labels import check_label_set, vocab_codes
from facial_r1.facs import EMOTIONS

_TRAILING_NUMBER = re.compile(r"(\d+)$")


def subject_splits(
    subjects: Sequence[str],
    fold: int,
    num_folds: int = 3,
    folds: Sequence[Sequence[str]] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Subjects of train / val / test for one fold of a subject-exclusive cross-validation.

    Without explicit ``folds``, the sorted subjects are cut into ``num_folds`` contiguous, near-equal chunks (the
    first chunks get the extra subject). ``test`` is chunk ``fold``; ``val`` is a seeded ``val_fraction`` slice of
    the remaining subjects (at least one) and ``train`` is the rest. Explicit ``folds`` (lists of subject ids)
    reproduce a published protocol; every listed subject must exist.
    """
    pool = sorted(set(subjects))
    if folds is None:
        if not 1 <= num_folds <= len(pool):
            raise DataError(f"num_folds={num_folds} needs 1..{len(pool)} subjects, found {len(pool)}")
        size, extra = divmod(len(pool), num_folds)
        starts = [i * size + min(i, extra) for i in range(num_folds + 1)]
        folds = [pool[starts[i] : starts[i + 1]] for i in range(num_folds)]
    else:
        unknown = sorted({s for chunk in folds for s in chunk} - set(pool))
        if unknown:
            raise DataError(f"fold lists name subjects with no data: {unknown}")
    if not 0 <= fold < len(folds):
        raise DataError(f"fold={fold} must be in 0..{len(folds) - 1}")
    test = sorted(folds[fold])
    rest = sorted(s for i, chunk in enumerate(folds) if i != fold for s in chunk)
    val = holdout_ids(rest, val_fraction, seed)
    return {"train": [s for s in rest if s not in val], "val": sorted(val), "test": test}


def frame_files(folder: str | os.PathLike) -> dict[int, str]:
    """Frame number -> image path for one video's frame folder.

    A frame's number is the trailing integer of its file stem, so ``12.jpg``, ``00012.png`` and ``frame_0012.jpg``
    all mean frame 12. Two files for one frame number are ambiguous and raise. A missing folder gives ``{}``.
    """
    frames: dict[int, str] = {}
    if not os.path.isdir(folder):
        return frames
    for entry in os.scandir(folder):
        stem, ext = os.path.splitext(entry.name)
        match = _TRAILING_NUMBER.search(stem)
        if ext.lower() not in IMAGE_EXTENSIONS or match is None or not entry.is_file():
            continue
        number = int(match.group(1))
        if number in frames:
            raise DataError(
                f"two files for frame {number}: {Path(frames[number]).name} and {entry.name}", str(folder)
            )
        frames[number] = entry.path
    return frames


class VideoAuSource(Source):
    """Shared options of frame-level AU datasets; subclasses list subjects and yield one row per labelled frame.

    Frames: ``<frames_dir>/<subject>/...`` (layout per subclass); the file of label frame ``n`` is the one whose
    trailing stem number is ``n + frame_offset`` (see :func:`frame_files`). ``frame_step`` keeps every k-th
    labelled frame of a video (consecutive frames are near-duplicates). ``missing_frames="drop"`` leaves out labelled
    frames that have no image (counted as ``frame_not_extracted``), for frame folders extracted at a lower rate;
    the default ``"error"`` treats them as missing images.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        on_error: str = "raise",
        report_path: str | None = None,
        labels_dir: str = "labels",
        frames_dir: str = "frames",
        au_vocab: Sequence[int | str] = (),
        label_set: Sequence[str] = EMOTIONS,
        fold: int = 0,
        num_folds: int = 3,
        folds: Sequence[Sequence[str]] | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
        frame_step: int = 1,
        frame_offset: int = 0,
        missing_frames: str = "error",
    ):
        super().__init__(root, on_error, report_path, val_fraction, seed)
        if missing_frames not in ("error", "drop"):
            raise ValueError(f"missing_frames must be 'error' or 'drop', got {missing_frames!r}")
        if frame_step < 1:
            raise ValueError(f"frame_step must be >= 1, got {frame_step}")
        self.labels_dir = self.root / labels_dir
        self.frames_dir = self.root / frames_dir
        self.au_vocab = vocab_codes(au_vocab)
        self.label_set = check_label_set(list(label_set))
        self.fold, self.num_folds = fold, num_folds
        self.folds = None if folds is None else [list(chunk) for chunk in folds]
        self.frame_step, self.frame_offset, self.missing_frames = frame_step, frame_offset, missing_frames

    def subjects(self) -> list[str]:
        """Every subject with annotations (sorted)."""
        raise NotImplementedError

    def split_subjects(self, split: str) -> list[str]:
        """The subjects of ``split`` in this fold."""
        splits = subject_splits(
            self.subjects(), self.fold, self.num_folds, self.folds, self.val_fraction, self.seed
        )
        return splits[split]

    def frame_image(self, frames: dict[int, str], frame: int, video: str, row: Row) -> str | Drop:
        """Image path of a labelled frame, or a :class:`Drop` / error when it has no file."""
        path = frames.get(frame + self.frame_offset)
        if path is not None:
            return path
        if self.missing_frames == "drop":
            return Drop("frame_not_extracted", f"no image for frame {frame} in {self.frames_dir / video}")
        raise SampleError(
            "missing_image",
            f"no image file for frame {frame} in {self.frames_dir / video}",
            row.file,
            row.line,
        )
