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

The package: :mod:`~facial_r1.results.columns` (metrics, titles, what a group is), :mod:`~facial_r1.results.runs`
(reading and grouping), :mod:`~facial_r1.results.tables` (Markdown), :mod:`~facial_r1.results.publish` (files and
marked blocks), :mod:`~facial_r1.results.notebook` and :mod:`~facial_r1.results.cli`.
"""

from facial_r1.results.cli import main
from facial_r1.results.columns import (
    AFFECT_METRICS,
    CI_COLUMNS,
    HEADERS,
    IDENTITY,
    METRICS,
    ORDER,
    RUN_COLUMNS,
    STAGE_ORDER,
)
from facial_r1.results.notebook import attach_images, read_curves, read_predictions
from facial_r1.results.publish import (
    MarkerError,
    check_blocks,
    check_markers,
    markers,
    parse_into,
    published_block,
    write_blocks,
    write_into,
    write_results,
)
from facial_r1.results.runs import (
    MixedJudgesError,
    check_one_judge,
    collect,
    find_runs,
    group_rows,
    judge_id,
    load_run,
    mean_std,
    start_name,
)
from facial_r1.results.tables import check_columns, grouped_markdown, load_note, to_markdown

__all__ = [
    "AFFECT_METRICS",
    "METRICS",
    "HEADERS",
    "IDENTITY",
    "CI_COLUMNS",
    "RUN_COLUMNS",
    "ORDER",
    "STAGE_ORDER",
    "find_runs",
    "load_run",
    "start_name",
    "judge_id",
    "MixedJudgesError",
    "check_one_judge",
    "collect",
    "mean_std",
    "group_rows",
    "check_columns",
    "load_note",
    "grouped_markdown",
    "to_markdown",
    "MarkerError",
    "markers",
    "parse_into",
    "check_markers",
    "write_into",
    "check_blocks",
    "write_blocks",
    "published_block",
    "write_results",
    "read_curves",
    "read_predictions",
    "attach_images",
    "main",
]
