"""Bad input real folders expose: unusable images at load time, non-UTF-8 annotations, empty splits, deep JSON,
boolean AUs - through the sources and through every entry point (validate, train.py, evaluate.py, synthesize.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from fixtures_datasets import jsonl_row, make_affectnet, make_jsonl, make_rafdb, write_truncated
from PIL import Image

from facial_r1.data.images import load_image
from facial_r1.data.schema import DataError
from facial_r1.data.sources import AffectNetSource, FacialR1JsonlSource, RafDbSource
from facial_r1.data.validate import main as validate_main


def jsonl_source(root: Path, **kwargs) -> FacialR1JsonlSource:
    return FacialR1JsonlSource(root, files={"train": "train.jsonl"}, val_fraction=0.0, **kwargs)


def strip(path: Path) -> None:
    Image.new("RGB", (1, 4000)).save(path)


def float_tiff(path: Path) -> None:
    Image.fromarray(np.full((32, 32), 0.5, dtype=np.float32)).save(path.with_suffix(".tif"))
    path.with_suffix(".tif").rename(path)


def wide_int32(path: Path) -> None:
    Image.fromarray(np.full((32, 32), 70000, dtype=np.int32)).save(path.with_suffix(".tif"))
    path.with_suffix(".tif").rename(path)


def not_an_image(path: Path) -> None:
    path.write_bytes(b"GIF89a but not really")


BAD_IMAGES = {
    "strip_1x4000": (strip, "unusable_image", "1 x 4000 pixels"),
    "float": (float_tiff, "unusable_image", "float image"),
    "int32_out_of_range": (wide_int32, "unusable_image", "outside 0..65535"),
    "truncated": (write_truncated, "corrupt_image", "cannot decode"),
    "garbage": (not_an_image, "corrupt_image", "cannot decode"),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_bad_image_found_at_load_time(tmp_path: Path, case: str) -> None:
    damage, kind, words = BAD_IMAGES[case]
    make_jsonl(tmp_path, {"train": [jsonl_row(0), jsonl_row(1), jsonl_row(2)]})
    damage(tmp_path / "images" / "s1.jpg")
    with pytest.raises(DataError) as info:  # at load time, naming annotation file and line
        jsonl_source(tmp_path).load("train")
    assert str(info.value).startswith(f"{tmp_path / 'train.jsonl'}:2: ") and words in str(info.value)
    report = tmp_path / "report.json"
    source = jsonl_source(tmp_path, on_error="skip", report_path=str(report))
    assert [r["id"] for r in source.records("train")] == ["s0", "s2"]
    item = json.loads(report.read_text())["train"]["items"][0]
    assert (item["reason"], item["line"], item["file"]) == (kind, 2, str(tmp_path / "train.jsonl"))


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32768, 65535]] * 16, dtype=np.uint16).repeat(4, axis=1)
    Image.fromarray(values).save(tmp_path / "deep.png")  # PIL reads a 16-bit PNG back as mode I (or I;16)
    with Image.open(tmp_path / "deep.png") as raw:
        assert raw.mode in ("I", "I;16")
    rgb = np.asarray(load_image(tmp_path / "deep.png"))
    assert rgb.dtype == np.uint8 and rgb.shape == (16, 16, 3)
    assert rgb[0, ::4, 0].tolist() == [0, 1, 128, 255]  # x 255/65535; PIL's own convert would clip to 255
    Image.fromarray(np.array([[0, 65535]] * 8, dtype=np.uint16).repeat(8, 1)).save(tmp_path / "a.tif")
    with Image.open(tmp_path / "a.tif") as raw:
        assert raw.mode.startswith("I;16")
    assert np.asarray(load_image(tmp_path / "a.tif"))[0, [0, 15], 0].tolist() == [0, 255]


def test_annotations_not_utf8_or_with_bom(tmp_path: Path) -> None:
    make_jsonl(tmp_path, {"train": [jsonl_row(0), jsonl_row(1)]})
    path = tmp_path / "train.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"\xef\xbb\xbf" + lines[0] + lines[1])  # a BOM is accepted
    assert len(jsonl_source(tmp_path).records("train")) == 2
    path.write_bytes(lines[0] + lines[1].replace(b"What", b"Wh\xe9t"))  # latin-1
    for on_error in ("raise", "skip"):  # a file that is not UTF-8 is not one bad sample: it always stops
        with pytest.raises(DataError, match=rf"{path}:2: not UTF-8 text: byte 0xe9"):
            jsonl_source(tmp_path, on_error=on_error).load("train")
    make_rafdb(tmp_path / "raf")
    labels = tmp_path / "raf" / "EmoLabel" / "list_patition_label.txt"
    labels.write_bytes(b"\xef\xbb\xbf" + labels.read_bytes())
    assert len(RafDbSource(tmp_path / "raf", val_fraction=0).records("train")) == 20
    labels.write_bytes(labels.read_bytes().replace(b"train_00003.jpg", b"train_0000\xff.jpg"))
    with pytest.raises(DataError, match=rf"{labels}:3: not UTF-8"):
        RafDbSource(tmp_path / "raf").load("train")
    (tmp_path / "an").mkdir()
    make_affectnet(tmp_path / "an")
    csv_path = tmp_path / "an" / "validation.csv"
    csv_path.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())  # Excel writes a BOM before the header
    assert len(AffectNetSource(tmp_path / "an").records("test")) == 3


def test_json_line_nested_too_deep(tmp_path: Path) -> None:
    make_jsonl(
        tmp_path, {"train": [jsonl_row(0), '{"id": "x", "image": ' + "[" * 100_000 + "]" * 100_000 + "}"]}
    )
    with pytest.raises(DataError, match=r"train.jsonl:2: JSON nested too deep"):
        jsonl_source(tmp_path).load("train")
    source = jsonl_source(tmp_path, on_error="skip")
    assert len(source.records("train")) == 1 and source.report.skipped == {"malformed_line": 1}


def test_boolean_aus_and_vocab_are_refused(tmp_path: Path) -> None:
    make_jsonl(tmp_path, {"train": [jsonl_row(0, AUs=[True, "AU2"])]})
    with pytest.raises(DataError, match=r"train.jsonl:1: AU True is a boolean"):
        jsonl_source(tmp_path).load("train")
    make_jsonl(tmp_path, {"train": [jsonl_row(0, au_vocab=[True, 6, 12])]})
    with pytest.raises(DataError, match=r"train.jsonl:1: AU True is a boolean"):
        jsonl_source(tmp_path).load("train")
    with pytest.raises(DataError, match="AU False is a boolean"):
        FacialR1JsonlSource(tmp_path, au_vocab=[1, False])


def test_validate_honours_dataset_on_error_raise(tmp_path: Path, capsys) -> None:
    make_rafdb(tmp_path)
    strip(tmp_path / "Image" / "aligned" / "train_00003_aligned.jpg")
    args = ["dataset=rafdb", f"dataset.root={tmp_path}", "workers=1"]
    assert validate_main(args) == 1  # skip (the default): listed, summary printed
    out = capsys.readouterr()
    assert "samples" in out.out and "error:" not in out.err
    assert validate_main([*args, "dataset.on_error=raise"]) == 1
    out = capsys.readouterr()
    assert "list_patition_label.txt:3: unusable image" in out.err and "samples" not in out.out


# ---- through the entry points: a bad image or an empty split stops before any model is loaded -------------------


def fea_folder(root: Path, bad: bool = True) -> Path:
    make_jsonl(root, {"train": [jsonl_row(0), jsonl_row(1)], "test": [jsonl_row(5), jsonl_row(6)]})
    if bad:
        strip(root / "images" / "s1.jpg")  # line 2 of train.jsonl
        strip(root / "images" / "s5.jpg")  # line 1 of test.jsonl
    return root


def run_entry(script: str, args: list[str], env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, script, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "split", "line"),
    [("train.py", "train", 2), ("evaluate.py", "test", 1), ("synthesize.py", "train", 2)],
)
def test_entry_points_name_the_bad_image(
    tmp_path, tiny_model_dir, subprocess_env, script, split, line
) -> None:
    root = fea_folder(tmp_path / "data")
    common = ["dataset=fea20k", f"dataset.root={root}", f"model.path={tiny_model_dir}"]
    extra = ["split=train"] if script == "synthesize.py" else ["logger=none"]  # synthesis logs no curves
    proc = run_entry(script, [*common, *extra], subprocess_env(tmp_path))
    assert proc.returncode != 0
    assert f"{split}.jsonl:{line}: unusable image" in proc.stderr, proc.stderr[-2000:]
    assert "Loading weights" not in proc.stderr  # stopped at load time, before the model


@pytest.mark.slow
@pytest.mark.parametrize(("script", "split"), [("train.py", "train"), ("evaluate.py", "test")])
def test_entry_points_refuse_an_empty_split(tmp_path, tiny_model_dir, subprocess_env, script, split) -> None:
    root = fea_folder(tmp_path / "data")
    make_jsonl(root, {split: [jsonl_row(1)]}, images=False)  # its one image is the unusable strip
    args = ["dataset=fea20k", f"dataset.root={root}", "dataset.on_error=skip", f"model.path={tiny_model_dir}"]
    proc = run_entry(script, [*args, "logger=none"], subprocess_env(tmp_path))
    assert proc.returncode != 0
    assert f"split '{split}' of fea20k is empty" in proc.stderr and "unusable_image 1" in proc.stderr, (
        proc.stderr[-2000:]
    )
