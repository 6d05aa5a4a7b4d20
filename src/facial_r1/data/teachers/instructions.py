"""Instruction rows: the stand-in for the instruction following a real checkpoint brings to stage 3.

A real VLM follows the ground-truth-conditioned synthesis prompt and the reflection prompt zero-shot. The embedded tiny
model only ever reads the user prompt, so on its own it ignores both (round-1 acceptance ~26 %, README). The stand-in:
part of the SFT teacher samples is *also* rendered with those two prompts, with the **same teacher target** - no new
teacher text, no new faces, only the two other prompt texts the synthesis engine will send:

* a ``synthesis`` row: :meth:`PromptTemplate.synthesis_text` (the user prompt plus "Truth: AUs ... Answer ...") ->
  the teacher's response;
* a ``reflection`` row: :meth:`PromptTemplate.reflection_text` with a flawed previous response and the problems the
  synthesis checks find in it (:func:`facial_r1.synthesis.checks.triple_check`, so the wording is exactly what the
  engine quotes back) -> the teacher's response.

The flawed previous response is the template teacher's text for a corrupted (AUs, emotion) pair, one corruption per
row drawn from :data:`CORRUPTIONS` by (seed, record id): an omitted gold AU, an added AU the face does not show, both,
a wrong emotion (conclusion and answer), or a reasoning that concludes the gold emotion while the answer names
another (a consistency failure). These are the failure kinds the checks report on the model's own responses.

Each row keeps its record (image, labels) and carries ``meta_info["sft_prompt"]`` (``kind``, and for reflection
``previous`` and ``problems``); :meth:`PromptTemplate.sft_text` turns that into the prompt the SFT loss conditions on.
Only rows whose description a teacher wrote get instruction copies (not synthesised rows: their prompt is the user
prompt by construction of the round's data). A teacher row marked ``meta_info["instructions_only"]`` (a round's
``dataset.keep_sft_prompts=instructions``) trains only through its copies: the user-prompt row itself is left out.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from facial_r1.data.prompts import defined_aus, offered_labels
from facial_r1.data.teachers.noise import stable_rng
from facial_r1.facs import sort_aus

KINDS = ("synthesis", "reflection")
INSTRUCTIONS_ONLY = "instructions_only"  # meta_info key: the row is a source of instruction copies only
CORRUPTIONS = ("omit_au", "extra_au", "swap_au", "wrong_emotion", "inconsistent_answer")


def check_fractions(fractions: Mapping[str, Any] | None) -> dict[str, float]:
    """``{synthesis: f, reflection: f}`` with each fraction in [0, 1]; None = no instruction rows."""
    out = {kind: 0.0 for kind in KINDS}
    for key, value in dict(fractions or {}).items():
        if key not in KINDS:
            raise ValueError(f"stage.instruction_rows.{key}: unknown kind; allowed: {list(KINDS)}")
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"stage.instruction_rows.{key}={value!r}: must be a fraction in [0, 1]")
        out[key] = float(value)
    return out


def is_instructions_only(record: dict[str, Any]) -> bool:
    """A teacher row that trains only through its instruction copies (module docstring)."""
    meta = record.get("meta_info") or {}
    return bool(meta.get(INSTRUCTIONS_ONLY)) and not meta.get("sft_prompt")


def is_teacher_row(record: dict[str, Any]) -> bool:
    """A row whose description a teacher wrote (synthesised rows carry ``meta_info["synthesis"]``)."""
    return bool(record.get("description")) and not (record.get("meta_info") or {}).get("synthesis")


def instruction_rows(
    records: Sequence[dict[str, Any]],
    fractions: Mapping[str, Any] | None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Synthesis- and reflection-prompt copies of a seeded ``fraction`` of the teacher rows of ``records``.

    Each kind draws its own subset (a record may get both copies). Rows are returned synthesis first, each in input
    order; the inputs are not modified. A reflection row is skipped (never happens with the corruptions above on a
    labelled record) when its corrupted response would pass the checks.
    """
    from facial_r1.data.teachers.template import TemplateTeacher
    from facial_r1.synthesis.checks import triple_check

    fractions = check_fractions(fractions)
    pool = [r for r in records if is_teacher_row(r) and (r.get("AUs") is not None or r.get("labels"))]
    writer = TemplateTeacher(seed=seed)
    out: list[dict[str, Any]] = []
    for kind in KINDS:
        k = round(fractions[kind] * len(pool))
        if k == 0:
            continue
        chosen = sorted(random.Random(f"{seed}/{kind}").sample(range(len(pool)), k))
        for index in chosen:
            record = pool[index]
            spec: dict[str, Any] = {"kind": kind}
            if kind == "reflection":
                previous, corruption = flawed_response(record, writer, seed)
                check = triple_check(previous, record)
                if check.passed:
                    continue
                spec.update(previous=previous, problems=list(check.problems), corruption=corruption)
            meta = {**(record.get("meta_info") or {}), "sft_prompt": spec}
            out.append({**record, "meta_info": meta})
    return out


def flawed_response(record: dict[str, Any], writer: Any, seed: int = 0) -> tuple[str, str]:
    """A plausible wrong response for ``record`` and the name of its corruption (module docstring)."""
    rid = str(record.get("id", ""))
    rng = stable_rng(seed, rid, "reflection")
    gold_aus = list(record.get("AUs") or [])
    labels = record.get("labels") or []
    emotion = labels[0] if labels else writer.targets(record)[1]
    options = [c for c in CORRUPTIONS if _applies(c, record, gold_aus)]
    corruption = rng.choice(options)
    aus, said = list(writer.targets(record)[0]), emotion
    extra_pool = [f"AU{n}" for n in defined_aus(record) if f"AU{n}" not in set(gold_aus)]
    if corruption in ("omit_au", "swap_au"):
        aus.remove(rng.choice(aus))
    if corruption in ("extra_au", "swap_au"):
        aus.append(rng.choice(extra_pool))
    other = [label for label in offered_labels(record) if label != emotion]
    if corruption == "wrong_emotion":
        said = rng.choice(other)
    text = writer.render(sort_aus(aus), said, rid)
    if corruption == "inconsistent_answer":  # the reasoning concludes the gold emotion, the answer does not
        text = text.replace(f"<answer>{emotion}</answer>", f"<answer>{rng.choice(other)}</answer>")
    return text, corruption


def _applies(corruption: str, record: dict[str, Any], gold_aus: list[str]) -> bool:
    """Only corruptions the record's labels can expose (an AU error needs gold AUs, an emotion error a label)."""
    if corruption in ("omit_au", "swap_au"):
        return record.get("AUs") is not None and bool(gold_aus)
    if corruption == "extra_au":
        return record.get("AUs") is not None
    if corruption == "wrong_emotion":
        return bool(record.get("labels"))
    return True  # inconsistent_answer needs no label: the consistency check applies to every sample
