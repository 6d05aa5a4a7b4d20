"""Stage 3 synthesis: the triple check, the reflection loop (fake model), review, rounds. Resume: test_synthesis_resume."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from facial_r1.data.prompts import load_prompts
from facial_r1.data.schema import DataError, make_record
from facial_r1.data.sources import FacialR1JsonlSource
from facial_r1.evaluation.metrics import compute_metrics
from facial_r1.facs import EMOTIONS
from facial_r1.lineage import EXPORT_CARD, find_latest_export
from facial_r1.models.adapter import SamplingParams
from facial_r1.rewards import ConsistencyReward
from facial_r1.synthesis.checks import CheckConfig, set_f1, triple_check
from facial_r1.synthesis.engine import GenerationStats, make_checker, synthesize_batch
from facial_r1.synthesis.review import apply_review, read_review, write_review_html
from facial_r1.synthesis.review import main as review_main
from facial_r1.synthesis.rounds import DatasetTeacher, SynthRoundsSource, trained_round
from facial_r1.synthesis.run import accepted_row, rejected_row, resolve_source_model
from facial_r1.synthesis.store import RunStore, read_jsonl

CONF = Path(__file__).resolve().parents[1] / "conf"
PROMPT = load_prompts()["compact_v1"]
SAD = "<think>Inner brows raised (AU1), brows lowered (AU4), lip corners down (AU15): sadness.</think><answer>sadness</answer>"


def rec(id="s1", aus=("AU1", "AU4", "AU15"), labels=("sadness",), dataset="toy", image="x.png", **kw):
    return make_record(id=id, dataset=dataset, image=image, aus=None if aus is None else list(aus),
                       labels=list(labels), **kw)  # fmt: skip


def right_answer(record: dict) -> str:
    """A response that passes every check for ``record``."""
    aus = record.get("AUs") or []
    cues = " ".join(f"({au})" for au in aus) if aus else "The face is relaxed."
    label = record["labels"][0] if record.get("labels") else "neutral"
    return f"<think>Cues {cues} point to {label}.</think><answer>{label}</answer>"


def contradicting_answer(record: dict) -> str:
    """Passes the AU, emotion and format checks for ``record`` but concludes another emotion in its reasoning."""
    label = record["labels"][0] if record.get("labels") else "neutral"
    other = "disgust" if label != "disgust" else "anger"
    return right_answer(record).replace(f"point to {label}.</think>", f"point to {other}.</think>")


WRONG = "<think>I see AU99 here.</think><answer>maybe</answer>"


class FakeAdapter:
    """Stands in for a model: wrong on the first attempt, right once the prompt carries a reflection block.

    ``behaviour``: ``wrong_then_right`` | ``never`` | ``always`` | ``kth`` (only the last of K > 1 samples is right) |
    ``contradict_then_right`` (right AUs and answer, but the reasoning concludes another emotion, until reflection).
    ``easy`` ids are answered right at once. Built by Hydra in the run tests (``model._target_``).
    """

    behaviour = "wrong_then_right"
    easy: set[str] = set()

    def __init__(self, behaviour: str | None = None, **_unused):
        self.model = torch.nn.Identity()
        self.behaviour = behaviour or type(self).behaviour
        self.calls: list[list[str]] = []

    def encode_prompts(self, images, texts):
        assert len(images) == len(texts) and all(isinstance(i, Image.Image) for i in images)
        return SimpleNamespace(texts=list(texts), num_prompts=len(texts))

    def generate(self, batch, params: SamplingParams):
        self.calls.append(batch.texts)
        texts, index = [], []
        for i, text in enumerate(batch.texts):
            for k in range(params.num_samples):
                texts.append(self._respond(text, k, params.num_samples))
                index.append(i)
        return SimpleNamespace(texts=texts, prompt_index=torch.tensor(index), num_tokens=10 * len(texts))

    def _respond(self, text: str, k: int, num_samples: int) -> str:
        # The longest known synthesis prompt the text starts with (a reflection prompt extends its synthesis prompt).
        record = _TRUTH[max((key for key in _TRUTH if text.startswith(key)), key=len)]
        right = right_answer(record)
        if self.behaviour == "always" or record["id"] in self.easy:
            return right
        if self.behaviour == "never":
            return WRONG
        if self.behaviour == "kth":
            return right if num_samples > 1 and k == num_samples - 1 else WRONG
        if self.behaviour == "contradict_then_right" and PROMPT.reflection_header not in text:
            return contradicting_answer(record)
        return right if PROMPT.reflection_header in text else WRONG


_TRUTH: dict[str, dict] = {}  # synthesis prompt -> record, filled by `remember`


def remember(records):
    for r in records:
        _TRUTH[PROMPT.synthesis_text(r)] = r
    return records


def images(n):
    return [Image.new("RGB", (8, 8))] * n


# ---- triple check -------------------------------------------------------------------------------------------------
EXACT, F1_06, F1_08 = {}, {"au_mode": "f1", "au_f1_threshold": 0.6}, {"au_mode": "f1", "au_f1_threshold": 0.8}
ONLY_AU4 = "<think>Brows lowered (AU4), so sadness.</think><answer>sadness</answer>"
CASES = [
    # text, record kwargs, config kwargs, expected (au, emotion, format, passed)
    (SAD, {}, EXACT, (True, True, True, True)),
    (ONLY_AU4, {"aus": ["AU4", "AU15"]}, EXACT, (False, True, True, False)),
    (ONLY_AU4, {"aus": ["AU4", "AU15"]}, F1_06, (True, True, True, True)),  # F1 = 2/3
    (ONLY_AU4, {"aus": ["AU4", "AU15"]}, F1_08, (False, True, True, False)),
    ("<think>Brows (AU4) (AU99): sadness.</think><answer>sadness</answer>", {"aus": ["AU4"]}, EXACT,
     (False, True, True, False)),  # an AU number that is no FACS AU is a wrong extra
    (SAD.replace("<answer>sadness", "<answer>Sad."), {}, EXACT, (True, True, True, True)),  # normalised
    (SAD.replace("<answer>sadness", "<answer>anger"), {}, EXACT, (True, False, True, False)),
    (SAD, {"labels": []}, EXACT, (True, None, True, True)),  # no emotion label: checked on AUs and format
    (SAD, {"aus": None}, EXACT, (None, True, True, True)),  # no AU annotation: checked on emotion and format
    ("<think>The face is relaxed: neutral.</think><answer>neutral</answer>", {"aus": [], "labels": ["neutral"]},
     EXACT, (True, True, True, True)),
    ("<think>Smile (AU12): neutral.</think><answer>neutral</answer>", {"aus": [], "labels": ["neutral"]},
     EXACT, (False, True, True, False)),  # annotated "none": citing an AU fails
    ("Sure! " + SAD, {}, EXACT, (True, True, False, False)),  # text outside the tags
    ("Sure! " + SAD, {}, {"format": "lenient"}, (True, True, True, True)),
    (SAD.replace("Inner", "With no tension, inner"), {}, EXACT, (True, True, False, False)),  # negation word
    (SAD.replace("Inner", "With no tension, inner"), {}, {"negation_words": []}, (True, True, True, True)),
    (SAD.replace("Inner", "Maybe inner"), {}, EXACT, (True, True, False, False)),
    ("Sure! " + SAD, {}, {"enforce": ["au", "emotion"]}, (True, True, False, True)),  # the published gating
    ("<think>Lip corner puller, so happiness.</think><answer>happiness</answer>", {"aus": ["AU12"], "labels": ["happiness"]},
     EXACT, (False, True, True, False)),  # names alone are no AU codes by default
    ("<think>Lip corner puller, so happiness.</think><answer>happiness</answer>", {"aus": ["AU12"], "labels": ["happiness"]},
     {"map_au_names": True}, (True, True, True, True)),
]  # fmt: skip


@pytest.mark.parametrize(("text", "record_kw", "config_kw", "expected"), CASES)
def test_triple_check_table(text, record_kw, config_kw, expected):
    result = triple_check(text, rec(**record_kw), CheckConfig(**config_kw))
    assert (result.au, result.emotion, result.format, result.passed) == expected
    assert bool(result.problems) == (not result.passed)


def test_check_problems_are_sentences_naming_what_to_fix():
    result = triple_check("Hi <think>Brows (AU4) (AU12).</think><answer>anger</answer>", rec())
    text = " ".join(result.problems)
    assert "AU1, AU15" in text and "AU12" in text and "'sadness'" in text and "format" in text.lower()
    assert "The reasoning names no emotion" in text and "End the reasoning on sadness." in text
    assert result.failed == result.rejected_by == ["au", "emotion", "format", "consistency"]
    assert triple_check("nothing", rec()).problems[1].startswith("There is no <answer> block")


def test_negated_mentions_are_not_citations_and_f1_edge_cases():
    text = "<think>Brows lowered (AU4) but not AU12: sadness.</think><answer>sadness</answer>"
    assert triple_check(text, rec(aus=["AU4"]), CheckConfig(negation_words=[])).passed
    assert (
        set_f1([], []) == 1.0
        and set_f1(["AU1"], []) == 0.0
        and set_f1(["AU1"], ["AU1", "AU2"]) == pytest.approx(2 / 3)
    )


def test_the_affect_layout_passes_the_format_check_only_as_strict_va():
    """The affect prompt's answers (intensity letters, then <va>) are accepted with checks.format=strict_va, and
    refused by the plain strict format as before; an out-of-range V/A is a format failure naming the layout."""
    affect = (
        "<think>Inner brows raised (AU1, C), brows lowered (AU4, B), lip corners down (AU15, D): sadness.</think>"
        "<answer>sadness</answer> <va>-0.6, -0.3</va>"
    )
    assert triple_check(affect, rec(), CheckConfig(format="strict_va")).passed
    plain = triple_check(affect, rec())
    assert (plain.au, plain.emotion, plain.format) == (True, True, False)
    bad = triple_check(affect.replace("-0.6", "-1.6"), rec(), CheckConfig(format="strict_va"))
    assert not bad.format and "<va>valence, arousal</va>" in " ".join(bad.problems)
    assert not triple_check(SAD, rec(), CheckConfig(format="strict_va")).format  # no <va> block


@pytest.mark.parametrize(
    "kw", [{"enforce": ["au", "style"]}, {"au_mode": "jaccard"}, {"au_f1_threshold": 1.5}, {"format": "loose"},
           {"negation_words": [False, "not"]}, {"au_scope": "answer"}],
)  # fmt: skip
def test_check_config_rejects_bad_settings(kw):
    with pytest.raises(ValueError):
        CheckConfig(**kw)


# ---- consistency: what the reasoning concludes vs the answer ---------------------------------------------------------
EIGHT = list(EMOTIONS)  # SynthFACS' label set (contempt included; the default BASIC7 lacks it)
# The issue's sample: right AUs, right answer, but the reasoning concludes another emotion.
CONTRADICTS = (
    "<think>In this face the lip corner tightens on one side (AU14). This combination points to disgust.</think>"
    "<answer>contempt</answer>"
)
CONTEMPT = {"aus": ["AU14"], "labels": ["contempt"], "label_set": EIGHT}
BEFORE = {"enforce": ["au", "emotion", "format"]}  # the default before the consistency check existed
PUBLISHED = {
    "enforce": ["au", "emotion"],
    "au_scope": "completion",
    "drop_negated": False,
    "negation_words": [],
}


def think(reasoning: str, answer: str = "contempt") -> str:
    return f"<think>The lip corner tightens on one side (AU14). {reasoning}</think><answer>{answer}</answer>"


CONSISTENCY_CASES = [
    # text, expected (concluded emotion, consistency flag); the rule is the last non-negated emotion word in <think>
    (CONTRADICTS, ("disgust", False)),
    (think("This combination points to contempt."), ("contempt", True)),
    (
        think("It could be disgust or contempt; the one-sided tightening points to contempt."),
        ("contempt", True),
    ),
    (
        think("This points to contempt, though disgust is possible."),
        ("disgust", False),
    ),  # two named: the last counts
    (think("The face expresses contempt, not disgust."), ("contempt", True)),  # a negated one never concludes
    (think("This is not disgust."), (None, False)),  # only a negated one: names none
    (
        think("Nothing else moves."),
        (None, False),
    ),  # names none: fails, as the reward and the metric score it 0
    (think("The face looks contemptuous."), ("contempt", True)),  # synonyms count
    (think("This points to contempt.", answer="maybe"), ("contempt", False)),  # no valid answer
    (think("This combination points to disgust.", answer="disgust"), ("disgust", True)),  # consistent, wrong
]


@pytest.mark.parametrize(("text", "expected"), CONSISTENCY_CASES)
def test_consistency_check_reads_the_conclusion_like_the_reward_and_metric(text, expected):
    record = rec(**CONTEMPT)
    result = triple_check(text, record, CheckConfig(negation_words=[]))
    assert (result.concluded_emotion, result.consistency) == expected
    # One parser, one rule: the check agrees with the consistency reward and the evaluation's consistency_rate.
    assert ConsistencyReward().score(text, record) == float(result.consistency)
    assert compute_metrics([record], [text])[0]["consistency_rate"] == float(result.consistency)
    # drop_negated=false (the published AU reading) does not make "not disgust" a conclusion.
    assert triple_check(text, record, CheckConfig(negation_words=[], drop_negated=False)).consistency == (
        result.consistency
    )


def test_the_issue_sample_is_rejected_and_the_problem_names_both_emotions():
    record = rec(**CONTEMPT)
    result = triple_check(CONTRADICTS, record)
    assert (result.au, result.emotion, result.format, result.consistency, result.passed) == (
        True, True, True, False, False,
    )  # fmt: skip
    assert result.rejected_by == ["consistency"]
    assert result.problems == [
        "The reasoning concludes disgust but the answer is contempt: they must name the same emotion. "
        "End the reasoning on contempt."
    ]
    info = result.to_dict()
    assert info["concluded_emotion"] == "disgust" and info["consistency"] is False
    assert info["enforced"] == ["au", "emotion", "format", "consistency"]
    # Before this check existed it was accepted: the flag is still computed, but does not gate.
    before = triple_check(CONTRADICTS, record, CheckConfig(**BEFORE))
    assert (
        before.passed and before.consistency is False and before.problems == [] and before.rejected_by == []
    )
    assert before.failed == ["consistency"]


@pytest.mark.parametrize(
    ("text", "record_kw", "sentence"),
    [
        (think("Nothing else moves."), CONTEMPT,
         "The reasoning names no emotion, so it does not support the answer contempt. End the reasoning on contempt."),
        # Wrong answer and a reasoning that concludes the gold label: the answer is what must change.
        (think("This points to contempt.", answer="disgust"), CONTEMPT,
         "The reasoning concludes contempt but the answer is disgust: they must name the same emotion. "
         "Answer contempt."),
        # No gold label (AU-only sample): the answer is the side the reasoning must meet.
        (think("This points to sadness.", answer="happiness"), {**CONTEMPT, "labels": []},
         "The reasoning concludes sadness but the answer is happiness: they must name the same emotion. "
         "End the reasoning on happiness."),
        (think("This points to contempt.", answer="maybe"), {**CONTEMPT, "labels": []},
         "The answer is not one emotion label, so it cannot match the reasoning's conclusion (contempt)."),
        (think("Nothing else moves.", answer=""), {**CONTEMPT, "labels": []},
         "Neither the reasoning nor the answer names an emotion: conclude the reasoning with the emotion you answer."),
    ],
)  # fmt: skip
def test_consistency_problems_name_the_fix(text, record_kw, sentence):
    result = triple_check(text, rec(**record_kw), CheckConfig(negation_words=[]))
    assert not result.passed and result.consistency is False and sentence in result.problems


def test_consistency_is_not_repeated_when_the_emotion_check_already_asks_for_an_answer():
    result = triple_check(think("This points to contempt.", answer="maybe"), rec(**CONTEMPT), CheckConfig())
    assert result.rejected_by == ["emotion", "format", "consistency"]
    assert [p for p in result.problems if "emotion label" in p or "reasoning concludes" in p] == []
    assert "The answer is 'maybe' but must be exactly 'contempt'." in result.problems


@pytest.mark.parametrize(
    "text", [text for text, *_ in CASES] + [text for text, _ in CONSISTENCY_CASES] + [WRONG]
)
def test_published_mode_is_unchanged_by_the_consistency_check(text):
    """``enforce=[au, emotion]`` gates on exactly the AU and emotion flags, and no consistency sentence appears."""
    for record in (rec(), rec(**CONTEMPT), rec(aus=None), rec(labels=[])):
        result = triple_check(text, record, CheckConfig(**PUBLISHED))
        assert result.passed == (result.au is not False and result.emotion is not False)
        assert result.rejected_by == [name for name in ("au", "emotion") if getattr(result, name) is False]
        assert not [p for p in result.problems if "reasoning concludes" in p or "names no emotion" in p]


# ---- reflection loop ----------------------------------------------------------------------------------------------
def batch(n=4):
    """n records whose prompts differ (the fake model recognises a sample by its prompt)."""
    emotions = ["sadness", "happiness", "anger", "fear", "surprise"]
    return remember([rec(id=f"r{i}", labels=[emotions[i]]) for i in range(n)])


def test_reflection_fixes_failures_on_the_second_attempt():
    records, adapter, stats = batch(), FakeAdapter("wrong_then_right"), GenerationStats()
    out = synthesize_batch(adapter, records, images(4), PROMPT, make_checker(CheckConfig()), SamplingParams.greedy(8),
                           max_retries=5, stats=stats)  # fmt: skip
    assert [o.attempts for o in out] == [2] * 4 and all(o.accepted for o in out)
    assert [len(c) for c in adapter.calls] == [4, 4] and stats.calls == 2 and stats.tokens == 80
    retry = adapter.calls[1][0]  # the reflection prompt quotes the failed response and its problems
    assert retry.startswith(PROMPT.synthesis_text(records[0])) and WRONG in retry and "AU99" in retry


def test_a_contradiction_is_reflected_on_and_fixed():
    records = batch(3)
    adapter = FakeAdapter("contradict_then_right")
    out = synthesize_batch(
        adapter, records, images(3), PROMPT, make_checker(CheckConfig()), SamplingParams.greedy(8)
    )
    assert [o.attempts for o in out] == [2, 2, 2] and all(o.accepted and o.check.consistency for o in out)
    retry = adapter.calls[1][0]  # records[0] is sadness: the prompt names the contradiction and the fix
    assert contradicting_answer(records[0]) in retry
    assert (
        "- The reasoning concludes disgust but the answer is sadness: they must name the same emotion."
        in retry
    )
    # The same model under the checks of before: its contradictions are accepted on the first attempt.
    before = synthesize_batch(FakeAdapter("contradict_then_right"), records, images(3), PROMPT,
                              make_checker(CheckConfig(**BEFORE)), SamplingParams.greedy(8))  # fmt: skip
    assert [o.attempts for o in before] == [1, 1, 1] and not any(o.check.consistency for o in before)


@pytest.mark.parametrize("max_retries", [0, 2, 5])
def test_never_right_is_rejected_after_max_retries_plus_one_attempts(max_retries):
    adapter = FakeAdapter("never")
    out = synthesize_batch(adapter, batch(3), images(3), PROMPT, make_checker(CheckConfig()),
                           SamplingParams.greedy(8), max_retries=max_retries)  # fmt: skip
    assert all(not o.accepted and o.attempts == max_retries + 1 and o.output == WRONG for o in out)
    assert len(adapter.calls) == max_retries + 1 and out[0].check.problems


def test_only_the_failed_samples_of_a_batch_are_retried():
    records = batch(4)
    adapter = FakeAdapter("wrong_then_right")
    adapter.easy = {"r0", "r2"}
    out = synthesize_batch(
        adapter, records, images(4), PROMPT, make_checker(CheckConfig()), SamplingParams.greedy(8)
    )
    assert [o.attempts for o in out] == [1, 2, 1, 2] and [len(c) for c in adapter.calls] == [4, 2]


def test_k_samples_keep_the_first_that_passes():
    adapter = FakeAdapter("kth")
    params = SamplingParams(max_new_tokens=8, do_sample=True, num_samples=3, seed=1)
    out = synthesize_batch(adapter, batch(2), images(2), PROMPT, make_checker(CheckConfig()), params)
    assert all(o.accepted and o.attempts == 1 for o in out) and len(adapter.calls) == 1


def test_retry_params_sample_only_the_reflection_attempts():
    """A greedy first answer, K sampled reflections: the first attempt draws one completion per face, the retries K
    (the `kth` model is right only in the K-th sample, so a greedy retry would never pass)."""
    adapter = FakeAdapter("kth")
    retry = SamplingParams(max_new_tokens=8, do_sample=True, num_samples=3, seed=1)
    out = synthesize_batch(adapter, batch(2), images(2), PROMPT, make_checker(CheckConfig()),
                           SamplingParams.greedy(8), max_retries=2, retry_params=retry)  # fmt: skip
    assert [o.attempts for o in out] == [2, 2] and all(o.accepted for o in out)
    greedy = synthesize_batch(FakeAdapter("kth"), batch(2), images(2), PROMPT, make_checker(CheckConfig()),
                              SamplingParams.greedy(8), max_retries=2)  # fmt: skip
    assert not any(o.accepted for o in greedy)


def test_generation_retry_config_is_checked():
    from facial_r1.synthesis.run import _retry_params

    first = SamplingParams.greedy(8)
    assert _retry_params(first, None, 0) is None and _retry_params(first, {}, 0) is None
    params = _retry_params(first, {"do_sample": True, "num_samples": 4}, 3)
    assert (params.do_sample, params.num_samples, params.seed, params.max_new_tokens) == (True, 4, 3, 8)
    with pytest.raises(ValueError, match="unknown keys"):
        _retry_params(first, {"num_sample": 4}, 0)
    with pytest.raises(ValueError, match="do_sample"):
        _retry_params(first, {"num_samples": 4}, 0)


# ---- review -------------------------------------------------------------------------------------------------------
def make_run(tmp_path, n=4) -> Path:
    """A run folder with n accepted (even ids) / rejected (odd ids) samples with real images."""
    run = tmp_path / "run"
    records = []
    for i in range(n):
        image = tmp_path / f"img{i}.png"
        Image.new("RGB", (20, 20), (40 * i, 90, 120)).save(image)
        records.append(rec(f'id{i}<&"', image=str(image)))  # ids with HTML-special characters
    provenance = {"round": 1, "source_model": "m", "prompt_version": PROMPT.version, "split": "train"}
    outcomes = [
        SimpleNamespace(record=r, output=SAD if i % 2 == 0 else WRONG, attempts=1 + i % 2)
        for i, r in enumerate(records)
    ]
    for o in outcomes:
        o.check = triple_check(o.output, o.record)
    with RunStore(run) as store:
        store.append([accepted_row(o, provenance) for o in outcomes if o.check.passed],
                     [rejected_row(o, provenance) for o in outcomes if not o.check.passed])  # fmt: skip
    return run


def test_review_page_shows_every_sample(tmp_path):
    run = make_run(tmp_path)
    page = write_review_html(run).read_text()
    assert page.count('<article class="card') == 4 and page.count("data:image/jpeg;base64,") == 4
    for i in range(4):
        assert f'data-id="id{i}&lt;&amp;&quot;"' in page
    assert "AU99" in page and "download review.jsonl" in page
    linked = write_review_html(run, tmp_path / "linked.html", images="link", max_rows=2).read_text()
    assert linked.count('<article class="card') == 2 and 'src="img' in linked and "2 of 4" in linked


def test_manifest_counts_and_review_page_show_the_consistency_check(tmp_path):
    provenance = {"round": 1, "source_model": "m", "prompt_version": PROMPT.version, "split": "train"}
    consistent = think("This combination points to contempt.")
    cases = [  # id, response, checks in force
        ("before", CONTRADICTS, CheckConfig(**BEFORE)),  # accepted although it contradicts itself
        ("good", consistent, CheckConfig()),
        ("contradicts", CONTRADICTS, CheckConfig()),  # rejected by consistency alone
        ("wrong", WRONG, CheckConfig()),  # rejected by every check
    ]
    run = tmp_path / "run"
    with RunStore(run) as store:
        for id_, text, config in cases:
            outcome = SimpleNamespace(record=rec(id_, image=str(tmp_path / "none.png"), **CONTEMPT), output=text,
                                      attempts=1, check=triple_check(text, rec(**CONTEMPT), config))  # fmt: skip
            row = (
                accepted_row(outcome, provenance)
                if outcome.check.passed
                else rejected_row(outcome, provenance)
            )
            store.append(*(([row], []) if outcome.check.passed else ([], [row])))
        counts = store.tally.to_dict()
        store.write_manifest({"round": 1, "counts": counts, "acceptance_rate": counts["acceptance_rate"]})
    assert (counts["accepted"], counts["rejected"]) == (2, 2)
    assert counts["rejected_by_check"] == {"au": 1, "emotion": 1, "format": 1, "consistency": 2}
    assert counts["rejected_only_by"] == {"au": 0, "emotion": 0, "format": 0, "consistency": 1}
    assert counts["accepted_failed_checks"] == {"au": 0, "emotion": 0, "format": 0, "consistency": 1}
    assert counts["accepted_consistency_rate"] == 0.5
    assert counts["rejected_failed_checks"] == {"au": 1, "consistency": 2, "emotion": 1, "format": 1}

    page = write_review_html(run).read_text()
    cards = {card.split('"', 1)[0]: card for card in page.split('data-id="')[1:]}
    assert (
        "reasoning concludes disgust" in cards["contradicts"]
        and "consistency &#10007;" in cards["contradicts"]
    )
    assert "The reasoning concludes disgust but the answer is contempt" in cards["contradicts"]
    assert "consistency &#10007; <i" in cards["before"] and "(not enforced)" in cards["before"]
    assert "consistency &#10003;" in cards["good"] and "(not enforced)" not in cards["good"]
    assert "reasoning concludes no emotion" in cards["wrong"]
    assert "rejected by (a sample may fail several): au 1, emotion 1, format 1, consistency 2" in page


def test_review_apply_overrides_automatic_decisions(tmp_path):
    run = make_run(tmp_path)
    review = tmp_path / "review.jsonl"
    review.write_text(
        json.dumps({"id": 'id0<&"', "decision": "reject", "note": "stiff wording"}) + "\n"
        + json.dumps({"id": 'id1<&"', "dataset": "toy", "decision": "ACCEPT", "note": ""}) + "\n"
    )  # fmt: skip
    counts = apply_review(run, review, tmp_path / "final.jsonl")
    assert counts == {"kept": 1, "removed": 1, "added": 1, "unreviewed": 2, "total": 2}
    rows = {r["id"]: r for r in read_jsonl(tmp_path / "final.jsonl")}
    assert set(rows) == {'id1<&"', 'id2<&"'}
    assert rows['id1<&"']["description"] == WRONG  # promoted: its last response becomes the reference text
    assert rows['id1<&"']["meta_info"]["synthesis"]["review"] == {"decision": "accept", "note": ""}
    assert "review" not in rows['id2<&"']["meta_info"]["synthesis"]
    csv_review = tmp_path / "review.csv"
    csv_review.write_text('id,decision,note\n"id2<&""",reject,blurry\n')
    assert (
        review_main(
            ["apply", "--run", str(run), "--review", str(csv_review), "--out", str(tmp_path / "f2.jsonl")]
        )
        == 0
    )
    assert [r["id"] for r in read_jsonl(tmp_path / "f2.jsonl")] == ['id0<&"']
    assert review_main(["html", "--run", str(run)]) == 0 and (run / "review.html").is_file()


@pytest.mark.parametrize(
    ("line", "message"),
    [('{"id": "nope", "decision": "accept"}', "not a sample"), ('{"id": "id0<&\\"", "decision": "maybe"}', "decision"),
     ("not json", "invalid JSON")],
)  # fmt: skip
def test_review_file_errors_name_the_line(tmp_path, line, message):
    run = make_run(tmp_path)
    review = tmp_path / "r.jsonl"
    review.write_text("\n" + line + "\n")
    with pytest.raises(DataError, match=message) as err:
        apply_review(run, review, tmp_path / "out.jsonl")
    assert ":2:" in str(err.value)
    assert (
        review_main(["apply", "--run", str(run), "--review", str(review), "--out", str(tmp_path / "o")]) == 2
    )


def test_read_review_csv_needs_columns(tmp_path):
    (tmp_path / "r.csv").write_text("key,verdict\na,accept\n")
    with pytest.raises(DataError, match="columns"):
        read_review(tmp_path / "r.csv")


# ---- rounds -------------------------------------------------------------------------------------------------------
def write_toy_dataset(root: Path, n: int, with_eval: bool = False) -> Path:
    """``root/{train,val,test}.jsonl`` + images: n train samples (varied label coverage) and one unlabelled."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    kinds = [(["AU1", "AU4", "AU15"], ["sadness"]), (["AU6", "AU12"], ["happiness"]), ([], ["neutral"]),
             (None, ["anger"]), (["AU4"], [])]  # fmt: skip
    splits = {"train": n, **({"val": 2, "test": 2} if with_eval else {})}
    for split, count in splits.items():
        lines = []
        for i in range(count + (split == "train")):
            Image.new("RGB", (16, 16), (i * 7 % 255, 80, 160)).save(root / "img" / f"{split}{i}.png")
            aus, labels = kinds[i % len(kinds)] if i < count else (None, [])  # the last one: unlabelled
            row = {
                "id": f"{split}{i:03d}",
                "dataset": "toy",
                "image": f"img/{split}{i}.png",
                "labels": labels,
            }
            if aus is not None:
                row["AUs"] = aus
            lines.append(json.dumps(row))
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return root


def synth_rows(tmp_path, name, ids, round_, split="train"):
    data = write_toy_dataset(tmp_path / "data", 5)
    records = FacialR1JsonlSource(data, files={"train": "train.jsonl"}).records("train")[: len(ids)]
    path = tmp_path / name
    rows = []
    for r, i in zip(records, ids, strict=True):
        o = SimpleNamespace(record={**r, "id": i}, output=f"text r{round_}", attempts=1)
        o.check = triple_check(right_answer(r), r)
        rows.append(accepted_row(o, {"round": round_, "split": split}))
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize(("policy", "expected"), [("latest", {"a": "r2", "b": "r1", "c": "r2"}),
                                                  ("first", {"a": "r1", "b": "r1", "c": "r2"})])  # fmt: skip
def test_rounds_source_merges_rounds(tmp_path, policy, expected):
    f1 = synth_rows(tmp_path, "r1.jsonl", ["a", "b"], 1)
    f2 = synth_rows(tmp_path, "r2.jsonl", ["a", "c"], 2)
    source = SynthRoundsSource(files=[str(f1), str(f2)], duplicates=policy)
    rows = source.records("train")
    assert {r["id"]: r["description"][-2:] for r in rows} == expected
    assert source.report.skipped == {"duplicate_across_rounds": 1} and source.data_round == 2
    assert all(Path(r["image"]).is_file() for r in rows)
    every = SynthRoundsSource(files=[str(f1), str(f2)], duplicates="all").records("train")
    assert sorted(r["id"] for r in every) == ["a@r1", "a@r2", "b@r1", "c@r2"]


def test_rounds_source_splits_and_guards(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    synth_rows(tmp_path, "run/accepted.jsonl", ["a"], 1)
    evaluation = FacialR1JsonlSource(write_toy_dataset(tmp_path / "eval", 3, with_eval=True), name="toy")
    source = SynthRoundsSource(runs=[str(run)], eval_source=evaluation)
    assert [r["id"] for r in source.records("train")] == ["a"]
    assert [r["id"] for r in source.records("test")] == ["test000", "test001"]
    assert source.report.split == "test"
    with pytest.raises(DataError, match="no eval_source"):
        SynthRoundsSource(runs=[str(run)]).records("val")
    with pytest.raises(ValueError, match="dataset.runs"):
        SynthRoundsSource()
    leak = synth_rows(tmp_path, "leak.jsonl", ["z"], 1, split="test")
    with pytest.raises(DataError, match="leak"):
        SynthRoundsSource(files=[str(leak)]).records("train")
    assert len(SynthRoundsSource(files=[str(leak)], allow_heldout=True).records("train")) == 1


def export_card(folder: Path, **card) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    (folder / EXPORT_CARD).write_text(json.dumps({"time": time.time(), **card}))
    return folder


def test_round_counter_follows_export_cards(tmp_path):
    synth_run = tmp_path / "synth"
    synth_run.mkdir()
    synth_rows(tmp_path, "synth/accepted.jsonl", ["a"], 3)
    sft_run = tmp_path / "sft"
    (sft_run / ".hydra").mkdir(parents=True)
    (sft_run / ".hydra" / "config.yaml").write_text(
        f"dataset:\n  _target_: facial_r1.synthesis.rounds.SynthRoundsSource\n  runs: ['{synth_run}']\n  files: []\n"
    )
    sft = export_card(sft_run / "model", stage="sft", run_dir=str(sft_run))
    grpo = export_card(tmp_path / "grpo" / "model", stage="grpo", init_from=str(sft))  # GRPO on other data
    plain = export_card(tmp_path / "plain" / "model", stage="sft")
    assert trained_round(sft) == 3 and trained_round(grpo) == 3 and trained_round(plain) == 0
    assert trained_round(export_card(tmp_path / "c" / "model", synth_round=5, init_from=str(grpo))) == 5
    assert (
        find_latest_export(tmp_path) == tmp_path / "c" / "model"
        and find_latest_export(tmp_path, "grpo") == grpo
    )
    (tmp_path / "torn" / "model").mkdir(parents=True)
    (tmp_path / "torn" / "model" / EXPORT_CARD).write_text("{")  # unreadable: skipped, not fatal
    assert find_latest_export(tmp_path, "sft") == plain
    assert find_latest_export(tmp_path, "sft", base_model="tiny:x") is None


def test_source_model_resolution(tmp_path):
    from omegaconf import OmegaConf

    model = OmegaConf.create({"path": None, "init_from": None})
    with pytest.raises(FileNotFoundError, match="python train.py"):
        resolve_source_model(model, tmp_path)
    sft = export_card(tmp_path / "a" / "model", stage="sft")
    grpo = export_card(tmp_path / "b" / "model", stage="grpo", time=0)
    assert resolve_source_model(model, tmp_path) == sft
    assert (
        resolve_source_model(OmegaConf.create({"path": "???", "init_from": "latest_grpo"}), tmp_path) == grpo
    )
    assert resolve_source_model(OmegaConf.create({"path": "/x", "init_from": None}), tmp_path) == Path("/x")


def test_dataset_teacher_keeps_descriptions():
    fallback = SimpleNamespace(describe=lambda r: "written")
    assert DatasetTeacher().describe({"description": "mine"}) == "mine"
    assert DatasetTeacher().describe({"description": None}) is None
    assert DatasetTeacher(fallback=fallback).describe({}) == "written"
