"""Experiment tracking: run identity, loggers built with it, and W&B tables whose faces survive offline mode.

The end-to-end checks (a resumed run continues its W&B run; the Trackio dashboard in headless Chromium) are in
test_dashboards.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from facial_r1.tracking.loggers import build_loggers
from facial_r1.tracking.media import IMAGE_FILE_COLUMN, log_evaluation, log_image_table
from facial_r1.tracking.naming import RunIdentity, folder_time, new_run_id, run_identity

CHOICES = {"reward": "au_acc_format", "model": "tiny", "dataset": "synthfaces", "experiment": None}


def _cfg(stage: str = "grpo", seed: int = 3, **extra):
    return OmegaConf.create({"stage": {"name": stage}, "seed": seed, "task_name": "train", **extra})


def test_identity_names_groups_and_tags_runs():
    run_dir = "/out/train/2026-12-02_13-05-09_grpo"
    plain = run_identity(_cfg(), run_dir=run_dir, choices=CHOICES, sweep=None)
    assert plain.name == "grpo-s3-20261202-130509"
    assert plain.group is None and plain.job_type == "grpo"
    assert plain.tags == ("grpo", "au_acc_format", "tiny", "synthfaces")
    assert plain.run_id == new_run_id(run_dir) and len(plain.run_id) == 8

    ablation = run_identity(
        _cfg(), run_dir=run_dir, choices={**CHOICES, "experiment": "reward_ablation"}, sweep=None
    )
    assert ablation.name == "reward_ablation-s3-20261202-130509"
    assert ablation.group == "reward_ablation"  # every seed of the ablation, whichever command ran it
    assert "reward_ablation" in ablation.tags

    sweep_dir = "/out/train/multirun/2026-12-02_14-00-00/1_seed=1"
    swept = run_identity(_cfg(seed=1), run_dir=sweep_dir, choices=CHOICES, sweep="2026-12-02_14-00-00")
    assert swept.group == "grpo-sweep-2026-12-02_14-00-00"
    assert swept.name == "grpo-s1-20261202-140000"  # the sweep folder's time
    assert swept.run_id != new_run_id(sweep_dir.replace("1_seed=1", "0_seed=0"))  # one id per run folder


def test_resumed_run_keeps_its_id_name_and_group():
    first = run_identity(_cfg(), run_dir="/a/2026-01-01_00-00-00_grpo", choices=CHOICES, sweep=None)
    resumed = run_identity(
        _cfg(), first.run_info(), run_dir="/a/2026-01-02_00-00-00_grpo", choices=CHOICES, sweep=None
    )
    assert (resumed.run_id, resumed.name, resumed.group) == (first.run_id, first.name, first.group)


def test_folder_time_falls_back_to_now():
    assert folder_time("/x/not-a-timestamp", now=0.0)[:4] in ("1969", "1970")
    assert folder_time(None, now=0.0) == folder_time("/y/z", now=0.0)


def test_build_loggers_fills_auto_and_keeps_explicit_values(tmp_path):
    cfg = _cfg(
        logger={
            "wandb": {
                "_target_": "lightning.pytorch.loggers.WandbLogger",
                "project": "p",
                "name": "auto",
                "group": "my_sweep",  # explicit: kept
                "job_type": "auto",
                "tags": "auto",
                "save_dir": str(tmp_path),
                "offline": True,
            },
            "trackio": {
                "_target_": "facial_r1.tracking.trackio_logger.TrackioLogger",
                "project": "p",
                "name": "auto",
                "group": "auto",
                "dir": str(tmp_path / "trackio"),
            },
            "off": {},
        }
    )
    identity = RunIdentity(
        run_id="abcd1234", name="grpo-s3-x", group="g", job_type="grpo", tags=("grpo", "tiny")
    )
    wandb_logger, trackio_logger = build_loggers(cfg, identity)
    init = wandb_logger._wandb_init
    assert init["id"] == "abcd1234" and init["resume"] == "allow"
    assert (init["name"], init["group"], init["job_type"], init["tags"]) == (
        "grpo-s3-x",
        "my_sweep",
        "grpo",
        ["grpo", "tiny"],
    )
    assert wandb_logger.version == "abcd1234"  # known before the W&B run exists (it was None: issue 18)
    assert (trackio_logger.version, trackio_logger._group) == ("grpo-s3-x", "g")


def _face(color: tuple[int, int, int], size=(112, 140)) -> Image.Image:
    return Image.new("RGB", size, color)


def _offline_tables(wandb_dir: Path, key: str) -> tuple[Path, list[dict]]:
    (run,) = sorted(wandb_dir.glob("offline-run-*"))
    files = run / "files"
    tables = sorted(files.glob(f"media/table/{key}_*.table.json"))
    assert tables, f"no {key} table in {files}"
    return files, [json.loads(t.read_text()) for t in tables]


def _assert_every_image_cell_resolves(files: Path, table: dict) -> set[str]:
    """Every row names a face file in the offline run folder that exists and decodes."""
    col = table["columns"].index(IMAGE_FILE_COLUMN)
    paths = set()
    for row in table["data"]:
        rel = row[col]
        assert rel, f"a row without its image file: {row}"
        path = files / rel
        assert path.is_file(), f"{rel} is not in {files}"
        with Image.open(path) as image:
            image.load()
            assert image.size[0] > 0 and max(image.size) <= 224
        paths.add(rel)
    return paths


def test_wandb_offline_tables_keep_their_faces(tmp_path, monkeypatch):
    """A completions table and an evaluation table, logged offline: every image cell of the tables written to the
    run folder resolves to a decodable image file inside it (wandb 0.31 writes "Image" there for image cells)."""
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    monkeypatch.setenv("WANDB_SILENT", "true")
    wandb_logger = WandbLogger(project="p", save_dir=str(tmp_path), offline=True, id="tbl00001")
    loggers = [wandb_logger, CSVLogger(str(tmp_path), name="csv")]
    faces = [_face((200, 30, 30)), _face((30, 200, 30), size=(448, 448))]  # the large one is thumbnailed
    G = 3
    rows = [
        {"step": 5, "image": faces[g], "id": f"f{g}", "completion": f"c{g}{j}", "reward": 0.5, "au_f1": None}
        for g in range(2)
        for j in range(G)
    ]
    try:
        assert (
            log_image_table(loggers, "train/completions", rows, step=5) == 1
        )  # W&B only: CSV takes no tables
        image_files = []
        for i, face in enumerate(faces):
            path = tmp_path / f"face{i}.png"
            face.save(path)
            image_files.append(str(path))
        records = [{"id": "a", "image": image_files[0]}, {"id": "b", "image": image_files[1]}]
        eval_rows = [
            {"id": "a", "output": "x", "pred_aus": ["AU12"]},
            {"id": "b", "output": "y", "pred_aus": []},
        ]
        metrics = {"emotion_acc": 0.75, "au_f1_macro": 0.5, "au_f1_per_au": {"AU12": 0.25}, "num_samples": 2}
        log_evaluation(loggers, metrics, eval_rows, records, prefix="test", step=5)
        # More faces than W&B binds from one list (Image.MAX_ITEMS = 108): every one still lands in the folder.
        many = [{"image": _face((i, 0, 0), size=(8, 8)), "id": str(i)} for i in range(120)]
        log_image_table(loggers, "val/many", many, step=6)
        run = wandb_logger.experiment
        assert run.summary["test/emotion_acc"] == 0.75  # the runs table shows the summary
        assert run.summary["test/au_f1_per_au/AU12"] == 0.25
    finally:
        wandb_logger.experiment.finish()
        loggers[1].save()

    files, (completions,) = _offline_tables(tmp_path / "wandb", "train/completions")
    assert len(completions["data"]) == 2 * G
    assert (
        len(_assert_every_image_cell_resolves(files, completions)) == 2
    )  # one face per prompt, shared by G rows
    files, (predictions,) = _offline_tables(tmp_path / "wandb", "test/predictions")
    assert len(_assert_every_image_cell_resolves(files, predictions)) == 2
    files, (many_table,) = _offline_tables(tmp_path / "wandb", "val/many")
    assert len(_assert_every_image_cell_resolves(files, many_table)) == 120
    # The CSV logger got the headline numbers at the final step instead of a summary.
    csv_text = next((tmp_path / "csv").glob("version_*/metrics.csv")).read_text()
    assert "test/emotion_acc" in csv_text.splitlines()[0]


def test_log_image_table_refuses_rows_without_the_image_column():
    with pytest.raises(ValueError, match="no 'image' column"):
        log_image_table([object()], "k", [{"id": 1}], step=0)
