"""``nbviz doctor``: what is installed, which server and routes a kernel would use, and why not.

``nbviz dashboard notebook.ipynb``: the notebook as a Voilà dashboard (see ``_dashboard``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

from . import __version__, _dashboard, _paths, _registry, _remote, _server, _slurm, _transport
from ._errors import NbvizError
from ._process import Process
from ._routes import NO_ROUTE_HINT, route_for
from ._spec import INSTALL_HINTS, Spec
from .desktop._spec import REQUIREMENTS as DESKTOP_REQUIREMENTS
from .desktop._spec import TOOLS as DESKTOP_TOOLS

OK, NO, INFO = "ok  ", "MISS", "    "

#: (what, programs or paths to look for, the nbviz class that needs it, for what)
BACKENDS: list[tuple[str, list[str], str, str]] = [
    ("ParaView (pvpython)", ["pvpython"], "ParaViewSession", ""),
    ("ParaView server (pvserver)", ["pvserver"], "ParaViewSession", "ranks=N"),
    ("MPI launcher (mpiexec)", ["mpiexec"], "ParaViewSession", "ranks=N"),
    ("Xvfb", ["Xvfb"], "ParaViewSession", "no display"),
    ("Xpra", ["xpra"], "RemoteDesktop", ""),
    ("TigerVNC (Xvnc, vncpasswd)", ["Xvnc", "vncpasswd"], "RemoteDesktop", "backend='vnc'"),
    ("websockify (Python module)", ["py:websockify"], "RemoteDesktop", "backend='vnc'"),
    ("noVNC", ["/usr/share/novnc/vnc.html"], "RemoteDesktop", "backend='vnc'"),
    ("xterm", ["xterm"], "RemoteDesktop", "default terminal"),
    ("openbox", ["openbox"], "RemoteDesktop", "default window manager"),
    ("X tools", list(DESKTOP_TOOLS), "RemoteDesktop", "windows, clipboard, screenshot()"),
    ("OpenSSH client (ssh)", ["ssh"], "WebApp", "ssh= backends on another host"),
    ("OpenFOAM (icoFoam)", ["icoFoam"], "Solver", "OpenFOAM runs, tutorial 08"),
    (
        "OpenFOAM tutorial cases",
        ["/usr/share/doc/openfoam-examples/examples"],
        "Solver",
        "tutorial 08",
    ),
    ("Chromium", ["chromium"], "WebApp", "browser tests only"),
]

INSTALL = {
    **INSTALL_HINTS,
    **{tool: f"apt-get install {package}" for tool, package in DESKTOP_TOOLS.items()},
    **{tool: hint for needs in DESKTOP_REQUIREMENTS.values() for tool, hint in needs.items()},
    "py:websockify": "pip install 'websockify>=0.13' (Debian's 0.10 cannot serve a Unix socket)",
    "/usr/share/novnc/vnc.html": "apt-get install novnc",
    "chromium": "apt-get install chromium",
    "icoFoam": "apt-get install openfoam",
    "/usr/share/doc/openfoam-examples/examples": "apt-get install openfoam-examples",
}


FALLBACK_NOTE = (
    "meanwhile backends listen on 127.0.0.1 ports behind proxy/<port>/, where any local user "
    "can connect: ParaViewSession and RemoteDesktop admit only the page holding their "
    "per-session secret, and a WebApp is protected only if it checks $NBVIZ_SECRET "
    "(secret_param=)"
)


def _line(mark: str, text: str) -> None:
    print(f"  [{mark}] {text}")


def _found(item: str) -> str | None:
    if item.startswith("py:"):  # a Python module, in this interpreter (the desktop's launcher's)
        module = importlib.util.find_spec(item[3:])
        if module is None:
            return None
        try:
            version = importlib.metadata.version(item[3:])
        except importlib.metadata.PackageNotFoundError:
            version = "?"
        return f"{item[3:]} {version} ({module.origin})"
    if item.startswith("/"):
        return item if os.path.exists(item) else None
    env_override = {"pvpython": os.environ.get("NBVIZ_PVPYTHON")}.get(item)
    if env_override and os.access(env_override, os.X_OK):
        return env_override
    return shutil.which(item)


def check_backends() -> int:
    print("Backends")
    missing = 0
    import nbviz

    for what, items, cls, note in BACKENDS:
        used_by = f"{cls}, {note}" if note else cls
        if not hasattr(nbviz, cls):
            used_by += ", not in this version yet"
        paths = [_found(item) for item in items]
        if all(paths):
            _line(OK, f"{what}: {', '.join(p for p in paths if p)}  (for {used_by})")
        else:
            missing += 1
            hints = "; ".join(
                INSTALL.get(item, "install it")
                for item, path in zip(items, paths, strict=True)
                if not path
            )
            _line(NO, f"{what}: not found (for {used_by}); {hints}")
    return missing


def _get(url: str, token: str) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read(2000).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError as exc:
        return 0, str(exc)


def _probe(listen: str, private_route: bool = False) -> Process:
    command = [
        sys.executable,
        "-m",
        "nbviz._probe_server",
        f"--{listen}",
        "{" + listen.replace("-", "_") + "}",
    ]
    spec = Spec.build(command, timeout=15, name=f"doctor probe ({listen})")
    process = Process(spec, private_route=private_route)
    process.start()
    return process


def check_routes(servers: list[_server.ServerInfo]) -> int:
    """Start two tiny backends (TCP, Unix socket) and fetch them through every route of every
    server. Returns the number of servers (or the direct check) with no working route."""
    print("Routes (tested with real probe backends)")
    failures = 0
    processes: list[Process] = []
    try:
        tcp, unix = _probe("port"), _probe("unix-socket")
        processes += [tcp, unix]
        tcp.wait_ready()
        unix.wait_ready()
        endpoint = tcp.endpoint
        assert endpoint is not None
        status, _ = _get(endpoint.http_url, "")
        failures += status != 200
        _line(OK if status == 200 else NO, f"direct {endpoint.http_url}: HTTP {status}")
        for server in servers:
            if not server.url or server.elsewhere:
                _line(INFO, f"{server.describe()}: not reachable from here, skipped")
                continue
            origin = (
                server.url[: len(server.url) - len(server.base_url)]
                if server.url.endswith(server.base_url)
                else server.url.rstrip("/")
            )
            working = 0
            print(f"  via {server.describe()}")
            if _registry.server_has_route(server.pid):
                assert unix.endpoint is not None
                route = route_for(
                    unix.endpoint, server, session_id=unix.session_id, nbviz_route=True
                )
                status, _ = _get(origin + route.url, server.token)
                working += status == 200
                _line(
                    OK if status == 200 else NO, f"nbviz {route.url} (Unix socket): HTTP {status}"
                )
                if _transport.private_network_available():
                    private = _probe("port", private_route=True)
                    processes.append(private)
                    private.wait_ready()
                    assert private.endpoint is not None
                    route = route_for(
                        private.endpoint, server, session_id=private.session_id, nbviz_route=True
                    )
                    status, _ = _get(origin + route.url, server.token)
                    _line(
                        OK if status == 200 else NO,
                        f"nbviz {route.url} ({{port}} in a private network namespace): "
                        f"HTTP {status}",
                    )
            else:
                _line(NO, f"nbviz route: {NO_ROUTE_HINT}")
                _line(INFO, FALLBACK_NOTE)
            for absolute in (False, True):
                route = route_for(endpoint, server, absolute=absolute, choice="proxy")
                status, _ = _get(origin + route.url, server.token)
                reached = status == 200
                working += reached
                why = "" if reached else _why(server, status)
                _line(OK if reached else NO, f"{route.kind} {route.url}: HTTP {status}{why}")
            failures += working == 0
    except Exception as exc:  # doctor reports, it does not crash
        failures += 1
        _line(NO, f"could not start a probe backend: {exc}")
    finally:
        for process in processes:
            process.stop()
    return failures


def check_away(server: _server.ServerInfo) -> None:
    """A kernel here runs on another host than its Jupyter server (a compute node): how its
    backends are reached, and whether the server's allow-list lets its route do so."""
    try:
        address = _server.away_address(server)
    except NbvizError as exc:
        _line(NO, exc.message.removeprefix("nbviz: "))
        return
    _line(
        INFO,
        "a kernel here runs on another host than the Jupyter server: each backend it starts "
        f"gets a host gate on {address} (the server's route connects there; only its "
        "requests, which carry the session's secret, pass)",
    )
    allowlist = _registry.server_info(server.pid).get("host_allowlist")
    if allowlist == "callable":
        _line(INFO, f"the server's allow-list is a function: it decides on {address}")
    elif isinstance(allowlist, list) and _remote.host_allowed(str(address), allowlist):
        _line(OK, f"{address} is in the server's allow-list (c.NbvizRoute.host_allowlist)")
    else:
        _line(
            NO,
            f"{address} is not in the server's allow-list: add it, or a pattern for the "
            "compute nodes, to c.NbvizRoute.host_allowlist in the server's "
            "jupyter_server_config.py (see docs/slurm.md)",
        )


def check_private_network() -> None:
    """Whether apps that listen on ``{port}`` get a network namespace of their own here."""
    if _transport.private_network_disabled():
        _line(
            INFO,
            f"private network namespaces turned off ({_transport.PRIVATE_NETWORK_ENV}="
            f"{os.environ.get(_transport.PRIVATE_NETWORK_ENV)}): apps on {{port}} listen on "
            "127.0.0.1, where every local user can connect",
        )
        return
    problem = _transport.private_network_problem()
    if not problem:
        _line(
            OK,
            "private network namespaces: apps on {port} behind nbviz's route listen in a "
            "network namespace of their own, out of other local users' reach",
        )
        return
    _line(
        NO,
        f"private network namespaces: not allowed here ({problem}); apps on {{port}} listen "
        "on 127.0.0.1, where every local user can connect (only an app that checks "
        f"$NBVIZ_SECRET refuses them); {_transport.ENABLE_USERNS}",
    )


def check_slurm() -> None:
    """Whether ``slurm=`` can place backends on compute nodes from here, and where this
    process itself runs."""
    print("Cluster (Slurm)")
    missing = [p for p in _slurm.PROGRAMS if shutil.which(p) is None]
    if missing:
        _line(INFO, f"Slurm: {', '.join(missing)} not found; slurm= needs them: {_slurm.INSTALL}")
    else:
        try:
            result = _slurm.run(["sinfo", "--noheader", "--format=%P %a %D %t"], timeout=10)
        except NbvizError as exc:  # (a cluster is optional: information, not a failure)
            _line(INFO, f"Slurm: slurm= cannot submit: {exc.message.removeprefix('nbviz: ')}")
        else:
            if result.returncode == 0 and result.stdout.strip():
                partitions = "; ".join(
                    f"{name} ({avail}, {nodes} node(s) {state})"
                    for name, avail, nodes, state in (
                        line.split()
                        for line in result.stdout.splitlines()
                        if len(line.split()) == 4
                    )
                )
                _line(OK, f"Slurm: slurm= can submit here; partitions: {partitions}")
            else:
                why = (result.stderr.strip().splitlines() or ["no partitions"])[-1]
                _line(
                    INFO,
                    f"Slurm: no cluster answers here ({why}): slurm= cannot submit; on a "
                    "cluster, SLURM_CONF (or /etc/slurm/slurm.conf) must name it",
                )
    placement = _slurm.this_process()
    if placement:
        _line(INFO, placement)


def _why(server: _server.ServerInfo, status: int) -> str:
    has_proxy = _server.server_has_proxy(server)
    if has_proxy is False:
        return (
            " -- jupyter-server-proxy is not loaded there: "
            "pip install jupyter-server-proxy where Jupyter runs, then restart Jupyter"
        )
    if status in (401, 403):
        return " -- refused: the server's token is not in its runtime file (password login?)"
    return ""


def describe_allowlist(allowlist: object) -> str:
    """A server's ``c.NbvizRoute.host_allowlist`` as announced in its marker file."""
    if allowlist == "callable":
        return "decided by a function (c.NbvizRoute.host_allowlist)"
    if isinstance(allowlist, list) and allowlist:
        return ", ".join(map(str, allowlist)) + " (c.NbvizRoute.host_allowlist)"
    if isinstance(allowlist, list):
        return "none, this machine only (set c.NbvizRoute.host_allowlist for host= backends)"
    return "unknown (a server from an older nbviz)"


def doctor(args: argparse.Namespace) -> int:
    print(f"nbviz {__version__} on Python {platform.python_version()} ({sys.executable})")
    print()
    print("Jupyter server")
    found = _server.find_server()
    if found is not None:
        _line(OK, f"a kernel here would use {found.describe()}")
    elif _server.launched_by_jupyter():
        _line(
            INFO,
            "launched by Jupyter, but its server is not visible: the page resolves routes itself",
        )
    else:
        _line(
            INFO, "not inside a Jupyter kernel or terminal: kernels use the server that starts them"
        )
    if found is not None and found.elsewhere:
        check_away(found)
    servers = [_server.server_from(info) for info in _server.running_servers()]
    if not servers:
        _line(
            INFO,
            "no running Jupyter server found in " + ", ".join(map(str, _server.runtime_dirs())),
        )
    for server in servers:
        proxy = _server.server_has_proxy(server)
        state = {
            True: "jupyter-server-proxy loaded",
            False: "NO jupyter-server-proxy",
            None: "proxy unknown",
        }[proxy]
        route = "nbviz route loaded" if _registry.server_has_route(server.pid) else "NO nbviz route"
        _line(
            OK if proxy else NO if proxy is False else INFO,
            f"running: {server.describe()} -- {route}, {state}",
        )
    hub = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if hub:
        _line(INFO, f"JupyterHub prefix: {hub}")
    print()
    failures = 0 if args.no_routes else check_routes(servers)
    print()
    missing = check_backends()
    print()
    check_slurm()
    print()
    print("Security")
    try:
        root = _paths.runtime_root()
        _line(OK, f"private runtime dir (0700): {root}")
    except OSError as exc:
        failures += 1
        _line(NO, f"runtime dir: {exc}")
    for server in servers:
        if _registry.server_has_route(server.pid):
            _line(
                INFO,
                f"remote hosts nbviz's route proxies to ({server.describe()}): "
                + describe_allowlist(_registry.server_info(server.pid).get("host_allowlist")),
            )
    check_private_network()
    orphan_guard = os.path.isdir("/proc")
    _line(
        OK if orphan_guard else NO,
        "orphan guard: backends end when their kernel dies"
        + ("" if orphan_guard else " (needs /proc)"),
    )
    print()
    print(f"{failures} server(s) without a working route, {missing} backend(s) missing")
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbviz", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    doc = sub.add_parser("doctor", help="check servers, routes and installed backends")
    doc.add_argument("--no-routes", action="store_true", help="skip starting a probe backend")
    doc.set_defaults(func=doctor)
    _dashboard.add_parser(sub)
    # Everything after "--" goes to the Jupyter server of `nbviz dashboard`. (argparse alone
    # loses it once an option such as --no-browser stands between the notebook and "--".)
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    args = parser.parse_args(argv)
    if extra:
        if args.command != "dashboard":
            parser.error(f"options after -- are for nbviz dashboard, not nbviz {args.command}")
        args.server_args = [*args.server_args, *extra]
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["main"]
