"""Fixtures for the vLLM engine tests (run in .venv-vllm; see docs/vllm.md): one engine and one HF adapter on the
tiny model for the whole session, and prompts built the way the adapter builds them.

(The folder is not called ``tests/vllm``: pytest puts ``tests/`` on ``sys.path``, where a ``vllm`` folder would be
importable as a namespace package named ``vllm`` wherever the real one is missing.)

The ``hf`` reference is the project's adapter (``Qwen25VLAdapter``), which picks the KV-cache keyword of the
installed transformers (``cache=`` on 5.2x, ``past_key_values=`` on the 5.19 vLLM pins).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

os.environ.setdefault(
    "OMP_NUM_THREADS", "1"
)  # one vLLM thread: on 2 busy cores more threads are 8-40x slower

TEXTS = [
    "What emotion is shown?",
    "Describe the face.",
    "Which action units are active in this face? Answer in <think> and <answer>.",
    "Emotion?",
    "Is this person happy or sad?",
    "Look at the brows and the mouth, then name the emotion.",
]


def chat_text(adapter, text: str) -> str:
    """The chat-formatted prompt the adapter tokenises in ``encode_prompts`` (image, then the text)."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    return adapter.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@pytest.fixture(scope="session")
def hf_adapter(make_adapter):
    return make_adapter()


@pytest.fixture(scope="session")
def to_chat_text(hf_adapter):
    return functools.partial(chat_text, hf_adapter)


@pytest.fixture(scope="session")
def engine(tiny_model_dir: Path):
    from facial_r1.rollout.vllm_engine import VLLMEngine

    return VLLMEngine(str(tiny_model_dir), max_model_len=2048, kv_cache_gib=0.25)


@pytest.fixture(scope="session")
def prompt_set(hf_adapter, face_samples):
    """(RolloutPrompts, the adapter's PromptBatch) for the six mixed-size faces and ``TEXTS``."""
    from facial_r1.rollout.types import RolloutPrompt

    images = [image for image, _ in face_samples]
    prompts = [RolloutPrompt(chat_text(hf_adapter, t), im) for t, im in zip(TEXTS, images, strict=True)]
    return prompts, hf_adapter.encode_prompts(images, TEXTS)
