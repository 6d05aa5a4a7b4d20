"""Process set-up shared by every entry point (train, evaluate, synthesize): torch CPU threads, the machine load
recorded beside every wall time, and the config resolvers the entry points register before Hydra composes."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

# A folder name may hold 255 bytes on common file systems; a multirun job's folder is "<num>_<overrides>", so the
# overrides part keeps well under it.
MAX_DIRNAME_BYTES = 200


def short_dirname(name: Any, limit: int = MAX_DIRNAME_BYTES) -> str:
    """``name`` as a folder name of at most ``limit`` bytes: unchanged when it fits, else cut and suffixed with a hash
    of the whole (so two long override lists that share a prefix still get two folders). Hydra's multirun folder
    ``<num>_<override_dirname>`` fails with "File name too long" on a sweep with many or long overrides otherwise;
    the full overrides stay in each job's ``.hydra/overrides.yaml``."""
    text = str(name)
    data = text.encode()
    if len(data) <= limit:
        return text
    digest = hashlib.sha1(data).hexdigest()[:10]
    head = data[: limit - len(digest) - 1].decode(errors="ignore")  # never split a multi-byte character
    return f"{head}-{digest}"


def register_resolvers() -> None:
    """The project's OmegaConf resolvers (``${facial_r1.short_dirname:...}`` in conf/hydra/default.yaml). Called by
    the entry points, not at import: importing the package changes no global state."""
    OmegaConf.register_new_resolver("facial_r1.short_dirname", short_dirname, replace=True)


# Measured: 2 threads beat 1 by ~1.3x on 2 cores. A cap, untested beyond 2 cores, because OpenMP synchronisation per
# op outweighs the work of a sub-million-parameter model long before 64 threads.
AUTO_MAX_THREADS = 4


def resolve_threads(value: Any, env: dict[str, str] | None = None, cores: int | None = None) -> int | None:
    """What ``num_threads`` means: an int sets that many torch CPU threads; ``auto`` takes ``OMP_NUM_THREADS`` when it
    is set, else the cores this process may run on, at most ``AUTO_MAX_THREADS``; null leaves torch's default."""
    if value is None:
        return None
    if str(value) != "auto":
        return int(value)
    env = os.environ if env is None else env
    if env.get("OMP_NUM_THREADS", "").strip().isdigit():
        return max(1, int(env["OMP_NUM_THREADS"]))
    if cores is None:
        cores = usable_cores()
    return max(1, min(cores, AUTO_MAX_THREADS))


def set_threads(cfg: DictConfig) -> None:
    """Set torch's CPU intra-op threads from ``num_threads`` (see :func:`resolve_threads`).

    On a 2-core machine to itself the tiny model trains ~1.3x faster on both cores than on one; when other jobs share
    the cores, oversubscribed OpenMP threads make it up to 20x slower, hence ``num_threads=1`` there.
    """
    import torch

    threads = resolve_threads(cfg.get("num_threads"))
    if threads is not None:
        torch.set_num_threads(threads)


def load_average() -> float | None:
    """The machine's 1-minute load average (None where the OS keeps none).

    Recorded at the start and end of every run (``metrics.json`` ``machine``) because a wall time or a wall-clock
    budget means little without it: a second job on a 2-core machine halves the steps per minute.
    """
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def machine_record(load_at_start: float | None) -> dict[str, Any]:
    """``metrics.json``'s ``machine``: the load at the run's start and end and the cores it could use."""
    return {"load_1m_start": load_at_start, "load_1m_end": load_average(), "cores": usable_cores()}


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
