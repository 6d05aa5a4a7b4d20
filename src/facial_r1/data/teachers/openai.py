"""A teacher behind any OpenAI-compatible chat-completions API (OpenAI, vLLM, Ollama, LM Studio, ...).

Requests go through :class:`facial_r1.chat_api.ChatAPI` (the ``openai`` SDK: its retries, timeouts and typed
errors; many records in flight at once, at most ``max_concurrency``). Each request sends the image as a base64 data
URL followed by the prompt's ground-truth-conditioned text (:meth:`PromptTemplate.synthesis_text`). The API key is
read from the environment variable named in the config when a pass starts and is never stored on the object,
logged, cached or put into an exception message. Responses are cached on disk by (model, temperature, max tokens,
prompt text, image hash), so reruns cost nothing, and validated with :func:`check_description` (the synthesis triple
check: format, AU set, answer).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import mimetypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from facial_r1.chat_api import ChatAPI, ChatAPIError
from facial_r1.data.prompts import PromptTemplate, load_prompts
from facial_r1.facs import sort_aus
from facial_r1.parsing import parse

log = logging.getLogger(__name__)

# The teacher's errors are the client's (HTTP status in ``status_code``); the old name stays importable.
TeacherError = ChatAPIError


class InvalidDescription(ValueError):
    """The teacher's text failed :func:`check_description`; ``problems`` lists why."""

    def __init__(self, record_id: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"record {record_id!r}: " + "; ".join(problems))


def check_description(text: str, record: dict[str, Any], va: bool = False) -> list[str]:
    """Problems with ``text`` as the reference description of ``record``; ``[]`` = accepted.

    The synthesis triple check, read through the project parser (``facial_r1.parsing.parse``): the strict format
    (``<think>...</think><answer>...</answer>``, nothing outside the tags); the AU codes cited inside ``<think>``
    (numbers only, not FACS names: the AU reward reads codes; negated mentions dropped) equal the gold set when the
    record has ``AUs``; the answer equals the first gold label exactly when it has labels. Messages are plain
    sentences because reflection prompts quote them back to the model. ``va``: the affect layout instead, a valid
    ``<va>valence, arousal</va>`` after the answer (``format_strict_va``; what an affect prompt asks for).
    """
    parsed = parse(text, label_set=record.get("label_set") or None, map_au_names=False)
    predicted, answer = parsed.aus, (parsed.answer.strip() if parsed.answer is not None else None)
    problems = []
    if va and not parsed.format_strict_va:
        problems.append(
            "Wrong format: write <think>reasoning</think>, <answer>emotion</answer>, then <va>valence, arousal</va> "
            "(two numbers in [-1, 1]) and nothing else."
        )
    elif not va and not parsed.format_strict:
        problems.append(
            "Wrong format: write <think>reasoning</think> then <answer>emotion</answer> and nothing else."
        )
    gold = record.get("AUs")
    if gold is not None:
        missing = [au for au in sort_aus(gold) if au not in predicted]
        extra = [au for au in predicted if au not in set(gold)]
        if missing:
            problems.append(f"The reasoning does not cite these action units: {', '.join(missing)}.")
        if extra:
            problems.append(f"The reasoning cites action units the face does not show: {', '.join(extra)}.")
    if record.get("labels") and answer != record["labels"][0]:
        problems.append(f"The answer is {answer!r} but must be exactly {record['labels'][0]!r}.")
    return problems


class OpenAITeacher:
    """Describe records with a chat-completions model, conditioned on the ground truth.

    ``on_invalid`` decides what an output failing :func:`check_description` does after ``reflections`` corrective
    retries (each sends :meth:`PromptTemplate.reflection_text`): ``"skip"`` returns None, ``"raise"`` raises
    :class:`InvalidDescription`, ``"keep"`` returns the text anyway. ``validate=False`` skips the checks.
    ``base_url`` may end in ``/v1`` or not; requests go to ``<host>/v1/chat/completions``. :meth:`describe_many`
    keeps up to ``max_concurrency`` records in flight (a record's reflection retries stay sequential).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        prompt: PromptTemplate | None = None,
        cache_dir: str | Path | None = None,
        max_retries: int = 5,
        timeout: float = 60,
        temperature: float = 0.0,
        max_tokens: int = 512,
        validate: bool = True,
        on_invalid: Literal["skip", "raise", "keep"] = "skip",
        reflections: int = 0,
        max_concurrency: int = 8,
        backoff: float | None = None,
    ) -> None:
        if on_invalid not in ("skip", "raise", "keep"):
            raise ValueError(f"on_invalid must be skip, raise or keep, got {on_invalid!r}")
        if backoff is not None:
            raise ValueError(
                "teacher.backoff is gone: retries now wait the openai SDK's own exponential backoff (with jitter, "
                "honouring Retry-After); set teacher.max_retries, and teacher.max_concurrency for the request rate"
            )
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
        self.prompt = prompt if prompt is not None else load_prompts()["full_v1"]
        self.validate, self.on_invalid, self.reflections = validate, on_invalid, reflections

    # Read-through names kept from the hand-written client (configs and callers read them).
    url = property(lambda self: self.api.url)
    model = property(lambda self: self.api.model)
    api_key_env = property(lambda self: self.api.api_key_env)
    cache_dir = property(lambda self: self.api.cache_dir)

    def __repr__(self) -> str:
        return (
            f"OpenAITeacher(url={self.url!r}, model={self.model!r}, api_key_env={self.api_key_env!r}, "
            f"prompt={self.prompt.version!r}, on_invalid={self.on_invalid!r})"
        )

    # ---- one record ----------------------------------------------------------------------------------------------
    def describe_with_info(
        self, record: dict[str, Any], client: Any = None
    ) -> tuple[str | None, dict[str, Any]]:
        """The accepted description (or None, see ``on_invalid``) and ``{"problems", "attempts", "cached"}``.

        ``client``: an SDK client from :meth:`ChatAPI.client` to reuse; None makes (and closes) one for this record.
        """
        if client is None:
            with self.api.client() as own:
                return self.describe_with_info(record, own)
        image_url, image_hash = _image_data_url(record["image"])
        text, problems, info = "", [], {"attempts": 0, "cached": 0}
        for attempt in range(self.reflections + 1):
            prompt_text = (
                self.prompt.synthesis_text(record)
                if attempt == 0
                else self.prompt.reflection_text(record, text, problems)
            )
            # The cache key of the hand-written client this replaced, so existing caches keep answering.
            key = [
                self.model,
                self.api.temperature,
                self.api.max_tokens,
                self.prompt.system_text,
                prompt_text,
            ]
            text, cached = self.api.complete(
                self.messages(prompt_text, image_url), client, cache_key=[*key, image_hash]
            )
            info["attempts"] += 1
            info["cached"] += cached
            problems = check_description(text, record, va=self.prompt.asks_va) if self.validate else []
            if not problems:
                break
        info["problems"] = problems
        if problems and self.on_invalid == "raise":
            raise InvalidDescription(str(record.get("id")), problems)
        if problems and self.on_invalid == "skip":
            log.warning("teacher output for %r rejected: %s", record.get("id"), "; ".join(problems))
            return None, info
        return text, info

    def describe(self, record: dict[str, Any]) -> str | None:
        """The validated description of ``record`` (None when rejected and ``on_invalid="skip"``)."""
        return self.describe_with_info(record)[0]

    def describe_many(self, records: Sequence[dict[str, Any]], progress: bool = True) -> list[str | None]:
        """:meth:`describe` for each record, in order, up to ``max_concurrency`` records at once."""
        return self.api.map(
            lambda record, client: self.describe_with_info(record, client)[0],
            records,
            progress=progress,
            desc=f"teacher {self.model}",
        )

    def messages(self, prompt_text: str, image_url: str) -> list[dict[str, Any]]:
        """Chat messages: optional system turn, then the image followed by the text in one user turn."""
        user = [{"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": prompt_text}]
        system = self.prompt.system_text
        return ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user}
        ]


def _image_data_url(path: str | Path) -> tuple[str, str]:
    """(base64 data URL, SHA-256 of the file bytes). The file is sent as is, without re-encoding."""
    data = Path(path).read_bytes()
    mime = mimetypes.guess_type(str(path))[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}", hashlib.sha256(data).hexdigest()
