"""Per-token log-probabilities and entropies from logits, chunked so no [B, T, V] float32 copy exists.

Plain torch, shared by the policy (scoring completions) and the GRPO objective's tests; the vocabulary of a real
checkpoint (151,936) makes a float32 copy of a whole completion batch's logits the largest tensor of a step.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _row_chunks(logits: Tensor, chunk_size: int):
    """Yield (b, t0, t1) so each step touches at most chunk_size x V logits (no [B,T,V] float copy)."""
    for b in range(logits.shape[0]):
        for t0 in range(0, logits.shape[1], chunk_size):
            yield b, t0, min(t0 + chunk_size, logits.shape[1])


def token_logprobs_from_logits(
    logits: Tensor, tokens: Tensor, temperature: float = 1.0, chunk_size: int = 1024
) -> Tensor:
    """log pi(tokens[b,t]) = z[b,t,tokens[b,t]] - logsumexp_v z[b,t,v], with z = logits / temperature.

    Args:
        logits: [B,T,V], any float dtype; logits[:, t] must predict tokens[:, t] (slice the model's output with the
            off-by-one: logits[:, P-1:-1] for completion tokens ids[:, P:]). A non-contiguous slice is fine.
        tokens: [B,T] long.
        temperature: the sampling temperature; dividing by it makes the logps those of the sampling distribution.
        chunk_size: tokens per step; only a chunk_size x V float32 copy exists at a time.

    Returns:
        [B,T] float32, differentiable w.r.t. logits.
    """
    out = []
    for b, t0, t1 in _row_chunks(logits, chunk_size):
        z = logits[b, t0:t1].float() / temperature  # [t,V]
        out.append(z.gather(-1, tokens[b, t0:t1, None]).squeeze(-1) - torch.logsumexp(z, -1))
    return torch.cat(out).view(tokens.shape) if out else logits.new_zeros(tokens.shape, dtype=torch.float32)


def token_entropy_from_logits(logits: Tensor, temperature: float = 1.0, chunk_size: int = 1024) -> Tensor:
    """H[b,t] = logsumexp(z) - sum_v softmax(z)_v z_v, with z = logits / temperature; [B,T,V] -> [B,T] float32."""
    out = []
    for b, t0, t1 in _row_chunks(logits, chunk_size):
        z = logits[b, t0:t1].float() / temperature
        out.append(torch.logsumexp(z, -1) - (torch.softmax(z, -1) * z).sum(-1))
    return (
        torch.cat(out).view(logits.shape[:2])
        if out
        else logits.new_zeros(logits.shape[:2], dtype=torch.float32)
    )
