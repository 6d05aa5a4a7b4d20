"""How stages find each other: exports carry a small JSON card; resume finds the newest unfinished run.

Stages hand over through Hugging Face folders (``<run dir>/model``). Each export holds ``facial_r1_export.json``
(stage, base model identity, source run). GRPO's default ``model.init_from=latest_sft`` picks the newest SFT export of
the same base model under ``paths.output_root``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

EXPORT_CARD = "facial_r1_export.json"
RUN_INFO = "run_info.json"
LATEST = "latest_"  # model.init_from=latest_<stage>


def base_model_id(model_cfg: DictConfig) -> str:
    """Identity of the underlying model family/size: the tiny spec's hash, or the resolved checkpoint path."""
    if model_cfg.get("path"):
        return str(Path(model_cfg.path).expanduser().resolve())
    spec = OmegaConf.to_container(model_cfg.tiny, resolve=True) if model_cfg.get("tiny") else {}
    return "tiny:" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def read_card(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / EXPORT_CARD
    return json.loads(path.read_text()) if path.is_file() else {}


def find_latest_export(
    output_root: str | Path, stage: str | None = None, base_model: str | None = None
) -> Path | None:
    """Newest export folder under ``output_root`` (by its card's time), of ``stage`` and of ``base_model`` when given
    (None = any). The one finder behind ``model.init_from=latest_<stage>`` of training and synthesis."""
    best: tuple[float, Path] | None = None
    for card_path in Path(output_root).glob(f"**/{EXPORT_CARD}"):
        try:
            card = json.loads(card_path.read_text())
        except (OSError, json.JSONDecodeError):  # a folder being written or damaged: not a candidate
            log.warning("unreadable export card %s", card_path)
            continue
        if (stage and card.get("stage") != stage) or (base_model and card.get("base_model") != base_model):
            continue
        stamp = float(card.get("time", card_path.stat().st_mtime))
        if best is None or stamp > best[0]:
            best = (stamp, card_path.parent)
    return best[1] if best else None


def resolve_init_from(model_cfg: DictConfig, output_root: str) -> str | None:
    """``latest_sft`` (or ``latest_<stage>``) -> a folder; anything else is returned as given."""
    init_from = model_cfg.get("init_from")
    if not init_from or not str(init_from).startswith(LATEST):
        return init_from
    stage = str(init_from)[len(LATEST) :]
    folder = find_latest_export(output_root, stage, base_model_id(model_cfg))
    if folder is None:
        raise FileNotFoundError(
            f"model.init_from={init_from}: no {stage.upper()} export of this base model under {output_root}. "
            f"Run `python train.py stage={stage}` first, or point model.init_from=<run dir>/model at an export."
        )
    return str(folder)


def resolve_ckpt_path(ckpt_path: str | None, output_root: str | Path, stage: str) -> str | None:
    """``last`` = last.ckpt of the newest run of this stage that has not exported yet; a run dir = its last.ckpt."""
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        candidates = []
        for ckpt in Path(output_root).glob("**/checkpoints/last.ckpt"):
            run = ckpt.parent.parent
            info = json.loads((run / RUN_INFO).read_text()) if (run / RUN_INFO).is_file() else {}
            if info.get("stage") == stage and not (run / "model" / EXPORT_CARD).is_file():
                candidates.append((ckpt.stat().st_mtime, ckpt))
        if not candidates:
            raise FileNotFoundError(
                f"ckpt_path=last: no unfinished {stage} run with checkpoints/last.ckpt under {output_root}"
            )
        return str(max(candidates)[1])
    path = Path(ckpt_path)
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: no checkpoint at {path}")
    return str(path)
