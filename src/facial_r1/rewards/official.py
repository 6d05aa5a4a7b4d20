"""Rewards with the published Facial-R1 code's exact numbers (the authors' public repository, RobitsG/Facial-R1).

Use them to reproduce the paper's training signal; the components in :mod:`.components` fix its known defects.
They never return None: where a signal does not apply they return the published constants (0.0 for no gold AUs,
0.5 for no gold label), so that a sum of them matches the published total. The published regular expressions
are re-implemented as linear scans with identical results (the lazy ``.*?`` patterns are quadratic on adversarial
completions); the tests check the equivalence against the original patterns.

Behaviour reproduced on purpose, defects included:

* AU: every ``AU\\d+`` token of the upper-cased text inside the FIRST ``<think>...</think>`` (tags matched
  case-insensitively; no think block -> nothing predicted). Tokens compare as written, upper-cased: "AU06" is not
  "AU6", "AU 6" is no token, "TAU12" contains "AU12", "no AU12" counts AU12, names ("lip corner puller") are not
  read. Gold = the sample's ``AUs`` upper-cased. Score 2*F1 - 1; -1 when gold is present but nothing predicted;
  0.0 when there are no gold AUs (also for samples without AU annotation).
* Accuracy: the stripped text of the LAST ``<answer>...</answer>`` (the whole completion when there is none)
  must equal the stripped first gold label exactly (case-sensitive, no synonyms); 0.5 when there is no label.
  A bare "happiness" without tags therefore scores 1.
* Format: the whole completion fully matches ``<think>.*?</think>\\s*<answer>.*?</answer>`` (DOTALL): empty or
  repeated blocks pass, any character outside fails.
"""

from __future__ import annotations

import re

from facial_r1.rewards.base import RewardComponent, Sample, f_beta

_THINK_OPEN_CI = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE_CI = re.compile(r"</think>", re.IGNORECASE)
_AU_TOKEN = re.compile(r"AU\d+")
_THINK_TO_ANSWER = re.compile(r"</think>\s*<answer>")


def official_think(text: str) -> str | None:
    """Same result as ``re.search(r"<think>(.*?)</think>", text, re.DOTALL | re.IGNORECASE).group(1)``."""
    opening = _THINK_OPEN_CI.search(text)
    if opening is None:
        return None
    closing = _THINK_CLOSE_CI.search(text, opening.end())
    return None if closing is None else text[opening.end() : closing.start()]


def official_answers(text: str) -> list[str]:
    """Same result as ``re.findall(r"<answer>(.*?)</answer>", text, re.DOTALL)``."""
    found, pos = [], 0
    while (start := text.find("<answer>", pos)) >= 0:
        end = text.find("</answer>", start + len("<answer>"))
        if end < 0:
            break
        found.append(text[start + len("<answer>") : end])
        pos = end + len("</answer>")
    return found


def official_format_ok(text: str) -> bool:
    """Same result as ``re.fullmatch(r"<think>.*?</think>\\s*<answer>.*?</answer>", text, re.DOTALL)``."""
    if not (text.startswith("<think>") and text.endswith("</answer>")):
        return False
    last_answer_close = len(text) - len("</answer>")
    return any(
        m.start() >= len("<think>") and m.end() <= last_answer_close for m in _THINK_TO_ANSWER.finditer(text)
    )


class OfficialAUReward(RewardComponent):
    """The published AU reward: 2*F-beta - 1 over ``AU\\d+`` tokens of the first think block (module docstring)."""

    name = "official_au"
    low, high = -1.0, 1.0

    def __init__(self, weight: float = 1.0, beta: float = 1.0):
        super().__init__(weight)
        self.beta = float(beta)

    def score(self, completion: str, sample: Sample) -> float | None:
        gold = {str(code).upper() for code in (sample.get("AUs") or [])}
        if not gold:
            return 0.0
        think = official_think(completion)
        predicted = set(_AU_TOKEN.findall(think.upper())) if think is not None else set()
        if not predicted:
            return -1.0
        return 2.0 * f_beta(predicted, gold, self.beta) - 1.0


class OfficialAccuracyReward(RewardComponent):
    """The published accuracy reward: exact match of the last answer with the first label; 0.5 without label."""

    name = "official_accuracy"

    def score(self, completion: str, sample: Sample) -> float | None:
        labels = sample.get("labels") or []
        if not labels:
            return 0.5
        answers = official_answers(completion)
        prediction = (answers[-1] if answers else completion).strip()
        return float(prediction == str(labels[0]).strip())


class OfficialFormatReward(RewardComponent):
    """The published format reward: 1 iff the completion fully matches ``<think>.*?</think>\\s*<answer>.*?</answer>``."""

    name = "official_format"

    def score(self, completion: str, sample: Sample) -> float | None:
        return float(official_format_ok(completion))
