"""The vLLM plugin: nothing happens when facial_r1 is imported; when vLLM calls it, the patches are in place."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_importing_the_engine_and_plugin_changes_nothing():
    # A fresh interpreter: this session may already have loaded the plugin through vLLM.
    code = (
        "import sys; before = list(sys.meta_path);"
        "import facial_r1.rollout.vllm_plugin, facial_r1.rollout.vllm_engine;"
        "assert sys.meta_path == before, sys.meta_path;"
        "assert 'vllm' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.vllm
def test_register_patches_vllm_for_a_torchvision_free_environment():
    pytest.importorskip("vllm")
    import importlib.util

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed: the plugin leaves vLLM alone")
    from facial_r1.rollout import vllm_plugin

    vllm_plugin.register()
    vllm_plugin.register()  # idempotent
    assert sum(isinstance(f, vllm_plugin._PilAliasFinder) for f in sys.meta_path) == 1
    from transformers.models.qwen2_vl import image_processing_pil_qwen2_vl as pil
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize
    from vllm.model_executor.models import qwen2_5_vl, qwen3_vl

    assert smart_resize is pil.smart_resize
    # every family's processor (each family file's vllm_processor), no list in the plugin
    assert qwen2_5_vl.Qwen2_5_VLProcessor.__name__ == "VLLMImageOnlyQwen2_5_VLProcessor"
    assert qwen3_vl.Qwen3VLProcessor.__name__ == "VLLMImageOnlyQwen3VLProcessor"
    with pytest.raises(NotImplementedError, match="images only"):
        vllm_plugin.NoVideoProcessor()()
