"""Bootstrap intervals: the counts reproduce compute_metrics exactly, intervals behave, subjects resample as units."""

from __future__ import annotations

import random

import numpy as np
import pytest

from facial_r1.evaluation.metrics import compute_metrics
from facial_r1.evaluation.uncertainty import (
    INTERVAL_KEYS,
    bootstrap_intervals,
    counts_from_rows,
    point_estimates,
    with_intervals,
)
from facial_r1.facs import BASIC7

EMOTIONS = ["happiness", "sadness", "anger", "fear"]


def corpus(n: int = 120, seed: int = 0):
    """Mixed samples: AU-only (some with BP4D code-9 AUs), emotion-only, both, with and without references."""
    rng = random.Random(seed)
    samples, outputs = [], []
    for i in range(n):
        aus = sorted(
            rng.sample(["AU1", "AU2", "AU4", "AU6", "AU12"], rng.randint(0, 3)), key=lambda a: int(a[2:])
        )
        pred = sorted(set(aus[1:] + rng.sample(["AU1", "AU4", "AU12", "AU25"], rng.randint(0, 2))))
        label = rng.choice(EMOTIONS)
        answer = label if rng.random() < 0.6 else rng.choice([*EMOTIONS, "bored"])
        kind = i % 3
        samples.append(
            {
                "id": str(i),
                "dataset": "t",
                "AUs": aus if kind != 1 else None,
                "labels": [label] if kind != 0 else [],
                "label_set": list(BASIC7),
                "description": f"<think>the face {label}</think><answer>{label}</answer>" if i % 2 else None,
                "meta_info": {"unknown_aus": ["AU2"]} if i % 5 == 0 else {},
            }
        )
        concluded = answer if rng.random() < 0.8 else "fear"
        outputs.append(f"<think>{' '.join(pred)} show {concluded}</think><answer>{answer}</answer>")
    return samples, outputs


def test_counts_reproduce_compute_metrics() -> None:
    samples, outputs = corpus()
    metrics, rows = compute_metrics(samples, outputs, au_subset=["AU1", "AU2", "AU4", "AU6", "AU12"])
    estimates = point_estimates(counts_from_rows(rows, metrics["au_labels"], metrics["emotion_classes"]))
    for key in INTERVAL_KEYS:
        assert metrics[key] is not None
        assert estimates[key] == pytest.approx(metrics[key], abs=2e-6), key


def test_intervals_surround_the_estimate_and_repeat_with_the_seed() -> None:
    samples, outputs = corpus()
    metrics, rows = compute_metrics(samples, outputs)
    a = with_intervals(metrics, rows, resamples=300, seed=1)
    b = with_intervals(metrics, rows, resamples=300, seed=1)
    assert a["ci95"] == b["ci95"] and a["bootstrap"] == {
        "resamples": 300,
        "level": 0.95,
        "unit": "sample",
        "seed": 1,
    }
    for key in INTERVAL_KEYS:
        low, high = a["ci95"][key]
        assert low <= metrics[key] + 1e-6 and metrics[key] - 1e-6 <= high, key
        assert low < high or metrics[key] in (0.0, 1.0), key  # every output is well formed: format 1.0 always
    assert with_intervals(metrics, rows, resamples=300, seed=2)["ci95"] != a["ci95"]
    assert with_intervals(metrics, rows, resamples=0)["ci95"] == dict.fromkeys(INTERVAL_KEYS)


def test_width_shrinks_with_more_samples() -> None:
    small = with_intervals(*compute_metrics(*corpus(60)), resamples=400)["ci95"]["emotion_acc"]
    large = with_intervals(*compute_metrics(*corpus(960)), resamples=400)["ci95"]["emotion_acc"]
    assert large[1] - large[0] < (small[1] - small[0]) / 2


def test_subject_resampling_keeps_a_subject_together() -> None:
    """Two subjects, one always right and one always wrong: resampling subjects gives 0, 0.5 or 1 only."""
    samples = [
        {"id": str(i), "AUs": None, "labels": ["happiness"], "label_set": list(BASIC7)} for i in range(40)
    ]
    outputs = ["<answer>happiness</answer>" if i < 20 else "<answer>sadness</answer>" for i in range(40)]
    metrics, rows = compute_metrics(samples, outputs)
    subjects = ["A"] * 20 + ["B"] * 20
    ci = with_intervals(metrics, rows, resamples=500, groups=subjects, unit="subject")
    assert ci["ci95"]["emotion_acc"] == [0.0, 1.0] and ci["bootstrap"]["units"] == 2
    by_sample = with_intervals(metrics, rows, resamples=500)["ci95"]["emotion_acc"]
    assert (
        0.3 < by_sample[0] < 0.5 < by_sample[1] < 0.7
    )  # samples treated as independent: far too narrow here


def test_fold_mean_interval_and_undefined_metrics() -> None:
    samples, outputs = corpus(90)
    m, rows = compute_metrics(samples, outputs)
    counts = counts_from_rows(rows, m["au_labels"], m["emotion_classes"])
    one = bootstrap_intervals([counts], resamples=200, seed=0)
    two = bootstrap_intervals([counts, counts], resamples=200, seed=0)
    assert two["emotion_acc"][1] - two["emotion_acc"][0] < one["emotion_acc"][1] - one["emotion_acc"][0]
    no_labels = [{"id": "1", "AUs": ["AU1"], "labels": []}]
    m, rows = compute_metrics(no_labels, ["<think>AU1</think><answer>x</answer>"])
    intervals = with_intervals(m, rows, resamples=50)["ci95"]
    assert intervals["emotion_acc"] is None and intervals["au_f1_micro"] == [1.0, 1.0]
    assert np.isfinite(intervals["format_rate"]).all()
