"""Crash-safe storage of a synthesis run: append-only JSON lines, recovered on start, plus running counts.

Why this shape: a run over tens of thousands of samples must survive ``kill -9``, a lost GPU or a full disk and
continue without duplicating or losing an accepted sample. So:

* each finished batch is appended to ``accepted.jsonl`` / ``rejected.jsonl`` in one ``write`` per file, then flushed
  and ``fsync``-ed, before the next batch starts;
* on start the files are read back: a torn tail (a last line without its newline, or lines that do not parse after
  the last good one) is cut off the file, and the ids of every complete line form the set of finished samples;
* a sample counts as finished once it is in either file, so a kill between the two appends only redoes the
  rejected part of that batch;
* an exclusive lock on ``synthesis.lock`` stops two processes from appending to the same run (the OS drops the lock
  when a process dies, even by SIGKILL).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from facial_r1.data.schema import DataError
from facial_r1.files import exclusive_lock, write_json_atomic
from facial_r1.synthesis.checks import CHECKS

log = logging.getLogger(__name__)

ACCEPTED, REJECTED, MANIFEST, LOCK = "accepted.jsonl", "rejected.jsonl", "manifest.json", "synthesis.lock"
ACCEPTANCE = "acceptance.md"  # the acceptance table per class and attempt, written when a run completes


def sample_key(record: dict[str, Any]) -> str:
    """Identity of a sample in a run: ids are unique only within a dataset."""
    return f"{record.get('dataset')}/{record['id']}"


def read_jsonl(path: str | Path, repair: bool = False) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file; a torn tail is dropped (and cut off the file when ``repair``).

    A torn tail is what a killed writer leaves: an unterminated last line, or (after a power loss) garbage lines at
    the end. A bad line followed by good lines cannot come from an interrupted append, so it raises instead.
    """
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    rows: list[dict[str, Any]] = []
    good_end = 0  # byte offset just past the last good line
    bad_line: int | None = None
    offset = 0
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        offset += len(line)
        row = _parse_line(line) if line.endswith(b"\n") else None
        if row is None:
            if line.strip() and bad_line is None:
                bad_line = number
            continue
        if bad_line is not None:
            raise DataError(
                f"line {bad_line} is corrupt but later lines are fine; repair it by hand", str(path)
            )
        rows.append(row)
        good_end = offset
    if good_end < len(data):
        log.warning("%s: dropping %d bytes of a torn last write", path, len(data) - good_end)
        if repair:
            with open(path, "r+b") as handle:
                handle.truncate(good_end)
                handle.flush()
                os.fsync(handle.fileno())
    return rows


def _parse_line(line: bytes) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        row = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return row if isinstance(row, dict) and "id" in row else None


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """``manifest.json`` of a run folder, or {} when there is none (yet)."""
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}  # written atomically, so someone edited it; the counts are rebuilt from the files anyway


NO_LABEL = "(no label)"  # the class of an AU-only sample in the per-class counts
UNREADABLE = "unreadable_input"  # the rejection reason of a sample whose image did not load (never checked)


class Tally:
    """Counts over finished samples (per dataset, class, attempt and check), fed row by row.

    Per-check counts in :meth:`to_dict` (every check listed, zeros included, so a reader sees what was counted):

    * ``rejected_by_check``: rejected samples whose last response failed the check while it was enforced; a sample
      failing two enforced checks counts under both, so the numbers may sum to more than ``rejected``.
    * ``rejected_only_by``: rejected samples this check alone turned away (its failure was the only enforced one).
    * ``accepted_failed_checks``: accepted samples that fail a check that was not enforced, e.g. ``consistency``
      under the published ``enforce=[au, emotion]``: what the gating let through.
    * ``rejected_failed_checks``: every failed check of rejected samples, enforced or not (the older summary).
    * ``accepted_consistency_rate``: the share of accepted samples whose reasoning concludes the emotion they
      answer (the evaluation's ``consistency_rate`` over the accepted data); 1.0 whenever ``consistency`` gates.

    Per class (the first gold label; ``(no label)`` for AU-only samples) and per attempt:

    * ``per_class_acceptance``: accepted / finished of each class.
    * ``accepted_per_class_attempt``: accepted samples of each class by the attempt that passed (1 = the first,
      ground-truth-conditioned answer; k > 1 = after k - 1 reflections).
    * ``rescued_by_reflection``: accepted samples that failed their first attempt (attempt > 1), overall.

    Rows written before a check existed lack its flag and count nowhere for it (nor in the rate); rows without
    ``rejected_by`` (older runs) are read as rejected by every check they failed.
    """

    def __init__(self) -> None:
        self.accepted = 0
        self.rejected = 0
        self.per_dataset: dict[str, Counter] = defaultdict(Counter)
        self.per_class: dict[str, Counter] = defaultdict(Counter)
        self.accepted_per_attempt: Counter = Counter()
        self.accepted_per_class_attempt: dict[str, Counter] = defaultdict(Counter)
        self.failed_checks: Counter = Counter()
        self.rejected_by: Counter = Counter()
        self.rejected_only_by: Counter = Counter()
        self.accepted_failed: Counter = Counter()
        self.accepted_consistency: Counter = Counter()  # consistency flag (True / False) -> accepted rows

    def add(self, row: dict[str, Any], accepted: bool) -> None:
        info = (row.get("meta_info") or {}).get("synthesis") or {}
        checks = info.get("checks") or {}
        failed = list(checks.get("failed") or [])
        verdict = "accepted" if accepted else "rejected"
        self.per_dataset[str(row.get("dataset"))][verdict] += 1
        label = row["labels"][0] if row.get("labels") else NO_LABEL
        self.per_class[label][verdict] += 1
        if accepted:
            self.accepted += 1
            self.accepted_per_attempt[int(info.get("attempt", 0))] += 1
            self.accepted_per_class_attempt[label][int(info.get("attempt", 0))] += 1
            self.accepted_failed.update(failed)
            if isinstance(checks.get("consistency"), bool):
                self.accepted_consistency[checks["consistency"]] += 1
            return
        self.rejected += 1
        unreadable = [UNREADABLE] if info.get("error") else []
        reasons = unreadable + list(checks.get("rejected_by", failed))
        self.failed_checks.update(unreadable + failed)
        self.rejected_by.update(reasons)
        if len(reasons) == 1:
            self.rejected_only_by[reasons[0]] += 1

    @property
    def finished(self) -> int:
        return self.accepted + self.rejected

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.finished if self.finished else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "finished": self.finished,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "acceptance_rate": self.acceptance_rate,
            "per_dataset": {k: dict(v) for k, v in sorted(self.per_dataset.items())},
            "per_class": {k: dict(v) for k, v in sorted(self.per_class.items())},
            "accepted_per_attempt": {str(k): v for k, v in sorted(self.accepted_per_attempt.items())},
            "per_class_acceptance": {
                k: v["accepted"] / (v["accepted"] + v["rejected"]) for k, v in sorted(self.per_class.items())
            },
            "accepted_per_class_attempt": {
                k: {str(a): n for a, n in sorted(v.items())}
                for k, v in sorted(self.accepted_per_class_attempt.items())
            },
            "rescued_by_reflection": sum(n for a, n in self.accepted_per_attempt.items() if a > 1),
            "rejected_failed_checks": dict(sorted(self.failed_checks.items())),
            "rejected_by_check": _per_check(self.rejected_by),
            "rejected_only_by": _per_check(self.rejected_only_by),
            "accepted_failed_checks": _per_check(self.accepted_failed),
            "accepted_consistency_rate": (
                self.accepted_consistency[True] / judged
                if (judged := sum(self.accepted_consistency.values()))
                else None
            ),
        }


def acceptance_table(counts: dict[str, Any]) -> str:
    """Markdown table of a run's acceptance per class and per attempt (``Tally.to_dict()`` / manifest ``counts``).

    One row per class and a total row: finished, accepted, the rate, then the accepted samples by the attempt that
    passed (``attempt 1`` = first answer, ``attempt k`` = after k - 1 reflections) and how many reflection rescued.
    """
    per_class = counts.get("per_class") or {}
    by_attempt = counts.get("accepted_per_class_attempt") or {}
    attempts = sorted({int(a) for v in by_attempt.values() for a in v} | {1})
    head = ["class", "finished", "accepted", "acceptance", *(f"attempt {a}" for a in attempts), "rescued"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(name: str, finished: int, accepted: int, per_attempt: dict[str, int]) -> str:
        rate = f"{accepted / finished:.3f}" if finished else "-"
        cells = [str(per_attempt.get(str(a), 0)) for a in attempts]
        rescued = sum(n for a, n in per_attempt.items() if int(a) > 1)
        return "| " + " | ".join([name, str(finished), str(accepted), rate, *cells, str(rescued)]) + " |"

    for name, verdicts in per_class.items():
        accepted = int(verdicts.get("accepted", 0))
        lines.append(
            row(name, accepted + int(verdicts.get("rejected", 0)), accepted, by_attempt.get(name, {}))
        )
    total = {str(a): n for a, n in (counts.get("accepted_per_attempt") or {}).items()}
    lines.append(row("**all**", int(counts.get("finished", 0)), int(counts.get("accepted", 0)), total))
    return "\n".join(lines) + "\n"


def _per_check(counter: Counter) -> dict[str, int]:
    """Every check with its count (zeros kept), then any other reason (unreadable input) that occurred."""
    return {
        **{name: counter[name] for name in CHECKS},
        **{k: v for k, v in sorted(counter.items()) if k not in CHECKS},
    }


class RunStore:
    """The files of one run folder. Use as a context manager: it holds the lock and the open append handles."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.accepted_path = self.run_dir / ACCEPTED
        self.rejected_path = self.run_dir / REJECTED
        self.manifest_path = self.run_dir / MANIFEST
        self.finished: set[str] = set()
        self.tally = Tally()
        self._handles: dict[str, Any] = {}
        self._lock: contextlib.ExitStack | None = None

    def __enter__(self) -> RunStore:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        self.recover()
        for name, path in (("accepted", self.accepted_path), ("rejected", self.rejected_path)):
            self._handles[name] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in __exit__
        _fsync_dir(self.run_dir)  # the files' directory entries survive a crash too
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
        if self._lock is not None:
            self._lock.close()  # releases the lock
            self._lock = None

    def recover(self) -> None:
        """Rebuild the finished set and the counts from the files, cutting off a torn last write."""
        self.finished.clear()
        self.tally = Tally()
        for path, accepted in ((self.accepted_path, True), (self.rejected_path, False)):
            for row in read_jsonl(path, repair=True):
                key = sample_key(row)
                if key in self.finished:
                    # Cannot happen through this class; a hand-merged file could. Count it once.
                    log.warning("%s: %s appears twice; counted once", path, key)
                    continue
                self.finished.add(key)
                self.tally.add(row, accepted)

    def append(self, accepted: Iterable[dict[str, Any]], rejected: Iterable[dict[str, Any]]) -> None:
        """Durably append one batch: accepted rows first, each file flushed and fsync-ed before returning."""
        for name, rows, ok in (("accepted", list(accepted), True), ("rejected", list(rejected), False)):
            if not rows:
                continue
            handle = self._handles[name]
            handle.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
            handle.flush()
            os.fsync(handle.fileno())
            for row in rows:
                self.finished.add(sample_key(row))
                self.tally.add(row, ok)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json_atomic(self.manifest_path, manifest)

    def _acquire_lock(self) -> None:
        """One writer per run folder: a second process is refused at once, not queued behind the first."""
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(exclusive_lock(self.run_dir / LOCK, wait=False))
        except BlockingIOError as err:
            raise RuntimeError(f"another synthesize process is writing to {self.run_dir}") from err
        self._lock = stack


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
