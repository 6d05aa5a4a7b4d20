"""The paper's pipeline in one command: SFT-300 -> GRPO -> [synthesise -> SFT -> GRPO] x rounds, resumable.

    python -m facial_r1.pipeline [preset=NAME] [rounds=N] [round_init=base|sft300|latest]
                                 [round_grpo_data=train|round] [ablation=all|NAME,...] [--out-root DIR]
                                 [--seed N | --seeds 0,1,2] [--columns a,b] [--into FILE:NAME] [--quick]
                                 [-- override ...]

Each stage is its own entry point (``train.py`` / ``synthesize.py`` / ``evaluate.py``) in a subprocess, started from
an earlier stage's export with an explicit ``model.init_from`` (never ``latest_*``: other runs may share the output
root), all under one ``paths.output_root``. The stages are the ablation experiments of ``conf/experiment/``, and each
stage's run folder is a row of the results table named by the stage (``run_name``):

===================  =============  ==================================================  ==========================
stage                entry point    starts from                                         config
===================  =============  ==================================================  ==========================
sft_300              train.py       the embedded tiny model                             experiment=sft_300
sft300_grpo          train.py       sft_300's export                                    experiment=sft300_grpo
synth_round<r>       synthesize.py  the previous GRPO export (SynthFACS train split)    round=<r>
sft_synth_round<r>   train.py       ``round_init``: base = the untrained model,         experiment=pipeline_round2_sft
                                    sft300 = sft_300's export, latest (default) = the
                                    export that synthesised the round; trains on
                                    synth_round1..<r> with the round's data recipe
grpo_synth_round<r>  train.py       sft_synth_round<r>'s export; prompts with           experiment=sft300_grpo_synth
                                    ``round_grpo_data``: train (default) = SynthFACS'
                                    train split, round = every face synth_round<r>
                                    saw (accepted and rejected: dataset=synth
                                    dataset.rows=all)
===================  =============  ==================================================  ==========================

for r = 1 .. ``rounds`` (default 1), then the ablation table's other rows when ``ablation`` names them (``all``, or a
comma list; default none), each one change against a chain stage:

================================  ===========  ================================  ===================================
stage                             entry point  starts from                       config
================================  ===========  ================================  ===================================
zero_shot                         evaluate.py  the embedded tiny model           +experiment=zero_shot
sft_300_llm_like                  train.py     the embedded tiny model           experiment=sft_300_llm_like
sft_all, sft_all_noisy,           train.py     the embedded tiny model           experiment=<the stage's name>
sft_all_llm_like
sft300_grpo_<reward> (acc_format, train.py     sft_300's export                  experiment=sft300_grpo reward=<..>
au_format,
au_acc_format_consistency)
================================  ===========  ================================  ===================================

So one command runs the whole ablation table over three seeds and writes it into the docs (``--columns`` /
``--into`` as ``python -m facial_r1.results``; README "The flywheel and the reward ablation" has the command).

The round's data recipe lives in ``experiment=pipeline_round2_sft`` and ``dataset=synth``
(:mod:`facial_r1.synthesis.rounds`): the accepted rows of every round so far, deduped by face (latest round wins),
AU-only and emotion-only rows kept, the original SFT-300 teacher rows kept (with their instruction rows,
``stage.instruction_rows``), the accepted rows capped per class.

``<out-root>/pipeline.json`` records each stage's command, run folder and status. Rerunning the same command skips
finished stages (export card and ``metrics.json``, a complete synthesis manifest, or an evaluation's metrics) and
resumes an interrupted one in its own folder (training from ``checkpoints/last.ckpt``, synthesis from its
``accepted``/``rejected`` files); a rerun with a larger ``rounds`` continues after the last finished round, one with
more ``ablation`` stages adds them. At the end ``results.md`` / ``results.csv`` (:mod:`facial_r1.results`) are
written to the out root. ``--seeds 0,1,2`` runs one chain per seed in
``<out-root>/seed<N>`` (each resumable on its own) and writes one table over all of them, mean +- sd per stage;
``--columns`` / ``--into`` apply to that final table (``--into``'s markers are checked before any stage runs).

Overrides after ``--`` go to every stage; ``<selector>:key=value`` to some, selector = ``train`` (every train.py
stage), ``sft``, ``grpo``, ``synth``, ``eval`` or a stage name, e.g. ``-- dataset.n_test=200
grpo:trainer.max_time=null sft_synth_round1:dataset.balance=none``. The round SFTs train on ``dataset=synth``, whose
held-out splits come from ``dataset.eval_source``: plain ``dataset.<key>`` overrides are passed there as
``dataset.eval_source.<key>`` (keys of dataset=synth itself stay) so every stage evaluates on the same test split.
``sft_synth`` and ``grpo_synth`` select every round's SFT / GRPO. ``preset=<name>`` reads ``conf/pipeline/<name>.yaml``
(a measured recipe: ``rounds``, ``round_init``, ``round_grpo_data`` and an ``overrides`` list that goes before the
command line's, which win): ``python -m facial_r1.pipeline preset=flywheel --seeds 0,1,2`` runs the README's best
chain. ``--quick`` adds tiny budgets (a few steps, 64 training faces, synthesis checks off so the untrained model's
responses form a round) for tests: the whole chain in about a minute.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facial_r1.files import write_json_atomic
from facial_r1.lineage import EXPORT_CARD
from facial_r1.results import (
    MarkerError,
    check_blocks,
    check_columns,
    collect,
    published_block,
    write_blocks,
    write_results,
)
from facial_r1.synthesis.store import MANIFEST

log = logging.getLogger("facial_r1.pipeline")

REPO = Path(__file__).resolve().parents[2]  # src/facial_r1/pipeline.py -> the checkout holding train.py
STATE_FILE = "pipeline.json"


@dataclass(frozen=True)
class Stage:
    name: str  # run_name: the run folder's suffix and the results table's row
    kind: str  # sft | grpo | synth | eval
    args: tuple[str, ...]  # the stage's experiment and fixed settings
    init_from: str | None = None  # the stage whose export this one starts from (None: the base model)
    data_from: tuple[str, ...] = ()  # the synthesis stages whose accepted samples this one trains on

    @property
    def script(self) -> str:
        return {"synth": "synthesize.py", "eval": "evaluate.py"}.get(self.kind, "train.py")

    @property
    def task(self) -> str:  # the entry point's task_name: <output_root>/<task>/<time>_<name>
        return {"synth": "synthesize", "eval": "evaluate"}.get(self.kind, "train")


ROUND_INITS = ("base", "sft300", "latest")  # where each round's SFT starts (module docstring)
# Which faces each round's GRPO prompts with: SynthFACS' train split, or the faces its round synthesised (all of
# them: the rejected ones alone taught seeds to call every neutral face with an AU contempt; README "GRPO on the
# faces a round could not write right").
ROUND_GRPO_DATA = ("train", "round")

# The ablation table's other rows (``ablation=all`` or a comma list of these names), run after the chain in the same
# out root and seed: each changes one thing against a chain stage, so the table compares like with like.
ABLATION = (
    # the untrained model, greedy: seed-independent, so every chain's copy is the same row
    Stage("zero_shot", "eval", ("+experiment=zero_shot",)),
    Stage("sft_300_llm_like", "sft", ("experiment=sft_300_llm_like",)),  # sft_300 with the LLM-like teacher
    Stage("sft_all", "sft", ("experiment=sft_all",)),  # every training face, the clean template teacher
    Stage("sft_all_noisy", "sft", ("experiment=sft_all_noisy",)),
    Stage("sft_all_llm_like", "sft", ("experiment=sft_all_llm_like",)),
    # the reward ablation: sft300_grpo (reward au_acc_format) with another reward, from the same SFT-300 export
    *(
        Stage(
            f"sft300_grpo_{reward}",
            "grpo",
            ("experiment=sft300_grpo", f"reward={reward}"),
            init_from="sft_300",
        )
        for reward in ("acc_format", "au_format", "au_acc_format_consistency")
    ),
)


def ablation_stages(spec: str | Sequence[str] | None) -> tuple[Stage, ...]:
    """The ablation stages named by ``spec``: None / "" / "none" = none, "all" = every one, else a comma list."""
    if not spec or spec == "none":
        return ()
    names = [n.strip() for n in spec.split(",")] if isinstance(spec, str) else list(spec)
    known = {s.name: s for s in ABLATION}
    if names == ["all"]:
        return ABLATION
    unknown = [n for n in names if n not in known]
    if unknown:
        raise PipelineError(
            f"ablation={','.join(unknown)}: allowed values are all, none or {', '.join(known)}"
        )
    return tuple(s for s in ABLATION if s.name in names)  # table order, whatever the order asked


# The chain's shape when neither the command line nor a preset sets it (build_stages, run_pipeline and the CLI).
CHAIN_DEFAULTS: dict[str, Any] = {"rounds": 1, "round_init": "latest", "round_grpo_data": "train"}


def build_stages(
    rounds: int = CHAIN_DEFAULTS["rounds"],
    round_init: str = CHAIN_DEFAULTS["round_init"],
    ablation: str | Sequence[str] | None = None,
    round_grpo_data: str = CHAIN_DEFAULTS["round_grpo_data"],
) -> tuple[Stage, ...]:
    """SFT-300 -> GRPO -> [synthesise -> SFT -> GRPO] x ``rounds``; each round's SFT starts from ``round_init``,
    each round's GRPO prompts with ``round_grpo_data``; then the ``ablation`` stages (:func:`ablation_stages`)."""
    if int(rounds) < 0:
        raise PipelineError(f"rounds={rounds}: must be >= 0")
    if round_init not in ROUND_INITS:
        raise PipelineError(f"round_init={round_init!r}: allowed values are {', '.join(ROUND_INITS)}")
    if round_grpo_data not in ROUND_GRPO_DATA:
        raise PipelineError(
            f"round_grpo_data={round_grpo_data!r}: allowed values are {', '.join(ROUND_GRPO_DATA)}"
        )
    stages = [
        Stage("sft_300", "sft", ("experiment=sft_300",)),
        Stage("sft300_grpo", "grpo", ("experiment=sft300_grpo",), init_from="sft_300"),
    ]
    previous = "sft300_grpo"  # the export that synthesises the next round
    for r in range(1, int(rounds) + 1):
        synth, sft, grpo = f"synth_round{r}", f"sft_synth_round{r}", f"grpo_synth_round{r}"
        start = {"base": None, "sft300": "sft_300", "latest": previous}[round_init]
        on_round = ("dataset=synth", "dataset.rows=all") if round_grpo_data == "round" else ()
        round_data = (synth,) if round_grpo_data == "round" else ()
        stages += [
            Stage(synth, "synth", (f"round={r}", "split=train"), init_from=previous),
            Stage(
                sft,
                "sft",
                ("experiment=pipeline_round2_sft", *(("model.init_from=null",) if start is None else ())),
                init_from=start,
                data_from=tuple(f"synth_round{k}" for k in range(1, r + 1)),  # every round so far, deduped
            ),
            Stage(
                grpo, "grpo", ("experiment=sft300_grpo_synth", *on_round), init_from=sft, data_from=round_data
            ),
        ]
        previous = grpo
    return (*stages, *ablation_stages(ablation))


STAGES = build_stages()  # the default chain (one round, each round's SFT from the latest export)

# --quick: every stage in seconds on the tiny model. Synthesis runs with its checks off: the barely trained model
# would have none of its responses accepted, and the round-2 SFT needs rows.
QUICK = (
    "dataset.n_train=64",
    "dataset.n_val=8",
    "dataset.n_test=8",
    "dataset.progress=false",
    "model.tiny.warm_start_steps=0",
    "train:trainer.max_steps=2",
    "train:trainer.log_every_n_steps=1",
    "train:trainer.enable_progress_bar=false",
    "train:logger=csv",
    "train:stage.eval.every_n_steps=1000",
    "train:stage.final_eval.limit=8",
    "train:stage.final_eval.max_new_tokens=32",
    "sft_300:stage.num_samples=32",
    "sft:stage.batch_size=8",
    "sft:stage.warmup_steps=0",
    "grpo:stage.prompts_per_step=2",
    "grpo:stage.objective.num_generations=2",
    "grpo:stage.objective.max_completion_length=32",
    "synth:limit=16",
    "synth:batch_size=16",
    "synth:max_retries=0",
    "synth:progress=false",
    "synth:checks.enforce=[]",
    "synth:generation.max_new_tokens=32",
    "eval:max_new_tokens=32",
    "eval:bootstrap.resamples=0",
)


@functools.cache
def _synth_dataset_keys() -> frozenset[str]:
    """Keys of dataset=synth itself, read from conf/dataset/synth.yaml (so a new key there is never misrouted); any
    other ``dataset.<key>`` of a round SFT belongs to its ``eval_source``."""
    from omegaconf import OmegaConf

    keys = set(OmegaConf.load(REPO / "conf" / "dataset" / "synth.yaml").keys()) - {"defaults"}
    return frozenset(keys | {"eval_source"})


class PipelineError(RuntimeError):
    """A stage failed or cannot start; the message names the stage and the command to rerun."""


# ---- overrides ----------------------------------------------------------------------------------------------------


_KINDS = ("sft", "grpo", "synth", "eval")
# selectors of every round's SFT / GRPO (sft_synth_round<r>, grpo_synth_round<r>)
_ROUND_STAGES = ("sft_synth", "grpo_synth")


def _known_selector(selector: str) -> bool:
    """``train``, a stage kind, every round's SFT or GRPO (``sft_synth``, ``grpo_synth``), or a stage name (of any
    number of rounds: ``synth_round3``; or an ablation's)."""
    if selector in {"train", *_KINDS, *_ROUND_STAGES, "sft_300", "sft300_grpo", *(s.name for s in ABLATION)}:
        return True
    for prefix in ("synth_round", "sft_synth_round", "grpo_synth_round"):
        if selector.startswith(prefix) and selector[len(prefix) :].isdigit():
            return True
    return False


def _selectors(stage: Stage) -> set[str]:
    rounds = {r for r in _ROUND_STAGES if stage.name.startswith(f"{r}_round")}
    return {stage.name, stage.kind, *rounds} | ({"train"} if stage.task == "train" else set())


def stage_overrides(stage: Stage, overrides: Sequence[str]) -> list[str]:
    """The overrides of ``overrides`` that apply to ``stage`` (``sel:key=value`` -> ``key=value`` when selected),
    with ``dataset.<key>`` moved under ``dataset.eval_source`` for a stage that trains on ``dataset=synth``."""
    out = []
    for item in overrides:
        selector, sep, rest = item.partition(":")
        if sep and "=" not in selector:  # "sel:key=value"; a plain value may contain ":" (times, URLs)
            if not _known_selector(selector):
                raise PipelineError(
                    f"override {item!r}: unknown selector {selector!r}; use train, sft, grpo, synth, eval, "
                    "sft_synth (every round's SFT), grpo_synth (every round's GRPO) or a stage name (sft_300, "
                    "sft300_grpo, synth_round<r>, sft_synth_round<r>, grpo_synth_round<r>, an ablation stage)"
                )
            if selector not in _selectors(stage):
                continue
            item = rest
        key = item.split("=", 1)[0].lstrip("+~")
        if key == "dataset":
            raise PipelineError(
                f"override {item!r}: the pipeline runs on the embedded SynthFACS default (its round-2 SFT needs "
                "dataset=synth); change it with dataset.<key>=..., or run the stages by hand (docs/experiments.md)"
            )
        if stage.data_from and key.startswith("dataset.") and key.split(".")[1] not in _synth_dataset_keys():
            item = item.replace("dataset.", "dataset.eval_source.", 1)
        out.append(item)
    return out


# ---- stage state --------------------------------------------------------------------------------------------------


def is_finished(stage: Stage, run_dir: Path) -> bool:
    """A training run is finished once it exported and evaluated; a synthesis run once its manifest says so; an
    evaluation once it wrote its metrics."""
    if stage.kind == "synth":
        manifest = run_dir / MANIFEST
        return manifest.is_file() and json.loads(manifest.read_text()).get("status") == "complete"
    if stage.kind == "eval":
        return (run_dir / "metrics.json").is_file()
    return (run_dir / "model" / EXPORT_CARD).is_file() and (run_dir / "metrics.json").is_file()


def output_of(stage: Stage, run_dir: Path) -> Path:
    """What the next stage reads: a training run's export folder, a synthesis or evaluation run's folder."""
    return run_dir if stage.kind in ("synth", "eval") else run_dir / "model"


def accepted_count(synth_run: Path) -> int:
    manifest = json.loads((synth_run / MANIFEST).read_text())
    return int((manifest.get("counts") or {}).get("accepted") or 0)


def load_state(out_root: Path) -> dict[str, Any]:
    path = out_root / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {"stages": {}}


def save_state(out_root: Path, state: dict[str, Any]) -> None:
    write_json_atomic(out_root / STATE_FILE, state)


# ---- running ------------------------------------------------------------------------------------------------------


def stage_command(
    stage: Stage, run_dir: Path, out_root: Path, seed: int, inputs: dict[str, Path], overrides: Sequence[str],
    resume: bool,
) -> list[str]:  # fmt: skip
    """``python <script> ...`` for ``stage``, writing into ``run_dir``; ``inputs`` = finished stages' outputs."""
    args = [
        *stage.args,
        f"paths.output_root={out_root}",
        f"hydra.run.dir={run_dir}",
        f"run_name={stage.name}",
        f"seed={seed}",
    ]
    if stage.init_from:
        args.append(f"model.init_from={inputs[stage.init_from]}")
    if stage.data_from:
        args.append(f"dataset.runs=[{','.join(str(inputs[name]) for name in stage.data_from)}]")
    if resume and stage.task == "train" and (run_dir / "checkpoints" / "last.ckpt").is_file():
        args.append(f"ckpt_path={run_dir}")  # the same folder and settings: Lightning restores the step
    return [sys.executable, stage.script, *args, *stage_overrides(stage, overrides)]


def chain_overrides(
    stages: Sequence[Stage], quick: bool, preset_overrides: Sequence[str], overrides: Sequence[str]
) -> list[str]:
    """A preset's overrides, then ``--quick``'s budget, then the command line's (Hydra: the last value wins)."""
    # --quick's SFT-300 has 32 samples, so the round SFTs keep those 32 teacher rows (not 300 of 64 faces).
    kept = (f"{st.name}:dataset.keep_sft=32" for st in stages if st.data_from and st.kind == "sft")
    budget = [*QUICK, *kept] if quick else []
    return [*preset_overrides, *budget, *overrides]


def run_pipeline(
    out_root: str | Path,
    *,
    seed: int = 0,
    quick: bool = False,
    overrides: Sequence[str] = (),
    preset_overrides: Sequence[str] = (),
    env: dict[str, str] | None = None,
    rounds: int = CHAIN_DEFAULTS["rounds"],
    round_init: str = CHAIN_DEFAULTS["round_init"],
    ablation: str | Sequence[str] | None = None,
    round_grpo_data: str = CHAIN_DEFAULTS["round_grpo_data"],
    columns: Sequence[str] | None = None,
    into: Sequence[str] = (),
    results_command: str = "",
) -> dict[str, Any]:
    """Run (or resume) every stage under ``out_root``; returns the state written to ``pipeline.json``.

    A rerun with more ``rounds`` or more ``ablation`` stages continues a finished chain; changing ``round_init``,
    ``round_grpo_data`` or the seed under one out root is refused (the finished stages were made with the old value).
    ``preset_overrides`` (a preset's) go first, then ``--quick``'s budget, then ``overrides``: a quick run of a preset
    stays quick, the command line wins. ``columns`` / ``into`` / ``results_command``: the results table's
    (:func:`_write_results`).
    """
    out_root = Path(out_root).expanduser().resolve()
    stages = build_stages(rounds, round_init, ablation, round_grpo_data)
    state = load_state(out_root)
    for key, value in (("round_init", round_init), ("round_grpo_data", round_grpo_data), ("seed", seed)):
        if state["stages"] and state.get(key, value) != value:
            raise PipelineError(
                f"{out_root} holds a pipeline run with {key}={state[key]}; use another --out-root for {key}={value}"
            )
    all_overrides = chain_overrides(stages, quick, preset_overrides, overrides)
    state.update(out_root=str(out_root), seed=seed, quick=quick, overrides=list(overrides), rounds=int(rounds),
                 preset_overrides=list(preset_overrides),
                 round_init=round_init, round_grpo_data=round_grpo_data,
                 ablation=[s.name for s in ablation_stages(ablation)])  # fmt: skip
    env = {**os.environ, "HYDRA_FULL_ERROR": "1", **(env or {})}
    # The stages run this checkout's code (its train.py imports facial_r1 from src/), whatever is pip-installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")  # one thread per stage: the README pipeline rows were measured so
    inputs: dict[str, Path] = {}
    for stage in stages:
        record = state["stages"].get(stage.name) or {}
        run_dir = Path(record["run_dir"]) if record.get("run_dir") else None
        if run_dir is not None and is_finished(stage, run_dir):
            log.info("%s: done (%s), skipped", stage.name, run_dir)
        else:
            resume = run_dir is not None and run_dir.is_dir()
            if not resume:
                stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
                run_dir = out_root / stage.task / f"{stamp}_{stage.name}"
            _check_inputs(stage, inputs)
            command = stage_command(stage, run_dir, out_root, seed, inputs, all_overrides, resume)
            record = {
                "run_dir": str(run_dir),
                "command": command,
                "status": "running",
                "started": time.time(),
            }
            state["stages"][stage.name] = record
            save_state(out_root, state)  # the folder is known before the stage starts: a rerun resumes it
            log.info("%s: %s %s", stage.name, "resuming" if resume else "starting", " ".join(command))
            proc = subprocess.run(command, cwd=REPO, env=env)
            if proc.returncode != 0 or not is_finished(stage, run_dir):
                record["status"] = "failed"
                save_state(out_root, state)
                raise PipelineError(
                    f"stage {stage.name} failed (exit {proc.returncode}) in {run_dir}; rerun the pipeline command "
                    "to resume it"
                )
            record.update(status="done", finished=time.time(), wall_time_s=time.time() - record["started"])
        record["output"] = str(output_of(stage, run_dir))
        inputs[stage.name] = output_of(stage, run_dir)
        save_state(out_root, state)
    _write_results(out_root, columns, into, results_command)
    return state


def _check_inputs(stage: Stage, inputs: dict[str, Path]) -> None:
    for name in stage.data_from:
        if accepted_count(inputs[name]) == 0:
            raise PipelineError(
                f"stage {stage.name}: synthesis run {inputs[name]} accepted no sample, nothing to train on "
                "(see its review.html and acceptance.md; a longer SFT/GRPO budget, stage.instruction_rows or "
                "checks.au_mode=f1 raises the acceptance rate)"
            )


def _write_results(
    out_root: Path, columns: Sequence[str] | None = None, into: Sequence[str] = (), command: str = ""
) -> None:
    """``results.md`` / ``.csv`` in ``out_root``; with ``into`` (``FILE:NAME``), also the grouped table in those
    files' marked blocks, naming ``command`` as what rewrites it (as ``python -m facial_r1.results --into``)."""
    rows = collect([out_root])
    paths = write_results(rows, out_root, columns)
    log.info("results: %s", ", ".join(str(p) for p in paths.values()))
    for name, path in write_blocks(into, published_block(rows, command, columns)):
        log.info("wrote block %r into %s", name, path)


# ---- presets: a recipe's settings in one file -----------------------------------------------------------------------

PRESETS = REPO / "conf" / "pipeline"


def load_preset(name: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """``conf/pipeline/<name>.yaml``: ``rounds`` / ``round_init`` / ``round_grpo_data`` and ``overrides`` (a list,
    as after ``--``), so a measured recipe runs as ``preset=<name>`` instead of a screenful of overrides.

    ``extends: <other>`` starts from that preset: its keys unless this file sets them, its overrides then this file's
    (later ones win), so a variant of a measured recipe names only what it changes."""
    import yaml

    path = PRESETS / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml"))) or "none"
        raise PipelineError(f"preset={name}: {path} does not exist (presets: {known})")
    if name in _seen:
        raise PipelineError(f"{path}: presets extend each other in a loop ({' -> '.join((*_seen, name))})")
    data = yaml.safe_load(path.read_text()) or {}
    allowed = {*CHAIN_DEFAULTS, "overrides", "extends"}
    if not isinstance(data, dict) or set(data) - allowed:
        raise PipelineError(f"{path}: a mapping of {', '.join(sorted(allowed))} only")
    overrides = data.pop("overrides", None) or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise PipelineError(f"{path}: overrides must be a list of key=value strings (quote ones with braces)")
    parent = load_preset(str(data.pop("extends")), (*_seen, name)) if "extends" in data else {"overrides": []}
    return {**parent, **data, "overrides": [*parent["overrides"], *overrides]}


# ---- command line -------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    argv = list(argv)
    overrides: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, overrides = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m facial_r1.pipeline",
        description="SFT-300 -> GRPO -> synthesis round 1 -> SFT on it -> GRPO, resumable (module docstring).",
        epilog="Overrides after '--': key=value for every stage, <sft|grpo|synth|train|stage name>:key=value for some.",
    )
    default_root = Path(os.environ.get("FACIAL_R1_OUTPUT_ROOT", "outputs")) / "pipeline"
    parser.add_argument("--out-root", type=Path, default=default_root, help=f"paths.output_root of every stage "
                        f"and where pipeline.json goes (default: {default_root})")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed=N for every stage (default 0)")
    parser.add_argument("--seeds", type=str, default=None, help="comma list, e.g. 0,1,2: one chain per seed, each "
                        "in <out-root>/seed<N>, then one results table over all of them in <out-root>")  # fmt: skip
    parser.add_argument("--preset", default=None, help="conf/pipeline/<name>.yaml: a recipe's rounds, round_init, "
                        "round_grpo_data and overrides; the command line's win (`preset=flywheel` works too)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=None, help="synthesise -> SFT -> GRPO rounds after SFT-300 -> "
                        "GRPO (default 1; `rounds=2` works too)")  # fmt: skip
    parser.add_argument("--round-init", choices=ROUND_INITS, default=None, help="where each round's SFT starts: "
                        "base (the untrained model), sft300 (the SFT-300 export) or latest (the export that "
                        "synthesised the round; default). `round_init=base` works too")  # fmt: skip
    parser.add_argument("--round-grpo-data", choices=ROUND_GRPO_DATA, default=None, help="which faces each "
                        "round's GRPO prompts with: train (SynthFACS' train split; default) or round (every face "
                        "its round synthesised). `round_grpo_data=round` works too")  # fmt: skip
    parser.add_argument("--ablation", default=None, help="the ablation table's other rows after the chain: all, or "
                        f"a comma list of {', '.join(s.name for s in ABLATION)} (default none)")  # fmt: skip
    parser.add_argument(
        "--quick", action="store_true", help="tiny budgets: the whole chain in about a minute"
    )
    parser.add_argument("--into", action="append", default=[], metavar="FILE:NAME", help="also write the final "
                        "grouped table between <!-- results:NAME --> and <!-- /results:NAME --> of FILE "
                        "(repeatable; as python -m facial_r1.results --into)")  # fmt: skip
    parser.add_argument("--columns", default=None, help="comma list of the metrics results.md and the --into "
                        "blocks show (as python -m facial_r1.results --columns); the CSV files keep every "
                        "metric")  # fmt: skip
    # `rounds=2` / `round_init=base` (Hydra-style, as the stages take theirs) mean --rounds / --round-init.
    argv = [f"--{a.split('=', 1)[0].replace('_', '-')}={a.split('=', 1)[1]}" if a.split("=", 1)[0] in
            ("preset", "rounds", "round_init", "round_grpo_data", "seed", "seeds", "ablation") else a
            for a in argv]  # fmt: skip
    args = parser.parse_args(argv)
    args.columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    try:
        preset = load_preset(args.preset) if args.preset else {}
        for key, default in CHAIN_DEFAULTS.items():  # the command line, else the preset, else the default
            if getattr(args, key) is None:
                setattr(args, key, preset.get(key, default))
        # a preset's overrides go before the command line's: later ones win (Hydra)
        args.preset_overrides = preset.get("overrides", [])
        args.overrides = overrides
        build_stages(args.rounds, args.round_init, args.ablation, args.round_grpo_data)
        if args.columns:
            check_columns(args.columns)
    except (PipelineError, ValueError) as err:  # before any stage runs, not hours later
        parser.error(str(err))
    return args


def other_checkout(cwd: str | Path) -> Path | None:
    """The facial_r1 checkout holding ``cwd`` when it is not the one this module (and so every stage) runs from.

    ``pip install -e`` points ``facial_r1`` at one checkout; a second clone (a CI run, a colleague's branch) installed
    later takes it over, and ``python -m facial_r1.pipeline`` started in the first checkout then runs the second's
    code, stages included. Returns None when ``cwd`` is in no checkout or in this one.
    """
    for folder in (Path(cwd).resolve(), *Path(cwd).resolve().parents):
        if (folder / "train.py").is_file() and (folder / "src" / "facial_r1" / "pipeline.py").is_file():
            return None if folder == REPO else folder
    return None


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    elsewhere = other_checkout(Path.cwd())
    if elsewhere is not None:
        log.warning(
            "running the code of %s (where facial_r1 is installed), not of the checkout you are in (%s); "
            "run `pip install -e .` here to use this one",
            REPO,
            elsewhere,
        )
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.seed]
    kwargs = dict(quick=args.quick, overrides=args.overrides, preset_overrides=args.preset_overrides,
                  rounds=args.rounds, round_init=args.round_init,
                  round_grpo_data=args.round_grpo_data, ablation=args.ablation)  # fmt: skip
    # The final table (per chain, or over the seeds' chains with --seeds) is the one --columns / --into apply to.
    command = " ".join(["python -m facial_r1.pipeline", *argv])
    table = dict(columns=args.columns, into=args.into, results_command=command)
    try:
        check_blocks(args.into)  # fail now, not after hours of training
        for seed in seeds:
            root = args.out_root / f"seed{seed}" if args.seeds else args.out_root
            state = run_pipeline(root, seed=seed, **kwargs, **({} if args.seeds else table))
            for name, record in state["stages"].items():
                print(f"seed {seed}  {name:20s} {record['status']:8s} {record['run_dir']}")
        if args.seeds:  # one table: mean +- sd over the seeds per stage
            _write_results(args.out_root.expanduser().resolve(), args.columns, args.into, command)
    except (PipelineError, MarkerError) as err:
        log.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
