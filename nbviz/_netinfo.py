"""Looking at the network: free ports, sockets in use, and what a process tree listens on
(read from each process's own ``/proc/<pid>/net``, in whatever network namespace it runs)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket

import psutil

from . import _remote
from ._errors import PortInUseError
from ._spec import Endpoint

#: Listening on these, a backend is reachable from other hosts too.
ALL_INTERFACES = ("0.0.0.0", "::")


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_port() -> int:
    """A currently free loopback port (the readiness check verifies our process got it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pick_port_on(address: str) -> int:
    """A currently free port on this machine's ``address``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def address_toward(addresses: list[str]) -> str | None:
    """This machine's address that traffic to one of ``addresses`` leaves from (so the other
    side can connect back to it), or None when none of them can be reached."""
    for address in addresses:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.connect((address, 9))  # UDP: picks a route, sends nothing
            except OSError:
                continue
            own = str(sock.getsockname()[0])
        if not own.startswith("127.") and own != "0.0.0.0":
            return own
    return None


def socket_in_use(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def remote_endpoint(host: str, port: int | None) -> Endpoint:
    """Where a backend on ``host`` will listen: ``port``, or a port nothing answers on there."""
    if port is None:
        return Endpoint(port=_remote.pick_remote_port(host), host=host)
    if _remote.answers(host, port):
        raise PortInUseError(
            f"nbviz: something already listens on {host}:{port}; stop it or leave port= unset "
            "to let nbviz pick a port"
        )
    return Endpoint(port=port, host=host)


def listener_pids(port: int) -> set[int]:
    """Pids (of this user's processes we can see) listening on 127.0.0.1/0.0.0.0:``port``."""
    pids: set[int] = set()
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return pids
    for conn in conns:
        if (
            conn.status == psutil.CONN_LISTEN
            and conn.laddr
            and conn.laddr.port == port
            and conn.pid
        ):
            pids.add(conn.pid)
    return pids


def tree_pids(pid: int) -> set[int]:
    try:
        root = psutil.Process(pid)
        return {pid} | {child.pid for child in root.children(recursive=True)}
    except psutil.Error:
        return set()


def tree_listeners(pid: int) -> set[tuple[str, int]]:
    """Every (address, port) on which ``pid`` or one of its descendants listens on TCP, each in
    the network namespace it runs in (read from ``/proc/<pid>/net``: psutil reads the caller's
    namespace, and would not see an app in a private one)."""
    found: set[tuple[str, int]] = set()
    for member in tree_pids(pid):
        found |= proc_listeners(member)
    return found


def proc_listeners(pid: int) -> set[tuple[str, int]]:
    """The TCP (address, port) pairs ``pid`` listens on, in its own network namespace."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    except OSError:
        return set()
    found = set()
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as file:
                rows = [line.split() for line in file.readlines()[1:]]
        except OSError:
            continue
        for row in rows:
            if len(row) > 9 and row[3] == "0A" and row[9] in inodes:  # LISTEN, ours
                found.add(_address(row[1]))
    return found


def _address(hex_address: str) -> tuple[str, int]:
    """``0100007F:1F90`` -> ("127.0.0.1", 8080), as /proc/net/tcp{,6} write them."""
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1])), int(port, 16)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return str(ipaddress.IPv6Address(words)), int(port, 16)


def tree_listen_addresses(pid: int, port: int) -> set[str]:
    """The addresses on which ``pid`` or one of its descendants listens on TCP ``port``."""
    return {ip for ip, listened in tree_listeners(pid) if listened == port}


def address(ip: str, port: int) -> str:
    """``127.0.0.1:80`` or ``[::1]:80``."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def listens_elsewhere(pid: int, endpoint: Endpoint) -> str:
    """Why a local app that never answered on ``endpoint`` may have missed it: where its process
    tree listens instead (another port, or IPv6's ::1 only), as advice; "" if nothing is seen."""
    listeners = tree_listeners(pid)
    on_ours = sorted(ip for ip, port in listeners if port == endpoint.port)
    if endpoint.port is not None and on_ours and not set(on_ours) & {"127.0.0.1", *ALL_INTERFACES}:
        where = ", ".join(address(ip, endpoint.port) for ip in on_ours)
        return (
            f"; it listens on {where} instead, and nbviz reaches apps on 127.0.0.1: make it "
            "listen on 127.0.0.1 (e.g. --bind 127.0.0.1 or --host 127.0.0.1, not localhost)"
        )
    elsewhere = sorted((port, ip) for ip, port in listeners if port != endpoint.port)
    if not elsewhere:
        return ""
    where = ", ".join(address(ip, port) for port, ip in elsewhere)
    if endpoint.port is None:
        return f"; it listens on TCP {where} instead: give it {{unix_socket}}"
    return (
        f"; it listens on {where} instead: give it {{port}} (here {endpoint.port}) where it "
        "takes its port, or pass port= for a program that always listens on one port"
    )
