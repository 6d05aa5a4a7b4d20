"""Where each AU changes the face: named boxes in face coordinates (IOD units, origin between the pupils, y down).

The boxes are generous enough to hold every pixel an AU moves, for every identity the sampler can draw, at
intensity E. Tests use them to prove each AU is visible where it should be and nowhere else; the docs list them.
"""

from __future__ import annotations

import numpy as np

from facial_r1.data.synthfaces.identity import Identity
from facial_r1.data.synthfaces.nuisance import Nuisance
from facial_r1.data.synthfaces.render import projector

Box = tuple[float, float, float, float]  # x0, y0, x1, y1

REGIONS: dict[str, Box] = {
    "brows": (-0.95, -0.78, 0.95, -0.02),  # brows, forehead lines, furrows between the brows
    "eyes": (-1.0, -0.34, 1.0, 0.38),  # lids, iris, crow's feet, raised cheeks under the eyes
    "nose": (-0.42, 0.0, 0.42, 0.75),  # bridge wrinkles, nostril wings
    "mouth": (-0.9, 0.35, 0.9, 1.45),  # lips, teeth, corners, nasolabial folds, dimples, corner lines
    "chin": (-0.9, 0.95, 0.9, 1.8),  # chin boss and its texture
    "jaw": (-1.12, 0.55, 1.12, 2.7),  # lowered jaw: chin, face outline, neck it covers
}

AU_REGIONS: dict[int, tuple[str, ...]] = {
    1: ("brows",),
    2: ("brows",),
    4: ("brows", "eyes"),  # the lowered brows also lower the upper lids
    5: ("eyes",),
    6: ("eyes",),
    7: ("eyes",),
    9: ("nose", "brows"),  # the nose wrinkler also pulls the brow heads down
    10: ("nose", "mouth"),
    12: ("mouth",),
    14: ("mouth",),
    15: ("mouth",),
    16: ("mouth",),
    17: ("mouth", "chin"),
    20: ("mouth",),
    23: ("mouth",),
    24: ("mouth",),
    25: ("mouth",),
    26: ("mouth", "jaw"),
    27: ("mouth", "jaw"),
    43: ("eyes",),
}


def region_mask(
    regions: tuple[str, ...] | int,
    identity: Identity,
    nuisance: Nuisance | None = None,
    size: int = 112,
    margin: int = 1,
) -> np.ndarray:
    """Boolean (size, size) mask of the union of ``regions`` (or of an AU's regions) in output pixels.

    Exact for a frontal face; with roll or yaw each box becomes the bounding box of its projected corners.
    """
    names = AU_REGIONS[regions] if isinstance(regions, int) else regions
    to_px = projector(identity, nuisance or Nuisance(), size)
    mask = np.zeros((size, size), dtype=bool)
    for name in names:
        x0, y0, x1, y1 = REGIONS[name]
        corners = to_px(np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], dtype=float))
        (px0, py0), (px1, py1) = corners.min(0), corners.max(0)
        c0, r0 = max(0, int(np.floor(px0)) - margin), max(0, int(np.floor(py0)) - margin)
        c1, r1 = min(size, int(np.ceil(px1)) + margin), min(size, int(np.ceil(py1)) + margin)
        mask[r0:r1, c0:c1] = True
    return mask
