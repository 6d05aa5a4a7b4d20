"""The one sample record every source produces (the Facial-R1 JSON-lines schema plus a few explicit fields).

A record is a plain ``dict`` so it moves through Hugging Face ``datasets``, JSON lines and DataLoaders unchanged:

=============== =========================== ==========================================================================
key             type                        meaning
=============== =========================== ==========================================================================
``id``          str                         unique within its dataset
``dataset``     str                         source name ("synthfaces", "rafdb", ...)
``image``       str                         absolute path of the image file (decoded lazily, never in the record)
``question``    str                         the user's question (the prompt template adds instructions around it)
``AUs``         list[str] | None            gold AUs as ``AU<n>``; ``[]`` = annotated, none active;
                                            ``None`` = this sample has no AU annotation (RAF-DB, FER2013, ...)
``labels``      list[str]                   gold emotion words (lowercase nouns); ``[]`` = no emotion label (DISFA)
``description`` str | None                  reference reasoning ``<think>...</think><answer>...</answer>``
``label_set``   list[str]                   the closed emotion label set of this sample's dataset (for its prompt)
``au_vocab``    list[str]                   the AUs this dataset codes (for its prompt and AU metrics)
``meta_info``   dict                        free-form provenance (intensities, identity, source file and line, ...)
=============== =========================== ==========================================================================

In JSON lines written by this project ``meta_info`` is a JSON object; inside a ``datasets.Dataset`` it is stored as
a JSON string (column ``meta_json``) because its keys differ between sources.
"""

from __future__ import annotations

import json
from typing import Any

from facial_r1.facs import BASIC7, EMOTIONS, au_codes

FIELDS = (
    "id",
    "dataset",
    "image",
    "question",
    "AUs",
    "labels",
    "description",
    "label_set",
    "au_vocab",
    "meta_info",
)

DEFAULT_QUESTION = "What emotion does this face show? Analyse the facial action units first."


class DataError(ValueError):
    """Bad input, always naming where it came from: ``path:line: message``."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        self.path, self.line, self.reason = path, line, message
        where = f"{path}:{line}: " if path and line is not None else (f"{path}: " if path else "")
        super().__init__(where + message)


def make_record(
    *,
    id: str,
    dataset: str,
    image: str,
    aus: list[str] | None,
    labels: list[str],
    question: str = DEFAULT_QUESTION,
    description: str | None = None,
    label_set: tuple[str, ...] | list[str] = BASIC7,
    au_vocab: list[str] | tuple[int, ...] | None = None,
    meta_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a record with every field present and typed as documented above."""
    vocab = au_codes(au_vocab) if au_vocab and isinstance(next(iter(au_vocab)), int) else list(au_vocab or [])
    return {
        "id": str(id),
        "dataset": dataset,
        "image": str(image),
        "question": question,
        "AUs": None if aus is None else list(aus),
        "labels": list(labels),
        "description": description,
        "label_set": list(label_set),
        "au_vocab": vocab,
        "meta_info": dict(meta_info or {}),
    }


def to_arrow_row(record: dict[str, Any]) -> dict[str, Any]:
    """Record -> row for ``datasets.Dataset`` (``meta_info`` as JSON text; ``AUs=None`` kept as null)."""
    row = {k: v for k, v in record.items() if k != "meta_info"}
    row["meta_json"] = json.dumps(record.get("meta_info") or {}, sort_keys=True)
    return row


def from_arrow_row(row: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`to_arrow_row`."""
    record = {k: v for k, v in row.items() if k != "meta_json"}
    record["meta_info"] = json.loads(row.get("meta_json") or "{}")
    return record


def has_aus(record: dict[str, Any]) -> bool:
    """True when the sample carries an AU annotation (possibly empty)."""
    return record.get("AUs") is not None


def has_emotion(record: dict[str, Any]) -> bool:
    return bool(record.get("labels"))


def all_emotions() -> tuple[str, ...]:
    return EMOTIONS
