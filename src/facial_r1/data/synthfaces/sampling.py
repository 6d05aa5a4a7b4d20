"""What each sample shows: identity, emotion, AUs with intensities, nuisance, and which labels stay visible.

Determinism: sample ``index`` of ``split`` under ``seed`` depends only on those three numbers and the config, via
independent NumPy streams seeded with ``[seed, split_code, stream, index]``. Identities are per split: sample i
shows identity ``i // expressions_per_identity`` of its split, whose id lives in the split's own range
(``split_code * IDENTITY_STRIDE + k``) and whose looks come from the split's own stream, so train, val and test
never share a person. The affect additions draw from streams of their own (3: valence/arousal noise, 4: compound
choice and its AU levels), so enabling them changes no other draw.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from facial_r1.affect import compound_components, expression_va
from facial_r1.data.schema import make_record
from facial_r1.data.synthfaces.config import SynthFacesConfig
from facial_r1.data.synthfaces.identity import Identity, sample_identity
from facial_r1.data.synthfaces.nuisance import Nuisance, encode_jpeg, sample_nuisance
from facial_r1.data.synthfaces.primitives import ActiveAUs
from facial_r1.data.synthfaces.render import render_face
from facial_r1.facs import EMOTION_PROTOTYPES

DATASET = "synthfaces"
VERSION = 3  # bump when the same (seed, split, index) would render differently
SPLIT_CODES: dict[str, int] = {"train": 1, "val": 2, "test": 3}
IDENTITY_STRIDE = 10_000_000
INTENSITY_LETTERS = "-ABCDE"
LABEL_MODES = ("full", "au_only", "emotion_only")

# Pairs a random extra AU never forms: anatomically exclusive, or they would cancel out on a 2-D face.
_CONFLICT_PAIRS = (
    [(5, 43), (7, 43)]  # a closed eye cannot be widened or tightened
    + [(12, 15), (12, 20), (14, 20)]  # the lip corners cannot go up and down, in and out at once
    + [(23, 24), (10, 24), (16, 24), (24, 25), (24, 26), (24, 27)]  # pressed lips stay closed and unraised
    + [(26, 27), (17, 26), (17, 27)]  # one jaw position; the chin cannot rise while the jaw drops
)
CONFLICTS: frozenset[frozenset[int]] = frozenset(frozenset(pair) for pair in _CONFLICT_PAIRS)


@dataclass(frozen=True)
class SampleSpec:
    """Everything that determines one sample, before any pixel is drawn."""

    id: str
    split: str
    seed: int
    index: int
    identity: Identity
    emotion: str
    aus: ActiveAUs
    nuisance: Nuisance
    label_mode: str  # "full", "au_only" (labels withheld) or "emotion_only" (AUs withheld)
    # A compound face's class (its ``emotion`` is then the compound's main emotion).
    compound: str | None = None
    va: tuple[float, float] = (0.0, 0.0)  # the face's valence and arousal (noise included)


def split_code(split: str) -> int:
    """Stable small integer per split name (train 1, val 2, test 3; other names hashed above 100)."""
    return SPLIT_CODES.get(split, 100 + zlib.crc32(split.encode()) % 1_000_000)


def couple(aus: ActiveAUs) -> dict[int, tuple[int, str | None]]:
    """FACS coupling: a jaw drop (26) or mouth stretch (27) parts the lips, so 25 is coded with it."""
    jaw = max((aus[a][0] for a in (26, 27) if a in aus), default=0)
    coupled = dict(aus)
    if jaw:
        coupled[25] = (max(jaw, aus.get(25, (0, None))[0]), None)
    return coupled


def sample_expression(rng: np.random.Generator, emotion: str, config: SynthFacesConfig) -> ActiveAUs:
    """The emotion's canonical AU set, with one AU dropped / one added at random, intensities, then couplings."""
    chosen = list(EMOTION_PROTOTYPES[emotion])
    if chosen and rng.random() < config.p_drop_au:
        chosen.pop(int(rng.integers(len(chosen))))
    if rng.random() < config.p_add_au:
        options = [
            a for a in config.au_vocab if a not in chosen and not any({a, b} in CONFLICTS for b in chosen)
        ]
        if options:
            chosen.append(options[int(rng.integers(len(options)))])
    low, high = config.intensity_range
    side = None  # contempt is one-sided: its 12 and 14 act on one side of the face
    if emotion == "contempt":
        side = config.contempt_sides[int(rng.integers(len(config.contempt_sides)))]
    levels = rng.integers(low, high + 1, size=len(chosen)).tolist()
    return couple(
        {au: (lv, side if au in (12, 14) else None) for au, lv in zip(sorted(chosen), levels, strict=True)}
    )


def sample_compound_expression(
    rng: np.random.Generator, compound: str, config: SynthFacesConfig
) -> ActiveAUs:
    """Both components' canonical AU sets blended, at levels in ``intensity_range``, then the couplings.

    Where two AUs conflict (``CONFLICTS``: "disgustedly surprised" pairs disgust's chin raiser 17 with surprise's
    jaw drop 26) the modifier's (the adverb's) AU is dropped, so the main emotion keeps its full prototype. No AU is
    dropped or added at random: the blend is the signal.
    """
    modifier, main = compound_components(compound)
    chosen = set(EMOTION_PROTOTYPES[main])
    for au in EMOTION_PROTOTYPES[modifier]:
        if not any({au, b} in CONFLICTS for b in chosen):
            chosen.add(au)
    low, high = config.intensity_range
    levels = rng.integers(low, high + 1, size=len(chosen)).tolist()
    return couple({au: (lv, None) for au, lv in zip(sorted(chosen), levels, strict=True)})


def sample_va(
    rng: np.random.Generator, emotions: tuple[str, ...], aus: ActiveAUs, config: SynthFacesConfig
) -> tuple[float, float]:
    """``affect.expression_va`` of the face plus N(0, va_noise) per axis, clipped to [-1, 1], 3 decimals."""
    v, a = expression_va(emotions, [level for level, _ in aus.values()])
    noise = rng.normal(0.0, config.va_noise, size=2) if config.va_noise > 0 else np.zeros(2)
    return tuple(round(float(np.clip(x + n, -1.0, 1.0)), 3) for x, n in zip((v, a), noise, strict=True))


def sample_spec(
    index: int, split: str = "train", seed: int = 0, config: SynthFacesConfig | None = None
) -> SampleSpec:
    """Draw sample ``index`` of ``split`` (no rendering; cheap)."""
    cfg = config or SynthFacesConfig()
    code = split_code(split)
    k = index // cfg.expressions_per_identity
    identity = sample_identity(np.random.default_rng([seed, code, 0, k]), code * IDENTITY_STRIDE + k, cfg)
    rng = np.random.default_rng([seed, code, 1, index])
    emotion = cfg.emotions[int(rng.integers(len(cfg.emotions)))]
    aus = sample_expression(rng, emotion, cfg)
    u = rng.random()
    mode = "full"
    if u < cfg.p_au_only + cfg.p_emotion_only:
        mode = "au_only" if u < cfg.p_au_only else "emotion_only"
    nuisance = sample_nuisance(np.random.default_rng([seed, code, 2, index]), cfg.nuisance)
    compound = None
    if cfg.p_compound > 0:
        crng = np.random.default_rng([seed, code, 4, index])
        if crng.random() < cfg.p_compound:
            compound = cfg.compounds[int(crng.integers(len(cfg.compounds)))]
            emotion = compound_components(compound)[1]
            aus = sample_compound_expression(crng, compound, cfg)
    va_emotions = compound_components(compound) if compound else (emotion,)
    va = sample_va(np.random.default_rng([seed, code, 3, index]), va_emotions, aus, cfg)
    return SampleSpec(
        f"{DATASET}-{split}-{seed}-{index:06d}", split, seed, index, identity, emotion, aus, nuisance, mode,
        compound, va,
    )  # fmt: skip


def render_spec(spec: SampleSpec, config: SynthFacesConfig | None = None) -> tuple[Image.Image, bytes | None]:
    """Pixels of a spec, and the JPEG bytes they were decoded from (None when the JPEG round trip is off)."""
    cfg = config or SynthFacesConfig()
    img = render_face(spec.identity, spec.aus, spec.nuisance, cfg.image_size, cfg.supersample)
    if spec.nuisance.jpeg_quality <= 0:
        return img, None
    data = encode_jpeg(img, spec.nuisance.jpeg_quality)
    with Image.open(io.BytesIO(data)) as decoded:
        return decoded.convert("RGB"), data


def spec_record(spec: SampleSpec, image: str, config: SynthFacesConfig | None = None) -> dict:
    """The Facial-R1 record of a spec; visible labels follow ``label_mode``, the full truth goes to meta_info."""
    cfg = config or SynthFacesConfig()
    coded = [
        a for a, (level, _) in spec.aus.items() if level >= cfg.label_min_intensity and a in cfg.au_vocab
    ]
    meta = {
        "generator": DATASET,
        "version": VERSION,
        "split": spec.split,
        "seed": spec.seed,
        "index": spec.index,
        "label_mode": spec.label_mode,
        "emotion": spec.emotion,
        "compound": spec.compound,
        "valence": spec.va[0],
        "arousal": spec.va[1],
        "aus": {
            f"AU{a}": {"intensity": level, "letter": INTENSITY_LETTERS[level], "side": side}
            for a, (level, side) in sorted(spec.aus.items())
        },
        "identity_id": spec.identity.id,
        "identity": spec.identity.to_dict(),
        "nuisance": spec.nuisance.to_dict(),
    }
    aus_shown, emotion_shown = spec.label_mode != "emotion_only", spec.label_mode != "au_only"
    return make_record(
        id=spec.id,
        dataset=DATASET,
        image=image,
        aus=[f"AU{a}" for a in sorted(coded)] if aus_shown else None,
        labels=[spec.emotion] if emotion_shown and spec.compound is None else [],
        label_set=cfg.emotions,
        au_vocab=cfg.au_vocab,
        meta_info=meta,
        # Every drawn AU of the vocabulary, also those below label_min_intensity (as DISFA codes level 1).
        au_intensity={f"AU{a}": level for a, (level, _) in spec.aus.items() if a in cfg.au_vocab}
        if aus_shown
        else None,
        valence=spec.va[0] if emotion_shown else None,
        arousal=spec.va[1] if emotion_shown else None,
        compound=spec.compound if emotion_shown else None,
    )


def render_sample(
    index: int, split: str = "train", seed: int = 0, config: SynthFacesConfig | None = None
) -> tuple[Image.Image, dict]:
    """On-the-fly sample: the image (identical to the exported file's pixels) and its record.

    The record's ``image`` is a virtual ``synthfaces://split/seed/index`` address: there is no file.
    """
    spec = sample_spec(index, split, seed, config)
    img, _ = render_spec(spec, config)
    return img, spec_record(spec, f"{DATASET}://{split}/{seed}/{index}", config)


def iter_samples(
    n: int, split: str = "train", seed: int = 0, config: SynthFacesConfig | None = None, start: int = 0
) -> Iterator[tuple[Image.Image, dict]]:
    """Samples ``start .. start + n - 1`` of a split, rendered lazily."""
    for index in range(start, start + n):
        yield render_sample(index, split, seed, config)
