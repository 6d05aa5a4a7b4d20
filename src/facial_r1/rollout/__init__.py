"""Rollout engines: what samples completions for GRPO, evaluation and synthesis (see ``types.RolloutPrompt``)."""
