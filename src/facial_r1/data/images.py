"""Image paths: checks at load time, decoding at use time, both with one conversion to RGB.

Loading a source resolves each image (:func:`resolve_image`) and then checks it (:func:`check_image`, called by
``Source.load``): the file must decode completely and give a usable picture, so that a bad image is skipped and
listed (``on_error=skip``) or named (``on_error=raise``) before any model is loaded - never a crash mid-training.
Pixels are read again by :func:`load_image` when a batch needs them. Both raise
:class:`~facial_r1.data.schema.DataError` naming the image and the annotation ``file:line`` it came from (kept in
``meta_info["source_file"]`` / ``["source_line"]``).

Conversion to 8-bit RGB (:func:`to_rgb`) never clips silently: 16-bit images (PIL modes ``I;16*``, and ``I`` holding
values in 0..65535, which is how PIL opens 16-bit PNGs) are scaled by 255/65535; float images (mode ``F``) and
32-bit images with values outside 0..65535 have no defined range and are refused; palette, alpha, CMYK, 1-bit and
grey images convert as PIL does. Unusable geometry is refused too: a side under :data:`MIN_SIDE` pixels or an aspect
ratio over :data:`MAX_ASPECT` (a 1 x 4000 strip is no face, and the vision processor cannot resize it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from facial_r1.data.schema import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MIN_SIDE = 8  # pixels; FER2013's 48 px and LFW's 25 px faces pass
MAX_ASPECT = 20.0  # longer side / shorter side
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_PIL_CONVERTIBLE = (
    "1",
    "L",
    "LA",
    "La",
    "P",
    "PA",
    "RGB",
    "RGBA",
    "RGBa",
    "RGBX",
    "CMYK",
    "YCbCr",
    "LAB",
    "HSV",
)


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


def _origin(record_or_path: dict[str, Any] | str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """(image path, ``path=`` / ``line=`` of the annotation it came from, for errors)."""
    if isinstance(record_or_path, dict):
        path = record_or_path["image"]
        meta = record_or_path.get("meta_info") or {}
        origin_file, origin_line = meta.get("source_file"), meta.get("source_line")
    else:
        path, origin_file, origin_line = os.fspath(record_or_path), None, None
    return str(path), dict(path=origin_file or str(path), line=origin_line if origin_file else None)


def unusable_reason(image: Image.Image) -> str | None:
    """Why this (opened, not necessarily decoded) image cannot be used, or None; reads only the header."""
    width, height = image.size
    if min(width, height) < MIN_SIDE:
        return f"{width} x {height} pixels: a side is under {MIN_SIDE}"
    if max(width, height) / min(width, height) > MAX_ASPECT:
        return f"{width} x {height} pixels: aspect ratio over {MAX_ASPECT:g}"
    if image.mode == "F":
        return "a float image (mode F) has no defined value range; save it as 8- or 16-bit"
    if image.mode not in (*_SIXTEEN_BIT, "I", *_PIL_CONVERTIBLE):
        return f"unsupported pixel mode {image.mode!r}"
    return None


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB with correct scaling (module docstring); raises ValueError for what cannot be scaled."""
    if image.mode in _SIXTEEN_BIT or image.mode == "I":
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(
                f"32-bit values {values.min()}..{values.max()} are outside 0..65535: no defined 8-bit scaling"
            )
        grey = np.rint(values * (255.0 / 65535.0)).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if image.mode not in _PIL_CONVERTIBLE:
        raise ValueError(unusable_reason(image) or f"unsupported pixel mode {image.mode!r}")
    return image.convert("RGB")


def check_image(record_or_path: dict[str, Any] | str | os.PathLike) -> None:
    """Raise :class:`SampleError` unless the image decodes completely into a usable RGB picture (load-time check)."""
    load_image(record_or_path).close()


def load_image(record_or_path: dict[str, Any] | str | os.PathLike) -> Image.Image:
    """Decode a record's image (or a path) to RGB, fully, so that truncated files fail here and not in a collate."""
    path, where = _origin(record_or_path)
    if not Path(path).is_file():
        raise SampleError("missing_image", f"image not found: {path}", **where)
    try:
        with Image.open(path) as image:
            reason = unusable_reason(image)
            if reason is not None:
                raise SampleError("unusable_image", f"unusable image {path}: {reason}", **where)
            image.load()
            try:
                return to_rgb(image)
            except ValueError as err:
                raise SampleError("unusable_image", f"unusable image {path}: {err}", **where) from err
    except SampleError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise SampleError("corrupt_image", f"cannot decode image {path}: {err}", **where) from err
