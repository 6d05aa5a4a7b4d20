"""Dashboards end to end: a resumed run continues its W&B run, and a GRPO run mirrored to Trackio shows its curves
and its completions with their faces in Trackio's local dashboard, opened in headless Chromium.

Chromium is Debian's package (``/usr/bin/chromium``, installed by ``.ci/run``); without it the browser test skips,
except under CI (``CI=true``), where it fails. Screenshots are kept in ``$FACIAL_R1_TEST_ARTIFACTS`` (default
``outputs/test_artifacts/``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, TINY_TRAIN_ARGS, run_train
from test_sft import _kill_after_checkpoint
from test_tracking import _assert_every_image_cell_resolves, _offline_tables

pytestmark = pytest.mark.slow

ARTIFACTS = Path(os.environ.get("FACIAL_R1_TEST_ARTIFACTS", REPO / "outputs" / "test_artifacts"))


def _offline_run_ids(run: Path) -> set[str]:
    return {p.name.split("-")[-1] for p in (run / "wandb").glob("offline-run-*")}


def test_killed_and_resumed_run_continues_its_wandb_run(tmp_path, subprocess_env):
    """kill -9 mid-run, resume with ``ckpt_path=last``: the resumed run logs to the killed run's W&B id (two offline
    folders of one run, which ``wandb sync`` appends in order) under the same name."""
    output_root = tmp_path / "outputs"
    env = subprocess_env(output_root)
    args = [*TINY_TRAIN_ARGS, "logger=wandb"]
    killed_run = _kill_after_checkpoint(args, env, output_root, tmp_path / "killed.log").parent.parent
    killed = json.loads((killed_run / "run_info.json").read_text())
    assert re.fullmatch(r"[a-z0-9]{8}", killed["wandb_id"] or ""), killed  # was None before the run existed
    assert killed["run_name"].startswith("sft-s0-")
    assert _offline_run_ids(killed_run) == {killed["wandb_id"]}

    run_train([*args, "ckpt_path=last"], env)
    (resumed_run,) = [p for p in (output_root / "train").glob("*_sft") if p != killed_run]
    resumed = json.loads((resumed_run / "run_info.json").read_text())
    assert (resumed["wandb_id"], resumed["run_name"]) == (killed["wandb_id"], killed["run_name"])
    assert _offline_run_ids(resumed_run) == {killed["wandb_id"]}
    record = next((resumed_run / "wandb").glob("offline-run-*/*.wandb")).read_bytes()
    assert killed["run_name"].encode() in record and b"test/emotion_acc" in record  # name; summary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def _browse(chromium: str, url: str, profile: Path, screenshot: Path) -> str:
    """The page's DOM after its scripts ran (headless, no network beyond localhost), and a screenshot of it."""
    flags = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",  # this machine has no network: background fetches only add errors
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
        "--virtual-time-budget=15000",  # let the dashboard fetch its data and render before dumping
    ]
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    subprocess.run([*flags, f"--screenshot={screenshot}", url], capture_output=True, timeout=120)
    return dom


def test_grpo_run_in_wandb_offline_and_the_trackio_dashboard(tmp_path, tiny_sft_run, subprocess_env):
    chromium = _chromium()
    output_root = tmp_path / "outputs"
    run_train(
        [
            "stage=grpo",
            f"model.init_from={tiny_sft_run / 'model'}",
            "dataset.n_train=64",
            "dataset.n_val=8",
            "dataset.n_test=8",
            "dataset.progress=false",
            "model.tiny.warm_start_steps=0",
            "stage.prompts_per_step=2",
            "stage.objective.num_generations=2",
            "stage.objective.max_completion_length=16",
            "stage.eval.every_n_steps=0",
            "stage.final_eval.limit=4",
            "stage.final_eval.max_new_tokens=16",
            "stage.log_completions_every_n_steps=2",
            "trainer.max_steps=3",
            "trainer.log_every_n_steps=1",
            "trainer.enable_progress_bar=false",
            "logger=[wandb,trackio]",
        ],
        subprocess_env(output_root),
    )
    (run,) = (output_root / "train").glob("*_grpo")
    info = json.loads((run / "run_info.json").read_text())
    name = info["run_name"]
    assert name.startswith("grpo-s0-")

    # W&B offline: the completions (logged after step 2) and the held-out predictions keep their faces in the run
    # folder.
    files, completions = _offline_tables(run / "wandb", "train/completions")
    assert len(completions) == 1
    for table in completions:
        assert len(_assert_every_image_cell_resolves(files, table)) == 2  # 2 prompts, G 2
    _, (predictions,) = _offline_tables(run / "wandb", "test/predictions")
    assert len(_assert_every_image_cell_resolves(files, predictions)) == 4

    # Trackio: serve the run's dashboard on localhost, open it in headless Chromium.
    port = _free_port()
    env = {**os.environ, "TRACKIO_DIR": str(output_root / "trackio"), "GRADIO_SERVER_PORT": str(port)}
    log = (tmp_path / "trackio_show.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "trackio.cli", "show", "--project", "facial-r1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, (
                    tmp_path / "trackio_show.log"
                ).read_text()
                time.sleep(0.5)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        metrics_png, media_png = ARTIFACTS / "trackio_metrics.png", ARTIFACTS / "trackio_media.png"
        metrics_dom = _browse(chromium, f"{base}/?project=facial-r1", tmp_path / "profile", metrics_png)
        media_dom = _browse(chromium, f"{base}/media?project=facial-r1", tmp_path / "profile", media_png)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()

    # The run and its curves: the run's name, the reward and KL panels, drawn as SVG charts.
    assert name in metrics_dom
    for panel in ("reward", "policy", "total", "kl"):
        assert re.search(rf">\s*{panel}\b", metrics_dom), f"no {panel!r} panel on the metrics page"
    assert "<svg" in metrics_dom
    # A completion with its face: the completions table, its image cells served from this run's Trackio media.
    assert "train/completions" in media_dom
    face_srcs = re.findall(r'<img[^>]*class="table-image[^"]*"[^>]*src="([^"]+)"', media_dom)
    assert face_srcs, "no face in the completions table"
    # Trackio keeps media by run and step: the faces logged with the completions (step 2), not only the predictions'.
    completion_faces = (output_root / "trackio" / "media" / "facial-r1" / name / "2").as_posix()
    assert any(completion_faces in urllib.request.unquote(src) for src in face_srcs), face_srcs
    completions_db = sqlite_texts(output_root / "trackio" / "facial-r1.db")
    assert any(text and text[:20] in media_dom for text in completions_db), "no completion text on the page"
    for png in (metrics_png, media_png):
        assert png.is_file() and png.stat().st_size > 10_000, png


def sqlite_texts(db: Path) -> list[str]:
    """The completion texts Trackio stored for the tables (JSON inside its metrics rows)."""
    import sqlite3

    texts = []
    with sqlite3.connect(db) as conn:
        for (metrics,) in conn.execute("SELECT metrics FROM metrics"):
            for value in json.loads(metrics).values():
                if isinstance(value, dict) and value.get("_type") == "trackio.table":
                    texts += [row.get("completion") for row in value.get("_value", [])]
    return [t for t in texts if isinstance(t, str)]
