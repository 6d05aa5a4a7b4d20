"""A KV cache layer with a preallocated buffer, for the decoding loop of the rollout engine.

Why: transformers' ``DynamicLayer.update`` grows the cache with ``torch.cat([past, new])``, which copies every past
key and value at every decoding step. In our rollout the prompt is prefilled once per prompt and the cache is then
expanded to the G samples, so each step copied B x G rows x (prompt + t) positions per layer: with a 635-token prompt
that ``torch.cat`` was ~29 % of the ``hf`` engine's decode loop. Once the prefill is done and the cache expanded, the
final length is known (prompt + ``max_new_tokens``), so :func:`preallocate` moves each layer into a buffer of that
length; :meth:`PreallocatedLayer.update` then writes the new keys/values in place and returns views up to the filled
length. The attention sees exactly the same keys, values and lengths as with ``DynamicLayer`` (the same
``get_seq_length`` / ``get_mask_sizes``), so rollouts are unchanged for a fixed seed.

Only the no-grad decoding loop uses it: the log-prob recomputation (``completion_logprobs``) needs gradients through
the cache and runs one forward over the completions, so it keeps ``DynamicCache``.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """A full-attention cache layer whose keys/values live in buffers of a fixed capacity along the sequence axis.

    ``keys`` / ``values`` are always views ``buffer[:, :, :length]`` (shape ``[batch, heads, length, head_dim]``, as
    for ``DynamicLayer``), so the inherited ``get_seq_length`` and ``get_mask_sizes`` hold. ``update`` beyond the
    capacity raises instead of silently reallocating.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, capacity: int):
        super().__init__()
        length = keys.shape[-2]
        if capacity < length:
            raise ValueError(f"capacity {capacity} is smaller than the {length} cached positions")
        self.device = keys.device
        self._key_buffer = keys.new_empty((*keys.shape[:-2], capacity, keys.shape[-1]))
        self._value_buffer = values.new_empty((*values.shape[:-2], capacity, values.shape[-1]))
        self._key_buffer[..., :length, :].copy_(keys)
        self._value_buffer[..., :length, :].copy_(values)
        self._length = length
        self.is_initialized = True
        self._refresh_views()

    @classmethod
    def from_layer(cls, layer: DynamicLayer, extra_tokens: int) -> PreallocatedLayer:
        """Copy a filled ``DynamicLayer`` into a buffer with room for ``extra_tokens`` more positions."""
        return cls(layer.keys, layer.values, layer.keys.shape[-2] + extra_tokens)

    @property
    def capacity(self) -> int:
        return self._key_buffer.shape[-2]

    def _refresh_views(self) -> None:
        self.keys = self._key_buffer[..., : self._length, :]
        self.values = self._value_buffer[..., : self._length, :]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new positions in place (no copy of the past) and return the filled views."""
        end = self._length + key_states.shape[-2]
        if end > self.capacity:
            raise RuntimeError(
                f"preallocated KV cache full: {end} positions needed, capacity {self.capacity}"
            )
        self._key_buffer[..., self._length : end, :].copy_(key_states)
        self._value_buffer[..., self._length : end, :].copy_(value_states)
        self._length = end
        self._refresh_views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._length

    def get_max_length(self) -> int:
        return self.capacity

    # The rest of the layer interface, kept consistent with the buffers (not used by the rollout loop).
    def reset(self) -> None:
        self._length = 0
        self._refresh_views()

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative number: how many positions to remove")
        self._length = max(self._length + tokens_to_remove, 0)
        self._refresh_views()

    def _select_rows(self, index: torch.Tensor) -> None:
        index = index.to(self._key_buffer.device)
        self._key_buffer = self._key_buffer.index_select(0, index)
        self._value_buffer = self._value_buffer.index_select(0, index)
        self._refresh_views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._select_rows(indices)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._select_rows(beam_idx)

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._key_buffer = self._key_buffer.repeat_interleave(repeats, dim=0)
        self._value_buffer = self._value_buffer.repeat_interleave(repeats, dim=0)
        self._refresh_views()

    def offload(self) -> None:
        raise NotImplementedError("PreallocatedLayer does not support offloading")

    def prefetch(self) -> None:
        raise NotImplementedError("PreallocatedLayer does not support offloading")


def preallocate(cache: Cache, extra_tokens: int) -> Cache:
    """Switch every filled full-attention ``DynamicLayer`` of ``cache`` to a :class:`PreallocatedLayer` with room for
    ``extra_tokens`` more positions (in place; returns ``cache``). Other layer types (sliding window...) are kept."""
    if cache.offloading:
        raise NotImplementedError("preallocate: offloaded caches are not supported")
    for i, layer in enumerate(cache.layers):
        if type(layer) is DynamicLayer and layer.is_initialized and layer.keys.dim() == 4:
            cache.layers[i] = PreallocatedLayer.from_layer(layer, extra_tokens)
    return cache
