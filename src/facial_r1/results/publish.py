"""Writing the tables: ``results.md`` / ``.csv`` in a folder, and the grouped table between a document's markers."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from facial_r1.results.columns import IDENTITY, METRICS, RUN_COLUMNS
from facial_r1.results.runs import check_one_judge, group_rows
from facial_r1.results.tables import grouped_markdown, to_markdown

# ---- publishing into a document -----------------------------------------------------------------------------------


class MarkerError(ValueError):
    """The target document of ``--into`` lacks the block's markers (or has them out of order)."""


def markers(name: str) -> tuple[str, str]:
    return f"<!-- results:{name} -->", f"<!-- /results:{name} -->"


def parse_into(spec: str) -> tuple[Path, str]:
    """``FILE:NAME`` -> (path, name); a bare ``FILE`` is block ``results``."""
    path, sep, name = str(spec).rpartition(":")
    if not sep or not name or "/" in name:
        return Path(spec), "results"
    return Path(path), name


def check_markers(path: str | Path, name: str) -> str:
    """The text of ``path`` when it holds block ``name``'s markers once each, in order; else :class:`MarkerError`."""
    path = Path(path)
    if not path.is_file():
        raise MarkerError(f"{path}: no such file (--into FILE:NAME writes into an existing Markdown file)")
    text = path.read_text(encoding="utf-8")
    begin, end = markers(name)
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise MarkerError(
            f"{path}: block {name!r} needs exactly one {begin} line followed later by one {end} line "
            f"(found {text.count(begin)} and {text.count(end)}); add them where the table belongs"
        )
    return text


def write_into(path: str | Path, name: str, block: str) -> Path:
    """Replace what lies between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` in ``path`` with
    ``block``; the rest of the file is kept byte for byte. Raises :class:`MarkerError` naming the file and the
    markers to add when they are missing, repeated or out of order."""
    path = Path(path)
    text = check_markers(path, name)
    begin, end = markers(name)
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{block.strip()}\n{end}{tail}", encoding="utf-8")
    return path


def check_blocks(specs: Sequence[str]) -> list[tuple[Path, str]]:
    """The ``--into`` targets (``FILE:NAME``) of ``specs``, each file's markers checked (:class:`MarkerError`), so a
    bad target stops a command before any file is touched."""
    targets = [parse_into(spec) for spec in specs]
    for path, name in targets:
        check_markers(path, name)
    return targets


def write_blocks(specs: Sequence[str], block: str) -> list[tuple[str, Path]]:
    """Write ``block`` into every ``--into`` target of ``specs`` (all checked first); returns (name, path) pairs."""
    return [(name, write_into(path, name, block)) for path, name in check_blocks(specs)]


def published_block(
    rows: Sequence[dict[str, Any]], command: str, columns: Sequence[str] | None = None
) -> str:
    """What ``--into`` writes: the command that rewrites it, and the grouped table with its notes."""
    seeds = sorted({str(r["seed"]) for r in rows})
    return "\n".join(
        [
            f"Written by `{command}` (rerun it to update; do not edit by hand). {len(rows)} runs, seeds "
            f"{', '.join(seeds)}; mean ± sample std over seeds.",
            "",
            *grouped_markdown(rows, columns=columns),
        ]
    )


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})


def write_results(
    rows: Sequence[dict[str, Any]], out_dir: str | Path, columns: Sequence[str] | None = None
) -> dict[str, Path]:
    """Write ``results.md`` (metric ``columns`` only, when given), ``results.csv`` and ``results_grouped.csv`` (every
    metric) into ``out_dir``; returns their paths."""
    check_one_judge(rows)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = group_rows(rows)
    paths = {
        "markdown": out_dir / "results.md",
        "runs_csv": out_dir / "results.csv",
        "grouped_csv": out_dir / "results_grouped.csv",
    }
    paths["markdown"].write_text(to_markdown(rows, groups, columns), encoding="utf-8")
    _write_csv(paths["runs_csv"], RUN_COLUMNS, rows)
    stats = [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
    _write_csv(paths["grouped_csv"], [*IDENTITY, "seeds", "runs", *stats], groups)
    return paths
