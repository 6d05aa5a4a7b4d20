"""The one parser of completions: tags, AUs, negation, emotion normalisation, robustness."""

from __future__ import annotations

import concurrent.futures

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facial_r1.facs import BASIC7, EMOTIONS
from facial_r1.parsing import Parsed, concluded_emotion, extract_aus, parse, split_answer_labels

GOOD = "<think>The lip corners are pulled up (AU12) and the cheeks raised (AU6): happiness.</think><answer>happiness</answer>"


@pytest.mark.parametrize(
    ("text", "strict", "lenient"),
    [
        (GOOD, True, True),
        ("<think>a</think>\n  <answer>b</answer>", True, True),
        (
            " <think>a</think><answer>b</answer>",
            False,
            True,
        ),  # whitespace outside fails strict, like the paper
        ("<think>a</think><answer>b</answer>\n", False, True),
        ("Sure! <think>a</think> x <answer>b</answer> bye", False, True),
        ("<think>a</think>x<answer>b</answer>", False, True),
        ("<think></think><answer>b</answer>", False, False),  # blank reasoning earns no format
        ("<think>a</think><answer>  </answer>", False, False),
        ("<answer>b</answer><think>a</think>", False, False),  # answer before reasoning
        ("<think>a<think>b</think><answer>c</answer>", False, True),  # nested: not strict
        ("<think>a</think><answer>b</answer><answer>c</answer>", False, True),  # repeated answer
        ("<think>a</think><answer>b", False, False),  # unclosed answer
        ("<think>a<answer>b</answer>", False, False),  # unclosed think
        ("<THINK>a</THINK><ANSWER>b</ANSWER>", False, False),  # tags are case-sensitive
        ("", False, False),
        ("happiness", False, False),
    ],
)
def test_format(text: str, strict: bool, lenient: bool) -> None:
    parsed = parse(text)
    assert (parsed.format_strict, parsed.format_lenient) == (strict, lenient)


def test_first_think_last_closed_answer() -> None:
    text = (
        "<think>one</think><think>two</think><answer>fear</answer> wait <answer>sadness</answer><answer>anger"
    )
    parsed = parse(text, label_set=BASIC7)
    assert parsed.think == "one"
    assert parsed.answer == "sadness"
    assert parsed.emotion == "sadness"
    # The last opening tag that is closed, up to its own closing tag.
    assert parse("<answer>a<answer>b</answer>c</answer>").answer == "b"


@pytest.mark.parametrize(
    ("text", "aus", "unknown"),
    [
        ("AU12", ["AU12"], []),
        ("AU 12 and au6, AU012; AU-1", ["AU1", "AU6", "AU12"], []),
        ("(AU1+AU2)", ["AU1", "AU2"], []),
        ("AU3 and AU99 and AU0", [], ["AU0", "AU3", "AU99"]),
        ("AU1234 and AU" + "9" * 5000, [], []),  # no AU, no crash on a huge number
        ("TAU12 and AU12x", [], []),  # not a token
        ("a lip corner puller and a Brow-Lowerer", ["AU4", "AU12"], []),
        ("the lip corner depressor (AU15)", ["AU15"], []),
        ("lips part with the jaw drop", ["AU25", "AU26"], []),
    ],
)
def test_au_mentions(text: str, aus: list[str], unknown: list[str]) -> None:
    assert extract_aus(text) == (aus, unknown)


def test_au_names_can_be_switched_off() -> None:
    assert extract_aus("lip corner puller (AU6)", map_au_names=False) == (["AU6"], [])


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("no AU12", []),
        ("There is no AU4, the lips are pulled (AU12).", ["AU12"]),
        ("cheeks raised (AU6) without any lip corner pull (AU12)", ["AU6"]),
        ("the brows are not lowered (AU4) but the lips part (AU25)", ["AU25"]),
        ("neither AU1 nor AU2 is active", []),
        ("the absence of AU9. AU10 shows", ["AU10"]),
        ("AU4 is not present; AU7 absent; AU23 is active", ["AU23"]),
        ("the brows (AU4) aren't lowered", []),
        ("not only AU6 but also AU12", ["AU6", "AU12"]),
        ("AU6 rather than AU12", ["AU6"]),
        ("there is no lip corner puller", []),
        ("no AU1, AU2 rises", ["AU2"]),  # documented limit: the clause ends at the comma
    ],
)
def test_negated_mentions_dropped(text: str, kept: list[str]) -> None:
    assert extract_aus(text)[0] == kept


def test_drop_negated_false_counts_everything() -> None:
    assert extract_aus("no AU12, without AU4", drop_negated=False)[0] == ["AU4", "AU12"]


def test_aus_come_from_think_unless_scope_completion() -> None:
    text = "AU1 <think>AU2</think><answer>AU4 fear</answer>"
    assert parse(text).aus == ["AU2"]
    assert parse(text, au_scope="completion").aus == ["AU1", "AU2", "AU4"]
    assert parse("AU12 only, no tags").aus == []
    with pytest.raises(ValueError):
        parse(text, au_scope="answer")


@pytest.mark.parametrize(
    ("answer", "label_set", "expected"),
    [
        ("happiness", BASIC7, "happiness"),
        (" Happy. ", BASIC7, "happiness"),
        ("ANGRY!", BASIC7, "anger"),
        ("contempt", BASIC7, None),  # outside the dataset's closed set
        ("contempt", EMOTIONS, "contempt"),
        ("happiness, sadness", BASIC7, None),  # several labels are wrong
        ("happiness or sadness", BASIC7, None),
        ("unhappy", BASIC7, "sadness"),  # a synonym, never a substring match on "happy"
        ("The emotion is happiness", BASIC7, None),
        ("", BASIC7, None),
        ("happiness", None, "happiness"),
    ],
)
def test_answer_emotion(answer: str, label_set, expected: str | None) -> None:
    assert parse(f"<think>x</think><answer>{answer}</answer>", label_set=label_set).emotion == expected


@pytest.mark.parametrize(
    ("think", "expected"),
    [
        ("AU6 and AU12 indicate happiness", "happiness"),
        ("this could look like sadness, yet the smile says joy", "happiness"),  # last mention wins
        ("This is not sadness but happiness", "happiness"),
        ("it suggests happiness rather than sadness", "happiness"),
        ("the raised brows (AU1, AU2)", None),
        ("clearly contempt", None),  # outside the label set
        ("no fear here", None),
    ],
)
def test_concluded_emotion(think: str, expected: str | None) -> None:
    assert concluded_emotion(think, BASIC7) == expected
    assert parse(f"<think>{think}</think><answer>x</answer>", label_set=BASIC7).concluded_emotion == expected


def test_split_answer_labels() -> None:
    assert split_answer_labels("Happy or sad, fear/anger and disgust") == [
        "Happy",
        "sad",
        "fear",
        "anger",
        "disgust",
    ]
    assert split_answer_labels(None) == []
    assert parse(GOOD).answer_labels_raw == ["happiness"]


def test_parsed_record() -> None:
    parsed = parse(GOOD, label_set=BASIC7)
    assert parsed == Parsed(
        think=parsed.think,
        answer="happiness",
        format_strict=True,
        format_lenient=True,
        aus=["AU6", "AU12"],
        unknown_aus=[],
        emotion="happiness",
        concluded_emotion="happiness",
        answer_labels_raw=["happiness"],
        # The affect fields: a basic answer names one emotion, no compound; no level, no <va> block.
        answer_emotions=frozenset({"happiness"}),
    )
    with pytest.raises(AttributeError):
        parsed.emotion = "fear"  # type: ignore[misc]


def test_non_string_input_is_empty() -> None:
    assert parse(None).format_lenient is False  # type: ignore[arg-type]


ADVERSARIAL = [
    "<think>" * 20_000,
    "<think>" + "</think>" * 10_000 + "<answer>" * 10_000,
    "<answer>" * 25_000,
    "<think>" + "no " * 30_000 + "AU12 " * 10_000 + "</think><answer>x</answer>",
    "<think>" + "AU" + "0" * 100_000 + "</think>",
    "<think>" + "lip corner " * 10_000 + "happiness " * 5_000 + "</think><answer>happiness</answer>",
    "\u212a" * 100_000,
]


@pytest.mark.parametrize("text", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
def test_huge_adversarial_inputs_terminate(text: str) -> None:
    """A hang guard, not a speed test: catastrophic regex backtracking on these inputs would run for hours, so a
    generous bound separates "finished" from "hung" even on a loaded machine (speed lives in benchmarks/)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        job = pool.submit(
            lambda: (
                parse(text, label_set=BASIC7),
                parse(text, label_set=BASIC7, au_scope="completion", drop_negated=False),
            )
        )
        job.result(timeout=120)


_PIECES = st.sampled_from(
    ["<think>", "</think>", "<answer>", "</answer>", "AU", "12", "0", " ", "\n", "no ", "not ", ",", ".", "(", ")",
     "happiness", "sad", "lip corner puller", "é", "😀", "\u212a", "-", "or "]
)  # fmt: skip
_TEXT = st.one_of(st.text(max_size=300), st.lists(_PIECES, max_size=60).map("".join))


@settings(max_examples=300, deadline=None)
@given(text=_TEXT, drop=st.booleans(), names=st.booleans(), scope=st.sampled_from(["think", "completion"]))
def test_never_raises_and_is_consistent(text: str, drop: bool, names: bool, scope: str) -> None:
    parsed = parse(text, label_set=BASIC7, drop_negated=drop, map_au_names=names, au_scope=scope)
    assert parsed.aus == sorted(set(parsed.aus), key=lambda c: int(c[2:]))
    assert parsed.emotion is None or parsed.emotion in BASIC7
    assert parsed.concluded_emotion is None or parsed.concluded_emotion in BASIC7
    assert not parsed.format_strict or parsed.format_lenient
    if parsed.format_lenient:
        assert parsed.think is not None and parsed.answer is not None
