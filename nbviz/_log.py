"""A start's log: what the backend printed (stdout and stderr, one file), read back, and kept
under a size limit."""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from pathlib import Path

from ._errors import ArgumentTypeError, TemplateError

LOG_TAIL_LINES = 30
#: Bytes of output the log may hold before its older part is dropped: an app that prints
#: without end must not fill the runtime dir (a small tmpfs, or the home quota) nor the
#: kernel's memory. ``read()`` then returns between this and twice this much.
LOG_LIMIT = 8 * 1024 * 1024
#: Seconds between two looks at the log's size (a stat): a backend printing faster than
#: LOG_LIMIT per look holds more on disk for that moment; ``read()`` still returns at most
#: twice LOG_LIMIT.
LOG_CHECK_INTERVAL = 0.2
LOG_DROPPED = "[nbviz: earlier output was dropped; the log keeps only the latest part]"


#: Terminal control sequences (colours: ParaView's log prints "\x1b[0m\x1b[31m(...) ERR|"):
#: noise in an error message, a frame or ``logs()``.
ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def strip_ansi(text: str) -> str:
    return ANSI_ESCAPE.sub("", text)


def tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class BackendLog:
    """``backend.log`` in a start's session directory (and ``backend.log.1``, its older part).
    Once the session's files are gone, :meth:`read` returns what it held last."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self._last = ""
        #: Held while the log is read or rotated (from the kernel and the lifecycle thread).
        self._lock = threading.Lock()
        self._dropped = False
        self._checked = 0.0

    def open(self, session_dir: Path) -> None:
        """A new start's (empty) log."""
        self.path = session_dir / "backend.log"
        self._dropped = False
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)

    def writer(self) -> int:
        """A file descriptor that appends to the log (for a process's stdout/stderr)."""
        assert self.path is not None
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def close(self) -> None:
        """The session's files go: remember what the log says."""
        self._last = self.read()
        self.path = None

    def read(self) -> str:
        path = self.path
        text = self._last
        if path is not None:
            with self._lock:
                try:
                    # The latest 2 * LOG_LIMIT bytes at most, however fast the backend writes
                    # between two looks (cap): the kernel's memory stays bounded.
                    data, cut = _tail_bytes(path, 2 * LOG_LIMIT)
                    older = path.with_name("backend.log.1")
                    if not cut and older.exists():
                        data_older, cut = _tail_bytes(older, 2 * LOG_LIMIT - len(data))
                        data = data_older + data
                    if cut:  # from a line's start
                        data = data[data.find(b"\n") + 1 :]
                    text = strip_ansi(data.decode(errors="replace"))
                    if self._dropped or cut:
                        text = f"{LOG_DROPPED}\n{text}"
                except OSError:
                    pass
        return text

    def lines(self, lines: int | None = None) -> str:
        """What it holds, or its last ``lines`` lines."""
        if lines is not None and (not isinstance(lines, int) or isinstance(lines, bool)):
            raise ArgumentTypeError(f"lines= must be an int (or None), got {lines!r}")
        if lines is not None and lines < 0:
            raise TemplateError(f"lines= must be a number of lines (0 or more), got {lines}")
        text = self.read()
        return text if lines is None else tail(text, lines) if lines else ""

    def cap(self) -> None:
        """Keep the log under LOG_LIMIT: past it, its latest LOG_LIMIT bytes (from a line start)
        become ``backend.log.1`` and the log starts empty again. The backend writes with
        O_APPEND, so it goes on at the new end; what it writes between the copy and the
        truncation (microseconds) is lost, as with logrotate's copytruncate."""
        now = time.monotonic()
        if now - self._checked < LOG_CHECK_INTERVAL:
            return
        self._checked = now
        path = self.path
        if path is None:
            return
        with self._lock, contextlib.suppress(OSError):
            size = path.stat().st_size
            if size <= LOG_LIMIT:
                return
            with open(path, "rb") as log:
                log.seek(size - LOG_LIMIT)
                kept = log.read()
                os.truncate(path, 0)
            start = kept.find(b"\n") + 1
            fd = os.open(
                path.with_name("backend.log.1"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600
            )
            with os.fdopen(fd, "wb") as older:
                older.write(kept[start:])
            self._dropped = True


#: The line a program nbviz runs (a launcher, a runner) prints last to say why it ends, e.g.
#: ``nbviz-exit: nbviz: Xvfb exited (signal SIGKILL); the desktop is gone, ...``: the lifecycle
#: makes its text the first line of the error, which the frame shows. (Files run by path cannot
#: import nbviz: they print the prefix as it is.)
EXIT_REASON = "nbviz-exit: "


def exit_reason(log: str) -> str | None:
    """The reason the backend's own supervisor gave for its end: the text of its last
    :data:`EXIT_REASON` line (anywhere in a line: a launcher may prefix its lines), or None."""
    for line in reversed(log.splitlines()):
        _before, found, reason = line.partition(EXIT_REASON)
        if found and reason.strip():
            return reason.strip()
    return None


def _tail_bytes(path: Path, limit: int) -> tuple[bytes, bool]:
    """The last ``limit`` bytes of ``path``, and whether there was more before them."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size > limit:
            file.seek(size - limit)
        return file.read(limit), size > limit
