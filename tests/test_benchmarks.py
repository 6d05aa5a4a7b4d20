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


def run_quick(script: str, timeout: int) -> list[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick"],
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
