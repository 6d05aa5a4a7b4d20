"""GRPO step time and peak memory: our Lightning ``GRPOModule`` vs TRL's ``GRPOTrainer``, side by side.

    pip install -r requirements-bench.txt      # adds trl==1.16.0 (the benchmark's only extra)
    python benchmarks/grpo_vs_trl.py --B 2 --G 4 --max-new-tokens 64 --steps 12 --rounds 2

Same on both sides: the tiny Qwen2.5-VL (float32, sdpa, full fine-tuning), the SynthFACS train faces in the same order
(no shuffling) with the same prompt text (``--prompt``, default ``full_v1``, rendered by the project's template
through the same chat template), B prompts x G completions per step, max completion length, temperature 1, top-p 1,
vision tokens suppressed while sampling, the reward (the components of the project's default reward config
``au_acc_format`` with their weights: our components wrapped as TRL reward functions), group-std advantages,
beta 0.04 with the k3 KL (unclamped on our side, as TRL), eps 0.2, one update per rollout batch (mu = 1), the loss
aggregation (``--loss``, default ``grpo``), AdamW with a constant learning rate, no weight decay, gradient clipping at 1,
no gradient checkpointing, no mixed precision. TRL's batch size counts completions (B x G, a multiple of G).

Timing: each side runs in its own subprocess (so peak RSS does not mix), alternating ours / TRL / ours / TRL for
``--rounds`` rounds. A callback records the wall time of every optimizer step (Lightning:
``on_train_batch_start`` -> ``on_train_batch_end``; TRL: ``on_step_begin`` -> ``on_step_end``), which covers
rollout, rewards, reference and policy log-probs, backward and the optimizer step. The first 2 steps of every run are
warm-up and dropped; the kept steps of all rounds are pooled. Peak memory is the subprocess's ``ru_maxrss``
(libraries included: ~0.35 GB of it is torch + transformers). Completion tokens/step counts the completion tokens up
to and including the stop token (lengths vary: the random language model stops whenever it samples a stop token).

The last line is ``grpo_step_time_ratio_vs_trl=<our median step time / TRL's median step time>``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# common first: it pins the thread environment before torch is imported
from common import (
    REPO,
    machine_header,
    markdown_table,
    median,
    percentile,
    pin_threads,
    synth_prompts,
    tiny_folder,
    trl_grpo_settings,
    trl_prompt_dataset,
)

WARMUP_STEPS = 2
RESULT_TAG = "BENCH_RESULT "


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--B", type=int, default=2, help="prompts per step")
    p.add_argument("--G", type=int, default=4, help="completions per prompt")
    p.add_argument("--max-new-tokens", type=int, default=64, help="max completion length")
    p.add_argument("--steps", type=int, default=12, help="optimizer steps per run (the first 2 are warm-up)")
    p.add_argument("--rounds", type=int, default=2, help="alternating ours/TRL subprocess pairs")
    p.add_argument("--beta", type=float, default=0.04, help="KL coefficient (TRL's default is 0)")
    p.add_argument("--loss", default="grpo", help="loss aggregation: grpo | bnpo | dr_grpo | dapo")
    p.add_argument("--lr", type=float, default=3e-4, help="constant learning rate (conf/stage/grpo.yaml)")
    p.add_argument("--prompt", default="full_v1", help="prompt template (conf/prompt/<name>.yaml)")
    p.add_argument("--reward", default="au_acc_format", help="reward config (conf/reward/<name>.yaml)")
    p.add_argument(
        "--cache-dir", default=None, help="where the tiny model is built (default: the project cache)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared 2-core machine)")
    p.add_argument("--quick", action="store_true", help="smoke run: B=1, G=2, 4 tokens, 3 steps, 1 round")
    p.add_argument("--worker", choices=["ours", "trl"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.B, args.G, args.max_new_tokens, args.steps, args.rounds = 1, 2, 4, WARMUP_STEPS + 1, 1
    return args


# ---------------------------------------------------------------------------------------------- shared set-up
def compose_config(args: argparse.Namespace):
    """The project's own ``train.yaml`` with ``stage=grpo`` and the benchmark's settings, validated."""
    from hydra import compose, initialize_config_dir

    from facial_r1.training.checks import check_train_config

    overrides = [
        "stage=grpo",
        f"prompt={args.prompt}",
        f"reward={args.reward}",
        "logger=none",
        f"trainer.max_steps={args.steps}",
        f"stage.prompts_per_step={args.B}",
        "stage.micro_batch_size=null",
        f"stage.lr={args.lr}",
        "stage.scheduler=constant",
        "stage.warmup_steps=0",
        "stage.weight_decay=0.0",
        f"stage.objective.num_generations={args.G}",
        f"stage.objective.max_completion_length={args.max_new_tokens}",
        f"stage.objective.beta={args.beta}",
        "stage.objective.kl_estimator=k3",
        "stage.objective.kl_clamp=null",  # TRL's k3 is unclamped
        f"stage.objective.loss_aggregation={args.loss}",
        "stage.objective.advantage_scale=group",
        "stage.objective.eps_low=0.2",
        "stage.objective.eps_high=0.2",
        "stage.objective.num_iterations=1",
        "stage.objective.temperature=1.0",
        "stage.objective.top_p=1.0",
        "stage.objective.zero_std=keep",
        "stage.objective.mask_truncated=false",
        "stage.objective.max_grad_norm=1.0",
        "stage.eval.every_n_steps=0",
        "stage.log_completions_every_n_steps=0",
    ]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    check_train_config(cfg)
    return cfg


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def worker(args: argparse.Namespace) -> dict[str, Any]:
    threads = pin_threads(args.threads)
    from hydra.utils import instantiate

    cfg = compose_config(args)
    folder = tiny_folder(args.cache_dir, quick=args.quick)
    prompt, reward = instantiate(cfg.prompt), instantiate(cfg.reward)
    data = synth_prompts(args.B * args.steps, args.prompt)  # step k uses prompts k*B .. k*B + B - 1
    run = run_ours if args.worker == "ours" else run_trl
    times, tokens = run(args, cfg, folder, prompt, reward, data)
    return {
        "side": args.worker,
        "threads": threads,
        "step_s": times,
        "tokens": tokens,
        "peak_rss_mb": peak_rss_mb(),
    }


# ---------------------------------------------------------------------------------------------- ours
def run_ours(args, cfg, folder, prompt, reward, data) -> tuple[list[float], list[float]]:
    import lightning as L
    from hydra.utils import instantiate
    from torch.utils.data import DataLoader

    from facial_r1.training.grpo import GRPOModule

    class StepTimer(L.Callback):
        def __init__(self):
            self.times: list[float] = []
            self.tokens: list[float] = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.times.append(time.perf_counter() - self.start)
            # GRPOModule keeps the step's metrics, among them the mean completion length (stop token included)
            # of its B x G completions (callback_metrics only has what goes through self.log)
            mean_len = float(pl_module.last_step_logs.get("train/completion/length", float("nan")))
            self.tokens.append(mean_len * args.B * args.G)

    L.seed_everything(int(cfg.seed), verbose=False)
    adapter = instantiate(cfg.model, path=str(folder), init_from=None)
    records = data.records
    module = instantiate(cfg.stage.module)(
        adapter=adapter, prompt=prompt, stage=cfg.stage, reward=reward, resample_records=records
    )
    assert isinstance(module, GRPOModule), cfg.stage.module._target_
    # The rollout batches in TRL's order (no shuffling): one batch of B records + images per step.
    batches = [
        {"records": records[k : k + args.B], "images": data.images[k : k + args.B]}
        for k in range(0, len(records), args.B)
    ]
    loader = DataLoader(batches, batch_size=None, shuffle=False)
    timer = StepTimer()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision="32-true",
        max_steps=args.steps,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[timer],
    )
    trainer.fit(module, train_dataloaders=loader)
    return timer.times, timer.tokens


# ---------------------------------------------------------------------------------------------- TRL
def trl_reward_funcs(reward, records: list[dict[str, Any]], token_log: list[int]) -> tuple[list, list[float]]:
    """Each component of our ``CompositeReward`` as a TRL reward function (same scores, same weights, None = n/a)."""

    def wrap(name, component, first: bool):
        def reward_func(prompts, completions, completion_ids, idx, **_):
            if first:  # once per step: completion tokens up to and including the stop token
                token_log.append(sum(len(ids) for ids in completion_ids))
            texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
            return component(texts, [records[i] for i in idx])

        reward_func.__name__ = name
        return reward_func

    names = list(reward.components)
    funcs = [wrap(n, reward.components[n], i == 0) for i, n in enumerate(names)]
    return funcs, [reward.weight(n) for n in names]


def run_trl(args, cfg, folder, prompt, reward, data) -> tuple[list[float], list[int]]:
    from transformers import AutoModelForImageTextToText, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from facial_r1.models.processor import load_processor
    from facial_r1.models.qwen2_5_vl import VISION_TOKENS

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_begin(self, targs, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, targs, state, control, **kwargs):
            self.times.append(time.perf_counter() - self.start)

    processor = load_processor(folder)
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(
        folder, dtype="float32", attn_implementation=str(cfg.model.attn_implementation)
    )
    token_log: list[int] = []
    funcs, weights = trl_reward_funcs(reward, data.records, token_log)
    dataset = trl_prompt_dataset(data)
    timer = StepTimer()
    with tempfile.TemporaryDirectory(prefix="grpo_vs_trl-") as out:
        targs = GRPOConfig(
            output_dir=out,
            **trl_grpo_settings(cfg, num_generations=args.G, steps=args.steps, seed=int(cfg.seed)),
            use_cpu=True,
            bf16=False,
            fp16=False,
            gradient_checkpointing=False,
            per_device_train_batch_size=args.B * args.G,  # counts completions
            gradient_accumulation_steps=1,
            max_completion_length=int(cfg.stage.objective.max_completion_length),
            reward_weights=weights,
            generation_kwargs={
                "suppress_tokens": processor.tokenizer.convert_tokens_to_ids(list(VISION_TOKENS))
            },
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=funcs,
            args=targs,
            train_dataset=dataset,
            processing_class=processor,
            callbacks=[timer],
        )
        trainer.train()
    return timer.times, token_log


# ---------------------------------------------------------------------------------------------- parent
def spawn(side: str, argv: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--worker", side]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
    raise RuntimeError(f"the {side} worker failed (exit code {proc.returncode}); its output is above")


def main(argv: list[str] | None = None) -> float:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.worker:
        print(RESULT_TAG + json.dumps(worker(args)), flush=True)
        return 0.0
    if importlib.util.find_spec("trl") is None:
        sys.exit("trl is not installed: pip install -r requirements-bench.txt")
    threads = pin_threads(args.threads)
    folder = tiny_folder(args.cache_dir, quick=args.quick)  # built here once, not raced by the workers
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "trl": []}
    for _ in range(args.rounds):  # ours / TRL / ours / TRL: background load drifts over both alike
        for side in ("ours", "trl"):
            runs[side].append(spawn(side, argv))

    label = {"ours": "ours (Lightning GRPOModule)", "trl": "TRL GRPOTrainer"}
    rows, med = [], {}
    for side, results in runs.items():
        kept = [t for res in results for t in res["step_s"][WARMUP_STEPS:]]
        tokens = [n for res in results for n in res["tokens"][WARMUP_STEPS:]]
        med[side] = median(kept)
        peak = max(res["peak_rss_mb"] for res in results)
        rows.append(
            [
                label[side],
                len(kept),
                med[side],
                percentile(kept, 90),
                peak,
                median([float(n) for n in tokens]),
                1e3 * med[side] / max(median([float(n) for n in tokens]), 1.0),
            ]
        )
    ratio = med["ours"] / med["trl"]
    print(machine_header(threads))
    print(
        f"model: tiny Qwen2.5-VL float32 ({folder.name}); prompt: {args.prompt}; reward: {args.reward}; "
        f"B={args.B} prompts x G={args.G}, max {args.max_new_tokens} new tokens, beta={args.beta}, "
        f"loss={args.loss}, lr={args.lr}; {args.steps} steps per run, first {WARMUP_STEPS} dropped, "
        f"{args.rounds} round(s) alternating subprocesses"
    )
    print()
    print(
        markdown_table(
            [
                "trainer",
                "steps kept",
                "median step s",
                "p90 step s",
                "peak RSS MB",
                "completion tok/step",
                "ms per completion tok",
            ],
            rows,
        )
    )
    print()
    print(f"grpo_step_time_ratio_vs_trl={ratio:.2f}")
    return ratio


if __name__ == "__main__":
    main()
