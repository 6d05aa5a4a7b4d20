"""Token sampling for the rollout engines: temperature, nucleus (top-p), suppressed ids, where a completion ends.
Plain torch."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Set logits outside the smallest set whose probability mass reaches ``top_p`` to -inf. logits: [N, V]."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    # Keep a token if the mass *before* it is below top_p, so the most likely token always survives.
    drop_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_next(
    logits: torch.Tensor,
    *,
    temperature: float,
    top_p: float,
    do_sample: bool,
    generators: Sequence[torch.Generator] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick the next token of each row and return (token [N], its log-prob [N] under the temperature-scaled policy).

    ``generators`` (optional) split the N rows into ``len(generators)`` equal consecutive blocks, block b drawing its
    randomness from generator b only - one generator per prompt makes a prompt's G samples independent of which other
    prompts share the batch (or the rank). The draw is the exponential race argmax_v p_v / E_v with E_v ~ Exp(1),
    an exact sample from p; without generators, ``torch.multinomial`` on the global RNG.

    The log-prob is taken *before* top-p truncation: the policy being optimised is softmax(logits / T), and the
    GRPO loss recomputes exactly that quantity (``token_logprobs_from_logits`` with the same temperature).
    """
    scaled = logits.float() / temperature
    logp = scaled.log_softmax(dim=-1)
    if do_sample:
        probs = top_p_filter(scaled, top_p).softmax(dim=-1)
        if generators:
            noise = torch.empty_like(probs)
            for block, generator in zip(noise.chunk(len(generators)), generators, strict=True):
                block.exponential_(generator=generator)
            tokens = (probs / noise.clamp_min(1e-30)).argmax(dim=-1)
        else:
            tokens = torch.multinomial(probs, 1).squeeze(-1)
    else:
        tokens = scaled.argmax(dim=-1)
    return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1)


def completion_mask(tokens: Tensor, stop_ids: list[int], pad_id: int | None = None) -> tuple[Tensor, Tensor]:
    """Which completion tokens are real: up to and including the first stop token.

    Args:
        tokens: [B,T] right-padded completion ids (the prompt excluded).
        stop_ids: ids that end a completion (Qwen: ``<|im_end|>``, ``<|endoftext|>``).
        pad_id: padding id. Rows with a stop token ignore it (everything after the stop is masked, so pad_id may
            itself be a stop id, as Qwen's ``<|endoftext|>`` is: its first occurrence is the stop). In rows without
            a stop token, pad tokens are masked.

    Returns:
        mask [B,T] bool; truncated [B] bool (no stop token: the completion hit the length limit). For the
        ``mask_truncated`` switch, drop those rows with ``facial_r1.grpo.objective.build_loss_mask``.
    """
    stops = torch.tensor(stop_ids, dtype=tokens.dtype, device=tokens.device)
    is_stop = torch.isin(tokens, stops)  # [B,T]
    has_stop = is_stop.any(-1)
    first = torch.where(has_stop, is_stop.int().argmax(-1), tokens.shape[-1])  # argmax = first True
    mask = torch.arange(tokens.shape[-1], device=tokens.device) <= first.unsqueeze(-1)
    if pad_id is not None:
        mask &= has_stop.unsqueeze(-1) | (tokens != pad_id)
    return mask, ~has_stop
