"""The synthesis checks: does a self-generated response agree with the sample's ground truth and with itself?

Four checks, each read through the project parser (:func:`facial_r1.parsing.parse`), so accepted data obeys the same
rules the rewards and the evaluation apply (the published code's "triple check" is the first three):

* **au**: the AUs cited in the reasoning equal the gold set (``au_mode="exact"``) or reach ``au_f1_threshold`` set F1
  (``au_mode="f1"``). AU numbers that are no FACS AU ("AU3", "AU99") count as wrong extras. Not applicable when the
  sample has no AU annotation (``AUs=None``); ``AUs=[]`` is an annotation ("relaxed face"): citing any AU fails.
* **emotion**: the answer, normalised to the sample's label set (case, punctuation, synonyms), equals the first gold
  label. Not applicable when the sample has no emotion label.
* **format**: strict ``<think>...</think><answer>...</answer>`` with nothing outside (or the lenient layout, or
  ``strict_va``: the affect prompt's strict layout with a valid ``<va>valence, arousal</va>`` after the answer), and
  none of ``negation_words`` anywhere (the published prompt forbids "no", "not", "without", "maybe" because its AU
  reward counts "no AU12" as AU12).
* **consistency**: the emotion the reasoning concludes equals the emotion the answer names, exactly as the
  consistency reward (:class:`facial_r1.rewards.ConsistencyReward`) and the ``consistency_rate`` metric judge it:
  the concluded emotion is the *last* emotion word or synonym of the ``<think>`` text that lies in the sample's
  label set and is not negated (:func:`facial_r1.parsing.concluded_emotion`), so "disgust or contempt ... points to
  contempt" concludes contempt, "contempt, not disgust" concludes contempt, and "points to contempt, though disgust
  is possible" concludes disgust. Documented rule for a reasoning that names no emotion (or an answer that is no
  single label): the check fails, as the reward and the metric score it 0 - otherwise a response could pass by never
  saying what its reasoning concludes. It needs no gold label, so it applies to every sample (AU-only ones too).
  Negated emotion mentions are always dropped here, whatever ``drop_negated`` says for AUs: the reward and the
  metric read the conclusion that way, and "contempt, not disgust" must not count as concluding disgust.

Unlike the published code, every enforced check gates acceptance (it never gated on format, and had no consistency
check). ``enforce`` lists the gating checks; ``enforce=[au, emotion]`` with ``au_scope=completion``,
``drop_negated=false`` and no negation words reproduces the published semantics (the other flags are still computed
and stored, so a run in that mode shows how many accepted rows contradict themselves). Problem sentences are plain
English because reflection prompts quote them back to the model; only failures of enforced checks become problems.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from facial_r1.facs import normalize_emotion, sort_aus
from facial_r1.parsing import concluded_emotion, parse

CHECKS = ("au", "emotion", "format", "consistency")
FORMATS = ("strict", "lenient", "strict_va")
OFFICIAL_NEGATION_WORDS = ("no", "not", "without", "maybe")


@dataclass(frozen=True)
class CheckConfig:
    """How strict the checks are (``conf/synthesize.yaml`` ``checks``; every field is commented there)."""

    enforce: Sequence[str] = CHECKS
    au_mode: str = "exact"  # exact | f1
    au_f1_threshold: float = 1.0  # used when au_mode == "f1"
    au_scope: str = "think"  # think | completion: where AUs are read
    map_au_names: bool = False  # False = only AU codes count (what the AU reward and the metrics read)
    drop_negated: bool = True  # negated mentions ("no AU4") are not citations
    format: str = (
        "strict"  # strict | lenient | strict_va (the affect prompt: a valid <va>v, a</va> after the answer)
    )
    negation_words: Sequence[str] = OFFICIAL_NEGATION_WORDS  # [] = allow negations

    def __post_init__(self) -> None:
        unknown = [c for c in self.enforce if c not in CHECKS]
        if unknown:
            raise ValueError(f"checks.enforce: unknown checks {unknown}; allowed: {list(CHECKS)}")
        if self.au_mode not in ("exact", "f1"):
            raise ValueError(f"checks.au_mode must be 'exact' or 'f1', got {self.au_mode!r}")
        if not 0.0 <= float(self.au_f1_threshold) <= 1.0:
            raise ValueError(f"checks.au_f1_threshold must lie in [0, 1], got {self.au_f1_threshold}")
        if self.au_scope not in ("think", "completion"):
            raise ValueError(f"checks.au_scope must be 'think' or 'completion', got {self.au_scope!r}")
        bad = [w for w in (self.negation_words or []) if not isinstance(w, str)]
        if bad:
            raise ValueError(
                f"checks.negation_words must be strings, got {bad} (in YAML quote them: a bare no is false)"
            )
        if self.format not in FORMATS:
            raise ValueError(f"checks.format must be one of {', '.join(FORMATS)}, got {self.format!r}")

    @cached_property
    def negation_pattern(self) -> re.Pattern[str] | None:
        """One case-insensitive pattern for all negation words (word boundaries where the word has letters)."""
        words = [w for w in (self.negation_words or []) if w and w.strip()]
        if not words:
            return None
        parts = []
        for word in sorted(words, key=len, reverse=True):
            left = r"\b" if re.match(r"\w", word) else ""
            right = r"\b" if re.search(r"\w$", word) else ""
            parts.append(left + re.escape(word.strip()) + right)
        return re.compile("|".join(parts), re.IGNORECASE)


@dataclass(frozen=True)
class CheckResult:
    """Outcome of :func:`triple_check`. A flag is None when its check does not apply to the sample."""

    au: bool | None
    emotion: bool | None
    format: bool
    consistency: bool  # always applies: it needs no gold label
    passed: bool  # every enforced, applicable check holds
    problems: list[str] = field(default_factory=list)  # sentences for the reflection prompt ([] when passed)
    predicted_aus: list[str] = field(default_factory=list)
    unknown_aus: list[str] = field(default_factory=list)
    au_f1: float | None = None
    answer: str | None = None
    predicted_emotion: str | None = None
    negations: list[str] = field(default_factory=list)
    concluded_emotion: str | None = None  # what the reasoning concludes (None: it names no emotion)
    enforced: list[str] = field(default_factory=lambda: list(CHECKS))  # the gating checks of this result

    @property
    def rejected_by(self) -> list[str]:
        """Names of the enforced checks that do not hold: why the response is refused ([] when it passed)."""
        return [name for name in self.failed if name in self.enforced]

    @property
    def failed(self) -> list[str]:
        """Names of the checks that do not hold (enforced or not)."""
        return [name for name in CHECKS if getattr(self, name) is False]

    def flags(self) -> dict[str, bool | None]:
        return {name: getattr(self, name) for name in CHECKS}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary stored with every synthesised sample."""
        return {
            "passed": self.passed,
            **self.flags(),
            "problems": list(self.problems),
            "predicted_aus": list(self.predicted_aus),
            "unknown_aus": list(self.unknown_aus),
            "au_f1": self.au_f1,
            "answer": self.answer,
            "predicted_emotion": self.predicted_emotion,
            "negations": list(self.negations),
            "concluded_emotion": self.concluded_emotion,
            "enforced": list(self.enforced),
            "rejected_by": self.rejected_by,
        }


def set_f1(predicted: Sequence[str], gold: Sequence[str]) -> float:
    """Set F1; two empty sets agree perfectly (a relaxed face described as relaxed)."""
    p, g = set(predicted), set(gold)
    if not p and not g:
        return 1.0
    tp = len(p & g)
    return 2.0 * tp / (len(p) + len(g))


def triple_check(text: str, record: dict[str, Any], config: CheckConfig | None = None) -> CheckResult:
    """Check ``text`` against ``record``'s gold AUs and emotion and the required format (module docstring)."""
    config = config or CheckConfig()
    label_set = record.get("label_set") or None
    parsed = parse(
        text,
        label_set=label_set,
        drop_negated=config.drop_negated,
        map_au_names=config.map_au_names,
        au_scope=config.au_scope,
    )
    problems: list[str] = []
    enforced = set(config.enforce)

    au_ok, f1 = None, None
    gold_aus = record.get("AUs")
    if gold_aus is not None:
        gold = sort_aus(gold_aus)
        cited = [*parsed.aus, *parsed.unknown_aus]
        f1 = set_f1(cited, gold)
        exact = set(cited) == set(gold)
        au_ok = exact if config.au_mode == "exact" else f1 >= float(config.au_f1_threshold)
        if not au_ok and "au" in enforced:
            problems.extend(_au_problems(cited, gold, f1, config))

    emotion_ok, gold_label = None, None
    if record.get("labels"):
        gold_label = normalize_emotion(record["labels"][0], label_set) or record["labels"][0]
        emotion_ok = parsed.emotion == gold_label
        if not emotion_ok and "emotion" in enforced:
            if parsed.answer is None:
                problems.append(f"There is no <answer> block: end with <answer>{gold_label}</answer>.")
            else:
                problems.append(
                    f"The answer is {parsed.answer.strip()!r} but must be exactly {gold_label!r}."
                )

    layout_ok = {
        "strict": parsed.format_strict,
        "lenient": parsed.format_lenient,
        "strict_va": parsed.format_strict_va,
    }[config.format]
    pattern = config.negation_pattern
    negations = sorted({m.group().lower() for m in pattern.finditer(text)}) if pattern and text else []
    format_ok = layout_ok and not negations
    if "format" in enforced:
        if not layout_ok:
            problems.append(
                "Wrong format: write <think>reasoning</think> then <answer>emotion</answer> and nothing else."
                if config.format != "strict_va"
                else "Wrong format: write <think>reasoning</think>, <answer>emotion</answer>, then "
                "<va>valence, arousal</va> (two numbers in [-1, 1]) and nothing else."
            )
        if negations:
            problems.append(f"Do not use negative or uncertain words: {', '.join(negations)}.")

    # Negated emotion words never conclude (module docstring); parse() already read them so when drop_negated holds.
    concluded = (
        parsed.concluded_emotion
        if config.drop_negated
        else concluded_emotion(parsed.think, label_set, drop_negated=True)
    )
    consistency_ok = parsed.emotion is not None and parsed.emotion == concluded
    if not consistency_ok and "consistency" in enforced:
        # The emotion to end on: the gold label when the emotion check gates (the answer must become it too),
        # else the answer itself.
        target = gold_label if "emotion" in enforced and gold_label else parsed.emotion
        # With no usable answer and a gating emotion check, that check's sentence already asks for the right one.
        answer_reported = "emotion" in enforced and emotion_ok is False
        problems.extend(_consistency_problems(concluded, parsed.emotion, target, answer_reported))

    flags = {"au": au_ok, "emotion": emotion_ok, "format": format_ok, "consistency": consistency_ok}
    passed = all(flags[name] is not False for name in enforced)
    return CheckResult(
        au=au_ok,
        emotion=emotion_ok,
        format=format_ok,
        consistency=consistency_ok,
        passed=passed,
        problems=[] if passed else problems,
        predicted_aus=list(parsed.aus),
        unknown_aus=list(parsed.unknown_aus),
        au_f1=f1,
        answer=parsed.answer,
        predicted_emotion=parsed.emotion,
        negations=negations,
        concluded_emotion=concluded,
        enforced=[name for name in CHECKS if name in enforced],
    )


def _consistency_problems(
    concluded: str | None, answer: str | None, target: str | None, answer_reported: bool
) -> list[str]:
    """Why the reasoning and the answer disagree, naming both sides, and what the response should conclude."""
    if not target:
        fix = ""
    elif target == concluded:  # the reasoning already ends right; the answer is what must change
        fix = f" Answer {target}."
    else:
        fix = f" End the reasoning on {target}."
    if concluded is not None and answer is not None:
        return [
            f"The reasoning concludes {concluded} but the answer is {answer}: they must name the same emotion.{fix}"
        ]
    if concluded is None and answer is not None:
        return [f"The reasoning names no emotion, so it does not support the answer {answer}.{fix}"]
    if answer_reported:
        return []
    if concluded is not None:
        return [
            f"The answer is not one emotion label, so it cannot match the reasoning's conclusion ({concluded})."
        ]
    return [
        "Neither the reasoning nor the answer names an emotion: conclude the reasoning with the emotion you answer."
    ]


def _au_problems(cited: list[str], gold: list[str], f1: float, config: CheckConfig) -> list[str]:
    problems = []
    if not gold:
        return [f"The face is relaxed: cite no action units (you cited {', '.join(sort_aus(cited))})."]
    missing = [au for au in gold if au not in set(cited)]
    extra = [au for au in sort_aus(cited) if au not in set(gold)]
    if missing:
        problems.append(f"The reasoning does not cite these action units: {', '.join(missing)}.")
    if extra:
        problems.append(f"The reasoning cites action units the face does not show: {', '.join(extra)}.")
    if config.au_mode == "f1":
        problems.append(
            f"Action unit F1 is {f1:.2f}, below the required {float(config.au_f1_threshold):.2f}."
        )
    return problems
