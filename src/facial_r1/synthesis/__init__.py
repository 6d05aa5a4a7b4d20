"""Stage 3: the model writes its own training data, checked against the ground truth, in resumable rounds.

``python synthesize.py`` (see ``conf/synthesize.yaml``): for each labelled sample, a ground-truth-conditioned prompt ->
generation -> the checks: AUs, emotion, format, reasoning-answer consistency (:mod:`.checks`) -> reflection retries
on failure (:mod:`.engine`) -> append-only, crash-safe output files (:mod:`.store`) -> a review page and a
review-apply command (:mod:`.review`) -> the next round's training data through ``dataset=synth`` (:mod:`.rounds`).
:mod:`.run` ties them together.
"""
