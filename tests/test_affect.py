"""Affect targets end to end: schema, sources (AffectNet V/A, DISFA intensity, RAF-DB compound), SynthFACS, the
parser's intensity and <va> reading, the three rewards and their presets, the metrics (ICC, CCC) and plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from fixtures_affect import make_rafdb_compound
from fixtures_datasets import AFFECTNET_HEADER, jsonl_row, make_affectnet, make_disfa, make_jsonl, write_image
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from hypothesis import given, settings
from hypothesis import strategies as st

from facial_r1.affect import (
    COMPOUND_EMOTIONS,
    answer_components,
    compound_components,
    expression_va,
    normalize_compound,
)
from facial_r1.data.prompts import load_prompts
from facial_r1.data.schema import DataError, check_targets, from_arrow_row, make_record, to_arrow_row
from facial_r1.data.sources import AffectNetSource, DisfaSource, FacialR1JsonlSource, RafDbCompoundSource
from facial_r1.data.synthfaces import SynthFacesConfig, sample_spec, spec_record
from facial_r1.data.teachers import TemplateTeacher, build_sft_records
from facial_r1.evaluation.affect_metrics import ccc, icc_3_1
from facial_r1.evaluation.metrics import compute_metrics
from facial_r1.evaluation.report import write_evaluation
from facial_r1.evaluation.runner import headline_metrics
from facial_r1.facs import AU_VOCAB, BASIC7
from facial_r1.parsing import parse, read_va
from facial_r1.rewards import (
    AUIntensityReward,
    CompositeReward,
    CompoundAccuracyReward,
    FormatReward,
    ValenceArousalReward,
)

CONF = Path(__file__).resolve().parents[1] / "conf"


def cot(think: str, answer: str = "happiness", va: str | None = None) -> str:
    text = f"<think>{think}</think><answer>{answer}</answer>"
    return text if va is None else f"{text}<va>{va}</va>"


def record(**targets) -> dict:
    fields = {"aus": ["AU6", "AU12"], "labels": ["happiness"], **targets}
    return make_record(id="r", dataset="t", image="/x.jpg", **fields)


# --- facts -------------------------------------------------------------------------------------------------------


def test_compound_label_order_and_components() -> None:
    # RAF-DB documentation, 1-indexed: 1 Happily Surprised ... 11 Disgustedly Surprised.
    assert COMPOUND_EMOTIONS[0] == "happily surprised" and COMPOUND_EMOTIONS[3] == "sadly angry"
    assert COMPOUND_EMOTIONS[10] == "disgustedly surprised" and len(COMPOUND_EMOTIONS) == 11
    assert compound_components("sadly angry") == ("sadness", "anger")
    assert len({frozenset(compound_components(c)) for c in COMPOUND_EMOTIONS}) == 11  # a pair names one class
    assert normalize_compound(" Happily-Surprised ") == "happily surprised"
    assert (
        normalize_compound("happiness and surprise")
        == normalize_compound("surprise + joy")
        == "happily surprised"
    )
    assert normalize_compound("happily fearful") is None  # a pair outside the 11 classes
    assert answer_components("happily fearful") == {"happiness", "fear"}
    assert answer_components("happy") == {"happiness"} and answer_components("happily happy") == frozenset()
    assert (
        answer_components("fear, anger and sadness") == frozenset() and answer_components(None) == frozenset()
    )


def test_expression_va_is_the_anchor_scaled_by_strength() -> None:
    assert expression_va(("happiness",), [5, 5, 5]) == (0.8, 0.4)
    assert expression_va(("happiness",), [3, 2]) == pytest.approx((0.8 * 0.5, 0.4 * 0.5))
    assert expression_va(("sadness",), []) == (0.0, 0.0)  # no AU active: the origin
    assert expression_va(("happiness", "surprise"), [5]) == pytest.approx((0.5, 0.6))  # mean of the anchors


# --- schema --------------------------------------------------------------------------------------------------------


def test_targets_are_optional_and_checked() -> None:
    plain = record()
    assert (plain["AU_intensity"], plain["valence"], plain["arousal"], plain["compound"]) == (None,) * 4
    full = record(au_intensity={"au06": "c", 12: 5}, valence=-0.5, arousal=1, compound="Sadly-Angry")
    assert full["AU_intensity"] == {"AU6": 3, "AU12": 5} and full["arousal"] == 1.0
    assert full["compound"] == "sadly angry"
    assert from_arrow_row(to_arrow_row(full)) == full and from_arrow_row(to_arrow_row(plain)) == plain
    assert check_targets(au_intensity={})["AU_intensity"] == {}  # coded, nothing active: not None
    for bad, message in [
        ({"au_intensity": {"AU12": 6}}, "level 1..5"),
        ({"au_intensity": {"AU12": 0}}, "level 1..5"),
        ({"au_intensity": {"AU3": 2}}, "unknown AU"),
        ({"valence": 0.2}, "come together"),
        ({"valence": 1.2, "arousal": 0.0}, r"\[-1, 1\]"),
        ({"valence": float("nan"), "arousal": 0.0}, r"\[-1, 1\]"),
        ({"compound": "happily fearful"}, "unknown compound"),
    ]:
        with pytest.raises(ValueError, match=message):
            check_targets(**bad)


def test_jsonl_reads_targets_and_names_bad_ones(tmp_path) -> None:
    good = jsonl_row(0, AU_intensity={"AU06": 2, "AU12": "E"}, valence=0.3, arousal=-0.1)
    make_jsonl(tmp_path, {"train": [good], "test": [jsonl_row(1, compound="angrily disgusted", labels=[])]})
    source = FacialR1JsonlSource(tmp_path)
    (train,) = source.records("train")
    assert train["AU_intensity"] == {"AU6": 2, "AU12": 5} and (train["valence"], train["arousal"]) == (
        0.3,
        -0.1,
    )
    assert source.records("test")[0]["compound"] == "angrily disgusted"
    bad = tmp_path / "bad"
    make_jsonl(bad, {"train": [jsonl_row(0), jsonl_row(1, valence=3.0, arousal=0.0)], "test": []})
    with pytest.raises(DataError, match=r"train\.jsonl:2: valence must be a number in \[-1, 1\]"):
        FacialR1JsonlSource(bad).records("train")
    outside = tmp_path / "outside"
    make_jsonl(
        outside, {"train": [jsonl_row(0, au_vocab=["AU6", "AU12"], AU_intensity={"AU4": 2})], "test": []}
    )
    with pytest.raises(DataError, match=r"train\.jsonl:1: AU_intensity of \['AU4'\], outside"):
        FacialR1JsonlSource(outside).records("train")


# --- sources (fixtures in the published layouts) ----------------------------------------------------------------


def test_affectnet_exposes_valence_arousal_as_targets(tmp_path) -> None:
    make_affectnet(tmp_path)  # every row: valence 0.25, arousal -0.5
    train = AffectNetSource(tmp_path, val_fraction=0.0).records("train")
    assert {(r["valence"], r["arousal"]) for r in train} == {(0.25, -0.5)}
    assert train[0]["meta_info"]["valence"] == 0.25  # still in meta_info too
    rows = [["1/a.jpg", 1, 1, 9, 9, "", 1, -2, -2], ["1/b.jpg", 1, 1, 9, 9, "", 2, 0.5, 1.5]]
    with open(tmp_path / "validation.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([AFFECTNET_HEADER, *rows])
    for name in ("a", "b"):
        write_image(tmp_path / "Manually_Annotated_Images" / "1" / f"{name}.jpg")
    skip = AffectNetSource(tmp_path, on_error="skip")
    (not_rated,) = skip.records("test")
    assert (not_rated["valence"], not_rated["arousal"]) == (None, None)  # -2 = not rated, never a value
    assert skip.report.errors[0].line == 3 and "outside [-1, 1]" in skip.report.errors[0].message
    with pytest.raises(DataError, match=r"validation\.csv:3: valence/arousal \(0\.5, 1\.5\) outside"):
        AffectNetSource(tmp_path).records("test")


def test_disfa_exposes_intensities(tmp_path) -> None:
    make_disfa(tmp_path, ["SN001", "SN002", "SN003"], frames=2)  # level of AU n at frame f: (n + f) % 6
    test = {r["id"]: r for r in DisfaSource(tmp_path, fold=0).records("test")}
    frame1 = test["SN001/1"]
    expected = {f"AU{a}": (a + 1) % 6 for a in AU_VOCAB["disfa"] if (a + 1) % 6 >= 1}
    assert frame1["AU_intensity"] == expected
    assert frame1["AU_intensity"]["AU4"] == 5 and "AU5" not in frame1["AU_intensity"]  # 0 = absent
    assert frame1["AU_intensity"]["AU9"] == 4
    # Level 1 (AU6 at frame 1 of this fixture? (6+1)%6 = 1) is coded but below the occurrence threshold 2.
    assert frame1["AU_intensity"]["AU6"] == 1 and "AU6" not in frame1["AUs"]


def test_rafdb_compound_reads_the_published_layout(tmp_path) -> None:
    make_rafdb_compound(tmp_path)
    source = RafDbCompoundSource(tmp_path, val_fraction=0.0)
    train = source.records("train")
    assert [r["compound"] for r in train] == list(COMPOUND_EMOTIONS)  # label k -> entry k - 1
    first = train[0]
    assert first["id"] == "train_0001" and first["labels"] == [] and first["AUs"] is None
    assert first["image"].endswith("Image/aligned/train_0001_aligned.jpg")
    assert first["label_set"] == sorted(BASIC7)
    assert [r["compound"] for r in source.records("test")] == ["sadly angry", "disgustedly surprised"]
    bad = tmp_path / "bad"
    make_rafdb_compound(bad, [("train_0001.jpg", 1), ("train_0002.jpg", 12)])
    with pytest.raises(DataError, match=r"list_patition_label\.txt:2: label 12 not in 1\.\.11"):
        RafDbCompoundSource(bad).records("train")


def test_rafdb_compound_config_builds(tmp_path) -> None:
    make_rafdb_compound(tmp_path)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["dataset=rafdb_compound", f"dataset.root={tmp_path}"])
    assert len(instantiate(cfg.dataset).records("test")) == 2


# --- SynthFACS ---------------------------------------------------------------------------------------------------


def test_synthfaces_targets_follow_the_documented_mapping() -> None:
    exact = SynthFacesConfig(va_noise=0.0)
    for index in range(30):
        spec = sample_spec(index, config=exact)
        rec = spec_record(spec, "x", exact)
        levels = [level for level, _ in spec.aus.values()]
        expected = tuple(round(x, 3) for x in expression_va((spec.emotion,), levels))
        if spec.label_mode == "au_only":
            assert rec["valence"] is None and rec["labels"] == []
        else:
            assert (rec["valence"], rec["arousal"]) == pytest.approx(expected, abs=1e-9)
        if spec.label_mode == "emotion_only":
            assert rec["AU_intensity"] is None
        else:
            assert rec["AU_intensity"] == {f"AU{a}": lv for a, (lv, _) in spec.aus.items()}
    noisy = [spec_record(sample_spec(i), "x") for i in range(5)]
    assert noisy == [spec_record(sample_spec(i), "x") for i in range(5)]  # deterministic


def test_compound_faces_are_an_option_that_changes_nothing_else() -> None:
    plain, mixed = SynthFacesConfig(), SynthFacesConfig(p_compound=0.5)
    compounds = 0
    for index in range(40):
        a, b = sample_spec(index, config=plain), sample_spec(index, config=mixed)
        assert a.nuisance == b.nuisance and a.identity == b.identity and a.compound is None
        if b.compound is None:
            assert (a.aus, a.emotion, a.va) == (b.aus, b.emotion, b.va)  # own random streams
            continue
        compounds += 1
        rec = spec_record(b, "x", mixed)
        modifier, main = compound_components(b.compound)
        assert b.emotion == main and rec["labels"] == [] and rec["compound"] in (b.compound, None)
        assert not ({17, 26} <= set(b.aus))  # the modifier's conflicting AU gives way
    assert 10 <= compounds <= 30
    surprised = next(
        sample_spec(i, config=SynthFacesConfig(p_compound=1.0, compounds=("disgustedly surprised",)))
        for i in range(1)
    )
    assert {1, 2, 5, 26, 9, 10} <= set(surprised.aus) and 17 not in surprised.aus
    with pytest.raises(ValueError, match="compounds must be"):
        SynthFacesConfig(compounds=("happily fearful",))


# --- parser --------------------------------------------------------------------------------------------------------


def test_teacher_output_round_trips_through_the_parser() -> None:
    teacher = TemplateTeacher(intensities=True, va=True)
    config = SynthFacesConfig(p_compound=0.3)
    records = [spec_record(sample_spec(i, config=config), "x", config) for i in range(40)]
    sft = build_sft_records(records, "all", teacher=teacher)
    assert any(r["compound"] for r in sft)  # compound faces are SFT-eligible
    for rec in sft:
        parsed = parse(rec["description"], label_set=rec["label_set"])
        assert parsed.format_strict_va and not parsed.format_strict
        assert parsed.au_intensities == rec["AU_intensity"] and parsed.intensity_errors == []
        assert parsed.va == pytest.approx((rec["valence"], rec["arousal"]), abs=0.0051)  # 2 decimals
        assert parsed.compound == rec["compound"]
        assert parsed.emotion == (rec["labels"][0] if rec["labels"] else None)
    plain = TemplateTeacher().describe(records[0])
    assert "<va>" not in plain and ", " not in plain.split("(AU")[1].split(")")[0]


@pytest.mark.parametrize(
    ("think", "levels", "errors"),
    [
        ("lips (AU12, D) and cheeks (AU6,b)", {"AU6": 2, "AU12": 4}, []),
        ("( au 12 : d ) and (AU-6 ; intensity 5)", {"AU6": 5, "AU12": 4}, []),
        ("(AU12, F)", {}, ["AU12"]),  # out of A-E
        ("(AU12, 0)", {}, ["AU12"]),  # 0 is absent, not a level of an active AU
        ("(AU12, 7)", {}, ["AU12"]),
        ("(AU12, strong)", {}, ["AU12"]),
        ("(AU12, DD)", {}, ["AU12"]),
        ("(AU12, D) then (AU12, B)", {}, ["AU12"]),  # two levels for one AU
        ("(AU12, D) then (AU12, d)", {"AU12": 4}, []),
        ("(AU6, AU12)", {}, []),  # an AU list, not a level
        ("(AU12)", {}, []),  # no level stated: nothing, and no error
        ("no AU12 (AU12, D)", {}, []),  # a negated AU gets no level
        ("(AU3, C)", {}, []),  # not a FACS AU
    ],
)
def test_intensity_parsing(think: str, levels: dict, errors: list) -> None:
    parsed = parse(cot(think))
    assert (parsed.au_intensities, parsed.intensity_errors) == (levels, errors)


@pytest.mark.parametrize(
    ("content", "va", "error"),
    [
        ("0.5, -0.25", (0.5, -0.25), None),
        ("  +.5 ;-1  ", (0.5, -1.0), None),
        ("1 0", (1.0, 0.0), None),
        ("Valence: 0.4, AROUSAL -0.2", (0.4, -0.2), None),
        ("1.5, 0", None, "out_of_range"),
        ("0, -1.01", None, "out_of_range"),
        ("1" * 400 + ", 0", None, "out_of_range"),  # a huge number is out of range, not a crash
        ("0.5", None, "malformed"),
        ("0.5, 0.2, 0.1", None, "malformed"),
        ("nan, 0", None, "malformed"),
        ("1e-1, 0", None, "malformed"),
        ("high, low", None, "malformed"),
        ("", None, "malformed"),
    ],
)
def test_va_block_parsing(content: str, va, error) -> None:
    assert read_va(content) == (va, error)
    parsed = parse(cot("(AU12, D)", va=content))
    assert (parsed.va, parsed.va_error) == (va, error)
    assert parsed.format_strict_va == (va is not None) and parsed.format_lenient_va == (va is not None)
    assert parsed.format_strict is False  # the plain strict format is unchanged: a trailing block breaks it


@pytest.mark.parametrize(
    ("text", "strict", "lenient", "va"),
    [
        (cot("x", va="0.1, 0.2"), True, True, (0.1, 0.2)),
        (cot("x") + "\n <va>0.1,0.2</va>", True, True, (0.1, 0.2)),
        (cot("x") + "<VA> 0.1, 0.2 </ va>", False, True, (0.1, 0.2)),  # tolerant reading, strict needs <va>
        (cot("x", va="0.1, 0.2") + " ", False, True, (0.1, 0.2)),  # nothing after the block
        (cot("x", va="0.1, 0.2") + "<va>0.3, 0.4</va>", False, True, (0.3, 0.4)),  # the last block counts
        ("<va>0.1, 0.2</va>" + cot("x"), False, False, (0.1, 0.2)),  # before the answer
        (cot("x") + "<va>0.1, 0.2", False, False, None),  # unclosed
        (cot("x"), False, False, None),
        ("<think>x</think><va>0.1, 0.2</va><answer>happiness</answer>", False, False, (0.1, 0.2)),
    ],
)
def test_va_format(text: str, strict: bool, lenient: bool, va) -> None:
    parsed = parse(text)
    assert (parsed.format_strict_va, parsed.format_lenient_va, parsed.va) == (strict, lenient, va)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "<think>",
                "</think>",
                "<answer>",
                "</answer>",
                "<va>",
                "</va>",
                "< VA >",
                "(AU12, ",
                "(au6:",
                "D)",
                "F)",
                "0.5",
                ", ",
                "-1",
                "1.5",
                "nan",
                " ",
                "happily surprised",
                "sadly",
                "and",
                "😀",
                "\x00",
                ")",
            ]
        ),  # fmt: skip
        max_size=60,
    ).map("".join)
)
def test_affect_parsing_never_raises(text: str) -> None:
    parsed = parse(text)
    assert parsed.va is None or all(-1.0 <= x <= 1.0 for x in parsed.va)
    assert all(1 <= level <= 5 for level in parsed.au_intensities.values())
    assert parsed.compound is None or parsed.compound in COMPOUND_EMOTIONS


# --- rewards (hand-computed) ---------------------------------------------------------------------------------


def test_au_intensity_reward() -> None:
    gold = record(au_intensity={"AU6": 3, "AU12": 5})
    reward = AUIntensityReward()
    assert reward.score(cot("(AU6, C) (AU12, E)"), gold) == 1.0
    assert reward.score(cot("(AU6, C) (AU12, B)"), gold) == pytest.approx((1.0 + 0.25) / 2)  # |2 - 5| / 4
    assert reward.score(cot("(AU6, A) (AU12)"), gold) == pytest.approx(0.5 / 2)  # no level for AU12: 0
    assert reward.score(cot("(AU6, C) (AU12, F)"), gold) == pytest.approx(0.5)  # malformed level: 0
    assert reward.score(cot("(AU6, C)"), gold) == pytest.approx(0.5)  # AU12 missing: 0
    assert reward.score(cot("(AU6, C) (AU12, E) (AU4, B)"), gold) == 1.0  # extras are the AU F1's business
    assert AUIntensityReward(count_extra=True).score(
        cot("(AU6, C) (AU12, E) (AU4, B)"), gold
    ) == pytest.approx(2 / 3)
    # DISFA-like: AU9 coded at level 1 (below threshold 2) is not among the gold AUs, so not asked for.
    disfa = record(aus=["AU12"], au_intensity={"AU9": 1, "AU12": 2})
    assert reward.score(cot("(AU12, B)"), disfa) == 1.0
    relaxed = record(aus=[], au_intensity={})
    assert reward.score(cot("relaxed face"), relaxed) == 1.0
    assert reward.score(cot("(AU12, B)"), relaxed) == 0.0  # a level stated for a still face
    assert reward.score(cot("(AU12, Z)"), record(aus=None, au_intensity={})) == 0.0  # even a malformed one
    assert reward.score(cot("(AU6, C)"), record()) is None  # no intensity coding


def test_valence_arousal_reward() -> None:
    gold = record(valence=0.5, arousal=-0.5)
    reward = ValenceArousalReward()
    assert reward.score(cot("x", va="0.5, -0.5"), gold) == 1.0
    assert reward.score(cot("x", va="0.25, 0"), gold) == pytest.approx(1 - (0.25 + 0.5) / 4)
    assert reward.score(cot("x", va="-1, 1"), record(valence=1.0, arousal=-1.0)) == 0.0  # the far corner
    for bad in ("2, 0", "0.5", "x, y"):
        assert reward.score(cot("x", va=bad), gold) == 0.0
    assert reward.score(cot("x"), gold) == 0.0
    assert reward.score(cot("x", va="0.5, -0.5"), record()) is None


def test_compound_accuracy_reward() -> None:
    gold = record(labels=[], compound="happily surprised")
    reward = CompoundAccuracyReward()
    assert reward.score(cot("x", "Happily surprised"), gold) == 1.0
    assert reward.score(cot("x", "surprise and happiness"), gold) == 1.0
    assert reward.score(cot("x", "happily disgusted"), gold) == 0.5  # one component right
    assert reward.score(cot("x", "surprised"), gold) == 0.5  # one basic component
    assert reward.score(cot("x", "sadly angry"), gold) == 0.0
    assert reward.score(cot("x", "happy, surprised and sad"), gold) == 0.0
    assert reward.score("happily surprised", gold) == 0.0  # no answer block
    assert CompoundAccuracyReward(partial_credit=0.0).score(cot("x", "surprised"), gold) == 0.0
    assert reward.score(cot("x", "happily surprised"), record()) is None
    with pytest.raises(ValueError, match="partial_credit"):
        CompoundAccuracyReward(partial_credit=2)


def test_format_reward_with_va() -> None:
    good, plain = cot("x", va="0.1, 0.2"), cot("x")
    assert (FormatReward(va=True).score(good, {}), FormatReward(va=True).score(plain, {})) == (1.0, 0.0)
    assert (FormatReward().score(good, {}), FormatReward().score(plain, {})) == (0.0, 1.0)  # unchanged
    assert FormatReward(va=True).score(cot("x", va="0.1, 5"), {}) == 0.0


def _preset(name: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return instantiate(compose(overrides=[f"+reward={name}"]).reward)


@pytest.mark.parametrize(
    ("preset", "names"),
    [
        ("au_acc_format_intensity", ["au_f1", "emotion_accuracy", "format", "au_intensity"]),
        ("au_acc_format_va", ["au_f1", "emotion_accuracy", "format", "valence_arousal", "au_intensity"]),
        ("compound", ["au_f1", "emotion_accuracy", "compound_accuracy", "format"]),
    ],
)
def test_affect_presets(preset: str, names: list[str]) -> None:
    reward = _preset(preset)
    assert isinstance(reward, CompositeReward) and reward.names == names
    assert all(component.name == name for name, component in reward.components.items())
    gold = record(au_intensity={"AU6": 3, "AU12": 5}, valence=0.5, arousal=0.25)
    # Only the V/A preset's format asks for the <va> block; the others' plain strict format forbids it.
    perfect = cot("(AU6, C) (AU12, E) happiness", va="0.5, 0.25" if preset == "au_acc_format_va" else None)
    out = reward([perfect, perfect], [gold, record(labels=[], compound="happily surprised")])
    applicable = [v for v in out.per_component.values() if v[0] is not None]
    assert out.total[0] == pytest.approx(len(applicable))  # a perfect completion earns every applicable point
    if preset == "compound":
        assert out.per_component["compound_accuracy"] == [None, 0.5]  # "happiness": one component of two
        assert out.per_component["emotion_accuracy"][1] is None


def test_affect_prompts_load_and_offer_compounds() -> None:
    prompts = load_prompts()
    rec = record()
    affect = prompts["compact_affect_v1"].user_text(rec)
    assert "(AU12, D)" in affect and "<va>" in affect
    compound = prompts["compact_compound_v1"].user_text(rec)
    assert all(name in compound for name in COMPOUND_EMOTIONS) and "happiness" in compound
    truth = prompts["compact_affect_v1"].synthesis_text(
        record(au_intensity={"AU6": 3}, valence=0.1, arousal=-0.2)
    )
    assert "Levels AU6 C." in truth and "VA 0.10, -0.20." in truth
    assert "Levels" not in prompts["compact_v1"].synthesis_text(record(au_intensity={"AU6": 3}))


# --- metrics (hand-computed ICC / CCC) --------------------------------------------------------------------------


def test_icc_and_ccc_hand_computed() -> None:
    # pred 1,2,3,4 vs gold 1,3,2,4: BMS = 9/3 = 3, SSC = 0, EMS = (10 - 9) / 3, ICC = (3 - 1/3) / (3 + 1/3) = 0.8
    assert icc_3_1([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # cov = 1, var = 1.25 each, same mean: CCC = 2 / 2.5 = 0.8
    assert ccc([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # A constant offset: consistency ICC ignores it, CCC does not: 2 (2/3) / (2/3 + 2/3 + 1) = 4/7
    assert icc_3_1([1, 2, 3], [2, 3, 4]) == pytest.approx(1.0)
    assert ccc([1, 2, 3], [2, 3, 4]) == pytest.approx(4 / 7, abs=1e-6)
    assert icc_3_1([1], [1]) is None and icc_3_1([2, 2], [2, 2]) is None and ccc([], []) is None
    assert ccc([0.5, 0.5], [0.5, 0.5]) is None


def test_affect_metrics_in_compute_metrics(tmp_path) -> None:
    samples = [
        record(aus=["AU12"], au_intensity={"AU12": 4}, valence=0.5, arousal=0.5),
        record(aus=["AU12"], au_intensity={"AU12": 2}, valence=-0.5, arousal=0.1),
        record(aus=[], au_intensity={}, valence=0.0, arousal=-0.5),
        record(labels=[], compound="sadly angry"),
        record(labels=[], compound="sadly angry"),
        record(labels=[], compound="happily surprised"),
    ]
    outputs = [
        cot("(AU12, D)", va="0.5, 0.5"),
        cot("(AU12, C)", va="-0.5, -0.1"),
        cot("(AU12, B)"),  # invalid V/A -> (0, 0); a level for an AU that is absent
        cot("x", "sadly angry"),
        cot("x", "angry"),
        cot("x", "happily surprised"),
    ]
    metrics, rows = compute_metrics(samples, outputs)
    # AU12 over the 3 intensity samples: gold 4, 2, 0 vs pred 4, 3, 2 -> MAE = (0 + 1 + 2) / 3
    assert metrics["au_intensity_labels"] == ["AU12"] and metrics["num_intensity_samples"] == 3
    assert metrics["au_intensity_mae"] == pytest.approx(1.0)
    assert metrics["au_intensity_icc"] == pytest.approx(icc_3_1([4, 3, 2], [4, 2, 0]), abs=1e-6)
    assert metrics["au_intensity_missing_rate"] == 0.0
    # valence pred 0.5, -0.5, 0 vs gold 0.5, -0.5, 0: exact; arousal pred 0.5, -0.1, 0 vs 0.5, 0.1, -0.5
    assert metrics["valence_ccc"] == 1.0 and metrics["valence_rmse"] == 0.0 and metrics["valence_sagr"] == 1.0
    assert metrics["arousal_rmse"] == pytest.approx(((0.2**2 + 0.5**2) / 3) ** 0.5, abs=1e-6)
    assert metrics["arousal_sagr"] == pytest.approx(1 / 3, abs=1e-6) and metrics[
        "va_invalid_rate"
    ] == pytest.approx(1 / 3, abs=1e-6)
    assert metrics["arousal_ccc"] == pytest.approx(ccc([0.5, -0.1, 0.0], [0.5, 0.1, -0.5]), abs=1e-6)
    # compound: 2 of 3 right; recall sadly angry 1/2, happily surprised 1/1 -> UAR 0.75
    assert metrics["compound_acc"] == pytest.approx(2 / 3, abs=1e-6) and metrics["compound_uar"] == 0.75
    assert metrics["compound_invalid_rate"] == pytest.approx(1 / 3, abs=1e-6)
    # Only the first two end in a <va> block; the plain strict format counts that block as a failure.
    assert metrics["format_va_rate"] == pytest.approx(2 / 6, abs=1e-6)
    assert metrics["format_rate"] == pytest.approx(4 / 6, abs=1e-6)
    assert rows[0]["gold_va"] == (0.5, 0.5) and rows[3]["pred_compound"] == "sadly angry"
    assert headline_metrics(metrics, "val")["val/valence_ccc"] == 1.0
    paths = write_evaluation(tmp_path, metrics, rows)
    assert paths["va_scatter"].is_file() and paths["au_intensity_confusion"].is_file()
    json.loads((tmp_path / "metrics.json").read_text())  # still JSON-ready


def test_affect_metrics_absent_without_annotations(tmp_path) -> None:
    metrics, rows = compute_metrics([record()], [cot("AU6 AU12")])
    assert (
        metrics["num_intensity_samples"] == metrics["num_va_samples"] == metrics["num_compound_samples"] == 0
    )
    assert metrics["valence_ccc"] is metrics["au_intensity_icc"] is metrics["compound_acc"] is None
    assert not any(
        k.startswith(("val/valence", "val/au_intensity", "val/compound"))
        for k in headline_metrics(metrics, "val")
    )
    paths = write_evaluation(tmp_path, metrics, rows)
    assert "va_scatter" not in paths and not (tmp_path / "va_scatter.png").exists()


def test_a_plain_prompt_scores_no_intensity_or_va_rather_than_zero(tmp_path) -> None:
    """SynthFACS carries levels and V/A, but a compact_v1 model never states either: None (not measured), not the
    ICC / CCC of an all-zero prediction; the rates still say what was missing."""
    samples = [record(aus=["AU12"], au_intensity={"AU12": 4}, valence=0.5, arousal=0.5),
               record(aus=["AU4"], au_intensity={"AU4": 2}, valence=-0.5, arousal=0.1)]  # fmt: skip
    metrics, rows = compute_metrics(samples, [cot("AU12"), cot("AU4")])
    assert metrics["num_intensity_samples"] == metrics["num_va_samples"] == 2
    for key in ("au_intensity_icc", "au_intensity_mae", "valence_ccc", "arousal_ccc", "valence_rmse"):
        assert metrics[key] is None, key
    assert metrics["au_intensity_missing_rate"] == 1.0 and metrics["va_invalid_rate"] == 1.0
    assert metrics["au_intensity_icc_per_au"] == {}
    paths = write_evaluation(tmp_path, metrics, rows)
    assert "va_scatter" not in paths and "au_intensity_confusion" not in paths
    # one stated level / one valid block is enough to score the rest as predicted-absent / (0, 0)
    metrics, _ = compute_metrics(samples, [cot("(AU12, D)", va="0.5, 0.5"), cot("AU4")])
    assert metrics["au_intensity_mae"] is not None and metrics["valence_rmse"] is not None
    assert metrics["va_invalid_rate"] == 0.5


def test_intensity_metrics_use_the_au_subset() -> None:
    sample = record(aus=["AU12"], au_intensity={"AU12": 3})
    metrics, _ = compute_metrics([sample, sample], [cot("(AU12, C)"), cot("(AU12, C)")], au_subset="disfa8")
    assert metrics["au_intensity_labels"] == [f"AU{a}" for a in (1, 2, 4, 6, 9, 12, 25, 26)]
    assert (
        metrics["au_intensity_mae_per_au"]["AU12"] == 0.0
        and metrics["au_intensity_icc_per_au"]["AU1"] is None
    )


_AFFECT_COMPONENTS = [
    AUIntensityReward(),
    AUIntensityReward(count_extra=True, scope="completion"),
    ValenceArousalReward(),
    CompoundAccuracyReward(),
    FormatReward(va=True),
    FormatReward(strict=False, va=True),
]
_AFFECT_PIECES = st.sampled_from(
    ["<think>", "</think>", "<answer>", "</answer>", "<va>", "</va>", "(AU12, ", "(AU6,", "C)", "9)", "0.5, 0.1",
     "-3, 1", "happily surprised", "surprise", " and ", " ", "no ", "😀", "\x00"]
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    completion=st.one_of(st.text(max_size=200), st.lists(_AFFECT_PIECES, max_size=60).map("".join)),
    data=st.data(),
)
def test_no_string_breaks_an_affect_component(completion: str, data) -> None:
    valence = data.draw(st.one_of(st.none(), st.floats(-1, 1)))
    sample = record(
        aus=data.draw(st.one_of(st.none(), st.lists(st.sampled_from(["AU6", "AU12"]), max_size=2))),
        au_intensity=data.draw(
            st.one_of(st.none(), st.dictionaries(st.sampled_from(["AU6", "AU12"]), st.integers(1, 5)))
        ),
        valence=valence,
        arousal=None if valence is None else 0.0,
        compound=data.draw(st.one_of(st.none(), st.sampled_from(COMPOUND_EMOTIONS))),
    )
    for component in _AFFECT_COMPONENTS:
        (value,) = component([completion], [sample])
        assert value is None or (isinstance(value, float) and 0.0 <= value <= 1.0), (component, value)
