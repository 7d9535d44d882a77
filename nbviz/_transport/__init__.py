"""How a backend listens and how nbviz reaches it: one :class:`Transport`, chosen once per start.

A transport decides, for one start of a :class:`~nbviz._spec.Spec`:

- where the backend listens (the command's ``{port}`` / ``{unix_socket}``),
- the :class:`~nbviz._spec.Endpoint` the kernel probes and the server's route connects to
  (what the session's registry entry records),
- the command that is really started (the backend's own, or a wrapper around it),
- and how to tell that whatever answers is our backend.

=================  ===================================================  ==================
transport          the backend listens on                               other local users
=================  ===================================================  ==================
``unix``           a Unix socket in the session's 0700 directory        cannot connect
``private``        ``127.0.0.1:<port>`` in a network namespace of its   cannot connect
                   own; reached through a 0600 Unix socket bridged in
``loopback``       ``127.0.0.1:<port>`` on the host                     can connect; the
                                                                        app must check the
                                                                        session secret
``host``           ``<host>:<port>`` on another machine                 (the cluster's
                                                                        network)
``ssh``            a Unix socket on another machine, forwarded by ssh   cannot connect
``gate/<inner>``   as ``<inner>``, on a host that is not the Jupyter    cannot pass the
                   server's (a kernel on a compute node, a Slurm job    gate (403)
                   on another node); a gate on the host's address
                   admits only requests with the session's secret
=================  ===================================================  ==================

Adding a transport is one class (``here.py`` for this machine, ``elsewhere.py`` for another
host; the base in ``base.py``) and its tests; :class:`~nbviz._process.Process` only
calls :func:`choose` and the methods of :class:`Transport`.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

from .. import _slurm
from .._errors import NbvizError
from .._netinfo import ALL_INTERFACES
from .._spec import Spec
from .base import HOSTGATE, NETNS_RUNNER, PRIVATE_PORTS, Plan, Session, Transport
from .elsewhere import HostGate, RemoteHost, SlurmStep, Ssh
from .here import Loopback, PrivateNetwork, UnixSocket

#: ``NBVIZ_PRIVATE_NETWORK=no`` turns private network namespaces off (apps on ``{port}`` then
#: listen on the host's loopback, behind the session secret, as on machines without them).
PRIVATE_NETWORK_ENV = "NBVIZ_PRIVATE_NETWORK"
OFF = ("0", "no", "off", "false")

#: What an admin can do where user namespaces are off.
ENABLE_USERNS = (
    "an administrator can allow unprivileged user namespaces (sysctl "
    "user.max_user_namespaces=N with N > 0; on Debian/Ubuntu also "
    "kernel.unprivileged_userns_clone=1, and on Ubuntu 24.04+ "
    "kernel.apparmor_restrict_unprivileged_userns=0)"
)


# ---------------------------------------------------------------------- the choice
def on_node(
    spec: Spec, allocation: _slurm.Allocation, *, private_route: bool, away: str | None = None
) -> Transport:
    """The transport for one start of ``spec`` as a step of a Slurm ``allocation``: on this
    machine's node, what :func:`choose` gives; on another node, a host gate there (through
    nbviz's route), or else the node's ``host:port`` behind the session secret."""
    if allocation.local or spec.ssh or spec.host is not None:
        return SlurmStep(choose(spec, private_route=private_route, away=away), allocation)
    if spec.near_kernel:
        raise NbvizError(
            f"nbviz: the Slurm job {allocation.job_id} runs on {allocation.node}, another host "
            f"than this kernel, and {spec.name} works with the kernel through files and sockets "
            "on its own host: ask for a partition of the kernel's host, or run the kernel itself "
            "on the compute node (docs/slurm.md)"
        )
    if private_route:
        inner = choose(spec, private_route=True)
        return SlurmStep(HostGate(inner, allocation.address, local=False), allocation)
    if spec.uses_unix_socket:
        raise NbvizError(
            f"nbviz: the Slurm job {allocation.job_id} runs on {allocation.node}, another host, "
            f"and {spec.name} listens on a Unix socket, which only nbviz's route reaches across "
            "hosts (through a host gate on the node): use route='auto' or 'nbviz' on a server "
            "with nbviz's extension, or a backend on {port}"
        )
    return SlurmStep(RemoteHost(), allocation)


def choose(spec: Spec, *, private_route: bool, away: str | None = None) -> Transport:
    """The transport for one start of ``spec``.

    ``away``: this kernel runs on another host than the Jupyter server, which reaches this
    host at ``away`` (see :func:`nbviz._server.kernel_elsewhere`): the backend gets a host gate
    there, in front of the transport it would get on the server's host.

    ``private_route``: the browser reaches the backend through nbviz's route, which connects to
    Unix sockets; a ``{port}`` app then runs in a private network namespace where this machine
    allows one (``spec.network`` "auto"; "private" insists, "host" declines). Otherwise
    (jupyter-server-proxy, or a browser loading the port directly) the port must be on the
    host's loopback.
    """
    if spec.ssh:
        return Ssh()
    if spec.host is not None:
        return RemoteHost()
    if away is not None:
        if not private_route:
            raise NbvizError(
                f"nbviz: this kernel runs on another host ({away}) than the Jupyter server, "
                "which reaches a backend here only through nbviz's route: enable nbviz's server "
                "extension there (jupyter server extension enable nbviz) and use route='auto' or "
                "'nbviz'"
            )
        return HostGate(choose(spec, private_route=True), away)
    if spec.uses_unix_socket:
        return UnixSocket()
    if spec.network == "host":
        return Loopback()
    if spec.network == "private":
        if not private_route:
            raise NbvizError(
                "nbviz: network='private' needs nbviz's route (the browser reaches the app "
                "through a Unix socket); without it the app must listen on the host's "
                "127.0.0.1: use network='auto' or 'host'"
            )
        if private_network_disabled() or private_network_problem():
            why = (
                f"{PRIVATE_NETWORK_ENV} turns them off"
                if private_network_disabled()
                else private_network_problem()
            )
            raise NbvizError(
                f"nbviz: network='private': this machine does not allow private network "
                f"namespaces ({why}); {ENABLE_USERNS}; or use network='auto' or 'host'"
            )
        return PrivateNetwork()
    if private_route and private_network_available():
        return PrivateNetwork()
    return Loopback()


def private_network_disabled() -> bool:
    """The user or site turned private network namespaces off (``NBVIZ_PRIVATE_NETWORK=no``)."""
    return os.environ.get(PRIVATE_NETWORK_ENV, "").strip().lower() in OFF


def private_network_available() -> bool:
    """This user may make private network namespaces here (and has not turned them off)."""
    return not private_network_disabled() and private_network_problem() == ""


@functools.lru_cache(maxsize=1)
def private_network_problem() -> str:
    """Why this machine does not let this user make a private network namespace ("" if it
    does). Asked once per kernel: the runner tries it in a process of its own."""
    if not sys.platform.startswith("linux"):
        return "network namespaces exist only on Linux"
    try:
        result = subprocess.run(
            [sys.executable, "-S", str(NETNS_RUNNER), "--check"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the check could not run ({exc})"
    if result.returncode == 0:
        return ""
    reason = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
    return reason.removeprefix("nbviz: ")


__all__ = [
    "ALL_INTERFACES",
    "HOSTGATE",
    "NETNS_RUNNER",
    "PRIVATE_PORTS",
    "HostGate",
    "Loopback",
    "Plan",
    "PrivateNetwork",
    "RemoteHost",
    "Session",
    "SlurmStep",
    "Ssh",
    "Transport",
    "UnixSocket",
    "choose",
    "on_node",
]
