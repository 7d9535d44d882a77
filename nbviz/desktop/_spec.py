"""What the kernel builds for a ``RemoteDesktop`` before anything runs (pure: no traits).

Arguments are checked here (what is missing and what to install, sizes, display numbers,
``start=`` commands), and turned into the launcher's command (``runtime/launcher.py``, run by
path) and the :class:`~nbviz._spec.Spec` the lifecycle starts; the client's start page for a
start's session secret; what the launcher wrote once the desktop was usable.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from .. import _gate
from .._errors import NbvizError, ProgramNotFoundError
from .._spec import Endpoint, Spec, find_program, split_command
from .runtime import shared

Backend = Literal["xpra", "vnc"]

#: The desktop's backend process, run by path in another interpreter (standard library only).
LAUNCHER = Path(__file__).resolve().with_name("runtime") / "launcher.py"
#: Programs each backend needs, with what to install.
REQUIREMENTS: Mapping[str, Mapping[str, str]] = {
    "xpra": {"xpra": "apt-get install xpra", "Xvfb": "apt-get install xvfb"},
    "vnc": {
        "Xvnc": "apt-get install tigervnc-standalone-server",
        "vncpasswd": "apt-get install tigervnc-tools",
    },
}
#: Tools nbviz runs on the desktop's display (Debian packages in parentheses).
TOOLS: Mapping[str, str] = {
    "xdpyinfo": "x11-utils",
    "xprop": "x11-utils",
    "wmctrl": "wmctrl",
    "xclip": "xclip",
    "xrandr": "x11-xserver-utils",
    "import": "imagemagick",
    "xauth": "xauth",
}
#: Programs known to abort on a display without OpenGL (GLX): launch() refuses them when
#: the desktop was started with ``gl=False``.
NEEDS_GL = frozenset({"paraview"})
#: Start page of each backend's HTML5 client (relative to the backend's root).
CLIENT_PAGE: Mapping[str, str] = {"xpra": "/", "vnc": "/nbviz.html"}


def missing_backend(backend: Backend) -> str | None:
    """Why ``backend`` cannot run here (what to install), or None when it can."""
    for program, install in REQUIREMENTS[backend].items():
        if shutil.which(program) is None:
            return f"{program} is not installed ({install})"
    if backend == "vnc":
        if importlib.util.find_spec("websockify") is None:
            return "websockify is not installed (pip install 'websockify>=0.13')"
        if not shared.NOVNC_DIR.is_dir():
            return "noVNC is not installed (apt-get install novnc)"
    for program, package in TOOLS.items():
        if shutil.which(program) is None:
            return f"{program} is not installed (apt-get install {package})"
    return None


def check_backend(backend: str, encryption: str | None) -> None:
    """Refuse a backend or encryption nbviz does not know, or a backend that cannot run here
    (saying what to install, and offering the other backend when that one can)."""
    if backend not in ("xpra", "vnc"):
        raise NbvizError(f"nbviz: backend must be 'xpra' or 'vnc', not {backend!r}")
    if encryption not in (None, "AES"):
        raise NbvizError(f"nbviz: encryption must be 'AES' or None, not {encryption!r}")
    if encryption and backend != "xpra":
        raise NbvizError(
            "nbviz: encryption='AES' is for the xpra backend (noVNC has no such option); "
            "use RemoteDesktop('xpra', encryption='AES')"
        )
    problem = missing_backend(backend)  # type: ignore[arg-type]
    if problem:
        other: Backend = "vnc" if backend == "xpra" else "xpra"
        offer = (
            f", or use RemoteDesktop(backend={other!r})" if missing_backend(other) is None else ""
        )
        raise ProgramNotFoundError(
            f"nbviz: the {backend} desktop cannot start: {problem}; install it{offer}"
        )


def must_exist(program: str, argument: str) -> None:
    try:
        find_program(program)
    except ProgramNotFoundError as exc:
        extra = " ('' for none)" if argument == "window_manager=" else ""
        raise ProgramNotFoundError(
            f"nbviz: RemoteDesktop({argument}...){extra}: {exc.message.removeprefix('nbviz: ')}"
        ) from None


def launcher_command(
    backend: Backend,
    *,
    size: tuple[int, int],
    window_manager: str,
    display: int | None,
    start: Sequence[str],
    encryption: str | None,
    gl: bool,
) -> list[str]:
    """The launcher's command line, with ``{unix_socket}`` for the socket it serves on."""
    width, height = size
    command = [
        sys.executable,
        str(LAUNCHER),
        "--backend",
        backend,
        "--socket",
        "{unix_socket}",
        "--size",
        f"{width}x{height}",
        "--wm",
        window_manager,
    ]
    if display is not None:
        command += ["--display", str(display)]
    for program in start:
        command += ["--start", program]
    if encryption:
        command += ["--encryption", encryption]
    if not gl:
        command.append("--no-gl")
    return command


def desktop_spec(
    backend: Backend,
    command: list[str],
    timeout: float,
    probe: Callable[[Endpoint], bool],
    slurm: Mapping[str, object] | bool | None = None,
) -> Spec:
    """The Spec of a desktop started with ``command`` (from :func:`launcher_command`); with
    ``slurm``, as a Slurm job (see nbviz._slurm)."""
    at = command.index("{unix_socket}")
    return Spec.build(
        command,
        unix_socket=True,
        ready_path=CLIENT_PAGE[backend],
        timeout=timeout,
        probe=probe,
        name=f"{backend} desktop",
        # Without nbviz's route the page reaches the desktop on a loopback port, where every
        # local user could connect: the launcher then admits only the session secret's
        # holder (Xpra and Xvnc themselves stay on private Unix sockets behind it).
        secret_param=_gate.PARAM,
        tcp_command=[
            *command[:at],
            "{socket_dir}/backend.sock",
            "--port",
            "{port}",
            *command[at + 1 :],
        ],
        slurm=slurm,
        near_kernel=True,  # its state file, and X tools on its display (launch(), screenshot)
    )


def client_page(backend: str, secret: str, encryption: str | None) -> str:
    """The client's start page for the start whose session secret is ``secret``.

    The VNC password and the AES key go in the fragment, which browsers never send to a
    server. They are derived from the secret as the launcher derives them
    (:func:`runtime.shared.credential`), so the page is known before the desktop is up.
    """
    if backend == "vnc":
        password = shared.credential(secret, "vnc-password", shared.VNC_PASSWORD_LENGTH)
        return (
            f"{CLIENT_PAGE['vnc']}#autoconnect=true&reconnect=true&resize=scale&password={password}"
        )
    if encryption:
        # nbviz's script in Xpra's page reads parameters from the fragment.
        key = shared.credential(secret, "xpra-key", shared.XPRA_KEY_LENGTH)
        return f"{CLIENT_PAGE['xpra']}#encryption={encryption}&key={key}"
    return CLIENT_PAGE["xpra"]


def read_info(socket_dir: Path | None) -> dict[str, Any]:
    """What the launcher wrote once the desktop was usable (display, Xauthority, ...)."""
    if socket_dir is None:
        return {}
    path = shared.state_dir_for(str(socket_dir / "backend.sock")) / shared.INFO_FILE
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def size_limit(backend: str, launch_size: tuple[int, int]) -> tuple[int, int]:
    """The largest X screen a desktop can have: under Xpra, the framebuffer its Xvfb started
    with (the launcher's, or the size given to the constructor if larger)."""
    if backend != "xpra":
        return (8192, 8192)
    return (
        max(launch_size[0], shared.MIN_FRAMEBUFFER[0]),
        max(launch_size[1], shared.MIN_FRAMEBUFFER[1]),
    )


def start_commands(start: str | Sequence[str | Sequence[str]] | None) -> list[str]:
    """``start=`` as command lines (what the launcher takes), each checked now: the launcher
    would skip a missing program, saying so in its log only. An entry is a command line
    (``"xterm -T 'my title'"``) or a list of arguments, as for ``RemoteDesktop.launch``;
    None is none."""
    if start is None:
        return []
    if isinstance(start, str):  # one command, not its letters
        start = (start,)
    commands = []
    for item in start:
        if isinstance(item, str):
            argv = split_command(item, "start=")
        elif isinstance(item, Sequence):
            argv = [str(arg) for arg in item]
        else:
            raise NbvizError(
                "nbviz: start= takes commands, each a string ('xterm -T notes') or a list "
                f"(['xterm', '-T', 'notes']), not {item!r}"
            )
        if not argv:
            raise NbvizError(f"nbviz: start= has an empty command: {list(start)!r}")
        must_exist(argv[0], "start=")
        commands.append(item if isinstance(item, str) else shlex.join(argv))
    return commands


def display_number(display: int | str) -> int:
    """The number of an X display given as ``5`` or ``":5"``."""
    text = display.removeprefix(":") if isinstance(display, str) else display
    if isinstance(text, bool) or not (isinstance(text, int) or text.isdigit()) or int(text) < 0:
        raise NbvizError(
            f"nbviz: display= must be a display number (5 or ':5'), not {display!r}; "
            "leave it unset for the first free one"
        )
    return int(text)


def valid_size(size: Sequence[int]) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise NbvizError(f"nbviz: size must be (width, height), not {size!r}") from None
    if not (64 <= width <= 8192 and 64 <= height <= 8192):
        raise NbvizError(f"nbviz: size must be between 64 and 8192 pixels, not {size!r}")
    return width, height
