"""A Lightning logger for Trackio: a local-first tracker (W&B-style API) with a local web dashboard.

Runs, metrics and media live in one folder (``dir``, Trackio's ``TRACKIO_DIR``: a SQLite file per project and a
``media/`` tree); ``TRACKIO_DIR=<dir> trackio show --project <project>`` serves the dashboard on localhost, with no
account and no network. Trackio keys runs by name within a project, so a resumed run (same name, ``resume="allow"``)
continues its curves.
"""

from __future__ import annotations

import os
import sys
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only


class TrackioLogger(Logger):
    """Metrics, hyper-parameters and (through :mod:`facial_r1.tracking.media`) tables with images, to Trackio.

    Args:
        project: the Trackio project (one dashboard; runs of all stages side by side).
        name: the run name (``auto`` in the config: see :mod:`facial_r1.tracking.naming`).
        group: the run group (Trackio's "Group by" menu), or None.
        dir: Trackio's data folder; None keeps Trackio's default (``TRACKIO_DIR`` or the Hugging Face cache).
        resume: ``allow`` continues a run of the same name, ``never`` always starts a new one.
        auto_log_system: also log CPU/GPU usage every 10 s (off: they are not training metrics).
    """

    def __init__(
        self,
        project: str,
        name: str | None = None,
        group: str | None = None,
        dir: str | os.PathLike | None = None,
        resume: str = "allow",
        auto_log_system: bool = False,
    ) -> None:
        super().__init__()
        self._project = project
        self._name = name
        self._group = group
        self._dir = Path(dir).absolute() if dir is not None else None
        self._resume = resume
        self._auto_log_system = auto_log_system
        self._config: dict[str, Any] = {}
        self._experiment = None

    @property
    def name(self) -> str:
        return self._project

    @property
    def version(self) -> str | None:
        return self._name

    @property
    def save_dir(self) -> str | None:
        return None if self._dir is None else str(self._dir)

    @property
    @rank_zero_experiment
    def experiment(self):
        """The ``trackio.Run``, started on first use with the hyper-parameters logged so far as its config."""
        if self._experiment is None:
            trackio = _import_trackio(self._dir)
            self._experiment = trackio.init(
                project=self._project,
                name=self._name,
                group=self._group,
                config=dict(self._config),
                resume=self._resume,
                embed=False,
                auto_log_cpu=self._auto_log_system,
                auto_log_gpu=self._auto_log_system,
            )
        return self._experiment

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        params = vars(params) if isinstance(params, Namespace) else dict(params)
        self._config.update(params)
        if self._experiment is not None:  # Trackio sends the config with the run's first log
            self._experiment.config.update(params)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.experiment.log({k: float(v) for k, v in metrics.items()}, step=step)

    def finish(self) -> None:
        """Close the run (flushes its logs to the SQLite file); a no-op if it never started or is closed."""
        run, self._experiment = self._experiment, None
        if run is None:
            return
        from trackio import context_vars

        try:
            run.finish()
        finally:  # else Trackio's exit hook finishes the same run a second time
            if context_vars.current_run.get() is run:
                context_vars.current_run.set(None)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Lightning calls this at the end of fit; the run stays open for the final evaluation, closed by
        :func:`facial_r1.tracking.loggers.finish_loggers`."""


def _import_trackio(data_dir: Path | None):
    """Import Trackio with its data folder set: Trackio reads ``TRACKIO_DIR`` once, when it is first imported."""
    if data_dir is not None:
        if "trackio" in sys.modules:
            from trackio.utils import TRACKIO_DIR

            if Path(TRACKIO_DIR).absolute() != data_dir:
                raise RuntimeError(
                    f"TrackioLogger(dir={data_dir}): trackio was already imported with TRACKIO_DIR={TRACKIO_DIR}; "
                    "it reads the folder once per process, so set logger.trackio.dir to that folder or start a new "
                    "process"
                )
        else:
            data_dir.mkdir(parents=True, exist_ok=True)
            os.environ["TRACKIO_DIR"] = str(data_dir)
    try:
        import trackio
    except ImportError as err:  # pragma: no cover - trackio is in requirements.txt
        raise ImportError(
            "logger=trackio needs the trackio package: pip install -r requirements.txt"
        ) from err
    return trackio
