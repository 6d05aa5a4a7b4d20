"""Datasets in the layouts they are published in: fixtures written in each published layout, loaded with defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_datasets import (
    FER_FOLDERS,
    make_affectnet,
    make_affectnet_npy,
    make_faba_published,
    make_fer_folders,
    make_icml_csv,
)

from facial_r1.data.schema import DataError
from facial_r1.data.sources import AffectNetSource, FabaInstructSource, Fer2013Source, ImageFolderSource
from facial_r1.facs import BASIC7


def test_faba_published_paths_and_eval_files_as_emola_reads_them(tmp_path: Path) -> None:
    root = make_faba_published(tmp_path)
    source = FabaInstructSource(root)  # defaults: no images_dir needed
    test = {r["id"]: r for r in source.records("test")}
    assert test["au/a0"]["AUs"] == ["AU1", "AU2", "AU4"] and test["au/a0"]["labels"] == []
    assert test["au/a0"]["image"] == str(tmp_path / "FABAInstruct" / "images" / "au_0.jpg")
    # label 3 (EmoLA id: anger), "0" (happiness), "Sadness" (a name)
    assert [test[f"emotion/e{i}"]["labels"] for i in range(3)] == [["anger"], ["happiness"], ["sadness"]]
    assert test["emotion/e0"]["description"] == "The face shows anger."  # the GPT-4 reference: ROUGE-L / REGE
    assert test["emotion/e0"]["meta_info"]["reference"] == "The face shows anger."
    train = source.records("train") + source.records("val")
    assert len(train) == 5 and all(r["description"] is None for r in train)


def test_faba_bad_eval_labels(tmp_path: Path) -> None:
    import json

    root = make_faba_published(tmp_path)
    path = root / "eval" / "eval_emotion_anno.json"
    items = json.loads(path.read_text())
    items[0]["label"], items[1]["label"] = 7, True
    path.write_text(json.dumps(items, indent=2))
    source = FabaInstructSource(root, on_error="skip", tasks=["emotion"])
    assert [r["id"] for r in source.records("test")] == ["emotion/e2"]
    assert source.report.skipped == {"unknown_label": 2}
    with pytest.raises(DataError, match=r"eval_emotion_anno.json:2: label 7 not in 0..6"):
        FabaInstructSource(root, tasks=["emotion"]).load("test")


@pytest.mark.parametrize("as_text", [True, False])
def test_affectnet_per_image_npy_layout(tmp_path: Path, as_text: bool) -> None:
    root = make_affectnet_npy(tmp_path, as_text=as_text)
    source = AffectNetSource(root, val_fraction=0.0)  # layout=auto finds train_set/annotations
    assert source.layout == "npy"
    test = source.records("test")
    assert [r["labels"] for r in test] == [["neutral"], ["happiness"], ["contempt"]]
    assert source.report.skipped == {"not_an_expression": 1}
    assert test[0]["id"] == "val_set/0" and test[0]["meta_info"]["valence"] == 0.25
    assert test[0]["meta_info"]["arousal"] == -0.5 and test[0]["image"].endswith("val_set/images/0.jpg")
    seven = AffectNetSource(root, classes=7, val_fraction=0.0)
    assert len(seven.records("test")) == 2 and seven.report.skipped == {
        "not_an_expression": 1,
        "excluded_class": 1,
    }
    assert len(AffectNetSource(root, val_fraction=0.0).records("train")) == 10


def test_affectnet_csv_and_npy_side_by_side(tmp_path: Path) -> None:
    make_affectnet(tmp_path)
    assert AffectNetSource(tmp_path).layout == "csv"
    make_affectnet_npy(tmp_path)
    assert (
        AffectNetSource(tmp_path).layout == "npy" and AffectNetSource(tmp_path, layout="csv").layout == "csv"
    )
    bad = tmp_path / "val_set" / "annotations" / "1_exp.npy"
    bad.write_bytes(b"not numpy")
    with pytest.raises(DataError, match="1_exp.npy"):
        AffectNetSource(tmp_path).load("test")


def test_fer2013_class_folders_without_val_carve_a_seeded_val(tmp_path: Path, caplog) -> None:
    root = make_fer_folders(tmp_path, per_class=10)
    make = lambda seed=0: ImageFolderSource(root, class_folders=True, label_set=BASIC7, seed=seed)  # noqa: E731
    source = make()
    with caplog.at_level("INFO"):
        train, val, test = (source.records(s) for s in ("train", "val", "test"))
    assert "no val/ folder" in caplog.text
    assert len(val) == 7 and len(train) == 63 and len(test) == 70
    assert {r["id"] for r in train}.isdisjoint(r["id"] for r in val)
    assert [r["id"] for r in make().records("val")] == [r["id"] for r in val]  # seeded
    assert [r["id"] for r in make(seed=1).records("val")] != [r["id"] for r in val]
    assert {r["labels"][0] for r in test} == {
        "anger",
        "disgust",
        "fear",
        "happiness",
        "neutral",
        "sadness",
        "surprise",
    }
    assert len(FER_FOLDERS) == 7


def test_icml_face_data_csv(tmp_path: Path) -> None:
    root = make_icml_csv(tmp_path)
    source = Fer2013Source(root, cache_dir=tmp_path / "cache")
    assert source.csv_path.name == "icml_face_data.csv"
    assert (
        len(source.records("train")) == 4
        and len(source.records("val")) == 2
        and len(source.records("test")) == 2
    )
    assert source.records("test")[0]["meta_info"]["usage"] == "PrivateTest"
