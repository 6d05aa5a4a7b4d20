"""One client for OpenAI-compatible chat-completions servers (OpenAI, vLLM, Ollama, ``transformers serve``, ...).

Used by the OpenAI teacher (stage-1 reasoning) and the reasoning judge (evaluation). Requests go through the
``openai`` SDK, which owns retries (HTTP 408/409/429/5xx and connection errors, exponential backoff with jitter,
``Retry-After`` honoured), timeouts and typed errors; SDK errors are re-raised as :class:`ChatAPIError` with the
HTTP status and a redacted message. :meth:`ChatAPI.map` runs many requests at once on a bounded thread pool (a
20k-sample pass is rate-limit bound, not CPU bound). Replies are cached on disk, one JSON file per request keyed by
everything that shapes the reply, so reruns cost nothing.

The API key is read from the environment variable named by ``api_key_env`` when a client is made, lives only in
that client, and is never stored on this object, logged, cached or put into an exception message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

from facial_r1.files import write_json_atomic

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Sent as the key when api_key_env is null: the SDK insists on one, and a placeholder keeps it from falling back to
# $OPENAI_API_KEY, which would hand a real OpenAI key to whatever local server base_url names.
NO_KEY = "no-key"


class ChatAPIError(RuntimeError):
    """The server could not be reached or answered with an error. ``status_code`` is the HTTP status (None for
    connection errors and timeouts). The message never contains the API key."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


def api_root(base_url: str) -> str:
    """``base_url`` with exactly one trailing ``/v1`` (users write the server root either way)."""
    root = base_url.rstrip("/")
    return root if root.endswith("/v1") else root + "/v1"


class ChatAPI:
    """A chat-completions endpoint, model and sampling settings, with an on-disk cache and a concurrency bound.

    Args:
        base_url: server root, with or without ``/v1``; requests go to ``<root>/v1/chat/completions``.
        model: model name as the server knows it.
        api_key_env: NAME of the environment variable holding the key; None sends no real key (local servers).
        cache_dir: folder of cached replies; None = no cache.
        max_retries: SDK retries per request (0 = none).
        timeout: seconds per HTTP request.
        temperature, max_tokens: sampling settings sent with every request (and part of the cache key).
        max_concurrency: requests in flight at once in :meth:`map` (>= 1).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        cache_dir: str | Path | None = None,
        max_retries: int = 5,
        timeout: float = 60,
        temperature: float = 0.0,
        max_tokens: int = 512,
        max_concurrency: int = 8,
    ) -> None:
        if int(max_concurrency) < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
        if int(max_retries) < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries!r}")
        self.base_url = api_root(base_url)
        self.url = self.base_url + "/chat/completions"
        self.model, self.api_key_env = model, api_key_env
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.max_retries, self.timeout = int(max_retries), float(timeout)
        self.temperature, self.max_tokens = float(temperature), int(max_tokens)
        self.max_concurrency = int(max_concurrency)

    def __repr__(self) -> str:
        return f"ChatAPI(url={self.url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    # ---- clients -------------------------------------------------------------------------------------------------
    def client(self) -> Any:
        """A new ``openai.OpenAI`` client with the key read from the environment now (it is thread-safe: share one
        across :meth:`map`'s workers, close it when done)."""
        import openai

        return openai.OpenAI(
            base_url=self.base_url,
            api_key=self._api_key(),
            max_retries=self.max_retries,
            timeout=self.timeout,
        )

    def _api_key(self) -> str:
        if not self.api_key_env:
            return NO_KEY
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ChatAPIError(f"environment variable {self.api_key_env} (the API key) is not set")
        return key

    # ---- requests ------------------------------------------------------------------------------------------------
    def complete(
        self, messages: list[dict[str, Any]], client: Any, cache_key: Any = None
    ) -> tuple[str, bool]:
        """``(reply text, came from the cache)`` for one chat request, asking the server only on a cache miss.

        ``cache_key``: JSON-able material naming the request in the cache instead of the default (server, model,
        sampling settings, messages) - e.g. an image's hash instead of its base64 bytes.
        """
        path = self._cache_path(messages, cache_key)
        if path is not None and path.exists():
            return json.loads(path.read_text())["content"], True
        content = self._request(messages, client)
        if path is not None:
            write_json_atomic(
                path, {"model": self.model, "messages": _text_only(messages), "content": content}, indent=None
            )
        return content, False

    def _request(self, messages: list[dict[str, Any]], client: Any) -> str:
        import openai

        key = None if not self.api_key_env else os.environ.get(self.api_key_env)
        error: ChatAPIError | None = None
        try:
            reply = client.chat.completions.create(
                model=self.model,
                messages=messages,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
            )
        except openai.APIStatusError as err:
            detail = _redact(str(err.message), key)[:300]
            error = ChatAPIError(
                f"POST {self.url} failed with HTTP {err.status_code}: {detail}", err.status_code
            )
        except openai.APITimeoutError:
            error = ChatAPIError(
                f"POST {self.url} timed out after {self.timeout:g} s ({self.max_retries} retries)"
            )
        except openai.APIConnectionError as err:
            cause = _redact(str(err.__cause__ or err), key)[:300]
            error = ChatAPIError(f"POST {self.url} failed ({self.max_retries} retries): {cause}")
        if error is not None:
            # Raised outside the except clause, so the SDK error (which holds the response body, where a server may
            # echo the key) is neither the cause nor the context of ours.
            raise error
        return _content(reply)

    def map(
        self,
        fn: Callable[[T, Any], R],
        items: Sequence[T],
        *,
        progress: bool = True,
        desc: str | None = None,
    ) -> list[R]:
        """``[fn(item, client) for item in items]`` with up to ``max_concurrency`` calls in flight; results keep the
        order of ``items``. The first exception stops the pass (queued items are cancelled) and is raised."""
        if not items:
            return []
        client = self.client()
        try:
            with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(items))) as pool:
                futures = [pool.submit(fn, item, client) for item in items]
                results = []
                try:
                    # In order: the bar advances as the oldest request finishes, and the first failure (in item
                    # order) stops the pass.
                    for future in tqdm(futures, desc=desc or self.model, disable=not progress):
                        results.append(future.result())
                except BaseException:
                    for future in futures:
                        future.cancel()  # queued requests are dropped; the few in flight finish
                    raise
                return results
        finally:
            client.close()

    def _cache_path(self, messages: list[dict[str, Any]], cache_key: Any = None) -> Path | None:
        if self.cache_dir is None:
            return None
        if cache_key is None:
            # The server is part of the key: the same model name on two servers (a local vLLM, the OpenAI API) may
            # answer differently.
            cache_key = [self.base_url, self.model, self.temperature, self.max_tokens, messages]
        material = json.dumps(cache_key, sort_keys=True)
        return self.cache_dir / f"{hashlib.sha256(material.encode()).hexdigest()}.json"


def _content(reply: Any) -> str:
    """The assistant text of a chat-completions reply, stripped (servers often add a leading newline)."""
    try:
        content = reply.choices[0].message.content
    except (AttributeError, IndexError, TypeError) as err:
        raise ChatAPIError(f"unexpected chat-completions reply: {str(reply)[:300]!r}") from err
    if isinstance(content, list):  # some servers return content parts
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return (content or "").strip()


def _text_only(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages with image parts reduced to a marker: the cache file stays readable and small."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = [p if p.get("type") == "text" else {"type": p.get("type")} for p in content]
        out.append({**message, "content": content})
    return out


def _redact(text: str, key: str | None) -> str:
    return text.replace(key, "***") if key else text
