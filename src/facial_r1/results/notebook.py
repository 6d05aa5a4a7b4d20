"""The rest of a run folder, for the analysis notebook: Lightning's CSV log, the predictions, their images."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from facial_r1.results.runs import _select

# ---- the rest of a run folder (for the notebook) ------------------------------------------------------------------


def read_curves(run_dir: str | Path) -> list[dict[str, float]]:
    """Lightning's CSV log (``csv/version_*/metrics.csv``, every version in order: a resumed run appends one) as
    rows of ``{column: float}`` with empty cells left out."""
    rows: list[dict[str, float]] = []
    for path in sorted(Path(run_dir).glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:])):
        with path.open(newline="") as f:
            for raw in csv.DictReader(f):
                row = {}
                for key, value in raw.items():
                    try:
                        row[key] = float(value)
                    except (TypeError, ValueError):
                        continue
                rows.append(row)
    return rows


def read_predictions(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "predictions.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def attach_images(run_dir: str | Path, predictions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``predictions`` with ``image`` (absolute path, or None when not found) from the run's own dataset config.

    The evaluated split's records are loaded through the saved ``dataset`` node (SynthFACS reads its render cache,
    ``$FACIAL_R1_CACHE``, rendering again if that cache is gone) and joined on (``dataset``, ``id``).
    """
    from omegaconf import OmegaConf

    from facial_r1.data.sources import build_source

    run_dir = Path(run_dir)
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    metrics = (
        json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    )
    split = metrics.get("split") or _select(config, "split") or "test"
    source = build_source(config.dataset)
    images = {(r.get("dataset"), r.get("id")): r.get("image") for r in source.records(split)}
    return [{**p, "image": images.get((p.get("dataset"), p.get("id")))} for p in predictions]
