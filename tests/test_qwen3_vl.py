"""The Qwen3-VL family on its tiny model: build, processor, positions, prefix sharing, export, and the four entry
points end to end (``model=tiny_qwen3_vl``).

The tiny Qwen3-VL here has a random vision tower (``warm_start_steps=0``) and is built from ``conf/model/
tiny_qwen3_vl.yaml``'s spec into the session cache, so the ``train.py`` subprocesses find it built.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_train
from omegaconf import OmegaConf

from facial_r1.models.adapter import PromptBatch, SamplingParams
from facial_r1.models.policy import Policy
from facial_r1.models.qwen3_vl import ImageOnlyQwen3VLProcessor, Qwen3VLFamily
from facial_r1.models.tiny import TinySpec, cache_key, tiny_model_path

TEXTS = [
    "What emotion is shown?",
    "Cite AUs in <think>, then the emotion in <answer>, one of: anger, disgust, fear, happiness, sadness, surprise.",
    "Which face is this? Cite AUs in <think>.",
]
SAMPLED = SamplingParams(max_new_tokens=12, temperature=0.7, top_p=0.9, num_samples=3, seed=0)


def _config_spec(**overrides) -> TinySpec:
    tiny = OmegaConf.load(REPO / "conf" / "model" / "tiny_qwen3_vl.yaml").model.tiny
    return TinySpec(**{**OmegaConf.to_container(tiny), **overrides})


@pytest.fixture(scope="module")
def qwen3_dir(tiny_cache: Path) -> Path:
    """The tiny Qwen3-VL of ``model=tiny_qwen3_vl model.tiny.warm_start_steps=0``."""
    return tiny_model_path(tiny_cache, _config_spec(warm_start_steps=0))


@pytest.fixture(scope="module")
def make_policy(qwen3_dir: Path):
    def make(**kwargs) -> Policy:
        return Policy(family=Qwen3VLFamily(), path=str(qwen3_dir), dtype="float32", **kwargs)

    return make


@pytest.fixture(scope="module")
def policy(make_policy) -> Policy:
    return make_policy()


def prompts(policy: Policy, samples, n: int, offset: int = 0) -> PromptBatch:
    rows = samples[offset : offset + n]
    return policy.encode_prompts([im for im, _ in rows], TEXTS[offset : offset + n])


# --------------------------------------------------------------------------- tiny build


def test_qwen2_5_vl_cache_key_is_unchanged_by_the_family_fields():
    """The fields added with the second family stay out of Qwen2.5-VL keys at their defaults: folders built
    before them (and the README's results) keep their names."""
    texts = ["a", "b"]
    spec = json.loads(cache_key(TinySpec(warm_start_steps=0), texts))["spec"]
    assert not {"family", "processor_image_size", "deepstack_visual_indexes"} & set(spec)
    assert cache_key(TinySpec(processor_image_size=140), texts) != cache_key(TinySpec(), texts)
    qwen3 = json.loads(cache_key(_config_spec(), texts))["spec"]
    assert qwen3["family"] == "qwen3_vl" and qwen3["deepstack_visual_indexes"] == [0]


def test_tiny_qwen3_vl_has_the_published_architecture_traits(qwen3_dir):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(qwen3_dir)
    assert config.model_type == "qwen3_vl"
    assert config.vision_config.patch_size == 16 and config.vision_config.spatial_merge_size == 2
    assert list(config.vision_config.deepstack_visual_indexes) == [0]
    rope = config.text_config.rope_parameters
    head_dim = config.text_config.head_dim
    assert rope["mrope_interleaved"] and sum(rope["mrope_section"]) == head_dim // 2
    assert rope["mrope_section"][1] == rope["mrope_section"][2] < rope["mrope_section"][0]
    preprocessor = json.loads((qwen3_dir / "preprocessor_config.json").read_text())
    assert preprocessor["patch_size"] == 16 and preprocessor["image_mean"] == [0.5, 0.5, 0.5]


def test_tiny_qwen3_vl_build_is_deterministic(qwen3_dir, tmp_path):
    from safetensors.torch import load_file

    again = tiny_model_path(tmp_path, _config_spec(warm_start_steps=0))
    a, b = load_file(qwen3_dir / "model.safetensors"), load_file(again / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any("deepstack_merger_list" in k for k in a)


def test_warm_start_trains_the_deepstack_mergers(tmp_path):
    from safetensors.torch import load_file

    cold = load_file(tiny_model_path(tmp_path, _config_spec(warm_start_steps=0)) / "model.safetensors")
    spec = _config_spec(warm_start_steps=20, warm_start_images=64)
    warm_dir = tiny_model_path(tmp_path, spec)
    warm = load_file(warm_dir / "model.safetensors")
    changed = {k for k in cold if not torch.equal(cold[k], warm[k])}
    assert any("deepstack_merger_list" in k for k in changed)
    assert all(k.startswith("model.visual.") for k in changed)  # the language model stays random
    assert json.loads((warm_dir / "warm_start.json").read_text())["loss"] > 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"family": "llava"}, "model.tiny.family='llava'"),
        ({"deepstack_visual_indexes": [2]}, "deepstack_visual_indexes"),
        ({"processor_image_size": 112}, "processor_image_size=112"),
    ],
)
def test_bad_tiny_specs_are_refused_by_name(spec, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        tiny_model_path(tmp_path, _config_spec(warm_start_steps=0, **spec))


# --------------------------------------------------------------------------- processor and positions


def test_processor_is_image_only_and_marks_16_image_tokens(policy, qwen3_dir, face_samples):
    from transformers import AutoProcessor

    assert type(policy.processor) is ImageOnlyQwen3VLProcessor
    assert getattr(policy.processor, "video_processor", None) is None
    assert type(AutoProcessor.from_pretrained(str(qwen3_dir))) is ImageOnlyQwen3VLProcessor
    batch = prompts(policy, face_samples, 3)  # 112x112, 112x140, 140x112: all resized to 128 x 128
    inputs = batch.inputs
    assert inputs["image_grid_thw"].tolist() == [[1, 8, 8]] * 3
    image_id = policy.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert torch.equal(inputs["mm_token_type_ids"].bool(), inputs["input_ids"] == image_id)
    assert inputs["mm_token_type_ids"].sum(dim=1).tolist() == [16, 16, 16]


def test_positions_are_3d_over_the_image_and_continue_as_text(policy, face_samples):
    batch = prompts(policy, face_samples, 2)
    pos, inputs = batch.inputs["position_ids"], batch.inputs
    row = inputs["attention_mask"][0].bool()
    image = inputs["mm_token_type_ids"][0][row].bool()
    p = pos[:, 0][:, row]
    start = int(p[0, image][0])
    assert p[0, image].unique().tolist() == [start]  # one frame
    assert p[1, image].unique().tolist() == p[2, image].unique().tolist() == list(range(start, start + 4))
    after = int(image.nonzero().max()) + 1
    assert p[:, after].tolist() == [start + 4] * 3  # text resumes past the largest image position
    nxt = policy.family.next_positions(inputs)
    assert nxt.tolist() == [int(pos[:, i].max()) + 1 for i in range(2)]


def test_deepstack_features_reach_the_language_model(policy, face_samples):
    """Zeroing the DeepStack merger changes the prompt's logits: the tiny model really uses DeepStack."""
    batch = prompts(policy, face_samples, 1)
    merger = policy.base_model.model.visual.deepstack_merger_list[0].linear_fc2
    with torch.no_grad():
        before = policy.base_model(**batch.inputs).logits
        saved = merger.weight.clone(), merger.bias.clone()
        merger.weight.zero_(), merger.bias.zero_()
        try:
            after = policy.base_model(**batch.inputs).logits
        finally:
            merger.weight.copy_(saved[0]), merger.bias.copy_(saved[1])
    assert (before - after).abs().max().item() > 1e-4


# --------------------------------------------------------------------------- decoding and log-probs


def test_shared_prefix_logits_equal_full_reforward(policy, face_samples):
    """One prefill shared by G completions (positions continued as text) gives a full forward's logits."""
    batch = prompts(policy, face_samples, 3)
    rollout = policy.generate(batch, SAMPLED)
    ids, index = rollout.completion_ids, rollout.prompt_index
    with torch.no_grad():
        shared = torch.cat(policy._completion_logits_shared(policy.model, batch.inputs, ids, index), dim=1)
        full = torch.cat(policy._completion_logits_full(policy.model, batch.inputs, ids, index), dim=1)
    assert shared.shape == full.shape == (*ids.shape, full.shape[-1])
    mask = rollout.completion_mask.bool()
    assert (shared - full)[mask].abs().max().item() < 1e-4


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_recomputed_logprobs_match_rollout(make_policy, face_samples, shared_prefix):
    policy = make_policy(shared_prefix=shared_prefix)
    batch = prompts(policy, face_samples, 2)
    rollout = policy.generate(batch, SAMPLED)
    assert len({tuple(r) for r in rollout.completion_ids.tolist()}) > 1, "G samples should differ"
    with torch.no_grad():
        logp, _ = policy.completion_logprobs(
            batch, rollout.completion_ids, rollout.prompt_index, temperature=SAMPLED.temperature
        )
    mask = rollout.completion_mask.bool()
    assert (logp - rollout.logprobs)[mask].abs().max().item() < 1e-4


def test_batched_greedy_matches_one_by_one(policy, face_samples):
    batch = prompts(policy, face_samples, 3)
    assert len(set(batch.inputs["attention_mask"].sum(dim=1).tolist())) == 3  # left padding exercised
    greedy = SamplingParams.greedy(12)
    together = policy.generate(batch, greedy)
    for i in range(3):
        alone = policy.generate(prompts(policy, face_samples, 1, offset=i), greedy)
        assert together.texts[i] == alone.texts[0]


def test_vision_tokens_are_never_sampled(policy, face_samples):
    """Even when the (hooked) model prefers vision tokens by a wide margin, the sampler never emits them."""
    suppress = torch.tensor(policy.family.suppress_ids())

    def boost(module, args, output):
        return output.index_fill(-1, suppress, 30.0)

    hook = policy.base_model.lm_head.register_forward_hook(boost)
    try:
        rollout = policy.generate(prompts(policy, face_samples, 2), SAMPLED)
    finally:
        hook.remove()
    assert rollout.num_tokens > 20
    assert not bool(torch.isin(rollout.completion_ids, suppress).any())


# --------------------------------------------------------------------------- LoRA, sharding, export


def test_lora_and_shard_units_cover_the_language_model_and_vision_blocks(make_policy):
    policy = make_policy(lora={"r": 4, "alpha": 8})
    trainable = {n for n, p in policy.model.named_parameters() if p.requires_grad}
    assert trainable and all("language_model.layers." in n and "lora_" in n for n in trainable)
    assert {n.split(".lora_")[0].rsplit(".", 1)[1] for n in trainable} == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"
    }  # fmt: skip
    units = policy.shard_units(policy.base_model)
    visual, text = policy.base_model.model.visual, policy.base_model.model.language_model
    assert units == [*visual.blocks, *text.layers]


def test_export_reload_gives_identical_outputs(make_policy, face_samples, tmp_path):
    policy = make_policy()
    batch = policy.encode_sft([im for im, _ in face_samples[:2]], TEXTS[:2], ["<answer>anger</answer>"] * 2)
    loss, _ = policy.sft_loss(batch)
    loss.backward()
    with torch.no_grad():
        for p in policy.model.parameters():
            p -= 1e-2 * p.grad.sign()  # weights that differ from the build
    export = policy.export(tmp_path / "model")
    for name in ("processor_config.json", "tokenizer_config.json"):
        assert json.loads((export / name).read_text())["processor_class"] == "Qwen3VLProcessor", name
    assert json.loads((export / "preprocessor_config.json").read_text())["patch_size"] == 16
    reloaded = Policy(family=Qwen3VLFamily(), path=str(export), dtype="float32")
    assert type(reloaded.base_model).__name__ == "Qwen3VLForConditionalGeneration"
    a, b = prompts(policy, face_samples, 3), prompts(reloaded, face_samples, 3)
    for key, value in a.inputs.items():
        assert torch.equal(b.inputs[key], value), key
    greedy = SamplingParams.greedy(16)
    assert policy.generate(a, greedy).texts == reloaded.generate(b, greedy).texts


def test_a_folder_of_another_family_is_refused(tiny_model_dir, qwen3_dir):
    with pytest.raises(ValueError, match="model_type is 'qwen2_5_vl'.*qwen3_vl family"):
        Policy(family=Qwen3VLFamily(), path=str(tiny_model_dir), dtype="float32")
    from facial_r1.models.qwen2_5_vl import Qwen25VLFamily

    with pytest.raises(ValueError, match="model_type is 'qwen3_vl'.*qwen2_5_vl family"):
        Policy(family=Qwen25VLFamily(), path=str(qwen3_dir), dtype="float32")


# --------------------------------------------------------------------------- published architectures


@pytest.mark.parametrize(
    ("arch", "text", "vision"),
    [  # (hidden, layers, heads, kv heads, intermediate, tied), (depth, hidden, DeepStack blocks)
        ("qwen3_vl_2b", (2048, 28, 16, 8, 6144, True), (24, 1024, [5, 11, 17])),
        ("qwen3_vl_4b", (2560, 36, 32, 8, 9728, True), (24, 1024, [5, 11, 17])),
        ("qwen3_vl_8b", (4096, 36, 32, 8, 12288, False), (27, 1152, [8, 16, 24])),
    ],
)
def test_published_architectures_load_as_transformers_reads_them(arch, text, vision):
    from transformers import Qwen3VLConfig

    from facial_r1.models.reduced import published_config

    config = Qwen3VLConfig(**published_config(arch))
    t, v = config.text_config, config.vision_config
    assert (t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads) == text[:4]
    assert (t.intermediate_size, config.tie_word_embeddings, t.head_dim, t.vocab_size) == (
        *text[4:],
        128,
        151936,
    )
    assert t.rope_parameters["mrope_section"] == [24, 20, 20] and t.rope_parameters["rope_theta"] == 5000000
    assert (v.depth, v.hidden_size, list(v.deepstack_visual_indexes)) == vision
    assert (v.patch_size, v.out_hidden_size, v.num_position_embeddings) == (16, t.hidden_size, 2304)


def test_reduced_depth_keeps_deepstack_inside_both_towers():
    from facial_r1.models.qwen3_vl import Qwen3VLFamily
    from facial_r1.models.reduced import published_config

    config, model_class, image_processor = Qwen3VLFamily.reduced_architecture(
        published_config("qwen3_vl_4b"), 2, 4
    )
    assert model_class.__name__ == "Qwen3VLForConditionalGeneration"
    assert config.text_config.num_hidden_layers == 2 and config.text_config.hidden_size == 2560
    assert config.vision_config.depth == 4 and list(config.vision_config.deepstack_visual_indexes) == [0, 1]
    assert (image_processor.patch_size, list(image_processor.image_mean)) == (16, [0.5, 0.5, 0.5])


# --------------------------------------------------------------------------- end to end


def _run(script: str, args: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, script, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=420
    )
    assert proc.returncode == 0, f"{script} {' '.join(args)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"


@pytest.mark.slow
def test_sft_grpo_evaluate_synthesize_on_tiny_qwen3_vl(tmp_path, qwen3_dir, subprocess_env):
    """``model=tiny_qwen3_vl`` through every entry point, each stage starting from the previous one's export."""
    env = subprocess_env(tmp_path / "out")
    common = ["model=tiny_qwen3_vl", "model.tiny.warm_start_steps=0", "dataset.n_train=64", "dataset.n_val=8",
              "dataset.n_test=8", "dataset.progress=false", "logger=csv", "trainer.enable_progress_bar=false"]  # fmt: skip
    run_train([*common, "stage.num_samples=32", "stage.batch_size=8", "trainer.max_steps=4",
               "stage.eval.every_n_steps=0", "stage.final_eval.limit=4", "stage.final_eval.max_new_tokens=16"],
              env)  # fmt: skip
    (sft,) = (tmp_path / "out" / "train").glob("*_sft")
    run_train([*common, "stage=grpo", "stage.prompts_per_step=2", "stage.objective.num_generations=2",
               "stage.objective.max_completion_length=16", "trainer.max_steps=2", "stage.eval.every_n_steps=0",
               "stage.final_eval.limit=4", "stage.final_eval.max_new_tokens=16"], env)  # fmt: skip
    (grpo,) = (tmp_path / "out" / "train").glob("*_grpo")
    card = json.loads((grpo / "model" / "facial_r1_export.json").read_text())
    assert card["init_from"] == str(sft / "model")  # latest_sft found this family's export
    for run in (sft, grpo):
        config = json.loads((run / "model" / "config.json").read_text())
        assert config["model_type"] == "qwen3_vl" and (run / "metrics.json").is_file()

    export = str(grpo / "model")
    _run("evaluate.py", ["model=tiny_qwen3_vl", f"model.path={export}", "dataset.n_test=8",
                         "dataset.progress=false", "logger=none", "limit=4", "max_new_tokens=16"], env)  # fmt: skip
    (evaluation,) = (tmp_path / "out" / "evaluate").iterdir()
    assert json.loads((evaluation / "metrics.json").read_text())["num_samples"] == 4
    _run("synthesize.py", ["model=tiny_qwen3_vl", f"model.path={export}", "dataset.n_train=64",
                           "dataset.progress=false", "limit=4", "batch_size=4", "max_retries=0",
                           "checks.enforce=[]", "generation.max_new_tokens=16", "progress=false"], env)  # fmt: skip
    (synthesis,) = (tmp_path / "out" / "synthesize").iterdir()
    manifest = json.loads((synthesis / "manifest.json").read_text())
    assert manifest["counts"]["accepted"] == 4
    assert manifest["source_model"]["folder"] == export
