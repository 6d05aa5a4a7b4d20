"""GRPO (stage 2): advantages, the clipped surrogate with a KL penalty, loss aggregation, log-probs and masks."""
