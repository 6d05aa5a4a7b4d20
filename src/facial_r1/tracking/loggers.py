"""Build the ``logger`` group's Lightning loggers with the run's identity, and always close them.

``name``, ``group``, ``job_type`` and ``tags`` set to ``auto`` in ``conf/logger/*.yaml`` take the values of
:func:`facial_r1.tracking.naming.run_identity`; any other value is used as written (``logger.wandb.group=my_sweep``).
A W&B logger also gets the identity's run id with ``resume="allow"``, so a resumed run continues the same W&B run
(offline: a second ``offline-run-*-<id>`` folder that ``wandb sync`` appends to the same run).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from facial_r1.tracking.naming import AUTO, RunIdentity, run_identity

log = logging.getLogger(__name__)

_IDENTITY_KEYS = ("name", "group", "job_type", "tags")


def build_loggers(cfg: Mapping[str, Any], identity: RunIdentity | None = None) -> list:
    """Instantiate every logger of ``cfg.logger``; ``identity`` defaults to :func:`run_identity` of ``cfg``."""
    from hydra.utils import instantiate

    confs = [c for c in (cfg.get("logger") or {}).values() if c and "_target_" in c]
    if not confs:
        return []
    identity = identity or run_identity(cfg)
    loggers = []
    for conf in confs:
        extra: dict[str, Any] = {}
        for key in _IDENTITY_KEYS:
            if key in conf and _is_auto(conf[key]):
                value = getattr(identity, key)
                extra[key] = list(value) if key == "tags" else value
        if conf["_target_"].endswith("WandbLogger"):
            extra.update(id=identity.run_id, resume="allow")
        loggers.append(instantiate(conf, **extra))
    return loggers


def _is_auto(value: Any) -> bool:
    return isinstance(value, str) and value == AUTO


def finish_loggers(loggers: list) -> None:
    """Close W&B and Trackio runs, even after a crash, so offline folders are complete and syncable."""
    for lg in loggers:
        experiment = getattr(lg, "_experiment", None)
        close = getattr(lg, "finish", None) or getattr(experiment, "finish", None)
        if experiment is not None and close is not None:
            try:
                close()
            except Exception:  # pragma: no cover - closing must never mask the real error
                log.exception("could not close logger %s", lg)
