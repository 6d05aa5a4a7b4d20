"""Shared test setup: one thread per process, offline hubs and W&B, and session fixtures around the tiny model.

The tiny model (random vision tower: ``warm_start_steps=0``, built in well under a second) is written once per test
session (per xdist worker: ``pytest`` runs one per core) into a temporary cache; ``make_adapter`` loads it through
the same adapter a real checkpoint folder uses. Subprocess runs of ``train.py`` point ``FACIAL_R1_CACHE`` at the same
cache (``tiny_cache``), so they reuse the build and the rendered SynthFACS splits instead of rebuilding them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# Set before anything imports transformers / wandb / tokenizers (pytest imports conftest first).
for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_key, _value)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pyproject's addopts): one worker per core this process may use, at most 8.

    Every process here runs one torch thread, so a serial run leaves all but one core idle (the suite's wall time
    is its CPU time). The cores come from the affinity mask, not the host's count, which a container may exceed.
    Past ~8 workers the suite is bound by its longest tests (~3 min each) and every worker renders its own caches.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 8))


def pytest_configure(config: pytest.Config) -> None:
    # The test machine has 2 shared cores: PyTorch's default thread pool oversubscribes them and makes the tiny
    # model ~20x slower. Subprocesses get OMP_NUM_THREADS=1 from ``subprocess_env``.
    import torch

    torch.set_num_threads(1)
    # As the entry points do before Hydra composes (tests compose train.yaml with its hydra node).
    from facial_r1.runtime import register_resolvers

    register_resolvers()


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide ``paths.cache_dir``: the tiny model build and rendered SynthFACS splits land here."""
    return tmp_path_factory.mktemp("facial_r1_cache")


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_cache: Path) -> Path:
    """Hugging Face folder of the tiny Qwen2.5-VL with a random vision tower (same spec as ``model=tiny
    model.tiny.warm_start_steps=0``, so ``train.py`` runs with ``FACIAL_R1_CACHE=tiny_cache`` find it built)."""
    from facial_r1.models.tiny import TinySpec, tiny_model_path

    return tiny_model_path(tiny_cache, TinySpec(warm_start_steps=0))


@pytest.fixture(scope="session")
def make_adapter(tiny_model_dir: Path) -> Callable[..., object]:
    """Factory: ``make_adapter(lora={...}, reference="frozen_copy", ...)`` -> a fresh ``Qwen25VLAdapter``."""
    from facial_r1.models.qwen2_5_vl import Qwen25VLAdapter

    def make(**kwargs) -> Qwen25VLAdapter:
        kwargs.setdefault("dtype", "float32")
        return Qwen25VLAdapter(path=str(tiny_model_dir), **kwargs)

    return make


@pytest.fixture(scope="session")
def face_samples() -> list[tuple[object, dict]]:
    """Six SynthFACS (PIL image, record) pairs of MIXED sizes: 112x112, 112x140, 140x112 (W x H), ..."""
    from facial_r1.data.synthfaces import render_sample

    sizes = [None, (112, 140), (140, 112), None, (140, 112), (112, 140)]
    samples = []
    for i, size in enumerate(sizes):
        image, record = render_sample(i, "train", 0)
        samples.append((image.resize(size) if size else image, record))
    return samples


@pytest.fixture(scope="session")
def subprocess_env(tiny_cache: Path) -> Callable[..., dict[str, str]]:
    """Environment for ``python train.py`` subprocesses: one thread, offline, the session cache."""

    def env(output_root: Path, **extra: str) -> dict[str, str]:
        out = dict(os.environ)
        out.update(
            OMP_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            HF_HUB_OFFLINE="1",
            WANDB_MODE="offline",
            WANDB_SILENT="true",
            TOKENIZERS_PARALLELISM="false",
            HYDRA_FULL_ERROR="1",
            FACIAL_R1_OUTPUT_ROOT=str(output_root),
            FACIAL_R1_CACHE=str(tiny_cache),
        )
        out.update(extra)
        return out

    return env


REPO = Path(__file__).resolve().parents[1]

# Six steps of SFT on the tiny model (random vision tower): every output of a run, in ~20 s on 2 cores. The resume
# test kills a run with the same arguments mid-way and checks the resumed run ends with the same weights.
TINY_TRAIN_ARGS = (
    "debug=fast",
    "dataset.n_train=64",
    "dataset.n_val=8",
    "dataset.n_test=8",
    "dataset.progress=false",
    "model.tiny.warm_start_steps=0",
    "stage.num_samples=32",
    "stage.batch_size=8",
    "stage.warmup_steps=0",
    "trainer.max_steps=6",
    "trainer.enable_progress_bar=false",
    "callbacks.model_checkpoint.every_n_train_steps=2",
    # Greedy validation right after each checkpoint (steps 2, 4, 6) is the window in which the resume test kills.
    "stage.eval.every_n_steps=2",
    "stage.eval.num_samples=8",
    "stage.eval.max_new_tokens=128",
)


def run_train(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    """``python train.py *args`` in the repo root; raises with the output tail on a non-zero exit."""
    proc = subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"train.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def tiny_sft_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, subprocess_env) -> Path:
    """The run folder of one tiny end-to-end ``python train.py`` SFT run with ``logger=wandb`` (offline W&B + CSV).

    Shared by the end-to-end output checks (test_sft) and the W&B checks (test_wandb): one subprocess for both.
    """
    output_root = tmp_path_factory.mktemp("e2e_outputs")
    run_train([*TINY_TRAIN_ARGS, "logger=wandb"], subprocess_env(output_root))
    runs = sorted((output_root / "train").glob("*_sft"))
    assert len(runs) == 1, runs
    return runs[0]
