"""notebooks/analysis.ipynb: stored without outputs, and runs top to bottom headless on a tiny SFT run plus a tiny
zero-shot evaluation (``FACIAL_R1_RUNS`` points it at their folders)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "analysis.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code"
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]
    assert "FACIAL_R1_RUNS" in "".join(c.source for c in code)


@pytest.fixture(scope="module")
def tiny_eval_run(tmp_path_factory, tiny_model_dir, subprocess_env) -> Path:
    """One ``python evaluate.py +experiment=zero_shot`` run on 8 test faces (the untrained tiny model)."""
    output_root = tmp_path_factory.mktemp("eval_outputs")
    args = ["+experiment=zero_shot", "dataset.n_train=64", "dataset.n_val=8", "dataset.n_test=8",
            "dataset.progress=false", "model.tiny.warm_start_steps=0", "limit=8", "max_new_tokens=48",
            "logger=csv"]  # fmt: skip
    proc = subprocess.run([sys.executable, "evaluate.py", *args], cwd=REPO, env=subprocess_env(output_root),
                          capture_output=True, text=True, timeout=240)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = list((output_root / "evaluate").glob("*_zero_shot"))
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.slow
def test_notebook_runs_headless_on_tiny_runs(
    tiny_sft_run, tiny_eval_run, subprocess_env, tmp_path, monkeypatch
):
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    env = subprocess_env(tmp_path, FACIAL_R1_RUNS=os.pathsep.join([str(tiny_sft_run), str(tiny_eval_run)]))
    for key, value in env.items():  # the kernel inherits this process's environment
        monkeypatch.setenv(key, value)
    NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "2 runs under" in text
    rich = [o.get("data", {}) for o in outputs if o.output_type in ("display_data", "execute_result")]
    markdown = "".join(d.get("text/markdown", "") for d in rich)
    assert "## Mean ± std over seeds" in markdown and "| zero_shot | zero-shot |" in markdown
    assert (
        sum("image/png" in d for d in rich) >= 5
    )  # ablation bars, curves, per-AU F1, two confusion matrices
    examples = "".join(d.get("text/html", "") for d in rich if "<table><tr><td>" in d.get("text/html", ""))
    assert examples.count('<img src="data:image/') >= 1 and "image not found" not in examples
