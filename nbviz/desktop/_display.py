"""The kernel's handle on a desktop's X display: X tools run with its ``DISPLAY`` and
``XAUTHORITY`` (window list, titles, clipboard), and the programs ``launch()`` starts there.

Kernel side, no traits: :class:`~nbviz.desktop.RemoteDesktop` calls these with its ``x_env``.
"""

from __future__ import annotations

import ast
import contextlib
import shlex
import subprocess
import time
from pathlib import Path

from .. import _orphans
from .._errors import NbvizError
from .._log import tail
from .._spec import find_program
from .._tree import kill_tree
from ..app import LogText

#: How long setting the clipboard waits for the desktop to see the new text (seconds).
CLIPBOARD_TIMEOUT = 3.0


class Program:
    """A program started on the desktop by :meth:`RemoteDesktop.launch`."""

    def __init__(
        self, argv: list[str], proc: subprocess.Popen[bytes], log_path: Path | None = None
    ) -> None:
        self.argv = argv
        self._proc = proc
        self._log_path = log_path

    def logs(self, lines: int | None = None) -> LogText:
        """What the program printed (stdout and stderr), or its last ``lines`` lines; kept
        until the desktop stops."""
        text = ""
        if self._log_path is not None:
            with contextlib.suppress(OSError):
                text = self._log_path.read_text(errors="replace")
        return LogText(tail(text, lines) if lines else text)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self._proc.wait(timeout)

    def stop(self) -> None:
        """End the program (and whatever it started)."""
        kill_tree(self._proc)  # also reaches what it started in its process group
        _orphans.release(self._proc.pid)

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited with {self.returncode}"
        return f"<Program {shlex.join(self.argv)!r} pid={self.pid} {state}>"


def run_x(
    env: dict[str, str], argv: list[str], *, input: bytes | None = None, timeout: float = 10
) -> bytes:
    """Run an X tool on the display of ``env``; raises NbvizError with its message when it
    fails."""
    program = find_program(argv[0], env)
    try:
        result = subprocess.run(
            [program, *argv[1:]], env=env, input=input, capture_output=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise NbvizError(f"nbviz: {argv[0]} did not finish in {timeout:g} s") from None
    if result.returncode != 0:
        raise NbvizError(
            f"nbviz: {shlex.join(argv)} failed on {env['DISPLAY']}: "
            f"{result.stderr.decode(errors='replace').strip()}"
        )
    return result.stdout


def read_windows(env: dict[str, str]) -> list[str]:
    """The titles of the windows on the display (the window manager's list)."""
    try:
        listing = run_x(env, ["wmctrl", "-l"])
    except NbvizError as exc:
        # No window manager (yet, or window_manager=""): nothing publishes the list.
        if "Cannot get client list" in str(exc):
            return []
        raise
    lines = listing.decode(errors="replace").splitlines()
    titles = []
    for line in lines:
        parts = line.split(None, 3)
        title = parts[3] if len(parts) == 4 else ""
        if title == "N/A":  # wmctrl reads WM_NAME only as Latin-1 text (xterm -T 'Grüße')
            title = window_title(env, parts[0])
        titles.append(title)
    return titles


def window_title(env: dict[str, str], window: str) -> str:
    """The title of ``window`` (an X window id), read with xprop, which decodes WM_NAME in
    every encoding (COMPOUND_TEXT, UTF-8); "" for a window without one."""
    env = dict(env, LC_ALL="C.UTF-8")  # xprop prints the text, not octal escapes
    result = subprocess.run(
        [find_program("xprop", env), "-id", window, "_NET_WM_NAME", "WM_NAME"],
        env=env,
        capture_output=True,
        timeout=5,
    )
    for line in result.stdout.decode(errors="replace").splitlines():
        _name, found, value = line.partition(" = ")
        if found and value.startswith('"'):
            with contextlib.suppress(ValueError, SyntaxError):
                return str(ast.literal_eval(value))  # "..." with C escapes, as xprop quotes
            return value.strip('"')
    return ""


def read_clipboard(env: dict[str, str]) -> str | None:
    """The display's clipboard, or None when nothing was copied (or xclip hangs)."""
    try:
        result = subprocess.run(
            [find_program("xclip", env), "-selection", "clipboard", "-o"],
            env=env,
            capture_output=True,
            timeout=5,
        )
    except subprocess.TimeoutExpired:
        return None
    if result.returncode != 0:  # nothing copied yet
        return None
    return result.stdout.decode(errors="replace")


def own_clipboard(env: dict[str, str], text: str) -> subprocess.Popen[bytes]:
    """Make ``text`` the display's clipboard; returns the xclip that holds it once the
    display sees it (stop it when something else is copied)."""
    # xclip keeps running (-quiet: in the foreground) as the selection's owner until
    # something else is copied.
    proc = subprocess.Popen(
        [find_program("xclip", env), "-selection", "clipboard", "-i", "-quiet"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _orphans.guard(proc.pid, [])
    assert proc.stdin is not None
    proc.stdin.write(text.encode())
    proc.stdin.close()
    return proc


def wait_for_clipboard(env: dict[str, str], text: str) -> None:
    """Return once the display's clipboard is ``text`` (xclip takes the selection
    asynchronously), or after :data:`CLIPBOARD_TIMEOUT`."""
    deadline = time.monotonic() + CLIPBOARD_TIMEOUT
    while read_clipboard(env) != text and time.monotonic() < deadline:
        time.sleep(0.01)
