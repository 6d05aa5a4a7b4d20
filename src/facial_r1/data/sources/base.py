"""The ``Source`` contract every dataset adapter follows, the load report, and the error policy.

A source turns a dataset's native files into :mod:`facial_r1.data.schema` records, one split at a time:

* ``load(split)`` -> ``datasets.Dataset`` of ``schema.to_arrow_row`` rows (images are paths, never decoded here);
* ``records(split)`` -> the same as plain record dicts;
* ``report`` -> the :class:`LoadReport` of the last load (``reports`` keeps one per split).

Error policy. A problem with one sample (missing or escaping image, an image that does not decode or decodes to
something unusable, unknown label or AU, malformed line, missing field) raises a :class:`~facial_r1.data.schema.DataError` naming ``file:line`` with ``on_error="raise"``; with
``on_error="skip"`` the sample is left out, counted per reason and listed in the report (and in ``report_path``
as JSON). Samples a dataset excludes by design (AffectNet "no-face", rows with ``is_valid: false``) are always
left out, counted and listed, but are not errors. A problem that leaves nothing to load (a missing annotation file,
wrong CSV columns, an annotation file that is not UTF-8) always raises: skipping it would silently empty the split.

Images are checked when a split is loaded (``image_check``: ``"decode"`` decodes every image of the split
completely, in threads; ``"none"`` skips the check): a bad image is an error of its sample, reported with the
annotation ``file:line`` it came from, before any model is loaded. Annotation text is read as UTF-8 (a leading BOM
is accepted); a byte that is not UTF-8 raises naming the file and line (:func:`text_lines`).

Subclasses implement ``_rows(split)`` (cheap iteration over raw annotation rows; may raise structural errors) and
``_parse(row)`` (one row -> record, :class:`Drop` or a raised error). Sources whose native data has no validation
split return True from ``_val_is_holdout``: their ``_rows`` is then only asked for ``train`` and ``test``, and
``val`` is a seeded ``val_fraction`` slice of the parsed train records (``train`` is the rest). Train-file problems
therefore show in both the train and the val report.
"""

from __future__ import annotations

import csv
import logging
import os
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import datasets

from facial_r1.data.images import SampleError, check_image
from facial_r1.data.schema import DataError, from_arrow_row, to_arrow_row
from facial_r1.files import write_json_atomic

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
MAX_LOGGED_SKIPS = 20
IMAGE_CHECK_WORKERS = min(8, os.cpu_count() or 1)  # PIL releases the GIL while decoding
OnError = Literal["raise", "skip"]

# Fixed column types, so that an all-``None`` AU column or an empty split still has the same schema as any other
# source (``datasets.concatenate_datasets`` across sources needs identical features).
_STRINGS = datasets.List(datasets.Value("string"))
FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "dataset": datasets.Value("string"),
        "image": datasets.Value("string"),
        "question": datasets.Value("string"),
        "AUs": _STRINGS,
        "labels": _STRINGS,
        "description": datasets.Value("string"),
        "label_set": _STRINGS,
        "au_vocab": _STRINGS,
        "meta_json": datasets.Value("string"),
        # The optional affect targets of data/schema.py (null = not annotated).
        "AU_intensity_json": datasets.Value("string"),
        "valence": datasets.Value("float64"),
        "arousal": datasets.Value("float64"),
        "compound": datasets.Value("string"),
    }
)


@dataclass(frozen=True)
class Drop:
    """A row the dataset excludes by design (not an error); ``reason`` is the report key."""

    reason: str
    message: str = ""


@dataclass(frozen=True)
class Row:
    """One raw annotation row and where it came from (``line`` is 1-based; None for whole-file items)."""

    file: str
    line: int | None
    data: Any


@dataclass
class SkippedItem:
    file: str | None
    line: int | None
    reason: str
    message: str
    error: bool  # False for by-design exclusions


@dataclass
class LoadReport:
    """What one ``load(split)`` kept and left out; nothing is dropped without an entry here."""

    source: str
    split: str
    kept: int = 0
    items: list[SkippedItem] = field(default_factory=list)
    error_count: int = 0  # items with error=True, kept up to date by `add`

    @property
    def skipped(self) -> dict[str, int]:
        """Left-out samples per reason (errors and by-design exclusions)."""
        return dict(Counter(item.reason for item in self.items))

    @property
    def errors(self) -> list[SkippedItem]:
        return [item for item in self.items if item.error]

    def add(self, item: SkippedItem) -> None:
        self.items.append(item)
        self.error_count += item.error

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "split": self.split,
            "kept": self.kept,
            "skipped": self.skipped,
            "errors": self.error_count,
            "items": [asdict(item) for item in self.items],
        }

    def summary(self) -> str:
        parts = ", ".join(f"{reason} {n}" for reason, n in sorted(self.skipped.items())) or "none"
        return f"{self.source}/{self.split}: kept {self.kept}, left out: {parts}"


def write_reports(reports: Iterable[LoadReport], path: str | os.PathLike) -> None:
    """Write ``{split: report}`` as JSON, atomically (a half-written report would mislead more than none)."""
    write_json_atomic(path, {r.split: r.to_dict() for r in reports})


def holdout_ids(ids: Iterable[str], fraction: float, seed: int) -> set[str]:
    """A seeded, deterministic held-out subset: ``round(n * fraction)`` ids (at least 1 when n >= 2 and fraction > 0).

    Ids are sorted before shuffling, so the slice depends only on the set of ids, not on file order.
    """
    pool = sorted(set(ids))
    if fraction <= 0 or len(pool) < 2:
        return set()
    count = min(len(pool) - 1, max(1, round(len(pool) * fraction)))
    random.Random(seed).shuffle(pool)
    return set(pool[:count])


def text_lines(path: str | os.PathLike) -> Iterator[str]:
    """The lines of a UTF-8 text file (line ends kept; a leading BOM dropped), read lazily.

    A byte sequence that is not UTF-8 raises :class:`DataError` naming the file and line (and the byte), instead of
    a bare ``UnicodeDecodeError`` from deep inside a parser.
    """
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as err:
                bad = raw[err.start : err.start + 1].hex()
                raise DataError(
                    f"not UTF-8 text: byte 0x{bad} at column {err.start + 1}; save the file as UTF-8",
                    str(path),
                    number,
                ) from err


def read_csv_rows(
    path: str, required: tuple[str, ...], dataset: str, strip_header: bool = False
) -> Iterator[Row]:
    """Rows of a headed CSV as dicts; a missing file or missing columns raise (nothing could be loaded).

    ``strip_header``: column names are stripped of surrounding spaces (``icml_face_data.csv`` writes
    ``emotion, Usage, pixels``).
    """
    if not os.path.isfile(path):
        raise DataError(f"{dataset} annotation file not found", path)
    reader = csv.DictReader(text_lines(path))
    if strip_header and reader.fieldnames:
        reader.fieldnames = [name.strip() for name in reader.fieldnames]
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"missing CSV columns {missing}; header is {reader.fieldnames}", path, 1)
    for data in reader:
        yield Row(path, reader.line_num, data)


def require_records(source: Source, split: str, records: list[Any], purpose: str) -> list[Any]:
    """``records`` unless empty; an empty split is an error saying which split of which source and why it is empty
    (its load report: what was left out), not a run on nothing."""
    if records:
        return records
    report = source.reports.get(split)
    why = report.summary() if report is not None else "nothing loaded"
    hint = " (every sample was left out: see the reasons)" if report is not None and report.items else ""
    raise DataError(f"split {split!r} of {source.name} is empty, nothing to {purpose}: {why}{hint}")


def default_cache_dir(name: str) -> Path:
    """``$FACIAL_R1_CACHE/<name>`` (default ``~/.cache/facial_r1/<name>``), as ``paths.cache_dir`` in the config."""
    base = os.environ.get("FACIAL_R1_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "facial_r1")
    return Path(base) / name


def rows_to_dataset(rows: list[dict[str, Any]]) -> datasets.Dataset:
    """Arrow rows -> in-memory ``datasets.Dataset`` with :data:`FEATURES` (no cache files written)."""
    columns = {key: [row[key] for row in rows] for key in FEATURES}
    return datasets.Dataset.from_dict(columns, features=FEATURES)


class Source:
    """Base class of every dataset adapter; see the module docstring for the contract."""

    name: str = "source"
    # "decode": every image of a loaded split is decoded once (a bad one is a sample error at load time);
    # "none": not checked (sources whose images this project writes itself, e.g. SynthFACS renders).
    image_check: str = "decode"

    def __init__(
        self,
        root: str | os.PathLike,
        on_error: OnError = "raise",
        report_path: str | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
    ):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.root = Path(root).expanduser().absolute()
        self.on_error = on_error
        self.report_path = report_path
        self.val_fraction = val_fraction
        self.seed = seed
        self.reports: dict[str, LoadReport] = {}
        self._loaded: dict[str, datasets.Dataset] = {}

    @property
    def report(self) -> LoadReport:
        """Report of the most recent ``load``."""
        if not self.reports:
            raise RuntimeError(f"{self.name}: nothing loaded yet")
        return next(reversed(self.reports.values()))

    def load(self, split: str) -> datasets.Dataset:
        """Rows (``schema.to_arrow_row``) of one split; loaded once per source object."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if split in self._loaded:
            self.reports[split] = self.reports.pop(split)  # keep `report` pointing at the latest request
            return self._loaded[split]
        report = LoadReport(self.name, split)
        # A holdout val is carved out of the parsed train rows, so train-file problems show in both reports.
        native = "train" if split == "val" and self._val_is_holdout() else split
        records = self._select(split, self._collect(native, report))
        if self.image_check == "decode":
            records = self._check_images(records, report)
        report.kept = len(records)
        self.reports[split] = report
        self._loaded[split] = rows_to_dataset([to_arrow_row(r) for r in records])
        self._log(report)
        if self.report_path:
            write_reports(self.reports.values(), self.report_path)
        return self._loaded[split]

    def records(self, split: str) -> list[dict[str, Any]]:
        """The split as plain record dicts."""
        return [from_arrow_row(row) for row in self.load(split)]

    # -- for subclasses ------------------------------------------------------------------------------------------

    def _rows(self, split: str) -> Iterator[Row]:
        raise NotImplementedError

    def _parse(self, row: Row) -> dict[str, Any] | Drop:
        raise NotImplementedError

    def _val_is_holdout(self) -> bool:
        return False

    def origin(self, row: Row) -> dict[str, Any]:
        """``meta_info`` keys that let an image error name the annotation it came from."""
        return {"source_file": row.file, "source_line": row.line}

    # -- internals -----------------------------------------------------------------------------------------------

    def _collect(self, split: str, report: LoadReport) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        seen: dict[tuple[str, str], Row] = {}  # ids are unique within a dataset (mixed files hold several)
        for row in self._rows(split):
            try:
                result = self._parse(row)
                if isinstance(result, dict) and _key(result) in seen:
                    first = seen[_key(result)]
                    raise SampleError(
                        "duplicate_id",
                        f"id {result['id']!r} already used at {first.file}:{first.line}",
                        row.file,
                        row.line,
                    )
            except DataError as err:
                self._fail(err, row, report)
                continue
            if isinstance(result, Drop):
                report.add(SkippedItem(row.file, row.line, result.reason, result.message, error=False))
            else:
                seen[_key(result)] = row
                records.append(result)
        return records

    def _check_images(self, records: list[dict[str, Any]], report: LoadReport) -> list[dict[str, Any]]:
        """Decode every record's image (threads); a failure is that sample's error, in record order."""

        def check(record: dict[str, Any]) -> DataError | None:
            try:
                check_image(record)
            except DataError as err:
                return err
            return None

        if not records:
            return records
        with ThreadPoolExecutor(IMAGE_CHECK_WORKERS) as pool:
            failures = list(pool.map(check, records))
        kept = []
        for record, err in zip(records, failures, strict=True):
            if err is None:
                kept.append(record)
                continue
            meta = record.get("meta_info") or {}
            self._fail(
                err, Row(meta.get("source_file") or record["image"], meta.get("source_line"), None), report
            )
        return kept

    def _fail(self, err: DataError, row: Row, report: LoadReport) -> None:
        if self.on_error == "raise":
            raise err
        kind = getattr(err, "kind", "bad_input")
        report.add(
            SkippedItem(err.path or row.file, err.line if err.path else row.line, kind, str(err), error=True)
        )
        # A systematic problem can skip thousands of rows: name the first ones, count the rest (report has all).
        if report.error_count <= MAX_LOGGED_SKIPS:
            log.warning("skipped: %s", err)
        if report.error_count == MAX_LOGGED_SKIPS:
            log.warning(
                "%s/%s: further skipped samples are only counted (see the report)", self.name, report.split
            )

    def _select(self, split: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if split == "test" or not self._val_is_holdout():
            return records
        val_keys = holdout_ids((_key_text(r) for r in records), self.val_fraction, self.seed)
        return [r for r in records if (_key_text(r) in val_keys) == (split == "val")]

    def _log(self, report: LoadReport) -> None:
        level = logging.WARNING if report.error_count else logging.INFO
        log.log(level, report.summary())


def _key(record: dict[str, Any]) -> tuple[str, str]:
    return record["dataset"], record["id"]


def _key_text(record: dict[str, Any]) -> str:
    return f"{record['dataset']}/{record['id']}"
