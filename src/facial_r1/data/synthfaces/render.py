"""Rasterise a face: project the primitives of ``geometry`` with the pose, draw them supersampled, downsample.

The portrait is drawn at ``supersample`` times the output size with PIL and box-downsampled, which anti-aliases
every edge and keeps a 112 px face at about 1-2 ms on one core.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from facial_r1.data.synthfaces.geometry import face_ops
from facial_r1.data.synthfaces.identity import Identity
from facial_r1.data.synthfaces.nuisance import Nuisance, apply_photometric, background
from facial_r1.data.synthfaces.primitives import ActiveAUs

EYE_LINE = 0.42  # height of the pupils, as a fraction of the image size (before shift)
_DEPTH = 0.8  # face relief (IOD) for yaw parallax: the centre of the face slides further than its sides


def projector(idt: Identity, n: Nuisance, size: int, supersample: int = 1) -> Callable[..., np.ndarray]:
    """Map face coordinates (IOD units, see ``identity``) to pixel coordinates of a ``size * supersample`` canvas.

    Yaw turns the face over an ellipsoid (points with relief ``depth`` move further), then roll, scale and shift.
    """
    px = idt.iod_frac * size * n.scale * supersample
    cx, cy = (0.5 + n.dx) * size * supersample, (EYE_LINE + n.dy) * size * supersample
    cos_y, sin_y = math.cos(math.radians(n.yaw)), math.sin(math.radians(n.yaw))
    cos_r, sin_r = math.cos(math.radians(-n.roll)), math.sin(math.radians(-n.roll))

    def to_px(pts: np.ndarray, depth: np.ndarray | float = 0.0) -> np.ndarray:
        x, y = pts[:, 0], pts[:, 1]
        if sin_y != 0.0:
            z = _DEPTH * np.sqrt(np.clip(1 - (x / 1.1) ** 2 - ((y - 0.3) / 2.0) ** 2, 0.0, 1.0)) + depth
            x = x * cos_y + z * sin_y
        return np.column_stack([cx + px * (x * cos_r - y * sin_r), cy + px * (x * sin_r + y * cos_r)])

    return to_px


def render_face(
    identity: Identity,
    aus: ActiveAUs,
    nuisance: Nuisance | None = None,
    size: int = 112,
    supersample: int = 3,
) -> Image.Image:
    """Draw ``identity`` showing ``aus`` ({AU: (intensity 1..5, side "L"/"R"/None)}) under ``nuisance``.

    Returns the RGB image before any JPEG round trip (``nuisance.jpeg_quality`` is applied by the caller).
    """
    n = nuisance or Nuisance()
    canvas = background(n, size, supersample)
    draw = ImageDraw.Draw(canvas)
    to_px = projector(identity, n, size, supersample)
    scale = identity.iod_frac * size * n.scale * supersample
    ops = face_ops(identity, aus)
    # One projection for all primitives: per-primitive numpy calls would cost more than the drawing.
    counts = [len(op.pts) for op in ops]
    depth = np.repeat(np.array([op.depth for op in ops]), counts)
    flat = to_px(np.concatenate([op.pts for op in ops]), depth).ravel().tolist()
    start = 0
    for op, count in zip(ops, counts, strict=True):
        xy, start = flat[start : start + 2 * count], start + 2 * count
        if op.kind == "poly":
            draw.polygon(xy, fill=op.rgb)
        elif op.kind in ("line", "loop"):
            width = max(1, round(op.width * scale))
            draw.line(xy + xy[:2] if op.kind == "loop" else xy, fill=op.rgb, width=width, joint="curve")
        elif op.kind == "disc":
            (x, y), r = xy, op.r * scale
            draw.ellipse((x - r, y - r, x + r, y + r), fill=op.rgb)
        else:  # pragma: no cover - geometry only emits the kinds above
            raise ValueError(f"unknown primitive {op.kind!r}")
    if supersample > 1:
        canvas = canvas.reduce(supersample)
    return apply_photometric(canvas, n)
