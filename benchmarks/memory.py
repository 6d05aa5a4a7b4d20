"""Peak memory of the completion log-prob pass at real widths: ours vs the previous full-logits path, one run.

The model is the published Qwen2.5-VL-3B widths at reduced depth (``facial_r1.models.reduced``: vocabulary 151,936,
text 2048 wide, vision 1280 wide; 2 text layers, 4 vision blocks), held in bf16. One face with a ~2k-token prompt
and G completions of T tokens are scored without gradients - what the reference and old-policy passes do every
GRPO step. Each configuration runs in its own subprocess; its peak is the rise of the process's peak RSS (VmHWM,
reset after the model is loaded) over the RSS at the start of the pass, so the model itself is not counted.

- ``baseline``: the previous code path - prompt + completion re-forwarded for all G rows at once, logits over every
  position, vision tokens masked by ``index_fill`` (a copy of the [G, P + T, V] logits);
- ``ours full``: ``completion_logprobs(micro_batch_size=2)`` on the full re-forward path (activation checkpointing
  on, as in every real preset): logits only at the T completion positions, 2 rows at a time;
- ``ours shared``: the same with the prompt prefilled once and the KV cache shared by the G rows (no checkpointing).

    python benchmarks/memory.py --G 8 --prompt-tokens 2048 --completion-tokens 64
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from common import default_cache_dir, machine_header, markdown_table, pin_threads  # noqa: E402

VOCAB = 151936


def _status_gib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _reset_peak() -> float:
    """Reset the peak RSS to the current RSS (Linux: ``clear_refs`` 5) and return it, in GiB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_gib("VmRSS")


def _inputs(adapter, args):
    from facial_r1.data.synthfaces import render_sample

    image, _ = render_sample(0, "train", 0)
    filler = "Describe the face in detail. " * 400
    text = adapter.tokenizer.decode(adapter.tokenizer(filler)["input_ids"][: args.prompt_tokens])
    batch = adapter.encode_prompts([image], [text])
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, adapter.vocab_limit, (args.G, args.completion_tokens), generator=gen)
    ids[torch.isin(ids, torch.tensor(adapter.suppress_ids))] = 0
    return batch, ids, torch.zeros(args.G, dtype=torch.long)


def _baseline(adapter, batch, ids, index):
    """The log-prob pass before completion-only logits (kept here as the comparison)."""
    from facial_r1.models.logprobs import token_logprobs_from_logits
    from facial_r1.models.qwen2_5_vl import expand_prompt_inputs

    rows = expand_prompt_inputs(batch.inputs, index)
    P, T = rows["input_ids"].shape[1], ids.shape[1]
    full = {
        "input_ids": torch.cat([rows["input_ids"], ids], dim=1),
        "attention_mask": torch.cat([rows["attention_mask"], torch.ones_like(ids)], dim=1),
        "mm_token_type_ids": torch.cat([rows["mm_token_type_ids"], torch.zeros_like(ids)], dim=1),
        "pixel_values": rows["pixel_values"],
        "image_grid_thw": rows["image_grid_thw"],
    }
    full["position_ids"] = adapter.family.position_ids(adapter.base_model, full)
    logits = adapter.model(**full, use_cache=False).logits[:, P - 1 : P - 1 + T]
    logits = logits.index_fill(-1, torch.tensor(adapter.suppress_ids), -1e4)
    return token_logprobs_from_logits(logits, ids)


def worker(args) -> None:
    from facial_r1.models.qwen2_5_vl import Qwen25VLAdapter  # a Policy over the Qwen2.5-VL family

    pin_threads()
    adapter = Qwen25VLAdapter(
        path=args.folder, dtype="bfloat16", activation_checkpointing=args.config != "ours shared"
    )
    adapter.model.eval()
    batch, ids, index = _inputs(adapter, args)
    with (
        torch.no_grad()
    ):  # page in every weight (safetensors are memory-mapped) so the pass counts only itself
        sum(float(p.float().sum()) for p in adapter.model.parameters())
    before = _reset_peak()
    start = time.perf_counter()
    with torch.no_grad():
        if args.config == "baseline":
            logp = _baseline(adapter, batch, ids, index)
        else:
            logp, _ = adapter.completion_logprobs(batch, ids, index, micro_batch_size=args.micro_batch_size)
    seconds = time.perf_counter() - start
    P, T = batch.inputs["input_ids"].shape[1], ids.shape[1]
    # bf16 logits held at once: baseline = all G rows over P + T positions + index_fill's [G, T, V] copy
    positions = args.G * (P + T) + args.G * T if args.config == "baseline" else args.micro_batch_size * T
    print(
        json.dumps(
            {
                "config": args.config,
                "prompt_tokens": int(P),
                "peak_gib": _status_gib("VmHWM") - before,
                "logits_gib": positions * VOCAB * 2 / 2**30,
                "seconds": seconds,
                "finite": bool(torch.isfinite(logp).all()),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--G", type=int, default=8)
    parser.add_argument("--prompt-tokens", type=int, default=2048)
    parser.add_argument("--completion-tokens", type=int, default=64)
    parser.add_argument("--micro-batch-size", type=int, default=2)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: G 2, 256-token prompt, 8 new tokens"
    )
    parser.add_argument("--folder", help="a reduced-depth model folder (built into the cache when absent)")
    parser.add_argument("--config", help=argparse.SUPPRESS)  # worker mode
    args = parser.parse_args()
    if args.quick:
        args.G, args.prompt_tokens, args.completion_tokens = 2, 256, 8
    if args.config:
        return worker(args)
    if not args.folder:
        from facial_r1.models.reduced import build_reduced_model
        from facial_r1.models.tiny import TinySpec, tiny_model_path

        folder = Path(default_cache_dir()) / "reduced_models" / "qwen2_5_vl_3b_l2_v4"
        if not (folder / "config.json").is_file():
            tokenizer_dir = tiny_model_path(default_cache_dir(), TinySpec(warm_start_steps=0))
            build_reduced_model(folder, tokenizer_dir=tokenizer_dir)
        args.folder = str(folder)
    results = []
    for config in ("baseline", "ours full", "ours shared"):
        cmd = [sys.executable, __file__, "--config", config, "--folder", args.folder, "--G", str(args.G),
               "--prompt-tokens", str(args.prompt_tokens), "--completion-tokens", str(args.completion_tokens),
               "--micro-batch-size", str(args.micro_batch_size)]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        results.append(json.loads(out))
    print(machine_header(torch.get_num_threads()))
    print(f"Qwen2.5-VL-3B widths, 2 text layers, 4 vision blocks, bf16; G={args.G}, T={args.completion_tokens}, "
          f"micro-batch {args.micro_batch_size}; no-grad log-prob pass (reference / old policy)")  # fmt: skip
    headers = ["path", "prompt tok", "logits GiB (arithmetic)", "peak GiB over model", "s", "finite"]
    rows = [
        [r["config"], r["prompt_tokens"], r["logits_gib"], r["peak_gib"], r["seconds"], r["finite"]]
        for r in results
    ]
    print(markdown_table(headers, rows))
    base, ours = results[0]["peak_gib"], results[1]["peak_gib"]
    print(f"logprob_peak_memory_ratio={ours / base if base > 0 else float('nan'):.3f}")


if __name__ == "__main__":
    main()
