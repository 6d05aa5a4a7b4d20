"""Prompt templates: per-sample label lists and AU definitions, ground-truth and reflection blocks, Hydra configs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from facial_r1.data.prompts import PromptTemplate, load_prompts, offered_labels
from facial_r1.data.schema import make_record
from facial_r1.facs import AU_VOCAB, EMOTIONS, LABEL_ORDERS

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture(scope="module")
def prompts() -> dict[str, PromptTemplate]:
    return load_prompts()


def rafdb_record(**overrides):
    fields = dict(id="r1", dataset="rafdb", image="x.png", aus=None, labels=["sadness"])
    fields |= dict(label_set=LABEL_ORDERS["rafdb"], au_vocab=None) | overrides
    return make_record(**fields)


def allowed_line(text: str) -> str:
    match = re.search(r"(?:Allowed emotions: |one of: )([^.\n]*)\.", text)
    assert match, text
    return match.group(1)


@pytest.mark.parametrize("name", ["full_v1", "compact_v1"])
def test_label_list_is_the_records_own_set_as_plain_words(prompts, name):
    text = prompts[name].user_text(rafdb_record())
    assert allowed_line(text).split(", ") == list(LABEL_ORDERS["rafdb"])
    assert "contempt" not in text  # never the union over datasets
    assert not re.search(r"dict_keys|\[|'", text)  # no Python repr


@pytest.mark.parametrize("name", ["full_v1", "compact_v1"])
def test_au_only_dataset_is_offered_all_project_words(prompts, name):
    record = rafdb_record(aus=["AU1"], labels=[], label_set=[], au_vocab=AU_VOCAB["disfa"])
    assert offered_labels(record) == list(EMOTIONS)
    assert allowed_line(prompts[name].user_text(record)).split(", ") == list(EMOTIONS)


def test_au_definitions_follow_the_records_vocabulary(prompts):
    text = prompts["full_v1"].user_text(rafdb_record(au_vocab=AU_VOCAB["disfa"]))
    defined = [int(n) for n in re.findall(r"^AU(\d+) \(", text, re.MULTILINE)]
    assert defined == list(AU_VOCAB["disfa"])
    assert "AU26 (jaw drop): the jaw is dropped" in text
    # An emotion-only dataset (no AU vocabulary) gets the prompt's 30 AUs.
    text = prompts["full_v1"].user_text(rafdb_record())
    assert [int(n) for n in re.findall(r"^AU(\d+) \(", text, re.MULTILINE)] == list(AU_VOCAB["facial_r1"])


def test_full_prompt_parts_and_order(prompts):
    record = rafdb_record()
    text = prompts["full_v1"].user_text(record)
    assert text.startswith(record["question"])
    positions = [
        text.index(s) for s in ("Requirements:", "Allowed emotions:", "Action units you may cite:", "Example")
    ]
    assert positions == sorted(positions)
    assert "<think>" in text and "<answer>" in text and "(AU1)" in text
    assert prompts["full_v1"].system_text is None


def test_compact_prompt_is_short_and_keeps_the_format_rule(prompts):
    text = prompts["compact_v1"].user_text(rafdb_record())
    assert "<think>" in text and "<answer>" in text
    assert "Action units" not in text and "Example" not in text
    assert len(text.split()) <= 30  # ~35 BPE tokens with the tiny model's tokenizer


def test_question_none_uses_the_records_question():
    template = PromptTemplate(version="t", requirements="Rules.", include_au_definitions=False)
    assert template.user_text(rafdb_record(question="Why?")).startswith("Why?\n\nRules.")
    fixed = PromptTemplate(
        version="t", requirements="Rules.", question="Fixed?", include_au_definitions=False
    )
    assert fixed.user_text(rafdb_record(question="Why?")).startswith("Fixed?")


@pytest.mark.parametrize("name", ["full_v1", "compact_v1"])
def test_synthesis_states_only_what_the_sample_has(prompts, name):
    template = prompts[name]
    full = rafdb_record(aus=["AU15", "AU1", "AU4"])
    text = template.synthesis_text(full)
    assert text.startswith(template.user_text(full))
    block = text[len(template.user_text(full)) :]
    assert "AU1, AU4, AU15" in block and "sadness" in block

    no_aus = template.synthesis_text(rafdb_record())  # AUs=None: emotion only
    block = no_aus[len(template.user_text(rafdb_record())) :]
    assert "sadness" in block and "AU" not in block.replace("AUs none", "")

    no_label = rafdb_record(aus=["AU12"], labels=[])
    block = template.synthesis_text(no_label)[len(template.user_text(no_label)) :]
    assert "AU12" in block and "sadness" not in block

    relaxed = rafdb_record(aus=[], labels=["neutral"])
    block = template.synthesis_text(relaxed)[len(template.user_text(relaxed)) :]
    assert template.synthesis_no_aus.strip("- ") in block and "neutral" in block

    nothing = rafdb_record(aus=None, labels=[])
    assert template.synthesis_text(nothing) == template.user_text(nothing)


def test_reflection_quotes_previous_response_and_problems(prompts):
    template = prompts["full_v1"]
    record = rafdb_record(aus=["AU1"])
    previous = "<think>The brows rise (AU2).</think><answer>fear</answer>"
    problems = ["The reasoning does not cite these action units: AU1.", "The answer must be 'sadness'."]
    text = template.reflection_text(record, previous, problems)
    assert text.startswith(template.synthesis_text(record))
    tail = text[len(template.synthesis_text(record)) :]
    assert tail.index(previous) < tail.index(problems[0]) < tail.index(problems[1])
    assert all(f"- {p}" in tail for p in problems)


@pytest.mark.parametrize("name", ["full_v1", "compact_v1"])
def test_configs_instantiate_with_hydra(name):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(overrides=[f"+prompt={name}"])
    template = instantiate(cfg.prompt)
    assert isinstance(template, PromptTemplate)
    assert template.version == name
    assert template.include_au_definitions is (name == "full_v1")
    assert "sadness" in template.user_text(rafdb_record())
