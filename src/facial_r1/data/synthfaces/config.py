"""Every SynthFACS knob in two dataclasses, with documented defaults.

The defaults are tuned for the embedded benchmark: faces a ~0.7M-parameter model learns on a CPU in minutes, so
every AU is clearly visible at 112 px and the nuisance (pose, lighting, noise, JPEG) stays moderate. Both classes
accept lists and plain dicts where they expect tuples and nested configs, so Hydra can build them from YAML.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from facial_r1.affect import COMPOUND_EMOTIONS, compound_components
from facial_r1.facs import AU_VOCAB, EMOTION_PROTOTYPES, EMOTIONS

# The AUs the renderer can draw: the 20 FABA AUs (a superset of DISFA-12 and BP4D-12).
RENDERABLE_AUS: tuple[int, ...] = AU_VOCAB["faba"]


@dataclass
class NuisanceConfig:
    """Per-sample nuisance ranges. Every range is symmetric (+-value) unless it is a (low, high) pair.

    Defaults are mild on purpose: measured with a linear probe on the tiny model's warm-started vision tower (300 /
    3000 training faces), halving pose, noise and blur and drawing AUs at C..E instead of B..E raised held-out emotion
    accuracy from 0.55 / 0.74 to 0.75 / 0.88. Raise them for a harder benchmark.
    """

    roll_deg: float = 3.0  # in-plane head rotation
    yaw_deg: float = 4.0  # left-right head turn (features slide over an ellipsoid; the silhouette narrows)
    scale: float = 0.03  # relative face-size jitter
    shift: float = 0.015  # translation, as a fraction of the image size
    lighting: float = 0.15  # strength of a directional brightness gradient across the image
    brightness: float = 0.08  # global brightness jitter
    tint: float = 0.025  # per-channel colour cast
    noise_std: tuple[float, float] = (0.0, 1.5)  # Gaussian pixel noise, in 0-255 units
    blur_radius: tuple[float, float] = (0.0, 0.3)  # Gaussian blur sigma in output pixels (< 0.05 = none)
    jpeg_quality: tuple[int, int] = (75, 95)  # JPEG quality of the stored image; (0, 0) = no JPEG round trip
    p_gradient_background: float = 0.5  # else a flat background colour

    def __post_init__(self) -> None:
        self.noise_std = _pair(self.noise_std, "noise_std")
        self.blur_radius = _pair(self.blur_radius, "blur_radius")
        self.jpeg_quality = tuple(int(q) for q in _pair(self.jpeg_quality, "jpeg_quality"))
        if self.jpeg_quality != (0, 0) and not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(
                f"jpeg_quality must be (0, 0) or 1 <= low <= high <= 100, got {self.jpeg_quality}"
            )

    @classmethod
    def off(cls) -> NuisanceConfig:
        """No nuisance at all: frontal, centred, flat light, no noise, blur or JPEG (tests, AU sheets)."""
        zero = dict.fromkeys(("roll_deg", "yaw_deg", "scale", "shift", "lighting", "brightness", "tint"), 0.0)
        return cls(
            **zero,
            noise_std=(0.0, 0.0),
            blur_radius=(0.0, 0.0),
            jpeg_quality=(0, 0),
            p_gradient_background=0.0,
        )


@dataclass
class SynthFacesConfig:
    """What SynthFACS draws and how the labels are withheld.

    Expression model: each sample draws an emotion (uniform over ``emotions``), starts from its canonical AU set
    (``facs.EMOTION_PROTOTYPES``), drops one AU with ``p_drop_au``, adds one non-conflicting AU from ``au_vocab``
    with ``p_add_au`` (so the AU set is not a function of the emotion), gives each AU an intensity in
    ``intensity_range`` (1..5 = FACS A..E) and applies the FACS coupling 26/27 -> 25. Label model: a share
    ``p_au_only`` of samples hide the emotion (``labels=[]``, like DISFA/BP4D) and ``p_emotion_only`` hide the AUs
    (``AUs=None``, like RAF-DB); the full truth always stays in ``meta_info``.

    Affect targets (``data/schema.py``): every AU's level is the ``AU_intensity`` target (withheld with the AUs);
    valence/arousal follow ``affect.expression_va`` (the emotion's circumplex anchor scaled by the mean AU level / 5)
    plus Gaussian noise of std ``va_noise``, clipped to [-1, 1] and withheld with the emotion. A share
    ``p_compound`` of samples are compound faces: a class of ``compounds`` (RAF-DB's 11) whose two prototypes are
    blended (``sampling.sample_compound_expression``), labelled ``compound=<name>`` with ``labels=[]``. Both draw
    from their own random streams, so ``p_compound=0`` leaves every image as it was.
    """

    image_size: int = 112  # output pixels (Qwen2.5-VL patch 14 x merge 2 -> 16 image tokens at 112)
    supersample: int = 3  # draw at this multiple of image_size, then box-downsample (anti-aliasing)
    emotions: tuple[str, ...] = EMOTIONS  # classes sampled (uniformly) and offered as the label set
    au_vocab: tuple[int, ...] = RENDERABLE_AUS  # AUs that may be added at random; also the record's au_vocab
    intensity_range: tuple[int, int] = (3, 5)  # FACS levels drawn per AU (1 = A trace ... 5 = E maximum)
    p_drop_au: float = 0.15  # probability of dropping one AU of the emotion's canonical set
    p_add_au: float = 0.15  # probability of adding one extra AU
    contempt_sides: tuple[str, ...] = ("R", "L")  # side of the unilateral contempt AUs (subject's own side)
    label_min_intensity: int = 1  # AUs below this level are drawn but not labelled (DISFA labels >= 2)
    p_au_only: float = 0.1  # share of samples whose emotion label is withheld (labels=[])
    p_emotion_only: float = 0.1  # share of samples whose AU annotation is withheld (AUs=None)
    expressions_per_identity: int = 4  # consecutive samples of a split share one identity
    # Inter-ocular distance as a fraction of image_size: an aligned face crop (RAF-DB "aligned" is ~0.35), so AU
    # detail spans enough pixels for a tiny vision tower (0.26-0.29 measured a 0.61 vs 0.74 linear-probe accuracy).
    iod_frac: tuple[float, float] = (0.34, 0.37)
    p_glasses: float = 0.15
    p_hair: float = 0.85  # else bald
    va_noise: float = 0.05  # std of the Gaussian noise on valence and arousal (0 = the exact mapping)
    # Share of compound faces (two emotion prototypes blended, labelled with the compound).
    p_compound: float = 0.0
    compounds: tuple[str, ...] = COMPOUND_EMOTIONS  # compound classes drawn (uniformly) when p_compound > 0
    nuisance: NuisanceConfig = field(default_factory=NuisanceConfig)

    def __post_init__(self) -> None:
        if isinstance(self.nuisance, dict) or hasattr(self.nuisance, "items"):
            self.nuisance = NuisanceConfig(**dict(self.nuisance))
        self.emotions = tuple(str(e) for e in self.emotions)
        self.au_vocab = tuple(int(a) for a in self.au_vocab)
        self.intensity_range = tuple(int(i) for i in _pair(self.intensity_range, "intensity_range"))
        self.contempt_sides = tuple(str(s) for s in self.contempt_sides)
        self.compounds = tuple(str(c) for c in self.compounds)
        self.iod_frac = _pair(self.iod_frac, "iod_frac")
        self.validate()

    def validate(self) -> None:
        """Reject impossible settings with a message naming the knob."""
        unknown = [e for e in self.emotions if e not in EMOTION_PROTOTYPES]
        if not self.emotions or unknown:
            raise ValueError(f"emotions must be a non-empty subset of {EMOTIONS}, got unknown {unknown}")
        bad_aus = [a for a in self.au_vocab if a not in RENDERABLE_AUS]
        if bad_aus:
            raise ValueError(f"au_vocab: SynthFACS cannot draw AUs {bad_aus}; renderable: {RENDERABLE_AUS}")
        low, high = self.intensity_range
        if not 1 <= low <= high <= 5:
            raise ValueError(
                f"intensity_range must satisfy 1 <= low <= high <= 5, got {self.intensity_range}"
            )
        if not set(self.contempt_sides) <= {"L", "R"} or not self.contempt_sides:
            raise ValueError(
                f"contempt_sides must be a non-empty subset of ('L', 'R'), got {self.contempt_sides}"
            )
        unknown = [c for c in self.compounds if c not in COMPOUND_EMOTIONS]
        if unknown or (self.p_compound > 0 and not self.compounds):
            raise ValueError(
                f"compounds must be a non-empty subset of {COMPOUND_EMOTIONS}, got unknown {unknown}"
            )
        missing = sorted(
            {e for c in self.compounds for e in compound_components(c)} - set(EMOTION_PROTOTYPES)
        )
        if missing:  # pragma: no cover - every compound component has a prototype
            raise ValueError(f"compound components without a prototype: {missing}")
        if self.va_noise < 0:
            raise ValueError(f"va_noise must be >= 0, got {self.va_noise}")
        names = ("p_drop_au", "p_add_au", "p_au_only", "p_emotion_only", "p_glasses", "p_hair", "p_compound")
        for name in names:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.p_au_only + self.p_emotion_only > 1.0:
            raise ValueError("p_au_only + p_emotion_only must not exceed 1")
        if self.image_size < 16 or self.supersample < 1 or self.expressions_per_identity < 1:
            raise ValueError(
                "image_size >= 16, supersample >= 1 and expressions_per_identity >= 1 are required"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pair(value: Any, name: str) -> tuple[float, float]:
    pair = tuple(float(v) for v in value)
    if len(pair) != 2 or pair[0] > pair[1]:
        raise ValueError(f"{name} must be a (low, high) pair with low <= high, got {value!r}")
    return pair
