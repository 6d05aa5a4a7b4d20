"""SynthFACS: procedural faces with exact AU and emotion truth, the embedded default dataset.

On the fly: ``img, record = render_sample(index, split="train", seed=0)``. To disk:
``export_split(out_dir, "train", n, seed)`` or ``python -m facial_r1.data.synthfaces --out DIR --n N``.
See ``docs/synthfaces.md`` for the canonical AU set per emotion, the knobs and the AU -> region map.
"""

from facial_r1.data.synthfaces.config import RENDERABLE_AUS, NuisanceConfig, SynthFacesConfig
from facial_r1.data.synthfaces.export import export_split, read_split
from facial_r1.data.synthfaces.identity import Identity, sample_identity
from facial_r1.data.synthfaces.nuisance import Nuisance, sample_nuisance
from facial_r1.data.synthfaces.primitives import AMPLITUDE
from facial_r1.data.synthfaces.regions import AU_REGIONS, REGIONS, region_mask
from facial_r1.data.synthfaces.render import render_face
from facial_r1.data.synthfaces.sampling import (
    CONFLICTS,
    DATASET,
    SampleSpec,
    couple,
    iter_samples,
    render_sample,
    render_spec,
    sample_expression,
    sample_spec,
    spec_record,
    split_code,
)
from facial_r1.data.synthfaces.sheets import au_sheet, contact_sheet

__all__ = [
    "AMPLITUDE",
    "AU_REGIONS",
    "CONFLICTS",
    "DATASET",
    "Identity",
    "Nuisance",
    "NuisanceConfig",
    "REGIONS",
    "RENDERABLE_AUS",
    "SampleSpec",
    "SynthFacesConfig",
    "au_sheet",
    "contact_sheet",
    "couple",
    "export_split",
    "iter_samples",
    "read_split",
    "region_mask",
    "render_face",
    "render_sample",
    "render_spec",
    "sample_expression",
    "sample_identity",
    "sample_nuisance",
    "sample_spec",
    "spec_record",
    "split_code",
]
