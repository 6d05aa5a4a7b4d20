"""From identity + active AUs to the portrait's drawing primitives, in painting order (back to front).

Every AU is a displacement of control points or a crease whose strength grows with the AU's amplitude. Directions
and sizes follow the usual FACS descriptions at intensity E, enlarged where a 112 px face needs it (table in
``docs/synthfaces.md``). The features live in ``upper_face`` and ``mouth``; this module adds head, jaw, hair and
glasses. Nothing here touches pixels.
"""

from __future__ import annotations

import numpy as np

from facial_r1.data.synthfaces.identity import Identity
from facial_r1.data.synthfaces.mouth import mouth
from facial_r1.data.synthfaces.primitives import (
    ActiveAUs,
    Amplitudes,
    Op,
    ellipse,
    line,
    loop,
    mirror,
    poly,
    shade,
    smoothstep,
    spline,
)
from facial_r1.data.synthfaces.upper_face import brow, eye, forehead, nose


def face_ops(idt: Identity, aus: ActiveAUs) -> list[Op]:
    """Primitives of the whole portrait for ``aus`` ({AU: (intensity 1..5, side "L"/"R"/None)})."""
    g = Amplitudes(aus)
    ops: list[Op] = []
    if idt.hair_style == "long":
        ops.append(poly(spline(mirror(_long_hair(idt))), idt.hair, depth=-0.4))
    _body(ops, idt)
    # AU26 lowers the jaw 0.22, AU27 0.45; AU17 raises the chin boss 0.05.
    outline = _head_outline(idt, 0.22 * g.both(26) + 0.45 * g.both(27), 0.05 * g.both(17))
    ops += [poly(outline, idt.skin), loop(outline, shade(idt.skin, 0.72), 0.025)]
    for s in (0, 1):
        eye(ops, idt, g, s)
        brow(ops, idt, g, s)
    forehead(ops, idt, g)
    nose(ops, idt, g)
    mouth(ops, idt, g)
    if idt.hair_style != "none":
        ops.append(poly(_hair_cap(idt), idt.hair, depth=-0.1))
    if idt.glasses:
        _glasses(ops, idt)
    return ops


def _head_outline(idt: Identity, drop: float, chin_raise: float) -> np.ndarray:
    fw, jw, cw, cy = idt.face_w, idt.face_w * idt.jaw_w, idt.chin_w, idt.chin_y
    half = [
        (0, idt.top_y),
        (-0.66 * fw, idt.top_y + 0.2),
        (-0.95 * fw, -0.55),
        (-fw, 0.1),
        (-0.96 * fw, 0.6),
        (-jw, 1.1),
        (-cw - 0.1, cy - 0.1),
        (-cw * 0.6, cy - 0.01),
        (0, cy),
    ]
    pts = spline(mirror(half), n=4)
    # The jaw hinges below the cheekbones: only the lower face moves, more towards the chin. Deforming after the
    # spline keeps the change local (moving a control point would bend the whole cheek).
    pts[:, 1] += drop * smoothstep((pts[:, 1] - 0.6) / (cy - 0.6))
    if chin_raise:
        pts[:, 1] -= chin_raise * smoothstep((pts[:, 1] - 1.2) / (cy - 1.2))
    return pts


def _body(ops: list[Op], idt: Identity) -> None:
    for sx in (-1.0, 1.0):  # ears sit behind the head outline
        ops.append(
            poly(ellipse(sx * (idt.face_w - 0.02), 0.28, 0.12, 0.24), shade(idt.skin, 0.9), depth=-0.6)
        )
    ops.append(poly([(-0.42, 0.9), (0.42, 0.9), (0.5, 3.2), (-0.5, 3.2)], shade(idt.skin, 0.8), depth=-0.3))
    ops.append(poly(ellipse(0, idt.chin_y + 1.6, 1.9, 0.95), idt.clothes, depth=-0.3))


def _long_hair(idt: Identity) -> list[tuple[float, float]]:
    fw = idt.face_w
    return [
        (0, idt.top_y - 0.14),
        (-fw * 0.8, idt.top_y + 0.05),
        (-fw - 0.14, -0.5),
        (-fw - 0.18, 0.7),
        (-fw - 0.2, 2.3),
        (0, 2.4),
    ]


def _hair_cap(idt: Identity) -> np.ndarray:
    """Hair over the skull down to the hairline; it never reaches the forehead lines of AU1/2."""
    fw, hl = idt.face_w, idt.hairline_y
    left_low = right_low = hl
    if idt.hair_style == "bangs":
        left_low = right_low = max(hl, -0.8)
    elif idt.hair_style == "side":
        left_low, right_low = hl - 0.05, max(hl + 0.12, -0.8)
    outer = [
        (-fw - 0.06, -0.15),
        (-fw - 0.04, -0.75),
        (-0.68 * fw, idt.top_y + 0.08),
        (0, idt.top_y - 0.08),
        (0.68 * fw, idt.top_y + 0.08),
        (fw + 0.04, -0.75),
        (fw + 0.06, -0.15),
    ]
    hairline = [
        (fw - 0.01, -0.2),
        (0.84 * fw, -0.72),
        (0.42, right_low + 0.05),
        (0, (left_low + right_low) / 2),
        (-0.42, left_low + 0.05),
        (-0.84 * fw, -0.72),
        (-fw + 0.01, -0.2),
    ]
    return spline(outer + hairline, n=3)


def _glasses(ops: list[Op], idt: Identity) -> None:
    frame, width = idt.glasses_rgb, 0.035
    for sx in (-1.0, 1.0):
        ops.append(loop(ellipse(sx * 0.5, 0.02, 0.29, 0.2, n=20), frame, width))
        ops.append(line([(sx * 0.79, -0.02), (sx * (idt.face_w + 0.02), -0.06)], frame, width, depth=-0.4))
    ops.append(line([(-0.21, -0.01), (0, -0.05), (0.21, -0.01)], frame, width))
