"""Model family adapters. Everything Qwen2.5-VL-specific lives in :mod:`facial_r1.models.qwen2_5_vl`."""
