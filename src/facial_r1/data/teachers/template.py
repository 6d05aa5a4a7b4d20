"""The template teacher: the offline stand-in for the paper's GPT-4o-mini SFT annotator.

It writes ``<think>...</think><answer>...</answer>`` from the gold AUs and emotion: one short clause per AU (its
visible change, then its number in parentheses), in face order (brows, eyes, nose, mouth, chin and jaw), then one
sentence naming the emotion, and the label word as the answer. Short and regular on purpose: the ~0.7M-parameter
default model learns from ~300 such samples. Phrasing varies over a few templates per sentence, chosen from a hash of
(seed, record id), so a record always gets the same text.

Gaps in a record are filled, documented here:
- ``AUs=None`` (emotion-only data such as RAF-DB): the reasoning describes the emotion's prototype AUs
  (``facs.EMOTION_PROTOTYPES``); an emotion without a prototype gets a relaxed-face sentence.
- ``labels=[]`` (AU-only data such as DISFA): the conclusion names the offered label whose prototype has the highest
  Jaccard similarity with the AUs (ties: first in the label set; an empty AU set matches neutral best).
- Neither: ``ValueError`` (nothing to ground the text on).
- ``compound`` set (a compound face, ``labels=[]``): the conclusion and answer name the compound ("sadly angry").

Affect outputs (``intensities=True`` / ``va=True``, for the affect prompt ``compact_affect_v1``): each AU clause
ends in its gold FACS letter, "(AU12, D)" (an AU without a coded level keeps "(AU12)"), and the gold valence and
arousal follow the answer as ``<va>0.42, -0.10</va>`` (two decimals; left out when the record has none).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from tqdm.auto import tqdm

from facial_r1.affect import INTENSITY_LETTERS
from facial_r1.data.prompts import PromptTemplate, load_prompts, offered_labels
from facial_r1.data.schema import DEFAULT_QUESTION
from facial_r1.data.teachers.llm_like import LLMLikeNoise
from facial_r1.data.teachers.noise import TeacherNoise, stable_rng
from facial_r1.data.teachers.openai import check_description
from facial_r1.facs import (
    ACTION_UNITS,
    AU_VOCAB,
    EMOTION_PROTOTYPES,
    EMOTIONS,
    LABEL_ORDERS,
    au_codes,
    au_number,
)

log = logging.getLogger(__name__)

# Face order: brows, eyes, nose, mouth, then chin and jaw.
_FACE_ORDER = (1, 2, 4, 5, 6, 7, 43, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 22, 23, 24, 25, 26, 27, 28, 32,
               17, 29, 30, 31)  # fmt: skip

# A second wording of each AU's visible change (the first is facs.ACTION_UNITS[n].appearance).
_ALT_APPEARANCE = {
    1: "the inner brows are lifted",
    2: "the outer brows are lifted",
    4: "the brows are pulled down and together",
    5: "the upper lids rise and the eyes widen",
    6: "the cheeks are lifted",
    7: "the lids are tightened",
    9: "the nose wrinkles",
    10: "the upper lip is lifted",
    11: "the nasolabial folds deepen",
    12: "the lip corners are pulled up",
    13: "the lip corners rise sharply",
    14: "dimples form at the lip corners",
    15: "the lip corners turn down",
    16: "the lower lip is lowered",
    17: "the chin is raised",
    18: "the lips pucker",
    19: "the tongue shows",
    20: "the lips stretch sideways",
    22: "the lips funnel outward",
    23: "the lips tighten",
    24: "the lips press together",
    25: "the lips part",
    26: "the jaw drops",
    27: "the mouth opens wide",
    28: "the lips are drawn in",
    29: "the jaw juts forward",
    30: "the jaw shifts sideways",
    31: "the jaw is clenched tight",
    32: "the teeth bite the lip",
    43: "the eyes are shut",
}
_OPENERS = ("{obs}.", "Here {obs}.", "In this face {obs}.", "I observe that {obs}.")
_CONCLUSIONS = (
    "These cues indicate {emotion}.",
    "Together these changes indicate {emotion}.",
    "This combination points to {emotion}.",
    "Taken together, the face expresses {emotion}.",
)
_NEUTRAL_CONCLUSIONS = (
    "These cues indicate a neutral expression.",
    "The expression is therefore neutral.",
    "Overall the face reads as neutral.",
)
_RELAXED = (
    "The face is relaxed and the features rest in their default positions.",
    "The facial muscles are relaxed and every feature is at rest.",
    "The brows, eyes and mouth all stay in their resting positions.",
)


def _jaccard(a: set[int], b: set[int]) -> float:
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def best_matching_emotion(aus: Sequence[str], labels: Sequence[str]) -> str:
    """The label whose ``facs.EMOTION_PROTOTYPES`` set is most Jaccard-similar to ``aus`` (first label wins ties)."""
    observed = {au_number(a) for a in aus}
    candidates = [label for label in labels if label in EMOTION_PROTOTYPES] or list(labels)
    return max(candidates, key=lambda label: _jaccard(observed, set(EMOTION_PROTOTYPES.get(label, ()))))


def _join(clauses: list[str]) -> str:
    return clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + " and " + clauses[-1]


class TemplateTeacher:
    """Deterministic AU-grounded reasoning from gold labels, optionally with :class:`TeacherNoise`.

    ``phrasing="varied"`` picks among a few templates per sentence; ``"fixed"`` always uses the first (the most
    regular text, e.g. for ablations on how much phrasing variety the tiny model can absorb). ``intensities`` and
    ``va`` add the affect outputs (module docstring).
    """

    def __init__(
        self,
        seed: int = 0,
        noise: TeacherNoise | LLMLikeNoise | Mapping[str, float] | None = None,
        phrasing: Literal["varied", "fixed"] = "varied",
        intensities: bool = False,
        va: bool = False,
    ) -> None:
        if phrasing not in ("varied", "fixed"):
            raise ValueError(f"phrasing must be 'varied' or 'fixed', got {phrasing!r}")
        self.seed = seed
        # TeacherNoise (random mistakes) from a mapping of its rates, or any object with ``active`` and ``apply``
        # (LLMLikeNoise: systematic mistakes)
        self.noise = TeacherNoise(**(noise or {})) if noise is None or isinstance(noise, Mapping) else noise
        self.phrasing = phrasing
        self.intensities, self.va = bool(intensities), bool(va)

    def __repr__(self) -> str:
        affect = f", intensities={self.intensities}, va={self.va}" if self.intensities or self.va else ""
        return f"TemplateTeacher(seed={self.seed}, noise={self.noise}, phrasing={self.phrasing!r}{affect})"

    def _pick(self, options: Sequence[str], record_id: str, slot: str) -> str:
        if self.phrasing == "fixed":
            return options[0]
        return options[stable_rng(self.seed, record_id, slot).randrange(len(options))]

    def targets(self, record: dict[str, Any]) -> tuple[list[str], str, dict[str, Any]]:
        """The (AUs, emotion) the text will state before noise, and where each came from."""
        labels = offered_labels(record)
        aus, gold = record.get("AUs"), record.get("labels") or []
        compound = record.get("compound")
        if aus is None and not gold and not compound:
            raise ValueError(f"record {record.get('id')!r} has neither AUs nor an emotion label to describe")
        emotion = gold[0] if gold else compound or best_matching_emotion(aus, labels)
        if aus is None:
            aus = au_codes(EMOTION_PROTOTYPES.get(emotion, ()))
        info = {"au_source": "gold" if record.get("AUs") is not None else "prototype"}
        info["emotion_source"] = "gold" if gold else ("compound" if compound else "prototype_match")
        return list(aus), emotion, info

    def describe_with_info(self, record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The description and what shaped it: sources, the AUs/emotion stated, and any noise applied."""
        record_id = str(record.get("id", ""))
        aus, emotion, info = self.targets(record)
        if self.noise.active:
            aus, emotion, applied = self.noise.apply(
                aus, emotion, record, stable_rng(self.seed, record_id, "noise")
            )
        else:
            applied = {"omitted": [], "hallucinated": [], "wrong_emotion": None}
        info.update(applied, aus=aus, emotion=emotion)
        levels = (record.get("AU_intensity") or {}) if self.intensities else None
        va = None
        if self.va and record.get("valence") is not None and record.get("arousal") is not None:
            va = (float(record["valence"]), float(record["arousal"]))
        return self.render(aus, emotion, record_id, levels=levels, va=va), info

    def describe(self, record: dict[str, Any]) -> str:
        """``<think>...</think><answer>...</answer>`` for ``record`` (no whitespace outside the tags)."""
        return self.describe_with_info(record)[0]

    def describe_many(self, records: Sequence[dict[str, Any]], progress: bool = True) -> list[str]:
        """:meth:`describe` for each record, with a progress bar unless ``progress=False``."""
        return [self.describe(r) for r in tqdm(records, desc="teacher", disable=not progress)]

    def render(
        self,
        aus: Sequence[str],
        emotion: str,
        record_id: str = "",
        levels: Mapping[str, int] | None = None,
        va: tuple[float, float] | None = None,
    ) -> str:
        """The text stating exactly ``aus`` (any order, canonical codes) and ``emotion``; with ``levels`` each AU
        that has one is cited as "(AU12, D)", with ``va`` a ``<va>`` block follows the answer."""
        numbers = sorted({au_number(a) for a in aus}, key=lambda n: (_FACE_ORDER + (n,)).index(n))
        clauses = []
        for n in numbers:
            known = ACTION_UNITS.get(n)
            variants = (known.appearance, _ALT_APPEARANCE[n]) if known else (f"action unit {n} is active",)
            level = (levels or {}).get(f"AU{n}")
            code = f"AU{n}, {INTENSITY_LETTERS[level - 1]}" if level else f"AU{n}"
            clauses.append(f"{self._pick(variants, record_id, f'au{n}')} ({code})")
        if clauses:
            observed = self._pick(_OPENERS, record_id, "opener").format(obs=_join(clauses))
            observed = observed[0].upper() + observed[1:]
        else:
            observed = self._pick(_RELAXED, record_id, "relaxed")
        conclusions = _NEUTRAL_CONCLUSIONS if emotion == "neutral" else _CONCLUSIONS
        conclusion = self._pick(conclusions, record_id, "conclusion").format(emotion=emotion)
        text = f"<think>{observed} {conclusion}</think><answer>{emotion}</answer>"
        return text if va is None else f"{text}<va>{va[0]:.2f}, {va[1]:.2f}</va>"


def build_sft_records(
    records: Sequence[dict[str, Any]],
    n: int | Literal["all"],
    seed: int = 0,
    teacher: Any = None,
    instruction_rows: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Pick ``n`` SFT records and set their ``description``; optionally add instruction rows.

    Eligible: records carrying both AUs (possibly ``[]``) and an emotion (or compound) label, plus - a partial-label
    row, AU-only or emotion-only - records that already carry their own ``description`` (synthesised rows whose
    annotated part passed the checks, see ``synthesis/rounds.py``): their text trains the SFT loss like any other
    row, whereas a teacher would have to invent the missing half. Selection is a seeded random sample (``"all"`` =
    every eligible record, see :func:`select_sft_records`), returned in the input order; asking for more than exist
    raises. ``teacher`` is anything with ``describe(record) -> str | None`` (its ``describe_many`` is used when it has
    one; default: a clean :class:`TemplateTeacher` with this seed); records it returns None for (an API teacher
    skipping invalid output) are dropped with a warning. ``instruction_rows`` (``{synthesis: f, reflection: f}``)
    appends synthesis- and reflection-prompt copies of that fraction of the teacher-written rows
    (:mod:`facial_r1.data.teachers.instructions`); rows marked instructions-only train through those copies alone.
    Inputs are not modified.
    """
    from facial_r1.data.teachers.instructions import check_fractions, is_instructions_only
    from facial_r1.data.teachers.instructions import instruction_rows as make_instruction_rows

    picked = select_sft_records(records, n, seed)
    teacher = teacher if teacher is not None else TemplateTeacher(seed=seed)
    # describe_many where a teacher has it: an API teacher keeps many requests in flight instead of one at a time.
    if hasattr(teacher, "describe_many"):
        descriptions = teacher.describe_many(picked, progress=False)
    else:
        descriptions = [teacher.describe(r) for r in picked]
    out = [{**r, "description": d} for r, d in zip(picked, descriptions, strict=True) if d is not None]
    if len(out) < len(picked):
        log.warning(
            "teacher gave no valid description for %d of %d records", len(picked) - len(out), len(picked)
        )
    extra = make_instruction_rows(out, instruction_rows, seed=seed) if instruction_rows else []
    only = sum(map(is_instructions_only, out))
    if only and not any(check_fractions(instruction_rows).values()):
        raise ValueError(
            f"{only} teacher rows train only as instruction copies (dataset.keep_sft_prompts=instructions), but "
            "stage.instruction_rows makes none: set stage.instruction_rows or dataset.keep_sft_prompts=all"
        )
    out = [r for r in out if not is_instructions_only(r)]
    log.info("SFT set: %s", sft_set_summary([*out, *extra]))
    return out + extra


def _has_both(record: dict[str, Any]) -> bool:
    return record.get("AUs") is not None and bool(record.get("labels") or record.get("compound"))


def select_sft_records(
    records: Sequence[dict[str, Any]], n: int | Literal["all"], seed: int = 0
) -> list[dict[str, Any]]:
    """The records :func:`build_sft_records` describes (its docstring), in input order.

    For records without descriptions (every dataset split) the choice depends only on ``(records, n, seed)``: the
    round's SFT data (``dataset=synth`` with ``keep_sft``) calls this with SFT-300's arguments to keep the same 300.
    """
    eligible = [
        i
        for i, r in enumerate(records)
        if _has_both(r)
        or (r.get("description") and (r.get("AUs") is not None or r.get("labels") or r.get("compound")))
    ]
    if n == "all":
        chosen = eligible
    elif isinstance(n, int) and 0 <= n <= len(eligible):
        chosen = sorted(random.Random(seed).sample(eligible, n))
    else:
        raise ValueError(f"asked for {n!r} SFT records but only {len(eligible)} have both AUs and a label")
    return [records[i] for i in chosen]


def sft_set_summary(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Counts of an SFT set by kind of row: what a run trains on, logged so no row kind goes missing unnoticed."""
    counts = {"rows": len(rows), "both_labels": 0, "au_only": 0, "emotion_only": 0, "synthesised": 0}
    for row in rows:
        meta = row.get("meta_info") or {}
        spec = meta.get("sft_prompt")
        if spec:
            key = f"{spec['kind']}_prompt"
            counts[key] = counts.get(key, 0) + 1
            continue
        counts["synthesised"] += bool(meta.get("synthesis"))
        if _has_both(row):
            counts["both_labels"] += 1
        elif row.get("AUs") is not None:
            counts["au_only"] += 1
        else:
            counts["emotion_only"] += 1
    return counts


# The prompts whose text trains the tiny model's tokenizer. Frozen on purpose: the corpus is part of the tiny model's
# cache key, so a new prompt file would otherwise rebuild the default model (new vocabulary, new initialisation) and
# move every recorded result. Byte-level BPE encodes any later prompt all the same (in a few more tokens).
TOKENIZER_PROMPTS = ("compact_v1", "full_v1")


def tokenizer_corpus(
    n: int = 2000, seed: int = 0, prompts: Sequence[PromptTemplate] | None = None
) -> list[str]:
    """Representative project text for training the tiny model's byte-level BPE.

    Contains: every prompt (``prompts``, default the :data:`TOKENIZER_PROMPTS` of ``conf/prompt/``) rendered as user, synthesis and
    reflection text for each known label set and AU vocabulary; every AU phrase; and ``n`` template-teacher
    descriptions of random AU sets (0-6 AUs over all of ``facs.ACTION_UNITS``) and emotions (all of ``EMOTIONS``),
    with varied phrasing.
    """
    rng = random.Random(seed)
    all_aus = list(ACTION_UNITS)
    teacher = TemplateTeacher(seed=seed)
    texts = [
        f"{au.appearance} ({au.code}) {_ALT_APPEARANCE[au.number]} ({au.code})"
        for au in ACTION_UNITS.values()
    ]
    for i in range(n):
        aus = au_codes(sorted(rng.sample(all_aus, rng.randint(0, 6))))
        texts.append(teacher.render(aus, rng.choice(EMOTIONS), record_id=f"corpus{i}"))
    label_sets = [list(EMOTIONS), [], *map(list, LABEL_ORDERS.values())]
    vocabs = [[], *(au_codes(v) for v in AU_VOCAB.values())]
    noisy = TemplateTeacher(seed=seed, noise=TeacherNoise(0.5, 0.5, 0.5))
    if prompts is None:
        prompts = [t for name, t in load_prompts().items() if name in TOKENIZER_PROMPTS]
    for template in prompts:
        if template.system_text:
            texts.append(template.system_text)
        for k in range(max(len(label_sets), len(vocabs))):
            labels, vocab = label_sets[k % len(label_sets)], vocabs[k % len(vocabs)]
            emotion = rng.choice(labels or list(EMOTIONS))
            record = {"id": f"p{k}", "question": DEFAULT_QUESTION, "label_set": labels, "au_vocab": vocab,
                      "AUs": au_codes(EMOTION_PROTOTYPES[emotion]), "labels": [emotion]}  # fmt: skip
            previous = noisy.describe(record)
            texts += [template.user_text(record), template.synthesis_text(record)]
            texts.append(template.reflection_text(record, previous, check_description(previous, record)))
    return texts
