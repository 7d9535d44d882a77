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

Adding a transport is one class here (and its tests); :class:`~nbviz._process.Process` only
calls :func:`choose` and the methods of :class:`Transport`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import random
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from . import _remote, _slurm
from ._errors import NbvizError, PortInUseError
from ._netinfo import (
    ALL_INTERFACES,
    listener_pids,
    listens_elsewhere,
    pick_port,
    pick_port_on,
    port_is_free,
    remote_endpoint,
    socket_in_use,
    tree_listen_addresses,
    tree_pids,
)
from ._spec import SECRET_ENV_VAR, Endpoint, Spec, find_program

#: The private-network runner and the host gate (standard library only, run by path).
NETNS_RUNNER = Path(__file__).with_name("_runtime") / "netns.py"
HOSTGATE = Path(__file__).with_name("_runtime") / "hostgate.py"

#: ``NBVIZ_PRIVATE_NETWORK=no`` turns private network namespaces off (apps on ``{port}`` then
#: listen on the host's loopback, behind the session secret, as on machines without them).
PRIVATE_NETWORK_ENV = "NBVIZ_PRIVATE_NETWORK"
OFF = ("0", "no", "off", "false")

#: Ports picked inside a private namespace: nothing else listens there, and below the usual
#: ephemeral range an app's own outgoing connections cannot hold one first.
PRIVATE_PORTS = (20000, 32000)


#: What an admin can do where user namespaces are off.
ENABLE_USERNS = (
    "an administrator can allow unprivileged user namespaces (sysctl "
    "user.max_user_namespaces=N with N > 0; on Debian/Ubuntu also "
    "kernel.unprivileged_userns_clone=1, and on Ubuntu 24.04+ "
    "kernel.apparmor_restrict_unprivileged_userns=0)"
)


# ------------------------------------------------------------------ what one start has
@dataclass(frozen=True)
class Session:
    """The private things of one start that a transport may use."""

    session_id: str
    session_dir: Path
    socket_dir: Path
    secret: str


@dataclass
class Plan:
    """One start as a transport prepared it."""

    #: Where the kernel's probe and the server's route connect.
    endpoint: Endpoint
    #: The command fields the transport fills: port, unix_socket, session_dir, socket_dir, secret.
    values: dict[str, Any]
    #: What to write to the started process's stdin (then kept open for the session), or None.
    stdin: bytes | None = None
    #: The port the backend listens on, where ``endpoint`` is not that port (``private``).
    inner_port: int | None = None
    #: A Unix socket that hands out sockets of the backend's private network (``private``):
    #: the server extension connects them to ``inner_port`` itself, with no relay between.
    broker: str | None = None
    #: The start's socket directory (``{socket_dir}``) when it is not the session's, on this
    #: machine (``HostGate``): the kernel finds the backend's sockets there, and removes it.
    socket_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Transport:
    """How one start listens and is reached. Subclasses are stateless."""

    name: str
    #: No other local user can connect to what the backend listens on.
    private: bool

    def plan(self, spec: Spec, session: Session) -> Plan:
        raise NotImplementedError

    def launch_argv(self, command: list[str], spec: Spec, plan: Plan) -> list[str]:
        """The argv to start, given the backend's rendered ``command``."""
        return [find_program(command[0], spec.env, spec.cwd), *command[1:]]

    def shown_argv(self, argv: list[str]) -> list[str]:
        """The command as ``WebApp.command`` shows it (the backend's, with its program found)."""
        return argv

    @property
    def local_cwd(self) -> bool:
        """``spec.cwd`` is a directory on this machine."""
        return True

    def owns(self, pid: int, plan: Plan) -> set[str] | None:
        """After the backend answered: the addresses our process tree listens on, or None when
        that cannot be checked. An empty set means "not ours" (another process answered)."""
        return None

    def advice(self, pid: int, plan: Plan) -> str:
        """Why a backend that never answered may have missed the endpoint ("" if unknown)."""
        return ""

    def held_by_other(self, pid: int, plan: Plan) -> str:
        """A note when the endpoint is held by another process ("" if not)."""
        return ""

    #: The backend's processes descend from the process nbviz starts (not so for a Slurm step:
    #: slurmd starts them).
    local_tree: ClassVar[bool] = True

    def end_commands(self, plan: Plan) -> list[list[str]]:
        """Commands that end what this start holds beyond its processes (a Slurm job): run at
        stop, after a crash, and by the orphan watchdog when the kernel dies."""
        return []

    def end_reason(self, plan: Plan) -> str | None:
        """Why the backend ended, when something outside it ended it (Slurm), or None."""
        return None


def _values(session: Session, *, port: int | str = "", unix_socket: str = "") -> dict[str, Any]:
    return {
        "port": port,
        "unix_socket": unix_socket,
        "session_dir": str(session.session_dir),
        "socket_dir": str(session.socket_dir),
        "secret": session.secret,
    }


class UnixSocket(Transport):
    """A Unix socket: the session's own (0600 in a 0700 directory), or a path the user gave."""

    name = "unix"
    private = True

    def plan(self, spec: Spec, session: Session) -> Plan:
        if isinstance(spec.unix_socket, str):
            path = spec.unix_socket
        else:
            path = str(session.socket_dir / "backend.sock")
        if os.path.exists(path):
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


class RemoteHost(Transport):
    """``<host>:<port>`` on another machine, started there by a local launcher (``srun``);
    the server's allow-list decides whether the route may connect."""

    name = "host"
    private = False

    def plan(self, spec: Spec, session: Session) -> Plan:
        assert spec.host is not None
        endpoint = remote_endpoint(spec.host, spec.port)
        return Plan(endpoint, _values(session, port=endpoint.port or ""))


class Ssh(Transport):
    """The command runs on ``spec.ssh``'s host listening on a Unix socket there; one ssh process
    forwards a private local socket to it (see :mod:`nbviz._remote`)."""

    name = "ssh"
    private = True

    def plan(self, spec: Spec, session: Session) -> Plan:
        local = str(session.socket_dir / "backend.sock")
        directory = _remote.remote_dir(session.session_id)
        values = _values(session, unix_socket=f"{directory}/backend.sock")
        values.update(session_dir=directory, socket_dir=directory)
        # The backend's environment goes to the remote wrapper on ssh's stdin (not in argv);
        # then stdin stays open as long as this session: its end (stop(), or the kernel
        # dying) tells the wrapper to end the backend.
        stdin = _remote.env_block({**spec.env, SECRET_ENV_VAR: session.secret})
        return Plan(Endpoint(unix_socket=local), values, stdin=stdin, extra={"dir": directory})

    @property
    def local_cwd(self) -> bool:
        return False

    def launch_argv(self, command: list[str], spec: Spec, plan: Plan) -> list[str]:
        directory = plan.extra["dir"]
        return _remote.ssh_command(
            find_program("ssh", spec.env),
            spec.ssh,
            local_socket=str(plan.endpoint.unix_socket),
            remote_socket=f"{directory}/backend.sock",
            directory=directory,
            command=command,
            cwd=spec.cwd,
        )


class HostGate(Transport):
    """A backend on a host that is not the Jupyter server's: it listens as ``inner`` has it
    there (a Unix socket, or 127.0.0.1 in a private network), and a gate
    (``_runtime/hostgate.py``) listens on ``address:<port>``, where the server connects. The gate
    admits a connection only when its first request carries the session's secret (the server's
    route adds it to every request); anyone else, on any host, gets 403. Used when the kernel
    runs on a compute node while the server stays on the login node, and for a Slurm job on
    another node. ``local``: the kernel runs on the gate's host (it can check ports there)."""

    def __init__(self, inner: Transport, address: str, *, local: bool = True) -> None:
        #: ``gate/unix``, ``gate/private``
        self.name = f"gate/{inner.name}"
        self.inner = inner
        self.address = address
        self.local = local
        self.private = inner.private

    def plan(self, spec: Spec, session: Session) -> Plan:
        # The backend's sockets go to a directory on its own host (the session directory may be
        # on a shared file system): the gate makes it, and removes it with the backend.
        here = Path(tempfile.gettempdir()) / f"nbviz-{os.getuid()}" / f"{session.session_id}-gate"
        inner = self.inner.plan(spec, dataclasses.replace(session, socket_dir=here))
        pick = pick_port_on if self.local else _remote.pick_remote_port
        port = pick(self.address)
        endpoint = Endpoint(host=self.address, port=port, gate=session.secret)
        values = {**inner.values, "socket_dir": str(here)}
        return Plan(
            endpoint,
            values,
            stdin=inner.stdin,
            socket_dir=here if self.local else None,
            extra={"inner": inner, "dir": str(here)},
        )

    def launch_argv(self, command: list[str], spec: Spec, plan: Plan) -> list[str]:
        inner: Plan = plan.extra["inner"]
        if inner.broker is not None:  # straight into the app's private network
            target = ["--broker", inner.broker, "--port", str(inner.inner_port)]
        elif inner.endpoint.unix_socket is not None:
            target = ["--socket", inner.endpoint.unix_socket]
        else:  # an app on the host's 127.0.0.1 (where private networks are off)
            target = ["--port", str(inner.endpoint.port)]
        where = f"{self.address}:{plan.endpoint.port}"
        gate = [sys.executable, "-S", str(HOSTGATE), "--listen", where, *target]
        gate += ["--dir", plan.extra["dir"], "--"]
        return [*gate, *self.inner.launch_argv(command, spec, inner)]

    def shown_argv(self, argv: list[str]) -> list[str]:
        return self.inner.shown_argv(argv[argv.index("--") + 1 :])

    @property
    def local_cwd(self) -> bool:
        return self.inner.local_cwd

    def owns(self, pid: int, plan: Plan) -> set[str] | None:
        if not self.local:
            return None
        assert plan.endpoint.port is not None
        return tree_listen_addresses(pid, plan.endpoint.port)

    def advice(self, pid: int, plan: Plan) -> str:
        return self.inner.advice(pid, plan.extra["inner"])


class SlurmStep(Transport):
    """A step of a Slurm allocation (``srun --jobid``) on the allocation's first node, reached
    through ``inner``: the transport the backend would get on that node (``unix``/``private``
    when the node is this machine, ``host`` when it is another one). See :mod:`nbviz._slurm`."""

    local_tree = False

    def __init__(self, inner: Transport, allocation: _slurm.Allocation) -> None:
        #: ``slurm/unix``, ``slurm/private``, ``slurm/host``...
        self.name = f"slurm/{inner.name}"
        self.inner = inner
        self.allocation = allocation
        self.private = inner.private

    def plan(self, spec: Spec, session: Session) -> Plan:
        if isinstance(self.inner, RemoteHost) and spec.host is None:
            spec = dataclasses.replace(spec, host=self.allocation.address)
        plan = self.inner.plan(spec, session)
        plan.extra["slurm_job"] = self.allocation.job_id
        return plan

    def launch_argv(self, command: list[str], spec: Spec, plan: Plan) -> list[str]:
        srun = find_program("srun", spec.env)
        return [
            *_slurm.step_argv(self.allocation, srun),
            *self.inner.launch_argv(command, spec, plan),
        ]

    def shown_argv(self, argv: list[str]) -> list[str]:
        return self.inner.shown_argv(argv[argv.index("--") + 1 :])

    def end_commands(self, plan: Plan) -> list[list[str]]:
        return [_slurm.cancel_argv(self.allocation.job_id)]

    def end_reason(self, plan: Plan) -> str | None:
        return _slurm.end_reason(self.allocation.job_id)

    def advice(self, pid: int, plan: Plan) -> str:
        return f" (Slurm job {self.allocation.job_id} on {self.allocation.node})"


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


__all__ = ["ALL_INTERFACES", "Plan", "Session", "Transport", "choose", "on_node"]
