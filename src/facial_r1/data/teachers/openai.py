"""A teacher behind any OpenAI-compatible chat-completions API (OpenAI, vLLM, Ollama, LM Studio, ...).

Standard library only (``urllib``). Each request sends the image as a base64 data URL followed by the prompt's
ground-truth-conditioned text (:meth:`PromptTemplate.synthesis_text`). The API key is read from the environment
variable named in the config at request time and is never stored on the object, logged, cached or put into an
exception message. Responses are cached on disk by (model, temperature, prompt text, image hash), so reruns cost
nothing, and validated with :func:`check_description` (the synthesis triple check: format, AU set, answer).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import logging
import mimetypes
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from facial_r1.data.prompts import PromptTemplate, load_prompts
from facial_r1.facs import sort_aus
from facial_r1.parsing import parse

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class TeacherError(RuntimeError):
    """The API could not be reached or answered with an error (message never contains the key)."""


class InvalidDescription(ValueError):
    """The teacher's text failed :func:`check_description`; ``problems`` lists why."""

    def __init__(self, record_id: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"record {record_id!r}: " + "; ".join(problems))


def check_description(text: str, record: dict[str, Any]) -> list[str]:
    """Problems with ``text`` as the reference description of ``record``; ``[]`` = accepted.

    The synthesis triple check, read through the project parser (``facial_r1.parsing.parse``): the strict format
    (``<think>...</think><answer>...</answer>``, nothing outside the tags); the AU codes cited inside ``<think>``
    (numbers only, not FACS names: the AU reward reads codes; negated mentions dropped) equal the gold set when the
    record has ``AUs``; the answer equals the first gold label exactly when it has labels. Messages are plain
    sentences because reflection prompts quote them back to the model.
    """
    parsed = parse(text, label_set=record.get("label_set") or None, map_au_names=False)
    predicted, answer = parsed.aus, (parsed.answer.strip() if parsed.answer is not None else None)
    problems = []
    if not parsed.format_strict:
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
    ``base_url`` may end in ``/v1`` or not; requests go to ``<host>/v1/chat/completions``.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        prompt: PromptTemplate | None = None,
        cache_dir: str | Path | None = None,
        max_retries: int = 5,
        backoff: float = 1.0,
        timeout: float = 60,
        temperature: float = 0.0,
        max_tokens: int = 512,
        validate: bool = True,
        on_invalid: Literal["skip", "raise", "keep"] = "skip",
        reflections: int = 0,
    ) -> None:
        if on_invalid not in ("skip", "raise", "keep"):
            raise ValueError(f"on_invalid must be skip, raise or keep, got {on_invalid!r}")
        root = base_url.rstrip("/")
        self.url = root + ("/chat/completions" if root.endswith("/v1") else "/v1/chat/completions")
        self.model, self.api_key_env = model, api_key_env
        self.prompt = prompt if prompt is not None else load_prompts()["full_v1"]
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.max_retries, self.backoff, self.timeout = max_retries, backoff, timeout
        self.temperature, self.max_tokens = temperature, max_tokens
        self.validate, self.on_invalid, self.reflections = validate, on_invalid, reflections

    def __repr__(self) -> str:
        return (
            f"OpenAITeacher(url={self.url!r}, model={self.model!r}, api_key_env={self.api_key_env!r}, "
            f"prompt={self.prompt.version!r}, on_invalid={self.on_invalid!r})"
        )

    # ---- one record ----------------------------------------------------------------------------------------------
    def describe_with_info(self, record: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        """The accepted description (or None, see ``on_invalid``) and ``{"problems", "attempts", "cached"}``."""
        image_url, image_hash = _image_data_url(record["image"])
        text, problems, info = "", [], {"attempts": 0, "cached": 0}
        for attempt in range(self.reflections + 1):
            prompt_text = (
                self.prompt.synthesis_text(record)
                if attempt == 0
                else self.prompt.reflection_text(record, text, problems)
            )
            text, cached = self._complete_cached(prompt_text, image_url, image_hash)
            info["attempts"] += 1
            info["cached"] += cached
            problems = check_description(text, record) if self.validate else []
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
        """:meth:`describe` for each record in order (sequential: rate limits, not CPU, bound an API teacher)."""
        return [self.describe(r) for r in tqdm(records, desc=f"teacher {self.model}", disable=not progress)]

    # ---- HTTP --------------------------------------------------------------------------------------------------
    def messages(self, prompt_text: str, image_url: str) -> list[dict[str, Any]]:
        """Chat messages: optional system turn, then the image followed by the text in one user turn."""
        user = [{"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": prompt_text}]
        system = self.prompt.system_text
        return ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user}
        ]

    def _complete_cached(self, prompt_text: str, image_url: str, image_hash: str) -> tuple[str, bool]:
        key_material = json.dumps(
            [self.model, self.temperature, self.max_tokens, self.prompt.system_text, prompt_text, image_hash]
        )
        path = (
            self.cache_dir / f"{hashlib.sha256(key_material.encode()).hexdigest()}.json"
            if self.cache_dir
            else None
        )
        if path is not None and path.exists():
            return json.loads(path.read_text())["content"], True
        content = self.complete(self.messages(prompt_text, image_url))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"model": self.model, "prompt": prompt_text, "content": content}))
            os.replace(tmp, path)  # atomic: an interrupted run never leaves a half-written entry
        return content, False

    def complete(self, messages: list[dict[str, Any]]) -> str:
        """POST one chat completion, retrying 429/5xx/connection errors with exponential backoff; the reply text."""
        body = json.dumps(
            {
                "model": self.model,
                "messages": messages,
                "temperature": self.temperature,
                "max_tokens": self.max_tokens,
            }
        ).encode()
        key = self._api_key()
        headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
        for attempt in range(self.max_retries + 1):
            delay = self.backoff * 2**attempt
            try:
                request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return _content(response.read())
            except urllib.error.HTTPError as err:
                detail = _redact(err.read().decode(errors="replace")[:300], key)
                if err.code not in _RETRY_STATUS or attempt == self.max_retries:
                    raise TeacherError(f"POST {self.url} failed with HTTP {err.code}: {detail}") from None
                delay = _retry_after(err.headers.get("Retry-After"), delay)
                log.warning(
                    "HTTP %d from %s, retry %d/%d in %.1fs",
                    err.code,
                    self.url,
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as err:
                reason = _redact(str(getattr(err, "reason", err)), key)
                if attempt == self.max_retries:
                    raise TeacherError(f"POST {self.url} failed: {reason}") from None
                log.warning(
                    "%s from %s, retry %d/%d in %.1fs", reason, self.url, attempt + 1, self.max_retries, delay
                )
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _api_key(self) -> str | None:
        if not self.api_key_env:
            return None  # local servers (vLLM, Ollama) often need no key
        key = os.environ.get(self.api_key_env)
        if not key:
            raise TeacherError(f"environment variable {self.api_key_env} (the API key) is not set")
        return key


def _image_data_url(path: str | Path) -> tuple[str, str]:
    """(base64 data URL, SHA-256 of the file bytes). The file is sent as is, without re-encoding."""
    data = Path(path).read_bytes()
    mime = mimetypes.guess_type(str(path))[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}", hashlib.sha256(data).hexdigest()


def _content(raw: bytes) -> str:
    """The assistant text of a chat-completions reply, stripped (servers often add a leading newline)."""
    try:
        content = json.loads(raw)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise TeacherError(f"unexpected chat-completions reply: {raw[:300]!r}") from err
    if isinstance(content, list):  # some servers return content parts
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return (content or "").strip()


def _retry_after(header: str | None, default: float) -> float:
    try:
        return min(float(header), 60.0) if header else default
    except ValueError:
        return default


def _redact(text: str, key: str | None) -> str:
    return text.replace(key, "***") if key else text
