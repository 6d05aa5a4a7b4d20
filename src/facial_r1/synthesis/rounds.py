"""Iterating synthesis in rounds: synthesised data as a dataset source, and the round counter.

``dataset=synth`` (``conf/dataset/synth.yaml``) builds :class:`SynthRoundsSource` from one or more rounds' outputs
(``runs: [<synthesis run dir>, ...]`` reads each ``accepted.jsonl``; ``files: [...]`` names files directly, e.g.
the output of ``review apply``). ``rows: rejected`` reads each run's ``rejected.jsonl`` instead and ``rows: all``
both: faces without checked reasoning, for GRPO prompts on the faces a round could not write right (GRPO needs only
the labels; an SFT stage trains only rows with a description). Split mapping, so every stage evaluates on the same
held-out data:

* ``train`` = the union of the synthesised files (rows keep their original ``dataset`` name);
* ``val`` / ``test`` = the same split of ``eval_source`` (default: SynthFACS, the embedded default's val/test).

The round's data recipe (``conf/dataset/synth.yaml``), applied to the training rows in this order:

1. **dedup across rounds** (``duplicates``, below);
2. **partial-label rows** (``partial_labels``): an accepted AU-only row (its AUs, format and consistency checked) or
   emotion-only row (its answer checked) is kept by default - the SFT loss trains on its text like any row, and
   GRPO's rewards score whichever half is annotated - or dropped with ``drop`` (listed in the load report);
3. **the original SFT teacher rows** (``keep_sft``): the ``keep_sft`` records that ``stage.num_samples=keep_sft``
   with ``stage.seed=keep_sft_seed`` picks from ``eval_source``'s train split - the SFT-300 set itself - written by
   ``keep_sft_teacher`` (SFT-300's teacher). A synthesised row of one of those faces is dropped in their favour
   (dedup by image id: the teacher's text is the reference). With ``keep_sft_prompts=instructions`` the teacher
   rows train only as their synthesis- and reflection-prompt copies (``stage.instruction_rows``), so every
   user-prompt row is the model's own accepted text and no synthesised row is dropped for them;
4. **class balance** (``balance``) of the synthesised rows, by first gold label (AU-only rows have no class and
   are kept): ``cap`` keeps at most ``ceil(balance_ratio x`` the smallest class``)`` rows per class (a seeded
   random subset), ``upsample`` repeats the rows of every smaller class (ids suffixed ``#<copy>``) until each has
   ``min(largest, ceil(balance_ratio x`` its own count``))`` rows, ``none`` keeps the acceptance's class mix.

Synthesised rows record the split they came from; rows made from a val or test split are refused (they would leak
held-out labels into training) unless ``allow_heldout=true``. The same sample synthesised in several rounds is kept
once, from the latest round (``duplicates=latest``), or once from the first (``first``), or every time with the id
suffixed ``@r<round>`` (``all``); left-out copies are listed in the load report.

Round counter: a synthesis run's round defaults to 1 + the newest round of data its source model was trained on,
found by following export cards (``facial_r1_export.json``) back through ``init_from``: a card's ``synth_round``
key if present, else the training run's saved config (``<run>/.hydra/config.yaml``) if its dataset was this source.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

from facial_r1.data.schema import DataError
from facial_r1.data.sources.base import LoadReport, SkippedItem, Source
from facial_r1.lineage import read_card
from facial_r1.synthesis.store import ACCEPTED, NO_LABEL, REJECTED, read_jsonl

log = logging.getLogger(__name__)

DUPLICATE_POLICIES = ("latest", "first", "all")
PARTIAL_POLICIES = ("keep", "drop")
BALANCE_POLICIES = ("none", "cap", "upsample")
KEEP_SFT_PROMPTS = ("all", "instructions")
RUN_ROWS = {"accepted": (ACCEPTED,), "rejected": (REJECTED,), "all": (ACCEPTED, REJECTED)}


def synthesis_info(record: dict[str, Any]) -> dict[str, Any]:
    """``meta_info["synthesis"]`` of a synthesised record ({} for other records)."""
    return (record.get("meta_info") or {}).get("synthesis") or {}


def _class(record: dict[str, Any]) -> str:
    """The class a row is balanced and counted under: its first gold label (AU-only rows: ``(no label)``)."""
    return record["labels"][0] if record.get("labels") else NO_LABEL


def round_files(
    files: list[str] | None = None, runs: list[str] | None = None, rows: str = "accepted"
) -> list[Path]:
    """The data files named by ``files`` and ``runs`` (``<run>/accepted.jsonl``; with ``rows=rejected`` /
    ``all`` ``<run>/rejected.jsonl`` / both), in that order."""
    if rows not in RUN_ROWS:
        raise ValueError(f"dataset.rows must be one of {tuple(RUN_ROWS)}, got {rows!r}")
    paths = [Path(f).expanduser() for f in (files or [])]
    paths += [Path(r).expanduser() / name for r in (runs or []) for name in RUN_ROWS[rows]]
    return paths


class SynthRoundsSource(Source):
    """Synthesised rounds as training data plus a held-out evaluation source (module docstring)."""

    name = "synth"

    def __init__(
        self,
        files: list[str] | None = None,
        runs: list[str] | None = None,
        eval_source: Source | None = None,
        rows: str = "accepted",
        duplicates: str = "latest",
        allow_heldout: bool = False,
        partial_labels: str = "keep",
        keep_sft: int = 0,
        keep_sft_seed: int = 0,
        keep_sft_teacher: Any = None,
        keep_sft_prompts: str = "all",
        balance: str = "none",
        balance_ratio: float = 1.0,
        balance_seed: int = 0,
        on_error: str = "raise",
        report_path: str | None = None,
        root: str | os.PathLike | None = None,
    ):
        self.paths = round_files(list(files or []), list(runs or []), rows)
        if not self.paths:
            raise ValueError(
                "dataset=synth needs dataset.runs=[<synthesis run dir>, ...] or dataset.files=[<accepted.jsonl>, ...]"
            )
        if duplicates not in DUPLICATE_POLICIES:
            raise ValueError(f"dataset.duplicates must be one of {DUPLICATE_POLICIES}, got {duplicates!r}")
        if partial_labels not in PARTIAL_POLICIES:
            raise ValueError(
                f"dataset.partial_labels must be one of {PARTIAL_POLICIES}, got {partial_labels!r}"
            )
        if balance not in BALANCE_POLICIES:
            raise ValueError(f"dataset.balance must be one of {BALANCE_POLICIES}, got {balance!r}")
        if not float(balance_ratio) >= 1.0:
            raise ValueError(f"dataset.balance_ratio must be >= 1, got {balance_ratio}")
        if int(keep_sft) < 0:
            raise ValueError(f"dataset.keep_sft must be >= 0 (0 = none), got {keep_sft}")
        if keep_sft_prompts not in KEEP_SFT_PROMPTS:
            raise ValueError(
                f"dataset.keep_sft_prompts must be one of {KEEP_SFT_PROMPTS}, got {keep_sft_prompts!r}"
            )
        if int(keep_sft) and eval_source is None:
            raise ValueError(
                "dataset.keep_sft needs dataset.eval_source: the teacher rows come from its train split"
            )
        # `root` only anchors the base class; every file is addressed by its own path.
        super().__init__(root or self.paths[0].parent, on_error, report_path, val_fraction=0.0)
        self.eval_source = eval_source
        self.duplicates = duplicates
        self.allow_heldout = allow_heldout
        self.partial_labels = partial_labels
        self.keep_sft, self.keep_sft_seed = int(keep_sft), int(keep_sft_seed)
        self.keep_sft_teacher, self.keep_sft_prompts = keep_sft_teacher, keep_sft_prompts
        self.balance, self.balance_ratio, self.balance_seed = balance, float(balance_ratio), int(balance_seed)

    @property
    def data_round(self) -> int:
        """The newest synthesis round among the training rows (0 when no row says)."""
        return max((int(synthesis_info(r).get("round") or 0) for r in self.records("train")), default=0)

    def _collect(self, split: str, report: LoadReport) -> list[dict[str, Any]]:
        if split == "train":
            return self._collect_train(report)
        if self.eval_source is None:
            raise DataError(f"dataset=synth: no eval_source configured, so there is no {split} split")
        records = self.eval_source.records(split)
        report.items.extend(self.eval_source.reports[split].items)
        return records

    def _collect_train(self, report: LoadReport) -> list[dict[str, Any]]:
        from facial_r1.data.sources.jsonl import FacialR1JsonlSource

        chosen: dict[tuple[str, str], tuple[int, int, dict[str, Any]]] = {}  # key -> (round, order, record)
        order = 0
        for path in self.paths:
            if not path.is_file():
                raise DataError("synthesised data file not found", str(path))
            # Images are absolute paths in synthesised files; "/" as image root keeps them as they are.
            reader = FacialR1JsonlSource(
                path.parent, self.on_error, files={"train": path.name}, image_root="/", name=self.name
            )
            for record in reader._collect("train", report):
                info = synthesis_info(record)
                self._refuse_heldout(info, path)
                rnd, order = int(info.get("round") or 0), order + 1
                key = (record["dataset"], record["id"])
                if self.duplicates == "all":
                    key = (record["dataset"], f"{record['id']}@r{rnd}")
                    record = {**record, "id": key[1]}
                previous = chosen.get(key)
                if previous is not None:
                    keep_new = self.duplicates == "latest" and rnd >= previous[0]
                    dropped = previous[2] if keep_new else record
                    meta = dropped.get("meta_info") or {}
                    report.add(
                        SkippedItem(
                            meta.get("source_file"),
                            meta.get("source_line"),
                            "duplicate_across_rounds",
                            f"{key[0]}/{key[1]} round {synthesis_info(dropped).get('round')} "
                            f"(kept round {rnd if keep_new else previous[0]})",
                            error=False,
                        )  # fmt: skip
                    )
                    if not keep_new:
                        continue
                chosen[key] = (rnd, order, record)
        rows = [record for _, _, record in sorted(chosen.values(), key=lambda item: item[1])]
        rows = self._partial(rows, report)
        teacher_rows = self._teacher_rows(rows, report)
        rows = self._balanced(rows, report)
        log.info(
            "round data: %d synthesised rows (per class after balance=%s: %s) + %d teacher rows",
            len(rows), self.balance, dict(sorted(Counter(_class(r) for r in rows).items())), len(teacher_rows),
        )  # fmt: skip
        return rows + teacher_rows

    def _partial(self, rows: list[dict[str, Any]], report: LoadReport) -> list[dict[str, Any]]:
        if self.partial_labels == "keep":
            return rows
        kept = []
        for row in rows:
            if row.get("AUs") is not None and row.get("labels"):
                kept.append(row)
                continue
            meta = row.get("meta_info") or {}
            kind = "AU-only" if row.get("AUs") is not None else "emotion-only"
            report.add(
                SkippedItem(meta.get("source_file"), meta.get("source_line"), "partial_labels_dropped",
                            f"{row['dataset']}/{row['id']} is {kind} (dataset.partial_labels=drop)", error=False)
            )  # fmt: skip
        return kept

    def _teacher_rows(self, rows: list[dict[str, Any]], report: LoadReport) -> list[dict[str, Any]]:
        """The original SFT set (``keep_sft``), and ``rows`` cut to the faces it does not cover (in place)."""
        if not self.keep_sft:
            return []
        from facial_r1.data.teachers.instructions import INSTRUCTIONS_ONLY
        from facial_r1.data.teachers.template import TemplateTeacher, select_sft_records

        picked = select_sft_records(self.eval_source.records("train"), self.keep_sft, self.keep_sft_seed)
        teacher = self.keep_sft_teacher if self.keep_sft_teacher is not None else TemplateTeacher()
        out = []
        for record in picked:
            text = teacher.describe(record)
            if text is None:
                continue
            out.append({**record, "description": text})
        if self.keep_sft_prompts == "instructions":  # no user-prompt copy, so the synthesised rows all stay
            return [{**r, "meta_info": {**(r.get("meta_info") or {}), INSTRUCTIONS_ONLY: True}} for r in out]
        faces = {(r["dataset"], r["id"]) for r in out}
        synthesised = []
        for row in rows:
            if (row["dataset"], row["id"].split("@r")[0]) in faces:
                meta = row.get("meta_info") or {}
                report.add(
                    SkippedItem(meta.get("source_file"), meta.get("source_line"), "duplicate_of_teacher_row",
                                f"{row['dataset']}/{row['id']} is one of the kept SFT teacher rows", error=False)
                )  # fmt: skip
                continue
            synthesised.append(row)
        rows[:] = synthesised
        return out

    def _balanced(self, rows: list[dict[str, Any]], report: LoadReport) -> list[dict[str, Any]]:
        if self.balance == "none":
            return rows
        groups: dict[str, list[int]] = {}
        for index, row in enumerate(rows):
            label = _class(row)
            if label != NO_LABEL:
                groups.setdefault(label, []).append(index)
        if not groups:
            return rows
        rng = random.Random(self.balance_seed)
        keep = set(range(len(rows)))
        extra: list[dict[str, Any]] = []
        if self.balance == "cap":
            cap = math.ceil(self.balance_ratio * min(len(g) for g in groups.values()))
            for label, members in sorted(groups.items()):
                if len(members) > cap:
                    dropped = set(members) - set(rng.sample(members, cap))
                    keep -= dropped
                    for index in sorted(dropped):
                        meta = rows[index].get("meta_info") or {}
                        report.add(
                            SkippedItem(meta.get("source_file"), meta.get("source_line"), "class_balance_cap",
                                        f"{label}: {len(members)} rows, kept {cap}", error=False)
                        )  # fmt: skip
        else:  # upsample
            largest = max(len(g) for g in groups.values())
            for _label, members in sorted(groups.items()):
                target = min(largest, math.ceil(self.balance_ratio * len(members)))
                for copy in range(target - len(members)):
                    row = rows[members[copy % len(members)]]
                    extra.append({**row, "id": f"{row['id']}#{copy // len(members) + 1}"})
        return [row for index, row in enumerate(rows) if index in keep] + extra

    def _refuse_heldout(self, info: dict[str, Any], path: Path) -> None:
        split = info.get("split")
        if split in ("val", "test") and not self.allow_heldout:
            raise DataError(
                f"rows synthesised from the {split} split would leak held-out labels into training; "
                "set dataset.allow_heldout=true if that is intended",
                str(path),
            )


class DatasetTeacher:
    """An SFT "teacher" that keeps each record's own ``description`` (synthesised data is already written).

    ``fallback`` (any object with ``describe``) writes the records that have none; without it they are dropped by
    ``build_sft_records``. Use it for SFT on synthesised rounds: ``teacher._target_`` pointing here.
    """

    def __init__(self, fallback: Any = None, **_unused: Any) -> None:
        self.fallback = fallback

    def describe(self, record: dict[str, Any]) -> str | None:
        if record.get("description"):
            return record["description"]
        return self.fallback.describe(record) if self.fallback is not None else None


# ---- round counter ------------------------------------------------------------------------------------------------


def max_round_in_files(paths: list[Path]) -> int:
    """Newest synthesis round among the rows of ``paths`` (missing files and rows without a round count 0)."""
    best = 0
    for path in paths:
        for row in read_jsonl(path):
            best = max(best, int(synthesis_info(row).get("round") or 0))
    return best


def _run_config_round(run_dir: Path) -> int:
    """The data round a training run used, read from its saved config (0 if it did not train on this source)."""
    config_path = run_dir / ".hydra" / "config.yaml"
    if not config_path.is_file():
        return 0
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(config_path)
    dataset = cfg.get("dataset") or {}
    if not str(dataset.get("_target_", "")).endswith("SynthRoundsSource"):
        return 0
    try:  # the saved config is already resolved by Hydra; resolve anyway in case it was not
        node = OmegaConf.to_container(cfg, resolve=True)["dataset"]
    except Exception:  # an unresolvable interpolation: read the raw strings
        node = OmegaConf.to_container(dataset, resolve=False)
    return max_round_in_files(
        round_files(node.get("files"), node.get("runs"), node.get("rows") or "accepted")
    )


def trained_round(model_folder: str | Path, _seen: set[str] | None = None) -> int:
    """The newest synthesis round of data that went into the model exported at ``model_folder`` (0 = none)."""
    folder = Path(model_folder)
    seen = _seen if _seen is not None else set()
    key = str(folder.resolve())
    if key in seen:
        return 0
    seen.add(key)
    card = read_card(folder)
    if not card:
        return 0
    if card.get("synth_round") is not None:
        own = int(card["synth_round"])
    else:
        run_dir = Path(card["run_dir"]) if card.get("run_dir") else folder.parent
        own = _run_config_round(run_dir)
    parent = card.get("init_from")
    return max(own, trained_round(parent, seen) if parent else 0)
