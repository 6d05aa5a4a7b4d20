"""Resumability: crash-safe storage, run sessions (fake model), and a REAL ``python synthesize.py`` killed by SIGKILL.

The SIGKILL test runs the tiny model (built into a temporary cache) on a dataset written here, large enough (and its
completions long enough) that the run is still going when the test kills it. Every check is relaxed (``checks.enforce=[]``) so the
untrained model's output is accepted and ``accepted.jsonl`` fills up: the claim under test is "no accepted sample
lost or duplicated", whatever the checks decide.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from test_synthesis import CONF, WRONG, FakeAdapter, rec, remember, right_answer, write_toy_dataset

from facial_r1.data.schema import DataError
from facial_r1.data.sources import FacialR1JsonlSource
from facial_r1.synthesis.review import apply_review, write_review_html
from facial_r1.synthesis.rounds import SynthRoundsSource
from facial_r1.synthesis.run import run_synthesis
from facial_r1.synthesis.store import RunStore, read_jsonl, sample_key

REPO = Path(__file__).resolve().parents[1]
N = 20
N_KILLED = (
    60  # samples of the SIGKILL test: ~30 batches after the kill point, seconds of work left to interrupt
)


# ---- storage ------------------------------------------------------------------------------------------------------
def test_torn_last_line_is_dropped_and_cut_off(tmp_path):
    path = tmp_path / "a.jsonl"
    good = json.dumps({"id": "a", "dataset": "d"}) + "\n" + json.dumps({"id": "b", "dataset": "d"}) + "\n"
    path.write_text(good + '{"id": "c", "data')
    assert len(read_jsonl(path)) == 2 and path.read_text() != good  # read-only by default
    assert [r["id"] for r in read_jsonl(path, repair=True)] == ["a", "b"] and path.read_text() == good
    path.write_text(good + json.dumps({"id": "c"}))  # complete JSON but no newline: the write did not finish
    assert len(read_jsonl(path, repair=True)) == 2 and path.read_text() == good
    path.write_text(good + "\x00\x00\x00\n\x00\x00")  # a power-loss tail
    assert len(read_jsonl(path, repair=True)) == 2 and path.read_text() == good
    path.write_text('{"id": "a"}\nbroken\n{"id": "b"}\n')  # damage before good lines is no torn write
    with pytest.raises(DataError, match="line 2"):
        read_jsonl(path)


def test_store_rebuilds_finished_ids_and_counts_and_locks(tmp_path):
    a = {**rec("a"), "meta_info": {"synthesis": {"attempt": 2, "checks": {"failed": []}}}}
    b = {
        **rec("b", labels=()),
        "meta_info": {"synthesis": {"attempt": 6, "checks": {"failed": ["au", "format"]}}},
    }
    with RunStore(tmp_path) as store:
        store.append([a], [b])
        with pytest.raises(RuntimeError, match="another synthesize process"), RunStore(tmp_path):
            pass
    (tmp_path / "accepted.jsonl").open("a").write('{"id": "c", "dat')  # killed mid-write
    with RunStore(tmp_path) as store:
        assert store.finished == {"toy/a", "toy/b"}
        tally = store.tally.to_dict()
        assert tally["accepted_per_attempt"] == {"2": 1}
        assert tally["rejected_failed_checks"] == {"au": 1, "format": 1}
        # Rows of older runs carry no "rejected_by": every check they failed counts as a reason.
        assert tally["rejected_by_check"] == {"au": 1, "emotion": 0, "format": 1, "consistency": 0}
        assert tally["accepted_consistency_rate"] is None  # no accepted row carries the flag
        assert tally["per_class"] == {"sadness": {"accepted": 1}, "(no label)": {"rejected": 1}}
        store.append([rec("c")], [])
    assert [r["id"] for r in read_jsonl(tmp_path / "accepted.jsonl")] == ["a", "c"]


# ---- the run (fake model, composed config) --------------------------------------------------------------------------
def compose_synthesis(tmp_path, *overrides):
    data = write_toy_dataset(tmp_path / "data", 6)
    remember(FacialR1JsonlSource(data, files={"train": "train.jsonl"}, val_fraction=0).records("train"))
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("synthesize", overrides=[
            "dataset=fea20k", f"dataset.root={data}", "dataset.name=toy", "dataset.val_fraction=0", f"paths.output_root={tmp_path / 'out'}",
            "model._target_=test_synthesis.FakeAdapter", f"model.path={tmp_path / 'model'}", "batch_size=4",
            "progress=false", *overrides,
        ])  # fmt: skip


def test_run_writes_outputs_and_resumes_without_duplicates(tmp_path):
    cfg = compose_synthesis(tmp_path)
    run = tmp_path / "run"
    assert run_synthesis(cfg, run) == 1.0
    rows = read_jsonl(run / "accepted.jsonl")
    assert len(rows) == 6 and not read_jsonl(run / "rejected.jsonl")  # the 7th sample has no label at all
    info = rows[0]["meta_info"]["synthesis"]
    assert info["attempt"] == 2 and info["round"] == 1 and info["prompt_version"] == "compact_v1"
    assert (
        info["source_model"] == str(tmp_path / "model")
        and info["checks"]["passed"]
        and info["split"] == "train"
    )
    assert rows[0]["description"] == right_answer(rows[0])
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["counts"]["accepted_per_attempt"] == {"2": 6}
    assert manifest["samples"]["labelled"] == 6 and manifest["throughput"]["samples_per_s"] > 0
    assert (run / "review.html").is_file()
    assert run_synthesis(cfg, run) == 1.0  # a second session finds nothing to do
    assert len(read_jsonl(run / "accepted.jsonl")) == 6
    assert len(json.loads((run / "manifest.json").read_text())["sessions"]) == 2
    with pytest.raises(ValueError, match="checks"):
        run_synthesis(compose_synthesis(tmp_path, "checks.au_mode=f1"), run)


def test_run_records_rejects_with_reasons(tmp_path, monkeypatch):
    monkeypatch.setattr(FakeAdapter, "behaviour", "never")
    run = tmp_path / "run"
    assert run_synthesis(compose_synthesis(tmp_path, "max_retries=1", "limit=3", "round=4"), run) == 0.0
    rows = read_jsonl(run / "rejected.jsonl")
    assert [sample_key(r) for r in rows] == ["toy/train000", "toy/train001", "toy/train002"]
    info = rows[0]["meta_info"]["synthesis"]
    assert info["attempt"] == 2 and info["output"] == WRONG and info["problems"] and info["round"] == 4
    assert rows[0]["description"] is None
    counts = json.loads((run / "manifest.json").read_text())["counts"]
    assert counts["rejected_by_check"] == {"au": 3, "emotion": 3, "format": 3, "consistency": 3}
    assert counts["rejected_only_by"] == {"au": 0, "emotion": 0, "format": 0, "consistency": 0}
    # Resuming without naming the round keeps the run's round (4), so the settings still match.
    assert run_synthesis(compose_synthesis(tmp_path, "max_retries=1", "limit=4"), run) == 0.0
    assert len(read_jsonl(run / "rejected.jsonl")) == 4
    assert {r["meta_info"]["synthesis"]["round"] for r in read_jsonl(run / "rejected.jsonl")} == {4}


def test_offset_and_limit_pick_a_window_of_the_split(tmp_path, monkeypatch):
    monkeypatch.setattr(FakeAdapter, "behaviour", "never")
    run = tmp_path / "run"
    run_synthesis(compose_synthesis(tmp_path, "max_retries=0", "offset=2", "limit=3"), run)
    assert [sample_key(r) for r in read_jsonl(run / "rejected.jsonl")] == [
        f"toy/train00{i}" for i in (2, 3, 4)
    ]
    with pytest.raises(ValueError, match="offset=-1: must be >= 0"):
        run_synthesis(compose_synthesis(tmp_path, "offset=-1"), tmp_path / "run2")


def test_an_unreadable_image_rejects_its_sample_and_the_run_goes_on(tmp_path, monkeypatch):
    cfg = compose_synthesis(tmp_path, "limit=4")
    (tmp_path / "data" / "img" / "train1.png").write_bytes(b"not an image")
    run = tmp_path / "run"
    with pytest.raises(DataError, match=r"train.jsonl:2: cannot decode image"):  # found when the split loads
        run_synthesis(cfg, run)
    # An image that breaks after loading (here: the load-time check switched off) is rejected by the engine.
    monkeypatch.setattr(FacialR1JsonlSource, "image_check", "none")
    assert run_synthesis(cfg, run) == 0.75
    (row,) = read_jsonl(run / "rejected.jsonl")
    assert row["id"] == "train001" and "cannot decode" in row["meta_info"]["synthesis"]["error"]
    counts = json.loads((run / "manifest.json").read_text())["counts"]
    assert counts["rejected_failed_checks"] == {"unreadable_input": 1} and counts["accepted"] == 3


def test_configs_compose_for_synthesis_and_next_rounds(tmp_path):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("synthesize", overrides=["dataset=synth", f"dataset.runs=[{tmp_path}]"])
        assert cfg.run_name == "synth" and cfg.max_retries == 5 and list(cfg.checks.negation_words)[0] == "no"
        source = instantiate(cfg.dataset)
        assert (
            isinstance(source, SynthRoundsSource) and type(source.eval_source).__name__ == "SynthFacesSource"
        )
        assert instantiate(cfg.checks).enforce == ["au", "emotion", "format", "consistency"]
        # Older overrides still compose: the published gating and the project's pre-consistency default.
        for enforce in ("[au,emotion]", "[au,emotion,format]"):
            old = compose("synthesize", overrides=[f"checks.enforce={enforce}"])
            assert instantiate(old.checks).enforce == enforce.strip("[]").split(",")
        train = compose("train", overrides=["dataset=synth", f"dataset.runs=[{tmp_path}]"])
        assert train.dataset._target_.endswith("SynthRoundsSource")


# ---- a real run killed with SIGKILL ------------------------------------------------------------------------------
def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


@pytest.mark.slow
def test_sigkill_then_rerun_loses_and_duplicates_nothing(tmp_path):
    from facial_r1.models.qwen2_5_vl import Qwen25VLAdapter

    model_folder = Qwen25VLAdapter(tiny={}, cache_dir=str(tmp_path / "cache")).folder
    data = write_toy_dataset(tmp_path / "data", N_KILLED)
    conf = tmp_path / "conf" / "dataset"
    conf.mkdir(parents=True)
    (conf / "toy.yaml").write_text(
        f"_target_: facial_r1.data.sources.FacialR1JsonlSource\nroot: {data}\nfiles: {{train: train.jsonl}}\n"
        "name: toy\nval_fraction: 0\n"
    )
    run = tmp_path / "run"
    command = [
        sys.executable, "synthesize.py", "--config-dir", str(tmp_path / "conf"), "dataset=toy",
        f"model.path={model_folder}", f"paths.output_root={tmp_path / 'out'}", f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={run}", "batch_size=2", "max_retries=0", "checks.enforce=[]",
        "generation.max_new_tokens=32", "progress=false",
    ]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}

    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 180
        while lines(run / "accepted.jsonl") < 4 and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, (
            "the run ended before it could be killed:\n" + (tmp_path / "first.log").read_text()
        )
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL
    done_before = lines(run / "accepted.jsonl")
    assert 4 <= done_before < N_KILLED
    with open(run / "accepted.jsonl", "a") as handle:  # what a kill in the middle of a write leaves behind
        handle.write('{"id": "train0')

    second = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"{done_before} already finished" in second.stdout + second.stderr

    ids = [row["id"] for row in read_jsonl(run / "accepted.jsonl")]
    assert not [i for i, n in Counter(ids).items() if n > 1], "duplicated samples"
    assert set(ids) == {f"train{i:03d}" for i in range(N_KILLED)}, "lost samples"
    assert (run / "accepted.jsonl").read_bytes().endswith(b"\n") and not read_jsonl(run / "rejected.jsonl")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["counts"]["accepted"] == N_KILLED
    assert [s["resumed"] for s in manifest["sessions"]] == [False, True]
    assert manifest["source_model"]["folder"] == str(model_folder)

    # The outputs feed review and the next round.
    page = write_review_html(run).read_text()
    assert all(f'data-id="train{i:03d}"' in page for i in range(N_KILLED))
    (tmp_path / "review.jsonl").write_text(
        json.dumps({"id": "train000", "decision": "reject", "note": "x"}) + "\n"
    )
    assert apply_review(run, tmp_path / "review.jsonl", tmp_path / "final.jsonl")["total"] == N_KILLED - 1
    assert len(SynthRoundsSource(runs=[str(run)]).records("train")) == N_KILLED
    assert len(SynthRoundsSource(files=[str(tmp_path / "final.jsonl")]).records("train")) == N_KILLED - 1
