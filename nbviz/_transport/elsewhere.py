"""Transports of a backend on another host than the Jupyter server: ``host:port`` (``host=``),
an ssh-forwarded socket (``ssh=``), a host gate in front of any transport there, and a step of a
Slurm job (wrapping the transport its node gets)."""

from __future__ import annotations

import dataclasses
import sys

from .. import _paths, _remote, _slurm
from .._netinfo import pick_port_on, remote_endpoint, tree_listen_addresses
from .._spec import SECRET_ENV_VAR, Endpoint, Spec, find_program
from .base import HOSTGATE, Plan, Session, Transport, _values


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
        extra = {"dir": directory, "destination": spec.ssh[-1], "cwd": spec.cwd or ""}
        return Plan(Endpoint(unix_socket=local), values, stdin=stdin, extra=extra)

    def exit_reason(self, plan: Plan, code: int | None, log_tail: str) -> str | None:
        where = plan.extra["destination"]
        if code == _remote.SSH_FAILED:  # ssh's own: no connection, no login, no host key
            said = [line.strip() for line in log_tail.splitlines() if line.strip()]
            line = said[-1] if said else "no message"
            return (
                f"nbviz: ssh to {where} failed ({line}); check that ssh logs in there "
                "without a prompt (a key, the host in known_hosts)"
            )
        if code == _remote.NO_CWD:
            return f"nbviz: cwd= {plan.extra['cwd']} does not exist on {where}"
        if code == _remote.DIR_EXISTS:
            return (
                f"nbviz: {plan.extra['dir']} already exists on {where}, where the session's "
                "private directory must be new; start again (a new session gets a new one)"
            )
        return None

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
        here = _paths.temp_root() / f"{session.session_id}-gate"
        inner = self.inner.plan(spec, dataclasses.replace(session, socket_dir=here))
        pick = pick_port_on if self.local else _remote.pick_remote_port
        port = pick(self.address)
        endpoint = Endpoint(host=self.address, port=port, gate=session.secret)
        return Plan(
            endpoint,
            inner.values,  # {socket_dir} is ``here``: the inner plan was made with it
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
