"""Data: the sample record, SynthFACS, dataset sources, prompts and teachers."""
