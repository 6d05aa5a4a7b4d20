"""FABA-Instruct (EmoLA) instruction files.

On disk::

    <root>/train/train_au_anno.json   <root>/train/train_emotion_anno.json
    <root>/eval/eval_au_anno.json     <root>/eval/eval_emotion_anno.json
    <root>/<images_dir>/<image>       (``images_dir`` may contain ``{split}``, the folder name: train / eval)

Each file is a JSON list of ``{"source", "image", "id", "conversations": [{"from": "human", ...},
{"from": "gpt", "value": ...}], "landmark"}``. AU files yield AU-only records (``labels=[]``), emotion files
emotion-only records (``AUs=None``); ids are ``au/<id>`` and ``emotion/<id>``.

Gold labels: the eval files' ``label`` ("1, 2, 4" or "Happiness"), checked strictly against FABA's 20 AUs / 7
classes. The train files have no ``label``, so it is read from the gpt reply (``meta_info["label_origin"]`` says
which): sentences with a negation are dropped first (as EmoLA does), then AUs are the ``AU<n>`` mentions (or, if
there are none, FACS names such as "lip corner puller"), and the emotion is the one class whose name or synonym
appears. A reply naming no AU, or no single emotion, gives no label: the row is left out (reason
``no_label_in_reference``, not an error). Mentioned AUs outside FABA's 20 go to ``meta_info["aus_outside_vocab"]``.
The reply itself is kept as ``meta_info["reference"]`` (it is not a ``<think>``/``<answer>`` description).

Splits: eval -> test; FABA has no validation split, so ``val`` is a seeded ``val_fraction`` slice of train.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

from facial_r1.data.images import resolve_image
from facial_r1.data.schema import DataError, make_record
from facial_r1.data.sources.base import Drop, Row, SampleError, Source
from facial_r1.data.sources.labels import aus_in_text, check_aus, check_labels, emotion_in_text, vocab_codes
from facial_r1.facs import AU_VOCAB, LABEL_ORDERS

NATIVE = {"train": "train", "test": "eval"}
TASKS = ("au", "emotion")


def read_json_list(path: str) -> list[tuple[int, Any]]:
    """Elements of a JSON list file with the line each starts on; a syntax error raises naming its line.

    The whole file is parsed before any element is used: a broken file is a structural error, not a bad sample.
    """
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    decoder = json.JSONDecoder()
    elements = []
    pos = _skip(text, 0)
    line, counted = 1, 0  # line numbers counted incrementally: files hold tens of thousands of elements
    try:
        if text[pos : pos + 1] != "[":
            raise json.JSONDecodeError("expected a JSON list", text, pos)
        pos = _skip(text, pos + 1)
        while text[pos : pos + 1] != "]":
            element, end = decoder.raw_decode(text, pos)
            line, counted = line + text.count("\n", counted, pos), pos
            elements.append((line, element))
            pos = _skip(text, end)
            if text[pos : pos + 1] == ",":
                pos = _skip(text, pos + 1)
            elif text[pos : pos + 1] != "]":
                raise json.JSONDecodeError("expected ',' or ']'", text, pos)
    except json.JSONDecodeError as err:
        raise DataError(f"malformed JSON: {err.msg}", path, err.lineno) from err
    return elements


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


class FabaInstructSource(Source):
    """FABA-Instruct AU and emotion annotations."""

    name = "faba"

    def __init__(
        self,
        root: str | os.PathLike,
        on_error: str = "raise",
        report_path: str | None = None,
        images_dir: str = "",
        tasks: tuple[str, ...] | list[str] = TASKS,
        val_fraction: float = 0.1,
        seed: int = 0,
    ):
        super().__init__(root, on_error, report_path, val_fraction, seed)
        unknown = set(tasks) - set(TASKS)
        if unknown or not tasks:
            raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {list(tasks)}")
        self.images_dir = images_dir
        self.tasks = tuple(tasks)
        self.label_set = sorted(LABEL_ORDERS["faba"])
        self.au_vocab = vocab_codes(AU_VOCAB["faba"])

    def _val_is_holdout(self) -> bool:
        return True

    def _rows(self, split: str) -> Iterator[Row]:
        folder = NATIVE[split]
        for task in self.tasks:
            path = self.root / folder / f"{folder}_{task}_anno.json"
            if not path.is_file():
                raise DataError("FABA-Instruct annotation file not found", str(path))
            for line, element in read_json_list(str(path)):
                yield Row(str(path), line, (folder, task, element))

    def _parse(self, row: Row) -> dict[str, Any] | Drop:
        folder, task, obj = row.data
        if not isinstance(obj, dict):
            raise SampleError("malformed_line", "list element is not an object", row.file, row.line)
        for key in ("id", "image", "conversations"):
            if obj.get(key) in (None, "", []):
                raise SampleError("missing_field", f"missing field {key!r}", row.file, row.line)
        instruction, reference = _turns(obj["conversations"], row)
        meta = {"task": task, "reference": reference, "instruction": instruction, **self.origin(row)}
        for key in ("source", "landmark"):
            if key in obj:
                meta[key] = obj[key]
        aus, labels = None, []
        if task == "au":
            aus = self._aus(obj, reference, meta, row)
        else:
            labels = self._emotion(obj, reference, meta, row)
        if aus is None and not labels:
            return Drop("no_label_in_reference", f"{task}/{obj['id']}: no {task} label in the reply")
        base = self.root / self.images_dir.format(split=folder)
        return make_record(
            id=f"{task}/{obj['id']}",
            dataset=self.name,
            image=resolve_image(base, str(obj["image"]), row.file, row.line),
            aus=aus,
            labels=labels,
            label_set=self.label_set,
            au_vocab=self.au_vocab,
            meta_info=meta,
        )

    def _aus(self, obj: dict[str, Any], reference: str, meta: dict[str, Any], row: Row) -> list[str] | None:
        if "label" in obj:
            meta["label_origin"] = "annotation"
            tokens = [t for t in re.split(r"[,\s]+", str(obj["label"])) if t]
            return check_aus(tokens, self.au_vocab, row.file, row.line)
        meta["label_origin"] = "reference_text"
        mentioned = aus_in_text(reference)
        outside = [au for au in mentioned if au not in self.au_vocab]
        if outside:
            meta["aus_outside_vocab"] = outside
        inside = [au for au in mentioned if au in self.au_vocab]
        return inside or None

    def _emotion(self, obj: dict[str, Any], reference: str, meta: dict[str, Any], row: Row) -> list[str]:
        if "label" in obj:
            meta["label_origin"] = "annotation"
            return check_labels([str(obj["label"])], self.label_set, row.file, row.line)
        meta["label_origin"] = "reference_text"
        label = emotion_in_text(reference, self.label_set)
        return [label] if label else []


def _turns(conversations: Any, row: Row) -> tuple[str, str]:
    """(human instruction without ``<image>``, gpt reply) of a one-round conversation."""
    if not isinstance(conversations, list):
        raise SampleError("bad_field", "'conversations' must be a list", row.file, row.line)
    by_role = {
        turn.get("from"): str(turn.get("value", "")) for turn in conversations if isinstance(turn, dict)
    }
    if "gpt" not in by_role:
        raise SampleError("missing_field", "no 'gpt' turn in 'conversations'", row.file, row.line)
    return by_role.get("human", "").replace("<image>", "").strip(), by_role["gpt"].strip()
