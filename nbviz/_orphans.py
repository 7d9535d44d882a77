"""Kernel side of the orphan guard (see ``_watchdog.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

_lock = threading.Lock()
_pipe: int | None = None  # write end of the watchdog's stdin; closing it (or dying) triggers it
#: pid -> the message that registered it
_registered: dict[int, dict[str, object]] = {}


def _spawn() -> int:
    read_end, write_end = os.pipe()  # both close-on-exec; the child gets read_end as its stdin
    try:
        subprocess.run(
            [sys.executable, "-S", "-u", str(Path(__file__).with_name("_watchdog.py"))],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a signal to the kernel's process group must not reach it
            close_fds=True,
            check=True,
            timeout=30,
        )
    finally:
        os.close(read_end)
    return write_end


def _write(fd: int, message: dict[str, object]) -> None:
    os.write(fd, (json.dumps(message) + "\n").encode())


def _send(message: dict[str, object]) -> None:
    global _pipe
    for _attempt in range(2):
        if _pipe is None:
            _pipe = _spawn()
            for pid, registered in _registered.items():
                if pid != message.get("add"):
                    _write(_pipe, registered)
        try:
            _write(_pipe, message)
            return
        except OSError:  # the watchdog died: start a new one and tell it everything again
            os.close(_pipe)
            _pipe = None


def guard(
    pid: int, paths: list[str], session: str | None = None, end: list[list[str]] | None = None
) -> None:
    """Have the watchdog kill ``pid`` (and its process tree) and remove ``paths`` if we die;
    with ``session``, also every process whose environment carries that session id (those
    that daemonized away from the tree; see ``_process.SESSION_ENV_VAR``); then run the ``end``
    commands (``scancel`` of a Slurm job)."""
    message: dict[str, object] = {"add": pid, "paths": paths}
    if session:
        message["session"] = session
    if end:
        message["end"] = end
    with _lock:
        _registered[pid] = message
        _send(message)


def release(pid: int) -> None:
    """``pid`` was stopped normally: forget it."""
    with _lock:
        if _registered.pop(pid, None) is not None:
            _send({"remove": pid})


def watchdog_running() -> bool:
    """True when this process has a live watchdog."""
    return _pipe is not None
