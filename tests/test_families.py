"""Model families are found by model_type, with no list to extend: a new family is its own file, config and test."""

from __future__ import annotations

import sys
import types

import pytest

from facial_r1.models.families import family_class, family_names
from facial_r1.models.qwen2_5_vl import Qwen25VLFamily
from facial_r1.models.qwen3_vl import Qwen3VLFamily


def test_the_families_in_the_package_are_found_by_their_model_type():
    assert {"qwen2_5_vl", "qwen3_vl"} <= set(family_names())  # a new family adds itself, not a line here
    assert family_class("qwen2_5_vl") is Qwen25VLFamily
    assert family_class("qwen3_vl") is Qwen3VLFamily
    for name in family_names():
        assert family_class(name).model_type == name  # the file name is the config.json model_type


def test_an_unknown_family_names_the_known_ones():
    with pytest.raises(ValueError, match="'llava_next'.*qwen2_5_vl, qwen3_vl"):
        family_class("llava_next")
    from facial_r1.models.tiny import TinySpec

    with pytest.raises(ValueError, match=r"model\.tiny\.family='llava_next'.*qwen3_vl"):
        TinySpec(family="llava_next")


def test_a_third_family_needs_no_entry_in_the_tiny_or_reduced_builders(monkeypatch, tmp_path):
    """A family module the builders have never heard of: TinySpec accepts it and the tiny build calls its
    ``tiny_architecture`` (here Qwen2.5-VL's, recorded), and the reduced build its ``reduced_architecture``."""
    calls = []

    class ToyFamily(Qwen25VLFamily):
        model_type = "toy_vl"

        @staticmethod
        def tiny_architecture(spec, text_config, vision_config, token_ids):
            calls.append(("tiny", text_config["hidden_size"]))
            return Qwen25VLFamily.tiny_architecture(spec, text_config, vision_config, token_ids)

        @staticmethod
        def reduced_architecture(config, text_layers, vision_depth):
            calls.append(("reduced", text_layers))
            return Qwen25VLFamily.reduced_architecture(config, text_layers, vision_depth)

    module = types.ModuleType("facial_r1.models.toy_vl")
    module.FAMILY = ToyFamily
    monkeypatch.setitem(sys.modules, "facial_r1.models.toy_vl", module)

    from facial_r1.models import reduced
    from facial_r1.models.tiny import TinySpec, build_tiny_model

    spec = TinySpec(family="toy_vl", warm_start_steps=0, corpus_size=50, vocab_size=400)
    build_tiny_model(tmp_path / "tiny", spec)
    assert calls == [("tiny", spec.hidden_size)]
    assert (tmp_path / "tiny" / "config.json").is_file()

    config = reduced.published_config("qwen2_5_vl_3b")
    config["model_type"] = "toy_vl"
    monkeypatch.setattr(reduced, "published_config", lambda arch: config)

    # A real-width build writes ~1 GB; the family lookup happens before the weights: stop at model construction.
    class Stop(Exception):
        pass

    def stop(seed):
        raise Stop

    monkeypatch.setattr(reduced.torch, "manual_seed", stop)
    with pytest.raises(Stop):
        reduced.build_reduced_model(tmp_path / "reduced", tokenizer_dir=tmp_path / "tiny", text_layers=1)
    assert calls[-1] == ("reduced", 1)


def test_every_family_declares_what_the_vllm_plugin_substitutes():
    from facial_r1.rollout.vllm_plugin import processor_substitutions

    subs = processor_substitutions()
    assert {
        ("vllm.model_executor.models.qwen2_5_vl", "Qwen2_5_VLProcessor"),
        ("vllm.model_executor.models.qwen3_vl", "Qwen3VLProcessor"),
    } <= set(subs)
    for cls in subs.values():
        assert cls.__name__.startswith("VLLMImageOnly")
    assert issubclass(
        subs[("vllm.model_executor.models.qwen3_vl", "Qwen3VLProcessor")], Qwen3VLFamily.image_only_processor
    )


def test_a_family_file_whose_class_keeps_its_parents_model_type_is_refused(monkeypatch):
    class Forgetful(Qwen25VLFamily):  # model_type not set: would build and load as Qwen2.5-VL
        pass

    module = types.ModuleType("facial_r1.models.forgetful_vl")
    module.FAMILY = Forgetful
    monkeypatch.setitem(sys.modules, "facial_r1.models.forgetful_vl", module)
    with pytest.raises(ValueError, match="model_type='qwen2_5_vl'; the file name says 'forgetful_vl'"):
        family_class("forgetful_vl")
