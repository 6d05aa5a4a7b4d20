"""Dataset sources on tiny fixtures in each dataset's exact on-disk format: records, label orders, splits, configs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import datasets
import pytest
from fixtures_datasets import (
    jsonl_row,
    make_affectnet,
    make_bp4d,
    make_disfa,
    make_faba,
    make_fer2013,
    make_jsonl,
    make_rafdb,
    write_image,
)
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from facial_r1.data.images import load_image
from facial_r1.data.schema import DataError, from_arrow_row
from facial_r1.data.sources import (
    AffectNetSource,
    Bp4dSource,
    DisfaSource,
    FabaInstructSource,
    FacialR1JsonlSource,
    Fer2013Source,
    ImageFolderSource,
    RafDbSource,
    SynthFacesSource,
    build_source,
)
from facial_r1.data.sources.base import FEATURES, holdout_ids
from facial_r1.data.sources.labels import aus_in_text, emotion_in_text
from facial_r1.data.sources.video import frame_files, subject_splits
from facial_r1.facs import AU_VOCAB, BASIC7, EMOTIONS

CONF = Path(__file__).resolve().parents[1] / "conf"


def assert_records(records: list[dict], dataset: str) -> None:
    for r in records:
        assert r["dataset"] == dataset
        assert os.path.isabs(r["image"]) and os.path.isfile(r["image"])
        assert set(r["labels"]) <= set(r["label_set"])
        assert r["AUs"] is None or set(r["AUs"]) <= set(r["au_vocab"])
    assert len({r["id"] for r in records}) == len(records)


def test_jsonl_normalises_and_drops_invalid(tmp_path):
    rows = [jsonl_row(i) for i in range(5)] + [jsonl_row(9, is_valid=False)]
    rows[1] = jsonl_row(1, image=["images/s1.jpg", "images/other.jpg"], AUs=None, labels=[])
    rows[2] = jsonl_row(2, label_set=["anger", "happiness"], au_vocab=["AU6", "AU12"])
    make_jsonl(tmp_path, {"train": rows, "test": [jsonl_row(20)]})
    source = FacialR1JsonlSource(
        tmp_path, files={"train": "train.jsonl", "test": "test.jsonl"}, val_fraction=0.2
    )
    train, val = source.records("train"), source.records("val")
    assert source.report.skipped == {"is_valid_false": 1} and not source.report.errors
    by_id = {r["id"]: r for r in train + val}
    assert len(by_id) == 5 and len(val) == 1
    assert by_id["s0"]["AUs"] == ["AU6", "AU12"] and by_id["s0"]["labels"] == ["happiness"]
    assert by_id["s0"]["label_set"] == list(EMOTIONS)  # dataset-level default, not a union
    assert by_id["s1"]["AUs"] is None and by_id["s1"]["labels"] == []
    assert by_id["s1"]["meta_info"]["extra_images"] == ["images/other.jpg"]
    assert by_id["s2"]["label_set"] == ["anger", "happiness"] and by_id["s2"]["au_vocab"] == ["AU6", "AU12"]
    assert by_id["s0"]["meta_info"]["source_line"] == 1 and by_id["s0"]["meta_info"]["identity"] == 0
    assert_records(train + val, "fixture")
    assert source.load("test").features == FEATURES


def test_holdout_is_deterministic_and_disjoint():
    ids = [f"x{i}" for i in range(50)]
    val = holdout_ids(ids, 0.1, seed=3)
    assert len(val) == 5 and val == holdout_ids(reversed(ids), 0.1, seed=3)
    assert val != holdout_ids(ids, 0.1, seed=4)
    assert holdout_ids(["a"], 0.5, 0) == set() and len(holdout_ids(["a", "b"], 0.01, 0)) == 1


def test_rafdb_label_order_and_splits(tmp_path):
    make_rafdb(tmp_path, [(f"train_{i:05d}.jpg", i) for i in range(1, 8)] + [("test_0001.jpg", 1)])
    source = RafDbSource(tmp_path, val_fraction=0.3)
    train, val, test = (source.records(s) for s in ("train", "val", "test"))
    assert len(train) == 5 and len(val) == 2 and {r["id"] for r in train}.isdisjoint(r["id"] for r in val)
    labels = {r["id"]: r["labels"][0] for r in train + val}
    # 1-indexed: 1 surprise, 4 happiness, 7 neutral
    assert labels["train_00001"] == "surprise" and labels["train_00004"] == "happiness"
    assert labels["train_00007"] == "neutral"
    assert test[0]["image"].endswith("Image/aligned/test_0001_aligned.jpg") and test[0]["AUs"] is None
    assert test[0]["label_set"] == list(BASIC7)
    assert_records(train + val + test, "rafdb")


def test_affectnet_keeps_expressions_and_counts_non_expressions(tmp_path):
    make_affectnet(tmp_path)
    source = AffectNetSource(tmp_path, val_fraction=0.0)
    train = source.records("train")
    assert len(train) == 16 and source.report.skipped == {"not_an_expression": 6} and not source.report.errors
    first = next(r for r in train if r["id"] == "1/train0")
    assert first["labels"] == ["neutral"] and first["meta_info"]["valence"] == 0.25
    assert first["meta_info"]["face_box"] == [10.0, 12.0, 90.0, 90.0]
    assert "contempt" in first["label_set"]
    test = source.records("test")
    assert [r["labels"][0] for r in test] == ["neutral", "happiness", "contempt"]
    seven = AffectNetSource(tmp_path, classes=7)
    assert len(seven.records("test")) == 2 and seven.report.skipped["excluded_class"] == 1
    assert_records(train, "affectnet")


def test_fer2013_materialises_pngs_once(tmp_path):
    make_fer2013(tmp_path / "data")
    source = Fer2013Source(tmp_path / "data", cache_dir=tmp_path / "cache")
    train, val, test = (source.records(s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (6, 2, 3)
    assert [r["labels"][0] for r in train[:4]] == ["anger", "disgust", "fear", "happiness"]
    image = load_image(train[1])
    assert image.size == (48, 48) and image.mode == "RGB" and image.getpixel((1, 0))[0] == 1
    stamp = os.stat(train[1]["image"]).st_mtime_ns
    again = Fer2013Source(tmp_path / "data", cache_dir=tmp_path / "cache").records("train")
    assert again[1]["image"] == train[1]["image"] and os.stat(again[1]["image"]).st_mtime_ns == stamp
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    assert_records(train + val + test, "fer2013")


def test_faba_eval_labels_and_train_labels_from_reply(tmp_path):
    make_faba(tmp_path)
    source = FabaInstructSource(tmp_path, val_fraction=0.0)
    train = {r["id"]: r for r in source.records("train")}
    assert source.report.skipped == {"no_label_in_reference": 2} and not source.report.errors
    assert train["au/1"]["AUs"] == ["AU1", "AU4"]  # "no AU12" is negated
    assert train["au/2"]["AUs"] == ["AU6", "AU12"] and train["au/2"]["labels"] == []
    assert train["emotion/4"]["labels"] == ["happiness"] and train["emotion/4"]["AUs"] is None
    assert train["emotion/4"]["meta_info"]["reference"].startswith("The person looks happy")
    assert train["emotion/4"]["meta_info"]["label_origin"] == "reference_text"
    test = {r["id"]: r for r in source.records("test")}
    assert test["au/6"]["AUs"] == ["AU1", "AU2", "AU4"] and test["au/6"]["au_vocab"] == [
        f"AU{a}" for a in AU_VOCAB["faba"]
    ]
    assert test["emotion/7"]["labels"] == ["happiness"] and test["emotion/7"]["label_set"] == list(BASIC7)
    assert_records([*train.values(), *test.values()], "faba")


def test_reply_parsing_drops_negated_sentences():
    assert aus_in_text("Brows raised (AU1) and lowered (AU04). There is no AU12.") == ["AU1", "AU4"]
    assert aus_in_text("Cheek raiser and lip corner puller; lips are not parted.") == ["AU6", "AU12"]
    assert emotion_in_text("She is happy. She is not sad.", BASIC7) == "happiness"
    assert emotion_in_text("Happy or sad?", BASIC7) is None
    assert emotion_in_text("Contemptuous look.", BASIC7) is None  # outside the label set


def test_disfa_threshold_folds_and_frame_naming(tmp_path):
    subjects = [f"SN{i:03d}" for i in (1, 2, 3, 4, 5, 6)]
    make_disfa(tmp_path, subjects[:3], frames=3, padded=True)
    make_disfa(tmp_path, subjects[3:], frames=3, padded=False, flat=True)
    source = DisfaSource(tmp_path, fold=1, val_fraction=0.25)
    splits = {s: source.records(s) for s in ("train", "val", "test")}
    subjects_of = {s: {r["meta_info"]["subject"] for r in recs} for s, recs in splits.items()}
    assert subjects_of["test"] == {"SN003", "SN004"}
    assert len(subjects_of["val"]) == 1 and subjects_of["val"] | subjects_of["train"] == {
        "SN001",
        "SN002",
        "SN005",
        "SN006",
    }
    assert subjects_of["val"].isdisjoint(subjects_of["train"])
    record = next(r for r in splits["test"] if r["id"] == "SN004/1")
    expected = [f"AU{a}" for a in AU_VOCAB["disfa"] if (a + 1) % 6 >= 2]
    assert (
        record["AUs"] == expected
        and record["labels"] == []
        and record["meta_info"]["intensities"]["AU1"] == 2
    )
    assert record["image"].endswith("SN004/1.png")
    strict = DisfaSource(tmp_path, fold=1, threshold=5)
    assert strict.records("test")[0]["AUs"] == [f"AU{a}" for a in AU_VOCAB["disfa"] if (a + 1) % 6 >= 5]
    assert_records([r for recs in splits.values() for r in recs], "disfa")


def test_subject_splits_and_frame_files(tmp_path):
    split = subject_splits([f"S{i}" for i in range(7)], fold=0, num_folds=3, val_fraction=0.0)
    assert split["test"] == ["S0", "S1", "S2"] and split["val"] == [] and len(split["train"]) == 4
    explicit = subject_splits(["a", "b", "c"], fold=1, folds=[["c"], ["a"], ["b"]], val_fraction=0.0)
    assert explicit == {"train": ["b", "c"], "val": [], "test": ["a"]}
    with pytest.raises(DataError, match="no data"):
        subject_splits(["a"], 0, folds=[["zz"]])
    for name in ("0007.jpg", "frame_12.png", "notes.txt"):
        write_image(tmp_path / name) if name.endswith((".jpg", ".png")) else (tmp_path / name).write_text("x")
    assert sorted(frame_files(tmp_path)) == [7, 12]


@pytest.mark.parametrize("au_header", [False, True])
def test_bp4d_unknown_codes_and_headers(tmp_path, au_header):
    make_bp4d(tmp_path, ["F001", "F002", "M001"], au_header=au_header)
    source = Bp4dSource(tmp_path, fold=0, val_fraction=0.0)
    test = source.records("test")
    assert {r["meta_info"]["subject"] for r in test} == {"F001"}
    assert source.report.skipped == {"not_annotated": 1}
    first, second = test
    assert (
        first["AUs"] == ["AU1", "AU4", "AU7", "AU12", "AU15", "AU23"]
        and first["meta_info"]["unknown_aus"] == []
    )
    assert second["AUs"] == [] and second["meta_info"]["unknown_aus"] == ["AU1"]
    assert first["au_vocab"] == [f"AU{a}" for a in AU_VOCAB["bp4d"]]
    assert_records(test, "bp4d")


def test_image_folder_plain_and_class_layouts(tmp_path):
    write_image(tmp_path / "plain" / "a.jpg")
    write_image(tmp_path / "plain" / "sub" / "b.png")
    (tmp_path / "plain" / "README").write_text("not an image")
    plain = ImageFolderSource(tmp_path / "plain")
    records = plain.records("test")
    assert [r["id"] for r in records] == ["a.jpg", "sub/b.png"] and plain.report.skipped == {
        "not_an_image": 1
    }
    assert all(r["labels"] == [] and r["AUs"] is None for r in records)
    for split, cls in (("train", "happy"), ("train", "Sad"), ("test", "angry")):
        write_image(tmp_path / "classes" / split / cls / "x.jpg")
    classes = ImageFolderSource(tmp_path / "classes", class_folders=True)
    # no val/ folder: val is a seeded slice of train/ (at least one image), train the rest
    train_and_val = classes.records("train") + classes.records("val")
    assert sorted(r["labels"][0] for r in train_and_val) == ["happiness", "sadness"]
    assert len(classes.records("val")) == 1
    assert classes.records("test")[0]["labels"] == ["anger"]
    (tmp_path / "classes" / "val").mkdir()
    (tmp_path / "classes" / "train").rename(tmp_path / "classes" / "training")
    with pytest.raises(DataError, match="no folder for split 'train'"):
        ImageFolderSource(tmp_path / "classes", class_folders=True).load("train")


def test_records_roundtrip_through_arrow(tmp_path):
    make_rafdb(tmp_path)
    dataset = RafDbSource(tmp_path).load("test")
    assert isinstance(dataset, datasets.Dataset) and dataset.features == FEATURES
    record = from_arrow_row(dataset[0])
    assert record["AUs"] is None and record["meta_info"]["source_line"] == 21


def test_report_file_lists_every_split(tmp_path):
    make_affectnet(tmp_path)
    report = tmp_path / "out" / "report.json"
    source = AffectNetSource(tmp_path, report_path=str(report))
    source.load("train")
    source.load("test")
    data = json.loads(report.read_text())
    assert set(data) == {"train", "test"} and data["test"]["skipped"] == {"not_an_expression": 1}
    assert data["test"]["items"][0]["line"] == 5 and data["test"]["items"][0]["error"] is False


@pytest.mark.parametrize(
    "name", ["fea20k", "faba", "rafdb", "affectnet", "fer2013", "disfa", "bp4d", "image_folder", "synthfaces"]
)
def test_every_dataset_config_instantiates(tmp_path, name):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("validate", overrides=[f"dataset={name}", f"dataset.root={tmp_path}"])
    source = instantiate(cfg.dataset)
    assert source.on_error == "raise" and source.root == tmp_path.absolute()
    assert build_source(cfg.dataset, on_error="skip").on_error == "skip"


def test_build_source_needs_root():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("validate", overrides=["dataset=rafdb"])
    with pytest.raises(ValueError, match="dataset.root=/path"):
        build_source(cfg.dataset)


def test_synthfaces_renders_once_and_reuses(tmp_path):
    try:
        from facial_r1.data.synthfaces import export_split  # noqa: F401
    except ImportError:
        pytest.skip("SynthFACS renderer (facial_r1.data.synthfaces.export_split) not available yet")
    source = SynthFacesSource(cache_dir=tmp_path, n_train=4, n_val=2, n_test=3, image_size=32, progress=False)
    test = source.records("test")
    assert len(test) == 3 and source.report.kept == 3 and all(os.path.isfile(r["image"]) for r in test)
    assert load_image(test[0]).size == (32, 32)
    folder = source.split_dir("test")
    stamp = (folder / "test.jsonl").stat().st_mtime_ns
    again = SynthFacesSource(cache_dir=tmp_path, n_train=4, n_val=2, n_test=3, image_size=32, progress=False)
    assert [r["id"] for r in again.records("test")] == [r["id"] for r in test]
    assert (folder / "test.jsonl").stat().st_mtime_ns == stamp
    assert SynthFacesSource(cache_dir=tmp_path, n_test=4, image_size=32).split_dir("test") != folder


def test_synthfaces_split_asked_for_by_two_processes_at_once_is_rendered_once(tmp_path, monkeypatch):
    """Seeds side by side used to render one split into one temporary file together; the second now waits on the
    folder's lock and then finds the split complete."""
    import threading

    from facial_r1.data import synthfaces
    from facial_r1.files import exclusive_lock

    rendered = []
    monkeypatch.setattr(synthfaces, "export_split", lambda *a, **k: rendered.append(a))
    source = SynthFacesSource(cache_dir=tmp_path, n_test=3, image_size=32, progress=False)
    folder = source.split_dir("test")
    folder.mkdir(parents=True)
    with exclusive_lock(folder / ".render.lock"):  # "the other process", mid-render
        waiter = threading.Thread(target=source.materialise, args=("test",))
        waiter.start()
        waiter.join(timeout=0.5)
        assert waiter.is_alive()  # blocked on the lock, not rendering beside it
        (folder / "test.jsonl").write_text("")  # the other process finishes
    waiter.join(timeout=10)
    assert not waiter.is_alive() and rendered == []
    source.materialise("val")  # a free split still renders
    assert len(rendered) == 1


def test_every_entry_point_builds_its_dataset_through_build_source():
    """One way to build a data source (``build_source``: instantiate + the missing-root and type checks)."""
    import re

    src = Path(__file__).resolve().parents[1] / "src"
    direct = [
        str(p.relative_to(src))
        for p in src.rglob("*.py")
        if re.search(r"instantiate\(\s*\w*\.?dataset\b", p.read_text())
    ]
    assert not direct, f"datasets instantiated around build_source in {direct}"


def test_docstrings_cite_no_file_outside_the_repository():
    """Comments and docstrings point at public sources or files in this repository, never at a local notes folder."""
    repo = Path(__file__).resolve().parents[1]
    needle = "shared/" + "reference"  # spelled apart: this file is scanned too
    pending: set[str] = set()
    files = [
        p
        for d in ("src", "conf", "tests", "benchmarks")
        for p in (repo / d).rglob("*")
        if p.suffix in (".py", ".yaml")
    ]
    cited = {str(p.relative_to(repo)) for p in files if needle in p.read_text()}
    assert not cited - pending, f"citations of files outside the repository in {sorted(cited - pending)}"
