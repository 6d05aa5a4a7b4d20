"""AffectNet (manually annotated part).

On disk::

    <root>/training.csv, <root>/validation.csv   (paths configurable through ``files``)
        header: subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal
    <root>/Manually_Annotated_Images/<subDirectory_filePath>

Or the per-image release (``layout="npy"``; ``"auto"`` picks it when ``train_set/annotations`` exists)::

    <root>/train_set/images/<n>.jpg   <root>/train_set/annotations/<n>_exp.npy (+ <n>_val.npy, <n>_aro.npy)
    <root>/val_set/images/<n>.jpg     <root>/val_set/annotations/<n>_exp.npy ...

one image per ``<n>_exp.npy`` (a 0-d array holding the expression code, as text or number); ``_val`` / ``_aro``
are optional (None in ``meta_info`` when absent). Ids are ``<set>/<n>``; the row's "file" is its ``_exp.npy``.

``expression`` 0-7 are emotions (0 neutral, 1 happiness, 2 sadness, 3 surprise, 4 fear, 5 disgust, 6 anger,
7 contempt); 8 none, 9 uncertain and 10 no-face are not expressions: those rows are left out and counted (reason
``not_an_expression``), not errors. With ``classes=7`` contempt rows are left out the same way (reason
``excluded_class``), for the common AffectNet-7 protocol. Valence and arousal are the record's ``valence`` /
``arousal`` targets (in [-1, 1]; AffectNet's -2 "not rated" gives None, other values outside [-1, 1] are errors)
and stay in ``meta_info`` too, beside the face box.

Splits: AffectNet's test set is not public, so its validation set is the test split (as in the literature); ``val``
is a seeded ``val_fraction`` slice of training.csv and ``train`` is the rest.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from facial_r1.data.images import IMAGE_EXTENSIONS, resolve_image
from facial_r1.data.schema import DataError, make_record
from facial_r1.data.sources.base import Drop, Row, SampleError, Source, read_csv_rows
from facial_r1.facs import LABEL_ORDERS

REQUIRED_COLUMNS = ("subDirectory_filePath", "expression", "valence", "arousal")
BOX_COLUMNS = ("face_x", "face_y", "face_width", "face_height")
NON_EXPRESSIONS = {8: "none", 9: "uncertain", 10: "no-face"}
LAYOUTS = ("auto", "csv", "npy")
VA_NOT_RATED = -2.0  # AffectNet's valence/arousal value for "not rated"


class AffectNetSource(Source):
    """AffectNet-8 (or -7) from the manually annotated CSVs."""

    name = "affectnet"

    def __init__(
        self,
        root: str | os.PathLike,
        on_error: str = "raise",
        report_path: str | None = None,
        files: dict[str, str] | None = None,
        images_dir: str = "Manually_Annotated_Images",
        classes: int = 8,
        val_fraction: float = 0.1,
        seed: int = 0,
        layout: str = "auto",
        sets: dict[str, str] | None = None,
    ):
        super().__init__(root, on_error, report_path, val_fraction, seed)
        if classes not in (7, 8):
            raise ValueError(f"classes must be 7 or 8, got {classes}")
        self.files = dict(files or {"train": "training.csv", "test": "validation.csv"})
        self.images_dir = self.root / images_dir
        self.label_order = LABEL_ORDERS["affectnet"][:classes]
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.sets = dict(sets or {"train": "train_set", "test": "val_set"})
        if layout == "auto":
            layout = (
                "npy" if (self.root / self.sets.get("train", "train_set") / "annotations").is_dir() else "csv"
            )
        self.layout = layout

    def _val_is_holdout(self) -> bool:
        return True

    def _rows(self, split: str) -> Iterator[Row]:
        if self.layout == "npy":
            yield from self._npy_rows(split)
            return
        if split not in self.files:
            raise DataError(f"affectnet: no file configured for split {split!r} (files: {self.files})")
        yield from read_csv_rows(str(self.root / self.files[split]), REQUIRED_COLUMNS, self.name)

    def _npy_rows(self, split: str) -> Iterator[Row]:
        if split not in self.sets:
            raise DataError(f"affectnet: no folder configured for split {split!r} (sets: {self.sets})")
        folder = self.root / self.sets[split] / "annotations"
        if not folder.is_dir():
            raise DataError("AffectNet annotations folder not found", str(folder))
        found = [p for p in folder.iterdir() if p.name.endswith("_exp.npy")]
        for path in sorted(found, key=lambda p: _natural(p.name)):
            yield Row(str(path), None, ("npy", self.sets[split], path.name[: -len("_exp.npy")]))

    def _parse(self, row: Row) -> dict[str, Any] | Drop:
        if isinstance(row.data, tuple):
            return self._parse_npy(row)
        data = row.data
        if any(data.get(c) in (None, "") for c in REQUIRED_COLUMNS):
            raise SampleError(
                "missing_field", f"empty value in one of {REQUIRED_COLUMNS}", row.file, row.line
            )
        try:
            expression = int(data["expression"])
            valence, arousal = float(data["valence"]), float(data["arousal"])
            has_box = all(data.get(c) not in (None, "") for c in BOX_COLUMNS)
            box = [float(data[c]) for c in BOX_COLUMNS] if has_box else None  # x, y, width, height in pixels
        except ValueError as err:
            raise SampleError("malformed_line", f"bad number: {err}", row.file, row.line) from err
        if expression in NON_EXPRESSIONS:
            return Drop("not_an_expression", f"expression {expression} ({NON_EXPRESSIONS[expression]})")
        if expression == 7 and len(self.label_order) == 7:
            return Drop("excluded_class", "contempt (classes=7)")
        if not 0 <= expression < len(self.label_order):
            raise SampleError("unknown_label", f"expression {expression} not in 0..10", row.file, row.line)
        va = _va_target(valence, arousal, row)
        meta = {"valence": valence, "arousal": arousal, **self.origin(row)}
        if box is not None:
            meta["face_box"] = box
        relpath = data["subDirectory_filePath"]
        return make_record(
            id=os.path.splitext(relpath)[0],
            dataset=self.name,
            image=resolve_image(self.images_dir, relpath, row.file, row.line),
            aus=None,
            labels=[self.label_order[expression]],
            label_set=sorted(self.label_order),
            meta_info=meta,
            valence=va[0],
            arousal=va[1],
        )

    def _parse_npy(self, row: Row) -> dict[str, Any] | Drop:
        _, set_name, stem = row.data
        annotations = Path(row.file).parent
        expression = _npy_number(Path(row.file))
        if expression != int(expression):
            raise SampleError("malformed_line", f"expression {expression} is not an integer", row.file)
        values = {}
        for key, suffix in (("valence", "_val.npy"), ("arousal", "_aro.npy")):
            path = annotations / f"{stem}{suffix}"
            values[key] = _npy_number(path) if path.is_file() else None
        drop = self._exclusion(int(expression), row)
        if drop is not None:
            return drop
        rated = None not in values.values()
        va = _va_target(values["valence"], values["arousal"], row) if rated else (None, None)
        images = annotations.parent / "images"
        candidates = [images / f"{stem}{ext}" for ext in IMAGE_EXTENSIONS]
        image = next((c for c in candidates if c.is_file()), candidates[0])
        return make_record(
            id=f"{set_name}/{stem}",
            dataset=self.name,
            image=resolve_image(images, image.name, row.file, row.line),
            aus=None,
            labels=[self.label_order[int(expression)]],
            label_set=sorted(self.label_order),
            meta_info={"valence": values["valence"], "arousal": values["arousal"], **self.origin(row)},
            **dict(zip(("valence", "arousal"), va, strict=True)),
        )

    def _exclusion(self, expression: int, row: Row) -> Drop | None:
        """Non-expressions and (classes=7) contempt are left out by design; other codes outside 0..10 raise."""
        if expression in NON_EXPRESSIONS:
            return Drop("not_an_expression", f"expression {expression} ({NON_EXPRESSIONS[expression]})")
        if expression == 7 and len(self.label_order) == 7:
            return Drop("excluded_class", "contempt (classes=7)")
        if not 0 <= expression < len(self.label_order):
            raise SampleError("unknown_label", f"expression {expression} not in 0..10", row.file, row.line)
        return None


def _npy_number(path: Path) -> float:
    """The single number a per-image AffectNet ``.npy`` holds (stored as text, e.g. ``'1'``, or as a number)."""
    try:
        value = np.load(path, allow_pickle=False)
        return float(str(value.item()) if value.dtype.kind in "US" else value.item())
    except (OSError, ValueError) as err:
        raise SampleError(
            "malformed_line", f"cannot read one number from {path.name}: {err}", str(path)
        ) from err


def _natural(name: str) -> tuple[int, str]:
    digits = re.match(r"\d+", name)
    return (int(digits.group()) if digits else -1, name)


def _va_target(valence: float, arousal: float, row: Row) -> tuple[float | None, float | None]:
    """(valence, arousal) as targets: both None when either is AffectNet's "not rated" (-2); else both in [-1, 1]."""
    if VA_NOT_RATED in (valence, arousal):
        return None, None
    if not (-1.0 <= valence <= 1.0 and -1.0 <= arousal <= 1.0):
        raise SampleError(
            "malformed_line", f"valence/arousal ({valence}, {arousal}) outside [-1, 1]", row.file, row.line
        )
    return valence, arousal
