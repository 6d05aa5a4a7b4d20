"""Image paths: cheap checks at load time, lazy decoding at use time.

Loading a source only resolves and ``stat``s each image (:func:`resolve_image`); pixels are read by
:func:`load_image` when a batch needs them. Both raise :class:`~facial_r1.data.schema.DataError` naming the image
and the annotation ``file:line`` it came from (kept in ``meta_info["source_file"]`` / ``["source_line"]``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PIL import Image

from facial_r1.data.schema import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class SampleError(DataError):
    """A :class:`DataError` about one sample, with a short machine-readable ``kind`` used to group the report.

    Defined in this leaf module so that the sources and image decoding share it without an import cycle.
    """

    def __init__(
        self, kind: str, message: str, path: str | os.PathLike | None = None, line: int | None = None
    ):
        super().__init__(message, None if path is None else str(path), line)
        self.kind = kind


def resolve_image(
    base_dir: str | os.PathLike, relpath: str, source_file: str | None = None, source_line: int | None = None
) -> str:
    """Absolute path of ``relpath`` under ``base_dir``; raises if it escapes ``base_dir`` or is not a file.

    Containment is checked on the normalised path, not the resolved one, so a dataset may symlink its image folder
    elsewhere while ``../../etc/passwd`` or ``/etc/passwd`` in an annotation is still refused.
    """
    base = os.path.normpath(os.path.abspath(base_dir))
    path = os.path.normpath(os.path.join(base, relpath))
    if os.path.commonpath([base, path]) != base:
        raise SampleError(
            "image_outside_root",
            f"image path {relpath!r} escapes the image root {base}",
            source_file,
            source_line,
        )
    if not os.path.isfile(path):
        raise SampleError("missing_image", f"image not found: {path}", source_file, source_line)
    return path


def load_image(record_or_path: dict[str, Any] | str | os.PathLike) -> Image.Image:
    """Decode a record's image (or a path) to RGB, fully, so that truncated files fail here and not in a collate."""
    if isinstance(record_or_path, dict):
        path = record_or_path["image"]
        meta = record_or_path.get("meta_info") or {}
        origin_file, origin_line = meta.get("source_file"), meta.get("source_line")
    else:
        path, origin_file, origin_line = os.fspath(record_or_path), None, None
    where = dict(path=origin_file or str(path), line=origin_line if origin_file else None)
    if not Path(path).is_file():
        raise SampleError("missing_image", f"image not found: {path}", **where)
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise SampleError("corrupt_image", f"cannot decode image {path}: {err}", **where) from err
