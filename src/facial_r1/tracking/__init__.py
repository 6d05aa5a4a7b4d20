"""Experiment tracking: run identity (name, group, tags, id), logger construction, media tables, the Trackio logger."""
