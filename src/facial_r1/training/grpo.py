"""Stage 2: GRPO with verifiable rewards, a LightningModule with manual optimisation.

``training_step`` reads as the algorithm: rollout -> score -> advantages -> old / reference log-probs -> update ->
log. The math lives in :mod:`facial_r1.grpo.objective` (plain torch, unit-tested); the model-family work (prefix-
shared rollouts, log-prob recomputation, the reference policy) in the adapter.

Departures from the published Facial-R1 trainer, on purpose:
- one loss per batch with one advantage per completion (the official code adds the loss once per reward function,
  weighting reasoning tokens more); per-token weights are not reproduced;
- the k3 KL is clamped (``kl_clamp``; null reproduces the unclamped official term);
- rollouts share the prompt prefill across the G samples (HF ``generate`` in the official code repeats it G times);
- zero-variance groups can be masked or resampled (the official code keeps them).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import OmegaConf

from facial_r1.data.images import load_image
from facial_r1.grpo.config import GRPOConfig, LossAggregation, ZeroStd
from facial_r1.grpo.objective import build_loss_mask, group_advantages, grpo_loss
from facial_r1.grpo.tis import truncated_importance_weights
from facial_r1.models.adapter import PromptBatch, Rollout, SamplingParams
from facial_r1.rollout.types import rollout_prompts
from facial_r1.training.base import StageModule

log = logging.getLogger(__name__)


@dataclass
class Group:
    """One prompt and its G scored completions (the unit that resampling swaps)."""

    record: dict[str, Any]
    image: Any
    ids: torch.Tensor  # [G, T]
    mask: torch.Tensor  # [G, T]
    logprobs: torch.Tensor  # [G, T]
    truncated: torch.Tensor  # [G]
    texts: list[str]
    rewards: torch.Tensor  # [G] total
    components: dict[str, list[float | None]]

    @property
    def flat(self) -> bool:
        return bool((self.rewards.max() - self.rewards.min()).abs() == 0)


@dataclass
class RolloutBatch:
    """The scored rollout of one step: B groups stacked, with the prompts encoded once."""

    groups: list[Group]
    prompts: PromptBatch
    rollout: Rollout
    rewards: torch.Tensor  # [N]
    components: dict[str, list[float | None]]
    resampled: int = 0


class GRPOModule(StageModule):
    def __init__(self, adapter, prompt, stage, reward=None, resample_records=None, engine=None, **kwargs):
        """``resample_records``: where ``zero_std=resample`` draws fresh prompts; ``engine``: the rollout engine
        (``rollout`` config group; hf when None); ``kwargs``: :class:`StageModule`'s."""
        super().__init__(adapter, prompt, stage, reward=reward, **kwargs)
        from facial_r1.rollout.hf import HFEngine

        self.engine = engine or HFEngine(adapter)  # the rollout engine (``rollout`` config group)
        self.automatic_optimization = False
        objective = stage.objective
        self.cfg = GRPOConfig(
            **(
                OmegaConf.to_container(objective, resolve=True)
                if OmegaConf.is_config(objective)
                else objective
            )
        )
        self.micro_batch_size = stage.get("micro_batch_size")
        # Truncated importance sampling level (None = off); ``auto`` is on for engines not sampling with the policy.
        self.correction = self.cfg.correction_level(getattr(self.engine, "exact_policy_logprobs", False))
        log.info("rollout correction (TIS): %s", self.correction or "off")
        self.resample_records = list(resample_records or [])
        self.last_step_logs: dict[str, float] = {}  # the last training step's metrics (see ``log_step``)

    def configure_model(self) -> None:
        """Snapshot the reference before Lightning restores a checkpoint (so a resumed run's KL stays anchored to the
        starting export, not to the restored weights) and before any sharding (the copy is sharded alike)."""
        if self.cfg.beta > 0:
            self.adapter.init_reference()  # no-op with LoRA: the reference is the model with its adapter disabled
        super().configure_model()

    def on_train_start(self) -> None:
        """The engine was built over the starting export; a resumed run (``ckpt_path``) has since restored later
        weights into the policy, so the first rollout must come from those (a no-op for hf)."""
        if self.trainer.ckpt_path is not None:
            self.engine.sync(self.adapter)

    # ------------------------------------------------------------------ the algorithm
    def training_step(self, batch: dict[str, list], batch_idx: int) -> None:
        t0 = time.perf_counter()
        step = self.global_step  # the optimizer step that drew this rollout (before the update below)
        scored = self.rollout_and_score(batch["records"], batch["images"])  # 1-2. rollout, score
        t1 = time.perf_counter()
        self.engine.sleep()  # rollout.sleep_level: a vLLM engine frees its GPU memory until the sync in update()
        ro = scored.rollout
        advantages, adv_stats = self.advantages(scored.rewards, ro.prompt_index)  # 3. advantages
        loss_mask = build_loss_mask(ro.completion_mask, ro.truncated, adv_stats.zero_std, self.cfg)
        # 4. old / ref log-probs; pi_old also for the rollout engine's importance weights (with mu = 1 the ratio
        # keeps old_logp = None, so it stays exactly 1)
        need_old = self.cfg.num_iterations > 1 or self.correction is not None
        policy_logp = self.policy_logprobs(scored) if need_old else None
        old_logp = policy_logp if self.cfg.num_iterations > 1 else None
        ref_logp = self.reference_logprobs(scored) if self.cfg.beta > 0 else None
        rollout_weights, correction_logs = self.rollout_weights(ro, policy_logp)
        metrics = self.update(
            scored, advantages.to(self.device), loss_mask.to(self.device), old_logp, ref_logp, rollout_weights
        )  # 5
        metrics.update(correction_logs)
        t2 = time.perf_counter()
        self.log_step(
            scored, advantages, adv_stats, metrics, rollout_s=t1 - t0, update_s=t2 - t1, step=step
        )  # 6. log

    # ------------------------------------------------------------------ 1-2. rollout and score
    def sampling_params(self, num_prompts: int, salt: int = 0) -> SamplingParams:
        """G samples per prompt, each prompt seeded by (seed, step, salt, its position in the global batch).

        A resumed run draws exactly the rollouts the killed one would have, and a prompt samples the same completions
        whichever rank holds it: a DDP run reproduces the single-process run with the same global batch.
        """
        base = ((int(self.stage.seed) * 1_000_003 + self.global_step * 101) * 7 + salt) * 100_003
        first = self.global_rank * num_prompts
        return SamplingParams(
            max_new_tokens=self.cfg.max_completion_length,
            temperature=self.cfg.temperature,
            top_p=self.cfg.top_p,
            do_sample=True,
            num_samples=self.cfg.num_generations,
            prompt_seeds=tuple(base + first + b for b in range(num_prompts)),
        )

    def _groups(self, records: list[dict], images: list, salt: int) -> tuple[list[Group], PromptBatch]:
        """Roll out and score B prompts; returns their groups and the encoded prompts (reused by ``_stack``)."""
        requests = rollout_prompts(self.adapter, images, [self.prompt.user_text(r) for r in records])
        prompts = self.adapter.encode_chat([r.chat_text for r in requests], images)  # for scoring
        ro = self.engine.generate(requests, self.sampling_params(len(records), salt), encoded=prompts)
        samples = [records[i] for i in ro.prompt_index.tolist()]
        scores = self.reward(ro.texts, samples)
        total = torch.tensor(scores.total, dtype=torch.float32)
        G = self.cfg.num_generations
        groups = []
        for g, (record, image) in enumerate(zip(records, images, strict=True)):
            sl = slice(g * G, (g + 1) * G)
            groups.append(
                Group(
                    record,
                    image,
                    ro.completion_ids[sl].cpu(),
                    ro.completion_mask[sl].cpu(),
                    ro.logprobs[sl].cpu(),
                    ro.truncated[sl].cpu(),
                    ro.texts[sl],
                    total[sl],
                    {k: list(v[sl]) for k, v in scores.per_component.items()},
                )
            )
        return groups, prompts

    def rollout_and_score(self, records: list[dict], images: list) -> RolloutBatch:
        """B prompts x G completions, scored; with ``zero_std=resample``, flat groups are swapped for fresh prompts."""
        groups, prompts = self._groups(records, images, salt=0)
        resampled = 0
        if self.cfg.zero_std == ZeroStd.RESAMPLE and self.resample_records:
            seed = (int(self.stage.seed) * 7919 + self.global_step) * 1009 + self.global_rank
            gen = torch.Generator().manual_seed(seed)
            for round_ in range(1, self.cfg.max_resample_rounds + 1):
                flat = [i for i, g in enumerate(groups) if g.flat]
                if not self._any_rank(bool(flat)):
                    break
                if not flat:
                    # Sharded forwards are collectives: roll out one prompt to keep in step with the others, discard it.
                    spare = self.resample_records[:1]
                    self._groups(spare, [load_image(spare[0])], salt=round_)
                    continue
                picks = torch.randint(len(self.resample_records), (len(flat),), generator=gen).tolist()
                fresh_records = [self.resample_records[p] for p in picks]
                fresh, _ = self._groups(fresh_records, [load_image(r) for r in fresh_records], salt=round_)
                for slot, new in zip(flat, fresh, strict=True):
                    if not new.flat:
                        groups[slot] = new
                        resampled += 1
        # No group swapped: the prompts encoded for the rollout are exactly the stacked groups' prompts.
        return self._stack(groups, resampled, prompts if resampled == 0 else None)

    def _any_rank(self, flag: bool) -> bool:
        """``flag`` on any rank, where ranks must agree (sharded parameters); else this rank's own ``flag``."""
        if getattr(self.adapter, "decode_sync", None) is None or self.trainer.world_size <= 1:
            return flag
        value = torch.tensor(float(flag), device=self.device)
        return bool(self.trainer.strategy.reduce(value, reduce_op="max") > 0)

    def _stack(self, groups: list[Group], resampled: int, prompts: PromptBatch | None = None) -> RolloutBatch:
        """Stack the groups into one rollout batch; ``prompts`` (already encoded, in group order) is re-encoded if None."""
        T = max(g.ids.shape[1] for g in groups)

        def pad(x: torch.Tensor, value: float) -> torch.Tensor:
            return torch.nn.functional.pad(x, (0, T - x.shape[1]), value=value)

        G = self.cfg.num_generations
        if prompts is None:
            prompts = self.adapter.encode_prompts(
                [g.image for g in groups], [self.prompt.user_text(g.record) for g in groups]
            )
        rollout = Rollout(
            prompt_index=torch.arange(len(groups)).repeat_interleave(G),
            completion_ids=torch.cat([pad(g.ids, self.adapter.pad_id) for g in groups]),
            completion_mask=torch.cat([pad(g.mask, 0.0) for g in groups]),
            logprobs=torch.cat([pad(g.logprobs, 0.0) for g in groups]),
            truncated=torch.cat([g.truncated for g in groups]),
            texts=[t for g in groups for t in g.texts],
        )
        components = {k: [v for g in groups for v in g.components[k]] for k in groups[0].components}
        return RolloutBatch(
            groups, prompts, rollout, torch.cat([g.rewards for g in groups]), components, resampled
        )

    # ------------------------------------------------------------------ 3. advantages
    def advantages(self, rewards: torch.Tensor, prompt_index: torch.Tensor):
        """Group advantages of this rank's completions, computed over the *global* rollout batch.

        Groups never cross ranks, so ``group`` scaling is local anyway; gathering makes ``batch`` scaling and the
        zero-std fraction those of the whole batch, as in a single process holding every rank's prompts.
        """
        world, rank, n = self.trainer.world_size, self.global_rank, rewards.numel()
        B = n // self.cfg.num_generations
        if world > 1:  # rank r's prompts become groups r*B .. r*B + B-1 of the global batch
            rewards = self.all_gather(rewards.to(self.device)).reshape(-1).cpu()
            prompt_index = torch.cat([prompt_index + r * B for r in range(world)])
        advantages, stats = group_advantages(
            rewards,
            prompt_index,
            scale=self.cfg.advantage_scale,
            eps=self.cfg.adv_eps,
            unbiased=self.cfg.adv_unbiased_std,
        )
        if world == 1:
            return advantages, stats
        mine, my_groups = slice(rank * n, (rank + 1) * n), slice(rank * B, (rank + 1) * B)
        local = dataclasses.replace(  # this rank's rows; frac_zero_std stays the global batch's
            stats,
            group_index=stats.group_index[mine] - rank * B,
            group_mean=stats.group_mean[my_groups],
            group_std=stats.group_std[my_groups],
            zero_std_group=stats.zero_std_group[my_groups],
            zero_std=stats.zero_std[mine],
            valid=stats.valid[mine],
        )
        return advantages[mine], local

    # ------------------------------------------------------------------ 4. old / reference log-probs
    @torch.no_grad()
    def policy_logprobs(self, scored: RolloutBatch) -> torch.Tensor:
        ro = scored.rollout
        logp, _ = self.adapter.completion_logprobs(
            scored.prompts,
            ro.completion_ids,
            ro.prompt_index,
            temperature=self.cfg.temperature,
            micro_batch_size=self.micro_batch_size,  # no-grad passes are bounded like the update's
        )
        return logp

    @torch.no_grad()
    def reference_logprobs(self, scored: RolloutBatch) -> torch.Tensor:
        ro = scored.rollout
        with self.adapter.reference() as ref_model:
            logp, _ = self.adapter.completion_logprobs(
                scored.prompts,
                ro.completion_ids,
                ro.prompt_index,
                temperature=self.cfg.temperature,
                model=ref_model,
                micro_batch_size=self.micro_batch_size,
            )
        return logp

    @torch.no_grad()
    def rollout_weights(self, ro: Rollout, policy_logp: torch.Tensor | None):
        """TIS weights [N,T] (pi_old / pi_engine, capped) and the mismatch metrics; (None, {}) without correction.

        Taken over every sampled token (the completion mask): the mismatch is the engine's, whatever the loss mask
        drops afterwards.
        """
        if self.correction is None:
            return None, {}
        weights, stats = truncated_importance_weights(
            policy_logp,
            ro.logprobs.to(policy_logp.device),
            ro.completion_mask.to(policy_logp.device),
            cap=self.cfg.rollout_correction_cap,
            level=self.correction,
        )
        return weights, {
            "rollout/mismatch_kl": float(stats.mismatch_kl),
            "rollout/tis_capped_frac": float(stats.capped_frac),
            "rollout/tis_weight_mean": float(stats.mean_weight),
        }

    # ------------------------------------------------------------------ 5. update
    def _micro_batches(self, n: int) -> list[torch.Tensor]:
        size = int(self.micro_batch_size or n)
        return list(torch.arange(n).split(size))

    def _micro_weights(self, mask: torch.Tensor, batches: list[torch.Tensor]) -> list[float]:
        """Scale of each micro-batch's loss so that, summed over micro-batches and averaged over ranks by the DDP/FSDP
        gradient reduction, the losses equal the aggregation over the whole global rollout batch.

        ``grpo`` and ``bnpo`` normalise by a count over the global batch (active sequences, active tokens): dividing
        by this rank's count would weight ranks with masked groups more than a single process does. ``dapo`` is
        divided by the global token count inside the loss; ``dr_grpo`` by a constant.
        """
        mode = self.cfg.loss_aggregation
        if mode == LossAggregation.DAPO:
            return [1.0] * len(batches)
        if mode == LossAggregation.DR_GRPO:
            return [len(idx) / mask.shape[0] for idx in batches]
        counted = mask if mode == LossAggregation.BNPO else (mask.sum(1, keepdim=True) > 0).float()
        denom = float(self._rank_mean(counted.sum()).clamp(min=1))
        return [float(counted[idx].sum()) / denom for idx in batches]

    def _rank_mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a count over ranks (= the global count / world size); the count itself in one process."""
        if self.trainer.world_size <= 1:
            return value.float()
        return self.trainer.strategy.reduce(value.float().to(self.device), reduce_op="mean").cpu()

    def update(
        self, scored, advantages, loss_mask, old_logp, ref_logp, rollout_weights=None
    ) -> dict[str, float]:
        """mu optimizer steps on this rollout batch, each accumulated over micro-batches of completions."""
        opt, sched = self.optimizers(), self.lr_schedulers()
        ro = scored.rollout
        ids, pidx = ro.completion_ids.to(self.device), ro.prompt_index.to(self.device)
        num_active = self._rank_mean(loss_mask.sum()).to(self.device)  # dapo: the global token count / world
        batches = self._micro_batches(ids.shape[0])
        weights = self._micro_weights(loss_mask.cpu(), batches)
        sums: dict[str, float] = {}
        entropy_sum, entropy_tokens = 0.0, 0.0
        for _ in range(self.cfg.num_iterations):
            for idx, weight in zip(batches, weights, strict=True):
                idx = idx.to(self.device)
                logp, entropy = self.adapter.completion_logprobs(
                    scored.prompts, ids[idx], pidx[idx], temperature=self.cfg.temperature, with_entropy=True
                )
                loss, metrics = grpo_loss(
                    logp,
                    None if old_logp is None else old_logp[idx],
                    None if ref_logp is None else ref_logp[idx],
                    advantages[idx],
                    loss_mask[idx],
                    self.cfg,
                    num_active_tokens=num_active,
                    rollout_weights=None if rollout_weights is None else rollout_weights[idx],
                )
                self.manual_backward(loss * weight)
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * weight
                m = loss_mask[idx].bool()
                entropy_sum += float(entropy[m].sum())
                entropy_tokens += float(m.sum())
            if self.cfg.max_grad_norm:
                self.clip_gradients(
                    opt, gradient_clip_val=self.cfg.max_grad_norm, gradient_clip_algorithm="norm"
                )
            opt.step()
            opt.zero_grad(set_to_none=True)
            if sched is not None:
                sched.step()
        # The engine samples from the updated policy (a no-op for hf). Once per rollout batch: with mu > 1 nothing
        # samples between the mu optimizer steps, and each sync would wake a sleeping engine (rollout.sleep_level).
        self.engine.sync(self.adapter)
        out = {k: v / self.cfg.num_iterations for k, v in sums.items()}
        out["policy/entropy"] = entropy_sum / max(entropy_tokens, 1.0)
        return out

    # ------------------------------------------------------------------ 6. log
    def log_step(
        self, scored, advantages, adv_stats, metrics, *, rollout_s: float, update_s: float, step: int
    ) -> None:
        """Step metrics straight to the loggers every ``trainer.log_every_n_steps`` steps (and at step 0).

        Not through ``self.log_dict``: Lightning walks every logged key each step (its result collection, sync and
        callback metrics), 45-80 ms per step for these ~30 scalars. Only the progress-bar reward goes through
        ``self.log``; the whole dict stays readable as ``self.last_step_logs`` (rank-local, every step).
        """
        ro = scored.rollout
        lengths = ro.completion_mask.sum(1)
        logs: dict[str, float] = {
            "train/reward/total": float(scored.rewards.mean()),
            "train/reward/total_std": float(scored.rewards.std()) if scored.rewards.numel() > 1 else 0.0,
            "train/advantage/mean": float(advantages.mean()),
            "train/advantage/std": float(advantages.std()) if advantages.numel() > 1 else 0.0,
            "train/advantage/abs_mean": float(advantages.abs().mean()),
            "train/policy/zero_std_frac": float(adv_stats.frac_zero_std),
            "train/policy/resampled_groups": float(scored.resampled),
            "train/completion/length": float(lengths.float().mean()),
            "train/completion/truncated_rate": float(ro.truncated.float().mean()),
            "train/rollout/tokens_per_s": float(lengths.sum()) / max(rollout_s, 1e-9),
            "train/time/rollout_s": rollout_s,
            "train/time/update_s": update_s,
            "train/lr": float(self.optimizers().param_groups[0]["lr"]),
        }
        for name, values in scored.components.items():
            present = torch.tensor([v for v in values if v is not None], dtype=torch.float32)
            if present.numel():
                logs[f"train/reward/{name}"] = float(present.mean())
                logs[f"train/reward/{name}_std"] = float(present.std()) if present.numel() > 1 else 0.0
            else:  # not applicable to any completion here: NaN, left out (and out of the mean over ranks)
                logs[f"train/reward/{name}"] = logs[f"train/reward/{name}_std"] = float("nan")
        logs.update({f"train/{k}": float(v) for k, v in metrics.items()})
        self.last_step_logs = logs
        self.log(
            "reward", logs["train/reward/total"], prog_bar=True, logger=False, batch_size=len(scored.groups)
        )
        log_every = int(self.trainer.log_every_n_steps)
        if log_every > 0 and step % log_every == 0:
            scalars = self._mean_over_ranks(logs)  # a collective: every rank reaches it on the same steps
            for lg in self.loggers:
                lg.log_metrics(scalars, step=step)
                lg.save()
        every = int(self.stage.get("log_completions_every_n_steps") or 0)
        if every and self.global_step % every == 0:
            self.log_completions(scored)

    def _mean_over_ranks(self, logs: dict[str, float]) -> dict[str, float]:
        """Each scalar averaged over the ranks that have it (NaN = absent), as ``sync_dist=True`` did; NaNs dropped."""
        if self.trainer.world_size <= 1:
            return {k: v for k, v in logs.items() if not math.isnan(v)}
        keys = sorted(logs)  # the same keys on every rank: fixed names, reward components, loss metrics
        values = torch.tensor([logs[k] for k in keys], dtype=torch.float32, device=self.device)
        present = ~torch.isnan(values)
        strategy = self.trainer.strategy
        sums = strategy.reduce(torch.where(present, values, torch.zeros_like(values)), reduce_op="sum")
        counts = strategy.reduce(present.float(), reduce_op="sum")
        return {k: s / c for k, s, c in zip(keys, sums.tolist(), counts.tolist(), strict=True) if c > 0}

    def log_completions(self, scored: RolloutBatch) -> None:
        """This step's completions beside their faces, with rewards, as a table (W&B and Trackio loggers)."""
        from facial_r1.tracking.media import log_image_table

        G = self.cfg.num_generations
        rows = [
            {
                "step": self.global_step,
                "image": group.image,
                "id": group.record["id"],
                "completion": scored.rollout.texts[g * G + j],
                "reward": float(scored.rewards[g * G + j]),
                **{name: values[g * G + j] for name, values in scored.components.items()},
            }
            for g, group in enumerate(scored.groups)
            for j in range(G)
        ]
        log_image_table(self.loggers, "train/completions", rows, step=self.global_step)
