"""Atomic file writes, and a lock for "build it unless it exists" across processes.

Atomic writes: the one way this package writes a JSON (or any text) file that another process may read.

The text goes to a uniquely named temporary file beside the target (``tempfile.mkstemp``), then ``os.replace`` puts
it in place: a reader sees the old file or the new one, never half of one, and concurrent writers of the same path
(the API clients' worker threads caching one reply, two runs writing one report) never share a temporary file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (parent folders are created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding=encoding) as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """``obj`` as JSON (non-ASCII kept, unknown types as ``str``), written atomically; returns the path."""
    return write_text_atomic(path, json.dumps(obj, indent=indent, ensure_ascii=False, default=str) + "\n")


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, *, wait: bool = True) -> Iterator[None]:
    """Hold an advisory lock on ``path`` (created if missing) for the ``with`` block.

    ``wait=True`` waits while another process holds it: makes "build it unless it exists" safe across processes
    (check again once the lock is held). ``wait=False`` raises ``BlockingIOError`` at once instead: "one writer per
    folder" (the synthesis store). Without ``fcntl`` (Windows) it holds nothing: one process per folder there.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
