"""Reading run folders into rows (:func:`collect`) and grouping rows that differ only in their seed
(:func:`group_rows`)."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from facial_r1.results.columns import _BOOKKEEPING, _NAMED, IDENTITY, METRICS, ORDER, STAGE_ORDER

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
        "variant": " ".join(_normalise(o) for o in _last_values(overrides) if not _ignored(o)),
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


def _last_values(overrides: Sequence[str]) -> list[str]:
    """Each key once, at its last position with its last value: Hydra applies a key given twice (a pipeline stage's
    ``grpo:trainer.max_steps=400`` then ``grpo_synth:trainer.max_steps=600``) as the last one."""
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    return [o for i, o in enumerate(overrides) if keys[i] not in keys[i + 1 :]]


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
