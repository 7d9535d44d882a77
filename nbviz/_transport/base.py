"""What every transport has: the private things of one start (:class:`Session`), the start as a
transport prepared it (:class:`Plan`), and the :class:`Transport` base class."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .._spec import Endpoint, Spec, find_program

#: The private-network runner and the host gate (standard library only, run by path).
NETNS_RUNNER = Path(__file__).parents[1] / "_runtime" / "netns.py"
HOSTGATE = Path(__file__).parents[1] / "_runtime" / "hostgate.py"

#: Ports picked inside a private namespace: nothing else listens there, and below the usual
#: ephemeral range an app's own outgoing connections cannot hold one first.
PRIVATE_PORTS = (20000, 32000)


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

    def exit_reason(self, plan: Plan, code: int | None, log_tail: str) -> str | None:
        """What the exit ``code`` of the process the kernel started means, when it is the
        transport's own (ssh's 255) rather than the backend's, or None."""
        return None


def _values(session: Session, *, port: int | str = "", unix_socket: str = "") -> dict[str, Any]:
    return {
        "port": port,
        "unix_socket": unix_socket,
        "session_dir": str(session.session_dir),
        "socket_dir": str(session.socket_dir),
        "secret": session.secret,
    }
