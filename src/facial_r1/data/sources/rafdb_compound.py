"""RAF-DB compound emotions (the 11-class compound subset).

On disk (as distributed, the ``compound`` folder of RAF-DB)::

    <root>/EmoLabel/list_patition_label.txt     lines "train_0001.jpg 4" (1-indexed, see below)
    <root>/Image/aligned/train_0001_aligned.jpg
    <root>/Image/original/train_0001.jpg       (used with aligned=False)

Label order, from the RAF-DB documentation (``affect.COMPOUND_EMOTIONS``): 1 Happily Surprised, 2 Happily
Disgusted, 3 Sadly Fearful, 4 Sadly Angry, 5 Sadly Surprised, 6 Sadly Disgusted, 7 Fearfully Angry, 8 Fearfully
Surprised, 9 Angrily Surprised, 10 Angrily Disgusted, 11 Disgustedly Surprised.

Each record's target is ``compound`` (lowercase, e.g. "sadly angry"); ``labels=[]`` (no basic label, so emotion
accuracy does not apply) and ``label_set`` is RAF-DB's basic 7, offered beside the compound names by a compound
prompt. Splits as RAF-DB basic: ``train_`` / ``test_`` prefixes (3,162 / 792), ``val`` a seeded slice of train.
No AU labels (``AUs=None``).
"""

from __future__ import annotations

from typing import Any

from facial_r1.affect import COMPOUND_EMOTIONS
from facial_r1.data.sources.base import Row
from facial_r1.data.sources.rafdb import RafDbSource
from facial_r1.facs import LABEL_ORDERS


class RafDbCompoundSource(RafDbSource):
    """RAF-DB compound (11 classes) from ``list_patition_label.txt``: the basic reader with the compound order."""

    name = "rafdb_compound"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # The basic reader checks the label range against this order and maps label k to entry k - 1.
        self.label_order = COMPOUND_EMOTIONS

    def _parse(self, row: Row) -> dict[str, Any]:
        record = super()._parse(row)
        return {
            **record,
            "compound": record["labels"][0],
            "labels": [],
            "label_set": sorted(LABEL_ORDERS["rafdb"]),
        }
