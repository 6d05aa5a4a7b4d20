"""Writers of tiny datasets in each source's exact on-disk format (as each dataset's documentation describes it,
and ``conf/dataset/<name>.yaml`` repeats it), for the tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from PIL import Image


def write_image(path: Path, shade: int = 128, size: int = 16, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (shade, 255 - shade, shade // 2)).save(path, format=fmt)
    return path


def write_corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an image")
    return path


def write_truncated(path: Path) -> Path:
    """A real JPEG cut in half: opens (header ok) but fails on decode."""
    write_image(path, size=64, fmt="JPEG")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def jsonl_row(i: int, **fields: Any) -> dict[str, Any]:
    row = {
        "id": f"s{i}",
        "dataset": "fixture",
        "image": f"images/s{i}.jpg",
        "question": "What emotion?",
        "AUs": ["AU06", "au12"],
        "labels": ["Happy"],
        "description": "<think>cheeks raised (AU6)</think><answer>happiness</answer>",
        "meta_info": {"identity": i},
    }
    row.update(fields)
    return row


def make_jsonl(root: Path, splits: dict[str, list[dict[str, Any] | str]], images: bool = True) -> Path:
    """``<split>.jsonl`` per split (rows may be raw strings, for malformed lines) and their images."""
    for split, rows in splits.items():
        lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
        (root / f"{split}.jsonl").parent.mkdir(parents=True, exist_ok=True)
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
        for row in rows if images else []:
            image = row.get("image") if isinstance(row, dict) else None
            image = image[0] if isinstance(image, list) else image
            if isinstance(image, str) and not image.startswith(("/", "..")):
                write_image(root / image)
    return root


def make_rafdb(root: Path, entries: list[tuple[str, int]] | None = None) -> Path:
    entries = entries or [(f"train_{i:05d}.jpg", i % 7 + 1) for i in range(1, 21)] + [
        (f"test_{i:04d}.jpg", i % 7 + 1) for i in range(1, 6)
    ]
    label_file = root / "EmoLabel" / "list_patition_label.txt"
    label_file.parent.mkdir(parents=True, exist_ok=True)
    label_file.write_text("".join(f"{name} {label}\n" for name, label in entries))
    for name, _ in entries:
        stem = name.rsplit(".", 1)[0]
        write_image(root / "Image" / "aligned" / f"{stem}_aligned.jpg")
    return root


AFFECTNET_HEADER = [
    "subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks", "expression",
    "valence", "arousal",
]  # fmt: skip


def make_affectnet(
    root: Path, expressions: dict[str, list[int]] | None = None, header=AFFECTNET_HEADER
) -> Path:
    expressions = expressions or {"training.csv": list(range(11)) * 2, "validation.csv": [0, 1, 7, 9]}
    for filename, codes in expressions.items():
        with open(root / filename, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for i, code in enumerate(codes):
                rel = f"{i % 3 + 1}/{filename[:5]}{i}.jpg"
                write_image(root / "Manually_Annotated_Images" / rel)
                writer.writerow([rel, 10, 12, 90, 90, "1;2;3", code, 0.25, -0.5][: len(header)])
    return root


def make_fer2013(root: Path, rows: list[tuple[int, str, str]] | None = None) -> Path:
    pixels = " ".join(str(i % 256) for i in range(48 * 48))
    rows = rows or [
        (i % 7, pixels, usage)
        for i, usage in enumerate(["Training"] * 6 + ["PublicTest"] * 2 + ["PrivateTest"] * 3)
    ]
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "fer2013.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["emotion", "pixels", "Usage"])
        writer.writerows(rows)
    return root


def faba_item(i: int, reply: str, label: str | None = None, image: str | None = None) -> dict[str, Any]:
    item = {
        "source": "fixture",
        "image": image or f"img{i}.jpg",
        "id": str(i),
        "conversations": [
            {"from": "human", "value": "<image>\nDescribe the facial action units."},
            {"from": "gpt", "value": reply},
        ],
        "landmark": [[1.0, 2.0], [3.0, 4.0]],
    }
    if label is not None:
        item["label"] = label
    return item


def make_faba(root: Path, files: dict[str, list[dict[str, Any]]] | None = None) -> Path:
    """``{train,eval}/{train,eval}_{au,emotion}_anno.json`` and images ``<root>/<image>``."""
    files = files or {
        "train/train_au_anno.json": [
            faba_item(
                1, "The inner brows are raised (AU1) and the brows are lowered (AU04). There is no AU12."
            ),
            faba_item(2, "The lip corner puller and the cheek raiser are active."),
            faba_item(3, "Nothing notable in this face."),
        ],
        "train/train_emotion_anno.json": [
            faba_item(4, "The person looks happy. They are not sad."),
            faba_item(5, "Happy or sad, hard to tell"),
        ],
        "eval/eval_au_anno.json": [faba_item(6, "AU1, AU2 and AU4.", label="1, 2, 4")],
        "eval/eval_emotion_anno.json": [faba_item(7, "Clearly joyful.", label="Happiness")],
    }
    for rel, items in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(items, indent=2))
        for item in items:
            if isinstance(item, dict) and not str(item.get("image", "")).startswith(("/", "..")):
                write_image(root / item["image"])
    return root


DISFA_AUS = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)


def make_disfa(
    root: Path, subjects: list[str], frames: int = 4, flat: bool = False, padded: bool = True
) -> Path:
    """Intensity of AU n at frame f: (n + f) % 6, so frame 1 of AU1 has 2 (on at threshold 2)."""
    for subject in subjects:
        folder = root / "ActionUnit_Labels" if flat else root / "ActionUnit_Labels" / subject
        folder.mkdir(parents=True, exist_ok=True)
        for au in DISFA_AUS:
            lines = [f"{f},{(au + f) % 6}" for f in range(1, frames + 1)]
            (folder / f"{subject}_au{au}.txt").write_text("\n".join(lines) + "\n")
        for f in range(1, frames + 1):
            write_image(root / "frames" / subject / (f"{f:05d}.jpg" if padded else f"{f}.png"))
    return root


BP4D_AUS = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)


def make_bp4d(
    root: Path, subjects: list[str], rows: list[list[int]] | None = None, au_header: bool = False
) -> Path:
    """One sequence T1 per subject; each row is ``[frame, code per AU of BP4D_AUS, code of AU3 (ignored)]``."""
    rows = rows or [[1] + [1, 0] * 6 + [9], [2] + [9] + [0] * 11 + [1], [3] + [9] * 12 + [0]]
    header = ["0"] + [f"AU{a:02d}" if au_header else str(a) for a in BP4D_AUS] + ["3"]
    for subject in subjects:
        path = root / "AUCoding" / f"{subject}_T1.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as handle:
            csv.writer(handle).writerows([header, *rows])
        for row in rows:
            write_image(root / "frames" / subject / "T1" / f"{row[0]:04d}.jpg")
    return root


def make_faba_published(parent: Path, n_eval: int = 3) -> Path:
    """FABA-Instruct as EmoLA publishes it: ``<parent>/FABAInstruct/`` with image paths relative to ``<parent>``
    (``FABAInstruct/images/...``); eval files with ``label`` (an AU string; an emotion id or name) and ``gpt4``."""
    root = parent / "FABAInstruct"
    train = [
        faba_item(i, "The person looks happy.", image=f"FABAInstruct/images/train_{i}.jpg") for i in range(4)
    ]
    au_eval = [
        {"image": f"FABAInstruct/images/au_{i}.jpg", "id": f"a{i}", "label": "1, 2, 4", "gpt4": "AU1, AU2 and AU4.",
         "landmark": f"FABAInstruct/landmarks/au_{i}.npy"}
        for i in range(n_eval)
    ]  # fmt: skip
    emotion_eval = [
        {"image": "FABAInstruct/images/emo_0.jpg", "id": "e0", "label": 3, "gpt4": "The face shows anger."},
        {"image": "FABAInstruct/images/emo_1.jpg", "id": "e1", "label": "0", "gpt4": "A happy face."},
        {"image": "FABAInstruct/images/emo_2.jpg", "id": "e2", "label": "Sadness", "gpt4": "A sad face."},
    ]
    files = {
        "train/train_emotion_anno.json": train,
        "train/train_au_anno.json": [
            faba_item(9, "AU12 is present.", image="FABAInstruct/images/train_9.jpg")
        ],
        "eval/eval_au_anno.json": au_eval,
        "eval/eval_emotion_anno.json": emotion_eval,
    }
    for rel, items in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(items, indent=2))
        for item in items:
            write_image(parent / item["image"])
    return root


def make_affectnet_npy(root: Path, sets: dict[str, list[int]] | None = None, as_text: bool = True) -> Path:
    """AffectNet's per-image release: ``<set>/images/<n>.jpg`` + ``<set>/annotations/<n>_{exp,val,aro}.npy``."""
    import numpy as np

    sets = sets or {"train_set": [0, 1, 2, 3, 4, 5, 6, 7, 1, 2], "val_set": [0, 1, 7, 9]}
    for set_name, codes in sets.items():
        for n, code in enumerate(codes):
            write_image(root / set_name / "images" / f"{n}.jpg")
            ann = root / set_name / "annotations"
            ann.mkdir(parents=True, exist_ok=True)
            np.save(ann / f"{n}_exp.npy", np.array(str(code) if as_text else code))
            np.save(ann / f"{n}_val.npy", np.array("0.25" if as_text else 0.25))
            np.save(ann / f"{n}_aro.npy", np.array("-0.5" if as_text else -0.5))
    return root


FER_FOLDERS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def make_fer_folders(root: Path, per_class: int = 3) -> Path:
    """FER2013's image release: ``train/<class>/`` and ``test/<class>/``, no ``val/``."""
    for split in ("train", "test"):
        for k, name in enumerate(FER_FOLDERS):
            for i in range(per_class):
                write_image(root / split / name / f"{split}_{k}_{i}.png", shade=10 * k + i, size=48)
    return root


def make_icml_csv(root: Path) -> Path:
    """``icml_face_data.csv``: the Kaggle challenge file, header ``emotion, Usage, pixels`` (spaces included)."""
    pixels = " ".join(str(i % 256) for i in range(48 * 48))
    root.mkdir(parents=True, exist_ok=True)
    lines = ["emotion, Usage, pixels"] + [
        f"{i % 7},{usage},{pixels}"
        for i, usage in enumerate(["Training"] * 4 + ["PublicTest", "PrivateTest"] * 2)
    ]
    (root / "icml_face_data.csv").write_text("\n".join(lines) + "\n")
    return root
