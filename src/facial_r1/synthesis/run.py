"""What ``python synthesize.py`` does: resolve the source model and round, then synthesise batch by batch, resumably.

Outputs, all in the Hydra run folder: ``accepted.jsonl`` (dataset schema, ``description`` = the accepted response,
provenance in ``meta_info["synthesis"]``), ``rejected.jsonl`` (last response and its problems in
``meta_info["synthesis"]``), ``manifest.json`` (rewritten after every batch; its ``counts`` hold acceptance per class and per attempt),
``acceptance.md`` (those counts as a table, written at the end), ``review.html``, ``.hydra/``.

Resume: run the same command with ``hydra.run.dir=<that run folder>``. Samples already in either file are skipped;
the settings that shape outputs (model, data, prompt, checks, generation) must match the first session's.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from facial_r1.lineage import find_latest_export
from facial_r1.models.adapter import SamplingParams
from facial_r1.synthesis.engine import Checker, GenerationStats, Outcome, make_checker, synthesize_batch
from facial_r1.synthesis.rounds import trained_round
from facial_r1.synthesis.store import ACCEPTANCE, RunStore, acceptance_table, read_manifest, sample_key

log = logging.getLogger(__name__)


def resolve_source_model(model_cfg: DictConfig, output_root: str | Path) -> Path:
    """The model folder to synthesise with: ``model.init_from`` > ``model.path`` > the newest export of any stage.

    ``init_from`` may also be ``latest`` (any stage) or ``latest_<stage>`` (e.g. ``latest_grpo``).
    """
    init_from = model_cfg.get("init_from")
    path = None if OmegaConf.is_missing(model_cfg, "path") else model_cfg.get("path")
    if init_from and str(init_from).startswith("latest"):
        stage = str(init_from)[len("latest_") :] or None
        found = find_latest_export(output_root, stage)
        if found is None:
            raise FileNotFoundError(
                f"model.init_from={init_from}: no {stage or 'exported'} model under {output_root}. "
                "Run `python train.py` (SFT) or `python train.py stage=grpo` first."
            )
        return found
    if init_from:
        return Path(str(init_from))
    if path:
        return Path(str(path))
    found = find_latest_export(output_root)
    if found is None:
        raise FileNotFoundError(
            f"no exported model under paths.output_root={output_root} (no facial_r1_export.json found). "
            "Train one first (`python train.py`, then `python train.py stage=grpo`), "
            "or pass model.path=<Hugging Face model folder> / model.init_from=<run dir>/model."
        )
    return found


def synthesize(cfg: DictConfig) -> float | None:
    """Run (or resume) one synthesis round; returns the acceptance rate."""
    from hydra.core.hydra_config import HydraConfig

    return run_synthesis(cfg, Path(HydraConfig.get().runtime.output_dir), _resume_hint(HydraConfig.get()))


@dataclass
class Plan:
    """What a session will do, settled before the model is loaded."""

    model_folder: Path
    card: dict[str, Any]
    data_round: int
    prompt: Any  # PromptTemplate
    checks: Any  # CheckConfig
    source_name: str
    records: list[dict[str, Any]]  # the whole split
    eligible: list[dict[str, Any]]  # labelled samples (of either kind), after `offset` and `limit`
    provenance: dict[str, Any]  # stored in every row's meta_info["synthesis"]
    fingerprint: dict[str, Any]


def plan_session(cfg: DictConfig, run_dir: Path, previous: dict[str, Any]) -> Plan:
    """Resolve model, round, prompt, checks and samples (``previous`` = the run's manifest, {} if new)."""
    from hydra.utils import instantiate

    from facial_r1.data.sources import build_source
    from facial_r1.data.sources.base import require_records
    from facial_r1.lineage import read_card

    model_folder = _resumed_model(cfg.model, previous) or resolve_source_model(
        cfg.model, cfg.paths.output_root
    )
    card = read_card(model_folder)
    if cfg.get("round") is not None:
        data_round = int(cfg.round)
    else:  # a resumed run keeps its round; a new one follows the model's lineage
        data_round = int(previous.get("round") or trained_round(model_folder) + 1)
    prompt = instantiate(cfg.prompt)
    if card.get("prompt_version") and card["prompt_version"] != prompt.version:
        log.warning(
            "the model was trained with prompt %s, synthesis uses %s", card["prompt_version"], prompt.version
        )
    source = build_source(cfg.dataset)
    records = require_records(source, str(cfg.split), source.records(str(cfg.split)), "synthesise from")
    eligible = [r for r in records if r.get("AUs") is not None or r.get("labels")]
    offset = int(cfg.get("offset") or 0)
    if offset < 0:
        raise ValueError(f"offset={offset}: must be >= 0 (labelled samples of the split to skip)")
    eligible = eligible[offset:]  # a window of faces: later rounds can see new ones at equal cost
    if cfg.get("limit") is not None:
        eligible = eligible[: int(cfg.limit)]
    provenance = {
        "round": data_round,
        "source_model": str(model_folder),
        "source_stage": card.get("stage", "base"),
        "base_model": card.get("base_model"),
        "prompt_version": prompt.version,
        "split": str(cfg.split),
        "run_dir": str(run_dir),
    }
    return Plan(
        model_folder, card, data_round, prompt, instantiate(cfg.checks), source.name, records, eligible,
        provenance, _fingerprint(cfg, model_folder, data_round),
    )  # fmt: skip


def run_synthesis(cfg: DictConfig, run_dir: Path, resume_hint: str = "") -> float | None:
    """The work of :func:`synthesize` with the run folder given (for tests and notebooks)."""
    import torch
    from hydra.utils import instantiate
    from tqdm.auto import tqdm

    from facial_r1.runtime import set_threads
    from facial_r1.synthesis.review import write_review_html

    started = time.time()
    set_threads(cfg)
    previous = read_manifest(run_dir)
    plan = plan_session(cfg, run_dir, previous)
    with RunStore(run_dir) as store:
        _check_same_settings(previous, plan.fingerprint, store, run_dir)
        todo = [r for r in plan.eligible if sample_key(r) not in store.finished]
        done = len(plan.eligible) - len(todo)
        log.info(
            "round %d with %s: %d labelled samples, %d already finished, %d to do. %s",
            plan.data_round, plan.model_folder, len(plan.eligible), done, len(todo), resume_hint,
        )  # fmt: skip
        sessions = list(previous.get("sessions") or [])
        session: dict[str, Any] = {
            "started": started,
            "samples": 0,
            "loop_seconds": 0.0,
            "resumed": bool(sessions),
        }
        stats = GenerationStats()
        base = _manifest_base(cfg, plan, len(todo))

        def write_manifest(status: str) -> None:
            session.update(wall_time_s=time.time() - started, generation=stats.to_dict())
            store.write_manifest(_manifest(base, store, [*sessions, session], status))

        write_manifest("running")
        adapter = instantiate(
            cfg.model, init_from=str(plan.model_folder), path=None, device=_device(cfg.get("device"))
        )
        adapter.model.eval()
        engine = instantiate(cfg.rollout, policy=adapter)  # rollout=hf (default) | vllm
        params = _sampling_params(cfg.generation, cfg.seed)
        retry_params = _retry_params(params, cfg.generation.get("retry"), cfg.seed)
        checker = make_checker(plan.checks)
        bar = tqdm(total=len(plan.eligible), initial=done, desc=f"synthesis r{plan.data_round}",
                   disable=not cfg.get("progress", True), dynamic_ncols=True)  # fmt: skip
        batch_size, loop_started = int(cfg.batch_size), time.time()
        with torch.inference_mode():
            for start in range(0, len(todo), batch_size):
                accepted, rejected = _synthesize_chunk(
                    todo[start : start + batch_size],
                    adapter,
                    plan,
                    checker,
                    params,
                    int(cfg.max_retries),
                    stats,
                    engine,
                    retry_params,
                )
                store.append(accepted, rejected)  # durable before the next batch starts
                session["samples"] += len(accepted) + len(rejected)
                session["loop_seconds"] = time.time() - loop_started
                write_manifest("running")
                bar.update(len(accepted) + len(rejected))
                bar.set_postfix(accept=f"{store.tally.acceptance_rate or 0:.1%}", tok_s=f"{_rate(stats):.0f}")
        bar.close()
        write_manifest("complete")
        table = acceptance_table(store.tally.to_dict())
        (run_dir / ACCEPTANCE).write_text(table)
        log.info("acceptance per class and attempt (%s):\n%s", run_dir / ACCEPTANCE, table)
        review = cfg.get("review") or {}
        write_review_html(run_dir, max_rows=review.get("max_rows"), thumbnail=int(review.get("thumbnail", 160)),
                          images=str(review.get("images", "embed")))  # fmt: skip
        log.info(
            "done: %d accepted, %d rejected (%.1f%% accepted) -> %s",
            store.tally.accepted, store.tally.rejected, 100 * (store.tally.acceptance_rate or 0), run_dir,
        )  # fmt: skip
        return store.tally.acceptance_rate


def _manifest_base(cfg: DictConfig, plan: Plan, todo: int) -> dict[str, Any]:
    return {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "fingerprint": plan.fingerprint,
        "source_model": {"folder": str(plan.model_folder), "card": plan.card},
        "round": plan.data_round,
        "split": str(cfg.split),
        "dataset": plan.source_name,
        "prompt_version": plan.prompt.version,
        "samples": {"in_split": len(plan.records), "labelled": len(plan.eligible), "todo_at_start": todo},
    }


def _synthesize_chunk(
    chunk: list[dict[str, Any]],
    adapter: Any,
    plan: Plan,
    checker: Checker,
    params: SamplingParams,
    max_retries: int,
    stats: GenerationStats,
    engine: Any | None = None,
    retry_params: SamplingParams | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One batch -> (accepted rows, rejected rows). An unreadable image rejects its sample instead of stopping the
    run: a crash would recur at the same batch on every resume."""
    from facial_r1.data.images import load_image
    from facial_r1.data.schema import DataError

    images, readable, broken = [], [], []
    for record in chunk:
        try:
            images.append(load_image(record))
            readable.append(record)
        except DataError as err:
            log.warning("rejecting %s: %s", sample_key(record), err)
            broken.append(error_row(record, plan.provenance, str(err)))
    outcomes = synthesize_batch(
        adapter, readable, images, plan.prompt, checker, params, max_retries, stats, engine=engine,
        retry_params=retry_params,
    )  # fmt: skip
    accepted = [accepted_row(o, plan.provenance) for o in outcomes if o.accepted]
    return accepted, [rejected_row(o, plan.provenance) for o in outcomes if not o.accepted] + broken


def error_row(record: dict[str, Any], provenance: dict[str, Any], error: str) -> dict[str, Any]:
    """A sample that could not be attempted (its image failed to load)."""
    info = {**provenance, "accepted": False, "attempt": 0, "output": "", "problems": [error], "error": error}
    return {**record, "meta_info": {**(record.get("meta_info") or {}), "synthesis": info}}


def accepted_row(outcome: Outcome, provenance: dict[str, Any]) -> dict[str, Any]:
    """The record with the accepted response as ``description`` and its provenance in ``meta_info``."""
    record = outcome.record
    info = {**provenance, "accepted": True, "attempt": outcome.attempts, "checks": _checks(outcome)}
    if record.get("description"):
        info["original_description"] = record["description"]
    return {
        **record,
        "description": outcome.output,
        "meta_info": {**(record.get("meta_info") or {}), "synthesis": info},
    }


def rejected_row(outcome: Outcome, provenance: dict[str, Any]) -> dict[str, Any]:
    """The record unchanged, with the last response and why it failed in ``meta_info["synthesis"]``."""
    record = outcome.record
    info = {
        **provenance,
        "accepted": False,
        "attempt": outcome.attempts,
        "output": outcome.output,
        "problems": list(outcome.check.problems),
        "checks": _checks(outcome),
    }
    return {**record, "meta_info": {**(record.get("meta_info") or {}), "synthesis": info}}


def _checks(outcome: Outcome) -> dict[str, Any]:
    return {**outcome.check.to_dict(), "failed": outcome.check.failed}


def _resumed_model(model_cfg: DictConfig, previous: dict[str, Any]) -> Path | None:
    """A resumed run keeps its model when none is named: a newer export must not change models mid-run."""
    named = model_cfg.get("init_from") or (
        not OmegaConf.is_missing(model_cfg, "path") and model_cfg.get("path")
    )
    folder = (previous.get("source_model") or {}).get("folder")
    return None if named or not folder else Path(folder)


def _sampling_params(gen: DictConfig, seed: int) -> SamplingParams:
    k = int(gen.num_samples)
    if k > 1 and not gen.do_sample:
        raise ValueError(
            "generation.num_samples > 1 needs generation.do_sample=true (greedy samples are identical)"
        )
    return SamplingParams(
        max_new_tokens=int(gen.max_new_tokens), temperature=float(gen.temperature), top_p=float(gen.top_p),
        do_sample=bool(gen.do_sample), num_samples=k, seed=int(seed) if gen.do_sample else None,
    )  # fmt: skip


RETRY_KEYS = ("do_sample", "num_samples", "temperature", "top_p")


def _retry_params(first: SamplingParams, retry: Any, seed: int) -> SamplingParams | None:
    """``generation.retry``: what the reflection attempts change of the first attempt's sampling (None = nothing)."""
    if not retry:
        return None
    retry = OmegaConf.to_container(retry, resolve=True) if isinstance(retry, DictConfig) else dict(retry)
    unknown = sorted(set(retry) - set(RETRY_KEYS))
    if unknown:
        raise ValueError(f"generation.retry: unknown keys {unknown}; it takes {list(RETRY_KEYS)}")
    params = replace(first, **retry)
    if params.num_samples > 1 and not params.do_sample:
        raise ValueError("generation.retry.num_samples > 1 needs generation.retry.do_sample=true")
    return replace(params, seed=int(seed) if params.do_sample else None)


def _device(name: str | None) -> str | None:
    import torch

    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else None
    return str(name)


def _fingerprint(cfg: DictConfig, model_folder: Path, data_round: int) -> dict[str, Any]:
    """Everything that changes what a sample's output would be; a resumed session must match it."""
    pick = {
        k: _drop_cosmetic(OmegaConf.to_container(cfg[k], resolve=True))
        for k in ("dataset", "prompt", "checks", "generation")
    }
    return {
        "model": str(Path(model_folder).resolve()),
        "round": data_round,
        "split": str(cfg.split),
        "max_retries": int(cfg.max_retries),
        "seed": int(cfg.seed),
        **pick,
    }


def _drop_cosmetic(node: Any) -> Any:
    """Settings that change no output (progress bars, report files) may differ between sessions; so may an unset
    ``retry`` (runs made before the key existed resume)."""
    if isinstance(node, dict):
        return {
            k: _drop_cosmetic(v)
            for k, v in node.items()
            if k not in ("progress", "report_path") and not (k == "retry" and not v)
        }
    return node


def _check_same_settings(
    previous: dict[str, Any], fingerprint: dict[str, Any], store: RunStore, run_dir: Path
) -> None:
    old = previous.get("fingerprint")
    if not old or not store.finished or old == fingerprint:
        return
    changed = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
    raise ValueError(
        f"{run_dir} holds a synthesis run made with other settings ({', '.join(changed)} differ); "
        "resume it with the original settings or start a new run folder"
    )


def _manifest(
    base: dict[str, Any], store: RunStore, sessions: list[dict[str, Any]], status: str
) -> dict[str, Any]:
    wall = sum(float(s.get("wall_time_s") or 0) for s in sessions)
    loop = sum(float(s.get("loop_seconds") or 0) for s in sessions)  # excludes data and model loading
    samples = sum(int(s.get("samples") or 0) for s in sessions)
    tokens = sum(int((s.get("generation") or {}).get("tokens") or 0) for s in sessions)
    gen_seconds = sum(float((s.get("generation") or {}).get("seconds") or 0) for s in sessions)
    counts = store.tally.to_dict()
    return {
        "status": status,
        **base,
        "counts": counts,
        "acceptance_rate": counts["acceptance_rate"],
        "throughput": {
            "samples_per_s": samples / loop if loop else None,
            "tokens_per_s": tokens / loop if loop else None,
            "generation_tokens_per_s": tokens / gen_seconds if gen_seconds else None,
            "generated_tokens": tokens,
        },
        "wall_time_s": wall,
        "sessions": sessions,
    }


def _rate(stats: GenerationStats) -> float:
    return stats.tokens / stats.seconds if stats.seconds else 0.0


def _resume_hint(hydra_cfg: Any) -> str:
    import shlex

    overrides = [o for o in hydra_cfg.overrides.task if not o.startswith("hydra.run.dir=")]
    words = [*overrides, f"hydra.run.dir={hydra_cfg.runtime.output_dir}"]
    return "Resume after an interruption with: python synthesize.py " + " ".join(map(shlex.quote, words))
