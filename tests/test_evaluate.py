"""evaluate.py end to end: a folder of unlabeled images gives predictions only, and zeros rather than a crash."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from PIL import Image


@pytest.mark.slow
def test_evaluate_on_unlabeled_image_folder(tmp_path: Path, tiny_model_dir: Path, subprocess_env) -> None:
    images = tmp_path / "faces"
    images.mkdir()
    for i in range(3):
        Image.new("RGB", (112, 112), (40 * i, 90, 160)).save(images / f"face_{i}.png")
    out = tmp_path / "out"
    args = [
        f"model.path={tiny_model_dir}",
        "dataset=image_folder",
        f"dataset.root={images}",
        "logger=none",
        "max_new_tokens=8",
        "limit=3",
    ]
    proc = subprocess.run(
        [sys.executable, "evaluate.py", *args],
        cwd=REPO,
        env=subprocess_env(out),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = list((out / "evaluate").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_samples"] == 3 and set(metrics["machine"]) == {
        "load_1m_start",
        "load_1m_end",
        "cores",
    }
    assert metrics["emotion_acc"] in (0.0, None)  # no labels: nothing to score, and no crash
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all("output" in row for row in rows)
