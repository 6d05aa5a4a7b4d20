"""The Markdown tables: grouped (mean ± std over seeds) and per run (value ± half-width of its 95 % interval)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from facial_r1.results.columns import AFFECT_METRICS, HEADERS, IDENTITY, METRICS
from facial_r1.results.runs import _repeats, check_one_judge, group_rows

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


def _common_overrides(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The variant overrides every row shares (stated once above the tables instead of in every line)."""
    if not rows:
        return []
    first = rows[0]["variant"].split()
    return [o for o in first if all(o in r["variant"].split() for r in rows[1:])]
