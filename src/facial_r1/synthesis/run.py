"""What ``python synthesize.py`` does: resolve the source model and round, then synthesise batch by batch, resumably.

Outputs, all in the Hydra run folder: ``accepted.jsonl`` (dataset schema, ``description`` = the accepted response,
provenance in ``meta_info["synthesis"]``), ``rejected.jsonl`` (last response and its problems in
``meta_info["synthesis"]``), ``manifest.json`` (rewritten after every batch), ``review.html``, ``.hydra/``.

Resume: run the same command with ``hydra.run.dir=<that run folder>``. Samples already in either file are skipped;
the settings that shape outputs (model, data, prompt, checks, generation) must match the first session's.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from facial_r1.synthesis.engine import GenerationStats, Outcome, make_checker, synthesize_batch
from facial_r1.synthesis.rounds import latest_export, trained_round
from facial_r1.synthesis.store import RunStore, read_manifest, sample_key

log = logging.getLogger(__name__)


def resolve_source_model(model_cfg: DictConfig, output_root: str | Path) -> Path:
    """The model folder to synthesise with: ``model.init_from`` > ``model.path`` > the newest export of any stage.

    ``init_from`` may also be ``latest`` (any stage) or ``latest_<stage>`` (e.g. ``latest_grpo``).
    """
    init_from = model_cfg.get("init_from")
    path = None if OmegaConf.is_missing(model_cfg, "path") else model_cfg.get("path")
    if init_from and str(init_from).startswith("latest"):
        stage = str(init_from)[len("latest_") :] or None
        found = latest_export(output_root, stage)
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
    found = latest_export(output_root)
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


def run_synthesis(cfg: DictConfig, run_dir: Path, resume_hint: str = "") -> float | None:
    """The work of :func:`synthesize` with the run folder given (for tests and notebooks)."""
    import torch
    from hydra.utils import instantiate
    from tqdm.auto import tqdm

    from facial_r1.data.sources import build_source
    from facial_r1.synthesis.review import write_review_html
    from facial_r1.training.lineage import read_card

    started = time.time()
    previous = read_manifest(run_dir)
    model_folder = _resumed_model(cfg.model, previous) or resolve_source_model(
        cfg.model, cfg.paths.output_root
    )
    card = read_card(model_folder)
    data_round = int(cfg.round) if cfg.get("round") is not None else trained_round(model_folder) + 1
    prompt = instantiate(cfg.prompt)
    check_config = instantiate(cfg.checks)
    if card.get("prompt_version") and card["prompt_version"] != prompt.version:
        log.warning(
            "the source model was trained with prompt %s, synthesis uses %s",
            card["prompt_version"],
            prompt.version,
        )

    source = build_source(cfg.dataset)
    records = source.records(str(cfg.split))
    eligible = [r for r in records if r.get("AUs") is not None or r.get("labels")]
    if cfg.get("limit") is not None:
        eligible = eligible[: int(cfg.limit)]
    fingerprint = _fingerprint(cfg, model_folder, data_round)
    provenance = {
        "round": data_round,
        "source_model": str(model_folder),
        "source_stage": card.get("stage", "base"),
        "base_model": card.get("base_model"),
        "prompt_version": prompt.version,
        "split": str(cfg.split),
        "run_dir": str(run_dir),
    }

    with RunStore(run_dir) as store:
        _check_same_settings(previous, fingerprint, store, run_dir)
        todo = [r for r in eligible if sample_key(r) not in store.finished]
        log.info(
            "round %d with %s: %d labelled samples, %d already finished, %d to do. %s",
            data_round, model_folder, len(eligible), len(eligible) - len(todo), len(todo), resume_hint,
        )  # fmt: skip
        sessions = list(previous.get("sessions") or [])
        session: dict[str, Any] = {
            "started": started,
            "samples": 0,
            "wall_time_s": 0.0,
            "resumed": bool(sessions),
        }
        stats = GenerationStats()
        base = {
            "config": OmegaConf.to_container(cfg, resolve=True),
            "fingerprint": fingerprint,
            "source_model": {"folder": str(model_folder), "card": card},
            "round": data_round,
            "split": str(cfg.split),
            "dataset": source.name,
            "prompt_version": prompt.version,
            "samples": {"in_split": len(records), "labelled": len(eligible), "todo_at_start": len(todo)},
        }

        def write_manifest(status: str) -> None:
            session.update(wall_time_s=time.time() - started, generation=stats.to_dict())
            store.write_manifest(_manifest(base, store, [*sessions, session], status))

        write_manifest("running")
        device = _device(cfg.get("device"))
        adapter = instantiate(cfg.model, init_from=str(model_folder), path=None, device=device)
        adapter.model.eval()
        params = _sampling_params(cfg.generation, cfg.seed)
        checker = make_checker(check_config)
        bar = tqdm(total=len(eligible), initial=len(eligible) - len(todo), desc=f"synthesis r{data_round}",
                   disable=not cfg.get("progress", True), dynamic_ncols=True)  # fmt: skip
        batch_size = int(cfg.batch_size)
        loop_started = time.time()
        with torch.inference_mode():
            for start in range(0, len(todo), batch_size):
                accepted, rejected = _synthesize_chunk(
                    todo[start : start + batch_size], adapter, prompt, checker, params, cfg, stats, provenance
                )
                store.append(accepted, rejected)
                session["samples"] += len(accepted) + len(rejected)
                session["loop_seconds"] = time.time() - loop_started
                write_manifest("running")
                bar.update(len(accepted) + len(rejected))
                bar.set_postfix(accept=f"{store.tally.acceptance_rate or 0:.1%}", tok_s=f"{_rate(stats):.0f}")
                if float(cfg.get("debug_sleep_per_batch") or 0) > 0:
                    time.sleep(float(cfg.debug_sleep_per_batch))  # test-only: makes a run slow enough to kill
        bar.close()
        write_manifest("complete")
        review = cfg.get("review") or {}
        write_review_html(run_dir, max_rows=review.get("max_rows"), thumbnail=int(review.get("thumbnail", 160)),
                          images=str(review.get("images", "embed")))  # fmt: skip
        log.info(
            "done: %d accepted, %d rejected (%.1f%% accepted) -> %s",
            store.tally.accepted, store.tally.rejected, 100 * (store.tally.acceptance_rate or 0), run_dir,
        )  # fmt: skip
        return store.tally.acceptance_rate


def _synthesize_chunk(chunk, adapter, prompt, checker, params, cfg, stats, provenance):
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
            broken.append(error_row(record, provenance, str(err)))
    outcomes = synthesize_batch(
        adapter, readable, images, prompt, checker, params, max_retries=int(cfg.max_retries), stats=stats
    )
    accepted = [accepted_row(o, provenance) for o in outcomes if o.accepted]
    return accepted, [rejected_row(o, provenance) for o in outcomes if not o.accepted] + broken


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


def _sampling_params(gen: DictConfig, seed: int):
    from facial_r1.models.adapter import SamplingParams

    k = int(gen.num_samples)
    if k > 1 and not gen.do_sample:
        raise ValueError(
            "generation.num_samples > 1 needs generation.do_sample=true (greedy samples are identical)"
        )
    return SamplingParams(
        max_new_tokens=int(gen.max_new_tokens), temperature=float(gen.temperature), top_p=float(gen.top_p),
        do_sample=bool(gen.do_sample), num_samples=k, seed=int(seed) if gen.do_sample else None,
    )  # fmt: skip


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
    """Settings that change no output (progress bars, report files) may differ between sessions."""
    if isinstance(node, dict):
        return {k: _drop_cosmetic(v) for k, v in node.items() if k not in ("progress", "report_path")}
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
    overrides = [o for o in hydra_cfg.overrides.task if not o.startswith("hydra.run.dir=")]
    return "Resume after an interruption with: python synthesize.py " + " ".join(
        [*overrides, f"hydra.run.dir={hydra_cfg.runtime.output_dir}"]
    )
