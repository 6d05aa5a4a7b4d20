"""``python -m facial_r1.results <runs root ...> [--out DIR] [--into FILE:NAME] [--columns a,b]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from facial_r1.results.publish import MarkerError, published_block, write_blocks, write_results
from facial_r1.results.runs import MixedJudgesError, collect
from facial_r1.results.tables import check_columns, to_markdown

# ---- command line -------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m facial_r1.results",
        description="Scan run folders (metrics.json + .hydra/config.yaml, any depth) into results.md / results.csv.",
    )
    parser.add_argument(
        "roots", nargs="+", type=Path, help="run folders or folders holding them (e.g. outputs)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="where to write the tables (default: the first root)"
    )
    parser.add_argument(
        "--into",
        action="append",
        default=[],
        metavar="FILE:NAME",
        help="also write the grouped table between <!-- results:NAME --> and <!-- /results:NAME --> of FILE "
        "(repeatable; NAME defaults to results)",
    )
    parser.add_argument(
        "--columns",
        default=None,
        help="comma list of the metrics the Markdown tables show, in order (e.g. emotion_acc,au_f1_micro,"
        "consistency_rate); the CSV files keep every metric",
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    if columns:
        try:
            check_columns(columns)
        except ValueError as err:
            parser.error(str(err))
    try:
        rows = collect(args.roots)
    except MixedJudgesError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not rows:
        print(
            f"no runs (metrics.json + .hydra/config.yaml) under {', '.join(map(str, args.roots))}",
            file=sys.stderr,
        )
        return 1
    paths = write_results(rows, args.out or args.roots[0], columns)
    print(to_markdown(rows, columns=columns).split("## Runs")[0].rstrip())
    print("\nwrote " + ", ".join(str(p) for p in paths.values()))
    block = published_block(rows, " ".join(["python -m facial_r1.results", *argv]), columns)
    try:
        for name, path in write_blocks(args.into, block):
            print(f"wrote block {name!r} into {path}")
    except MarkerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
