"""Check a dataset before training on it: load every split, decode every image, summarise, fail loudly.

    python -m facial_r1.data.validate dataset=rafdb dataset.root=/data/RAF-DB [split=train] [limit=100] \
        [on_error=raise] [report_path=rafdb_report.json]

Composes ``conf/validate.yaml``. Prints per split: samples kept, samples left out per reason, images that failed to
decode, the emotion label distribution and AU frequencies. Exits 1 when any sample or image was bad (left-outs by
design, such as AffectNet "no-face" rows, do not count as failures), 2 on a usage error.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from facial_r1.data.images import load_image
from facial_r1.data.schema import DataError, from_arrow_row
from facial_r1.data.sources import SPLITS, LoadReport, SkippedItem, Source, build_source
from facial_r1.files import write_json_atomic


@dataclass
class SplitCheck:
    """Everything ``validate`` learned about one split."""

    report: LoadReport
    checked: int = 0  # images decoded (at most `limit`)
    decode_errors: list[SkippedItem] = field(default_factory=list)
    labels: Counter = field(default_factory=Counter)
    aus: Counter = field(default_factory=Counter)
    au_annotated: int = 0  # samples with an AU annotation (possibly empty)

    @property
    def failed(self) -> int:
        return self.report.error_count + len(self.decode_errors)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.report.to_dict(),
            "checked": self.checked,
            "decode_errors": [asdict(item) for item in self.decode_errors],
            "labels": dict(self.labels),
            "aus": dict(self.aus),
            "au_annotated": self.au_annotated,
        }


def decode_errors(
    records: Sequence[dict[str, Any]], on_error: str = "skip", workers: int = 8, desc: str = "decode"
) -> list[SkippedItem]:
    """Decode every record's image (threads: PIL releases the GIL while decoding); the failures as report items."""

    def check(record: dict[str, Any]) -> SkippedItem | None:
        try:
            load_image(record).close()
        except DataError as err:
            if on_error == "raise":
                raise
            return SkippedItem(
                err.path, err.line, getattr(err, "kind", "corrupt_image"), str(err), error=True
            )
        return None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = tqdm(pool.map(check, records), total=len(records), desc=desc, unit="img", disable=None)
        return [item for item in results if item is not None]


def check_split(
    source: Source, split: str, limit: int | None = None, on_error: str = "skip", workers: int = 8
) -> SplitCheck:
    """Load ``split``, decode the images of its first ``limit`` samples (all by default), count labels and AUs."""
    dataset = source.load(split)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    records = [from_arrow_row(row) for row in dataset.select(range(count))]
    result = SplitCheck(source.reports[split], checked=len(records))
    result.decode_errors = decode_errors(records, on_error, workers, desc=f"{source.name}/{split}")
    for record in records:
        result.labels.update(record["labels"] or ["(no label)"])
        if record["AUs"] is not None:
            result.au_annotated += 1
            result.aus.update(record["AUs"])
    return result


def print_summary(checks: dict[str, SplitCheck], console: Console | None = None) -> None:
    """Three tables: per-split counts, label distribution, AU frequency."""
    console = console or Console()
    counts = Table(title="samples")
    for column in (
        "split",
        "kept",
        "decoded",
        "image errors",
        "AU-annotated",
        "left out (reason: n)",
        "failed",
    ):
        counts.add_column(column)
    for split, check in checks.items():
        left_out = ", ".join(f"{r}: {n}" for r, n in sorted(check.report.skipped.items())) or "-"
        decoded = check.checked - len(check.decode_errors)
        row = (
            check.report.kept,
            decoded,
            len(check.decode_errors),
            check.au_annotated,
            left_out,
            check.failed,
        )
        counts.add_row(split, *map(str, row))
    console.print(counts)
    for title, attr in (
        ("emotion labels", "labels"),
        ("AU frequency (share of AU-annotated samples)", "aus"),
    ):
        table = Table(title=title)
        table.add_column("split")
        table.add_column("distribution")
        for split, check in checks.items():
            counter: Counter = getattr(check, attr)
            total = check.au_annotated if attr == "aus" else sum(counter.values())
            cells = [f"{k} {n} ({n / max(total, 1):.0%})" for k, n in _ordered(counter)]
            table.add_row(split, ", ".join(cells) or "-")
        console.print(table)


def _ordered(counter: Counter) -> list[tuple[str, int]]:
    """AUs in numeric order, words alphabetically."""
    return sorted(
        counter.items(), key=lambda kv: (len(kv[0]), kv[0]) if kv[0].startswith("AU") else (0, kv[0])
    )


def run(cfg: Any) -> int:
    """Validate the configured dataset; returns the exit status."""
    splits = (
        list(SPLITS) if cfg.split is None else [cfg.split] if isinstance(cfg.split, str) else list(cfg.split)
    )
    from hydra.errors import InstantiationException

    try:
        source = build_source(cfg.dataset, on_error=cfg.on_error, report_path=None)
    except (ValueError, InstantiationException) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    # This command decodes the images itself (the first `limit` of each split, `workers` threads, failures listed
    # as decode errors), so the load-time check of every image is not run twice.
    source.image_check = "none"
    checks: dict[str, SplitCheck] = {}
    try:
        for split in splits:
            checks[split] = check_split(source, split, cfg.limit, cfg.on_error, cfg.workers)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print_summary(checks)
    if cfg.report_path:
        path = write_json_atomic(cfg.report_path, {s: c.to_dict() for s, c in checks.items()})
        print(f"report written to {path}")
    failed = sum(c.failed for c in checks.values())
    if failed:
        print(f"{failed} bad samples or images", file=sys.stderr)
    return 1 if failed else 0


def compose(overrides: Sequence[str] = ()) -> Any:
    """``conf/validate.yaml`` with command-line overrides (no Hydra output folders: this command writes nothing)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    conf_dir = Path(__file__).resolve().parents[3] / "conf"
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return hydra_compose("validate", overrides=list(overrides))


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    cfg = compose(args)
    # `dataset.on_error=raise` (the option every other command reads) is honoured unless `on_error=` is given too.
    keys = {arg.split("=", 1)[0].lstrip("+~") for arg in args}
    if "dataset.on_error" in keys and "on_error" not in keys:
        cfg.on_error = cfg.dataset.on_error
    return run(cfg)


if __name__ == "__main__":
    sys.exit(main())
