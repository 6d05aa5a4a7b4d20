"""FABA-Instruct (EmoLA) instruction files.

On disk::

    <root>/train/train_au_anno.json   <root>/train/train_emotion_anno.json
    <root>/eval/eval_au_anno.json     <root>/eval/eval_emotion_anno.json
    <root>/<images_dir>/<image>       (``images_dir`` may contain ``{split}``, the folder name: train / eval)

Image paths as the published JSON writes them are relative to the folder ABOVE ``FABAInstruct/`` (EmoLA joins them
to its ``data/`` folder: ``FABAInstruct/...``). With the default ``images_dir=""`` a path whose first component is
the root folder's own name or ``FABAInstruct`` is therefore read relative to the root's parent (and must still lie
inside the root); any other path is relative to the root.

Each file is a JSON list of ``{"source", "image", "id", "conversations": [{"from": "human", ...},
{"from": "gpt", "value": ...}], "landmark"}``. AU files yield AU-only records (``labels=[]``), emotion files
emotion-only records (``AUs=None``); ids are ``au/<id>`` and ``emotion/<id>``.

Gold labels: the eval files' ``label``, read as EmoLA's evaluation script reads it - AU files: "1, 2, 4";
emotion files: an EmoLA class id 0-6 (int or digit string: 0 happiness, 1 sadness, 2 surprise, 3 anger, 4 neutral,
5 disgust, 6 fear) or a class name ("Happiness") - and checked strictly against FABA's 20 AUs / 7 classes. The eval
files' GPT-4 reference answer (field ``gpt4``; the gpt turn of ``conversations`` when absent) is the reference of
ROUGE-L / REGE: eval records carry it as ``description`` (and as ``meta_info["reference"]``); eval files need no
``conversations``. The train files have no ``label``, so it is read from the gpt reply (``meta_info["label_origin"]`` says
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
from pathlib import PurePosixPath
from typing import Any

from facial_r1.data.images import resolve_image
from facial_r1.data.schema import DataError, make_record
from facial_r1.data.sources.base import Drop, Row, SampleError, Source, text_lines
from facial_r1.data.sources.labels import aus_in_text, check_aus, check_labels, emotion_in_text, vocab_codes
from facial_r1.facs import AU_VOCAB, LABEL_ORDERS

NATIVE = {"train": "train", "test": "eval"}
PUBLISHED_FOLDER = "FABAInstruct"  # the folder name the published JSON image paths start with
TASKS = ("au", "emotion")


def read_json_list(path: str) -> list[tuple[int, Any]]:
    """Elements of a JSON list file with the line each starts on; a syntax error raises naming its line.

    The whole file is parsed before any element is used: a broken file is a structural error, not a bad sample.
    """
    text = "".join(text_lines(path))
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
    except RecursionError as err:  # Python's parser gives up on ~1000 nested brackets
        line = line + text.count("\n", counted, pos)
        raise DataError("malformed JSON: an element is nested too deep to parse", path, line) from err
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
        evaluation = folder == NATIVE["test"]
        # EmoLA's eval files carry the reference in "gpt4" and need no conversation; train files need one.
        required = ("id", "image") if evaluation and "gpt4" in obj else ("id", "image", "conversations")
        for key in required:
            if obj.get(key) in (None, "", []):
                raise SampleError("missing_field", f"missing field {key!r}", row.file, row.line)
        instruction, reference = _turns(obj["conversations"], row) if "conversations" in obj else ("", "")
        if evaluation and isinstance(obj.get("gpt4"), str):
            reference = obj["gpt4"].strip()
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
        return make_record(
            id=f"{task}/{obj['id']}",
            dataset=self.name,
            image=self._image(folder, str(obj["image"]), row),
            aus=aus,
            labels=labels,
            description=reference if evaluation and reference else None,
            label_set=self.label_set,
            au_vocab=self.au_vocab,
            meta_info=meta,
        )

    def _image(self, folder: str, relpath: str, row: Row) -> str:
        """The image file; a published path (``FABAInstruct/...``, relative to the root's parent) is mapped into
        the root (module docstring)."""
        if not self.images_dir:
            parts = PurePosixPath(relpath.replace("\\", "/")).parts
            if len(parts) > 1 and parts[0] in (self.root.name, PUBLISHED_FOLDER):
                relpath = str(PurePosixPath(*parts[1:]))
        return resolve_image(self.root / self.images_dir.format(split=folder), relpath, row.file, row.line)

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
            label = obj["label"]
            if isinstance(label, bool):
                raise SampleError("unknown_label", f"label {label!r} is a boolean", row.file, row.line)
            if isinstance(label, int) or (isinstance(label, str) and label.strip().isdigit()):
                index = int(label)  # EmoLA's class id (emotions2num of its evaluation script)
                if not 0 <= index < len(LABEL_ORDERS["faba"]):
                    raise SampleError("unknown_label", f"label {label!r} not in 0..6", row.file, row.line)
                return [LABEL_ORDERS["faba"][index]]
            return check_labels([str(label)], self.label_set, row.file, row.line)
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
