"""The results collector on hand-written run folders: which folders are runs, what a row holds, mean ± std over
seeds, and the Markdown / CSV files. Numbers are chosen so the expected means and stds are easy to check by hand."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from facial_r1 import results

BASE_METRICS = {
    "split": "test",
    "num_samples": 500,
    "emotion_acc": 0.5,
    "emotion_uar": 0.4,
    "au_f1_macro": 0.3,
    "au_f1_micro": 0.35,
    "format_rate": 1.0,
    "consistency_rate": 0.9,
    "au_hallucination_rate": None,
    "wall_time_s": 100.0,
    "global_step": 700,
    "au_f1_per_au": {"AU1": 0.5},
}


def make_run(
    root: Path,
    name: str,
    *,
    stage: str = "sft",
    experiment: str | None = None,
    reward: str = "au_acc_format",
    seed: int = 0,
    overrides: tuple[str, ...] = (),
    task: str = "train",
    model_path: str | None = None,
    init_from: str | None = None,
    **metrics: float | None,
) -> Path:
    """A run folder as train.py / evaluate.py write it (only the files the collector reads)."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    config = {
        "paths": {"output_root": "${oc.env:FACIAL_R1_TEST_UNSET,outputs}"},
        "model": {"path": model_path, "init_from": init_from},
        "stage": {"name": "eval" if task == "evaluate" else stage},
        "task_name": task,
        "run_name": "${stage.name}",  # saved unresolved, as Hydra does
        "seed": seed,
    }
    choices = {"experiment": experiment, "reward": reward, "stage": None if task == "evaluate" else stage}
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    (run / "metrics.json").write_text(json.dumps({**BASE_METRICS, **metrics}))
    if task == "train":
        (run / "run_info.json").write_text(json.dumps({"stage": stage, "seed": seed}))
    return run


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    """Two seeds of GRPO (one level deeper, as a multirun), one SFT, one zero-shot evaluation, and non-runs."""
    root = tmp_path / "outputs"
    sweep = root / "train" / "multirun" / "2026-01-01_00-00-00"
    make_run(sweep, "0_au_acc_format_seed0", stage="grpo", experiment="sft300_grpo", seed=0, emotion_acc=0.5,
             overrides=("stage=grpo", "seed=0", "model.init_from=/a/model", "paths.output_root=/x"))  # fmt: skip
    make_run(sweep, "1_au_acc_format_seed1", stage="grpo", experiment="sft300_grpo", seed=1, emotion_acc=0.7,
             au_hallucination_rate=0.2, wall_time_s=200.0,
             overrides=("stage=grpo", "seed=1", "model.init_from=/b/model", "paths.output_root=/y"))  # fmt: skip
    make_run(root / "train", "2026-01-01_00-00-01_sft", stage="sft", experiment="sft_300", emotion_acc=0.4)
    make_run(root / "evaluate", "2026-01-01_00-00-02_zero_shot", task="evaluate", experiment="zero_shot",
             emotion_acc=0.1, overrides=("+experiment=zero_shot", "limit=500"))  # fmt: skip
    (root / "synthesize" / "run").mkdir(parents=True)
    (root / "synthesize" / "run" / "manifest.json").write_text("{}")  # a synthesis run: not a row
    (root / "stray").mkdir()
    (root / "stray" / "metrics.json").write_text("{}")  # no .hydra/config.yaml: not a run
    return root


def test_find_runs_at_any_depth_skips_folders_that_are_not_runs(runs_root):
    found = results.find_runs([runs_root])
    assert sorted(p.name for p in found) == [
        "0_au_acc_format_seed0",
        "1_au_acc_format_seed1",
        "2026-01-01_00-00-01_sft",
        "2026-01-01_00-00-02_zero_shot",
    ]
    # a run folder given directly is a root too; duplicates across roots count once
    direct = runs_root / "train" / "2026-01-01_00-00-01_sft"
    assert results.find_runs([direct, runs_root]).count(direct.resolve()) == 1


def test_rows_read_stage_experiment_reward_seed_and_metrics(runs_root):
    rows = {r["run"]: r for r in results.collect([runs_root])}
    grpo = rows["1_au_acc_format_seed1"]
    assert (grpo["stage"], grpo["experiment"], grpo["reward"], grpo["seed"]) == (
        "grpo",
        "sft300_grpo",
        "au_acc_format",
        1,
    )
    assert (
        grpo["emotion_acc"] == 0.7 and grpo["au_hallucination_rate"] == 0.2 and grpo["wall_time_s"] == 200.0
    )
    assert (grpo["split"], grpo["n_eval"], grpo["global_step"]) == ("test", 500, 700)
    assert grpo["variant"] == ""  # stage/seed are columns; init_from and paths are bookkeeping
    sft = rows["2026-01-01_00-00-01_sft"]
    assert (sft["stage"], sft["experiment"], sft["reward"]) == (
        "sft",
        "sft_300",
        "-",
    )  # SFT trains on no reward
    zero = rows["2026-01-01_00-00-02_zero_shot"]
    assert (zero["stage"], zero["experiment"], zero["variant"]) == ("zero-shot", "zero_shot", "limit=500")
    # table order: the paper's ablation order
    assert [r["experiment"] for r in results.collect([runs_root])] == [
        "zero_shot",
        "sft_300",
        "sft300_grpo",
        "sft300_grpo",
    ]


def test_experiment_falls_back_to_run_name_and_an_evaluated_export_is_eval(tmp_path):
    make_run(tmp_path, "plain", stage="grpo")
    make_run(tmp_path, "eval_export", task="evaluate", model_path="/runs/x/model")
    rows = {r["run"]: r for r in results.collect([tmp_path])}
    assert rows["plain"]["experiment"] == "grpo"  # run_name: ${stage.name} resolved
    assert rows["eval_export"]["stage"] == "eval"


def test_mean_std_is_the_sample_std_and_skips_missing():
    mean, std = results.mean_std([0.5, 0.7])
    assert mean == pytest.approx(0.6) and std == pytest.approx(math.sqrt(0.02))  # sqrt(((0.1)^2 * 2) / 1)
    assert results.mean_std([0.5, None]) == (0.5, None)
    assert results.mean_std([None, None]) == (None, None)
    assert results.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)


def test_groups_pool_seeds_only(runs_root):
    rows = results.collect([runs_root])
    groups = results.group_rows(rows)
    assert [(g["experiment"], g["runs"]) for g in groups] == [
        ("zero_shot", 1),
        ("sft_300", 1),
        ("sft300_grpo", 2),
    ]
    grpo = groups[-1]
    assert grpo["seeds"] == "0 1"
    assert grpo["emotion_acc_mean"] == pytest.approx(0.6)
    assert grpo["emotion_acc_std"] == pytest.approx(0.141421, abs=1e-5)
    assert grpo["au_f1_macro_std"] == pytest.approx(0.0)
    assert (
        grpo["au_hallucination_rate_mean"] == pytest.approx(0.2) and grpo["au_hallucination_rate_std"] is None
    )
    assert grpo["wall_time_s_mean"] == pytest.approx(150.0)


def test_a_different_override_is_a_different_group(tmp_path):
    make_run(tmp_path, "a", stage="grpo", experiment="x", seed=0, overrides=("stage.lr=1e-4", "seed=0"))
    make_run(tmp_path, "b", stage="grpo", experiment="x", seed=1, overrides=("stage.lr=1e-4", "seed=1"))
    make_run(tmp_path, "c", stage="grpo", experiment="x", seed=0, overrides=("stage.lr=3e-4",))
    make_run(tmp_path, "d", stage="grpo", experiment="x", reward="format_only", seed=0)
    groups = results.group_rows(results.collect([tmp_path]))
    assert sorted((g["reward"], g["variant"], g["runs"]) for g in groups) == [
        ("au_acc_format", "stage.lr=1e-4", 2),
        ("au_acc_format", "stage.lr=3e-4", 1),
        ("format_only", "", 1),
    ]


def test_a_key_given_twice_is_shown_with_its_last_value(tmp_path):
    make_run(tmp_path, "a", stage="grpo", experiment="x", seed=0,
             overrides=("trainer.max_steps=400", "reward=a", "trainer.max_steps=600", "seed=0"))  # fmt: skip
    make_run(
        tmp_path, "b", stage="grpo", experiment="x", seed=1, overrides=("trainer.max_steps=600", "seed=1")
    )
    rows = results.collect([tmp_path])
    assert [r["variant"] for r in rows] == ["trainer.max_steps=600", "trainer.max_steps=600"]
    assert len(results.group_rows(rows)) == 1  # the same settings: one group of two seeds


def test_runs_from_different_checkpoints_are_not_pooled_as_seeds(tmp_path):
    """The same command from two checkpoints (init_from is bookkeeping, left out of the variant): seeds 0 and 1 from
    each round-3 SFT would read as four seeds of one row; they are two rows, told apart by a `from` column."""
    for seed in (0, 1):
        for start, acc in (("sft_synth_round3", 0.9), ("sft_300", 0.5)):
            make_run(tmp_path, f"{start}_{seed}", stage="grpo", experiment="sft300_grpo_synth", seed=seed,
                     init_from=f"/o/seed{seed}/train/2026-12-07_03-35-5{seed}_{start}/model", emotion_acc=acc,
                     overrides=(f"model.init_from=/o/seed{seed}/x", f"seed={seed}"))  # fmt: skip
    rows = results.collect([tmp_path])
    assert {r["start"] for r in rows} == {"sft_synth_round3", "sft_300"}
    groups = results.group_rows(rows)
    assert sorted((g["start"], g["seeds"], g["emotion_acc_mean"]) for g in groups) == [
        ("sft_300", "0 1", pytest.approx(0.5)),
        ("sft_synth_round3", "0 1", pytest.approx(0.9)),
    ]
    table = "\n".join(results.grouped_markdown(rows))
    assert "| from |" in table and "| sft_synth_round3 | 0 1 |" in table
    # one checkpoint per seed, named by seed: still one setting over three seeds, and no `from` column
    other = tmp_path / "per_seed"
    for seed in (0, 1, 2):
        make_run(
            other, f"r{seed}", stage="grpo", experiment="e", seed=seed, init_from=f"/ckpt/sft_seed{seed}"
        )
    rows = results.collect([other])
    assert [(g["runs"], g["start"]) for g in results.group_rows(rows)] == [
        (3, "sft_seed0 sft_seed1 sft_seed2")
    ]
    assert "from" not in "\n".join(results.grouped_markdown(rows))
    # the same start and seeds twice (two chains' round SFTs, differing only in dataset.runs): said, not hidden
    for seed in (0, 1):
        make_run(other / "again", f"r{seed}", stage="grpo", experiment="e", seed=seed, init_from=f"/ckpt/sft_seed{seed}",
                 overrides=("dataset.runs=[/other/synth]",))  # fmt: skip
    text = "\n".join(results.grouped_markdown(results.collect([other])))
    assert "**Seeds repeat in a row:** e (seeds 0 0 1 1 2)" in text
    assert (
        results.start_name(None) == "-"
        and results.start_name("/m/2026-01-02_03-04-05_sft_all/model/") == "sft_all"
    )


def test_find_runs_follows_links_to_folders_once(runs_root, tmp_path):
    """An outputs folder that links to run folders elsewhere (another disk, a curated collection) is collected; a
    link back up the tree does not loop."""
    collection = tmp_path / "collection"
    collection.mkdir()
    (collection / "grpo").symlink_to(runs_root / "train" / "multirun", target_is_directory=True)
    (collection / "sft").symlink_to(runs_root / "train" / "2026-01-01_00-00-01_sft", target_is_directory=True)
    (collection / "loop").symlink_to(collection, target_is_directory=True)
    found = results.find_runs([collection])
    assert sorted(p.name for p in found) == ["0_au_acc_format_seed0", "1_au_acc_format_seed1",
                                             "2026-01-01_00-00-01_sft"]  # fmt: skip
    assert all(p == p.resolve() for p in found)


def test_markdown_and_csv_files(runs_root, tmp_path):
    rows = results.collect([runs_root])
    paths = results.write_results(rows, tmp_path / "out")
    text = paths["markdown"].read_text()
    assert "## Mean ± std over seeds" in text and "## Runs" in text
    # variant column (the evaluation's limit=500), empty for the GRPO group
    assert "| sft300_grpo | grpo | au_acc_format | - | test (n=500) |  | 0 1 | 0.600 ± 0.141 |" in text
    assert "| zero_shot | zero-shot | - | - | test (n=500) |" in text
    assert "Not comparable" not in text  # every row evaluated on the same split and size
    with paths["runs_csv"].open() as f:
        runs = list(csv.DictReader(f))
    assert len(runs) == 4 and list(runs[0]) == list(results.RUN_COLUMNS)
    assert {r["emotion_acc"] for r in runs} == {"0.1", "0.4", "0.5", "0.7"}
    assert runs[-1]["au_hallucination_rate"] == "0.2" and runs[0]["au_hallucination_rate"] == ""
    with paths["grouped_csv"].open() as f:
        grouped = list(csv.DictReader(f))
    assert len(grouped) == 3 and float(grouped[-1]["emotion_acc_std"]) == pytest.approx(0.141421, abs=1e-5)


def test_markdown_warns_when_held_out_splits_differ(tmp_path):
    make_run(tmp_path, "a", experiment="x")
    make_run(tmp_path, "b", experiment="y", num_samples=8)
    assert "Not comparable as one table" in results.to_markdown(results.collect([tmp_path]))


def test_cli_writes_the_files_and_fails_without_runs(runs_root, tmp_path, capsys):
    assert results.main([str(runs_root), "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "results.md").is_file() and (tmp_path / "cli" / "results.csv").is_file()
    assert "0.600 ± 0.141" in capsys.readouterr().out
    assert (
        results.main([str(runs_root)]) == 0 and (runs_root / "results.md").is_file()
    )  # default: the first root
    (tmp_path / "empty").mkdir()
    assert results.main([str(tmp_path / "empty")]) == 1


def test_read_curves_joins_csv_versions_and_skips_empty_cells(tmp_path):
    for version, lines in (
        (0, ["step,train/loss,lr-AdamW", "0,,0.001", "0,2.5,", "1,2.0,"]),
        (1, ["step,train/loss,val/emotion_acc", "2,1.5,0.25"]),
    ):
        folder = tmp_path / "csv" / f"version_{version}"
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    curves = results.read_curves(tmp_path)
    assert [c.get("train/loss") for c in curves] == [None, 2.5, 2.0, 1.5]
    assert curves[-1] == {"step": 2.0, "train/loss": 1.5, "val/emotion_acc": 0.25}
    assert results.read_curves(tmp_path / "nothing") == []


def test_read_predictions_and_attach_images(tmp_path):
    run = make_run(tmp_path, "run", experiment="x")
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    config["dataset"] = {
        "_target_": "facial_r1.data.sources.SynthFacesSource",
        "cache_dir": str(tmp_path / "cache"),
        "n_train": 1,
        "n_val": 1,
        "n_test": 2,
        "progress": False,
    }
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    from facial_r1.data.sources import SynthFacesSource

    test_ids = [r["id"] for r in SynthFacesSource(cache_dir=str(tmp_path / "cache"), n_train=1, n_val=1, n_test=2,
                                                   progress=False).records("test")]  # fmt: skip
    rows = [
        {"id": test_ids[1], "dataset": "synthfaces", "output": "x"},
        {"id": "gone", "dataset": "synthfaces"},
    ]
    (run / "predictions.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    predictions = results.read_predictions(run)
    assert [p["id"] for p in predictions] == [test_ids[1], "gone"]
    joined = results.attach_images(run, predictions)
    assert Path(joined[0]["image"]).is_file() and joined[0]["output"] == "x"
    assert joined[1]["image"] is None


def test_result_columns_are_the_headline_metrics() -> None:
    from facial_r1.evaluation.affect_metrics import AFFECT_HEADLINE_KEYS
    from facial_r1.evaluation.metrics import HEADLINE_KEYS

    assert (*AFFECT_HEADLINE_KEYS, "format_va_rate") == results.AFFECT_METRICS
    headline = (k for k in HEADLINE_KEYS if k != "rouge_l")
    assert (*headline, "judge_score", *results.AFFECT_METRICS, "wall_time_s") == results.METRICS


def test_affect_columns_appear_only_where_some_run_has_them(tmp_path: Path) -> None:
    make_run(tmp_path / "plain", "a", experiment="sft_300", seed=0, emotion_acc=0.7)
    affect = {"valence_ccc": 0.61, "arousal_ccc": 0.7, "au_intensity_icc": 0.5, "au_intensity_mae": 0.8}
    make_run(tmp_path / "affect", "b", experiment="sft300_affect", seed=0, **affect)
    make_run(tmp_path / "affect", "c", experiment="sft300_affect", seed=1, **{**affect, "valence_ccc": 0.65})
    rows = results.collect([tmp_path])
    by_run = {(r["experiment"], r["seed"]): r for r in rows}
    assert by_run[("sft300_affect", 1)]["valence_ccc"] == 0.65
    assert by_run[("sft_300", 0)]["valence_ccc"] is None
    group = next(g for g in results.group_rows(rows) if g["experiment"] == "sft300_affect")
    assert group["valence_ccc_mean"] == pytest.approx(0.63)
    assert group["valence_ccc_std"] == pytest.approx(0.028284, abs=1e-5)
    md = results.to_markdown(rows)
    assert "V CCC" in md and "AU int. ICC" in md and "0.630 ± 0.028" in md
    assert "compound acc" not in md  # no run has a compound target
    assert "V CCC" not in results.to_markdown(results.collect([tmp_path / "plain"]))


def _judge(
    model: str = "gpt-4o", rubric: str = "reasoning_v1", base_url: str = "https://api.openai.com/v1"
) -> dict:
    return {"model": model, "rubric": rubric, "base_url": base_url, "rubric_sha256": "x", "temperature": 0.0}


def test_judge_scores_of_one_judge_share_a_column(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    make_run(root, "a", task="evaluate", model_path="/m1", judge_score=6.0, judge=_judge())
    make_run(root, "b", task="evaluate", model_path="/m2", judge_score=5.0, judge=_judge())
    make_run(root, "c", task="evaluate", model_path="/m3")  # not judged: fine beside judged rows
    rows = results.collect([root])
    assert [r["judge_score"] for r in rows] == [6.0, 5.0, None]
    assert (
        rows[0]["judge"] == "gpt-4o | reasoning_v1 | https://api.openai.com/v1" and rows[2]["judge"] is None
    )
    text = results.to_markdown(rows)
    assert "judge score" in text and "`gpt-4o | reasoning_v1 | https://api.openai.com/v1`" in text
    assert "judge score" not in results.to_markdown(rows[2:])  # no judged run: no empty column


@pytest.mark.parametrize(
    "other",
    [_judge(model="gpt-4o-2024-05-13"), _judge(rubric="reasoning_v2"), _judge(base_url="http://x/v1")],
)
def test_results_refuse_to_mix_judges(tmp_path: Path, other: dict, capsys) -> None:
    root = tmp_path / "runs"
    make_run(root, "a", task="evaluate", model_path="/m1", judge_score=6.0, judge=_judge())
    make_run(root, "b", task="evaluate", model_path="/m2", judge_score=5.0, judge=other)
    with pytest.raises(results.MixedJudgesError, match="2 different judges"):
        results.collect([root])
    rows = [results.load_run(root / "a"), results.load_run(root / "b")]
    with pytest.raises(results.MixedJudgesError):
        results.write_results(rows, tmp_path / "out")
    assert results.main([str(root)]) == 2
    assert "different judges" in capsys.readouterr().err and not (root / "results.md").exists()


def test_protocol_and_intervals_in_the_tables(tmp_path):
    ci = {"emotion_acc": [0.46, 0.54], "au_f1_macro": None}
    make_run(tmp_path, "a", task="evaluate", model_path="/m", protocol="rafdb", ci95=ci)
    make_run(tmp_path, "b", task="evaluate", model_path="/m", protocol="official")
    rows = results.collect([tmp_path])
    assert sorted(r["protocol"] for r in rows) == ["official", "rafdb"]
    assert len(results.group_rows(rows)) == 2  # different protocols are never pooled
    rafdb = next(r for r in rows if r["protocol"] == "rafdb")
    assert (rafdb["emotion_acc_ci_low"], rafdb["emotion_acc_ci_high"]) == (0.46, 0.54)
    assert "au_f1_macro_ci_low" not in rafdb
    markdown = results.to_markdown(rows)
    assert "0.500 ± 0.040" in markdown and "| rafdb |" in markdown
    paths = results.write_results(rows, tmp_path / "out")
    with paths["runs_csv"].open() as f:
        written = {r["protocol"]: r for r in csv.DictReader(f)}
    assert (
        written["rafdb"]["emotion_acc_ci_high"] == "0.54" and written["official"]["emotion_acc_ci_low"] == ""
    )


def test_load_note_reports_the_range_and_how_many_runs_recorded_it(tmp_path: Path) -> None:
    make_run(tmp_path, "a", seed=0, machine={"load_1m_start": 0.5, "load_1m_end": 2.25, "cores": 2})
    make_run(tmp_path, "b", seed=1, machine={"load_1m_start": 1.0, "load_1m_end": 1.5, "cores": 2})
    rows = results.collect([tmp_path])
    assert [(r["load_1m_start"], r["load_1m_end"]) for r in rows] == [(0.5, 2.25), (1.0, 1.5)]
    assert results.load_note(rows) == "Machine load (1-minute average at each run's start and end): 0.5-2.2."
    make_run(tmp_path, "c", seed=2)  # an older run: metrics.json without `machine`
    note = results.load_note(results.collect([tmp_path]))
    assert note.endswith("0.5-2.2 (2 of 3 runs recorded it).")
    assert results.load_note(results.collect([tmp_path / "c"])) == "Machine load: not recorded by these runs."


def test_into_rewrites_only_the_named_block_and_is_repeatable(
    runs_root: Path, tmp_path: Path, capsys
) -> None:
    readme, docs = tmp_path / "README.md", tmp_path / "experiments.md"
    readme.write_text("intro\n<!-- results:table -->\nold table\n<!-- /results:table -->\noutro\n")
    docs.write_text("# Docs\n<!-- results:other -->\nkeep\n<!-- /results:other -->\n<!-- results:table -->\n"
                    "<!-- /results:table -->\n")  # fmt: skip
    argv = [
        str(runs_root),
        "--out",
        str(tmp_path / "out"),
        "--into",
        f"{readme}:table",
        "--into",
        f"{docs}:table",
    ]
    assert results.main(argv) == 0
    text = readme.read_text()
    assert text.startswith("intro\n<!-- results:table -->\nWritten by `python -m facial_r1.results ")
    assert text.endswith("<!-- /results:table -->\noutro\n") and "old table" not in text
    assert "| sft300_grpo | grpo | au_acc_format | - | test (n=500) |  | 0 1 | 0.600 ± 0.141 |" in text
    assert "Machine load: not recorded by these runs." in text and "4 runs, seeds 0, 1" in text
    assert "keep" in docs.read_text() and "0.600 ± 0.141" in docs.read_text()
    assert results.main(argv) == 0 and readme.read_text() == text  # rerunning rewrites the same block


@pytest.mark.parametrize(
    "content", ["no markers\n", "<!-- /results:table -->\n<!-- results:table -->\n",
                "<!-- results:table -->\n<!-- /results:table -->\n<!-- results:table -->\n"],
)  # fmt: skip
def test_into_refuses_missing_or_misordered_markers_and_touches_no_file(
    runs_root: Path, tmp_path: Path, capsys, content: str
) -> None:
    good, bad = tmp_path / "good.md", tmp_path / "bad.md"
    good.write_text("<!-- results:table -->\n<!-- /results:table -->\n")
    bad.write_text(content)
    argv = [
        str(runs_root),
        "--out",
        str(tmp_path / "out"),
        "--into",
        f"{good}:table",
        "--into",
        f"{bad}:table",
    ]
    assert results.main(argv) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "<!-- results:table -->" in err and "<!-- /results:table -->" in err
    assert good.read_text() == "<!-- results:table -->\n<!-- /results:table -->\n"  # checked before writing
    assert results.parse_into("docs/x.md") == (Path("docs/x.md"), "results")


def test_columns_narrow_the_markdown_tables_but_not_the_csv(runs_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert results.main([str(runs_root), "--out", str(out), "--columns", "au_f1_micro,emotion_acc"]) == 0
    markdown = (out / "results.md").read_text()
    assert (
        "| seeds | AU F1 micro | emotion acc |" in markdown
        and "| seed | AU F1 micro | emotion acc |" in markdown
    )
    assert "UAR" not in markdown and "wall s" not in markdown
    assert "emotion_uar_mean" in (out / "results_grouped.csv").read_text()
    with pytest.raises(SystemExit):
        results.main([str(runs_root), "--out", str(out), "--columns", "emotion_acc,accuracy"])
    assert "unknown column(s) accuracy" in capsys.readouterr().err
