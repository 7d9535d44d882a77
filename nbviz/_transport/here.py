"""Transports of a backend on this machine: a Unix socket, ``127.0.0.1`` in a private network
namespace, or the host's ``127.0.0.1`` behind the session secret."""

from __future__ import annotations

import os
import random
import stat
import sys

from .._errors import PortInUseError, TemplateError
from .._netinfo import (
    listener_pids,
    listens_elsewhere,
    pick_port,
    port_is_free,
    socket_in_use,
    tree_listen_addresses,
    tree_pids,
)
from .._spec import Endpoint, Spec
from .base import NETNS_RUNNER, PRIVATE_PORTS, Plan, Session, Transport, _values


class UnixSocket(Transport):
    """A Unix socket: the session's own (0600 in a 0700 directory), or a path the user gave."""

    name = "unix"
    private = True

    def plan(self, spec: Spec, session: Session) -> Plan:
        if isinstance(spec.unix_socket, str):
            path = spec.unix_socket
        else:
            path = str(session.socket_dir / "backend.sock")
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None:
            if not stat.S_ISSOCK(mode):  # the user's file, never ours to remove
                kind = (
                    "a directory"
                    if stat.S_ISDIR(mode)
                    else ("a symlink" if stat.S_ISLNK(mode) else "a file")
                )
                raise TemplateError(
                    f"nbviz: unix_socket={path!r} is {kind}, not a socket; nbviz removes only a "
                    "stale socket there: give the path of a socket (or of nothing yet)"
                )
            if socket_in_use(path):
                raise PortInUseError(f"nbviz: socket {path} is already in use by another process")
            os.unlink(path)  # a stale socket from a dead backend
        return Plan(Endpoint(unix_socket=path), _values(session, unix_socket=path))

    def advice(self, pid: int, plan: Plan) -> str:
        return listens_elsewhere(pid, plan.endpoint)


class Loopback(Transport):
    """``127.0.0.1:<port>`` on the host: every local user can connect; the backend must check
    the session secret (``NBVIZ_SECRET``). Where nothing better is possible: the browser
    reaches a host port (jupyter-server-proxy, or directly), or namespaces are off."""

    name = "loopback"
    private = False

    def plan(self, spec: Spec, session: Session) -> Plan:
        if spec.port is not None:
            if not port_is_free(spec.port):
                raise PortInUseError(
                    f"nbviz: port {spec.port} is already in use; stop what listens there or "
                    "leave port= unset to let nbviz pick a free one"
                )
            port = spec.port
        else:
            port = pick_port()
        return Plan(Endpoint(port=port), _values(session, port=port))

    def owns(self, pid: int, plan: Plan) -> set[str] | None:
        assert plan.endpoint.port is not None
        return tree_listen_addresses(pid, plan.endpoint.port)

    def advice(self, pid: int, plan: Plan) -> str:
        return listens_elsewhere(pid, plan.endpoint)

    def held_by_other(self, pid: int, plan: Plan) -> str:
        port = plan.endpoint.port
        assert port is not None
        others = listener_pids(port) - tree_pids(pid)
        return f" (port {port} is held by another process, pid {min(others)})" if others else ""


class PrivateNetwork(Transport):
    """``127.0.0.1:<port>`` inside a network namespace of the session's own, reached through a
    0600 Unix socket that the runner (``_runtime/netns.py``) bridges into it. For apps that can
    only listen on TCP: no other process on the host, of any user, can connect to the port, and
    a fixed ``port=`` can never be "in use"."""

    name = "private"
    private = True

    def plan(self, spec: Spec, session: Session) -> Plan:
        port = spec.port or random.SystemRandom().randrange(*PRIVATE_PORTS)
        path = str(session.socket_dir / "backend.sock")
        return Plan(
            Endpoint(unix_socket=path),
            _values(session, port=port),
            inner_port=port,
            broker=str(session.socket_dir / "netns.sock"),
        )

    def launch_argv(self, command: list[str], spec: Spec, plan: Plan) -> list[str]:
        argv = super().launch_argv(command, spec, plan)
        runner = [sys.executable, "-S", str(NETNS_RUNNER)]
        where = ["--socket", str(plan.endpoint.unix_socket), "--port", str(plan.inner_port)]
        where += ["--broker", str(plan.broker)]
        return [*runner, *where, "--", *argv]

    def shown_argv(self, argv: list[str]) -> list[str]:
        return argv[argv.index("--") + 1 :]

    def advice(self, pid: int, plan: Plan) -> str:
        assert plan.inner_port is not None
        return listens_elsewhere(pid, Endpoint(port=plan.inner_port))
