"""Where sessions are registered for the nbviz server route (shared by kernel and server).

A session is a 0700 directory ``<runtime>/nbviz/<session-id>/`` holding ``endpoint.json``
(0600): where its backend listens (a Unix socket, a 127.0.0.1 port, or a port on another
host), who owns it, and route options. The server extension reads it per request; nothing
else is shared. A server with the extension loaded writes
``<runtime>/nbviz/servers/<pid>.json`` so kernels know the route exists (and its allow-list).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from . import _paths

SESSION_ID = re.compile(r"^[0-9a-f]{12}$")
ENDPOINT_FILE = "endpoint.json"
#: The request header in which the server (and the kernel's probe) show a host gate the
#: session's secret (``nbviz/_runtime/hostgate.py``).
GATE_HEADER = "X-Nbviz-Gate"


@dataclass(frozen=True)
class Entry:
    """What the server needs to route to one session."""

    session_id: str
    unix_socket: str | None = None
    port: int | None = None
    pid: int | None = None
    owner_pid: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: The query parameter carrying the session's secret, and the secret (the file is 0600).
    secret_param: str | None = None
    secret: str | None = None
    #: The backend's host when it runs on another machine (None: 127.0.0.1 or a Unix socket).
    host: str | None = None
    #: How the backend listens (a :mod:`nbviz._transport` name), for humans and ``nbviz doctor``.
    transport: str | None = None
    #: A Unix socket that hands out sockets of the backend's private network namespace: the
    #: server connects them to 127.0.0.1:``port`` (see ``nbviz/_runtime/netns.py``).
    broker: str | None = None
    #: The machine the session's kernel runs on (:func:`this_machine`): only that machine can
    #: tell whether the kernel and backend still live.
    machine: str | None = None
    #: The secret a host gate in front of the backend wants (``X-Nbviz-Gate``; see
    #: ``nbviz/_runtime/hostgate.py``), when the backend runs on another host than the server.
    gate: str | None = None
    #: The Slurm job the kernel runs in (``SLURM_JOB_ID``), if any: for a kernel on another
    #: machine, the server's sweep asks Slurm whether it still runs (its pids mean nothing here).
    kernel_job: str | None = None

    @property
    def absolute(self) -> bool:
        """Hand the backend the full URL path (don't strip the route's prefix)."""
        return bool(self.options.get("absolute"))


def write_entry(session_dir: Path, entry: Entry) -> None:
    data = {
        "unix_socket": entry.unix_socket,
        "port": entry.port,
        "pid": entry.pid,
        "owner_pid": entry.owner_pid,
        "options": entry.options,
        "secret_param": entry.secret_param,
        "secret": entry.secret,
        "host": entry.host,
        "transport": entry.transport,
        "broker": entry.broker,
        "machine": entry.machine,
        "gate": entry.gate,
        "kernel_job": entry.kernel_job,
    }
    _paths.write_private(session_dir / ENDPOINT_FILE, json.dumps(data))


def _private_stat(path: str, *, directory: bool) -> os.stat_result | None:
    """``path``'s lstat when it is a directory (or regular file) of this user that nobody
    else may read, else None."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    kind_ok = stat.S_ISDIR(info.st_mode) if directory else stat.S_ISREG(info.st_mode)
    if kind_ok and info.st_uid == os.getuid() and not (info.st_mode & 0o077):
        return info
    return None


def _is_private(path: Path, *, directory: bool) -> bool:
    return _private_stat(str(path), directory=directory) is not None


#: Parsed entries by file, with the (inode, mtime, size) they were read at: the server reads
#: an entry on every request, and a stat is a fraction of a read and a parse.
_parsed: dict[str, tuple[tuple[int, int, int], Entry]] = {}


def read_entry(session_id: str, root: Path | None = None) -> Entry | None:
    """The session's entry, or None if unknown, malformed, or not private to this user."""
    if not SESSION_ID.match(session_id):
        return None
    root_dir = str(root or _paths._runtime_root())
    session_dir = os.path.join(root_dir, session_id)
    path = os.path.join(session_dir, ENDPOINT_FILE)
    info = None
    if _private_stat(root_dir, directory=True) and _private_stat(session_dir, directory=True):
        info = _private_stat(path, directory=False)
    if info is None:
        _parsed.pop(path, None)
        return None
    version = (info.st_ino, info.st_mtime_ns, info.st_size)
    cached = _parsed.get(path)
    if cached is not None and cached[0] == version:
        return cached[1]
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, ValueError):
        return None
    entry = Entry(
        session_id=session_id,
        unix_socket=data.get("unix_socket"),
        port=data.get("port"),
        pid=data.get("pid"),
        owner_pid=data.get("owner_pid"),
        options=dict(data.get("options") or {}),
        secret_param=data.get("secret_param"),
        secret=data.get("secret"),
        host=data.get("host"),
        transport=data.get("transport"),
        broker=data.get("broker"),
        machine=data.get("machine"),
        gate=data.get("gate"),
        kernel_job=data.get("kernel_job"),
    )
    _parsed[path] = (version, entry)
    return entry


def list_entries(root: Path | None = None) -> list[Entry]:
    root = root or _paths._runtime_root()
    if not root.is_dir():
        return []
    entries = [read_entry(p.name, root) for p in sorted(root.iterdir()) if SESSION_ID.match(p.name)]
    return [e for e in entries if e is not None]


def _alive(pid: int | None) -> bool:
    return bool(pid) and psutil.pid_exists(int(pid))  # type: ignore[arg-type]


def sweep_stale(root: Path | None = None) -> list[str]:
    """Remove session directories whose kernel and backend are both gone; return their ids."""
    root = root or _paths._runtime_root()
    removed: list[str] = []
    if not root.is_dir():
        return removed
    #: sessions of kernels on another machine that run in a Slurm job: gone with the job
    in_jobs: list[tuple[Path, Entry]] = []
    for path in root.iterdir():
        if not SESSION_ID.match(path.name) or not _is_private(path, directory=True):
            continue
        entry = read_entry(path.name, root)
        if entry is None:
            # no endpoint file: a session being created, or a broken one; judge by age
            try:
                old = (time.time() - path.stat().st_mtime) > 3600
            except OSError:
                continue
            if not old:
                continue
        elif entry.machine not in (None, this_machine()):
            # its kernel runs on another machine, whose orphan watchdog ends it; if that died
            # with the kernel (Slurm ends a job's processes together), the job's end says so
            if entry.kernel_job:
                in_jobs.append((path, entry))
            continue
        elif _alive(entry.owner_pid) or _alive(entry.pid):
            continue
        _paths.remove_tree(path)
        if entry and entry.unix_socket and not entry.unix_socket.startswith(str(path)):
            outside = Path(entry.unix_socket).parent
            if outside.name == path.name:  # the short socket dir of a deep runtime dir
                _paths.remove_tree(outside)
            else:
                try:
                    os.unlink(entry.unix_socket)
                except OSError:
                    pass
        removed.append(path.name)
    running = running_jobs() if in_jobs else None
    if running is not None:
        for path, entry in in_jobs:
            if entry.kernel_job not in running:
                _paths.remove_tree(path)
                removed.append(path.name)
    servers = root / "servers"
    if servers.is_dir():
        for marker in servers.glob("*.json"):
            here = marker.stem.isdigit() and not _elsewhere(_announced(marker))
            if here and not _alive(int(marker.stem)):
                marker.unlink(missing_ok=True)
    return removed


def running_jobs() -> set[str] | None:
    """Ids of this user's Slurm jobs that are not over (pending, running, completing), or None
    when Slurm cannot be asked here."""
    squeue = shutil.which("squeue")
    if squeue is None:
        return None
    argv = [squeue, "--noheader", "--format=%A", f"--user={os.getuid()}"]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return set(result.stdout.split()) if result.returncode == 0 else None


def server_marker(pid: int, root: Path | None = None) -> Path:
    return (root or _paths._runtime_root()) / "servers" / f"{pid}.json"


def announce_server(pid: int, info: dict[str, Any]) -> Path:
    """Called by the server extension: the nbviz route is served by server ``pid``."""
    servers = _paths.private_dir(_paths.runtime_root() / "servers")
    path = servers / f"{pid}.json"
    _paths.write_private(path, json.dumps(info))
    return path


def server_info(pid: int | None) -> dict[str, Any]:
    """What server ``pid`` announced (version, base URL, host allow-list, its machine); {} if
    unknown."""
    return _announced(server_marker(int(pid))) if pid else {}


def _announced(marker: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(marker.read_text()))
    except (OSError, ValueError, TypeError):
        return {}


def _elsewhere(announced: dict[str, Any]) -> bool:
    """The server announced itself from another machine (a marker that says nothing of where
    is this machine's)."""
    return announced.get("machine") not in (None, this_machine())


def server_has_route(pid: int | None) -> bool:
    """True when the Jupyter server ``pid`` has nbviz's server extension loaded (a server on
    another machine is taken at its word: its pid cannot be checked from here)."""
    if not pid or not server_marker(int(pid)).exists():
        return False
    return _alive(pid) or _elsewhere(server_info(pid))


def server_elsewhere(pid: int) -> bool:
    """Server ``pid`` announced itself from another machine (its pid means nothing here)."""
    return _elsewhere(server_info(pid))


@functools.lru_cache(maxsize=1)
def this_machine() -> str:
    """What tells this machine's network apart from another's: the kernel's boot id, and the
    network namespace (two namespaces of one kernel have separate loopbacks and ports, as two
    hosts do). Kernel and server compare it to know whether they share 127.0.0.1."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            boot = file.read().strip()
    except OSError:
        boot = socket.gethostname()
    try:
        network = str(os.stat("/proc/self/ns/net").st_ino)
    except OSError:
        network = ""
    return f"{boot}/{network}"


def this_host_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback (a server announces them: a kernel on
    another host picks its own address that reaches one of them)."""
    found = []
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                found.append(address.address)
    return found
