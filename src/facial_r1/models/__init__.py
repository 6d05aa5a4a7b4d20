"""Models: one file per family (:mod:`facial_r1.models.qwen2_5_vl`), the family-neutral :mod:`~facial_r1.models.policy`."""
