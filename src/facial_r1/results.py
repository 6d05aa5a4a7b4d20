"""Collect run folders into one results table: ``python -m facial_r1.results <runs root ...> [--out DIR]``.

A run is any folder, at any depth under the roots, holding ``metrics.json`` and ``.hydra/config.yaml``: a
``train.py`` run (its metrics are the final greedy evaluation of its export on ``stage.final_eval.split``, the
SynthFACS test split by default) or an ``evaluate.py`` run (stage ``zero-shot`` for the untrained embedded model,
``eval`` for a given model folder). Synthesis runs have no ``metrics.json`` and are not rows.

Written to ``--out`` (default: the first root):

* ``results.csv``: one row per run, :data:`RUN_COLUMNS` (with each metric's 95 % bootstrap interval,
  ``<metric>_ci_low`` / ``<metric>_ci_high``, where the run's metrics.json has one);
* ``results_grouped.csv``: one row per group of runs that differ only in their seed (same experiment, stage,
  reward, held-out split and size, and remaining command-line overrides), each metric's mean and sample std;
* ``results.md``: both tables, the grouped one first with ``mean ± std`` cells (std over seeds), the per-run one
  with ``value ± half-width`` of the run's 95 % bootstrap interval (``evaluate.py``'s ``ci95``).

``--into FILE:NAME`` (repeatable) also writes the grouped table, with the command, the seeds and the machine load,
between the markers ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` of a Markdown file (README.md,
docs/experiments.md): published tables are the collector's output, rewritten by rerunning the command, never typed.
``--columns a,b,...`` narrows the Markdown tables (results.md and the blocks) to those metrics; the CSVs keep all.

``protocol`` is the evaluation protocol metrics.json names (``evaluate.py protocol=...``; ``-`` for runs that name
none): runs evaluated under different protocols are never one group.

Where a row's numbers come from: ``experiment`` = a ``run_name=`` given on the command line (the pipeline names
each stage so: ``sft_synth_round2``), else the Hydra choice of the ``experiment`` group, else ``run_name``;
``reward`` = the ``reward`` choice for GRPO runs (SFT and evaluation do not train on a reward: ``-``); ``variant`` =
the run's command-line overrides minus those that name the experiment, stage, reward or seed, and those that differ
between otherwise equal runs for bookkeeping only (paths, run folders, ``model.init_from``, ``dataset.runs``);
``start`` = which checkpoint the run started from, as the name of the run that exported it (its folder name without
the time stamp: ``sft_synth_round3``; ``-`` for the untrained model). A group is the runs equal in everything but
the seed; where such a group holds one seed twice, its runs differ in something the row does not show: it is split by
``start`` when that tells them apart (runs from two different checkpoints are never averaged as seeds of one; the
tables gain a ``from`` column), else the table says so above it;
``dataset.eval_source.<key>`` (the pipeline's round-2 SFT) is shown as ``dataset.<key>``. ``judge_score`` (the LLM
judge's reasoning score of ``evaluate.py judge=openai``) comes with ``judge`` = ``model | rubric | server``; rows of
different judges are refused (:class:`MixedJudgesError`) rather than put in one column, since judges drift apart.

The notebook helpers (:func:`read_curves`, :func:`read_predictions`, :func:`attach_images`) read the rest of a run
folder: Lightning's CSV log, the predictions, and each prediction's image (joined on ``id`` with the run's dataset:
prediction rows carry no image path).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

# Beyond the paper (evaluation.affect_metrics.AFFECT_HEADLINE_KEYS): AU intensity, valence/arousal, compound, and the
# format rate of the affect layout (an affect prompt's answers end with <va>, which the plain format rate counts as
# wrong). None for runs whose data or prompt carries no such target; results.md shows a column only where some run
# has a value.
AFFECT_METRICS = (
    "au_intensity_icc",
    "au_intensity_mae",
    "valence_ccc",
    "arousal_ccc",
    "valence_rmse",
    "arousal_rmse",
    "compound_acc",
    "compound_uar",
    "format_va_rate",
)
# The headline metrics of evaluation.metrics.HEADLINE_KEYS but ROUGE-L, plus the LLM judge's score, the affect
# metrics and time. Spelled out rather than imported: importing the evaluation package loads torch (5 s) for this
# stdlib-only collector; a test keeps them in step.
METRICS = (
    "emotion_acc",
    "emotion_uar",
    "au_f1_macro",
    "au_f1_micro",
    "format_rate",
    "consistency_rate",
    "au_hallucination_rate",
    "judge_score",
    *AFFECT_METRICS,
    "wall_time_s",
)
HEADERS = {  # Markdown column titles
    "emotion_acc": "emotion acc",
    "emotion_uar": "UAR",
    "au_f1_macro": "AU F1 macro",
    "au_f1_micro": "AU F1 micro",
    "format_rate": "format",
    "consistency_rate": "consistency",
    "au_hallucination_rate": "AU halluc.",
    "judge_score": "judge score",
    "au_intensity_icc": "AU int. ICC",
    "au_intensity_mae": "AU int. MAE",
    "valence_ccc": "V CCC",
    "arousal_ccc": "A CCC",
    "valence_rmse": "V RMSE",
    "arousal_rmse": "A RMSE",
    "compound_acc": "compound acc",
    "compound_uar": "compound UAR",
    "format_va_rate": "format (V/A)",
    "wall_time_s": "wall s",
}
IDENTITY = (
    "experiment",
    "stage",
    "reward",
    "protocol",
    "split",
    "n_eval",
    "variant",
    "start",
)  # a group: equal, any seed (``start`` only where a seed repeats: group_rows)
CI_COLUMNS = tuple(f"{m}_ci_{end}" for m in METRICS if m != "wall_time_s" for end in ("low", "high"))
RUN_COLUMNS = (
    "run",
    *IDENTITY[:3],
    "seed",
    *IDENTITY[3:],
    *METRICS,
    *CI_COLUMNS,
    "judge",
    "global_step",
    "load_1m_start",
    "load_1m_end",
    "path",
)
# The paper's ablation order; other experiments follow alphabetically.
ORDER = ("zero_shot", "sft_300", "sft_all", "sft_all_noisy", "sft_300_llm_like", "sft_all_llm_like", "sft300_grpo",
         "pipeline_round2_sft", "sft300_grpo_synth", *(f"{kind}_round{r}" for r in range(1, 10) for kind in ("sft_synth", "grpo_synth")),
         "reward_ablation")  # fmt: skip
STAGE_ORDER = ("zero-shot", "eval", "sft", "grpo")
# Overrides that say nothing about the method: where things were written and which exact folder a stage started from.
_BOOKKEEPING = ("paths.", "hydra.", "model.init_from", "dataset.runs", "dataset.files", "ckpt_path", "run_name",
                "logger", "trainer.enable_progress_bar", "dataset.progress", "progress")  # fmt: skip
_NAMED = ("experiment", "+experiment", "stage", "reward", "seed", "protocol")


# ---- reading runs -------------------------------------------------------------------------------------------------


def find_runs(roots: Iterable[str | Path]) -> list[Path]:
    """Every folder under ``roots`` (or a root itself) with ``metrics.json`` and ``.hydra/config.yaml``, sorted.
    Symbolic links to folders are followed (an ``outputs`` that links to a disk elsewhere, a run folder linked into
    a collection), each real folder once."""
    found: set[Path] = set()
    for root in roots:
        seen: set[str] = set()
        for folder, subfolders, files in os.walk(root, followlinks=True):
            real = os.path.realpath(folder)
            if real in seen:  # a link back up the tree, or two links to one folder
                subfolders[:] = []
                continue
            seen.add(real)
            if "metrics.json" in files and (Path(folder) / ".hydra" / "config.yaml").is_file():
                found.add(Path(real))
    return sorted(found)


def _yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text()) if path.is_file() else None


def _select(config: Any, key: str) -> Any:
    """``key`` (dotted) of the saved config, interpolations resolved where they can be (``run_name: ${stage.name}``)."""
    from omegaconf import OmegaConf

    return OmegaConf.select(config, key, default=None, throw_on_resolution_failure=False)


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """One row of the results table (module docstring) for the run folder ``run_dir``."""
    from omegaconf import OmegaConf

    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    hydra = _yaml(run_dir / ".hydra" / "hydra.yaml") or {}
    choices = ((hydra.get("hydra") or {}).get("runtime") or {}).get("choices") or {}
    overrides = _yaml(run_dir / ".hydra" / "overrides.yaml") or []
    info = (
        json.loads((run_dir / "run_info.json").read_text()) if (run_dir / "run_info.json").is_file() else {}
    )

    stage = info.get("stage") or _select(config, "stage.name") or "?"
    if _select(config, "task_name") == "evaluate" or stage == "eval":
        untrained = not _select(config, "model.path") and not _select(config, "model.init_from")
        stage = "zero-shot" if untrained else "eval"
    # A run named on the command line (the pipeline names each stage: sft_synth_round2) is that row, so rounds that
    # share an experiment file stay apart; otherwise the experiment, else the run name.
    experiment = _named_run(overrides) or choices.get("experiment") or _select(config, "run_name") or stage
    row: dict[str, Any] = {
        "run": run_dir.name,
        "experiment": experiment,
        "stage": stage,
        "reward": choices.get("reward", "-") if stage == "grpo" else "-",
        "protocol": metrics.get("protocol") or "-",
        "seed": _select(config, "seed"),
        "split": metrics.get("split"),
        "n_eval": metrics.get("num_samples"),
        "variant": " ".join(_normalise(o) for o in overrides if not _ignored(o)),
        "start": start_name(_select(config, "model.init_from")),
        "judge": judge_id(metrics.get("judge")),
        "global_step": metrics.get("global_step"),
        # the machine's 1-minute load average at the run's start and end (runtime.machine_record; older runs: None)
        "load_1m_start": _number((metrics.get("machine") or {}).get("load_1m_start")),
        "load_1m_end": _number((metrics.get("machine") or {}).get("load_1m_end")),
        "path": str(run_dir),
    }
    row.update({key: _number(metrics.get(key)) for key in METRICS})
    intervals = metrics.get("ci95") or {}
    for key in METRICS:
        # the judge writes its own interval (judge_score_ci); the others are evaluate.py's ci95
        interval = metrics.get("judge_score_ci") if key == "judge_score" else intervals.get(key)
        if isinstance(interval, list) and len(interval) == 2:
            row[f"{key}_ci_low"], row[f"{key}_ci_high"] = _number(interval[0]), _number(interval[1])
    return row


_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}_")  # conf/hydra/default.yaml's run folder prefix


def start_name(init_from: Any) -> str:
    """The run a checkpoint came from, by name: ``<out>/train/2026-12-07_03-35-54_sft_synth_round3/model`` ->
    ``sft_synth_round3``; a folder of another layout -> its name; None / empty (the untrained model) -> ``-``."""
    if not init_from:
        return "-"
    folder = Path(str(init_from).rstrip("/"))
    folder = folder.parent if folder.name == "model" else folder
    return _STAMP.sub("", folder.name) or str(init_from)


def _named_run(overrides: Sequence[str]) -> str | None:
    names = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == "run_name"]
    return names[-1] if names else None


def judge_id(provenance: Any) -> str | None:
    """``model | rubric | server`` of a metrics.json ``judge`` entry (None when the run was not judged)."""
    if not isinstance(provenance, dict):
        return None
    return " | ".join(str(provenance.get(k)) for k in ("model", "rubric", "base_url"))


class MixedJudgesError(ValueError):
    """Rows scored by different LLM judges would share the judge-score column."""


def check_one_judge(rows: Sequence[dict[str, Any]]) -> None:
    """Raise :class:`MixedJudgesError` when the judged rows name more than one judge (model, rubric version or
    server): judge scores drift between judges, so they are only comparable within one."""
    judges: dict[str, list[str]] = {}
    for row in rows:
        if row.get("judge_score") is not None:
            judges.setdefault(str(row.get("judge")), []).append(str(row["path"]))
    if len(judges) > 1:
        listing = "; ".join(f"{judge}: {', '.join(paths)}" for judge, paths in judges.items())
        raise MixedJudgesError(
            f"judge_score comes from {len(judges)} different judges (model | rubric | server) and would share one "
            f"column: {listing}. Collect each judge's runs separately, or re-score them with one judge."
        )


def _ignored(override: str) -> bool:
    key = override.split("=", 1)[0].lstrip("~")
    return key in _NAMED or any(key == b.rstrip(".") or key.startswith(b) for b in _BOOKKEEPING)


def _normalise(override: str) -> str:
    """``dataset.eval_source.<key>`` (dataset=synth's held-out source) reads as the ``dataset.<key>`` it stands for."""
    return override.replace("dataset.eval_source.", "dataset.", 1)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def collect(roots: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Rows of every run under ``roots``, in table order (experiment, stage, reward, variant, seed); raises
    :class:`MixedJudgesError` when judge scores of different judges would share a column."""
    rows = sorted((load_run(r) for r in find_runs(roots)), key=_sort_key)
    check_one_judge(rows)
    return rows


def _sort_key(row: dict[str, Any]) -> tuple:
    name = str(row["experiment"])
    rank = ORDER.index(name) if name in ORDER else len(ORDER)
    stage = STAGE_ORDER.index(row["stage"]) if row["stage"] in STAGE_ORDER else len(STAGE_ORDER)
    seed = row.get("seed")
    return (rank, name, stage, str(row["reward"]), str(row["variant"]), str(row["start"]),
            seed if isinstance(seed, int) else -1, row["path"])  # fmt: skip


# ---- grouping -----------------------------------------------------------------------------------------------------


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1) of the non-missing values; std is None below two values."""
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not xs:
        return None, None
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, None
    return mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def _repeats(seeds: Sequence[Any]) -> bool:
    return len(set(seeds)) < len(seeds)


def group_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per group of runs equal in :data:`IDENTITY` but the start (i.e. differing only in seed; split by
    ``start`` where a seed repeats, module docstring): ``seeds``, ``runs``,
    ``<metric>_mean`` and ``<metric>_std`` for each of :data:`METRICS`. Keeps the order of ``rows``."""
    by_identity: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        by_identity.setdefault(tuple(row[k] for k in IDENTITY if k != "start"), []).append(row)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for members in by_identity.values():
        # a seed twice: not seeds of one setting (module docstring); split by start where that tells them apart
        by_start: dict[str, list[Any]] = {}
        for m in members:
            by_start.setdefault(str(m["start"]), []).append(m["seed"])
        split = _repeats([m["seed"] for m in members]) and not any(_repeats(s) for s in by_start.values())
        # one name, or what each seed started from
        starts = " ".join(sorted({str(m["start"]) for m in members}))
        for m in members:
            start = m["start"] if split else starts
            groups.setdefault((*(m[k] for k in IDENTITY if k != "start"), start), []).append(m)
    out = []
    for key, members in groups.items():
        group: dict[str, Any] = dict(zip(IDENTITY, key, strict=True))
        group["seeds"] = " ".join(str(m["seed"]) for m in members)
        group["runs"] = len(members)
        for metric in METRICS:
            group[f"{metric}_mean"], group[f"{metric}_std"] = mean_std([m[metric] for m in members])
        out.append(group)
    return out


# ---- writing ------------------------------------------------------------------------------------------------------


def _fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if metric == "wall_time_s" else f"{value:.3f}"


def _cell(mean: float | None, std: float | None, metric: str) -> str:
    return _fmt(mean, metric) if std is None else f"{_fmt(mean, metric)} ± {_fmt(std, metric)}"


def _ci_cell(row: dict[str, Any], metric: str) -> str:
    """``value ± half-width`` of the run's 95 % interval (the interval may be asymmetric: the CSV has both ends)."""
    low, high = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
    if row.get(metric) is None or low is None or high is None:
        return _fmt(row.get(metric), metric)
    return f"{_fmt(row[metric], metric)} ± {_fmt((high - low) / 2, metric)}"


def _table(header: Sequence[str], lines: Iterable[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in line) + " |" for line in lines]
    return out


def _layout(
    rows: Sequence[dict[str, Any]], groups: Sequence[dict[str, Any]], columns: Sequence[str] | None = None
) -> dict[str, Any]:
    """What both tables show: identity columns, metric columns (``columns`` in that order, else every metric, the
    judge and affect ones only where some run has them), each row's variant minus the overrides every row shares."""
    common = _common_overrides(rows)
    shown = {id(r): " ".join(o for o in r["variant"].split() if o not in common) for r in [*rows, *groups]}
    show_variant = any(shown.values())
    # The judge column only where some run was judged (most are not); check_one_judge guarantees a single judge.
    judges = sorted({str(r["judge"]) for r in rows if r.get("judge_score") is not None})
    metrics = [
        m
        for m in METRICS
        if (m != "judge_score" or judges)
        and (m not in AFFECT_METRICS or any(r.get(m) is not None for r in rows))
    ]
    if columns:
        metrics = list(check_columns(columns))
    # "from" only where it tells groups apart that would otherwise read as one row
    rest = [tuple(g[k] for k in IDENTITY if k != "start") for g in groups]
    show_start = len(set(rest)) < len(rest)
    ident = ["experiment", "stage", "reward", "protocol", "held-out", *(["variant"] if show_variant else []),
             *(["from"] if show_start else [])]  # fmt: skip
    return {"common": common, "shown": shown, "show_variant": show_variant, "show_start": show_start,
            "judges": judges, "metrics": metrics, "ident": ident}  # fmt: skip


def check_columns(columns: Sequence[str]) -> Sequence[str]:
    """``columns`` when each is one of :data:`METRICS`; else ValueError listing them."""
    unknown = [c for c in columns if c not in METRICS]
    if unknown:
        raise ValueError(f"unknown column(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    return columns


def load_note(rows: Sequence[dict[str, Any]]) -> str:
    """One sentence on the machine load the runs saw (1-minute load average at each run's start and end)."""
    loads = [r[k] for r in rows for k in ("load_1m_start", "load_1m_end") if r.get(k) is not None]
    recorded = sum(1 for r in rows if r.get("load_1m_start") is not None or r.get("load_1m_end") is not None)
    if not loads:
        return "Machine load: not recorded by these runs."
    return (f"Machine load (1-minute average at each run's start and end): {min(loads):.1f}-{max(loads):.1f}"
            + ("" if recorded == len(rows) else f" ({recorded} of {len(rows)} runs recorded it)") + ".")  # fmt: skip


def grouped_markdown(
    rows: Sequence[dict[str, Any]],
    groups: Sequence[dict[str, Any]] | None = None,
    columns: Sequence[str] | None = None,
) -> list[str]:
    """The grouped table (mean ± std over seeds) with what a reader needs beside it: a warning when the held-out
    splits differ, the overrides every run shares, the machine load."""
    groups = group_rows(rows) if groups is None else groups
    layout = _layout(rows, groups, columns)
    metrics, shown = layout["metrics"], layout["shown"]
    lines: list[str] = []
    evaluated_on = sorted({f"{r['split']} (n={r['n_eval']})" for r in rows})
    if len(evaluated_on) > 1:
        lines += [f"**Not comparable as one table:** runs were evaluated on {', '.join(evaluated_on)}.", ""]
    repeated = [g for g in groups if _repeats(g["seeds"].split())]
    if repeated:  # runs told apart by nothing the row shows (dataset.runs, same-named checkpoints): not seeds
        rows_named = ", ".join(f"{g['experiment']} (seeds {g['seeds']})" for g in repeated)
        lines += [f"**Seeds repeat in a row:** {rows_named}. Its runs differ in something the row does not show "
                  "(e.g. the synthesis runs they trained on); collect them separately.", ""]  # fmt: skip
    if layout["common"]:
        lines += ["Every run: `" + " ".join(layout["common"]) + "`", ""]
    lines += [load_note(rows), ""]
    lines += _table(
        [*layout["ident"], "seeds", *(HEADERS[m] for m in metrics)],
        (
            [
                g["experiment"],
                g["stage"],
                g["reward"],
                g["protocol"],
                f"{g['split']} (n={g['n_eval']})",
                *([shown[id(g)]] if layout["show_variant"] else []),
                *([g["start"]] if layout["show_start"] else []),
                g["seeds"],
                *(_cell(g[f"{m}_mean"], g[f"{m}_std"], m) for m in metrics),
            ]  # fmt: skip
            for g in groups
        ),
    )
    return lines


def to_markdown(
    rows: Sequence[dict[str, Any]],
    groups: Sequence[dict[str, Any]] | None = None,
    columns: Sequence[str] | None = None,
) -> str:
    """``results.md``: the grouped table (mean ± std over seeds) and the per-run table (metric ``columns`` only,
    when given)."""
    check_one_judge(rows)
    groups = group_rows(rows) if groups is None else groups
    layout = _layout(rows, groups, columns)
    metrics, shown, judges = layout["metrics"], layout["shown"], layout["judges"]
    lines = ["# Results", "", "## Mean ± std over seeds", "", *grouped_markdown(rows, groups, columns)]
    lines += ["", "## Runs", ""]
    lines += _table(
        ["run", *layout["ident"], "seed", *(HEADERS[m] for m in metrics)],
        (
            [
                r["run"],
                r["experiment"],
                r["stage"],
                r["reward"],
                r["protocol"],
                f"{r['split']} (n={r['n_eval']})",
                *([shown[id(r)]] if layout["show_variant"] else []),
                *([r["start"]] if layout["show_start"] else []),
                r["seed"],
                *(_ci_cell(r, m) for m in metrics),
            ]  # fmt: skip
            for r in rows
        ),
    )
    lines += ["", "Held-out: the split each run's final evaluation used. Metrics are fractions (the affect MAE / RMSE are in label units, CCC / ICC in [-1, 1]); AU F1 is over the "
              "protocol's AUs (without one: the AUs present in the gold labels). Grouped table: mean ± sample std "
              "over seeds. Runs table: value ± half-width of the run's 95 % bootstrap interval where it has one. "
              "Run folders: `results.csv` (column `path`).", ""]  # fmt: skip
    if judges:
        lines[-1:-1] = [
            f"Judge score: mean reasoning score 1-10 given by `{judges[0]}` (model | rubric | server)."
        ]
    return "\n".join(lines)


# ---- publishing into a document -----------------------------------------------------------------------------------


class MarkerError(ValueError):
    """The target document of ``--into`` lacks the block's markers (or has them out of order)."""


def markers(name: str) -> tuple[str, str]:
    return f"<!-- results:{name} -->", f"<!-- /results:{name} -->"


def parse_into(spec: str) -> tuple[Path, str]:
    """``FILE:NAME`` -> (path, name); a bare ``FILE`` is block ``results``."""
    path, sep, name = str(spec).rpartition(":")
    if not sep or not name or "/" in name:
        return Path(spec), "results"
    return Path(path), name


def check_markers(path: str | Path, name: str) -> str:
    """The text of ``path`` when it holds block ``name``'s markers once each, in order; else :class:`MarkerError`."""
    path = Path(path)
    if not path.is_file():
        raise MarkerError(f"{path}: no such file (--into FILE:NAME writes into an existing Markdown file)")
    text = path.read_text(encoding="utf-8")
    begin, end = markers(name)
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise MarkerError(
            f"{path}: block {name!r} needs exactly one {begin} line followed later by one {end} line "
            f"(found {text.count(begin)} and {text.count(end)}); add them where the table belongs"
        )
    return text


def write_into(path: str | Path, name: str, block: str) -> Path:
    """Replace what lies between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` in ``path`` with
    ``block``; the rest of the file is kept byte for byte. Raises :class:`MarkerError` naming the file and the
    markers to add when they are missing, repeated or out of order."""
    path = Path(path)
    text = check_markers(path, name)
    begin, end = markers(name)
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{block.strip()}\n{end}{tail}", encoding="utf-8")
    return path


def check_blocks(specs: Sequence[str]) -> list[tuple[Path, str]]:
    """The ``--into`` targets (``FILE:NAME``) of ``specs``, each file's markers checked (:class:`MarkerError`), so a
    bad target stops a command before any file is touched."""
    targets = [parse_into(spec) for spec in specs]
    for path, name in targets:
        check_markers(path, name)
    return targets


def write_blocks(specs: Sequence[str], block: str) -> list[tuple[str, Path]]:
    """Write ``block`` into every ``--into`` target of ``specs`` (all checked first); returns (name, path) pairs."""
    return [(name, write_into(path, name, block)) for path, name in check_blocks(specs)]


def published_block(
    rows: Sequence[dict[str, Any]], command: str, columns: Sequence[str] | None = None
) -> str:
    """What ``--into`` writes: the command that rewrites it, and the grouped table with its notes."""
    seeds = sorted({str(r["seed"]) for r in rows})
    return "\n".join(
        [
            f"Written by `{command}` (rerun it to update; do not edit by hand). {len(rows)} runs, seeds "
            f"{', '.join(seeds)}; mean ± sample std over seeds.",
            "",
            *grouped_markdown(rows, columns=columns),
        ]
    )


def _common_overrides(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The variant overrides every row shares (stated once above the tables instead of in every line)."""
    if not rows:
        return []
    first = rows[0]["variant"].split()
    return [o for o in first if all(o in r["variant"].split() for r in rows[1:])]


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})


def write_results(
    rows: Sequence[dict[str, Any]], out_dir: str | Path, columns: Sequence[str] | None = None
) -> dict[str, Path]:
    """Write ``results.md`` (metric ``columns`` only, when given), ``results.csv`` and ``results_grouped.csv`` (every
    metric) into ``out_dir``; returns their paths."""
    check_one_judge(rows)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = group_rows(rows)
    paths = {
        "markdown": out_dir / "results.md",
        "runs_csv": out_dir / "results.csv",
        "grouped_csv": out_dir / "results_grouped.csv",
    }
    paths["markdown"].write_text(to_markdown(rows, groups, columns), encoding="utf-8")
    _write_csv(paths["runs_csv"], RUN_COLUMNS, rows)
    stats = [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
    _write_csv(paths["grouped_csv"], [*IDENTITY, "seeds", "runs", *stats], groups)
    return paths


# ---- the rest of a run folder (for the notebook) ------------------------------------------------------------------


def read_curves(run_dir: str | Path) -> list[dict[str, float]]:
    """Lightning's CSV log (``csv/version_*/metrics.csv``, every version in order: a resumed run appends one) as
    rows of ``{column: float}`` with empty cells left out."""
    rows: list[dict[str, float]] = []
    for path in sorted(Path(run_dir).glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:])):
        with path.open(newline="") as f:
            for raw in csv.DictReader(f):
                row = {}
                for key, value in raw.items():
                    try:
                        row[key] = float(value)
                    except (TypeError, ValueError):
                        continue
                rows.append(row)
    return rows


def read_predictions(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "predictions.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def attach_images(run_dir: str | Path, predictions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``predictions`` with ``image`` (absolute path, or None when not found) from the run's own dataset config.

    The evaluated split's records are loaded through the saved ``dataset`` node (SynthFACS reads its render cache,
    ``$FACIAL_R1_CACHE``, rendering again if that cache is gone) and joined on (``dataset``, ``id``).
    """
    from omegaconf import OmegaConf

    from facial_r1.data.sources import build_source

    run_dir = Path(run_dir)
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    metrics = (
        json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    )
    split = metrics.get("split") or _select(config, "split") or "test"
    source = build_source(config.dataset)
    images = {(r.get("dataset"), r.get("id")): r.get("image") for r in source.records(split)}
    return [{**p, "image": images.get((p.get("dataset"), p.get("id")))} for p in predictions]


# ---- command line -------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m facial_r1.results",
        description="Scan run folders (metrics.json + .hydra/config.yaml, any depth) into results.md / results.csv.",
    )
    parser.add_argument(
        "roots", nargs="+", type=Path, help="run folders or folders holding them (e.g. outputs)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="where to write the tables (default: the first root)"
    )
    parser.add_argument(
        "--into",
        action="append",
        default=[],
        metavar="FILE:NAME",
        help="also write the grouped table between <!-- results:NAME --> and <!-- /results:NAME --> of FILE "
        "(repeatable; NAME defaults to results)",
    )
    parser.add_argument(
        "--columns",
        default=None,
        help="comma list of the metrics the Markdown tables show, in order (e.g. emotion_acc,au_f1_micro,"
        "consistency_rate); the CSV files keep every metric",
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    if columns:
        try:
            check_columns(columns)
        except ValueError as err:
            parser.error(str(err))
    try:
        rows = collect(args.roots)
    except MixedJudgesError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not rows:
        print(
            f"no runs (metrics.json + .hydra/config.yaml) under {', '.join(map(str, args.roots))}",
            file=sys.stderr,
        )
        return 1
    paths = write_results(rows, args.out or args.roots[0], columns)
    print(to_markdown(rows, columns=columns).split("## Runs")[0].rstrip())
    print("\nwrote " + ", ".join(str(p) for p in paths.values()))
    block = published_block(rows, " ".join(["python -m facial_r1.results", *argv]), columns)
    try:
        for name, path in write_blocks(args.into, block):
            print(f"wrote block {name!r} into {path}")
    except MarkerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
