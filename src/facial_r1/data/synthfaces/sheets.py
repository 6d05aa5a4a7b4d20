"""Contact sheets for looking at SynthFACS: random samples per emotion, and one identity showing each AU.

Tiles are upscaled with nearest-neighbour so the sheet shows the true 112 px pixels a model sees.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from facial_r1.data.synthfaces.config import RENDERABLE_AUS, SynthFacesConfig
from facial_r1.data.synthfaces.identity import sample_identity
from facial_r1.data.synthfaces.nuisance import Nuisance
from facial_r1.data.synthfaces.primitives import ActiveAUs
from facial_r1.data.synthfaces.render import render_face
from facial_r1.data.synthfaces.sampling import (
    IDENTITY_STRIDE,
    INTENSITY_LETTERS,
    couple,
    render_spec,
    sample_spec,
)

_CAPTION_LINES = 2


def au_caption(aus: ActiveAUs) -> str:
    """``{12: (5, "R"), 14: (3, "R")}`` -> ``"R12E R14C"``; empty -> ``"no AU"``."""
    parts = [f"{side or ''}{au}{INTENSITY_LETTERS[level]}" for au, (level, side) in sorted(aus.items())]
    return " ".join(parts) or "no AU"


def contact_sheet(
    path: str | Path,
    n: int = 24,
    seed: int = 0,
    config: SynthFacesConfig | None = None,
    cols: int = 6,
    upscale: int = 2,
    split: str = "train",
) -> Path:
    """Grid of ``n`` samples, about equally many per emotion, each captioned with its emotion and true AUs.

    A label the record withholds is shown in brackets: ``[sadness]`` for an AU-only sample, ``[1C 4E 15B]`` for an
    emotion-only one.
    """
    cfg = config or SynthFacesConfig()
    quota = math.ceil(n / len(cfg.emotions))
    chosen: dict[str, list] = {e: [] for e in cfg.emotions}
    index = 0
    while sum(len(v) for v in chosen.values()) < min(n, quota * len(cfg.emotions)) and index < 200 * n:
        spec = sample_spec(index, split, seed, cfg)
        # A compound face's main emotion may lie outside cfg.emotions.
        if spec.emotion in chosen and len(chosen[spec.emotion]) < quota:
            chosen[spec.emotion].append(spec)
        index += 1
    specs = [s for e in cfg.emotions for s in chosen[e]][:n]
    tiles = []
    for spec in specs:
        emotion, aus = spec.compound or spec.emotion, au_caption(spec.aus)
        if spec.label_mode == "au_only":
            emotion = f"[{emotion}]"
        elif spec.label_mode == "emotion_only":
            aus = f"[{aus}]"
        tiles.append((render_spec(spec, cfg)[0], (emotion, aus)))
    return _save_grid(path, tiles, cols, upscale)


def au_sheet(
    path: str | Path,
    seed: int = 0,
    intensity: int = 5,
    config: SynthFacesConfig | None = None,
    cols: int = 6,
    upscale: int = 2,
) -> Path:
    """One identity, no nuisance: neutral, then each renderable AU at ``intensity``, then R12, R14 and R12+R14."""
    cfg = config or SynthFacesConfig()
    identity = sample_identity(np.random.default_rng([seed, 0, 0, 0]), IDENTITY_STRIDE, cfg)
    variants: list[ActiveAUs] = [{}] + [couple({au: (intensity, None)}) for au in RENDERABLE_AUS]
    variants += [{12: (intensity, "R")}, {14: (intensity, "R")}, {12: (intensity, "R"), 14: (intensity, "R")}]
    nuisance = Nuisance()
    tiles = [
        (render_face(identity, aus, nuisance, cfg.image_size, cfg.supersample), (au_caption(aus), ""))
        for aus in variants
    ]
    return _save_grid(path, tiles, cols, upscale)


def _save_grid(
    path: str | Path, tiles: list[tuple[Image.Image, tuple[str, str]]], cols: int, upscale: int
) -> Path:
    size = tiles[0][0].width * upscale
    font = _font(max(10, 6 * upscale))
    line_h = font.size + 3 if hasattr(font, "size") else 14
    cap_h = _CAPTION_LINES * line_h + 4
    rows = math.ceil(len(tiles) / cols)
    sheet = Image.new("RGB", (cols * size, rows * (size + cap_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (img, caption) in enumerate(tiles):
        x, y = (i % cols) * size, (i // cols) * (size + cap_h)
        sheet.paste(img.resize((size, size), Image.Resampling.NEAREST), (x, y))
        for k, text in enumerate(caption):
            draw.text((x + 4, y + size + 2 + k * line_h), text, fill=(20, 20, 20), font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
    return path


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()
