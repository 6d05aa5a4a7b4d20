"""The pipeline (SFT-300 -> GRPO -> [synthesis -> SFT -> GRPO] x rounds) and the reward-ablation multirun.

Fast: how overrides reach stages and how each stage's command is built. Slow: the whole ``--quick`` chain end to end
(five subprocesses on the tiny model, ~1 min on 2 cores) including a resumed rerun and a ``rounds=2`` rerun that
continues it (three more), and a two-run Hydra multirun.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from facial_r1 import pipeline, results
from facial_r1.pipeline import STAGES, PipelineError, stage_command, stage_overrides

REPO = Path(__file__).resolve().parents[1]
BY_NAME = {s.name: s for s in STAGES}


# ---- fast: overrides and commands ---------------------------------------------------------------------------------


def test_stages_chain_through_exports_in_order():
    names = [s.name for s in STAGES]
    assert names == ["sft_300", "sft300_grpo", "synth_round1", "sft_synth_round1", "grpo_synth_round1"]
    for stage in STAGES:  # every input is an earlier stage
        for source in (stage.init_from, *stage.data_from):
            assert source is None or names.index(source) < names.index(stage.name)
    for stage in STAGES:  # every experiment named by a stage exists
        for arg in stage.args:
            if arg.startswith("experiment="):
                assert (REPO / "conf" / "experiment" / f"{arg.split('=')[1]}.yaml").is_file()


def test_selected_overrides_reach_only_their_stages():
    overrides = ["seed_like=1", "sft:stage.lr=1e-4", "grpo:trainer.max_time=null", "synth:limit=5",
                 "train:logger=csv", "sft300_grpo:stage.objective.beta=0", "trainer.max_time=00:00:05:00"]  # fmt: skip
    assert stage_overrides(BY_NAME["sft_300"], overrides) == [
        "seed_like=1",
        "stage.lr=1e-4",
        "logger=csv",
        "trainer.max_time=00:00:05:00",  # a value with ":" is not a selector
    ]
    assert stage_overrides(BY_NAME["sft300_grpo"], overrides) == [
        "seed_like=1",
        "trainer.max_time=null",
        "logger=csv",
        "stage.objective.beta=0",
        "trainer.max_time=00:00:05:00",
    ]
    assert stage_overrides(BY_NAME["synth_round1"], overrides) == [
        "seed_like=1",
        "limit=5",
        "trainer.max_time=00:00:05:00",
    ]


def test_dataset_overrides_go_to_the_held_out_source_of_the_synth_stage():
    overrides = ["dataset.n_test=100", "dataset.duplicates=first", "+dataset.config.p_au_only=0.2"]
    assert stage_overrides(BY_NAME["sft_synth_round1"], overrides) == [
        "dataset.eval_source.n_test=100",
        "dataset.duplicates=first",  # a key of dataset=synth itself
        "+dataset.eval_source.config.p_au_only=0.2",
    ]
    assert stage_overrides(BY_NAME["grpo_synth_round1"], overrides) == overrides
    # every key of conf/dataset/synth.yaml stays with dataset=synth, read from the file (none misrouted)
    synth_keys = [
        k for k in yaml.safe_load((REPO / "conf/dataset/synth.yaml").read_text()) if k != "defaults"
    ]
    assert "keep_sft_prompts" in synth_keys
    plain = [f"dataset.{k}=x" for k in synth_keys]
    assert stage_overrides(BY_NAME["sft_synth_round1"], plain) == plain


@pytest.mark.parametrize("bad", ["dataset=rafdb", "gpu:trainer.devices=2"])
def test_bad_overrides_are_refused_with_a_reason(bad):
    with pytest.raises(PipelineError, match="dataset=synth|unknown selector"):
        stage_overrides(BY_NAME["sft_300"], [bad])


def test_stage_command_names_its_inputs_explicitly(tmp_path):
    inputs = {"sft300_grpo": tmp_path / "g" / "model", "synth_round1": tmp_path / "s"}
    run_dir = tmp_path / "train" / "x_sft_synth_round1"
    command = stage_command(BY_NAME["sft_synth_round1"], run_dir, tmp_path, 3, inputs, ["a=1"], resume=False)
    assert command[:3] == [sys.executable, "train.py", "experiment=pipeline_round2_sft"]
    for arg in (f"paths.output_root={tmp_path}", f"hydra.run.dir={run_dir}", "run_name=sft_synth_round1", "seed=3",
                f"model.init_from={inputs['sft300_grpo']}", f"dataset.runs=[{inputs['synth_round1']}]", "a=1"):  # fmt: skip
        assert arg in command
    assert not any(a.startswith("ckpt_path=") for a in command)
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    resumed = stage_command(BY_NAME["sft_synth_round1"], run_dir, tmp_path, 3, inputs, [], resume=True)
    assert f"ckpt_path={run_dir}" in resumed
    synth = stage_command(BY_NAME["synth_round1"], tmp_path / "s", tmp_path, 0, inputs, [], resume=True)
    assert synth[1] == "synthesize.py" and not any(a.startswith("ckpt_path=") for a in synth)


def test_round_grpo_data_round_prompts_each_rounds_grpo_with_that_rounds_faces(tmp_path):
    from test_config import compose_train

    stages = {s.name: s for s in pipeline.build_stages(rounds=2, round_grpo_data="round")}
    assert stages["grpo_synth_round2"].data_from == ("synth_round2",)  # its own round only, not every round
    assert stages["grpo_synth_round2"].init_from == "sft_synth_round2"
    assert BY_NAME["grpo_synth_round1"].data_from == ()  # the default: SynthFACS' train split
    inputs = {"sft_synth_round1": tmp_path / "sft" / "model", "synth_round1": tmp_path / "s1"}
    command = stage_command(stages["grpo_synth_round1"], tmp_path / "g", tmp_path, 0, inputs, ["dataset.n_test=9"],
                            resume=False)  # fmt: skip
    assert f"dataset.runs=[{tmp_path / 's1'}]" in command and "dataset.eval_source.n_test=9" in command
    # the command composes: prompts from the round's accepted and rejected rows, held out on SynthFACS' test split
    cfg = compose_train([a for a in command[2:] if not a.startswith("hydra.")], tmp_path)
    assert cfg.dataset._target_.endswith("SynthRoundsSource") and cfg.dataset.rows == "all"
    assert cfg.dataset.runs == [str(tmp_path / "s1")] and cfg.dataset.eval_source.n_test == 9
    assert cfg.stage.name == "grpo"
    with pytest.raises(PipelineError, match="round_grpo_data"):
        pipeline.build_stages(round_grpo_data="rejected")
    assert pipeline.parse_args(["round_grpo_data=round"]).round_grpo_data == "round"


def test_round_selectors_reach_every_rounds_sft_or_grpo_and_nothing_else():
    stages = {s.name: s for s in pipeline.build_stages(rounds=2)}
    overrides = ["sft_synth:trainer.max_steps=9", "grpo_synth:reward=acc_format"]
    for name in ("sft_synth_round1", "sft_synth_round2"):
        assert stage_overrides(stages[name], overrides) == ["trainer.max_steps=9"]
    for name in ("grpo_synth_round1", "grpo_synth_round2"):
        assert stage_overrides(stages[name], overrides) == ["reward=acc_format"]
    for name in ("sft_300", "sft300_grpo", "synth_round2"):
        assert stage_overrides(stages[name], overrides) == []


def test_preset_sets_the_chain_and_goes_before_the_command_lines_overrides(tmp_path, monkeypatch):
    from test_config import compose_train

    args = pipeline.parse_args(["preset=flywheel", "--", "grpo_synth:trainer.max_steps=7"])
    assert (args.rounds, args.round_init, args.round_grpo_data) == (3, "base", "round")
    stages = {
        s.name: s for s in pipeline.build_stages(args.rounds, args.round_init, None, args.round_grpo_data)
    }
    every = pipeline.chain_overrides(list(stages.values()), False, args.preset_overrides, args.overrides)
    assert every[-1] == "grpo_synth:trainer.max_steps=7"  # the command line's last: it wins
    # a --quick run of the preset stays quick: its budget comes after the preset's step counts
    quick = pipeline.chain_overrides(list(stages.values()), True, args.preset_overrides, [])
    steps = [
        o for o in stage_overrides(stages["sft_synth_round2"], quick) if o.startswith("trainer.max_steps=")
    ]
    assert steps == ["trainer.max_steps=1000", "trainer.max_steps=2"]
    assert pipeline.parse_args(["preset=flywheel", "rounds=1", "round_init=latest"]).rounds == 1
    assert pipeline.parse_args(["preset=flywheel", "round_init=latest"]).round_init == "latest"
    # the round GRPO command composes with the preset's reward and the command line's step count
    stages = {
        s.name: s for s in pipeline.build_stages(args.rounds, args.round_init, None, args.round_grpo_data)
    }
    inputs = {"sft_synth_round1": tmp_path / "sft" / "model", "synth_round1": tmp_path / "s1"}
    command = stage_command(stages["grpo_synth_round1"], tmp_path / "g", tmp_path, 0, inputs, every,
                            resume=False)  # fmt: skip
    cfg = compose_train([a for a in command[2:] if not a.startswith("hydra.")], tmp_path)
    assert "consistency" in cfg.reward.components and cfg.stage.objective.zero_std == "resample"
    assert cfg.trainer.max_steps == 7 and cfg.dataset.rows == "all"
    sft300_grpo = stage_command(stages["sft300_grpo"], tmp_path / "h", tmp_path, 0, {"sft_300": tmp_path / "m"},
                                every, resume=False)  # fmt: skip
    assert "reward=au_acc_format_consistency" not in sft300_grpo and "trainer.max_steps=400" in sft300_grpo
    with pytest.raises(SystemExit):  # argparse's error: names the presets there are
        pipeline.parse_args(["preset=nope"])
    monkeypatch.setattr(pipeline, "PRESETS", tmp_path)
    (tmp_path / "bad.yaml").write_text("rounds: 2\nlr: 1\n")
    with pytest.raises(
        PipelineError, match="a mapping of extends, overrides, round_grpo_data, round_init, rounds only"
    ):
        pipeline.load_preset("bad")
    # extends: the parent's keys and overrides, then the child's (which win); a loop is refused
    (tmp_path / "parent.yaml").write_text("rounds: 3\nround_init: base\noverrides:\n  - a=1\n  - b=2\n")
    (tmp_path / "child.yaml").write_text("extends: parent\nrounds: 2\noverrides:\n  - b=3\n")
    assert pipeline.load_preset("child") == {
        "rounds": 2,
        "round_init": "base",
        "overrides": ["a=1", "b=2", "b=3"],
    }
    (tmp_path / "loop.yaml").write_text("extends: loop\n")
    with pytest.raises(PipelineError, match="loop"):
        pipeline.load_preset("loop")
    (tmp_path / "braces.yaml").write_text("overrides:\n  - synth:generation.retry={do_sample: true}\n")
    with pytest.raises(PipelineError, match="quote"):
        pipeline.load_preset("braces")


def test_parse_args_splits_hydra_overrides_after_the_double_dash(tmp_path):
    args = pipeline.parse_args(
        ["--out-root", str(tmp_path), "--quick", "--seed", "2", "--", "a=1", "sft:b=2"]
    )
    assert (args.out_root, args.quick, args.seed, args.overrides) == (tmp_path, True, 2, ["a=1", "sft:b=2"])
    assert pipeline.parse_args([]).overrides == []


def test_ablation_stages_follow_the_chain_in_table_order_and_start_where_their_row_says():
    every = pipeline.build_stages(2, "latest", "all")
    names = [s.name for s in every]
    assert names[:8] == [s.name for s in pipeline.build_stages(2)]  # the chain first, unchanged
    assert names[8:] == [
        "zero_shot", "sft_300_llm_like", "sft_all", "sft_all_noisy", "sft_all_llm_like",
        "sft300_grpo_acc_format", "sft300_grpo_au_format", "sft300_grpo_au_acc_format_consistency",
    ]  # fmt: skip
    by_name = {s.name: s for s in every}
    for name in ("sft300_grpo_acc_format", "sft300_grpo_au_format", "sft300_grpo_au_acc_format_consistency"):
        assert by_name[name].init_from == "sft_300" and by_name[name].kind == "grpo"
        reward = name.removeprefix("sft300_grpo_")
        assert (REPO / "conf" / "reward" / f"{reward}.yaml").is_file()
    for stage in pipeline.ABLATION:  # every experiment exists; the SFT rows start from the base model
        experiment = next(a for a in stage.args if "experiment=" in a).split("=")[1]
        assert (REPO / "conf" / "experiment" / f"{experiment}.yaml").is_file()
        assert stage.init_from is None or stage.kind == "grpo"
    # a subset keeps table order, whatever the order asked; none / unknown
    subset = pipeline.ablation_stages("sft_all,zero_shot")
    assert [s.name for s in subset] == ["zero_shot", "sft_all"]
    assert pipeline.ablation_stages("none") == pipeline.ablation_stages(None) == ()
    with pytest.raises(PipelineError, match="ablation=sft_al: allowed values are all, none or zero_shot"):
        pipeline.ablation_stages("sft_al")


def test_zero_shot_stage_evaluates_the_untrained_model_with_eval_overrides(tmp_path):
    zero_shot = pipeline.ablation_stages("zero_shot")[0]
    command = stage_command(zero_shot, tmp_path / "run", tmp_path, 1, {}, ["eval:limit=5", "train:logger=csv",
                            "zero_shot:split=val", "num_threads=1"], resume=True)  # fmt: skip
    assert command[1] == "evaluate.py" and "+experiment=zero_shot" in command
    assert not any(a.startswith(("model.init_from=", "ckpt_path=")) for a in command)
    assert command[-3:] == ["limit=5", "split=val", "num_threads=1"]  # train:... is not for it
    assert zero_shot.task == "evaluate"
    assert not pipeline.is_finished(zero_shot, tmp_path)
    (tmp_path / "metrics.json").write_text("{}")
    assert pipeline.is_finished(zero_shot, tmp_path) and pipeline.output_of(zero_shot, tmp_path) == tmp_path


def test_bad_ablation_columns_or_into_stop_before_any_stage(tmp_path, monkeypatch):
    args = pipeline.parse_args(["ablation=sft_all,zero_shot", "--columns", "emotion_acc,au_f1_micro"])
    assert args.ablation == "sft_all,zero_shot" and args.columns == ["emotion_acc", "au_f1_micro"]
    for bad in (["ablation=sft_al"], ["--columns", "emotion_accuracy"]):
        with pytest.raises(SystemExit):
            pipeline.parse_args(bad)

    def must_not_run(*args, **kwargs):
        raise AssertionError("a stage ran")

    monkeypatch.setattr(pipeline, "run_pipeline", must_not_run)
    doc = tmp_path / "doc.md"
    doc.write_text("no markers here\n")
    assert pipeline.main(["--out-root", str(tmp_path), "--into", f"{doc}:ablation"]) == 1


def test_other_checkout_names_a_second_clone_but_not_this_one_or_a_plain_folder(tmp_path):
    # A second clone that took over the editable install would otherwise run silently (main() warns with this).
    clone = tmp_path / "clone"
    (clone / "src" / "facial_r1").mkdir(parents=True)
    (clone / "train.py").write_text("")
    (clone / "src" / "facial_r1" / "pipeline.py").write_text("")
    (clone / "conf").mkdir()
    assert pipeline.other_checkout(clone / "conf") == clone.resolve()
    assert pipeline.other_checkout(pipeline.REPO / "conf") is None
    assert pipeline.other_checkout(tmp_path) is None


def test_round2_refuses_an_empty_round(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"status": "complete", "counts": {"accepted": 0}}))
    with pytest.raises(PipelineError, match="accepted no sample"):
        pipeline._check_inputs(BY_NAME["sft_synth_round1"], {"synth_round1": tmp_path})


# ---- slow: the chain end to end -----------------------------------------------------------------------------------


def _run_pipeline(out_root: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "facial_r1.pipeline", "--out-root", str(out_root), "--quick", *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


@pytest.mark.slow
def test_quick_pipeline_chains_every_stage_and_resumes(tmp_path, tiny_model_dir, subprocess_env):
    out_root = tmp_path / "pipeline"
    env = subprocess_env(tmp_path / "unused_default_root")
    _run_pipeline(out_root, env)

    state = json.loads((out_root / "pipeline.json").read_text())
    assert list(state["stages"]) == [s.name for s in STAGES]
    assert all(r["status"] == "done" for r in state["stages"].values())
    run = {name: Path(r["run_dir"]) for name, r in state["stages"].items()}
    assert all(path.parent.parent == out_root for path in run.values())  # one shared paths.output_root
    assert not (tmp_path / "unused_default_root").exists()

    # each stage starts from the previous stage's export, named explicitly
    def card(name: str) -> dict:
        return json.loads((run[name] / "model" / "facial_r1_export.json").read_text())

    assert card("sft_300")["init_from"] is None
    assert card("sft300_grpo")["init_from"] == str(run["sft_300"] / "model")
    manifest = json.loads((run["synth_round1"] / "manifest.json").read_text())
    assert manifest["source_model"]["folder"] == str(run["sft300_grpo"] / "model") and manifest["round"] == 1
    assert manifest["counts"]["accepted"] > 0
    assert card("sft_synth_round1")["init_from"] == str(run["sft300_grpo"] / "model")
    assert card("grpo_synth_round1")["init_from"] == str(run["sft_synth_round1"] / "model")
    round2 = yaml.safe_load((run["sft_synth_round1"] / ".hydra" / "config.yaml").read_text())
    assert round2["dataset"]["_target_"].endswith("SynthRoundsSource")
    assert round2["dataset"]["runs"] == [str(run["synth_round1"])]
    assert round2["teacher"]["_target_"] == "facial_r1.synthesis.rounds.DatasetTeacher"
    assert round2["dataset"]["eval_source"]["n_test"] == 8  # the same held-out split as the other stages

    # the results table: one row per training stage, all on the same held-out split
    rows = {r["experiment"]: r for r in results.collect([out_root])}
    assert set(rows) == {"sft_300", "sft300_grpo", "sft_synth_round1", "grpo_synth_round1"}  # named by stage
    assert {(r["split"], r["n_eval"]) for r in rows.values()} == {("test", 8)}
    assert (out_root / "results.md").is_file() and (out_root / "results.csv").is_file()

    # resume: a stage that lost its evaluation reruns in its own folder from its checkpoint; the rest are skipped
    (run["grpo_synth_round1"] / "metrics.json").unlink()
    proc = _run_pipeline(out_root, env)
    assert proc.stderr.count("skipped") == 4, proc.stderr[-3000:]
    again = json.loads((out_root / "pipeline.json").read_text())["stages"]
    assert {name: r["run_dir"] for name, r in again.items()} == {name: str(p) for name, p in run.items()}
    assert f"ckpt_path={run['grpo_synth_round1']}" in again["grpo_synth_round1"]["command"]
    assert (run["grpo_synth_round1"] / "metrics.json").is_file()

    # rounds=2 continues the finished chain: round 2 synthesises with round 1's GRPO export and its SFT reads both
    # rounds (deduped by face), plus the kept SFT-300 teacher rows
    proc = _run_pipeline(out_root, env, "rounds=2")
    assert proc.stderr.count("skipped") == 5, proc.stderr[-3000:]
    stages = json.loads((out_root / "pipeline.json").read_text())["stages"]
    assert list(stages)[5:] == ["synth_round2", "sft_synth_round2", "grpo_synth_round2"]
    run2 = {name: Path(r["run_dir"]) for name, r in stages.items()}
    manifest = json.loads((run2["synth_round2"] / "manifest.json").read_text())
    assert (
        manifest["source_model"]["folder"] == str(run["grpo_synth_round1"] / "model")
        and manifest["round"] == 2
    )
    sft2 = yaml.safe_load((run2["sft_synth_round2"] / ".hydra" / "config.yaml").read_text())
    assert sft2["dataset"]["runs"] == [str(run["synth_round1"]), str(run2["synth_round2"])]
    assert sft2["dataset"]["keep_sft"] == 32
    assert "duplicate_across_rounds" in (run2["sft_synth_round2"] / "train.log").read_text()
    assert card("sft_synth_round1")["init_from"] == str(run["sft300_grpo"] / "model")  # round_init=latest

    # ablation=zero_shot adds that row after the finished chain; --into writes the final table into a document
    doc = tmp_path / "doc.md"
    doc.write_text("# Results\n\n<!-- results:ablation -->\nold\n<!-- /results:ablation -->\ntail\n")
    proc = _run_pipeline(out_root, env, "rounds=2", "ablation=zero_shot", "--into", f"{doc}:ablation",
                         "--columns", "emotion_acc,au_f1_micro")  # fmt: skip
    assert proc.stderr.count("skipped") == 8, proc.stderr[-3000:]
    stages = json.loads((out_root / "pipeline.json").read_text())["stages"]
    assert (
        list(stages)[8:] == ["zero_shot"] and Path(stages["zero_shot"]["run_dir"]).parent.name == "evaluate"
    )
    rows = {r["experiment"]: r for r in results.collect([out_root])}
    assert rows["zero_shot"]["stage"] == "zero-shot" and rows["zero_shot"]["n_eval"] == 8
    text = doc.read_text()
    assert "old" not in text and text.endswith("<!-- /results:ablation -->\ntail\n")
    assert (
        "Written by `python -m facial_r1.pipeline --out-root" in text and "| zero_shot | zero-shot |" in text
    )
    assert "AU F1 micro" in text and "UAR" not in text  # --columns


@pytest.mark.slow
def test_reward_ablation_multirun_lands_one_folder_per_run_in_one_sweep(
    tmp_path, tiny_sft_run, subprocess_env
):
    out_root = tmp_path / "outputs"
    args = [
        "-m",
        "experiment=reward_ablation",
        "reward=au_format,format_only",  # the command line narrows the experiment's sweep
        "seed=0",
        f"model.init_from={tiny_sft_run / 'model'}",
        "dataset.n_train=64",
        "dataset.n_val=8",
        "dataset.n_test=8",
        "dataset.progress=false",
        "trainer.max_steps=1",
        "trainer.enable_progress_bar=false",
        "logger=csv",
        "stage.eval.every_n_steps=1000",
        "stage.final_eval.limit=4",
        "stage.final_eval.max_new_tokens=32",
        "stage.prompts_per_step=2",
        "stage.objective.num_generations=2",
        "stage.objective.max_completion_length=16",
    ]
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, env=subprocess_env(out_root),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    sweeps = list((out_root / "train" / "multirun").iterdir())
    assert len(sweeps) == 1
    runs = sorted(p.name for p in sweeps[0].iterdir() if p.is_dir())
    assert runs == ["0_au_format_seed0", "1_format_only_seed0"]
    rows = results.collect([sweeps[0]])
    assert sorted((r["stage"], r["reward"], r["seed"]) for r in rows) == [
        ("grpo", "au_format", 0),
        ("grpo", "format_only", 0),
    ]
    for row in rows:
        info = json.loads((Path(row["path"]) / "run_info.json").read_text())
        assert info["init_from"] == str(tiny_sft_run / "model")


@pytest.mark.slow
def test_sft_all_noisy_experiment_trains_on_every_image_with_the_noisy_teacher(
    tmp_path, tiny_model_dir, subprocess_env
):
    """experiment=sft_all_noisy = experiment=sft_all (included) + teacher=template_noisy, at a tiny size."""
    args = ["experiment=sft_all_noisy", "dataset.n_train=64", "dataset.n_val=8", "dataset.n_test=8",
            "dataset.progress=false", "model.tiny.warm_start_steps=0", "stage.batch_size=8", "trainer.max_steps=1",
            "trainer.enable_progress_bar=false", "logger=csv", "stage.eval.every_n_steps=1000",
            "stage.final_eval.limit=4", "stage.final_eval.max_new_tokens=32"]  # fmt: skip
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, env=subprocess_env(tmp_path),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    (run,) = (tmp_path / "train").glob("*_sft")
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert config["stage"]["num_samples"] == "all" and config["trainer"]["max_time"] == "00:00:09:00"
    assert config["teacher"]["noise"]["wrong_emotion_rate"] == 0.2
    log = (run / "train.log").read_text()
    used = int(log.split("sft: ")[1].split(" training records")[0])
    assert used > 32  # every labelled image of the 64, not a sample of them
    (row,) = results.collect([tmp_path])
    assert (row["experiment"], row["stage"]) == ("sft_all_noisy", "sft")


@pytest.mark.parametrize("name", sorted(p.stem for p in pipeline.PRESETS.glob("*.yaml")))
def test_every_shipped_preset_loads_and_its_overrides_reach_known_stages(name):
    args = pipeline.parse_args([f"preset={name}"])
    stages = pipeline.build_stages(args.rounds, args.round_init, None, args.round_grpo_data)
    every = pipeline.chain_overrides(list(stages), False, args.preset_overrides, args.overrides)
    assert every and all(stage_overrides(s, every) is not None for s in stages)  # unknown selectors raise
