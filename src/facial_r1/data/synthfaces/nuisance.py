"""Per-sample nuisance: pose, background, lighting, blur, sensor noise and JPEG quality.

Geometry-level nuisance (roll, yaw, scale, shift) is applied by ``render`` when projecting; the photometric part
is applied here to the downsampled image. ``Nuisance()`` is the identity transform (frontal, flat, clean).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from facial_r1.data.synthfaces.config import NuisanceConfig

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Nuisance:
    """Concrete nuisance values of one sample (what ``meta_info["nuisance"]`` records)."""

    roll: float = 0.0  # degrees, counter-clockwise as seen by the viewer
    yaw: float = 0.0  # degrees, + turns the face towards the viewer's right
    scale: float = 1.0
    dx: float = 0.0  # shift as a fraction of the image size
    dy: float = 0.0
    light: float = 0.0  # directional gradient strength
    light_angle: float = 0.0  # degrees; direction in which the image gets brighter
    brightness: float = 1.0
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    noise_std: float = 0.0
    noise_seed: int = 0
    blur: float = 0.0
    jpeg_quality: int = 0  # 0 = no JPEG round trip
    background: tuple[RGB, RGB] = ((196, 200, 204), (196, 200, 204))  # gradient from first to second colour
    background_angle: float = 90.0  # degrees

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly, floats rounded (stored in ``meta_info``)."""
        return _round({f.name: getattr(self, f.name) for f in fields(self)})


def sample_nuisance(rng: np.random.Generator, cfg: NuisanceConfig) -> Nuisance:
    """Draw the nuisance of one sample within the configured ranges."""

    def sym(limit: float) -> float:
        return float(rng.uniform(-limit, limit)) if limit > 0 else 0.0

    base = _muted(rng.integers(70, 225, size=3))
    gradient = rng.random() < cfg.p_gradient_background
    second = _muted(np.clip(base + rng.integers(-45, 46, size=3), 40, 240)) if gradient else base
    low_q, high_q = cfg.jpeg_quality
    return Nuisance(
        roll=sym(cfg.roll_deg),
        yaw=sym(cfg.yaw_deg),
        scale=1.0 + sym(cfg.scale),
        dx=sym(cfg.shift),
        dy=sym(cfg.shift),
        light=float(rng.uniform(0.0, cfg.lighting)) if cfg.lighting > 0 else 0.0,
        light_angle=float(rng.uniform(0.0, 360.0)),
        brightness=1.0 + sym(cfg.brightness),
        tint=tuple(1.0 + sym(cfg.tint) for _ in range(3)),  # type: ignore[arg-type]
        noise_std=float(rng.uniform(*cfg.noise_std)),
        noise_seed=int(rng.integers(2**31)),
        blur=float(rng.uniform(*cfg.blur_radius)),
        jpeg_quality=int(rng.integers(low_q, high_q + 1)) if high_q > 0 else 0,
        background=(tuple(int(c) for c in base), tuple(int(c) for c in second)),  # type: ignore[arg-type]
        background_angle=float(rng.uniform(0.0, 360.0)),
    )


def _muted(colour: np.ndarray) -> np.ndarray:
    """Halve the saturation: backgrounds should not be neon."""
    return (colour.mean() + 0.5 * (colour - colour.mean())).astype(int)


def background(n: Nuisance, width: int, supersample: int = 1) -> Image.Image:
    """A linear two-colour gradient (flat when both colours agree) on a ``width * supersample`` canvas.

    Built by upscaling a 2x2 image to ``width`` and then by pixel repetition: the box downsampling after drawing
    gives back exactly the smooth ``width`` gradient, at a fraction of the cost of a large bilinear resize.
    """
    first, second = n.background
    full = width * supersample
    if first == second:
        return Image.new("RGB", (full, full), first)
    a = math.radians(n.background_angle)
    # Weight of the second colour at the four corners, by projection on the gradient direction.
    corners = [((x - 0.5) * math.cos(a) + (y - 0.5) * math.sin(a)) + 0.5 for y in (0, 1) for x in (0, 1)]
    tiny = Image.new("RGB", (2, 2))
    tiny.putdata(
        [tuple(int((1 - w) * c1 + w * c2) for c1, c2 in zip(first, second, strict=True)) for w in corners]
    )
    img = tiny.resize((width, width), Image.Resampling.BILINEAR)
    return img.resize((full, full), Image.Resampling.NEAREST) if supersample > 1 else img


def apply_photometric(img: Image.Image, n: Nuisance) -> Image.Image:
    """Blur (optics), then directional lighting, colour cast and sensor noise."""
    if (
        n.blur < 0.05
        and n.light == 0.0
        and n.brightness == 1.0
        and n.tint == (1.0, 1.0, 1.0)
        and n.noise_std == 0
    ):
        return img
    arr = np.asarray(img, dtype=np.float32)
    if n.blur >= 0.05:
        arr = _blur3(arr, n.blur)
    gx, gy = _grid(img.width)
    a = math.radians(n.light_angle)
    gain = n.brightness * (1.0 + n.light * 2.0 * (gx * math.cos(a) + gy * math.sin(a)))
    arr = arr * gain[..., None] * np.asarray(n.tint, dtype=np.float32)
    if n.noise_std > 0:
        arr += _noise(img.width, n.noise_seed) * n.noise_std
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))


def encode_jpeg(img: Image.Image, quality: int) -> bytes:
    """The bytes the exporter writes; decoding them gives exactly what ``render_sample`` returns."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    return c[None, :].repeat(size, 0), c[:, None].repeat(size, 1)


@lru_cache(maxsize=4)
def _noise_bank(size: int) -> np.ndarray:
    """One fixed Gaussian field of twice the image size; each sample reads a window of it (drawing fresh normals
    per sample would cost more than drawing the face)."""
    return np.random.default_rng(20240917).standard_normal((2 * size, 2 * size, 3), dtype=np.float32)


def _noise(size: int, seed: int) -> np.ndarray:
    bank = _noise_bank(size)
    x, y = seed % size, (seed // size) % size
    window = bank[y : y + size, x : x + size]
    return -window if (seed // (size * size)) % 2 else window


def _blur3(arr: np.ndarray, sigma: float) -> np.ndarray:
    """Separable 3-tap Gaussian with edge replication; accurate for the small radii used here (sigma < ~0.8)."""
    e = math.exp(-1.0 / (2.0 * sigma * sigma))
    w = e / (1.0 + 2.0 * e)
    p = np.pad(arr, ((1, 1), (1, 1), (0, 0)), mode="edge")
    v = (1 - 2 * w) * p[1:-1] + w * (p[:-2] + p[2:])
    return (1 - 2 * w) * v[:, 1:-1] + w * (v[:, :-2] + v[:, 2:])


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round(v) for v in value]
    return value
