"""JSON lines in the Facial-R1 schema (FEA-20K, SynthFACS exports, this project's own outputs).

One object per line with ``id``, ``dataset``, ``image`` (relative to ``image_root``; a list keeps its first entry
and stores the rest in ``meta_info["extra_images"]``), ``question``, ``AUs``, ``labels``, ``description``,
``meta_info`` and optional ``label_set`` / ``au_vocab`` and affect targets ``AU_intensity`` / ``valence`` /
``arousal`` / ``compound`` (``data/schema.py``; an AU intensity outside the row's vocabulary or a value out of range
is an error). Only ``id`` and ``image`` are required: a missing ``AUs``
means "not annotated", a missing ``labels`` means "no emotion label". Label words and AU tokens are normalised
(``"Happy"`` -> ``happiness``, ``"AU06"`` -> ``AU6``); a word outside the row's label set or an AU outside its
vocabulary is an error. Rows with ``is_valid: false`` are left out (counted, not an error).

Splits: ``files`` maps ``train`` / ``val`` / ``test`` to files under ``root``; without a ``val`` file, ``val`` is a
seeded ``val_fraction`` slice of ``train`` (and ``train`` is the rest).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

from facial_r1.data.images import resolve_image
from facial_r1.data.schema import DEFAULT_QUESTION, TARGET_FIELDS, DataError, check_targets, make_record
from facial_r1.data.sources.base import Drop, Row, SampleError, Source, text_lines
from facial_r1.data.sources.labels import check_aus, check_label_set, check_labels, vocab_codes
from facial_r1.facs import AU_VOCAB, EMOTIONS

DEFAULT_FILES = {"train": "train.jsonl", "val": "val.jsonl", "test": "test.jsonl"}


class FacialR1JsonlSource(Source):
    """Facial-R1 JSON lines; also the loader behind :class:`SynthFacesSource`."""

    def __init__(
        self,
        root: str | os.PathLike,
        on_error: str = "raise",
        report_path: str | None = None,
        files: dict[str, str | None] | None = None,
        image_root: str | os.PathLike | None = None,
        name: str = "facial_r1",
        label_set: Sequence[str] = EMOTIONS,
        au_vocab: Sequence[int | str] = AU_VOCAB["facial_r1"],
        val_fraction: float = 0.1,
        seed: int = 0,
    ):
        super().__init__(root, on_error, report_path, val_fraction, seed)
        self.name = name
        self.files = dict(DEFAULT_FILES if files is None else files)
        # image_root is relative to root when not absolute; default: root itself.
        self.image_root = self.root / (image_root or "")
        self.label_set = check_label_set(list(label_set), path=f"{name} label_set")
        self.au_vocab = vocab_codes(au_vocab, path=f"{name} au_vocab")

    def _val_is_holdout(self) -> bool:
        return not self.files.get("val")

    def _rows(self, split: str) -> Iterator[Row]:
        filename = self.files.get(split)
        if not filename:
            raise DataError(f"{self.name}: no file configured for split {split!r} (files: {self.files})")
        path = self.root / filename
        if not path.is_file():
            raise DataError(f"{self.name}: annotation file for split {split!r} not found", str(path))
        for number, text in enumerate(text_lines(path), start=1):
            if text.strip():
                yield Row(str(path), number, text)

    def _parse(self, row: Row) -> dict[str, Any] | Drop:
        try:
            obj = json.loads(row.data)
        except json.JSONDecodeError as err:
            raise SampleError("malformed_line", f"invalid JSON: {err}", row.file, row.line) from err
        except RecursionError as err:  # Python's parser gives up on ~1000 nested brackets
            raise SampleError("malformed_line", "JSON nested too deep to parse", row.file, row.line) from err
        if not isinstance(obj, dict):
            raise SampleError("malformed_line", "a line must hold one JSON object", row.file, row.line)
        if obj.get("is_valid", True) is False:
            return Drop("is_valid_false", f"id {obj.get('id')!r}")
        for key in ("id", "image"):
            if obj.get(key) in (None, "", []):
                raise SampleError("missing_field", f"missing field {key!r}", row.file, row.line)
        where = dict(path=row.file, line=row.line)
        label_set = check_label_set(obj["label_set"], **where) if obj.get("label_set") else self.label_set
        au_vocab = vocab_codes(obj["au_vocab"], **where) if obj.get("au_vocab") else self.au_vocab
        aus = (
            None if obj.get("AUs") is None else check_aus(_as_list(obj["AUs"], "AUs", row), au_vocab, **where)
        )
        labels = check_labels(_as_list(obj.get("labels") or [], "labels", row), label_set, **where)
        targets = _targets(obj, au_vocab, row)

        images = obj["image"] if isinstance(obj["image"], list) else [obj["image"]]
        if not all(isinstance(i, str) for i in images):
            raise SampleError(
                "bad_field", "'image' must be a string or a list of strings", row.file, row.line
            )
        meta = obj.get("meta_info")
        meta = dict(meta) if isinstance(meta, dict) else ({} if meta is None else {"meta_info": meta})
        if len(images) > 1:
            meta["extra_images"] = images[1:]
        meta.update(self.origin(row))
        return make_record(
            id=str(obj["id"]),
            dataset=str(obj.get("dataset") or self.name),
            image=resolve_image(self.image_root, images[0], row.file, row.line),
            aus=aus,
            labels=labels,
            question=str(obj.get("question") or DEFAULT_QUESTION),
            description=None if obj.get("description") is None else str(obj["description"]),
            label_set=label_set,
            au_vocab=au_vocab,
            meta_info=meta,
            au_intensity=targets["AU_intensity"],
            valence=targets["valence"],
            arousal=targets["arousal"],
            compound=targets["compound"],
        )


def _targets(obj: dict[str, Any], au_vocab: Sequence[str], row: Row) -> dict[str, Any]:
    """The row's optional affect targets, checked (``schema.check_targets``); bad ones name the file and line."""
    try:
        targets = check_targets(*(obj.get(key) for key in TARGET_FIELDS))
    except ValueError as err:
        raise SampleError("bad_field", str(err), row.file, row.line) from err
    outside = [au for au in targets["AU_intensity"] or {} if au not in au_vocab]
    if outside:
        raise SampleError(
            "unknown_au",
            f"AU_intensity of {outside}, outside the AU vocabulary {list(au_vocab)}",
            row.file,
            row.line,
        )
    return targets


def _as_list(value: Any, key: str, row: Row) -> list[Any]:
    if not isinstance(value, list):
        raise SampleError(
            "bad_field", f"{key!r} must be a list, got {type(value).__name__}", row.file, row.line
        )
    return value
