"""Start pvpython with nbviz's app, under a private Xvfb when there is no usable display.

    python -S nbviz/paraview/runtime/launcher.py --pvpython PATH [--xvfb --xauthority F] -- ARGS...

Run by the kernel as the backend command, by path. It starts ``Xvfb -displayfd`` on a free
random display, then pvpython with nbviz's app (``pvapp.py``), both as essential children of
nbviz's one supervisor (``nbviz/_runtime/supervise.py``): when either ends, the launcher prints
the agreed last line (``nbviz-exit: nbviz: Xvfb exited (signal SIGKILL); the ParaView session
is gone, ...``), which nbviz makes the first line of the error, and ends the other. On SIGTERM,
SIGINT or SIGHUP it ends both; what they leave behind (pvpython's ``mpiexec``, whose parent
died first) comes to it as the children's subreaper and is ended too. The Debian ParaView build
is GLX-only and needs an X server even for offscreen rendering.

With ``--private-network`` (sessions with MPI ranks started by a local ``mpiexec``) the launcher
first moves itself into a network namespace of its own, which has nothing but a loopback
device, and starts its children there: OpenMPI's ``mpiexec`` opens TCP listeners on every
interface (they cannot be bound to loopback), and pvserver's reverse connection is TCP too; in
the namespace no other process on the host, of any user, can reach them. The browser and the
kernel reach the session through Unix sockets, which are files and work across network
namespaces.

Standard library only (nbviz's other runtime files; the nbviz package is not imported).
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
import sys
from pathlib import Path

from ..._runtime import supervise
from ..._runtime.netns import enter_private_network

#: nbviz's app, run by pvpython by path.
APP = Path(__file__).resolve().with_name("pvapp.py")

#: What an essential child's end means (the end of the reason the launcher's last line gives).
GONE = "the ParaView session is gone, restart() starts a new one"


def say(message: str) -> None:
    print(f"nbviz-launcher: {message}", flush=True)


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


def start_xvfb(
    supervisor: supervise.Supervisor, width: int, height: int, xauthority: str, attempts: int = 8
) -> str:
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
            server = supervisor.spawn(
                "Xvfb",
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
                essential=True,
                pass_fds=(write_end,),
            )
        finally:
            os.close(write_end)
        with os.fdopen(read_end) as f:
            reported = f.readline().strip()  # empty when Xvfb exited (display taken)
        if reported and server.poll() is None:
            return f":{reported}"
        server.wait()
        supervisor.forget(server)
    raise SystemExit("nbviz: could not start Xvfb for pvpython (see the lines above)")


def parse(argv: list[str] | None) -> argparse.Namespace:
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
    return parser.parse_args(argv)


def pvpython_command(args: argparse.Namespace) -> list[str]:
    """pvpython running nbviz's app with the kernel's arguments (``APP_ARGS``)."""
    app_args = args.app_args[1:] if args.app_args[:1] == ["--"] else args.app_args
    # --no-mpi: Debian's pvpython would otherwise start MPI, whose runtime (orted, in a
    # session of its own) listens on TCP on every interface.
    options = [f"--connect-id={args.connect_id}"] if args.connect_id else []
    if args.connect_id:
        app_args = [*app_args, "--connect-id", str(args.connect_id)]
    return [
        args.pvpython,
        "--no-mpi",
        "--force-offscreen-rendering",
        *options,
        str(APP),
        *app_args,
    ]


def run(args: argparse.Namespace, supervisor: supervise.Supervisor) -> int:
    env = dict(os.environ)
    if args.private_network:
        try:
            enter_private_network()
            say("private network namespace (loopback only) for the MPI ranks")
        except OSError as exc:  # (one half set up: the ranks would find no network)
            say(
                f"warning: no private network namespace ({exc}); mpiexec's TCP "
                "listeners are on the host's network"
            )
    if args.xvfb:
        width, height = (int(v) for v in args.screen.split("x"))
        if not args.xauthority:
            raise SystemExit("nbviz: --xvfb needs --xauthority PATH (a private file to create)")
        xauthority = args.xauthority
        write_xauthority(xauthority)
        env["XAUTHORITY"] = xauthority
        env["DISPLAY"] = start_xvfb(supervisor, width, height, xauthority)
        say(f"private Xvfb on display {env['DISPLAY']}")
    if args.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (args.pythonpath, env.get("PYTHONPATH")) if p
        )
    supervisor.spawn("pvpython", pvpython_command(args), essential=True, env=env)
    return supervisor.watch()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    supervisor = supervise.Supervisor(say, gone=GONE)
    return supervise.run_launcher(
        lambda: run(args, supervisor), why=supervisor.why_we_end, end=supervisor.end_all
    )


if __name__ == "__main__":
    sys.exit(main())
