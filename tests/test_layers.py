"""Package boundaries: models know nothing of GRPO or training; evaluation and synthesis nothing of training."""

from __future__ import annotations

import subprocess
import sys

import pytest

CASES = {
    "facial_r1.models.policy facial_r1.models.qwen2_5_vl facial_r1.rollout.hf": (
        "facial_r1.grpo",
        "facial_r1.training",
    ),
    "facial_r1.evaluation.cli facial_r1.evaluation.runner facial_r1.synthesis.run facial_r1.synthesis.engine": (
        "facial_r1.training",
    ),
}


@pytest.mark.parametrize(("modules", "forbidden"), CASES.items(), ids=["models", "evaluation+synthesis"])
def test_imports_stay_inside_their_layer(modules, forbidden):
    code = (
        "import importlib, sys\n"
        f"for m in {modules.split()!r}: importlib.import_module(m)\n"
        f"print(sorted(m for m in sys.modules if m.startswith({forbidden!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
