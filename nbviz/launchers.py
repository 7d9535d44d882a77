"""JupyterLab launcher tiles: an Xpra desktop and ParaView, each in a Lab tab.

jupyter-server-proxy reads these through its ``jupyter_serverproxy_servers`` entry points when
the Jupyter server starts, and serves them as named servers ``{base}nbviz-desktop/`` and
``{base}nbviz-paraview/``; the first click on a tile starts the process, later clicks open the
same desktop. Each runs nbviz's desktop launcher (``nbviz/desktop/runtime/launcher.py``: Xvfb,
window manager, Xpra's HTML5 client) on a Unix socket; the ParaView tile starts ParaView's own
GUI on that desktop, so every ParaView feature (file dialogs, filters, Python shell) is there.

Security as with :class:`nbviz.RemoteDesktop`: no TCP port exists; the socket lives in a 0700
directory that jupyter-server-proxy creates (``unix_socket: True``); the X server takes only
clients with the session's cookie; every request needs the Jupyter login. Unlike nbviz's own
route, jupyter-server-proxy passes the browser's headers on to Xpra (which ignores them).
The process belongs to the Jupyter server (not to a kernel): jupyter-server-proxy stops it when
the server stops, restarts it if it fails, and it ends itself if the server dies
(parent-death signal). On exit it removes its socket, its state and the socket's directory.

    python -m nbviz.launchers desktop --socket PATH --parent PID
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from . import _paths

ICONS = Path(__file__).with_name("icons")
#: name -> (tile title, program started on the desktop, icon, startup timeout in seconds)
TILES: dict[str, tuple[str, str, str, float]] = {
    "desktop": ("Desktop", "xterm", "desktop.svg", 30.0),
    # Debian's ParaView is built with MPI: initialised, it listens on TCP ports (its own and
    # OpenMPI's orted, on every interface). The GUI does not need it.
    "paraview": ("ParaView", "paraview --no-mpi", "paraview.svg", 30.0),
}
SIZE = "1440x900"
PR_SET_PDEATHSIG = 1


def _server(name: str) -> dict[str, Any]:
    title, program, icon, timeout = TILES[name]
    usable = bool(shutil.which("xpra") and shutil.which(program.split()[0]))
    return {
        "command": [
            sys.executable,
            "-m",
            "nbviz.launchers",
            name,
            "--socket",
            "{unix_socket}",
            # this function runs in the Jupyter server: the launcher ends when it dies
            "--parent",
            str(os.getpid()),
        ],
        "unix_socket": True,
        "timeout": timeout,
        "absolute_url": False,
        "new_browser_tab": False,
        "launcher_entry": {
            "enabled": usable,
            "title": title,
            "icon_path": str(ICONS / icon),
        },
    }


def desktop() -> dict[str, Any]:
    """jupyter-server-proxy entry point: the "Desktop" tile (an Xpra desktop with xterm)."""
    return _server("desktop")


def paraview() -> dict[str, Any]:
    """jupyter-server-proxy entry point: the "ParaView" tile (ParaView's GUI on a desktop)."""
    return _server("paraview")


def _die_with(parent: int) -> None:
    """Get SIGTERM when the Jupyter server dies (Linux), so no desktop outlives it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the signal was armed
        raise SystemExit("nbviz: the Jupyter server is gone")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbviz.launchers")
    parser.add_argument("tile", choices=sorted(TILES))
    parser.add_argument("--socket", required=True, help="Unix socket to serve the desktop on")
    parser.add_argument("--parent", type=int, help="pid of the Jupyter server")
    args = parser.parse_args(argv)
    if args.parent:
        _die_with(args.parent)
    socket = Path(args.socket)
    # jupyter-server-proxy made this directory (0700); after a restart (it restarts a failed
    # server) we made it go away: re-create it, refusing one that is not private to us.
    _paths.private_dir(socket.parent)
    from .desktop.runtime import launcher, shared

    try:
        return launcher.main(
            [
                *("--backend", "xpra", "--socket", str(socket), "--size", SIZE),
                *("--start", TILES[args.tile][1]),
            ]
        )
    finally:
        shutil.rmtree(shared.state_dir_for(str(socket)), ignore_errors=True)
        socket.unlink(missing_ok=True)
        try:
            socket.parent.rmdir()  # only when empty: nothing else of ours was in it
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main())
