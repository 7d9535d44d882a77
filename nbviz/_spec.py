"""What to start: a declarative description of one backend, and its command template."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shlex
import shutil
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from . import _remote, _slurm
from ._errors import ArgumentTypeError, NbvizError, ProgramNotFoundError, TemplateError
from ._paths import SOCKET_PATH_LIMIT

#: Fields a command item may contain, with what they become.
TEMPLATE_FIELDS: Mapping[str, str] = {
    "port": "the TCP port the backend must listen on (127.0.0.1)",
    "unix_socket": "the path of the Unix socket the backend must listen on",
    "base_url": "the Jupyter server's base URL, e.g. /user/alice/ (like jupyter-server-proxy)",
    "prefix": "the URL path under which the browser reaches this backend, ending in /",
    "session_dir": "a private (0700) directory for this session's files, removed when it stops",
    "socket_dir": (
        "a private (0700) directory with a path short enough for more Unix sockets (the session "
        "directory, or one under /tmp when that is too deep), removed when it stops"
    ),
    "secret": (
        "a random secret, new for each start; the backend also finds it in its environment as "
        "NBVIZ_SECRET (prefer that: other users can read command lines with ps)"
    ),
}

#: The environment variable holding the per-session secret in every backend.
SECRET_ENV_VAR = "NBVIZ_SECRET"

#: Install hints for programs users commonly start; used in ProgramNotFoundError.
INSTALL_HINTS: Mapping[str, str] = {
    "pvpython": "apt-get install paraview python3-paraview (or set NBVIZ_PVPYTHON)",
    "pvserver": "apt-get install paraview",
    "xpra": "apt-get install xpra",
    "Xvnc": "apt-get install tigervnc-standalone-server",
    "Xvfb": "apt-get install xvfb",
    "websockify": "pip install websockify",
    "xterm": "apt-get install xterm",
    "openbox": "apt-get install openbox",
    "mpiexec": "apt-get install mpi-default-bin",
    "ssh": "apt-get install openssh-client",
    "srun": "apt-get install slurm-client",
    "salloc": "apt-get install slurm-client",
}

Probe = Callable[["Endpoint"], bool]

#: Where an app on ``{port}`` listens (see nbviz._transport): "auto" (a private network
#: namespace behind nbviz's route, where the machine allows one), "private" (that, or an error
#: saying why not), "host" (the host's 127.0.0.1, behind the session secret: for an app that
#: must reach other machines or services on this one's loopback).
Network = Literal["auto", "private", "host"]
NETWORKS = ("auto", "private", "host")


@dataclass(frozen=True)
class Endpoint:
    """Where a started backend listens: a TCP port or a Unix socket path.

    ``host`` is None for 127.0.0.1, or another host's name or address (a remote backend).
    """

    port: int | None = None
    unix_socket: str | None = None
    host: str | None = None
    #: The session's secret, when a host gate stands in front of the backend (the gate admits
    #: requests that show it: see :class:`nbviz._transport.HostGate`).
    gate: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.port is None) == (self.unix_socket is None):
            raise ValueError("an Endpoint has either a port or a unix_socket")
        if self.host is not None and self.port is None:
            raise ValueError("an Endpoint on another host needs a port")

    @property
    def http_url(self) -> str:
        """The backend's own address, as a URL for humans and for direct access."""
        if self.port is not None:
            return f"http://{self.host or '127.0.0.1'}:{self.port}/"
        return f"http+unix://{self.unix_socket}/"


@dataclass(frozen=True)
class Spec:
    """Everything needed to start one backend process and know it is ready.

    A backend module (desktop, ParaView, a preset) builds a Spec; :class:`~nbviz._process.Process`
    runs it. Nothing here starts anything.
    """

    command: tuple[str, ...]
    #: Fixed TCP port, or None to let nbviz pick a free one (for ``{port}`` commands).
    port: int | None = None
    #: True: listen on a private Unix socket nbviz creates; a str: that socket path.
    unix_socket: bool | str = False
    ready_path: str = "/"
    timeout: float = 30.0
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    #: Extra readiness check after the HTTP probe answered (e.g. "the app's websocket works").
    probe: Probe | None = None
    #: Name used in messages and as the default title.
    name: str = ""
    #: Options for the nbviz server route (e.g. ``{"absolute": True}``), stored with the session.
    route_options: Mapping[str, Any] = field(default_factory=dict)
    #: The query parameter by which the page hands the backend its per-session secret (the
    #: first URL the frame loads carries ``?<secret_param>=<secret>``); None: not sent.
    secret_param: str | None = None
    #: The command to run instead when nbviz's route is not available, so the browser reaches
    #: the backend through a TCP port (``{port}``); it must check the per-session secret.
    tcp_command: tuple[str, ...] | None = None
    #: The host the backend listens on (a remote backend started by a local launcher), or None.
    host: str | None = None
    #: ssh arguments ending in the destination: run the command there, forward its Unix socket.
    ssh: tuple[str, ...] = ()
    #: Where a ``{port}`` app listens: see :data:`Network`.
    network: Network = "auto"
    #: ``salloc`` options: run the backend as a Slurm job on a compute node (see
    #: :mod:`nbviz._slurm`); None: here.
    slurm: tuple[str, ...] | None = None
    #: The kernel reaches the backend through its socket directory too (a control channel, an
    #: X display, files): the backend must run on the kernel's host, not on another node.
    near_kernel: bool = False
    #: Turns the error of a backend that exited (its ``log_tail`` holds what it printed) into
    #: the one its user needs: e.g. the app said the data cannot be read before it exited.
    #: Raised by ``wait_ready()`` and shown in the frame alike; None: the error as it is.
    explain: Callable[[NbvizError], NbvizError] | None = None

    @classmethod
    def build(
        cls,
        command: str | Sequence[str | os.PathLike[str]],
        *,
        port: int | None = None,
        unix_socket: bool | str | os.PathLike[str] = False,
        ready_path: str = "/",
        timeout: float = 30.0,
        env: Mapping[str, str | int | float] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        probe: Probe | None = None,
        name: str = "",
        route_options: Mapping[str, Any] | None = None,
        secret_param: str | None = None,
        tcp_command: Sequence[str] | None = None,
        host: str | None = None,
        ssh: str | Sequence[str] | None = None,
        network: Network = "auto",
        slurm: Mapping[str, object] | bool | None = None,
        near_kernel: bool = False,
        explain: Callable[[NbvizError], NbvizError] | None = None,
    ) -> Spec:
        """Validate the arguments users pass and return a Spec (raises TemplateError)."""
        if isinstance(unix_socket, os.PathLike):
            unix_socket = os.fspath(unix_socket)
        check_types(
            command=command,
            port=port,
            unix_socket=unix_socket,
            ready_path=ready_path,
            timeout=timeout,
            env=env,
            cwd=cwd,
            secret_param=secret_param,
        )
        items = tuple(
            # a path is data, not a template: its braces stay braces
            os.fspath(item).replace("{", "{{").replace("}", "}}")
            if isinstance(item, os.PathLike)
            else item
            for item in (split_command(command) if isinstance(command, str) else command)
        )
        if not items:
            raise TemplateError("the command is empty; give a program and its arguments")
        if not all(isinstance(item, str) for item in items):
            raise TemplateError(f"every command item must be a str or path, got {list(items)!r}")
        for index, item in enumerate(items):
            if "\0" in item:
                raise TemplateError(f"command[{index}] contains a NUL character: {item!r}")
        for key, value in (env or {}).items():
            if not isinstance(key, str) or not key or "=" in key or "\0" in key:
                raise TemplateError(
                    f"env= names must be non-empty strings without '=', got {key!r}"
                )
            if not isinstance(value, (str, int, float)) or "\0" in str(value):
                raise TemplateError(
                    f"env values must be strings (or numbers), got {key!r}: {value!r}"
                )
        used = set()
        for index, item in enumerate(items):
            used |= template_fields(item, where=f"command[{index}] {item!r}")
        if "port" in used and "unix_socket" in used:
            raise TemplateError("the command uses both {port} and {unix_socket}; use one")
        ssh_args = check_remote(used, host=host, ssh=ssh, unix_socket=unix_socket)
        if slurm not in (None, False) and (ssh is not None or not _remote.is_loopback(host)):
            raise TemplateError(
                "nbviz: give slurm= (Slurm chooses the node) or host=/ssh= (you name the host), "
                "not both"
            )
        if _remote.is_loopback(host):
            host = None
        if "unix_socket" in used and not unix_socket:
            unix_socket = True
        if unix_socket and port is not None:
            raise TemplateError("give either port= or unix_socket=, not both")
        if unix_socket and "port" in used:
            raise TemplateError(
                "unix_socket= asks for a Unix socket, but the command uses {port}: "
                "put {unix_socket} where the program takes its socket path"
            )
        if not unix_socket and port is None and "port" not in used:
            raise TemplateError(
                "the command must contain {port} or {unix_socket} (where the backend listens), "
                "or pass port=N for a program that always listens on port N"
            )
        if port is not None and not (0 < port < 65536):
            raise TemplateError(f"port must be between 1 and 65535, got {port}")
        if timeout <= 0:
            raise TemplateError(f"timeout must be positive, got {timeout}")
        if network not in NETWORKS:
            raise TemplateError(
                f"nbviz: network= must be 'auto', 'private' or 'host', not {network!r}"
            )
        if secret_param is not None and not re.fullmatch(r"[A-Za-z0-9_.~-]+", secret_param):
            raise TemplateError(
                f"secret_param must be a plain query parameter name, got {secret_param!r}"
            )
        tcp_items = None
        if tcp_command is not None:
            tcp_items = tuple(tcp_command)
            tcp_used = set()
            for index, item in enumerate(tcp_items):
                tcp_used |= template_fields(item, where=f"tcp_command[{index}] {item!r}")
            if "port" not in tcp_used:
                raise TemplateError("tcp_command must contain {port}")
        if not ready_path.startswith("/"):
            ready_path = "/" + ready_path
        if isinstance(unix_socket, str):
            # The kernel's ./app.sock: the app (in its cwd=) and the Jupyter server (in its
            # own working directory) must both find it.
            unix_socket = os.path.abspath(unix_socket)
            if len(os.fsencode(unix_socket)) > SOCKET_PATH_LIMIT:
                raise TemplateError(
                    f"the socket path {unix_socket} is longer than Unix sockets allow "
                    f"({SOCKET_PATH_LIMIT} bytes); pick a shorter one, or unix_socket=True for a "
                    "private one"
                )
        return cls(
            command=items,
            port=port,
            unix_socket=unix_socket,
            ready_path=ready_path,
            timeout=float(timeout),
            env={key: str(value) for key, value in (env or {}).items()},
            # A relative cwd means the kernel's directory now, not at some later restart (over
            # ssh it is a directory on the other host, taken as it is).
            cwd=None if cwd is None else os.fspath(cwd) if ssh_args else os.path.abspath(cwd),
            probe=probe,
            name=name or default_name(items),
            route_options=dict(route_options or {}),
            secret_param=secret_param,
            tcp_command=tcp_items,
            host=host,
            ssh=ssh_args,
            network=network,
            slurm=_slurm.options_argv(slurm),
            near_kernel=near_kernel,
            explain=explain,
        )

    @property
    def uses_unix_socket(self) -> bool:
        return bool(self.unix_socket)

    @property
    def sends_secret(self) -> bool:
        """The page must hand the backend its secret (``secret_param``) in the first URL."""
        return bool(self.secret_param) and (
            self.tcp_command is None or self.command == self.tcp_command
        )

    def over_tcp(self) -> Spec:
        """This Spec with its ``tcp_command`` (for when nbviz's route is not available)."""
        if self.tcp_command is None:
            return self
        return dataclasses.replace(self, command=self.tcp_command, unix_socket=False, port=None)


def _wrong_type(name: str, what: str, value: object) -> ArgumentTypeError:
    return ArgumentTypeError(f"{name}= must be {what}, got {value!r} ({type(value).__name__})")


def check_types(
    *,
    command: object,
    port: object,
    unix_socket: object,
    ready_path: object,
    timeout: object,
    env: object,
    cwd: object,
    secret_param: object,
) -> None:
    """Refuse arguments of the wrong type before anything runs, naming the argument (the type
    hints say what each takes; a bare TypeError from deep inside would not)."""
    if not isinstance(command, (str, Sequence)):
        raise ArgumentTypeError(
            f"command must be a list of str (program and arguments) or one string, got {command!r}"
        )
    if port is not None and (not isinstance(port, int) or isinstance(port, bool)):
        raise _wrong_type("port", "an int (or None)", port)
    if not isinstance(unix_socket, (bool, str)):
        raise _wrong_type("unix_socket", "True, False or a socket path (str or Path)", unix_socket)
    if not isinstance(ready_path, str):
        raise _wrong_type("ready_path", "a str", ready_path)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
        raise _wrong_type("timeout", "a number of seconds", timeout)
    if not math.isfinite(timeout):
        raise TemplateError(
            f"timeout= must be a finite number of seconds, got {timeout!r}; give a large one "
            "(e.g. 3600) for a program that starts very slowly"
        )
    if env is not None and not isinstance(env, Mapping):
        raise _wrong_type("env", "a mapping of names to values (a dict, or None)", env)
    if cwd is not None and not isinstance(cwd, (str, os.PathLike)):
        raise _wrong_type("cwd", "a str or path (or None)", cwd)
    if secret_param is not None and not isinstance(secret_param, str):
        raise _wrong_type("secret_param", "a str (or None)", secret_param)


def check_remote(
    used: set[str],
    *,
    host: str | None,
    ssh: str | Sequence[str] | None,
    unix_socket: bool | str,
) -> tuple[str, ...]:
    """Validate ``host=`` / ``ssh=`` against the command's fields; the ssh arguments."""
    if host is not None and _remote.is_loopback(host):
        host = None  # this machine: an ordinary local backend (with the port-ownership check)
    if host is not None and ssh is not None:
        raise TemplateError(
            "nbviz: give either host= (a backend listening on host:port) or ssh= (a backend on "
            "a Unix socket there, forwarded by ssh), not both"
        )
    if host is not None:
        _remote.check_host(host)
        if "unix_socket" in used or unix_socket:
            raise TemplateError(
                "nbviz: host= needs a backend that listens on {port}; a Unix socket on another "
                "host is reached with ssh= instead"
            )
        return ()
    if ssh is None:
        return ()
    args = _remote.ssh_args(ssh)
    if "unix_socket" not in used or "port" in used or isinstance(unix_socket, str):
        raise TemplateError(
            "nbviz: ssh= needs a command with {unix_socket} (the backend's socket on the remote "
            "host, which ssh forwards to a private local socket) and no {port}"
        )
    return args


def template_fields(item: str, *, where: str = "template") -> set[str]:
    """The template fields ``item`` uses; raises TemplateError for unknown or malformed ones."""
    try:
        parsed = list(string.Formatter().parse(item))
    except ValueError as exc:
        raise TemplateError(
            f"{where} is not a valid template ({exc}); write {{{{ and }}}} for literal braces"
        ) from None
    names = set()
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS:
            known = ", ".join("{" + key + "}" for key in TEMPLATE_FIELDS)
            raise TemplateError(
                f"{where} uses the unknown field {{{name}}}; known fields: {known} "
                "(write {{ and }} for literal braces)"
            )
        if spec or conversion:
            raise TemplateError(f"{where}: field {{{name}}} takes no format spec or conversion")
        names.add(name)
    return names


def render_command(command: Sequence[str], values: Mapping[str, object]) -> list[str]:
    """Fill the template fields of every command item."""
    return [item.format_map(dict(values)) for item in command]


def default_name(command: Sequence[str]) -> str:
    """A short human name for a command: ``python -m http.server`` -> ``http.server``."""
    program = os.path.basename(command[0])
    if program == "env":  # env [-u NAME] [NAME=value ...] program ...: name the program
        rest = list(command[1:])
        while rest and (rest[0].startswith("-") or "=" in rest[0]):
            rest = rest[2:] if rest[0] in ("-u", "--unset", "-C", "--chdir") else rest[1:]
        if rest:
            return default_name(rest)
    if program.startswith("python") and len(command) > 1:
        if command[1] == "-m" and len(command) > 2:
            return command[2]
        if not command[1].startswith("-"):
            return os.path.basename(command[1])
    return program


def split_command(line: str, what: str = "the command") -> list[str]:
    """A command line as a shell would split it (no shell runs it), or a clear error."""
    try:
        return shlex.split(line)
    except ValueError as exc:  # "No closing quotation", "No escaped character"
        raise TemplateError(
            f"{what} {line!r} cannot be split into arguments ({str(exc).lower()}): close its "
            "quotes, or give a list of arguments"
        ) from None


def find_program(program: str, env: Mapping[str, str] | None = None, cwd: str | None = None) -> str:
    """The full path of ``program`` (looked up on the PATH the backend will get; a relative path
    such as ``./serve.sh`` is taken from ``cwd``, as subprocess does)."""
    given = program
    if os.sep in program and cwd is not None:
        program = os.path.join(cwd, program)
    path = (env or {}).get("PATH", os.environ.get("PATH"))
    found = shutil.which(program, path=path)
    if found:
        return found
    hint = INSTALL_HINTS.get(os.path.basename(program))
    how = f"install it ({hint})" if hint else "install it or give its full path"
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", program):
        raise ProgramNotFoundError(
            f"nbviz: the command starts with {program!r}, a shell variable assignment; the "
            "command runs without a shell: pass env={...} for environment variables"
        )
    if os.sep in program and os.path.isfile(program):
        raise ProgramNotFoundError(
            f"nbviz: {program} is not executable; chmod +x it, or run it with its "
            f"interpreter (e.g. [sys.executable, {program!r}, ...])"
        )
    if os.sep in program and not os.path.isabs(given) and cwd is not None:
        raise ProgramNotFoundError(
            f"nbviz: {given} does not exist in {cwd} (a relative program path is taken from "
            "cwd=, the app's working directory); give its full path"
        )
    if os.sep in program:
        raise ProgramNotFoundError(f"nbviz: {program} does not exist; {how}")
    raise ProgramNotFoundError(f"nbviz: program {program!r} not found on PATH; {how}")
