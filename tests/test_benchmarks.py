"""Smoke runs of the benchmark scripts: they run end to end and close with their one-line result.

Numbers are never asserted (performance is measured side by side in ``benchmarks/``, not in timed tests); ``--quick``
shrinks every size so a run takes seconds. trl is only checked for, never imported here.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def run_quick(script: str, timeout: int, flag: str = "--quick") -> list[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), flag],
        capture_output=True,
        text=True,
        env=env,
        cwd=BENCH.parent,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [line for line in proc.stdout.splitlines() if line.strip()]


def test_rollout_quick_prints_table_and_speedup():
    lines = run_quick("rollout.py", timeout=300)
    assert re.fullmatch(r"rollout_speedup=\d+\.\d{2}", lines[-1]), lines[-1]
    assert any("torch.get_num_threads()=1" in line for line in lines)
    rows = [line for line in lines if line.startswith("|")]
    assert any("ours" in r for r in rows) and any("HF generate" in r for r in rows), rows
    # the vLLM row runs where vllm imports (its own environment) and says it was skipped elsewhere
    if importlib.util.find_spec("vllm") is None:
        assert lines[-2] == "rollout_speedup_vs_vllm=skipped", lines[-3:]
        assert any(line.startswith("vLLM row skipped: vllm is not installed") for line in lines)
    else:
        assert re.fullmatch(r"rollout_speedup_vs_vllm=\d+\.\d{2}", lines[-2]), lines[-2]
        assert any("vLLM (VLLMEngine)" in r for r in rows), rows


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("trl") is None, reason="trl not installed (requirements-bench.txt)"
)
def test_grpo_vs_trl_quick_prints_table_and_ratio():
    lines = run_quick("grpo_vs_trl.py", timeout=600)
    assert re.fullmatch(r"grpo_step_time_ratio_vs_trl=\d+\.\d{2}", lines[-1]), lines[-1]
    rows = [line for line in lines if line.startswith("|")]
    assert any("ours" in r for r in rows) and any("TRL" in r for r in rows), rows


@pytest.mark.slow
def test_memory_quick_prints_table_and_ratio():
    """Builds the reduced-depth real-width model into the cache on first use (~20 s)."""
    lines = run_quick("memory.py", timeout=600)
    assert re.fullmatch(r"logprob_peak_memory_ratio=\d+\.\d{3}", lines[-1]), lines[-1]
    rows = [line for line in lines if line.startswith("|")]
    assert [r.split("|")[1].strip() for r in rows[2:]] == ["baseline", "ours full", "ours shared"], rows
    assert all(r.split("|")[-2].strip() == "True" for r in rows[2:])  # finite log-probs everywhere


@pytest.mark.slow
def test_gpu_check_small_runs_every_available_row():
    """``gpu_check.py --small``: the device check's code path on the tiny model on a CPU. Our SFT and GRPO rows must
    run; the vLLM row runs where vllm imports, the TRL row where trl does; the others say why they were skipped."""
    lines = run_quick("gpu_check.py", timeout=1200, flag="--small")
    assert lines[-1] == "grpo_step_time_ratio_vllm_vs_trl=n/a", lines[-1]  # a ratio only with both on a GPU
    rows = {cells[2]: cells for cells in (line.split("|") for line in lines if line.startswith("|"))}
    rows = {k.strip(): [c.strip() for c in v] for k, v in rows.items()}
    expect = {
        "ours SFT": True,
        "ours GRPO rollout=hf": True,
        "ours GRPO rollout=vllm": importlib.util.find_spec("vllm") is not None,
        "TRL GRPO (own generate on CPU)": importlib.util.find_spec("trl") is not None,
    }
    for label, runs in expect.items():
        cells = rows[label]
        assert cells[3] == ("ok" if runs else "skipped"), cells
        if runs:
            assert int(cells[4]) >= 1 and float(cells[5]) > 0 and float(cells[8]) > 0, cells  # timed, memory
        else:
            assert "not installed" in cells[10], cells
