"""A second local Unix user for privacy tests, and what a session listens on.

The user is created by the test that needs it (``useradd``, as root) and removed again at the
end of the test run (see ``conftest.py``).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest

#: Marks every process of an nbviz session (nbviz._process.SESSION_ENV_VAR).
SESSION_ENV_VAR = "NBVIZ_SESSION_ID"

OTHER_USER = "nbviz-test-other"
#: Users the tests created (removed at the end of the run).
created: list[str] = []


def other_user(name: str = OTHER_USER) -> str:
    """A second local user (made now if missing); skips where the tests cannot make one."""
    if os.getuid() != 0 or not shutil.which("runuser") or not shutil.which("useradd"):
        pytest.skip("creating a second local user needs root, runuser and useradd")
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True
        )
        created.append(name)
    return name


def remove_created_users() -> None:
    while created:
        subprocess.run(["userdel", created.pop()], check=False, capture_output=True)


# ------------------------------------------------------------ what a process listens on
def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _table(pid: int, name: str) -> list[list[str]]:
    try:
        lines = Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]
    except OSError:
        return []
    return [line.split() for line in lines]


def _inet(hex_address: str) -> tuple[str, int]:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = ".".join(str(b) for b in raw[::-1])
    else:  # four little-endian 32-bit words
        words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
        ip = ":".join(b"".join(words)[i : i + 2].hex() for i in range(0, 16, 2))
        ip = str(__import__("ipaddress").ip_address(ip))
    return ip, int(port, 16)


def listeners(pid: int) -> list[tuple[str, str | int, str]]:
    """What ``pid`` listens on, as seen in its own network namespace: ``("tcp", "ip:port",
    netns)`` and ``("unix", path, netns)`` (an abstract name starts with ``@``)."""
    inodes = _socket_inodes(pid)
    try:
        netns = os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return []
    found: list[tuple[str, str | int, str]] = []
    for name in ("tcp", "tcp6"):
        for row in _table(pid, name):
            if row[3] == "0A" and int(row[9]) in inodes:  # LISTEN
                ip, port = _inet(row[1])
                found.append(("tcp", f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}", netns))
    for row in _table(pid, "unix"):
        # Num RefCount Protocol Flags Type St Inode [Path]; Flags 00010000: accepts connections
        if len(row) >= 8 and int(row[3], 16) & 0x10000 and int(row[6]) in inodes:
            found.append(("unix", row[7], netns))
    return found


X_SOCKET = re.compile(r"^@?/tmp/\.X11-unix/X(\d+)$")

#: Run as the other user (Debian's python3): try every target, say what happened.
PROBE = r"""
import json, socket, subprocess, sys
results = []
for kind, where in json.loads(sys.argv[1]):
    if kind == "x11":
        x = subprocess.run(["xdpyinfo", "-display", where], capture_output=True,
                           env={"XAUTHORITY": "/nonexistent"})
        results.append("connected" if x.returncode == 0 else "refused by X")
        continue
    if kind in ("tcp", "http", "status"):  # http, status: send a request, see what answers
        host, _, port = where.rpartition(":")
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if family == socket.AF_INET else "::1"
        address = (host, int(port))
    else:
        family, address = socket.AF_UNIX, "\0" + where[1:] if where.startswith("@") else where
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect(address)
    except OSError as e:
        results.append(type(e).__name__)
        s.close()
        continue
    try:
        if kind in ("http", "status"):
            s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            line = s.recv(64).split(b"\r\n")[0].decode("latin-1")
            if not line.startswith("HTTP/"):
                results.append("no http")
            else:
                results.append("http" if kind == "http" else line.split(" ")[1])
        else:
            results.append("connected")
    except OSError:
        results.append("no http")
    finally:
        s.close()
print(json.dumps(results))
"""


def run_as(user: str, code: str, *args: str, timeout: float = 120) -> Any:
    """Run Python ``code`` (Debian's python3) as ``user`` with ``args``; the JSON it prints."""
    out = subprocess.run(
        ["runuser", "-u", user, "--", "/usr/bin/python3", "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    ).stdout
    return json.loads(out)


def probe_as(user: str, targets: list[tuple[str, str]]) -> list[str]:
    """Try to connect to each ``(kind, where)`` as ``user``; one result per target."""
    return list(run_as(user, PROBE, json.dumps(targets)))


def session_pids(pid: int, session: str) -> set[int]:
    """The backend's process tree and every process marked with its session id."""
    pids = set()
    try:
        pids = {pid} | {c.pid for c in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        pass
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(SESSION_ENV_VAR) == session:
                pids.add(proc.pid)
        except psutil.Error:
            continue
    return pids


def session_listeners(pid: int, session: str) -> list[tuple[str, str, str]]:
    found = set()
    for member in session_pids(pid, session):
        found |= {(kind, str(where), netns) for kind, where, netns in listeners(member)}
    return sorted(found)


def targets_of(found: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """What the other user tries: each socket, an X server's by its display (X's own auth)."""
    targets = []
    for kind, where, _netns in found:
        x = X_SOCKET.match(where) if kind == "unix" else None
        targets.append(("x11", f":{x.group(1)}") if x else (kind, where))
    return sorted(set(targets))


def http_probe_as(user: str, addresses: list[str]) -> list[str]:
    """As ``user``, send an HTTP request to each TCP address: ``"http"`` when one answers."""
    return probe_as(user, [("http", address) for address in addresses])


def http_status_as(user: str, addresses: list[str]) -> list[str]:
    """As ``user``, send ``GET /`` to each TCP address: the status code that answers (or
    ``"no http"``, or the connection's error)."""
    return probe_as(user, [("status", address) for address in addresses])


def listeners_by_program(pid: int, session: str) -> dict[str, list[tuple[str, str, str]]]:
    """The session's listeners, grouped by the name of the program that holds them."""
    found: dict[str, set[tuple[str, str, str]]] = {}
    for member in session_pids(pid, session):
        try:
            name = psutil.Process(member).name()
        except psutil.Error:
            continue
        found.setdefault(name, set()).update(
            (kind, str(where), netns) for kind, where, netns in listeners(member)
        )
    return {name: sorted(items) for name, items in found.items() if items}
