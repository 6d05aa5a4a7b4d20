"""SynthFACS: every AU is visible where it should be and nowhere else; sampling, labels, export and CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facial_r1.data import synthfaces as sf
from facial_r1.data.synthfaces.__main__ import main
from facial_r1.facs import AU_VOCAB, EMOTION_PROTOTYPES, EMOTIONS, au_codes, sort_aus

CFG = sf.SynthFacesConfig()
# Several looks (hair styles, glasses, skin tones) so a region box that only fits one face would fail.
IDENTITIES = [
    sf.sample_identity(np.random.default_rng([7, k]), k, sf.SynthFacesConfig(p_glasses=0.5)) for k in range(4)
]


def _pixels(identity, aus, nuisance=None) -> np.ndarray:
    return np.asarray(sf.render_face(identity, aus, nuisance), dtype=np.int16)


def _diff(identity, aus, nuisance=None) -> np.ndarray:
    return np.abs(_pixels(identity, sf.couple(aus), nuisance) - _pixels(identity, {}, nuisance)).max(-1)


def test_every_faba_au_is_renderable_and_has_a_region():
    assert AU_VOCAB["faba"] == sf.RENDERABLE_AUS
    assert set(sf.AU_REGIONS) == set(AU_VOCAB["faba"])
    assert all(name in sf.REGIONS for names in sf.AU_REGIONS.values() for name in names)


@pytest.mark.parametrize("au", AU_VOCAB["faba"])
def test_au_changes_its_region_and_nothing_else(au):
    for identity in IDENTITIES:
        diff = _diff(identity, {au: (5, None)})
        inside = sf.region_mask(au, identity)
        assert diff[~inside].max() == 0, f"AU{au} changed pixels outside {sf.AU_REGIONS[au]}"
        assert (diff[inside] > 25).sum() >= 12, f"AU{au} barely visible on identity {identity.id}"


@pytest.mark.parametrize("au", [1, 4, 6, 12, 15, 17, 26, 43])
def test_au_region_holds_under_photometric_nuisance(au):
    # Same lighting, blur and noise seed with and without the AU: only the AU's region may differ.
    nuisance = sf.Nuisance(
        light=0.15,
        light_angle=30,
        brightness=1.05,
        tint=(1.02, 1.0, 0.98),
        noise_std=3.0,
        noise_seed=12345,
        blur=0.5,
        background=((90, 120, 150), (170, 160, 120)),
    )
    diff = _diff(IDENTITIES[0], {au: (5, None)}, nuisance)
    inside = sf.region_mask(au, IDENTITIES[0], nuisance, margin=2)
    assert diff[~inside].max() <= 1
    assert (diff[inside] > 25).sum() >= 12


@pytest.mark.parametrize("au", AU_VOCAB["faba"])
def test_intensity_e_changes_more_than_a(au):
    identity = IDENTITIES[1]
    weak, strong = _diff(identity, {au: (1, None)}).sum(), _diff(identity, {au: (5, None)}).sum()
    assert 0 < weak < strong


@pytest.mark.parametrize(("au", "side"), [(12, "R"), (14, "R"), (12, "L"), (14, "L")])
def test_unilateral_au_changes_one_side(au, side):
    identity = IDENTITIES[2]
    diff = _diff(identity, {au: (5, side)}).astype(float)
    mid = CFG.image_size // 2  # frontal, unshifted face: the midline is the image centre
    # The subject's right is the image's left.
    subject_right, subject_left = diff[:, :mid].sum(), diff[:, mid:].sum()
    changed, unchanged = (subject_right, subject_left) if side == "R" else (subject_left, subject_right)
    assert changed > 5 * unchanged


def test_samples_are_deterministic_by_seed():
    img_a, rec_a = sf.render_sample(5, "train", seed=3)
    img_b, rec_b = sf.render_sample(5, "train", seed=3)
    img_c, rec_c = sf.render_sample(5, "train", seed=4)
    assert np.array_equal(np.asarray(img_a), np.asarray(img_b)) and rec_a == rec_b
    assert not np.array_equal(np.asarray(img_a), np.asarray(img_c))
    assert rec_a["id"] != rec_c["id"]
    assert img_a.size == (112, 112) and img_a.mode == "RGB"


def test_image_size_is_configurable():
    img, _ = sf.render_sample(0, config=sf.SynthFacesConfig(image_size=224, supersample=2))
    assert img.size == (224, 224)


def test_splits_use_disjoint_identities():
    ids = {s: {sf.sample_spec(i, s, 0).identity.id for i in range(120)} for s in ("train", "val", "test")}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]

    def look(i: int, split: str) -> str:  # everything about the face except its id
        return json.dumps({**sf.sample_spec(i, split, 0).identity.to_dict(), "id": 0})

    train, val = {look(i, "train") for i in range(0, 120, 4)}, {look(i, "val") for i in range(0, 120, 4)}
    assert len(train) == 30 and not train & val
    # Several expressions per identity, consecutive within a split.
    per_identity = Counter(sf.sample_spec(i, "train", 0).identity.id for i in range(40))
    assert set(per_identity.values()) == {CFG.expressions_per_identity}


def _records(n: int, config: sf.SynthFacesConfig = CFG) -> list[dict]:
    return [sf.spec_record(sf.sample_spec(i, "train", 1, config), "x", config) for i in range(n)]


def test_label_shares_and_hidden_truth():
    records = _records(3000)
    modes = Counter(r["meta_info"]["label_mode"] for r in records)
    assert abs(modes["au_only"] / 3000 - 0.1) < 0.025 and abs(modes["emotion_only"] / 3000 - 0.1) < 0.025
    for r in records:
        meta = r["meta_info"]
        assert meta["emotion"] in EMOTIONS and isinstance(meta["aus"], dict) and "nuisance" in meta
        if meta["label_mode"] == "au_only":
            assert r["labels"] == [] and r["AUs"] is not None
        elif meta["label_mode"] == "emotion_only":
            assert r["AUs"] is None and r["labels"] == [meta["emotion"]]
        else:
            assert r["labels"] == [meta["emotion"]] and r["AUs"] == sort_aus(meta["aus"])
    assert set(Counter(r["meta_info"]["emotion"] for r in records)) == set(EMOTIONS)
    assert records[0]["label_set"] == list(EMOTIONS) and records[0]["au_vocab"] == au_codes(AU_VOCAB["faba"])


def test_aus_are_not_a_function_of_the_emotion():
    records = _records(3000)
    changed = 0
    for r in records:
        truth = {int(code[2:]) for code in r["meta_info"]["aus"]}
        proto = set(sf.couple({a: (3, None) for a in EMOTION_PROTOTYPES[r["meta_info"]["emotion"]]}))
        changed += truth != proto
        levels = [v["intensity"] for v in r["meta_info"]["aus"].values()]
        assert all(CFG.intensity_range[0] <= lv <= CFG.intensity_range[1] for lv in levels)
        assert not any(frozenset((a, b)) in sf.CONFLICTS for a in truth for b in truth if a < b)
    # ~15% drop one + ~15% add one (a few adds are no-ops) -> about a quarter of the samples differ.
    assert 0.18 < changed / 3000 < 0.34


def test_jaw_drop_implies_lips_part_in_labels():
    seen = 0
    for r in _records(1500):
        truth = r["meta_info"]["aus"]
        if "AU26" in truth or "AU27" in truth:
            seen += 1
            assert "AU25" in truth
            assert r["AUs"] is None or "AU25" in r["AUs"]
    assert seen > 50
    assert sf.couple({26: (4, None)}) == {26: (4, None), 25: (4, None)}
    assert sf.couple({27: (2, None), 25: (5, None)})[25] == (5, None)


def test_contempt_is_unilateral():
    config = sf.SynthFacesConfig(emotions=("contempt",), p_drop_au=0.0, p_add_au=0.0)
    sides = Counter()
    for r in _records(60, config):
        aus = r["meta_info"]["aus"]
        assert set(aus) == {"AU12", "AU14"} and aus["AU12"]["side"] == aus["AU14"]["side"] in ("L", "R")
        sides[aus["AU12"]["side"]] += 1
    assert sides["L"] and sides["R"]


def test_export_round_trips(tmp_path: Path):
    config = sf.SynthFacesConfig(p_au_only=0.3, p_emotion_only=0.3)
    describe = lambda r: f"<think>{r['id']}</think>"  # noqa: E731
    path = sf.export_split(tmp_path, "val", 12, seed=2, config=config, describe=describe, progress=False)
    assert path == tmp_path / "val.jsonl" and not list(tmp_path.glob(".*tmp"))
    lines = path.read_text().splitlines()
    assert len(lines) == 12
    raw = json.loads(lines[0])
    assert raw["image"] == f"images/val/{raw['id']}.jpg" and raw["dataset"] == "synthfaces"
    for i, record in enumerate(sf.read_split(path)):
        img, expected = sf.render_sample(i, "val", 2, config)
        assert Path(record["image"]).is_file()
        assert np.array_equal(np.asarray(Image.open(record["image"]).convert("RGB")), np.asarray(img))
        assert record["description"] == f"<think>{expected['id']}</think>"
        for key in ("id", "AUs", "labels", "label_set", "au_vocab", "meta_info", "question"):
            assert record[key] == expected[key], key


def test_cli_exports_and_draws_sheets(tmp_path: Path, monkeypatch):
    import facial_r1.data.synthfaces.__main__ as cli

    monkeypatch.setattr(cli, "template_describer", lambda: None)
    sheets = ["--contact-sheet", str(tmp_path / "sheet.png"), "--au-sheet", str(tmp_path / "au.png")]
    main(
        ["--out", str(tmp_path), "--n", "8", "--seed", "1", "--split", "train,test", "--no-progress", *sheets]
    )
    for split in ("train", "test"):
        assert len((tmp_path / f"{split}.jsonl").read_text().splitlines()) == 8
        assert len(list((tmp_path / "images" / split).glob("*.jpg"))) == 8
    assert Image.open(tmp_path / "sheet.png").size[0] == 6 * 224


def test_cli_module_runs_as_a_script(tmp_path: Path):
    cmd = [
        sys.executable,
        "-m",
        "facial_r1.data.synthfaces",
        "--out",
        str(tmp_path),
        "--n",
        "8",
        "--image-size",
        "64",
    ]
    out = subprocess.run([*cmd, "--no-progress"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first = json.loads((tmp_path / "train.jsonl").read_text().splitlines()[0])
    assert Image.open(tmp_path / first["image"]).size == (64, 64)


def test_contact_sheet_covers_every_emotion(tmp_path: Path):
    path = sf.contact_sheet(tmp_path / "c.png", n=16, seed=0)
    assert Image.open(path).size[0] == 6 * 224


@pytest.mark.parametrize(
    "kwargs",
    [
        {"intensity_range": (0, 5)},
        {"emotions": ("joy",)},
        {"au_vocab": (1, 11)},
        {"p_au_only": 0.7, "p_emotion_only": 0.5},
        {"contempt_sides": ("X",)},
        {"nuisance": {"jpeg_quality": (90, 80)}},
    ],
)
def test_config_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        sf.SynthFacesConfig(**kwargs)


def test_config_accepts_hydra_style_lists_and_dicts():
    config = sf.SynthFacesConfig(intensity_range=[1, 3], nuisance={"roll_deg": 0.0, "noise_std": [0, 1]})
    assert config.intensity_range == (1, 3) and config.nuisance.noise_std == (0.0, 1.0)


def test_cli_falls_back_without_the_template_teacher(monkeypatch, caplog):
    import facial_r1.data.synthfaces.__main__ as cli

    monkeypatch.setitem(sys.modules, "facial_r1.data.teachers.template", None)  # makes the import fail
    with caplog.at_level("WARNING"):
        assert cli.template_describer() is None
    assert "template teacher unavailable" in caplog.text


def test_no_nuisance_exports_lossless_png(tmp_path: Path):
    config = sf.SynthFacesConfig(nuisance=sf.NuisanceConfig.off())
    record = sf.read_split(sf.export_split(tmp_path, "test", 2, seed=0, config=config, progress=False))[1]
    assert record["image"].endswith(".png")
    spec = sf.sample_spec(1, "test", 0, config)
    expected = sf.render_face(spec.identity, spec.aus, spec.nuisance)
    assert np.array_equal(np.asarray(Image.open(record["image"])), np.asarray(expected))
