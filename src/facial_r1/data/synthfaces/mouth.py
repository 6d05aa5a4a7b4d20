"""Lips, teeth, mouth corners and the creases around them, driven by AUs 10 12 14 15 16 17 20 23 24 25 26 27.

Displacements in IOD at intensity E. Corners: AU12 up 0.10 and out 0.10 (+ nasolabial fold); AU14 in 0.05 and up
0.02 (+ dimple); AU15 down 0.09 (+ lines below the corner); AU20 out 0.13, lips 45% thinner (+ stretched skin).
Centre: AU17 pushes the lower lip and the lip line up 0.045 (inverted U, + furrow and dimpled chin); AU24 flattens
the lip line, thins the lips 45% (+ bulges above and below); AU23 thins them 50% and narrows the mouth 0.05 (+ sharp
dark contours). Openings: AU25 a 0.09 gap showing the upper teeth; AU10 lifts the upper lip 0.07 over the teeth
(+ folds); AU16 pulls the lower lip down 0.10 over the lower teeth; AU26 opens 0.20 with the jaw (chin down 0.22);
AU27 opens 0.41 (chin down 0.45) with thinned lips.
"""

from __future__ import annotations

import numpy as np

from facial_r1.data.synthfaces.identity import RGB, Identity
from facial_r1.data.synthfaces.primitives import (
    Amplitudes,
    Op,
    bow,
    crease,
    disc,
    line,
    mix,
    poly,
    quad,
    shade,
)

_TEETH: RGB = (238, 234, 222)
_MOUTH_INSIDE: RGB = (64, 22, 28)
_OPEN = 0.004  # gap (IOD) above which the mouth counts as open


def mouth(ops: list[Op], idt: Identity, g: Amplitudes) -> None:
    """The lips along 15 samples t in [-1, 1] (left corner to right corner), then the creases around them."""
    b = g.both
    t = np.linspace(-1.0, 1.0, 15)
    w = 1 - t**2
    rest = idt.mouth_y - idt.mouth_curve  # resting height of the corners
    centre = idt.mouth_y - 0.045 * b(17)
    centre += (rest - centre) * 0.85 * b(24)  # pressed lips: straight line
    xs, lip_line = idt.mouth_w * t, rest + (centre - rest) * w**0.9
    corners = []
    for s, sx in ((0, -1.0), (1, 1.0)):
        a12, a14, a15, a20 = (g.side(au, s) for au in (12, 14, 15, 20))
        dx = 0.1 * a12 - 0.05 * a14 - 0.01 * a15 + 0.13 * a20 - 0.05 * b(23) - 0.03 * b(26) - 0.07 * b(27)
        dy = -0.1 * a12 - 0.02 * a14 + 0.09 * a15 + 0.02 * a20 + 0.06 * b(26) + 0.08 * b(27)
        dy += 0.02 * b(17) - 0.01 * b(10) + 0.01 * b(16)
        # A corner drags its own half of the mouth, fading to nothing at the midline (one-sided AUs stay one-sided).
        k = np.clip(sx * t, 0.0, 1.0)
        k = k * k * (3 - 2 * k)
        xs, lip_line = xs + sx * dx * k, lip_line + dy * k
        corners.append((sx * (idt.mouth_w + dx), rest + dy))
    gap_up = 0.03 * b(25) + 0.07 * b(10) + 0.03 * b(27)
    gap_down = 0.06 * b(25) + 0.1 * b(16) + 0.2 * b(26) + 0.38 * b(27)
    thin = max(0.3, 1 - 0.5 * b(23) - 0.45 * b(24) - 0.45 * b(20) - 0.35 * b(27))
    up_in, dn_in = lip_line - gap_up * w**0.6, lip_line + gap_down * w**0.6
    upper_t, lower_t = idt.lip_up * thin, idt.lip_low * thin * (1 + 0.3 * b(17))
    cupid = 0.3 * upper_t * np.exp(-((t / 0.14) ** 2))  # the dip in the middle of the upper lip
    up_out = up_in - upper_t * w ** (0.35 - 0.2 * b(10)) + cupid
    dn_out = dn_in + lower_t * w**0.5

    def pts(ys: np.ndarray) -> np.ndarray:
        return np.column_stack([xs, ys])

    is_open = gap_up + gap_down > _OPEN
    if is_open:
        inner = slice(2, -2)  # teeth stop short of the corners
        ops.append(poly(np.vstack([pts(up_in), pts(dn_in)[::-1]]), _MOUTH_INSIDE))
        ops.append(
            poly(np.vstack([pts(up_in)[inner], pts(np.minimum(up_in + 0.06, dn_in))[inner][::-1]]), _TEETH)
        )
        low_teeth = 0.05 * max(b(16), 0.5 * b(26), 0.4 * b(27))
        if low_teeth > 0:
            top = pts(np.maximum(dn_in - low_teeth, up_in))[inner]
            ops.append(poly(np.vstack([top, pts(dn_in)[inner][::-1]]), _TEETH))
    ops += [
        poly(np.vstack([pts(up_out), pts(up_in)[::-1]]), idt.lip),
        poly(np.vstack([pts(dn_in), pts(dn_out)[::-1]]), shade(idt.lip, 1.08)),
        line(pts(up_in if is_open else lip_line), shade(idt.lip, 0.55), 0.024),
    ]
    if b(23) > 0:  # tightened lips: sharp dark contours
        ops += [line(pts(ys), mix(idt.lip, (40, 10, 14), 0.6 * b(23)), 0.022) for ys in (up_out, dn_out)]
    if b(24) > 0:  # skin bulging above and below the pressed lips
        top, bot = float(up_out.min()) - 0.045, float(dn_out.max()) + 0.05
        ops.append(
            line(bow((-0.2, top + 0.01), (0.2, top + 0.01), top - 0.015, 9), crease(idt.skin, b(24)), 0.02)
        )
        ops.append(
            line(bow((-0.2, bot - 0.01), (0.2, bot - 0.01), bot + 0.02, 9), crease(idt.skin, b(24)), 0.02)
        )
    _corner_creases(ops, idt, g, corners)
    _chin(ops, idt, b(17), float(dn_out.max()))


def _corner_creases(ops: list[Op], idt: Identity, g: Amplitudes, corners: list[tuple[float, float]]) -> None:
    for s, sx in ((0, -1.0), (1, 1.0)):
        cx, cy = corners[s]
        a12, a14, a15, a20 = (g.side(au, s) for au in (12, 14, 15, 20))
        fold = min(1.0, a12 + 0.6 * g.both(10))
        if fold > 0:  # nasolabial fold from the nostril wing to beyond the lip corner
            start = np.array([sx * (idt.nose_w + 0.05), idt.nose_y - 0.06])
            end = np.array([cx + sx * 0.07, cy + 0.03])
            bulge = np.array([sx * max(idt.nose_w + 0.14, abs(cx) * 0.8 + 0.12), (start[1] + end[1]) / 2])
            ops.append(line(quad(start, bulge, end, 9), crease(idt.skin, 0.9 * fold), 0.026))
        if a14 > 0:  # dimple beside the corner
            dimple = [(cx + sx * 0.045, cy - 0.07), (cx + sx * 0.08, cy), (cx + sx * 0.045, cy + 0.07)]
            ops.append(line(dimple, crease(idt.skin, a14), 0.03))
        if a20 > 0:  # skin stretched sideways beyond the corner
            stretch = [
                (cx + sx * 0.035, cy + 0.005),
                (cx + sx * 0.08, cy + 0.02),
                (cx + sx * 0.12, cy + 0.045),
            ]
            ops.append(line(stretch, crease(idt.skin, 0.9 * a20), 0.024))
        if a15 > 0:  # lines running down from the depressed corner
            down = [(cx + sx * 0.02, cy + 0.035), (cx + sx * 0.045, cy + 0.12), (cx + sx * 0.05, cy + 0.2)]
            ops.append(line(down, crease(idt.skin, 0.9 * a15), 0.022))


def _chin(ops: list[Op], idt: Identity, a17: float, lip_bottom: float) -> None:
    """AU17: the raised chin boss deepens the furrow under the lower lip and dimples the skin."""
    if a17 <= 0:
        return
    y = lip_bottom + 0.09
    ops.append(line(bow((-0.18, y - 0.02), (0.18, y - 0.02), y + 0.025, 9), crease(idt.skin, a17), 0.024))
    for dx, dy in ((-0.09, 0.1), (0.0, 0.12), (0.09, 0.1), (-0.05, 0.18), (0.05, 0.18), (0.0, 0.23)):
        ops.append(disc(dx, y + dy, 0.014, crease(idt.skin, 0.7 * a17)))
