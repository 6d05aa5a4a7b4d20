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

Optional affect targets (:mod:`facial_r1.affect`); every one may be absent, and absent (None) always means "not
annotated", never zero:

================ ========================== =========================================================================
key              type                       meaning
================ ========================== =========================================================================
``AU_intensity`` dict[str, int] | None      FACS level 1..5 (A..E) of every AU coded at A or above, keyed ``AU<n>``;
                                            an AU of ``au_vocab`` missing from it is absent (level 0). It may hold
                                            AUs below the dataset's occurrence threshold (DISFA level 1), so its
                                            keys can exceed ``AUs``. None = no intensity coding
``valence``      float | None               in [-1, 1]; None = not annotated (always None together with arousal)
``arousal``      float | None               in [-1, 1]; None = not annotated
``compound``     str | None                 one of ``affect.COMPOUND_EMOTIONS`` (RAF-DB's 11 compound classes);
                                            None = no compound label. A compound sample usually has ``labels=[]``
================ ========================== =========================================================================

In JSON lines written by this project ``meta_info`` is a JSON object; inside a ``datasets.Dataset`` it is stored as
a JSON string (column ``meta_json``) because its keys differ between sources; ``AU_intensity`` likewise travels as
JSON text (column ``AU_intensity_json``, null when absent).
"""

from __future__ import annotations

import json
from typing import Any

from facial_r1.affect import COMPOUND_EMOTIONS, INTENSITY_LETTERS
from facial_r1.facs import BASIC7, EMOTIONS, au_codes, normalize_au

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
# The optional affect targets (documented above); make_record always sets them, None when not annotated.
TARGET_FIELDS = ("AU_intensity", "valence", "arousal", "compound")

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
    au_intensity: dict[str, int] | None = None,
    valence: float | None = None,
    arousal: float | None = None,
    compound: str | None = None,
) -> dict[str, Any]:
    """Build a record with every field present and typed as documented above (targets checked: :func:`check_targets`)."""
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
        **check_targets(au_intensity, valence, arousal, compound),
    }


def check_targets(
    au_intensity: Any = None, valence: Any = None, arousal: Any = None, compound: Any = None
) -> dict[str, Any]:
    """The affect targets in canonical form, or ``ValueError`` naming the bad value.

    ``au_intensity`` keys may be any AU spelling (``"AU06"``, 6) and levels 1..5 or letters A..E; valence and arousal
    must both be given or both be None, each in [-1, 1]; ``compound`` is a name of ``affect.COMPOUND_EMOTIONS``
    (case and spacing aside).
    """
    intensity = None
    if au_intensity is not None:
        if not isinstance(au_intensity, dict):
            raise ValueError(f"AU_intensity must be a mapping AU -> level, got {type(au_intensity).__name__}")
        intensity = {}
        for key, level in au_intensity.items():
            code = normalize_au(key) if isinstance(key, (str, int)) else None
            if code is None:
                raise ValueError(f"AU_intensity: unknown AU {key!r}")
            intensity[code] = _level(level, code)
        intensity = dict(sorted(intensity.items(), key=lambda kv: int(kv[0][2:])))
    if (valence is None) != (arousal is None):
        raise ValueError(f"valence and arousal come together: got valence={valence!r}, arousal={arousal!r}")
    va = [None, None]
    for k, (name, value) in enumerate((("valence", valence), ("arousal", arousal))):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1.0 <= float(value) <= 1.0:
            raise ValueError(f"{name} must be a number in [-1, 1], got {value!r}")
        va[k] = float(value)
    name = None
    if compound is not None:
        name = " ".join(str(compound).lower().replace("-", " ").replace("_", " ").split())
        if name not in COMPOUND_EMOTIONS:
            raise ValueError(f"unknown compound emotion {compound!r}; known: {list(COMPOUND_EMOTIONS)}")
    return {"AU_intensity": intensity, "valence": va[0], "arousal": va[1], "compound": name}


def _level(level: Any, code: str) -> int:
    """A FACS level 1..5 from an int or a letter A..E."""
    if isinstance(level, str) and len(level.strip()) == 1 and level.strip().upper() in INTENSITY_LETTERS:
        return INTENSITY_LETTERS.index(level.strip().upper()) + 1
    if isinstance(level, int) and not isinstance(level, bool) and 1 <= level <= 5:
        return level
    raise ValueError(f"AU_intensity[{code}] must be a level 1..5 or a letter A..E, got {level!r}")


def to_arrow_row(record: dict[str, Any]) -> dict[str, Any]:
    """Record -> row for ``datasets.Dataset`` (``meta_info`` as JSON text; ``AUs=None`` kept as null)."""
    row = {k: v for k, v in record.items() if k not in ("meta_info", "AU_intensity")}
    row["meta_json"] = json.dumps(record.get("meta_info") or {}, sort_keys=True)
    # Records built by hand may lack the optional targets: absent = not annotated.
    intensity = record.get("AU_intensity")
    row["AU_intensity_json"] = None if intensity is None else json.dumps(intensity)
    for key in ("valence", "arousal", "compound"):
        row.setdefault(key, None)
    return row


def from_arrow_row(row: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`to_arrow_row`."""
    record = {k: v for k, v in row.items() if k not in ("meta_json", "AU_intensity_json")}
    record["meta_info"] = json.loads(row.get("meta_json") or "{}")
    text = row.get("AU_intensity_json")
    record["AU_intensity"] = None if text is None else json.loads(text)
    return record


def has_aus(record: dict[str, Any]) -> bool:
    """True when the sample carries an AU annotation (possibly empty)."""
    return record.get("AUs") is not None


def has_emotion(record: dict[str, Any]) -> bool:
    return bool(record.get("labels"))


def has_intensity(record: dict[str, Any]) -> bool:
    """True when the sample carries AU intensity coding (possibly no AU active)."""
    return record.get("AU_intensity") is not None


def has_va(record: dict[str, Any]) -> bool:
    """True when the sample carries valence and arousal."""
    return record.get("valence") is not None and record.get("arousal") is not None


def has_compound(record: dict[str, Any]) -> bool:
    return record.get("compound") is not None


def all_emotions() -> tuple[str, ...]:
    return EMOTIONS
