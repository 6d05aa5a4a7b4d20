"""The one atomic writer: concurrent writers of one path never collide, readers never see half a file."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from facial_r1.files import write_json_atomic, write_text_atomic


def test_concurrent_writers_and_a_reader_of_one_path(tmp_path: Path) -> None:
    """8 threads rewrite one file while a reader parses it: with a shared temporary name (``<name>.tmp``) writers
    rename each other's half-written files or find theirs gone; unique names (mkstemp) never do."""
    path = tmp_path / "sub" / "cache.json"
    write_json_atomic(path, {"writer": -1, "payload": []})
    errors: list[BaseException] = []
    done = threading.Event()

    def writer(k: int) -> None:
        try:
            for i in range(40):
                write_json_atomic(path, {"writer": k, "payload": list(range(200 + i))}, indent=None)
        except BaseException as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    def reader() -> None:
        while not done.is_set():
            try:
                obj = json.loads(path.read_text())
                assert len(obj["payload"]) in (0, *range(200, 240))
            except BaseException as err:  # noqa: BLE001
                errors.append(err)
                return

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    watcher.join()
    assert not errors, errors[:3]
    assert json.loads(path.read_text())["writer"] in range(8)
    assert sorted(p.name for p in path.parent.iterdir()) == ["cache.json"], "no temporary file left behind"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path, monkeypatch) -> None:
    path = write_text_atomic(tmp_path / "review.html", "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(path, "new")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["review.html"]


def test_json_keeps_non_ascii_and_stringifies_unknown_types(tmp_path: Path) -> None:
    path = write_json_atomic(tmp_path / "m.json", {"emotion": "überrascht", "path": tmp_path})
    text = path.read_text(encoding="utf-8")
    assert "überrascht" in text and text.endswith("\n")
    assert json.loads(text)["path"] == str(tmp_path)
