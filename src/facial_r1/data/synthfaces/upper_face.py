"""Eyes, brows, forehead and nose, driven by AUs 1 2 4 5 6 7 9 10 43 (displacements in IOD at intensity E).

AU1 brow heads up 0.15 (+ central forehead lines); AU2 brow tails up 0.15 (+ lateral lines); AU4 brow heads down
0.11 and inward 0.06, furrows between the brows, upper lids 0.03 lower; 1+4 keeps the heads raised (the lowering
fades with AU1); AU5 upper lid up 0.10 (white above the iris); AU6 lower lid pushed up, crow's feet, a bulge under
the lid; AU7 lower lid up and straight, taut lid line, upper lid a little lower; AU9 wrinkles across the bridge,
nostril wings up 0.06, brow heads down 0.05; AU10 nostril wings up a little; AU43 lids closed (E: fully).
"""

from __future__ import annotations

import numpy as np

from facial_r1.data.synthfaces.identity import RGB, Identity
from facial_r1.data.synthfaces.primitives import Amplitudes, Op, bow, crease, disc, line, poly, shade

_SCLERA: RGB = (242, 240, 234)
_PUPIL: RGB = (18, 14, 14)
_GLINT: RGB = (250, 250, 250)


def eye(ops: list[Op], idt: Identity, g: Amplitudes, s: int) -> None:
    """One eye (side s: 0 = image left = subject's right), its lids and AU creases around it."""
    sx = -1.0 if s == 0 else 1.0
    a4, a5, a6, a7, a43 = (g.side(au, s) for au in (4, 5, 6, 7, 43))
    r, cx = idt.iris_r, sx * 0.5
    hu = idt.eye_h + 0.1 * a5 - 0.03 * a4 - 0.25 * idt.eye_h * a7  # upper lid above the pupil
    hl = 0.72 * r * (1 - 0.9 * a6 - 0.6 * a7) + 0.02 * a5 - 0.03 * a6  # lower lid below it
    close = min(1.0, 0.25 + 0.75 * a43) if a43 > 0 else 0.0
    hu = hu * (1 - close) - (hl - 0.004) * close
    inner, outer = (sx * (0.5 - idt.eye_w), 0.01), (sx * (0.5 + idt.eye_w), -idt.eye_tilt)
    upper = bow(inner, outer, -hu, n=11, power=0.8)
    lower = bow(inner, outer, hl, n=11, power=1.0 - 0.6 * a7)
    skin, lash = idt.skin, shade(idt.brow, 0.6)
    if close < 1.0:
        ops += [
            poly(np.vstack([upper, lower[::-1]]), _SCLERA),
            disc(cx, 0.006, r, idt.iris),
            disc(cx, 0.006, 0.45 * r, _PUPIL),
            disc(cx + 0.025, -0.025, 0.2 * r, _GLINT),
        ]
        # Skin-coloured lids clip the iris to the opening.
        top, bottom = min(-hu, -r) - 0.05, max(hl, r) + 0.05
        ops.append(poly(np.vstack([upper, [(outer[0], top), (inner[0], top)]]), skin))
        ops.append(poly(np.vstack([lower, [(outer[0], bottom), (inner[0], bottom)]]), skin))
    crease_y = -(0.5 * max(hu, 0.0) + 0.5 * idt.eye_h + 0.065)
    ops += [
        line(bow((inner[0], -0.02), (outer[0] + sx * 0.02, -0.04), crease_y, 9), shade(skin, 0.82), 0.018),
        line(lower, shade(skin, 0.62 - 0.22 * a7), 0.016 + 0.02 * a7),
        line(upper, lash, 0.04),
        line([upper[-2], upper[-1], (outer[0] + sx * 0.05, outer[1] - 0.04)], lash, 0.03),
    ]
    if a6 > 0:  # crow's feet fanning from the outer corner, and the bulge under the pushed-up lower lid
        ox, oy = outer[0] + sx * 0.06, outer[1]
        for k in (-1, 0, 1):
            ops.append(line([(ox, oy + 0.03 * k), (ox + sx * 0.11, oy + 0.075 * k)], crease(skin, a6), 0.02))
        bulge = bow((inner[0] + sx * 0.04, hl + 0.07), (outer[0], hl + 0.05), hl + 0.12, 9)
        ops.append(line(bulge, crease(skin, 0.8 * a6), 0.022))


def brow(ops: list[Op], idt: Identity, g: Amplitudes, s: int) -> None:
    """One eyebrow: a tapered band along a quadratic curve through head, middle and tail."""
    sx = -1.0 if s == 0 else 1.0
    a1, a2, a4, a9 = (g.side(au, s) for au in (1, 2, 4, 9))
    y = idt.brow_y
    head_y = y - 0.15 * a1 + 0.11 * a4 * (1 - 0.7 * a1) + 0.05 * a9
    head = np.array([sx * (idt.brow_in - 0.06 * a4 - 0.02 * a9), head_y])
    mid = np.array([sx * 0.52, y - idt.brow_arch - 0.06 * a1 - 0.09 * a2 + 0.07 * a4 + 0.02 * a9])
    tail = np.array([sx * idt.brow_out, y + 0.03 - 0.15 * a2 + 0.04 * a4])
    u = np.linspace(0.0, 1.0, 9)[:, None]
    ctrl = 2 * mid - (head + tail) / 2  # makes the curve pass through mid
    centre = (1 - u) ** 2 * head + 2 * u * (1 - u) * ctrl + u**2 * tail
    half = idt.brow_t * (1 - 0.5 * u) / 2 * np.array([[0.0, 1.0]])
    ops.append(poly(np.vstack([centre - half, (centre + half)[::-1]]), idt.brow))


def forehead(ops: list[Op], idt: Identity, g: Amplitudes) -> None:
    """Forehead lines of AU1 (central) and AU2 (lateral), furrows of AU4 between the brows."""
    y = idt.brow_y
    a1 = g.both(1)
    if a1 > 0:
        for k in (0, 1):
            yk = y - 0.21 - 0.1 * k
            ops.append(line(bow((-0.2, yk), (0.2, yk), yk - 0.025, 9), crease(idt.skin, a1), 0.02))
    for s, sx in ((0, -1.0), (1, 1.0)):
        a2, a4 = g.side(2, s), g.side(4, s)
        if a2 > 0:
            yk = y - 0.28
            arc = bow((sx * 0.42, yk + 0.03), (sx * 0.78, yk + 0.08), yk - 0.02, 9)
            ops.append(line(arc, crease(idt.skin, a2), 0.02))
        if a4 > 0:
            ops.append(line([(sx * 0.075, y - 0.04), (sx * 0.055, y + 0.14)], crease(idt.skin, a4), 0.024))


def nose(ops: list[Op], idt: Identity, g: Amplitudes) -> None:
    """Bridge shadow, nostrils, wings and tip; AU9 lifts the wings and wrinkles the bridge, AU10 lifts a little."""
    a9, a10 = g.both(9), g.both(10)
    ny, nw = idt.nose_y - 0.03 * a9 - 0.01 * a10, idt.nose_w + 0.015 * a9
    wing_y = ny - 0.02 - 0.06 * a9 - 0.025 * a10
    edge = shade(idt.skin, 0.62)
    ops.append(line([(-0.1, 0.08), (-0.11, 0.3), (-nw * 0.75, ny - 0.12)], shade(idt.skin, 0.88), 0.02, 0.15))
    for sx in (-1.0, 1.0):
        ops.append(disc(sx * nw * 0.45, ny + 0.02, 0.03, shade(idt.skin, 0.45), depth=0.2))
        wing = [
            (sx * (nw - 0.03), wing_y - 0.09),
            (sx * (nw + 0.01), wing_y - 0.02),
            (sx * (nw - 0.01), wing_y + 0.035),
            (sx * (nw - 0.07), wing_y + 0.045),
        ]
        ops.append(line(wing, edge, 0.024, depth=0.2))
    ops.append(line(bow((-0.08, ny + 0.03), (0.08, ny + 0.03), ny + 0.05, 7), edge, 0.02, depth=0.3))
    if a9 > 0:
        for yk in (0.13, 0.2, 0.27):
            chevron = [(-0.12, yk + 0.025), (0, yk - 0.01), (0.12, yk + 0.025)]
            ops.append(line(chevron, crease(idt.skin, a9), 0.02, depth=0.2))
