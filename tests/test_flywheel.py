"""The data flywheel's pieces (issue 12): instruction rows (the tiny model's stand-in for following the stage-3
prompts), the round's data recipe in ``dataset=synth`` (partial-label rows, the kept SFT teacher rows, class balance,
dedup across rounds), acceptance per class and attempt, and the pipeline's rounds. All fast: no model is loaded."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from facial_r1 import pipeline
from facial_r1.data.prompts import load_prompts
from facial_r1.data.schema import make_record
from facial_r1.data.sources.jsonl import FacialR1JsonlSource
from facial_r1.data.teachers.instructions import check_fractions, flawed_response, instruction_rows
from facial_r1.data.teachers.template import TemplateTeacher, build_sft_records, select_sft_records
from facial_r1.synthesis.checks import triple_check
from facial_r1.synthesis.engine import Outcome
from facial_r1.synthesis.rounds import DatasetTeacher, SynthRoundsSource
from facial_r1.synthesis.run import accepted_row, rejected_row
from facial_r1.synthesis.store import Tally, acceptance_table

PROMPT = load_prompts()["compact_v1"]
KINDS = [  # (AUs, labels) by class; the last two are partial-label faces
    (["AU1", "AU4", "AU15"], ["sadness"]),
    (["AU6", "AU12"], ["happiness"]),
    (["AU9", "AU10"], ["disgust"]),
    (["AU4", "AU5", "AU7", "AU23"], ["anger"]),
    (["AU6"], []),
    (None, ["fear"]),
]


def records(n: int, kinds=KINDS) -> list[dict]:
    out = []
    for i in range(n):
        aus, labels = kinds[i % len(kinds)]
        out.append(make_record(id=f"f{i:03d}", dataset="toy", image=f"{i}.png", aus=aus, labels=labels))
    return out


# ---- instruction rows ---------------------------------------------------------------------------------------------


def test_instruction_rows_copy_a_fraction_of_the_teacher_rows_with_the_same_targets():
    sft = build_sft_records(records(40), 20, seed=3)
    extra = instruction_rows(sft, {"synthesis": 0.5, "reflection": 0.25}, seed=3)
    kinds = Counter(r["meta_info"]["sft_prompt"]["kind"] for r in extra)
    assert kinds == {"synthesis": 10, "reflection": 5}
    targets = {r["id"]: r["description"] for r in sft}
    assert all(r["description"] == targets[r["id"]] for r in extra)  # no new teacher text
    assert instruction_rows(sft, {"synthesis": 0.5, "reflection": 0.25}, seed=3) == extra  # seeded
    assert build_sft_records(records(40), 20, seed=3, instruction_rows={"synthesis": 0.5}) == [
        *sft,
        *[r for r in extra if r["meta_info"]["sft_prompt"]["kind"] == "synthesis"],
    ]


def test_sft_text_renders_the_prompt_each_row_trains_on():
    sft = build_sft_records(records(12), 8, seed=0)
    synthesis, reflection = (
        instruction_rows(sft, {kind: 1.0}, seed=0)[0] for kind in ("synthesis", "reflection")
    )
    assert PROMPT.sft_text(sft[0]) == PROMPT.user_text(sft[0])
    assert PROMPT.sft_text(synthesis) == PROMPT.synthesis_text(synthesis)
    assert "Answer sadness." in PROMPT.sft_text(synthesis)  # the ground truth is in the prompt
    spec = reflection["meta_info"]["sft_prompt"]
    assert PROMPT.sft_text(reflection) == PROMPT.reflection_text(
        reflection, spec["previous"], spec["problems"]
    )
    bad = {**synthesis, "meta_info": {"sft_prompt": {"kind": "chat"}}}
    with pytest.raises(ValueError, match="sft_prompt.kind 'chat'"):
        PROMPT.sft_text(bad)


def test_reflection_rows_carry_a_failing_response_and_the_checks_own_problems():
    sft = build_sft_records(records(120), 80, seed=1)
    rows = instruction_rows(sft, {"reflection": 1.0}, seed=1)
    assert len(rows) == len(sft)  # every corruption fails a check
    seen = Counter()
    for row in rows:
        spec = row["meta_info"]["sft_prompt"]
        check = triple_check(spec["previous"], row)
        assert not check.passed and spec["problems"] == check.problems
        assert triple_check(row["description"], row).passed  # the target fixes them
        seen[spec["corruption"]] += 1
    assert set(seen) == {"omit_au", "extra_au", "swap_au", "wrong_emotion", "inconsistent_answer"}


def test_corruptions_fit_the_labels_a_row_has():
    teacher = TemplateTeacher()
    au_only = records(6)[4]
    for seed in range(20):
        _, corruption = flawed_response(au_only, teacher, seed)
        assert corruption != "wrong_emotion"  # no gold emotion to contradict
    relaxed = make_record(id="r", dataset="toy", image="r.png", aus=[], labels=["neutral"])
    for seed in range(20):
        assert flawed_response(relaxed, teacher, seed)[1] not in ("omit_au", "swap_au")


@pytest.mark.parametrize(
    ("bad", "match"),
    [({"chat": 0.5}, "unknown kind"), ({"synthesis": 1.5}, "fraction"), ({"reflection": "a"}, "fraction")],
)
def test_instruction_fractions_are_checked(bad, match):
    with pytest.raises(ValueError, match=match):
        check_fractions(bad)


def test_synthesised_rows_get_no_instruction_copies():
    rows = build_sft_records(records(6), 4, seed=0)
    synthesised = [{**r, "meta_info": {"synthesis": {"round": 1}}} for r in rows]
    assert instruction_rows(synthesised, {"synthesis": 1.0, "reflection": 1.0}) == []


# ---- SFT eligibility: partial-label rows --------------------------------------------------------------------------


def test_partial_label_rows_with_their_own_text_are_eligible_and_selection_is_unchanged_otherwise():
    plain = records(30)
    both = [r for r in plain if r.get("AUs") is not None and r.get("labels")]
    assert select_sft_records(plain, "all") == both  # no description: partial rows need a teacher to invent
    picked = select_sft_records(plain, 10, seed=4)
    with_text = [
        {**r, "description": "x"} if r["id"] == "f004" else r for r in plain
    ]  # one AU-only row, written
    assert select_sft_records(with_text, 10, seed=4) != [] and "f004" in {
        r["id"] for r in select_sft_records(with_text, "all")
    }
    assert select_sft_records(plain, 10, seed=4) == picked  # same seed, same rows (the round keeps SFT-300's)


# ---- the round's data recipe --------------------------------------------------------------------------------------


def write_dataset(root: Path, n: int) -> Path:
    """A toy jsonl dataset (train/val/test) of the KINDS faces with images."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    for split, count in (("train", n), ("val", 2), ("test", 2)):
        lines = []
        for i, record in enumerate(records(count)):
            Image.new("RGB", (8, 8), (i * 9 % 255, 40, 90)).save(root / "img" / f"{split}{i}.png")
            row = {"id": f"{split}{i:03d}", "dataset": "toy", "image": f"img/{split}{i}.png",
                   "labels": record["labels"]}  # fmt: skip
            if record.get("AUs") is not None:
                row["AUs"] = record["AUs"]
            lines.append(json.dumps(row))
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return root


def accepted_file(
    path: Path, source_records: list[dict], round_: int, per_class: dict[str, int] | None = None
):
    """accepted.jsonl of one round: the given records (optionally at most per_class[label] of a class)."""
    taken: Counter = Counter()
    rows = []
    for r in source_records:
        label = r["labels"][0] if r.get("labels") else "(no label)"
        if per_class is not None and taken[label] >= per_class.get(label, 0):
            continue
        taken[label] += 1
        cues = " ".join(f"({au})" for au in r.get("AUs") or [])
        answer = r["labels"][0] if r.get("labels") else "neutral"
        text = f"<think>Cues {cues} point to {answer}.</think><answer>{answer}</answer>"
        outcome = SimpleNamespace(record=r, output=text, attempts=1, check=triple_check(text, r))
        rows.append(accepted_row(outcome, {"round": round_, "split": "train"}))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def toy(tmp_path):
    data = write_dataset(tmp_path / "data", 48)
    evaluation = FacialR1JsonlSource(data, name="toy")
    return SimpleNamespace(root=tmp_path, eval=evaluation, train=evaluation.records("train"))


def test_partial_label_rows_are_kept_or_dropped_and_counted(toy):
    f = accepted_file(toy.root / "r1.jsonl", toy.train, 1)
    kept = SynthRoundsSource(files=[str(f)], eval_source=toy.eval).records("train")
    assert len(kept) == 48 and {r["id"] for r in kept} == {r["id"] for r in toy.train}
    dropper = SynthRoundsSource(files=[str(f)], eval_source=toy.eval, partial_labels="drop")
    rows = dropper.records("train")
    assert len(rows) == 32 and all(r.get("AUs") is not None and r["labels"] for r in rows)
    assert dropper.report.skipped == {"partial_labels_dropped": 16}
    # SFT on the round trains on every kept row, partial ones included (their text is the model's checked answer)
    assert len(build_sft_records(kept, "all", teacher=DatasetTeacher())) == 48


def test_kept_teacher_rows_are_the_sft_300_set_and_win_over_a_synthesised_copy(toy):
    f = accepted_file(toy.root / "r1.jsonl", toy.train, 1)
    source = SynthRoundsSource(files=[str(f)], eval_source=toy.eval, keep_sft=10, keep_sft_seed=7)
    rows = source.records("train")
    # what SFT-300 trained on: same n and stage seed, conf/teacher/template.yaml's teacher (seed 0)
    sft_300 = build_sft_records(toy.train, 10, seed=7, teacher=TemplateTeacher(seed=0))
    teacher_rows = [r for r in rows if "synthesis" not in (r.get("meta_info") or {})]
    assert [(r["id"], r["description"]) for r in teacher_rows] == [
        (r["id"], r["description"]) for r in sft_300
    ]
    assert len(rows) == 48  # each face once: the 10 synthesised copies of teacher faces went
    assert source.report.skipped == {"duplicate_of_teacher_row": 10}
    # and those teacher rows get their instruction copies in the round's SFT
    built = build_sft_records(
        rows, "all", seed=7, teacher=DatasetTeacher(), instruction_rows={"synthesis": 1.0}
    )
    assert sum("sft_prompt" in (r.get("meta_info") or {}) for r in built) == 10


def test_teacher_rows_can_train_only_through_their_instruction_copies(toy):
    f = accepted_file(toy.root / "r1.jsonl", toy.train, 1)
    source = SynthRoundsSource(
        files=[str(f)], eval_source=toy.eval, keep_sft=10, keep_sft_seed=7, keep_sft_prompts="instructions"
    )
    rows = source.records("train")
    # every synthesised row stays, beside the 10 teacher rows
    assert len(rows) == 58 and not source.report.skipped
    built = build_sft_records(
        rows, "all", seed=7, teacher=DatasetTeacher(), instruction_rows={"synthesis": 1.0, "reflection": 0.5}
    )
    prompts = Counter((r.get("meta_info") or {}).get("sft_prompt", {}).get("kind", "user") for r in built)
    assert prompts == {"user": 48, "synthesis": 10, "reflection": 5}
    user_rows = [r for r in built if "sft_prompt" not in (r.get("meta_info") or {})]
    assert all("synthesis" in r["meta_info"] for r in user_rows)  # each user-prompt row: the model's own
    with pytest.raises(ValueError, match="instruction_rows"):  # the teacher rows would silently vanish
        build_sft_records(rows, "all", seed=7, teacher=DatasetTeacher(), instruction_rows=None)
    with pytest.raises(ValueError, match="keep_sft_prompts"):
        SynthRoundsSource(files=[str(f)], eval_source=toy.eval, keep_sft=10, keep_sft_prompts="some")


def test_class_balance_caps_big_classes_and_upsamples_small_ones(toy):
    counts = {"sadness": 8, "happiness": 2, "disgust": 4, "anger": 8, "fear": 8, "(no label)": 3}
    f = accepted_file(toy.root / "r1.jsonl", toy.train, 1, per_class=counts)

    def per_class(rows):
        return Counter(r["labels"][0] if r.get("labels") else "(no label)" for r in rows)

    plain = SynthRoundsSource(files=[str(f)])
    assert per_class(plain.records("train")) == counts
    capped = SynthRoundsSource(files=[str(f)], balance="cap", balance_ratio=1.5)
    assert per_class(capped.records("train")) == {**counts, "sadness": 3, "anger": 3, "fear": 3, "disgust": 3}
    assert capped.report.skipped == {"class_balance_cap": 16}
    again = SynthRoundsSource(files=[str(f)], balance="cap", balance_ratio=1.5).records("train")
    assert again == capped.records("train")  # the seeded subset
    up = SynthRoundsSource(files=[str(f)], balance="upsample", balance_ratio=3.0).records("train")
    assert per_class(up) == {
        **counts,
        "happiness": 6,
        "disgust": 8,
    }  # min(largest, 3 x own), AU-only untouched
    assert len({r["id"] for r in up}) == len(up)  # copies are told apart by id
    with pytest.raises(ValueError, match="balance"):
        SynthRoundsSource(files=[str(f)], balance="equalise")
    with pytest.raises(ValueError, match="balance_ratio"):
        SynthRoundsSource(files=[str(f)], balance="cap", balance_ratio=0.5)


def test_dedup_by_face_across_rounds_keeps_the_latest(toy):
    f1 = accepted_file(toy.root / "r1.jsonl", toy.train[:20], 1)
    f2 = accepted_file(toy.root / "r2.jsonl", toy.train[10:30], 2)
    source = SynthRoundsSource(files=[str(f1), str(f2)], keep_sft=0)
    rows = source.records("train")
    assert len(rows) == 30 and source.report.skipped == {"duplicate_across_rounds": 10}
    rounds = {r["id"]: r["meta_info"]["synthesis"]["round"] for r in rows}
    assert all(rounds[r["id"]] == 2 for r in toy.train[10:20])


def test_a_rounds_rejected_faces_load_as_prompts_without_reasoning(toy):
    run = toy.root / "synth_run"
    accepted_file(run / "accepted.jsonl", toy.train[:30], 1)
    wrong = "<think>Nothing moves.</think><answer>neutral</answer>"
    rejected = [
        rejected_row(
            SimpleNamespace(record=r, output=wrong, attempts=6, check=triple_check(wrong, r)),
            {"round": 1, "split": "train"},
        )  # fmt: skip
        for r in toy.train[30:]
    ]
    (run / "rejected.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rejected))
    hard = SynthRoundsSource(runs=[str(run)], rows="rejected").records("train")
    assert [r["id"] for r in hard] == [r["id"] for r in toy.train[30:]]
    assert all(r["description"] is None for r in hard)
    assert [(r["AUs"], r["labels"]) for r in hard] == [(r["AUs"], r["labels"]) for r in toy.train[30:]]
    both = SynthRoundsSource(runs=[str(run)], rows="all").records("train")
    assert sorted(r["id"] for r in both) == sorted(r["id"] for r in toy.train)
    # an SFT stage on them trains only the rows with checked reasoning
    assert len(build_sft_records(both, "all", teacher=DatasetTeacher())) == 30
    assert len(SynthRoundsSource(runs=[str(run)]).records("train")) == 30  # the default: accepted rows only
    with pytest.raises(ValueError, match="dataset.rows"):
        SynthRoundsSource(runs=[str(run)], rows="hard")


def test_keep_sft_needs_a_source_for_the_teacher_rows(toy):
    f = accepted_file(toy.root / "r1.jsonl", toy.train[:4], 1)
    with pytest.raises(ValueError, match="eval_source"):
        SynthRoundsSource(files=[str(f)], keep_sft=3)


# ---- acceptance per class and attempt -----------------------------------------------------------------------------


def right(record: dict) -> str:
    cues = " ".join(f"({au})" for au in record.get("AUs") or [])
    answer = record["labels"][0] if record.get("labels") else "neutral"
    return f"<think>Cues {cues} point to {answer}.</think><answer>{answer}</answer>"


def test_acceptance_is_counted_per_class_and_attempt_and_tabled():
    tally = Tally()
    fates = [(True, 1), (True, 3), (False, 6), (True, 2), (True, 1), (False, 6)]  # per KINDS class, in order
    for record, (passed, attempt) in zip(records(6), fates, strict=True):
        text = right(record) if passed else "<think>x</think><answer>y</answer>"
        outcome = Outcome(record, text, triple_check(text, record), attempt)
        assert outcome.accepted == passed
        row = (accepted_row if passed else rejected_row)(outcome, {"round": 1})
        tally.add(row, accepted=passed)
    counts = tally.to_dict()
    assert counts["per_class_acceptance"] == {"(no label)": 1.0, "anger": 1.0, "disgust": 0.0, "fear": 0.0,
                                              "happiness": 1.0, "sadness": 1.0}  # fmt: skip
    assert counts["accepted_per_attempt"] == {"1": 2, "2": 1, "3": 1} and counts["rescued_by_reflection"] == 2
    assert counts["accepted_per_class_attempt"]["happiness"] == {"3": 1}
    table = acceptance_table(counts)
    assert "| happiness | 1 | 1 | 1.000 | 0 | 0 | 1 | 1 |" in table
    assert "| disgust | 1 | 0 | 0.000 | 0 | 0 | 0 | 0 |" in table
    assert "| **all** | 6 | 4 | 0.667 | 2 | 1 | 1 | 2 |" in table


# ---- pipeline rounds ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("round_init", "start"), [("base", None), ("sft300", "sft_300"), ("latest", None)])
def test_rounds_chain_and_each_round_sft_starts_where_configured(round_init, start):
    stages = {s.name: s for s in pipeline.build_stages(2, round_init)}
    assert list(stages) == ["sft_300", "sft300_grpo", "synth_round1", "sft_synth_round1", "grpo_synth_round1",
                            "synth_round2", "sft_synth_round2", "grpo_synth_round2"]  # fmt: skip
    assert stages["synth_round2"].init_from == "grpo_synth_round1"
    assert stages["sft_synth_round2"].data_from == ("synth_round1", "synth_round2")
    expected = {"base": None, "sft300": "sft_300", "latest": "grpo_synth_round1"}[round_init]
    assert stages["sft_synth_round2"].init_from == expected
    assert ("model.init_from=null" in stages["sft_synth_round2"].args) == (round_init == "base")


def test_round_stage_command_reads_every_round_and_base_starts_untrained(tmp_path):
    stages = {s.name: s for s in pipeline.build_stages(2, "base")}
    inputs = {"synth_round1": tmp_path / "s1", "synth_round2": tmp_path / "s2"}
    command = pipeline.stage_command(
        stages["sft_synth_round2"], tmp_path / "r", tmp_path, 0, inputs, [], False
    )
    assert f"dataset.runs=[{tmp_path / 's1'},{tmp_path / 's2'}]" in command
    assert "model.init_from=null" in command and sum(a.startswith("model.init_from=") for a in command) == 1


def test_pipeline_arguments_take_hydra_style_rounds_and_refuse_bad_ones():
    args = pipeline.parse_args(
        ["rounds=2", "round_init=sft300", "--seeds", "0,1,2", "--", "synth_round2:limit=5"]
    )
    assert (args.rounds, args.round_init, args.seeds, args.overrides) == (
        2,
        "sft300",
        "0,1,2",
        ["synth_round2:limit=5"],
    )
    assert pipeline.stage_overrides(pipeline.build_stages(2)[5], args.overrides) == ["limit=5"]
    with pytest.raises(pipeline.PipelineError, match="round_init"):
        pipeline.build_stages(1, "scratch")
    with pytest.raises(pipeline.PipelineError, match="unknown selector"):
        pipeline.stage_overrides(pipeline.build_stages(1)[0], ["synth_roundx:limit=1"])


def test_a_changed_round_init_under_one_out_root_is_refused(tmp_path):
    pipeline.save_state(tmp_path, {"stages": {"sft_300": {}}, "round_init": "latest", "seed": 0})
    with pytest.raises(pipeline.PipelineError, match="round_init=latest"):
        pipeline.run_pipeline(tmp_path, round_init="base")


def test_the_round_sft_experiment_builds_the_recipe_and_the_stand_in_is_tiny_only(toy, tmp_path):
    from hydra.utils import instantiate
    from test_config import compose_train

    f = accepted_file(toy.root / "r1.jsonl", toy.train, 1)
    cfg = compose_train(
        [
            "experiment=pipeline_round2_sft",
            "model.init_from=null",
            "dataset.runs=[]",
            f"dataset.files=[{f}]",
            "seed=5",
        ],  # fmt: skip
        tmp_path / "run",
    )
    assert (cfg.dataset.keep_sft, cfg.dataset.balance, cfg.dataset.partial_labels) == (300, "cap", "keep")
    assert cfg.dataset.keep_sft_seed == 5 and cfg.stage.num_samples == "all"
    assert dict(cfg.stage.instruction_rows) == {"synthesis": 0.5, "reflection": 0.5}
    source = instantiate({**cfg.dataset, "keep_sft": 10, "eval_source": None}, eval_source=toy.eval)
    assert isinstance(source.keep_sft_teacher, TemplateTeacher) and source.keep_sft_seed == 5
    published = compose_train(["model=qwen2_5_vl_7b", "model.path=/nowhere"], tmp_path / "run2")
    assert published.stage.instruction_rows is None
