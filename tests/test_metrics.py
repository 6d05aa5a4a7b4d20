"""Evaluation metrics against hand-computed numbers, the report files, plots and W&B logging."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facial_r1.evaluation import (
    compute_metrics,
    plot_confusion_matrix,
    plot_per_au_f1,
    resolve_au_subset,
    scalar_metrics,
    write_evaluation,
)
from facial_r1.facs import BASIC7
from facial_r1.rewards import AUF1Reward, CompositeReward, EmotionAccuracyReward


def rec(i, aus=None, labels=(), description=None, label_set=BASIC7):
    return {
        "id": str(i),
        "dataset": "t",
        "AUs": None if aus is None else list(aus),
        "labels": list(labels),
        "label_set": list(label_set),
        "description": description,
    }


def out(think: str, answer: str = "x") -> str:
    return f"<think>{think}</think><answer>{answer}</answer>"


AU_SAMPLES = [rec(1, ["AU1", "AU2"]), rec(2, ["AU1"]), rec(3, []), rec(4, None)]
AU_OUTPUTS = [out("AU1"), out("AU1 and AU4"), out("AU2"), out("AU1")]


def test_au_metrics_by_hand() -> None:
    m, rows = compute_metrics(AU_SAMPLES, AU_OUTPUTS)
    assert m["num_au_samples"] == 3 and m["au_labels"] == ["AU1", "AU2"]
    # AU1: tp 2 -> F1 1; AU2: tp 0, fp 1, fn 1 -> F1 0.
    assert m["au_f1_per_au"] == {"AU1": 1.0, "AU2": 0.0}
    assert m["au_f1_macro"] == pytest.approx(0.5)
    assert m["au_f1_micro"] == pytest.approx(2 / 3, abs=1e-6)  # tp 2, fp 1, fn 1 (AU4 is outside the list)
    assert m["au_support"] == {"AU1": 2, "AU2": 1}
    assert m["au_hallucination_rate"] == pytest.approx(0.5)  # AU4 and AU2 of 4 predicted
    assert [r["pred_aus"] for r in rows] == [["AU1"], ["AU1", "AU4"], ["AU2"], ["AU1"]]
    assert rows[3]["gold_aus"] is None


def test_au_subset_explicit_and_named() -> None:
    m, _ = compute_metrics(AU_SAMPLES, AU_OUTPUTS, au_subset=["AU1", 4])
    assert m["au_f1_per_au"] == {"AU1": 1.0, "AU4": None}  # AU4 has no gold positive: undefined
    assert m["au_f1_macro"] == 1.0
    assert m["au_f1_micro"] == pytest.approx(0.8)  # tp 2, fp 1 (AU4), fn 0
    m, _ = compute_metrics(AU_SAMPLES, AU_OUTPUTS, au_subset="disfa8")
    assert m["au_labels"] == ["AU1", "AU2", "AU4", "AU6", "AU9", "AU12", "AU25", "AU26"]
    assert m["au_f1_macro"] == pytest.approx(0.5)
    assert resolve_au_subset("bp4d12", [])[-1] == "AU24"
    with pytest.raises(ValueError):
        resolve_au_subset("nope", [])
    with pytest.raises(ValueError):
        resolve_au_subset(["AU3"], [])


EMO_SAMPLES = [
    rec(1, labels=["happiness"]),
    rec(2, labels=["happiness"]),
    rec(3, labels=["sadness"]),
    rec(4, labels=["sadness"]),
    rec(5, labels=["fear"]),
    rec(6, labels=[]),
]
EMO_OUTPUTS = [
    out("AU6 AU12: happiness", "happiness"),
    out("this is sadness", "Sad"),
    out("sadness", "sadness"),
    out("happiness", "sadness"),
    out("fear", "fear or anger"),
    out("x", "happiness"),
]


def test_emotion_metrics_by_hand() -> None:
    m, rows = compute_metrics(EMO_SAMPLES, EMO_OUTPUTS)
    assert m["num_emotion_samples"] == 5
    assert m["emotion_acc"] == pytest.approx(3 / 5)
    assert m["emotion_acc_per_class"]["happiness"] == pytest.approx(0.5)
    assert m["emotion_acc_per_class"]["sadness"] == 1.0
    assert m["emotion_acc_per_class"]["fear"] == 0.0
    assert m["emotion_acc_per_class"]["anger"] is None  # no support
    assert m["emotion_uar"] == pytest.approx(0.5)  # (0.5 + 1 + 0) / 3
    assert m["emotion_invalid_rate"] == pytest.approx(0.2)
    assert m["emotion_classes"] == list(BASIC7)
    assert m["consistency_rate"] == pytest.approx(3 / 6)  # rows 1, 2, 3 agree; 4 contradicts; 5, 6 no
    assert [r["pred_label"] for r in rows] == [
        "happiness",
        "sadness",
        "sadness",
        "sadness",
        None,
        "happiness",
    ]
    assert m["au_f1_macro"] is None and m["num_au_samples"] == 0


def test_unlearned_format_gives_zeros_not_a_crash() -> None:
    samples = AU_SAMPLES[:3] + EMO_SAMPLES[:2]
    m, rows = compute_metrics(samples, ["", "blah", "<think>", "\x00" * 10, "AU1 happiness"])
    assert m["au_f1_macro"] == 0.0 and m["au_f1_micro"] == 0.0
    assert m["emotion_acc"] == 0.0 and m["emotion_uar"] == 0.0
    assert m["format_rate"] == 0.0 and m["consistency_rate"] == 0.0
    assert m["au_hallucination_rate"] is None  # nothing predicted
    assert all(not r["format_ok"] for r in rows)


def test_empty_input() -> None:
    m, rows = compute_metrics([], [])
    assert rows == [] and m["num_samples"] == 0
    assert m["au_f1_macro"] is None and m["emotion_acc"] is None and m["format_rate"] is None
    assert m["rouge_l"] is None and m["rege"] is None
    with pytest.raises(ValueError):
        compute_metrics([rec(1)], [])


def test_rouge_l_and_rege_by_hand() -> None:
    samples = [
        rec(1, labels=["happiness"], description="the cat is on the mat"),
        rec(2, labels=["happiness"], description="a c"),
        rec(3, labels=["happiness"]),
    ]
    outputs = ["the cat sat on the mat", "a b c d", out("x", "happiness")]
    m, _ = compute_metrics(samples, outputs)
    # LCS 5 of 6/6 tokens -> 5/6; LCS 2 of 4 (P 1/2) and 2 (R 1) -> 2/3; mean 3/4.
    assert m["num_rouge_samples"] == 2
    assert m["rouge_l"] == pytest.approx(0.75, abs=1e-5)
    assert m["rege"] == pytest.approx(100 * (1 / 3) + 75, abs=1e-3)  # emotion accuracy 1/3 + ROUGE-L


def test_rege_uses_au_f1_without_emotion_labels() -> None:
    m, _ = compute_metrics([rec(1, ["AU1"], description="AU1")], [out("AU1")])
    assert m["rege"] == pytest.approx(100 * 1.0 + 100 * m["rouge_l"])


def test_rows_carry_rewards() -> None:
    reward = CompositeReward({"au_f1": AUF1Reward(), "emotion_accuracy": EmotionAccuracyReward()})
    samples = [rec(1, ["AU12"], ["happiness"]), rec(2, None, [])]
    m, rows = compute_metrics(samples, [out("AU12 happiness", "happiness"), out("x")], reward=reward)
    assert rows[0]["rewards"] == {"au_f1": 1.0, "emotion_accuracy": 1.0, "total": 2.0}
    assert rows[1]["rewards"] == {"au_f1": None, "emotion_accuracy": None, "total": 0.0}
    assert m["rewards"] == {"au_f1": 1.0, "emotion_accuracy": 1.0, "total": 1.0}
    assert set(rows[0]) >= {"id", "gold_aus", "gold_labels", "pred_aus", "pred_label", "concluded_emotion",
                            "format_ok", "rewards", "output"}  # fmt: skip


def test_write_evaluation(tmp_path: Path) -> None:
    m, rows = compute_metrics(AU_SAMPLES + EMO_SAMPLES, AU_OUTPUTS + EMO_OUTPUTS)
    paths = write_evaluation(tmp_path / "eval", m, rows, BASIC7)
    assert set(paths) == {"metrics", "predictions", "confusion_matrix", "per_au_f1"}
    assert json.loads(paths["metrics"].read_text()) == json.loads(json.dumps(m))
    lines = paths["predictions"].read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [r["id"] for r in rows]
    for key in ("confusion_matrix", "per_au_f1"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_without_data(tmp_path: Path) -> None:
    m, rows = compute_metrics([], [])
    assert plot_confusion_matrix(rows, [], tmp_path / "cm.png").stat().st_size > 0
    assert plot_per_au_f1(m, tmp_path / "au.png").stat().st_size > 0


def test_scalar_metrics_flattens() -> None:
    m, _ = compute_metrics(AU_SAMPLES, AU_OUTPUTS)
    flat = scalar_metrics(m, "val")
    assert flat["val/au_f1_macro"] == pytest.approx(0.5)
    assert flat["val/au_f1_per_au/AU1"] == 1.0
    assert "val/emotion_acc" not in flat  # None is left out
    assert "val/au_labels" not in flat


def test_macro_matches_torchmetrics_when_every_au_has_support() -> None:
    import torch
    from torchmetrics.classification import MulticlassAccuracy, MultilabelF1Score

    m, _ = compute_metrics(AU_SAMPLES, AU_OUTPUTS)
    target = torch.tensor([[1, 1], [1, 0], [0, 0]])
    pred = torch.tensor([[1, 0], [1, 0], [0, 1]])
    assert m["au_f1_macro"] == pytest.approx(
        MultilabelF1Score(num_labels=2, average="macro")(pred, target).item()
    )
    assert m["au_f1_micro"] == pytest.approx(
        MultilabelF1Score(num_labels=2, average="micro")(pred, target).item()
    )
    e, _ = compute_metrics(EMO_SAMPLES, EMO_OUTPUTS)
    gold, predicted = (
        torch.tensor([3, 3, 5, 5, 2]),
        torch.tensor([3, 5, 5, 5, 7]),
    )  # BASIC7 indices, 7 = invalid
    acc = MulticlassAccuracy(num_classes=8, average="micro")(predicted, gold).item()
    assert e["emotion_acc"] == pytest.approx(acc)


def test_unknown_aus_are_masked_not_absent() -> None:
    """BP4D code 9 and AUs outside a sample's au_vocab leave every count; other samples are scored as usual."""
    coded9 = {**rec(1, ["AU1"]), "meta_info": {"unknown_aus": ["AU2"]}}
    narrow = {**rec(2, ["AU1"]), "au_vocab": ["AU1", "AU4"]}  # this dataset does not code AU2
    plain = rec(3, ["AU2"])
    outputs = [out("AU1 AU2"), out("AU1 AU2"), out("AU2")]
    m, rows = compute_metrics([coded9, narrow, plain], outputs, au_subset=["AU1", "AU2"])
    # AU1: tp 2; AU2: only sample 3 records it, tp 1 -> both F1 1 (unmasked, samples 1-2 would add 2 false positives)
    assert m["au_f1_per_au"] == {"AU1": 1.0, "AU2": 1.0}
    assert m["au_f1_micro"] == 1.0 and m["au_hallucination_rate"] == 0.0
    assert [r["masked_aus"] for r in rows] == [["AU2"], ["AU2"], []]
    unmasked = [{**s, "meta_info": {}, "au_vocab": []} for s in (coded9, narrow, plain)]
    m2, _ = compute_metrics(unmasked, outputs, au_subset=["AU1", "AU2"])
    assert m2["au_f1_per_au"]["AU2"] == pytest.approx(0.5)  # tp 1, fp 2


def test_emotion_only_and_au_only_samples_stay_out_of_the_other_metrics() -> None:
    samples = [rec(1, ["AU1"]), rec(2, None, ["happiness"])]
    outputs = [out("AU1", "sadness"), out("AU4", "happiness")]
    m, _ = compute_metrics(samples, outputs)
    assert m["num_au_samples"] == 1 and m["au_f1_micro"] == 1.0  # the emotion-only sample's AU4 is not an FP
    assert (
        m["num_emotion_samples"] == 1 and m["emotion_acc"] == 1.0
    )  # the AU-only sample's answer is not scored
