"""Who a run is in the dashboards: its id, name, group, job type and tags, fixed before any logger starts.

* ``name``  = ``<experiment or stage>-s<seed>-<YYYYmmdd-HHMMSS>``: ablations and seeds tell apart in the runs table;
* ``group`` = the experiment (``experiment=sft_all``), so every seed of one ablation groups, across separate commands
  and multiruns alike; without an experiment, a multirun groups by its sweep (``<stage>-sweep-<sweep folder>``);
  a single ad-hoc run has no group;
* ``job_type`` = the stage (``sft``, ``grpo``, ``eval``); ``tags`` = stage, reward preset, model, dataset.

The id is fixed here, not read back from the logger: Lightning's ``WandbLogger.version`` is None until the W&B run
exists, so an id read before the first log is lost and a resumed run starts a new W&B run. A resumed training run
(``ckpt_path=...``) takes the id and name recorded in the killed run's ``run_info.json``, so W&B and Trackio continue
the same run. A new run's id and time derive from its run folder (one folder, one run), so that the processes of a
multi-process run, which share the folder, agree on them without talking to each other.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AUTO = "auto"  # the value of logger name/group/tags/job_type that asks for the identity computed here
_ID_ALPHABET = string.ascii_lowercase + string.digits
_FOLDER_TIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)_(\d\d)-(\d\d)-(\d\d)"
)  # conf/hydra/default.yaml's ${now:...}


@dataclass(frozen=True)
class RunIdentity:
    run_id: str
    name: str
    group: str | None
    job_type: str
    tags: tuple[str, ...] = field(default_factory=tuple)

    def run_info(self) -> dict[str, Any]:
        """The keys written to ``run_info.json`` so that a resumed run continues this one."""
        return {"wandb_id": self.run_id, "run_name": self.name, "run_group": self.group}


def new_run_id(run_dir: str | Path | None = None) -> str:
    """An 8-character id in W&B's alphabet (lowercase letters and digits): a hash of the absolute run folder, or
    random without one."""
    if run_dir is None:
        return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
    return hashlib.sha1(str(Path(run_dir).absolute()).encode()).hexdigest()[:8]


def folder_time(run_dir: str | Path | None, now: float | None = None) -> str:
    """``YYYYmmdd-HHMMSS`` from the run folder's (or its multirun sweep folder's) timestamp, else from ``now``."""
    if run_dir is not None:
        for part in (Path(run_dir).name, Path(run_dir).parent.name):
            found = _FOLDER_TIME.search(part)
            if found:
                y, mo, d, h, mi, sec = found.groups()
                return f"{y}{mo}{d}-{h}{mi}{sec}"
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(now))


def hydra_context() -> tuple[dict[str, Any], str | None]:
    """``(config group choices, multirun sweep folder name or None)`` of the running Hydra app; empty outside one."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return {}, None
    hydra = HydraConfig.get()
    choices = dict(hydra.runtime.choices)
    sweep = Path(str(hydra.sweep.dir)).name if hydra.mode == RunMode.MULTIRUN else None
    return choices, sweep


def run_identity(
    cfg: Mapping[str, Any],
    resumed: Mapping[str, Any] | None = None,
    *,
    run_dir: str | Path | None = None,
    choices: Mapping[str, Any] | None = None,
    sweep: str | None = None,
    now: float | None = None,
) -> RunIdentity:
    """The identity of the run ``cfg`` describes; ``resumed`` is the ``run_info.json`` of the run it continues.

    ``run_dir`` fixes a new run's id and time (see :func:`new_run_id`, :func:`folder_time`); ``choices`` / ``sweep``
    default to the running Hydra app's (see :func:`hydra_context`).
    """
    if choices is None and sweep is None:
        choices, sweep = hydra_context()
    choices = dict(choices or {})
    resumed = resumed or {}
    stage = str((cfg.get("stage") or {}).get("name") or cfg.get("task_name") or "run")
    experiment = choices.get("experiment")
    base = str(experiment).replace("/", "-") if experiment else stage
    name = resumed.get("run_name") or f"{base}-s{int(cfg.get('seed') or 0)}-{folder_time(run_dir, now)}"
    if "run_group" in resumed:
        group = resumed["run_group"]
    elif experiment:
        group = base
    elif sweep:
        group = f"{stage}-sweep-{sweep}"
    else:
        group = None
    tags = [stage] + [str(choices[g]) for g in ("reward", "model", "dataset") if choices.get(g)]
    if experiment:
        tags.append(base)
    return RunIdentity(
        run_id=str(resumed.get("wandb_id") or new_run_id(run_dir)),
        name=str(name),
        group=group,
        job_type=stage,
        tags=tuple(dict.fromkeys(tags)),  # unique, in order
    )
