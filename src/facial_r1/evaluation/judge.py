"""The reasoning "Score" of Facial-R1: an LLM judge rates each output's reasoning 1-10 against the reference.

The paper reports the mean judge score on FEA-20K (6.09 for Facial-R1, 5.80 for GPT-4o). Judge drift is a known
problem with such numbers (the same outputs re-scored months later by a model behind the same name differ), so a
score is only comparable with scores from the same judge: :meth:`ReasoningJudge.score` returns the judge's
provenance (model name, rubric version and hash, server) beside the mean, and ``python -m facial_r1.results``
refuses to put rows of different judges in one column.

Rubrics are versioned: the text of a version never changes (a test pins each version's hash); a new wording is a new
version in :data:`RUBRICS`. Requests go through :class:`facial_r1.chat_api.ChatAPI` (openai SDK, bounded
concurrency, on-disk cache).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from facial_r1.chat_api import ChatAPI

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rubric:
    """A versioned grading instruction. ``user`` is formatted with ``{reference}`` and ``{output}``."""

    version: str
    system: str
    user: str
    low: int = 1
    high: int = 10

    @property
    def sha256(self) -> str:
        """Hash of everything the judge reads from the rubric: recorded with every score."""
        return hashlib.sha256(f"{self.system}\n{self.user}\n{self.low}-{self.high}".encode()).hexdigest()

    def messages(self, reference: str, output: str) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.user.format(reference=reference, output=output)},
        ]


REASONING_V1 = Rubric(
    version="reasoning_v1",
    system=(
        "You are an expert in the Facial Action Coding System (FACS). You grade a model's analysis of a face "
        "against a reference analysis of the same face. Judge only the text; you do not see the image."
    ),
    user=(
        "Reference analysis:\n{reference}\n\n"
        "Model analysis to grade:\n{output}\n\n"
        "Rate the model analysis from 1 to 10 against the reference:\n"
        "- Action units: does it cite the reference's action units, and only those? Each missing or invented "
        "action unit lowers the score.\n"
        "- Reasoning: does it link the action units to the emotion as the reference does, without contradictions?\n"
        "- Conclusion: is the final emotion the reference's, and does the reasoning support it?\n"
        "- Form: the reasoning inside <think>...</think>, the emotion alone inside <answer>...</answer>.\n"
        "10 = as good as the reference; 1 = unrelated to it or wrong throughout.\n"
        'End your reply with one line "Score: N", where N is an integer from 1 to 10.'
    ),
)
RUBRICS: dict[str, Rubric] = {r.version: r for r in (REASONING_V1,)}

# "Score: 7", "score = 7/10", "**Score:** 7"; the last one counts (a judge may quote the scale before grading).
_SCORE = re.compile(r"\bscore\b\W{0,4}(?:is\s+)?(\d+(?:\.\d+)?)(?:\s*/\s*10\b)?", re.IGNORECASE)
_BARE = re.compile(r"^\W*(\d+(?:\.\d+)?)(?:\s*/\s*10)?\W*$")


def parse_score(reply: str, low: int = 1, high: int = 10) -> int | None:
    """The integer score in ``reply`` ("... Score: N" on its own, the last such line wins, or a bare number), or
    None when there is none or it is not an integer in [low, high]."""
    found = _SCORE.findall(reply) or _BARE.findall(reply.strip())
    if not found:
        return None
    value = float(found[-1])
    return int(value) if value.is_integer() and low <= value <= high else None


def mean_interval(
    scores: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float | None, list[float] | None]:
    """Mean of ``scores`` and its percentile-bootstrap ``confidence`` interval (seeded: reruns agree). Scores are
    bounded 1-10 and often skewed, so the bootstrap rather than a normal interval; None for no scores."""
    if not scores:
        return None, None
    x = np.asarray(scores, dtype=float)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return float(x.mean()), [float(lo), float(hi)]


class ReasoningJudge:
    """Score outputs' reasoning 1-10 against references with an LLM behind an OpenAI-compatible API.

    Args:
        base_url, model, api_key_env, cache_dir, max_retries, timeout, temperature, max_tokens, max_concurrency:
            the judge endpoint (:class:`facial_r1.chat_api.ChatAPI`).
        rubric: a version in :data:`RUBRICS`.
        reference: where each sample's reference reasoning comes from: ``description`` (the dataset's own, as
            FEA-20K's; samples without one are not scored) or ``template`` (the template teacher's text written
            from the sample's gold AUs and emotion: for datasets without reference reasoning, e.g. SynthFACS).
        confidence: coverage of the reported interval.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        rubric: str = "reasoning_v1",
        reference: Literal["description", "template"] = "description",
        cache_dir: str | Path | None = None,
        max_retries: int = 5,
        timeout: float = 60,
        temperature: float = 0.0,
        max_tokens: int = 256,
        max_concurrency: int = 8,
        confidence: float = 0.95,
    ) -> None:
        if rubric not in RUBRICS:
            raise ValueError(f"judge.rubric={rubric!r} is not a rubric version; known: {', '.join(RUBRICS)}")
        if reference not in ("description", "template"):
            raise ValueError(f"judge.reference must be description or template, got {reference!r}")
        if not 0.0 < float(confidence) < 1.0:
            raise ValueError(f"judge.confidence must be in (0, 1), got {confidence!r}")
        self.rubric, self.reference, self.confidence = RUBRICS[rubric], reference, float(confidence)
        self.api = ChatAPI(
            base_url,
            model,
            api_key_env=api_key_env,
            cache_dir=cache_dir,
            max_retries=max_retries,
            timeout=timeout,
            temperature=temperature,
            max_tokens=max_tokens,
            max_concurrency=max_concurrency,
        )

    def __repr__(self) -> str:
        return (
            f"ReasoningJudge(model={self.api.model!r}, rubric={self.rubric.version!r}, url={self.api.url!r})"
        )

    def provenance(self) -> dict[str, Any]:
        """Who scored: stored in metrics.json as ``judge``; results only share a column when these agree."""
        return {
            "model": self.api.model,
            "rubric": self.rubric.version,
            "rubric_sha256": self.rubric.sha256,
            "base_url": self.api.base_url,
            "temperature": self.api.temperature,
            "reference": self.reference,
        }

    def references(self, records: Sequence[dict[str, Any]]) -> list[str | None]:
        """Each record's reference reasoning (see ``reference``), None where it has none."""
        if self.reference == "description":
            return [
                r["description"]
                if isinstance(r.get("description"), str) and r["description"].strip()
                else None
                for r in records
            ]
        from facial_r1.data.teachers.template import TemplateTeacher

        teacher = TemplateTeacher(seed=0)
        return [teacher.describe(r) if r.get("labels") or r.get("AUs") is not None else None for r in records]

    def score(
        self, records: Sequence[dict[str, Any]], outputs: Sequence[str], progress: bool = True
    ) -> tuple[dict[str, Any], list[int | None]]:
        """``(metrics, per-sample scores)``: ``judge_score`` (mean), ``judge_score_ci`` ([low, high] at
        ``confidence``), ``judge_score_confidence``, ``num_judge_samples`` (scored), ``num_judge_unparsed``
        (replies without a valid score), ``judge`` (:meth:`provenance`). A sample without a reference, or whose
        reply holds no valid score, gets None."""
        if len(records) != len(outputs):
            raise ValueError(f"{len(records)} records but {len(outputs)} outputs")
        refs = self.references(records)
        todo = [i for i, ref in enumerate(refs) if ref is not None]

        def grade(i: int, client: Any) -> int | None:
            messages = self.rubric.messages(refs[i], outputs[i] if isinstance(outputs[i], str) else "")
            reply, _ = self.api.complete(messages, client)
            score = parse_score(reply, self.rubric.low, self.rubric.high)
            if score is None:
                log.warning("judge reply for sample %d holds no score in 1-10: %r", i, reply[:200])
            return score

        graded = self.api.map(grade, todo, progress=progress, desc=f"judge {self.api.model}")
        scores: list[int | None] = [None] * len(records)
        for i, score in zip(todo, graded, strict=True):
            scores[i] = score
        valid = [s for s in scores if s is not None]
        mean, interval = mean_interval(valid, self.confidence)
        metrics = {
            "judge_score": mean,
            "judge_score_ci": interval,
            "judge_score_confidence": self.confidence,
            "num_judge_samples": len(valid),
            "num_judge_unparsed": len(todo) - len(valid),
            "judge": self.provenance(),
        }
        return metrics, scores
