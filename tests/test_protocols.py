"""Evaluation protocols: config composition, the published scoring by hand, folds end to end on a DISFA fixture."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from fixtures_datasets import make_disfa
from hydra import compose, initialize_config_dir

from facial_r1.evaluation.protocols import (
    Protocol,
    mean_over_folds,
    official_aus,
    official_label,
    official_metrics,
)
from facial_r1.facs import BASIC7

PROTOCOLS = sorted(p.stem for p in (REPO / "conf" / "protocol").glob("*.yaml"))
DISFA_FOLDS = [
    ["SN002", "SN010", "SN001", "SN026", "SN027", "SN032", "SN030", "SN009", "SN016"],
    ["SN013", "SN018", "SN011", "SN028", "SN012", "SN006", "SN031", "SN021", "SN024"],
    ["SN003", "SN029", "SN023", "SN025", "SN008", "SN005", "SN007", "SN017", "SN004"],
]


def evaluate_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("evaluate", overrides=list(overrides))


def test_every_protocol_composes_and_builds() -> None:
    from hydra.utils import instantiate

    assert {"default", "official", "disfa_3fold", "bp4d_3fold", "rafdb", "affectnet7", "affectnet8", "fer2013",
            "faba", "fea20k"} <= set(PROTOCOLS)  # fmt: skip
    for name in PROTOCOLS:
        cfg = evaluate_cfg(f"protocol={name}")
        protocol = instantiate(cfg.protocol)
        assert protocol.name == name and cfg.split == "test"


@pytest.mark.parametrize(
    ("name", "target", "au_subset", "expected"),
    [
        ("disfa_3fold", "DisfaSource", "disfa8", None),
        ("bp4d_3fold", "Bp4dSource", "bp4d12", None),
        ("rafdb", "RafDbSource", None, 3068),
        ("affectnet7", "AffectNetSource", None, 3500),
        ("affectnet8", "AffectNetSource", None, 4000),
        ("fer2013", "Fer2013Source", None, 3589),
        ("faba", "FabaInstructSource", "faba12", None),
        ("fea20k", "FacialR1JsonlSource", None, 1688),
    ],
)
def test_protocol_selects_its_dataset(name, target, au_subset, expected) -> None:
    cfg = evaluate_cfg(f"protocol={name}")
    assert cfg.dataset._target_.endswith(target) and cfg.au_subset == au_subset
    assert cfg.protocol.expected_samples == expected


def test_published_fold_lists() -> None:
    disfa, bp4d = evaluate_cfg("protocol=disfa_3fold"), evaluate_cfg("protocol=bp4d_3fold")
    assert [list(f) for f in disfa.dataset.folds] == DISFA_FOLDS and disfa.dataset.threshold == 2
    assert disfa.protocol.folds == 3 and disfa.protocol.unit == "subject"
    subjects = [s for fold in bp4d.dataset.folds for s in fold]
    assert len(subjects) == len(set(subjects)) == 41 and [len(f) for f in bp4d.dataset.folds] == [14, 14, 13]
    assert len({s for f in DISFA_FOLDS for s in f}) == 27
    assert evaluate_cfg("protocol=affectnet7").dataset.classes == 7
    assert (
        evaluate_cfg("protocol=disfa_3fold", "au_subset=disfa12").au_subset == "disfa12"
    )  # command line wins


def test_model_paths_per_fold(caplog) -> None:
    protocol = Protocol(name="p", folds=3)
    assert protocol.model_paths(["a", "b", "c"]) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="2 exports for 3 folds"):
        protocol.model_paths(["a", "b"])
    assert protocol.model_paths("m") == ["m", "m", "m"] and "one model (m) on all 3 folds" in caplog.text
    assert Protocol().model_paths("m") == ["m"] and Protocol().fold_ids() == [None]
    with pytest.raises(ValueError, match="scoring"):
        Protocol(scoring="paper")
    assert Protocol(name="r", expected_samples=3068).check_count(3000, limited=False) is not None
    assert Protocol(name="r", expected_samples=3068).check_count(3000, limited=True) is None


def test_official_parsing_by_hand() -> None:
    assert official_aus("<think>AU12 and AU06, au4, TAU1</think>AU9") == ["AU1", "AU06", "AU12"]
    assert official_aus("no tags AU2 AU1") == ["AU1", "AU2"]  # whole-output fallback
    assert official_aus("<THINK>AU2</THINK>") == ["AU2"]  # case-sensitive tags: no think block, whole output
    assert official_label("<think>x</think><answer> happiness, sadness</answer>") == "happiness"
    assert (
        official_label("<answer>Happiness</answer>") == "Happiness"
        and official_label("<answer> </answer>") is None
    )


def rec(i, aus=None, labels=()):
    return {"id": str(i), "AUs": aus, "labels": list(labels), "label_set": list(BASIC7), "description": None}


def test_official_metrics_by_hand_and_side_by_side() -> None:
    samples = [rec(1, ["AU1", "AU6"], ["happiness"]), rec(2, ["AU1"], ["sadness"]), rec(3, [], ["sadness"])]
    outputs = [
        "<think>AU1 and AU06</think><answer>happiness</answer>",  # AU06 is not AU6 for the published script
        "<think>cheek raiser</think><answer>Sadness</answer>",  # names are not read; "Sadness" != "sadness"
        "AU1 <answer>sadness</answer>",  # no think block: AUs from the whole output
    ]
    m, rows = official_metrics(samples, outputs)
    # AU1: tp 1, fn 1, fp 1 -> 0.5; AU6: fn 1 -> 0; macro 0.25; micro tp 1, fp 1, fn 2 -> 0.4
    assert m["au_labels"] == ["AU1", "AU6"] and m["au_f1_per_au"] == {"AU1": 0.5, "AU6": 0.0}
    assert m["au_f1_macro"] == pytest.approx(0.25) and m["au_f1_micro"] == pytest.approx(0.4)
    assert m["emotion_acc"] == pytest.approx(2 / 3)
    # the project's parser reads AU06 as AU6, the FACS name, and "Sadness": other numbers, kept apart
    assert m["project"]["emotion_acc"] == 1.0 and m["project"]["au_f1_micro"] != m["au_f1_micro"]
    assert rows[0]["pred_aus"] == ["AU1", "AU06"]
    scored, _ = Protocol(name="official", scoring="official").score(samples, outputs)
    assert scored["protocol"] == "official" and scored["scoring"] == "official"


def test_mean_over_folds() -> None:
    folds = [{"emotion_acc": None, "au_f1_macro": 0.5}, {"emotion_acc": None, "au_f1_macro": 0.7}]
    means = mean_over_folds(folds)
    assert means["au_f1_macro"] == pytest.approx(0.6) and means["emotion_acc"] is None


@pytest.mark.slow
def test_evaluate_disfa_3fold_per_fold_and_mean(tmp_path: Path, tiny_model_dir: Path, subprocess_env) -> None:
    """protocol=disfa_3fold on a fixture with DISFA's 27 subjects: three folds, subject-exclusive, and their mean."""
    root = make_disfa(tmp_path / "disfa", [s for fold in DISFA_FOLDS for s in fold], frames=2)
    out = tmp_path / "out"
    args = [
        "protocol=disfa_3fold",
        f"dataset.root={root}",
        f"model.path={tiny_model_dir}",
        "logger=none",
        "max_new_tokens=8",
        "bootstrap.resamples=50",
    ]
    proc = subprocess.run(
        [sys.executable, "evaluate.py", *args], cwd=REPO, env=subprocess_env(out), capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "one model" in log and "on all 3 folds" in log  # the warning
    (run,) = list((out / "evaluate").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["protocol"] == "disfa_3fold" and metrics["bootstrap"]["unit"] == "subject"
    assert [f["fold"] for f in metrics["per_fold"]] == [0, 1, 2] and metrics["num_samples"] == 54
    for key in ("format_rate", "au_f1_micro"):
        values = [f[key] for f in metrics["per_fold"]]
        if None not in values:
            assert metrics[key] == pytest.approx(sum(values) / 3, abs=1e-6)
    assert set(metrics["ci95"]) >= {"au_f1_macro", "format_rate"}
    for k, subjects in enumerate(DISFA_FOLDS):
        fold_metrics = json.loads((run / f"fold_{k}" / "metrics.json").read_text())
        assert fold_metrics["au_labels"] == ["AU1", "AU2", "AU4", "AU6", "AU9", "AU12", "AU25", "AU26"]
        rows = [
            json.loads(line) for line in (run / f"fold_{k}" / "predictions.jsonl").read_text().splitlines()
        ]
        assert {r["subject"] for r in rows} == set(subjects)  # the fold tests exactly its published subjects
