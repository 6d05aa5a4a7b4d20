"""Where a completion ends (models.sampling.completion_mask): the mask every engine and the GRPO loss share."""

from __future__ import annotations

import torch

from facial_r1.models.sampling import completion_mask


def test_completion_mask_stop_positions_truncation_and_pad():
    tokens = torch.tensor(
        [
            [5, 9, 0, 0],  # stop at 1
            [9, 0, 0, 0],  # stop at 0
            [5, 6, 7, 8],  # stop (another id) at the last position
            [5, 6, 7, 4],  # no stop: truncated
            [5, 6, 0, 0],  # no stop, padded: truncated, pads masked
            [5, 8, 9, 3],  # two stops: the first counts
        ]
    )
    mask, truncated = completion_mask(tokens, stop_ids=[9, 8], pad_id=0)
    assert mask.int().tolist() == [
        [1, 1, 0, 0],
        [1, 0, 0, 0],
        [1, 1, 1, 1],
        [1, 1, 1, 1],
        [1, 1, 0, 0],
        [1, 1, 0, 0],
    ]
    assert truncated.tolist() == [False, False, False, True, True, False]


def test_completion_mask_pad_that_is_also_a_stop():
    # Qwen pads with <|endoftext|>, itself a stop id: its first occurrence is the stop
    mask, truncated = completion_mask(torch.tensor([[5, 9, 9, 9], [5, 6, 7, 4]]), stop_ids=[9], pad_id=9)
    assert mask.int().tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]] and truncated.tolist() == [False, True]
