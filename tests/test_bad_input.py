"""Bad input never passes silently: an error naming file and line, or (on_error=skip) a counted, listed skip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_datasets import (
    AFFECTNET_HEADER,
    faba_item,
    jsonl_row,
    make_affectnet,
    make_bp4d,
    make_disfa,
    make_faba,
    make_fer2013,
    make_jsonl,
    make_rafdb,
    write_corrupt,
    write_truncated,
)

from facial_r1.data.images import load_image
from facial_r1.data.schema import DataError
from facial_r1.data.sources import (
    AffectNetSource,
    Bp4dSource,
    DisfaSource,
    FabaInstructSource,
    FacialR1JsonlSource,
    Fer2013Source,
    RafDbSource,
)
from facial_r1.data.validate import main as validate_main

BAD_ROWS = {
    "missing_image": jsonl_row(1, image="images/nothere.jpg"),
    "image_outside_root": jsonl_row(1, image="../../etc/passwd"),
    "unknown_label": jsonl_row(1, labels=["bored"]),
    "unknown_au": jsonl_row(1, AUs=["AU6", "AU99"]),
    "malformed_line": '{"id": "s1", "image": ',
    "missing_field": {k: v for k, v in jsonl_row(1).items() if k != "image"},
}


def jsonl_source(root: Path, **kwargs) -> FacialR1JsonlSource:
    """Only train.jsonl, all of it in train (no held-out val)."""
    return FacialR1JsonlSource(root, files={"train": "train.jsonl"}, val_fraction=0.0, **kwargs)


def jsonl_with(tmp_path: Path, bad) -> Path:
    """train.jsonl: a good row, the bad row on line 2, a good row."""
    make_jsonl(tmp_path, {"train": [jsonl_row(0), bad, jsonl_row(2)]})
    if isinstance(bad, dict) and bad.get("image") == "images/nothere.jpg":
        os.remove(tmp_path / "images" / "nothere.jpg")
    return tmp_path / "train.jsonl"


@pytest.mark.parametrize("kind", sorted(BAD_ROWS))
def test_jsonl_bad_row_raises_naming_file_and_line(tmp_path, kind):
    path = jsonl_with(tmp_path, BAD_ROWS[kind])
    with pytest.raises(DataError) as info:
        jsonl_source(tmp_path).load("train")
    assert str(info.value).startswith(f"{path}:2: ") and info.value.kind == kind


@pytest.mark.parametrize("kind", sorted(BAD_ROWS))
def test_jsonl_bad_row_skipped_counted_and_reported(tmp_path, kind):
    path = jsonl_with(tmp_path, BAD_ROWS[kind])
    report_file = tmp_path / "report.json"
    source = jsonl_source(tmp_path, on_error="skip", report_path=str(report_file))
    assert [r["id"] for r in source.records("train")] == ["s0", "s2"]
    assert source.report.skipped == {kind: 1} and source.report.kept == 2
    item = json.loads(report_file.read_text())["train"]["items"][0]
    assert (item["file"], item["line"], item["reason"], item["error"]) == (str(path), 2, kind, True)


def test_absolute_image_path_outside_root(tmp_path):
    make_jsonl(tmp_path, {"train": [jsonl_row(0, image=str(Path(os.__file__).resolve()))]})
    with pytest.raises(DataError, match="escapes the image root"):
        jsonl_source(tmp_path).load("train")


def test_duplicate_id_is_an_error(tmp_path):
    make_jsonl(tmp_path, {"train": [jsonl_row(0), jsonl_row(0)]})
    with pytest.raises(DataError, match=r"train.jsonl:2: id 's0' already used at .*train.jsonl:1"):
        jsonl_source(tmp_path).load("train")
    make_jsonl(
        tmp_path, {"train": [jsonl_row(0), jsonl_row(0, dataset="other")]}
    )  # unique within each dataset
    assert jsonl_source(tmp_path).load("train").num_rows == 2


@pytest.mark.parametrize("damage", [write_corrupt, write_truncated, os.remove])
def test_decode_errors_name_image_and_annotation(tmp_path, damage):
    make_jsonl(tmp_path, {"train": [jsonl_row(0), jsonl_row(1)]})
    record = jsonl_source(tmp_path).records("train")[1]
    damage(Path(record["image"]))  # loading only stat()s, so the damage shows when decoding
    with pytest.raises(DataError) as info:
        load_image(record)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'train.jsonl'}:2: ") and record["image"] in message
    with pytest.raises(DataError, match=record["image"]):
        load_image(record["image"])


def test_missing_annotation_file_raises_even_when_skipping(tmp_path):
    with pytest.raises(DataError, match="not found"):
        RafDbSource(tmp_path, on_error="skip").load("train")


def test_csv_wrong_columns_raise_with_file_and_line(tmp_path):
    make_affectnet(tmp_path, {"training.csv": [1]}, header=[c for c in AFFECTNET_HEADER if c != "expression"])
    with pytest.raises(DataError, match=r"training.csv:1: missing CSV columns \['expression'\]"):
        AffectNetSource(tmp_path, on_error="skip").load("train")
    (tmp_path / "fer2013.csv").write_text("label,pixels,Usage\n0,1 2,Training\n")
    with pytest.raises(DataError, match=r"fer2013.csv:1: missing CSV columns \['emotion'\]"):
        Fer2013Source(tmp_path, cache_dir=tmp_path / "cache").load("train")


def test_bp4d_non_au_column_raises(tmp_path):
    make_bp4d(tmp_path, ["F001", "F002", "F003"])
    path = tmp_path / "AUCoding" / "F001_T1.csv"
    path.write_text(path.read_text().replace(",3\n", ",smile\n", 1))
    with pytest.raises(DataError, match=r"F001_T1.csv:1: column 'smile' is not an AU"):
        Bp4dSource(tmp_path, fold=0).load("test")


def test_fer2013_bad_pixels_named_and_skippable(tmp_path):
    good = " ".join(["7"] * 48 * 48)
    make_fer2013(tmp_path, [(0, good, "Training"), (3, "1 2 3", "Training"), (9, good, "Training")])
    csv_path = tmp_path / "fer2013.csv"
    with pytest.raises(DataError, match=rf"{csv_path}:3: pixels must be 2304 ints"):
        Fer2013Source(tmp_path, cache_dir=tmp_path / "cache").load("train")
    source = Fer2013Source(tmp_path, cache_dir=tmp_path / "cache", on_error="skip")
    assert len(source.records("train")) == 1
    assert source.report.skipped == {"bad_pixels": 1, "unknown_label": 1}


def test_rafdb_bad_lines(tmp_path):
    make_rafdb(tmp_path, [("train_00001.jpg", 1), ("train_00002.jpg", 8), ("train_00003.jpg", 2)])
    label_file = tmp_path / "EmoLabel" / "list_patition_label.txt"
    label_file.write_text(label_file.read_text() + "garbage\n")
    with pytest.raises(DataError, match=rf"{label_file}:2: label 8 not in 1..7"):
        RafDbSource(tmp_path).load("train")
    source = RafDbSource(tmp_path, on_error="skip", val_fraction=0)
    assert [r["id"] for r in source.records("train")] == ["train_00001", "train_00003"]
    assert source.report.skipped == {"unknown_label": 1, "malformed_line": 1}


def test_affectnet_missing_image_names_csv_line_and_image(tmp_path):
    make_affectnet(tmp_path, {"training.csv": [1, 2], "validation.csv": [1]})
    os.remove(tmp_path / "Manually_Annotated_Images" / "2" / "train1.jpg")
    with pytest.raises(
        DataError, match=r"training.csv:3: image not found: .*Manually_Annotated_Images/2/train1.jpg"
    ):
        AffectNetSource(tmp_path).load("train")


def test_faba_bad_labels_and_malformed_json(tmp_path):
    make_faba(
        tmp_path,
        {
            "eval/eval_au_anno.json": [faba_item(1, "x", label="1, 2"), faba_item(2, "x", label="1, 99")],
            "eval/eval_emotion_anno.json": [
                faba_item(3, "x", label="Boredom"),
                faba_item(4, "x", label="sad", image="../x.jpg"),
            ],
        },
    )
    source = FabaInstructSource(tmp_path, on_error="skip")
    assert [r["id"] for r in source.records("test")] == ["au/1"]
    assert source.report.skipped == {"unknown_au": 1, "unknown_label": 1, "image_outside_root": 1}
    where = [(Path(i.file).name, i.line) for i in source.report.items]  # the line each list element starts on
    assert where == [("eval_au_anno.json", 28), ("eval_emotion_anno.json", 2), ("eval_emotion_anno.json", 28)]
    (tmp_path / "eval" / "eval_au_anno.json").write_text('[\n{"id": 1},\n{"id": 2\n]')
    with pytest.raises(DataError, match=r"eval_au_anno.json:4: malformed JSON"):
        FabaInstructSource(tmp_path).load("test")


def test_disfa_bad_intensity_names_line(tmp_path):
    make_disfa(tmp_path, ["SN001", "SN002", "SN003"], frames=3)
    path = tmp_path / "ActionUnit_Labels" / "SN001" / "SN001_au4.txt"
    path.write_text("1,0\n2,7\n3,1\n")
    with pytest.raises(DataError, match=rf"{path}:2: intensity must be an integer 0-5"):
        DisfaSource(tmp_path, fold=0).load("test")
    source = DisfaSource(tmp_path, fold=0, on_error="skip")
    assert [r["id"] for r in source.records("test")] == ["SN001/1", "SN001/3"]
    os.remove(tmp_path / "frames" / "SN001" / "00003.jpg")
    assert DisfaSource(tmp_path, fold=0, on_error="skip").load("test").num_rows == 1
    dropping = DisfaSource(tmp_path, fold=0, missing_frames="drop", on_error="skip")
    dropping.load("test")
    assert dropping.report.skipped == {"malformed_line": 1, "frame_not_extracted": 1}


def test_validate_command_clean_and_broken(tmp_path, capsys):
    make_rafdb(tmp_path)
    args = ["dataset=rafdb", f"dataset.root={tmp_path}", "workers=2"]
    assert validate_main(args) == 0
    assert "happiness" in capsys.readouterr().out
    broken = tmp_path / "Image" / "aligned" / "train_00003_aligned.jpg"
    write_corrupt(broken)
    report = tmp_path / "report.json"
    assert validate_main([*args, f"report_path={report}"]) == 1
    errors = [e for split in json.loads(report.read_text()).values() for e in split["decode_errors"]]
    assert len(errors) == 1 and errors[0]["reason"] == "corrupt_image" and errors[0]["line"] == 3
    assert str(broken) in errors[0]["message"]
    assert validate_main([*args, "split=test", "limit=2"]) == 0
    assert validate_main([*args, "on_error=raise"]) == 1
    assert validate_main(["dataset=rafdb"]) == 2


def test_validate_module_entry_point(tmp_path):
    make_rafdb(tmp_path)
    (tmp_path / "EmoLabel" / "list_patition_label.txt").open("a").write("test_9999.jpg 3\n")
    cmd = [
        sys.executable,
        "-m",
        "facial_r1.data.validate",
        "dataset=rafdb",
        f"dataset.root={tmp_path}",
        "split=test",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "test_9999_aligned.jpg" in result.stdout + result.stderr
