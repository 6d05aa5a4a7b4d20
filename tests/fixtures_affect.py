"""Writers of tiny affect datasets in their published on-disk layouts (the others are in fixtures_datasets.py)."""

from __future__ import annotations

from pathlib import Path

from fixtures_datasets import write_image


def make_rafdb_compound(root: Path, entries: list[tuple[str, int]] | None = None) -> Path:
    """RAF-DB's ``compound`` folder: ``EmoLabel/list_patition_label.txt`` with 1-indexed compound labels and
    ``Image/aligned/<stem>_aligned.jpg``. Default: train_0001..0011 labelled 1..11, test_0001..0002 labelled 4, 11."""
    entries = entries or [(f"train_{i:04d}.jpg", i) for i in range(1, 12)] + [
        ("test_0001.jpg", 4),
        ("test_0002.jpg", 11),
    ]
    label_file = root / "EmoLabel" / "list_patition_label.txt"
    label_file.parent.mkdir(parents=True, exist_ok=True)
    label_file.write_text("".join(f"{name} {label}\n" for name, label in entries))
    for name, _ in entries:
        write_image(root / "Image" / "aligned" / f"{name.rsplit('.', 1)[0]}_aligned.jpg")
    return root
