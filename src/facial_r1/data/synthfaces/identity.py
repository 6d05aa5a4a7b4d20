"""Who is drawn: face shape, proportions and colours of one synthetic person.

Face coordinates are in units of the inter-ocular distance (IOD): origin midway between the pupils, x to the
viewer's right, y down, so the pupils sit at (-0.5, 0) and (0.5, 0) for every identity. The subject's own right
side is the image's left (x < 0).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from facial_r1.data.synthfaces.config import SynthFacesConfig

RGB = tuple[int, int, int]

# Light to dark; jittered per identity. Kept away from extremes so that dark lines stay visible on every tone.
SKIN_TONES: tuple[RGB, ...] = (
    (250, 222, 200), (240, 200, 172), (228, 180, 146), (208, 154, 116),
    (184, 128, 92), (156, 104, 72), (126, 84, 58), (104, 68, 48),
)  # fmt: skip
HAIR_COLOURS: tuple[RGB, ...] = (
    (28, 22, 20), (58, 38, 26), (96, 64, 40), (150, 110, 62), (196, 160, 100), (120, 52, 30), (150, 150, 150),
)  # fmt: skip
IRIS_COLOURS: tuple[RGB, ...] = (
    (70, 44, 28), (40, 28, 20), (110, 84, 50), (70, 110, 150), (80, 112, 74), (100, 110, 116),
)  # fmt: skip
CLOTHES_COLOURS: tuple[RGB, ...] = (
    (60, 80, 130), (150, 50, 50), (50, 110, 80), (90, 90, 95), (200, 180, 140), (40, 40, 48), (120, 80, 140),
)  # fmt: skip
HAIR_STYLES: tuple[str, ...] = ("none", "short", "long", "bangs", "side")


@dataclass(frozen=True)
class Identity:
    """Proportions (IOD units) and colours of one face. ``id`` is unique across splits of one seed."""

    id: int
    iod_frac: float  # IOD as a fraction of the image size
    face_w: float  # half-width at the cheekbones
    jaw_w: float  # half-width at the jaw angle, as a fraction of face_w
    chin_w: float  # half-width of the chin
    top_y: float  # top of the skull
    chin_y: float  # bottom of the chin
    brow_y: float  # brow height (negative: above the pupils)
    brow_in: float  # |x| of the brow heads
    brow_out: float  # |x| of the brow tails
    brow_arch: float
    brow_t: float  # brow thickness at the head
    eye_w: float  # half-width of the eye opening
    eye_h: float  # upper-lid height above the pupil (neutral)
    iris_r: float
    eye_tilt: float  # outer corners up (+) or down (-)
    nose_y: float  # nose tip
    nose_w: float  # half-width of the nostril wings
    mouth_y: float
    mouth_w: float  # half-width of the mouth
    mouth_curve: float  # resting lip-line curvature (+ = corners slightly up)
    lip_up: float  # upper lip thickness
    lip_low: float  # lower lip thickness
    skin: RGB
    lip: RGB
    hair: RGB
    brow: RGB
    iris: RGB
    clothes: RGB
    hair_style: str
    hairline_y: float  # where the front hair starts, at the midline
    glasses: bool
    glasses_rgb: RGB

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict with floats rounded to 4 decimals (stored in ``meta_info``)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float):
                value = round(value, 4)
            out[f.name] = list(value) if isinstance(value, tuple) else value  # as JSON gives it back
        return out


# Ranges of the proportions (IOD units), drawn uniformly. They keep every AU visible and no features overlapping.
SHAPE_RANGES: dict[str, tuple[float, float]] = {
    "face_w": (0.9, 1.02),
    "jaw_w": (0.62, 0.8),
    "chin_w": (0.16, 0.3),
    "top_y": (-1.45, -1.3),
    "chin_y": (1.5, 1.65),
    "brow_y": (-0.34, -0.28),
    "brow_in": (0.2, 0.25),
    "brow_out": (0.74, 0.8),
    "brow_arch": (0.03, 0.08),
    "brow_t": (0.075, 0.11),
    "eye_w": (0.2, 0.23),
    "eye_h": (0.085, 0.1),
    "iris_r": (0.09, 0.1),
    "eye_tilt": (-0.015, 0.02),
    "nose_y": (0.5, 0.6),
    "nose_w": (0.15, 0.2),
    "mouth_y": (0.92, 1.0),
    "mouth_w": (0.31, 0.37),
    "mouth_curve": (-0.01, 0.015),
    "lip_up": (0.07, 0.09),
    "lip_low": (0.085, 0.11),
    "hairline_y": (-1.0, -0.85),
}
_LOW = np.array([lo for lo, _ in SHAPE_RANGES.values()])
_SPAN = np.array([hi - lo for lo, hi in SHAPE_RANGES.values()])


def sample_identity(rng: np.random.Generator, identity_id: int, config: SynthFacesConfig) -> Identity:
    """Draw one identity: proportions from ``SHAPE_RANGES``, colours from the palettes, hair and glasses."""
    shape = dict(zip(SHAPE_RANGES, (_LOW + _SPAN * rng.random(len(_LOW))).tolist(), strict=True))
    picks = rng.integers(
        0, 1 << 30, size=6
    ).tolist()  # one draw for all palette choices (tiny numpy calls dominate)
    skin = _jitter(rng, SKIN_TONES[picks[0] % len(SKIN_TONES)], 8)
    hair = _jitter(rng, HAIR_COLOURS[picks[1] % len(HAIR_COLOURS)], 10)
    # Lips: the skin tone pulled towards a rose colour, a little darker, so lips read on every skin tone.
    lip = _mix(_scale(skin, 0.65), (180, 56, 72), 0.5)
    brow = _scale(hair, 0.75 if sum(hair) < 330 else 0.5)
    if _luma(brow) > 0.6 * _luma(skin):  # light brows on dark skin would hide AU1/2/4
        brow = _scale(brow, 0.6 * _luma(skin) / _luma(brow))
    u_hair, u_glasses, u_iod = rng.random(3)
    return Identity(
        id=int(identity_id),
        iod_frac=config.iod_frac[0] + (config.iod_frac[1] - config.iod_frac[0]) * float(u_iod),
        **shape,
        skin=skin,
        lip=lip,
        hair=hair,
        brow=brow,
        iris=_jitter(rng, IRIS_COLOURS[picks[2] % len(IRIS_COLOURS)], 8),
        clothes=_jitter(rng, CLOTHES_COLOURS[picks[3] % len(CLOTHES_COLOURS)], 12),
        hair_style=HAIR_STYLES[1 + picks[4] % (len(HAIR_STYLES) - 1)] if u_hair < config.p_hair else "none",
        glasses=bool(u_glasses < config.p_glasses),
        glasses_rgb=((20, 20, 24), (90, 60, 40), (140, 140, 150))[picks[5] % 3],
    )


def _jitter(rng: np.random.Generator, rgb: RGB, amount: int) -> RGB:
    noise = rng.integers(-amount, amount + 1, size=3).tolist()
    return tuple(min(255, max(0, c + d)) for c, d in zip(rgb, noise, strict=True))  # type: ignore[return-value]


def _scale(rgb: RGB, factor: float) -> RGB:
    return tuple(min(255, max(0, int(c * factor))) for c in rgb)  # type: ignore[return-value]


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(int((1 - t) * x + t * y) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def _luma(rgb: RGB) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] + 1e-6
