"""Reward components, the published-code replicas, the composite and the Hydra presets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from facial_r1.facs import BASIC7, EMOTIONS
from facial_r1.rewards import (
    AUF1Reward,
    CompositeReward,
    ConsistencyReward,
    EmotionAccuracyReward,
    FormatReward,
    OfficialAccuracyReward,
    OfficialAUReward,
    OfficialFormatReward,
)
from facial_r1.rewards.official import official_answers, official_format_ok, official_think

CONF = Path(__file__).resolve().parents[1] / "conf"
PRESETS = ["au_acc_format", "acc_format", "au_format", "format_only", "au_acc_format_consistency", "official"]


def sample(aus=("AU6", "AU12"), labels=("happiness",), label_set=BASIC7, au_vocab=()):
    return {
        "id": "s",
        "AUs": None if aus is None else list(aus),
        "labels": list(labels),
        "label_set": list(label_set),
        "au_vocab": list(au_vocab),
    }


def one(component, completion: str, s: dict | None = None):
    return component([completion], [s if s is not None else sample()])[0]


def cot(think: str, answer: str = "happiness") -> str:
    return f"<think>{think}</think><answer>{answer}</answer>"


# --- own components -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "gold", "kwargs", "expected"),
    [
        (cot("AU6 and AU12"), ("AU6", "AU12"), {}, 1.0),
        (cot("AU12"), ("AU6", "AU12"), {}, 2 / 3),  # p 1, r 1/2
        (cot("AU6, AU12, AU25, AU26"), ("AU6", "AU12"), {}, 2 / 3),  # p 1/2, r 1
        (cot("AU4"), ("AU6", "AU12"), {}, 0.0),
        (cot("nothing"), ("AU6", "AU12"), {}, 0.0),
        (cot("nothing"), (), {}, 1.0),  # annotated, none active, none predicted
        (cot("AU4"), (), {}, 0.0),
        (cot("AU12"), ("AU6", "AU12"), {"beta": 2.0}, 5 * 0.5 / (4 + 0.5)),  # recall-weighted
        (cot("AU12"), ("AU6", "AU12"), {"signed": True}, 2 * (2 / 3) - 1),
        (cot("nothing"), ("AU6", "AU12"), {"signed": True}, -1.0),
        (cot("no AU4, AU6 and AU12"), ("AU6", "AU12"), {}, 1.0),
        (cot("no AU4, AU6 and AU12"), ("AU6", "AU12"), {"drop_negated": False}, 0.8),
        (cot("cheek raiser and lip corner puller"), ("AU6", "AU12"), {}, 1.0),
        (cot("cheek raiser and lip corner puller"), ("AU6", "AU12"), {"map_au_names": False}, 0.0),
        ("AU6 AU12 <think>x</think><answer>y</answer>", ("AU6", "AU12"), {}, 0.0),
        ("AU6 AU12 <think>x</think><answer>y</answer>", ("AU6", "AU12"), {"scope": "completion"}, 1.0),
        (cot("AU06 and AU 12"), ("au6", "AU012"), {}, 1.0),  # gold codes are normalised too
    ],
)
def test_au_f1(completion: str, gold, kwargs: dict, expected: float) -> None:
    assert one(AUF1Reward(**kwargs), completion, sample(aus=gold)) == pytest.approx(expected)


def test_au_f1_not_applicable_and_vocab() -> None:
    assert one(AUF1Reward(), cot("AU12"), sample(aus=None)) is None
    s = sample(aus=("AU12",), au_vocab=("AU1", "AU12"))
    assert one(AUF1Reward(), cot("AU7 and AU12"), s) == 1.0  # AU7 is not coded by this dataset: masked
    assert one(AUF1Reward(restrict_to_vocab=False), cot("AU7 and AU12"), s) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        AUF1Reward(scope="answer")
    with pytest.raises(ValueError):
        AUF1Reward(beta=0)


@pytest.mark.parametrize(
    ("completion", "labels", "label_set", "expected"),
    [
        (cot("x", "happiness"), ("happiness",), BASIC7, 1.0),
        (cot("x", "Happy."), ("happiness",), BASIC7, 1.0),
        (cot("x", "sadness"), ("happiness",), BASIC7, 0.0),
        (cot("x", "happiness, sadness"), ("happiness",), BASIC7, 0.0),  # hedging scores nothing
        (cot("x", "happiness or sadness or fear"), ("happiness",), BASIC7, 0.0),
        (cot("x", ""), ("happiness",), BASIC7, 0.0),
        ("happiness", ("happiness",), BASIC7, 0.0),  # no answer block
        (cot("x", "contempt"), ("contempt",), BASIC7, 0.0),  # outside the closed set
        (cot("x", "contempt"), ("contempt",), EMOTIONS, 1.0),
        (cot("x", "happiness"), ("Happiness",), BASIC7, 1.0),  # gold label normalised
        (cot("x", "happiness"), (), BASIC7, None),  # not applicable
    ],
)
def test_emotion_accuracy(completion: str, labels, label_set, expected) -> None:
    assert one(EmotionAccuracyReward(), completion, sample(labels=labels, label_set=label_set)) == expected


@pytest.mark.parametrize(
    ("completion", "strict", "expected"),
    [
        (cot("x"), True, 1.0),
        (" " + cot("x"), True, 0.0),
        (" " + cot("x"), False, 1.0),
        ("<think>x</think>", False, 0.0),
        (cot(""), True, 0.0),
    ],
)
def test_format(completion: str, strict: bool, expected: float) -> None:
    assert one(FormatReward(strict=strict), completion) == expected


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (cot("AU6 and AU12 indicate happiness", "happiness"), 1.0),
        (cot("AU6 and AU12 indicate happiness", "sadness"), 0.0),  # contradiction
        (cot("AU6 and AU12", "happiness"), 0.0),  # the reasoning concludes nothing
        (cot("this indicates happiness", "happy or sad"), 0.0),  # no valid answer
        (cot("not sadness but happiness", "happiness"), 1.0),
    ],
)
def test_consistency(completion: str, expected: float) -> None:
    assert one(ConsistencyReward(), completion, sample(labels=())) == expected


# --- published-code replicas ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "gold", "expected"),
    [
        (cot("AU6 and AU12"), ("AU6", "AU12"), 1.0),
        (cot("au6 and au12"), ("AU6", "AU12"), 1.0),  # case-insensitive tokens
        (cot("AU12"), ("AU6", "AU12"), 2 * (2 / 3) - 1),
        (cot("AU06 and AU12"), ("AU6", "AU12"), 0.0),  # "AU06" is not "AU6": F1 1/2
        (cot("AU 6 and AU12"), ("AU6", "AU12"), 2 * (2 / 3) - 1),  # "AU 6" is no token
        (cot("no AU4, AU6, AU12"), ("AU6", "AU12"), 2 * 0.8 - 1),  # negations counted
        (cot("lip corner puller"), ("AU12",), -1.0),  # names not read: nothing predicted
        (cot("AU4"), ("AU12",), -1.0),
        ("AU12 without think", ("AU12",), -1.0),
        ("<THINK>AU12</Think> rest", ("AU12",), 1.0),  # think tags case-insensitive
        ("<think>AU4</think><think>AU12</think>", ("AU12",), -1.0),  # first think only
        (cot("AU12"), (), 0.0),
        (cot("AU12"), None, 0.0),
    ],
)
def test_official_au(completion: str, gold, expected: float) -> None:
    assert one(OfficialAUReward(), completion, sample(aus=gold)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("completion", "labels", "expected"),
    [
        (cot("x", " happiness "), ("happiness",), 1.0),
        (cot("x", "Happiness"), ("happiness",), 0.0),  # case-sensitive
        (cot("x", "happy"), ("happiness",), 0.0),  # no synonyms
        ("<answer>sadness</answer><answer>happiness</answer>", ("happiness",), 1.0),  # last answer
        ("  happiness\n", ("happiness",), 1.0),  # no tags: the whole completion
        (cot("x", "happiness"), ("happiness", "surprise"), 1.0),  # first label only
        (cot("x", "surprise"), ("happiness", "surprise"), 0.0),
        (cot("x", "happiness"), (), 0.5),
    ],
)
def test_official_accuracy(completion: str, labels, expected: float) -> None:
    assert one(OfficialAccuracyReward(), completion, sample(labels=labels)) == expected


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (cot("x"), 1.0),
        ("<think></think>\n<answer></answer>", 1.0),  # empty blocks pass
        ("<think>a</think><answer>b</answer><answer>c</answer>", 1.0),  # lazy .*? stretches
        (" " + cot("x"), 0.0),
        (cot("x") + "\n", 0.0),
        ("<think>a</think>x<answer>b</answer>", 0.0),
    ],
)
def test_official_format(completion: str, expected: float) -> None:
    assert one(OfficialFormatReward(), completion) == expected


_TAGGY = st.lists(
    st.sampled_from(
        ["<think>", "</think>", "<answer>", "</answer>", "<THINK>", "</Think>", "a", " ", "\n", "\u212a"]
    ),
    max_size=14,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(text=st.one_of(_TAGGY, st.text(max_size=40)))
def test_official_linear_scans_match_the_published_patterns(text: str) -> None:
    think = re.search(r"<think>(.*?)</think>", text, re.DOTALL | re.IGNORECASE)
    assert official_think(text) == (think.group(1) if think else None)
    assert official_answers(text) == re.findall(r"<answer>(.*?)</answer>", text, re.DOTALL)
    expected = re.fullmatch(r"<think>.*?</think>\s*<answer>.*?</answer>", text, re.DOTALL) is not None
    assert official_format_ok(text) == expected


# --- composite -------------------------------------------------------------------------------------------------


def test_composite_weights_none_and_clamp() -> None:
    reward = CompositeReward(
        {
            "au_f1": AUF1Reward(weight=2.0),
            "emotion_accuracy": EmotionAccuracyReward(weight=0.5),
            "format": FormatReward(),
        }
    )
    completions = [cot("AU12 indicates happiness"), cot("AU12", "sadness"), "garbage"]
    samples = [sample(aus=("AU12",)), sample(aus=None), sample(aus=("AU12",), labels=())]
    out = reward(completions, samples)
    assert out.names == reward.names == ["au_f1", "emotion_accuracy", "format"]
    assert out.per_component == {
        "au_f1": [1.0, None, 0.0],
        "emotion_accuracy": [1.0, 0.0, None],
        "format": [1.0, 1.0, 0.0],
    }
    assert out.total == [2.0 + 0.5 + 1.0, 0.0 + 1.0, 0.0]  # None adds nothing
    assert out.rows()[0] == {"au_f1": 1.0, "emotion_accuracy": 1.0, "format": 1.0, "total": 3.5}
    stats = out.summary("train/reward/")
    assert stats["train/reward/au_f1/mean"] == 0.5  # over the two applicable completions
    assert stats["train/reward/au_f1/std"] == 0.5
    assert stats["train/reward/au_f1/applicable"] == pytest.approx(2 / 3)
    assert stats["train/reward/total/mean"] == pytest.approx((3.5 + 1.0) / 3)

    clamped = CompositeReward(reward.components, clamp=OmegaConf.create([0.0, 2.0]))
    assert clamped(completions, samples).total == [2.0, 1.0, 0.0]


def test_composite_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        CompositeReward({})
    with pytest.raises(TypeError):
        CompositeReward({"x": {"_target_": "facial_r1.rewards.FormatReward"}})
    with pytest.raises(ValueError):
        CompositeReward({"format": FormatReward()}, clamp=[1, 0])
    with pytest.raises(ValueError):
        CompositeReward({"format": FormatReward()})(["a", "b"], [sample()])


def _compose(preset: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(overrides=[f"+reward={preset}"])


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_compose_and_instantiate(preset: str) -> None:
    cfg = _compose(preset)
    reward = instantiate(cfg.reward)
    assert isinstance(reward, CompositeReward)
    assert reward.names == list(cfg.reward.components)
    for name, component in reward.components.items():
        assert component.name == name  # the config key is the component's own name
    out = reward([cot("AU6 and AU12 indicate happiness")], [sample()])
    assert out.total[0] == pytest.approx(len(reward.names))  # a perfect completion earns every point


def test_official_preset_reproduces_published_totals() -> None:
    reward = instantiate(_compose("official").reward)
    assert reward.clamp == (-10.0, 10.0)
    out = reward(["happiness", cot("no AU4 AU12", "x")], [sample(aus=("AU12",)), sample(aus=None, labels=())])
    # 1) no tags: AU -1, accuracy 1 (whole text), format 0; 2) AU 0.0 (no gold), accuracy 0.5, format 1
    assert out.total == [0.0, 1.5]


def test_weights_come_from_config() -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            overrides=["+reward=au_acc_format", "reward.components.au_f1.weight=3", "reward.clamp=[0,4]"]
        )
    reward = instantiate(cfg.reward)
    assert reward.weight("au_f1") == 3.0
    assert reward([cot("AU6 AU12 happiness")], [sample()]).total == [4.0]


# --- property: no string makes a component raise or leave its range --------------------------------------------

ALL_COMPONENTS = [
    AUF1Reward(),
    AUF1Reward(signed=True, beta=0.5, drop_negated=False, map_au_names=False, scope="completion"),
    AUF1Reward(restrict_to_vocab=True),
    EmotionAccuracyReward(),
    FormatReward(),
    FormatReward(strict=False),
    ConsistencyReward(),
    OfficialAUReward(),
    OfficialAccuracyReward(),
    OfficialFormatReward(),
]
_PIECES = st.sampled_from(
    ["<think>", "</think>", "<answer>", "</answer>", "AU", "AU12", "AU6", "au 4", "AU999", "no ", "not ", ",", " ",
     "\n", "happiness", "sadness", "happy, sad", " or ", "lip corner puller", "é", "😀", "\u212a", "\x00", "0"]
)  # fmt: skip
_COMPLETION = st.one_of(st.text(max_size=200), st.lists(_PIECES, max_size=80).map("".join))
_SAMPLE = st.builds(
    sample,
    aus=st.one_of(
        st.none(), st.lists(st.sampled_from(["AU1", "AU6", "AU12", "au04", "AU3", "junk"]), max_size=4)
    ),
    labels=st.lists(st.sampled_from([*EMOTIONS, "Happy", "other"]), max_size=3),
    label_set=st.sampled_from([BASIC7, EMOTIONS, ()]),
    au_vocab=st.lists(st.sampled_from(["AU1", "AU6", "AU12"]), max_size=3),
)


def _check_range(completions: list[str], samples: list[dict]) -> None:
    for component in ALL_COMPONENTS:
        values = component(completions, samples)
        assert len(values) == len(completions)
        for value in values:
            if value is not None:
                assert isinstance(value, float) and component.low <= value <= component.high, (
                    component,
                    value,
                )


@settings(max_examples=150, deadline=None)
@given(completions=st.lists(_COMPLETION, min_size=1, max_size=4), s=_SAMPLE)
def test_no_string_breaks_a_component(completions: list[str], s: dict) -> None:
    _check_range(completions, [s] * len(completions))


def test_huge_and_repeated_tag_completions() -> None:
    huge = [
        "x" * 100_000,
        "<think>" * 12_000 + "</answer>" * 2_000,
        cot("AU12 " * 20_000),
        "<answer>happiness</answer>" * 4_000,
        "<think>" + "\u212a😀" * 50_000 + "</think><answer>" + "happy, " * 5_000 + "</answer>",
    ]
    _check_range(huge, [sample()] * len(huge))


def test_au_f1_unknown_is_not_absent() -> None:
    """BP4D code 9 ("not coded"): naming that AU costs nothing; before masking it cost F1 1.0 -> 0.889."""
    coded9 = dict(sample(aus=("AU1", "AU2", "AU4", "AU6")), meta_info={"unknown_aus": ["AU12"]})
    completion = cot("AU1 AU2 AU4 AU6 AU12")
    assert one(AUF1Reward(), completion, coded9) == 1.0
    assert one(AUF1Reward(restrict_to_vocab=False), completion, coded9) == pytest.approx(8 / 9)
    # a real miss still costs: gold AU1 unpredicted, the uncoded AU12 still ignored
    assert one(AUF1Reward(), cot("AU2 AU4 AU6 AU12"), coded9) == pytest.approx(2 * 3 / 7)


# --- the paper-era official reward (reward=official_paper) ------------------------------------------------------


def test_levenshtein_ratio_and_cleaning_by_hand() -> None:
    from facial_r1.rewards.official_paper import levenshtein_ratio, paper_clean

    assert levenshtein_ratio("sadness", "happiness") == pytest.approx(0.625)  # LCS "aness": 2*5 / 16
    assert levenshtein_ratio("kitten", "sitting") == pytest.approx(8 / 13)  # python-Levenshtein's 0.6153846
    assert levenshtein_ratio("", "") == 1.0 and levenshtein_ratio("abc", "") == 0.0
    assert paper_clean("<think>x</think><answer>a</answer><answer> Happiness.</answer>") == "happiness"
    assert paper_clean("Happy\nface \nnow") == "happy face now"


def test_official_paper_accuracy_by_hand() -> None:
    from facial_r1.rewards import OfficialPaperAccuracyReward

    acc = OfficialPaperAccuracyReward()
    assert one(acc, cot("x", "Sadness."), sample(labels=("happiness",))) == pytest.approx(0.625)
    assert one(acc, cot("x", "HAPPINESS"), sample(labels=("happiness",))) == 1.0
    assert (
        one(acc, "happiness", sample(labels=("happiness",))) == 1.0
    )  # no answer block: the whole completion
    assert one(acc, cot("x", "sadness"), sample(labels=())) == 0.5


def paper_records():
    rows = [("a1", ["AU1"], ["happiness"]), ("a2", ["AU1", "AU2"], ["happiness"]), ("a3", None, ["sadness"])]
    return [{**sample(aus=aus, labels=labels), "id": i, "dataset": "d"} for i, aus, labels in rows]


def test_inverse_au_frequency_weights_by_hand() -> None:
    from facial_r1.rewards.official_paper import paper_weights

    # AU1 seen twice, AU2 once: inverse frequencies 3/2 and 3 -> normalised 1/3 and 2/3 (up to the 1e-6 smoothing).
    # Raw weights 1/3, 1, 0 (no AUs: 0 instead of the published crash); min-max -> 1/3, 1, 0; x 10.
    assert paper_weights(paper_records()) == pytest.approx([10 / 3, 10.0, 0.0], abs=1e-4)
    same = [{**r, "AUs": ["AU1"]} for r in paper_records()]
    assert paper_weights(same) == [0.0, 0.0, 0.0]  # one raw weight for all: (w - min) / 1 = 0, as published


def test_official_paper_preset_weights_every_reward_before_the_clamp() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(
        config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"
    ):
        reward = instantiate(compose("train", overrides=["reward=official_paper", "stage=grpo"]).reward)
    records = paper_records()
    with pytest.raises(ValueError, match="prepare"):
        reward([cot("AU1", "happiness")], records[:1])
    reward.prepare(records)
    perfect = "<think>AU1 AU2</think><answer>happiness</answer>"
    out = reward([cot("AU1", "happiness"), perfect, cot("AU1", "sadness"), cot("AU1", "sadness")], [*records, {
        **records[2], "labels": []}])  # fmt: skip
    # a1 (weight 10/3): AU 1, accuracy 1, format 1 -> 10; a2 (weight 10): 30 -> clamped to 10
    assert out.per_component["official_au"][:2] == pytest.approx([10 / 3, 10.0], abs=1e-3)
    assert out.total[0] == pytest.approx(10.0, abs=1e-3) and out.total[1] == 10.0
    # a3 (weight 0, no gold AUs): everything weighted to 0; without a label the 0.5 stays unweighted
    assert out.total[2] == 0.0 and out.total[3] == 0.5
    assert out.per_component["official_paper_accuracy"][3] == 0.5
