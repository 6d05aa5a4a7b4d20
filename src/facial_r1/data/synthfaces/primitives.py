"""Drawing primitives in face coordinates, per-side AU amplitudes, and the small curve and colour helpers.

Face coordinates are IOD units (see ``identity``). Tiny NumPy calls dominate the cost of a 112 px face, so the
helpers avoid them where they can (cached grids, preallocated outputs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from facial_r1.data.synthfaces.identity import RGB

# FACS intensity A..E (1..5) -> displacement as a fraction of the maximum (E). A stays visible at 112 px.
AMPLITUDE: dict[int, float] = {1: 0.35, 2: 0.5, 3: 0.65, 4: 0.82, 5: 1.0}

ActiveAUs = Mapping[int, tuple[int, str | None]]  # AU -> (intensity 1..5, side "L"/"R" or None = both)
Point = tuple[float, float]


@dataclass
class Op:
    """One primitive. ``kind``: "poly" (filled), "line" (open polyline), "loop" (closed outline), "disc"
    (``pts`` is the centre, ``r`` the radius). ``depth`` is extra relief (nose +, ears -) used by yaw parallax."""

    kind: str
    pts: np.ndarray
    rgb: RGB
    width: float = 0.0
    r: float = 0.0
    depth: float = 0.0


def poly(pts, rgb: RGB, depth: float = 0.0) -> Op:
    return Op("poly", np.asarray(pts, dtype=float), rgb, depth=depth)


def line(pts, rgb: RGB, width: float, depth: float = 0.0) -> Op:
    return Op("line", np.asarray(pts, dtype=float), rgb, width=width, depth=depth)


def loop(pts, rgb: RGB, width: float) -> Op:
    return Op("loop", np.asarray(pts, dtype=float), rgb, width=width)


def disc(x: float, y: float, r: float, rgb: RGB, depth: float = 0.0) -> Op:
    return Op("disc", np.array([[x, y]]), rgb, r=r, depth=depth)


class Amplitudes:
    """Per-side AU amplitudes. Side 0 is the image's left = the subject's right ("R"), side 1 the image's right."""

    def __init__(self, aus: ActiveAUs):
        self._amp: dict[int, tuple[float, float]] = {}
        for au, (level, side) in aus.items():
            a = AMPLITUDE[int(level)]
            self._amp[int(au)] = (a if side in (None, "R") else 0.0, a if side in (None, "L") else 0.0)

    def side(self, au: int, s: int) -> float:
        return self._amp.get(au, (0.0, 0.0))[s]

    def both(self, au: int) -> float:
        return max(self._amp.get(au, (0.0, 0.0)))


# --- curves -----------------------------------------------------------------------------------------------------


def bow(p0: Point, p1: Point, yc: float, n: int, power: float = 1.0) -> np.ndarray:
    """Curve from p0 to p1 whose middle is at height yc; the offset from the chord falls off as (1 - t^2)^power."""
    u, w = _grid(n)
    out = np.empty((n, 2))
    out[:, 0] = p0[0] + (p1[0] - p0[0]) * u
    bump = w if power == 1.0 else w**power
    out[:, 1] = p0[1] + (p1[1] - p0[1]) * u + (yc - (p0[1] + p1[1]) / 2) * bump
    return out


@lru_cache(maxsize=16)
def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """u in [0, 1] and the bump 1 - t^2 (t in [-1, 1]) on n points."""
    t = np.linspace(-1.0, 1.0, n)
    return (t + 1) / 2, 1 - t**2


def quad(p0: np.ndarray, ctrl: np.ndarray, p1: np.ndarray, n: int) -> np.ndarray:
    """Quadratic Bezier from p0 to p1 with control point ctrl."""
    u = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - u) ** 2 * p0 + 2 * u * (1 - u) * ctrl + u**2 * p1


def spline(ctrl, n: int = 4) -> np.ndarray:
    """Closed Catmull-Rom spline through the control points, n samples per segment."""
    p = np.asarray(ctrl, dtype=float)
    p0, p1, p2, p3 = np.roll(p, 1, 0), p, np.roll(p, -1, 0), np.roll(p, -2, 0)
    t = np.linspace(0.0, 1.0, n, endpoint=False)[:, None, None]
    cubic = (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (3 * p1 - p0 - 3 * p2 + p3) * t**3
    return (0.5 * (2 * p1 + (p2 - p0) * t + cubic)).transpose(1, 0, 2).reshape(-1, 2)


def mirror(half: Sequence[Point]) -> np.ndarray:
    """Left half from the top (x = 0) down to the bottom (x = 0) -> the closed outline, right half mirrored."""
    pts = np.array(half, dtype=float)
    return np.vstack([pts, pts[-2:0:-1] * np.array([-1.0, 1.0])])


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 16) -> np.ndarray:
    a = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([cx + rx * np.cos(a), cy + ry * np.sin(a)])


def smoothstep(x: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, smooth in between."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


# --- colours ----------------------------------------------------------------------------------------------------


def shade(rgb: RGB, factor: float) -> RGB:
    return tuple(min(255, max(0, int(c * factor))) for c in rgb)  # type: ignore[return-value]


def mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(int((1 - t) * x + t * y) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def crease(skin: RGB, strength: float) -> RGB:
    """A skin crease: darker skin, darker with a stronger AU."""
    return shade(skin, 0.95 - 0.5 * min(1.0, strength))
