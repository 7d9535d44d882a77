"""The desktop's X server, seen from outside it: free display numbers, the screen's size
(RandR), windows kept on the screen (standard library and X tools only).

Used by the launcher (run by path) and by the kernel (``RemoteDesktop``: ``display=`` checks,
``size`` changes), as ``nbviz.desktop.runtime.xserver``.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

X_START_TIMEOUT = 20.0


def display_owner(number: int) -> int | None:
    """The pid in display ``:number``'s lock file (None: no readable lock)."""
    try:
        return int(Path(f"/tmp/.X{number}-lock").read_text().strip())
    except (OSError, ValueError):
        return None


def display_in_use(number: int) -> bool:
    """True if an X server has display ``:number``: its socket answers, or its lock file
    names a live process (an X server writes the lock first, then listens).

    A socket file nobody listens on is a leftover of an X server that was killed (SIGKILL
    leaves it behind); the next X server on that number replaces it, so it does not hold the
    number: else each such leftover took a number for good (and ``display=`` said "in use").
    """
    path = Path(f"/tmp/.X11-unix/X{number}")
    if path.exists():
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(path))
                return True
            except ConnectionRefusedError:
                pass  # nobody listens: a leftover, unless the lock says otherwise
            except OSError:
                return True  # not ours to use (no permission, not a socket)
    pid = display_owner(number)
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_display(start: int = 0) -> int:
    """The lowest display number from ``start`` no X server has (as Xvfb's own -displayfd
    search does from 0)."""
    number = start
    while display_in_use(number):
        number += 1
    return number


def set_screen_size(env: dict[str, str], width: int, height: int, *, windows: bool = True) -> None:
    """Resize the X screen of ``env["DISPLAY"]`` with RandR (Xvfb and Xvnc both accept it).

    Raises ``RuntimeError`` with xrandr's message when the server refuses. ``windows``: then
    keep the windows on the screen (:func:`keep_windows_on_screen`).
    """

    def xrandr(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["xrandr", *args], env=env, capture_output=True, text=True, check=False, timeout=10
        )

    query = xrandr("-q")
    if query.returncode != 0:
        raise RuntimeError(query.stderr.strip() or "xrandr -q failed")
    lines = query.stdout.splitlines()
    output = next((ln.split()[0] for ln in lines if " connected" in ln), None)
    if output is None:
        raise RuntimeError("the X server has no connected RandR output")
    mode = f"{width}x{height}"
    if not any(ln.split()[:1] == [mode] for ln in lines):
        xrandr("--newmode", mode, "0", str(width), "0", "0", "0", str(height), "0", "0", "0")
        xrandr("--addmode", output, mode)
    result = xrandr("--output", output, "--mode", mode, "--fb", mode)
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip() or f"xrandr could not set {mode}")
    if windows:
        keep_windows_on_screen(env, width, height)


def keep_windows_on_screen(env: dict[str, str], width: int, height: int) -> None:
    """Move the windows a smaller screen left partly outside back into it (openbox keeps them
    where they were: the xterm, centred on the 1280x800 screen a desktop starts with, was cut
    off once the screen took the frame's size)."""

    def run(*argv: str) -> str:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10)
        return done.stdout if done.returncode == 0 else ""

    for line in run("wmctrl", "-l", "-G").splitlines():
        fields = line.split()
        try:
            window = fields[0]
            x, y, w, h = (int(n) for n in fields[2:6])
        except (IndexError, ValueError):  # not a line of the listing nbviz knows
            continue
        # wmctrl's x and y are offset by the frame: right and below the client's own
        if x + w <= width and y + h <= height:
            continue
        info = dict(
            item.strip().split(": ", 1)
            for item in run("xwininfo", "-id", window).splitlines()
            if ": " in item
        )
        extents = run("xprop", "-id", window, "_NET_FRAME_EXTENTS").partition(" = ")[2]
        sides = [int(n) for n in extents.split(",") if n.strip().isdigit()]
        left, right, top, bottom = [*sides, 0, 0, 0, 0][:4]
        try:
            fx = int(info["Absolute upper-left X"]) - left
            fy = int(info["Absolute upper-left Y"]) - top
        except (KeyError, ValueError):
            continue
        nx = max(0, min(fx, width - (w + left + right)))
        ny = max(0, min(fy, height - (h + top + bottom)))
        if (nx, ny) != (fx, fy):
            run("wmctrl", "-i", "-r", window, "-e", f"0,{nx},{ny},-1,-1")
