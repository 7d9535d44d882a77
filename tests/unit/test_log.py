"""The backend's log (``_log.BackendLog``): what ``read()`` returns stays bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbviz import _log


def test_reading_a_log_bigger_than_its_limit_returns_only_its_latest_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend that prints faster than the log is capped (between two looks): reading it
    still holds at most twice the limit, from a line's start, and says that output was
    dropped; the older part counts only while there is room."""
    monkeypatch.setattr(_log, "LOG_LIMIT", 1000)
    log = _log.BackendLog()
    log.open(tmp_path)
    lines = [f"line {i:05d} ".ljust(49, "x") + "\n" for i in range(500)]  # 25 000 bytes
    (tmp_path / "backend.log.1").write_text("older\n" * 400)  # 2400 bytes
    (tmp_path / "backend.log").write_text("".join(lines))
    text = log.read()
    assert text.startswith(_log.LOG_DROPPED + "\n")
    body = text.split("\n", 1)[1]
    assert len(body.encode()) <= 2000 and body.endswith(lines[-1])
    assert body.startswith("line ") and "older" not in body
    # a short log (500 bytes): the older part comes first, as much of it as fits (1500 bytes,
    # less the line cut at their start)
    (tmp_path / "backend.log").write_text("".join(lines[-10:]))
    text = log.read()
    assert text.endswith("\n" + "".join(lines[-10:])) and text.count("older\n") == 249
    assert text.startswith(_log.LOG_DROPPED)
    # small ones: whole
    (tmp_path / "backend.log.1").write_text("older\n")
    assert log.read() == "older\n" + "".join(lines[-10:])
