"""Shared set-up of the benchmarks: one thread, the tiny model folder, SynthFACS prompts, statistics, tables.

Import this module *before* torch in a benchmark script: it pins the thread count through the environment first,
because PyTorch thread oversubscription on a shared 2-core machine makes tiny models ~20x slower and turns a
comparison into noise.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

THREADS = 1
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, str(THREADS))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

import torch  # noqa: E402 - after the environment above

REPO = Path(__file__).resolve().parents[1]


def pin_threads(n: int = THREADS) -> int:
    """One intra-op and one inter-op thread (set before any parallel work); returns the count torch reports."""
    torch.set_num_threads(n)
    # Raises once set or after parallel work started; the intra-op count is what matters then.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(n)
    return torch.get_num_threads()


def default_cache_dir() -> str:
    """The project's cache (``conf/paths/default.yaml``): ``$FACIAL_R1_CACHE`` or ``~/.cache/facial_r1``."""
    return os.environ.get("FACIAL_R1_CACHE") or str(
        Path(os.environ.get("HOME", ".")) / ".cache" / "facial_r1"
    )


def tiny_folder(cache_dir: str | None = None, quick: bool = False) -> Path:
    """The embedded tiny Qwen2.5-VL folder (``conf/model/tiny.yaml``'s spec), built on first use.

    ``quick`` uses the same architecture with a random vision tower (no warm start): it builds in seconds on a cold
    cache and runs at the same speed, which is all a smoke run needs.
    """
    from facial_r1.models.tiny import TinySpec, tiny_model_path

    spec = TinySpec(warm_start_steps=0) if quick else TinySpec()
    return tiny_model_path(cache_dir or default_cache_dir(), spec)


@dataclass
class PromptSet:
    """B SynthFACS faces with their records and the user text of one prompt template."""

    images: list[Any]
    records: list[dict[str, Any]]
    texts: list[str]
    template: Any


def synth_prompts(
    n: int, prompt: str = "full_v1", split: str = "train", seed: int = 0, start: int = 0
) -> PromptSet:
    """``n`` SynthFACS samples rendered on the fly and the ``prompt`` template's text for each."""
    from facial_r1.data.prompts import load_prompts
    from facial_r1.data.synthfaces import render_sample

    template = load_prompts()[prompt]
    images, records = [], []
    for i in range(start, start + n):
        image, record = render_sample(i, split=split, seed=seed)
        images.append(image)
        records.append(record)
    return PromptSet(images, records, [template.user_text(r) for r in records], template)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def percentile(xs: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]); NaN for an empty list."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = (len(s) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain markdown table with right-aligned columns (readable as text too)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def machine_header(threads: int) -> str:
    """One line naming the machine and the settings every number below depends on."""
    import transformers

    return (
        f"machine: {platform.machine()} {os.cpu_count()}-core CPU, torch.get_num_threads()={threads}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, python {platform.python_version()}, "
        f"{datetime.datetime.now().isoformat(timespec='minutes')}"
    )


# ---------------------------------------------------------------------------------------------- the TRL baseline
def trl_grpo_settings(cfg, *, num_generations: int, steps: int, seed: int) -> dict[str, Any]:
    """``trl.GRPOConfig`` keyword arguments that mirror our GRPO stage (``cfg``: the composed train config): the same
    objective switches, learning rate and AdamW, a constant schedule, no logging or checkpoints. The batch shape,
    device, precision, generation and vLLM settings are each benchmark's own."""
    objective = cfg.stage.objective
    return {
        "report_to": "none",
        "num_generations": num_generations,
        "temperature": float(objective.temperature),
        "top_p": float(objective.top_p),
        "top_k": 0,
        "beta": float(objective.beta),
        "loss_type": str(objective.loss_aggregation),
        "epsilon": float(objective.eps_low),
        "epsilon_high": float(objective.eps_high),
        "num_iterations": int(objective.num_iterations),
        "scale_rewards": str(objective.advantage_scale),
        "mask_truncated_completions": bool(objective.mask_truncated),
        "learning_rate": float(cfg.stage.lr),
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "weight_decay": float(cfg.stage.weight_decay),
        "adam_beta1": float(cfg.stage.betas[0]),
        "adam_beta2": float(cfg.stage.betas[1]),
        "max_grad_norm": float(objective.max_grad_norm),
        "max_steps": steps,
        "shuffle_dataset": False,
        "seed": seed,
        "logging_steps": 1_000_000,
        "save_strategy": "no",
        "disable_tqdm": True,
        "log_completions": False,
        "dataloader_num_workers": 0,
        "optim": "adamw_torch",  # torch.optim.AdamW (foreach), as ours; TRL's default is the fused variant
    }


def trl_prompt_dataset(data):
    """The prompts as TRL's conversational dataset: TRL inserts the image placeholder before the text, the same chat
    as our family's ``chat_text``; ``idx`` lets the reward functions find each prompt's record."""
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": text}] for text in data.texts],
            "image": data.images,
            "idx": list(range(len(data.texts))),
        }
    )
