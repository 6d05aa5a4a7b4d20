"""Tables with faces, held-out metrics and figures, to every logger of a run (W&B, Trackio, CSV).

W&B offline mode writes a table's image cells to the run folder as the bare string ``"Image"``: the real cells go to
a ``run_table`` artifact staged outside the run folder (``~/.local/share/wandb/artifacts/staging``), so a copied or
synced offline folder loses the faces. A plain ``wandb.Image`` logged outside a table is written to
``files/media/images/`` and synced as a run file. So :func:`log_image_table` logs each distinct face as such media
first, under ``<key>_faces`` at the same step, and the table (still holding the ``wandb.Image`` cells the W&B table
view renders) gains an ``image_file`` column with each face's path inside the run's ``files/`` folder: every row of
the table in the offline folder names an image file that is in that folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_only
from PIL import Image

from facial_r1.tracking.trackio_logger import TrackioLogger

THUMBNAIL_PX = (
    224  # longest side of a logged face: enough to read an expression, small enough for 200-row tables
)
IMAGE_FILE_COLUMN = "image_file"

# One row per held-out prediction (``evaluation.metrics.compute_metrics`` rows), after the face itself.
PREDICTION_COLUMNS = (
    "id",
    "dataset",
    "gold_aus",
    "pred_aus",
    "gold_labels",
    "pred_label",
    "concluded_emotion",
    "format_ok",
    "rewards",
    "output",
)


def wandb_run(logger: Any) -> Any | None:
    """The wandb run behind a Lightning ``WandbLogger``, a wandb run itself, or None for anything else (CSV, Trackio,
    a non-zero rank's dummy experiment)."""
    import wandb

    run = getattr(logger, "experiment", logger) if type(logger).__name__ == "WandbLogger" else logger
    return run if isinstance(run, wandb.Run) else None


def thumbnail(image: Image.Image | str | os.PathLike) -> Image.Image:
    """An RGB copy at most ``THUMBNAIL_PX`` on its longest side."""
    if not isinstance(image, Image.Image):
        with Image.open(image) as opened:
            image = opened.convert("RGB")
    small = image.convert("RGB")  # a copy, also for RGB input
    small.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    return small


def log_image_table(
    loggers: Sequence[Any],
    key: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    step: int,
    image_column: str = "image",
    caption_column: str = "id",
) -> int:
    """Log ``rows`` (dicts with the same keys; ``row[image_column]`` a PIL image, a path or None) as a table under
    ``key`` at ``step`` to each W&B and Trackio logger; returns how many loggers took it (others are skipped).

    Rows that share one image object (a prompt's G completions) share one logged face.
    """
    if not rows:
        return 0
    columns = list(rows[0])
    if image_column not in columns:
        raise ValueError(
            f"log_image_table({key!r}): the rows have no {image_column!r} column, only {columns}"
        )
    runs = [wandb_run(lg) for lg in loggers]
    trackio_runs = [
        lg.experiment for lg in loggers if isinstance(lg, TrackioLogger) and rank_zero_only.rank == 0
    ]
    runs = [run for run in runs if run is not None]
    if not runs and not trackio_runs:  # CSV only (or a non-zero rank): no thumbnails to make
        return 0
    faces: dict[int, Image.Image] = {}
    for row in rows:
        image = row[image_column]
        if image is not None and id(image) not in faces:
            faces[id(image)] = thumbnail(image)
    captions = {id(row[image_column]): str(row.get(caption_column, "")) for row in rows}
    for run in runs:
        _wandb_table(run, key, columns, rows, faces, captions, step, image_column)
    for run in trackio_runs:
        _trackio_table(run, key, columns, rows, faces, captions, step, image_column)
    return len(runs) + len(trackio_runs)


def _wandb_table(run, key, columns, rows, faces, captions, step, image_column) -> None:
    import wandb

    images = {k: wandb.Image(face, caption=captions[k]) for k, face in faces.items()}
    # Written to <run>/files/media/images/ now (log binds them). W&B binds at most MAX_ITEMS images of one list, so
    # the faces go in chunks: <key>_faces, <key>_faces_1, ...
    faces_list, chunk = list(images.values()), wandb.Image.MAX_ITEMS
    for i in range(0, len(faces_list), chunk):
        suffix = f"_{i // chunk}" if i else ""
        run.log({f"{key}_faces{suffix}": faces_list[i : i + chunk]}, commit=False)
    files_dir = Path(run.dir)
    table = wandb.Table(columns=[*columns, IMAGE_FILE_COLUMN])
    for row in rows:
        image = images.get(id(row[image_column]))
        # ``_path`` is where the bound image was written; wandb has no public accessor for it.
        path = Path(image._path).relative_to(files_dir).as_posix() if image is not None else None
        table.add_data(*[image if c == image_column else _cell(row[c]) for c in columns], path)
    run.log(
        {key: table, "trainer/global_step": step}
    )  # the step as a metric, as Lightning's WandbLogger logs it


def _trackio_table(run, key, columns, rows, faces, captions, step, image_column) -> None:
    import trackio

    images = {k: trackio.Image(face, caption=captions[k]) for k, face in faces.items()}
    data = [[images.get(id(row[c])) if c == image_column else _cell(row[c]) for c in columns] for row in rows]
    run.log({key: trackio.Table(columns=columns, data=data)}, step=step)


def _cell(value: Any) -> Any:
    """Tables want scalars or strings: lists and dicts become JSON text."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False)
    return value


def log_evaluation(
    loggers: Sequence[Any],
    metrics: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    records: Sequence[Mapping[str, Any]] | None = None,
    *,
    prefix: str,
    step: int,
    figures: Mapping[str, str | Path] | None = None,
    max_rows: int = 200,
) -> None:
    """A held-out evaluation to every logger: numbers, a predictions table with faces, figures.

    Numbers: every scalar of ``metrics`` (nested ones flattened, ``<prefix>/au_f1_per_au/AU12``) goes into the W&B
    run summary, which is what the runs table shows; Trackio (which has no summary) and CSV get the headline keys as
    points at ``step`` (the rest is in ``metrics.json``). ``records`` (aligned with ``rows``) give the faces; without them
    the table has no images. Only the first ``max_rows`` predictions are tabled, to keep runs small.
    """
    from facial_r1.evaluation.report import scalar_metrics
    from facial_r1.evaluation.runner import headline_metrics

    for lg in loggers:
        run = wandb_run(lg)
        if run is not None:
            run.summary.update(scalar_metrics(metrics, prefix))
        elif hasattr(lg, "log_metrics"):
            lg.log_metrics(headline_metrics(dict(metrics), prefix), step=step)
    table_rows = []
    for i, row in enumerate(rows[:max_rows]):
        face = _record_image(records[i]) if records is not None else None
        table_rows.append({"image": face, **{c: row.get(c) for c in PREDICTION_COLUMNS}})
    log_image_table(loggers, f"{prefix}/predictions", table_rows, step=step)
    _log_figures(loggers, prefix, figures or {}, step)


def _record_image(record: Mapping[str, Any]) -> Image.Image | None:
    from facial_r1.data.images import load_image
    from facial_r1.data.schema import DataError

    try:
        return load_image(dict(record))
    except (
        OSError,
        DataError,
    ):  # a face that cannot be shown must not fail a finished run: the row stays, imageless
        return None


def _log_figures(loggers: Sequence[Any], prefix: str, figures: Mapping[str, str | Path], step: int) -> None:
    pngs = {name: Path(p) for name, p in figures.items() if Path(p).suffix == ".png" and Path(p).is_file()}
    if not pngs:
        return
    for lg in loggers:
        run = wandb_run(lg)
        if run is not None:
            import wandb

            run.log(
                {
                    **{f"{prefix}/{n}": wandb.Image(str(p)) for n, p in pngs.items()},
                    "trainer/global_step": step,
                }
            )
        elif isinstance(lg, TrackioLogger) and rank_zero_only.rank == 0:
            import trackio

            lg.experiment.log({f"{prefix}/{n}": trackio.Image(str(p)) for n, p in pngs.items()}, step=step)
