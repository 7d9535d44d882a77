"""Backends on another host: a TCP ``host:port`` behind an allow-list, or an ssh-forwarded socket.

Two ways to reach a backend that runs elsewhere (an HPC compute node):

- ``host=``: a local launcher (``srun``, ``ssh node``, ``ip netns exec``) starts the backend on
  ``host``, where it listens on ``host:{port}``. The kernel probes ``host:port``; the Jupyter
  server proxies to it only when the host is in its allow-list (``c.NbvizRoute.host_allowlist``
  for nbviz's route, ``c.ServerProxy.host_allowlist`` for jupyter-server-proxy's
  ``proxy/<host>:<port>/``). Anything on the cluster network can connect to that port.
- ``ssh=``: nbviz runs the command on the remote host through one ``ssh`` process that also
  forwards a private local Unix socket to the backend's Unix socket there
  (``ssh -L <local socket>:<remote socket>``). Nothing listens on the network; the route is the
  ordinary Unix-socket route.

The remote command runs under a small POSIX ``sh`` wrapper (:data:`WRAPPER`) that creates a
private directory for the socket, starts the backend in its own process group and kills that
group when ssh's stdin reaches end of file -- which happens when the kernel closes the pipe
(``stop()``), or when the local ssh dies (kernel killed, watchdog) and the connection drops.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import ipaddress
import random
import re
import shlex
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._errors import TemplateError

#: Hosts that are this machine: always allowed, and probed like local backends.
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

#: A host name or IPv4 address (what jupyter-server-proxy's ``proxy/<host>:<port>/`` accepts).
HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")

#: Where a remote port is picked when the user gives none (above most fixed service ports,
#: below the usual ephemeral range).
REMOTE_PORTS = (20000, 32000)
PORT_TRIES = 20
CONNECT_TIMEOUT = 1.0

#: ssh options nbviz always sets: fail instead of prompting, fail if the forward cannot be set
#: up, replace a stale local socket, no pty (the wrapper watches stdin), detect dead links, and
#: a connection of its own (a multiplexing master from ~/.ssh/config would keep the forward, and
#: perhaps itself, alive after the session).
SSH_OPTIONS = (
    "-T",
    "-o",
    "ControlMaster=no",
    "-o",
    "ControlPath=none",
    "-o",
    "BatchMode=yes",
    "-o",
    "ExitOnForwardFailure=yes",
    "-o",
    "StreamLocalBindUnlink=yes",
    "-o",
    "ServerAliveInterval=15",
    "-o",
    "ServerAliveCountMax=3",
)

#: Exit code of the wrapper when the remote directory already exists (never reuse a directory
#: someone else may have made).
DIR_EXISTS = 97

#: Exit code of the wrapper when the working directory does not exist on the remote host.
NO_CWD = 96

#: Exit code of ssh itself failing (no connection, no login, an unknown host key).
SSH_FAILED = 255

#: Runs on the remote host as ``sh -c WRAPPER nbviz <dir> <cwd or ""> <command...>``. One line,
#: so any login shell (bash, zsh, tcsh) passes it to sh unchanged. It reads the backend's
#: environment from stdin first (``NAME=<base64 value>`` lines, then an empty line: values never
#: appear in a process list). Background jobs of a non-interactive sh read /dev/null, so the real
#: stdin is kept on fd 3 for the watcher. ``trap :`` (not ``trap ''``) so the backend does not
#: inherit ignored signals; the wrapper itself must survive SIGPIPE/SIGHUP when the connection
#: drops, to remove the directory.
WRAPPER = (
    "trap : HUP PIPE; d=$1; w=$2; shift 2; exec 3<&0 </dev/null; "
    'while IFS= read -r l <&3 && [ -n "$l" ]; do '
    'export "${l%%=*}=$(printf %s "${l#*=}" | base64 -d)"; done; '
    f'[ -z "$w" ] || cd "$w" || exit {NO_CWD}; '
    f'mkdir -m 700 "$d" || {{ echo "nbviz: cannot create $d" >&2; exit {DIR_EXISTS}; }}; '
    'setsid "$@" 3<&- & p=$!; '
    "{ cat <&3; kill -TERM -$p $p; i=0; "
    "while kill -0 $p && [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done; "
    "kill -KILL -$p $p; } >/dev/null 2>&1 & "
    'exec 3<&-; wait $p; c=$?; rm -rf "$d"; exit $c'
)

Allowlist = Sequence[str] | Callable[[Any, str], bool]


def is_loopback(host: str | None) -> bool:
    return host is None or host in LOOPBACK


def check_host(host: str) -> str:
    """``host`` if it is a host name or IPv4 address, else a TemplateError."""
    if not isinstance(host, str) or not HOST_NAME.match(host):
        raise TemplateError(
            f"nbviz: host must be a host name or IPv4 address such as 'node12' or '10.0.0.5', "
            f"got {host!r}"
        )
    return host


def host_allowed(host: str, allowlist: Allowlist, handler: Any = None) -> bool:
    """Loopback always (``localhost``, ``::1``, all of ``127.0.0.0/8``); else ``host`` matches a
    shell-style pattern, or the callable says so."""
    if is_loopback(host):
        return True
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_loopback:
            return True
    if callable(allowlist):
        return bool(allowlist(handler, host))
    return any(fnmatch.fnmatchcase(host, pattern) for pattern in allowlist)


def answers(host: str, port: int, timeout: float = CONNECT_TIMEOUT) -> bool | None:
    """True if something accepts TCP connections on host:port, False if refused, None if unknown."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except ConnectionRefusedError:
        return False
    except OSError:
        return None


def pick_remote_port(host: str, rng: random.Random | None = None) -> int:
    """A port nothing answers on at ``host`` now (random, so two sessions rarely collide).

    The backend binds it later: another process may take it first. A backend that cannot bind
    exits (the session fails with its log); one that answers in its place cannot be told from
    ours -- see docs/remote.md.
    """
    rng = rng or random.SystemRandom()
    port = rng.randrange(*REMOTE_PORTS)
    for _ in range(PORT_TRIES):
        if answers(host, port) is not True:
            return port
        port = rng.randrange(*REMOTE_PORTS)
    return port


def ssh_args(ssh: str | Sequence[str]) -> tuple[str, ...]:
    """``"node"`` or ``["-p", "2222", "-i", key, "user@node"]`` (ssh arguments ending in the
    destination) as a tuple; raises TemplateError for an empty or malformed value."""
    args = (ssh,) if isinstance(ssh, str) else tuple(ssh) if isinstance(ssh, Sequence) else ()
    if not args or not all(isinstance(a, str) and a for a in args):
        raise TemplateError(
            f"nbviz: ssh must be a destination ('node' or 'user@node') or a list of ssh "
            f"arguments ending in one, got {ssh!r}"
        )
    if args[-1].startswith("-"):
        raise TemplateError(
            f"nbviz: the last item of ssh= must be the destination (e.g. 'node'), got {args[-1]!r}"
        )
    return args


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def env_block(env: Mapping[str, str]) -> bytes:
    """What the kernel writes to ssh's stdin first: the backend's environment for the wrapper."""
    lines = []
    for name, value in env.items():
        if not ENV_NAME.match(name):
            raise TemplateError(
                f"nbviz: environment variable name {name!r} cannot be passed over ssh "
                "(letters, digits and _ only)"
            )
        lines.append(f"{name}={base64.b64encode(str(value).encode()).decode()}\n")
    return ("".join(lines) + "\n").encode()


def remote_dir(session_id: str) -> str:
    """The session's private directory on the remote host (created by the wrapper, 0700)."""
    return f"/tmp/nbviz-{session_id}"


def ssh_command(
    ssh: str,
    args: Sequence[str],
    *,
    local_socket: str,
    remote_socket: str,
    directory: str,
    command: Sequence[str],
    cwd: str | None = None,
) -> list[str]:
    """The local argv: one ssh that runs ``command`` under :data:`WRAPPER` on the remote host
    (in ``cwd`` there, if given) and forwards ``local_socket`` to ``remote_socket`` there."""
    remote = shlex.join(["sh", "-c", WRAPPER, "nbviz", directory, cwd or "", *command])
    return [ssh, *SSH_OPTIONS, "-L", f"{local_socket}:{remote_socket}", *args, "--", remote]
