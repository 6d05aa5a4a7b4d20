"""Write a SynthFACS split to disk: ``<out>/<split>.jsonl`` plus ``<out>/images/<split>/<id>.jpg``.

One JSON object per line in the Facial-R1 schema (``data.schema``) with ``image`` relative to ``<out>``. The JSONL
is written to a temporary file and renamed at the end, so an interrupted export never leaves a complete-looking
index; image files are written as they are rendered (an orphan image without an index line is harmless).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from facial_r1.data.schema import DataError
from facial_r1.data.synthfaces.config import SynthFacesConfig
from facial_r1.data.synthfaces.sampling import render_spec, sample_spec, spec_record

Describe = Callable[[dict[str, Any]], str]


def export_split(
    out_dir: Path,
    split: str,
    n: int,
    seed: int,
    config: SynthFacesConfig | None = None,
    describe: Describe | None = None,
    progress: bool = True,
) -> Path:
    """Render samples ``0 .. n-1`` of ``split`` and write them; returns the JSONL path.

    ``describe(record) -> str`` fills ``description`` (e.g. the template teacher); it sees the record with an
    absolute image path. Images are JPEG at the sample's nuisance quality (PNG when the JPEG round trip is off), so
    the file's pixels equal what :func:`render_sample` returns.
    """
    cfg = config or SynthFacesConfig()
    out_dir = Path(out_dir)
    image_dir = out_dir / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{split}.jsonl"
    tmp = out_dir / f".{split}.jsonl.tmp"
    try:
        with tmp.open("w", encoding="utf-8") as f:
            for index in tqdm(range(n), desc=f"synthfaces {split}", unit="img", disable=not progress):
                spec = sample_spec(index, split, seed, cfg)
                img, data = render_spec(spec, cfg)
                rel = f"images/{split}/{spec.id}.{'jpg' if data is not None else 'png'}"
                if data is not None:
                    (out_dir / rel).write_bytes(data)
                else:
                    img.save(out_dir / rel)
                record = spec_record(spec, str((out_dir / rel).resolve()), cfg)
                if describe is not None:
                    record["description"] = describe(record)
                record["image"] = rel
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def read_split(jsonl: Path) -> list[dict[str, Any]]:
    """Records of an exported split with ``image`` made absolute (the in-memory convention of ``data.schema``)."""
    jsonl = Path(jsonl)
    records = []
    with jsonl.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"invalid JSON ({err.msg})", str(jsonl), line_no) from err
            record["image"] = str((jsonl.parent / record["image"]).resolve())
            records.append(record)
    return records
