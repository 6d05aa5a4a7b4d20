"""Config composition: every option of every group composes with ``conf/train.yaml`` and instantiates; bad values
fail early with the key and the allowed values; ``python train.py --help`` lists the groups.

Groups and options are discovered from ``conf/``, so a new option file is tested without touching this file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from facial_r1.training.checks import ConfigError, check_train_config

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
GROUPS = sorted(d.name for d in CONF.iterdir() if d.is_dir() and d.name != "hydra")
GROUP_OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((CONF / g).glob("*.yaml"))]


def _default_groups() -> set[str]:
    """Groups named in train.yaml's defaults list (others, e.g. reward_component, are added with ``+group=``)."""
    names = set()
    for entry in yaml.safe_load((CONF / "train.yaml").read_text())["defaults"]:
        if isinstance(entry, dict):
            names.add(next(iter(entry)).replace("optional ", "").strip())
    return names


DEFAULT_GROUPS = {
    *_default_groups(),
    "recipe",
}  # recipe: chosen by the model preset, overridable as recipe=...


def compose_train(overrides: list[str], output_dir: Path) -> DictConfig:
    """``train.yaml`` with ``overrides``, the Hydra config attached and ``${hydra:runtime.output_dir}`` resolvable."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture
def cfg_for(tmp_path, tiny_cache):
    """``cfg_for(*overrides)``: composed train config writing under tmp_path, the session cache as cache_dir."""

    def make(*overrides: str) -> DictConfig:
        base = [f"paths.output_root={tmp_path / 'outputs'}", f"paths.cache_dir={tiny_cache}"]
        return compose_train([*base, *overrides], tmp_path / "run")

    return make


def test_groups_are_discovered():
    # the groups the acceptance criteria name; new ones are picked up automatically
    for group in (
        "model",
        "stage",
        "reward",
        "dataset",
        "prompt",
        "teacher",
        "trainer",
        "logger",
        "callbacks",
    ):
        assert group in GROUPS
    assert len(GROUP_OPTIONS) >= 40


def _model_config(option: str) -> dict:
    return yaml.safe_load((CONF / "model" / f"{option}.yaml").read_text())["model"]


def _tiny_folder_of_family(option: str, cache: Path) -> Path:
    """The tiny model (random vision tower) of the family ``model=<option>`` names: the tiny config of that family."""
    from facial_r1.models.tiny import TinySpec, tiny_model_path

    family = _model_config(option)["family"]["_target_"]
    for path in sorted((CONF / "model").glob("*.yaml")):
        model = _model_config(path.stem)
        if model.get("tiny") and model["family"]["_target_"] == family:
            return tiny_model_path(cache, TinySpec(**{**model["tiny"], "warm_start_steps": 0}))
    raise AssertionError(
        f"conf/model/{option}.yaml: no tiny model config of its family {family} in conf/model/"
    )


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_every_group_option_composes_and_instantiates(
    group, option, cfg_for, tiny_model_dir, tiny_cache, tmp_path
):
    key = group if group in DEFAULT_GROUPS else f"+{group}"
    overrides = [f"{key}={option}"]
    folder = Path(tiny_model_dir)
    if group == "model" and not _model_config(option).get("tiny"):
        folder = _tiny_folder_of_family(
            option, tiny_cache
        )  # a real-checkpoint preset loads a folder of its family
        overrides.append(f"model.path={folder}")
    elif group == "experiment":
        overrides.append(f"model.path={folder}")  # the same adapter loads a checkpoint folder
    else:
        overrides.append(
            "model.tiny.warm_start_steps=0"
        )  # the tiny build, fast (= tiny_model_dir for model=tiny)
    cfg = cfg_for(*overrides)
    node = cfg.get(group)

    if group in ("model", "experiment"):
        # run.py resolves init_from (latest_sft -> a folder) before instantiating; here there is no export yet
        adapter = instantiate(cfg.model, init_from=None)
        if not cfg.model.path:
            assert adapter.folder.parent == tiny_cache / "tiny_models"
        else:
            assert adapter.folder == folder
        assert adapter.suppress_ids and adapter.stop_ids
    elif group == "dataset":
        if OmegaConf.is_missing(cfg.dataset, "root"):
            with open_dict(cfg):
                cfg.dataset.root = str(tmp_path / "dataset_root")
            (tmp_path / "dataset_root").mkdir()
        if "runs" in cfg.dataset and not cfg.dataset.runs and not cfg.dataset.files:  # dataset=synth
            accepted = tmp_path / "accepted.jsonl"
            accepted.write_text("")
            with open_dict(cfg):
                cfg.dataset.files = [str(accepted)]
        source = instantiate(cfg.dataset)  # built, not loaded: records() would read the (absent) files
        assert type(source).__name__ == cfg.dataset._target_.rsplit(".", 1)[-1]
    elif group in ("reward", "prompt", "teacher", "reward_component"):
        obj = instantiate(node)
        assert obj is not None
        if group == "reward_component":
            assert float(node.weight) > 0
    elif group in ("callbacks", "logger"):
        for name, conf in node.items():
            if group == "logger" and name == "wandb":
                assert conf.offline is True, "W&B must default to offline (no key, no network)"
                with open_dict(conf):
                    conf.save_dir = str(tmp_path / "wandb")
            built = instantiate(conf)
            assert built is not None, name
    elif group == "trainer":
        if cfg.trainer.accelerator in ("cpu", "auto"):
            trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
            assert trainer.max_steps == cfg.trainer.max_steps
        else:  # GPU-only trainers: compose and resolve the class; instantiating needs a GPU (and deepspeed)
            assert get_class(cfg.trainer._target_)
            OmegaConf.to_container(cfg.trainer, resolve=True)
    elif group == "stage":
        assert cfg.stage.name == option
        if option == "grpo":
            from facial_r1.grpo.config import GRPOConfig

            objective = GRPOConfig(**cfg.stage.objective)
            assert objective.num_generations == cfg.stage.objective.num_generations
    elif group == "paths":
        assert cfg.paths.output_root and cfg.paths.cache_dir
    # Every composed config passes the early checks and resolves completely (no stray ??? or bad interpolation).
    check_train_config(cfg)
    container = OmegaConf.to_container(cfg, resolve=True)
    assert container["stage"]["name"] in ("sft", "grpo")


TINY_MODEL_OPTIONS = [
    p.stem for p in sorted((CONF / "model").glob("*.yaml")) if _model_config(p.stem).get("tiny")
]


@pytest.mark.parametrize("option", TINY_MODEL_OPTIONS)
def test_tiny_model_configs_list_every_spec_field(option):
    """Every field is visible where it can be changed; tiny.yaml leaves out the fields added with the second family
    (they would change its base-model identity, so GRPO's latest_sft would miss existing SFT exports)."""
    from dataclasses import fields

    from facial_r1.models.tiny import _ADDED_FIELDS, TinySpec

    tiny = _model_config(option)["tiny"]
    expected = {f.name for f in fields(TinySpec)} - (set(_ADDED_FIELDS) if option == "tiny" else set())
    assert set(tiny) == expected
    TinySpec(**tiny)


# --------------------------------------------------------------------------- early errors


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (
            ["stage.scheduler=cosinus"],
            r"stage\.scheduler='cosinus': allowed values are cosine, linear, constant",
        ),
        (["stage.num_samples=0"], r"stage\.num_samples=0: allowed values are a positive integer or 'all'"),
        (
            ["stage.optimizer._target_=torch.optim.Nope"],
            r"stage\.module / stage\.optimizer.*torch\.optim\.Nope",
        ),
        (["stage.num_samples=some"], r"stage\.num_samples='some'"),
        (["model.reference=lora_disabled"], r"model\.reference=lora_disabled needs model\.lora"),
        (["model.reference=frozen"], r"model\.reference='frozen': allowed values are auto, lora_disabled"),
        (["model.dtype=float8"], r"model\.dtype='float8': allowed values are auto, float32"),
        (["trainer.max_steps=0"], r"trainer\.max_steps=0"),
        (["eval_au_subset=disfa99"], r"eval_au_subset='disfa99': allowed values are null, "),
        (["stage=grpo", "stage.objective.loss_aggregation=foo"], r"loss_aggregation='foo'.*grpo.*dapo"),
        (["stage=grpo", "stage.objective.kl_estimator=k4"], r"kl_estimator='k4'.*k1.*k3"),
        (["stage=grpo", "+stage.objective.bogus=1"], r"stage\.objective"),
        (["stage=grpo", "stage.accumulate_grad_batches=2"], r"accumulate_grad_batches must be 1 for GRPO"),
        (["stage=grpo", "stage.prompts_per_step=0"], r"stage\.prompts_per_step=0"),
    ],
)
def test_check_train_config_rejects_impossible_values(cfg_for, overrides, pattern):
    cfg = cfg_for(*overrides)
    with pytest.raises(ConfigError, match=pattern):
        check_train_config(cfg)


def test_check_train_config_accepts_the_defaults(cfg_for):
    check_train_config(cfg_for())
    check_train_config(cfg_for("stage=grpo"))
    check_train_config(cfg_for("model.lora={r: 4, alpha: 8}", "model.reference=lora_disabled"))


def test_hydra_rejects_a_typo_key(cfg_for):
    with pytest.raises(ConfigCompositionException, match="lrr"):
        cfg_for("stage.lrr=1")


def test_hydra_rejects_an_unknown_group_option(cfg_for):
    with pytest.raises((MissingConfigException, ConfigCompositionException)) as err:
        cfg_for("model=qwen9")
    message = str(err.value)
    assert "qwen9" in message
    assert "tiny" in message and "qwen2_5_vl_7b" in message, "the error should list the available options"


def test_train_help_lists_the_groups():
    proc = subprocess.run(
        [sys.executable, "train.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    groups_section = proc.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
    listed = {line.split(":")[0].strip() for line in groups_section.splitlines() if ":" in line}
    for group in ("model", "stage", "reward", "dataset", "trainer", "logger", "paths", "debug"):
        assert group in listed, group
    assert "tiny" in groups_section and "grpo" in groups_section


def test_num_threads_auto_respects_omp_and_caps_the_cores():
    from facial_r1.runtime import AUTO_MAX_THREADS, resolve_threads

    assert resolve_threads(None) is None  # torch's own default
    assert resolve_threads(3, env={"OMP_NUM_THREADS": "1"}) == 3  # an explicit count wins
    assert resolve_threads("auto", env={"OMP_NUM_THREADS": "1"}, cores=64) == 1
    assert resolve_threads("auto", env={}, cores=2) == 2
    assert resolve_threads("auto", env={}, cores=64) == AUTO_MAX_THREADS
    assert resolve_threads("auto", env={"OMP_NUM_THREADS": ""}, cores=1) == 1


def test_multirun_folder_names_stay_under_the_file_system_limit(tmp_path):
    """A sweep over many long overrides: Hydra's "<num>_<overrides>" folder would pass 255 bytes ("File name too
    long"); conf/hydra/default.yaml cuts it to 200 bytes + a hash of the whole, and leaves short ones unchanged."""
    from facial_r1.runtime import register_resolvers, short_dirname

    register_resolvers()
    cfg = compose_train([], tmp_path)
    long = ",".join(f"stage.objective.some_long_setting_number_{i}=value_{i}_{'x' * 20}" for i in range(8))
    for overrides, expect_same in (("reward=acc_format,stage.lr=1e-4", True), (long, False)):
        OmegaConf.set_readonly(cfg.hydra, False)  # HydraConfig froze it; a launcher sets this per job
        with open_dict(cfg):
            cfg.hydra.job.override_dirname = overrides
        subdir = cfg.hydra.sweep.subdir
        assert subdir.startswith("0_") and len(subdir.encode()) <= 2 + 200
        assert (subdir == f"0_{overrides}") is expect_same
    (tmp_path / subdir).mkdir()  # a folder of that name can exist
    assert short_dirname(long + "a") != short_dirname(long + "b")  # same 190-byte prefix, two folders
    assert len(short_dirname("é" * 300).encode()) <= 200  # cut on a character boundary
