"""Start pvpython with nbviz's app, under a private Xvfb when there is no usable display.

    python -S nbviz/paraview/runtime/launcher.py --pvpython PATH [--xvfb] -- APP_ARGS...

Run by the kernel as the backend command, by path. It starts ``Xvfb -displayfd`` (which picks
a free display number itself: no racing for display numbers), then replaces itself with
pvpython running nbviz's app (``pvapp.py``; ``exec``), so Xvfb is a child of pvpython in the
session's process group: stopping the session (or the orphan watchdog) ends both. The Debian
ParaView build is GLX-only and needs an X server even for offscreen rendering.

With ``--private-network`` (sessions with MPI ranks started by a local ``mpiexec``) the launcher
first moves itself into a network namespace of its own, which has nothing but a loopback
device: OpenMPI's ``mpiexec`` opens TCP listeners on every interface (they cannot be bound to
loopback), and pvserver's reverse connection is TCP too; in the namespace no other process on
the host, of any user, can reach them. The browser and the kernel reach the session through
Unix sockets, which are files and work across network namespaces.

Standard library only (nbviz's other runtime files; the nbviz package is not imported). It does
not use nbviz's one supervisor (``nbviz/_runtime/supervise.py``) yet: with pvpython as a child
instead of ``exec``, the browser's view of a session with MPI ranks stopped following the mouse
(tests/browser/test_paraview_browser.py), for a reason not found yet.
"""

from __future__ import annotations

if not __package__:  # run by path: plain relative imports all the same (see the file named)
    import runpy
    from pathlib import Path

    _bypath = Path(__file__).resolve().parents[2] / "_runtime" / "bypath.py"
    __package__ = runpy.run_path(str(_bypath))["package"](__file__)

import argparse
import os
import random
import secrets
import struct
import subprocess
import sys
from pathlib import Path

from ..._runtime.netns import end_because, enter_private_network

#: nbviz's app, run by pvpython by path.
APP = Path(__file__).resolve().with_name("pvapp.py")


def write_xauthority(path: str) -> None:
    """A cookie file (0600) matching any display: only holders of it may use the X server."""
    cookie = secrets.token_bytes(16)
    name = b"MIT-MAGIC-COOKIE-1"

    def field(data: bytes) -> bytes:
        return struct.pack(">H", len(data)) + data

    entry = struct.pack(">H", 0xFFFF) + field(b"") + field(b"") + field(name) + field(cookie)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(entry)


def start_xvfb(width: int, height: int, xauthority: str, attempts: int = 8) -> str:
    """Start Xvfb on a free random high display number; return ``:N`` once it accepts clients.

    Random high numbers keep clear of the low ones other X servers (and other users) pick;
    a number already in use makes Xvfb exit at once, and we try another.
    """
    rng = random.SystemRandom()
    for _attempt in range(attempts):
        number = rng.randrange(200, 30000)
        if os.path.exists(f"/tmp/.X{number}-lock") or os.path.exists(f"/tmp/.X11-unix/X{number}"):
            continue
        read_end, write_end = os.pipe()
        try:
            server = subprocess.Popen(
                [
                    "Xvfb",
                    f":{number}",
                    "-displayfd",
                    str(write_end),
                    "-screen",
                    "0",
                    f"{width}x{height}x24",
                    "-nolisten",
                    "tcp",
                    # no reset when the last client leaves: ParaView probes the display with a
                    # short connection first, and a reset racing its next one fails it
                    "-noreset",
                    "-auth",
                    xauthority,
                ],
                pass_fds=(write_end,),
                stdin=subprocess.DEVNULL,
            )
        finally:
            os.close(write_end)
        with os.fdopen(read_end) as f:
            reported = f.readline().strip()  # empty when Xvfb exited (display taken)
        if reported and server.poll() is None:
            return f":{reported}"
        server.wait()
    end_because("nbviz: could not start Xvfb for pvpython (see the lines above)")
    raise AssertionError("not reached")  # end_because exits (mypy sees it as Any here)


def main() -> None:
    parser = argparse.ArgumentParser(prog="nbviz/paraview/runtime/launcher.py")
    parser.add_argument("--pvpython", required=True)
    parser.add_argument("--xvfb", action="store_true", help="start a private Xvfb")
    parser.add_argument("--screen", default="1920x1200")
    parser.add_argument("--pythonpath", default="")
    parser.add_argument("--xauthority", help="cookie file to create for the private Xvfb")
    parser.add_argument(
        "--connect-id", type=int, default=0, help="pvpython's id for pvserver ranks (ranks=N)"
    )
    parser.add_argument(
        "--private-network", action="store_true", help="run in a network namespace of our own"
    )
    parser.add_argument("app_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    env = dict(os.environ)
    if args.private_network:
        try:
            enter_private_network()
            print("nbviz: private network namespace (loopback only) for the MPI ranks", flush=True)
        except OSError as exc:  # (one half set up: the ranks would find no network)
            print(
                f"nbviz: warning: no private network namespace ({exc}); mpiexec's TCP "
                "listeners are on the host's network",
                flush=True,
            )
    if args.xvfb:
        width, height = (int(v) for v in args.screen.split("x"))
        if not args.xauthority:
            end_because("nbviz: --xvfb needs --xauthority PATH (a private file to create)")
        xauthority = args.xauthority
        write_xauthority(xauthority)
        env["XAUTHORITY"] = xauthority
        env["DISPLAY"] = start_xvfb(width, height, xauthority)
        print(f"nbviz: private Xvfb on display {env['DISPLAY']}", flush=True)
    if args.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (args.pythonpath, env.get("PYTHONPATH")) if p
        )
    app_args = args.app_args[1:] if args.app_args[:1] == ["--"] else args.app_args
    # --no-mpi: Debian's pvpython would otherwise start MPI, whose runtime (orted, in a
    # session of its own) listens on TCP on every interface.
    options = [f"--connect-id={args.connect_id}"] if args.connect_id else []
    if args.connect_id:
        app_args = [*app_args, "--connect-id", str(args.connect_id)]
    command = [
        args.pvpython,
        "--no-mpi",
        "--force-offscreen-rendering",
        *options,
        str(APP),
        *app_args,
    ]
    sys.stdout.flush()
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    main()
