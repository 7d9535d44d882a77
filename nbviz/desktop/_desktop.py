"""``RemoteDesktop``: an X11 desktop (Xpra or TigerVNC + noVNC) shown in a notebook cell."""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import traitlets as t

from .. import _gate, _orphans, _routes
from .._errors import BackendStoppedError, NbvizError, PortInUseError, ProgramNotFoundError
from .._process import Process, kill_tree, tail
from .._routes import RouteChoice
from .._screenshot import Screenshot
from .._spec import Endpoint, Spec, find_program
from ..app import LogText, WebApp, warn
from . import _launch

Backend = Literal["xpra", "vnc"]

#: How often the kernel looks at the desktop's clipboard and window list (seconds).
POLL_INTERVAL = 1.0
#: How long setting ``clipboard`` waits for the desktop to see the new text (seconds).
CLIPBOARD_TIMEOUT = 3.0
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
        if not _launch.NOVNC_DIR.is_dir():
            return "noVNC is not installed (apt-get install novnc)"
    for program, package in TOOLS.items():
        if shutil.which(program) is None:
            return f"{program} is not installed (apt-get install {package})"
    return None


def _must_exist(program: str, argument: str) -> None:
    try:
        find_program(program)
    except ProgramNotFoundError as exc:
        extra = " ('' for none)" if argument == "window_manager=" else ""
        raise ProgramNotFoundError(
            f"nbviz: RemoteDesktop({argument}...){extra}: {exc.message.removeprefix('nbviz: ')}"
        ) from None


class Program:
    """A program started on the desktop by :meth:`RemoteDesktop.launch`."""

    def __init__(
        self, argv: list[str], proc: subprocess.Popen[bytes], log_path: Path | None = None
    ) -> None:
        self.argv = argv
        self._proc = proc
        self._log_path = log_path

    def logs(self, lines: int | None = None) -> LogText:
        """What the program printed (stdout and stderr), or its last ``lines`` lines; kept
        until the desktop stops."""
        text = ""
        if self._log_path is not None:
            with contextlib.suppress(OSError):
                text = self._log_path.read_text(errors="replace")
        return LogText(tail(text, lines) if lines else text)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self._proc.wait(timeout)

    def stop(self) -> None:
        """End the program (and whatever it started)."""
        kill_tree(self._proc)  # also reaches what it started in its process group
        _orphans.release(self._proc.pid)

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited with {self.returncode}"
        return f"<Program {shlex.join(self.argv)!r} pid={self.pid} {state}>"


class RemoteDesktop(WebApp):
    """An X11 desktop in a notebook cell: a window manager, an xterm and your X programs.

    ``backend="xpra"`` (default) serves Xpra's HTML5 client; ``backend="vnc"`` runs TigerVNC
    with noVNC. Either listens only on a private Unix socket behind the Jupyter server.
    ``encryption="AES"`` (xpra only) also encrypts Xpra's websocket with a per-session key,
    which the page gets in its URL fragment. ``gl=False`` starts the X server without OpenGL
    (GLX): about 50 MB less per desktop, for programs that need no OpenGL (ParaView's GUI
    does: it cannot start on such a desktop).

    >>> desk = RemoteDesktop()
    >>> desk.launch("xterm")
    >>> desk.clipboard = "from the kernel"
    >>> desk.screenshot()
    >>> desk.stop()
    """

    windows = t.List(
        t.Unicode(), read_only=True, help="Titles of the windows open on the desktop."
    ).tag(sync=True)
    clipboard = t.Unicode(
        "",
        help="The desktop's clipboard: set it to copy text into the desktop (set while the "
        "desktop starts or is stopped: copied in once it is ready); what is copied there shows "
        "up here (polled every second).",
    ).tag(sync=True)
    size = t.Tuple(
        t.Int(), t.Int(), default_value=(1280, 800), help="Size of the X screen (width, height)."
    ).tag(sync=True)
    backend = t.Unicode("xpra", read_only=True, help="xpra or vnc.").tag(sync=True)
    display = t.Unicode(
        "", read_only=True, help="The X display (e.g. ':3'); empty while not running."
    ).tag(sync=True)

    def __init__(
        self,
        backend: Backend = "xpra",
        *,
        size: tuple[int, int] | None = None,
        start: str | Sequence[str | Sequence[str]] | None = ("xterm",),
        window_manager: str | None = "openbox",
        display: int | str | None = None,
        height: int | str = 560,
        timeout: float = 30,
        route: RouteChoice = "auto",
        title: str | None = None,
        autostart: bool = True,
        encryption: Literal["AES"] | None = None,
        gl: bool = True,
        slurm: Mapping[str, object] | bool | None = None,
    ) -> None:
        if backend not in ("xpra", "vnc"):
            raise NbvizError(f"nbviz: backend must be 'xpra' or 'vnc', not {backend!r}")
        if encryption not in (None, "AES"):
            raise NbvizError(f"nbviz: encryption must be 'AES' or None, not {encryption!r}")
        if encryption and backend != "xpra":
            raise NbvizError(
                "nbviz: encryption='AES' is for the xpra backend (noVNC has no such option); "
                "use RemoteDesktop('xpra', encryption='AES')"
            )
        problem = missing_backend(backend)
        if problem:
            other: Backend = "vnc" if backend == "xpra" else "xpra"
            offer = (
                f", or use RemoteDesktop(backend={other!r})"
                if missing_backend(other) is None
                else ""
            )
            raise ProgramNotFoundError(
                f"nbviz: the {backend} desktop cannot start: {problem}; install it{offer}"
            )
        start = _start_commands(start)
        window_manager = window_manager or ""  # None: none, as ""
        if window_manager.strip():  # a command line, like the start= entries
            _must_exist(shlex.split(window_manager)[0], "window_manager=")
        # No size given: the X screen follows the frame in the page (1280x800 until it reports).
        self._follow_frame = size is None
        width, height_px = _valid_size(size or (1280, 800))
        if display is not None:
            display = _display_number(display)
        if display is not None and _launch.display_in_use(display):
            raise PortInUseError(
                f"nbviz: X display :{display} is in use; pick another or leave display= unset"
            )
        command = [
            sys.executable,
            str(Path(_launch.__file__).resolve()),
            "--backend",
            backend,
            "--socket",
            "{unix_socket}",
            "--size",
            f"{width}x{height_px}",
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
        at = command.index("{unix_socket}")
        spec = Spec.build(
            command,
            unix_socket=True,
            ready_path=CLIENT_PAGE[backend],
            timeout=timeout,
            probe=self._desktop_is_up,
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
        )
        self._launched: list[Program] = []
        self._info: dict[str, Any] = {}
        self._poller: threading.Thread | None = None
        self._poll_stop = threading.Event()
        self._clipboard_owner: subprocess.Popen[bytes] | None = None
        self._launch_size = (width, height_px)
        self._gl = bool(gl)
        self._encryption = encryption
        #: The session secret whose page ``path`` holds (see :meth:`_client_page`).
        self._page_secret = ""
        self._init_backend(
            spec,
            route=route,
            height=height,
            title=title or ("Desktop (Xpra)" if backend == "xpra" else "Desktop (VNC)"),
            path=CLIENT_PAGE[backend],
            start=False,
        )
        self.set_trait("backend", backend)
        self.size = (width, height_px)
        self.observe(self._on_clipboard, names="clipboard")
        self.observe(self._on_size, names="size")
        self.observe(self._on_frame_size, names="frame_size")
        if autostart:
            self.start()

    # --------------------------------------------------------------- lifecycle
    def _read_info(self) -> dict[str, Any]:
        """What the launcher wrote once the desktop was usable (display, Xauthority, ...)."""
        socket_dir = self._process.socket_dir
        if socket_dir is None:
            return {}
        path = _launch.state_dir_for(str(socket_dir / "backend.sock")) / "desktop.json"
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError):
            return {}

    def _desktop_is_up(self, _endpoint: Endpoint) -> bool:
        """Readiness: the web client answers and the launcher has the desktop running.

        The client answering comes first (the launcher serves it from its start): from then on
        the frame may load the page, hidden, while the X server and Xpra or Xvnc start; its
        websocket waits in the launcher until they listen.
        """
        if not self.serving:
            self.set_trait("serving", True)
        return bool(self._read_info())

    def _client_page(self, secret: str) -> str:
        """The client's start page for the start whose session secret is ``secret``.

        The VNC password and the AES key go in the fragment, which browsers never send to a
        server. They are derived from the secret as the launcher derives them
        (:func:`_launch.credential`), so the page is known before the desktop is up.
        """
        if self.backend == "vnc":
            password = _launch.credential(secret, "vnc-password", _launch.VNC_PASSWORD_LENGTH)
            return (
                f"{CLIENT_PAGE['vnc']}#autoconnect=true&reconnect=true&resize=scale"
                f"&password={password}"
            )
        if self._encryption:
            # nbviz's script in Xpra's page reads parameters from the fragment.
            key = _launch.credential(secret, "xpra-key", _launch.XPRA_KEY_LENGTH)
            return f"{CLIENT_PAGE['xpra']}#encryption={self._encryption}&key={key}"
        return CLIENT_PAGE["xpra"]

    def _on_process_change(self, process: Process) -> None:
        # (Why the launcher ended, which piece and what to do, is its last "nbviz-exit:" line:
        # the lifecycle makes it the error's first line.)
        if process.status == "starting" and process.secret != self._page_secret:
            # A new start (a new secret): its page, not served yet.
            self._page_secret = process.secret
            self._initial_path = self._client_page(process.secret)
            with self.hold_sync():
                self.set_trait("serving", False)
                self.path = self._with_secret(self._initial_path)
        super()._on_process_change(process)

    def _backend_ready(self) -> None:
        self._info = self._read_info()
        self.set_trait("display", str(self._info.get("display", "")))
        if tuple(self.size) != self._launch_size:  # resized while stopped
            with contextlib.suppress(RuntimeError):
                _launch.set_screen_size(self.x_env, *self.size)
        if self.clipboard:  # set while it started (or before a restart): the desktop gets it
            with contextlib.suppress(NbvizError, OSError):  # not a reason to fail the start
                self._copy_to_desktop(self.clipboard)
        self._poll_stop.clear()
        self._poller = threading.Thread(target=self._poll, name="nbviz-desktop-poll", daemon=True)
        self._poller.start()

    def _backend_gone(self) -> None:
        self._poll_stop.set()
        for program in self._launched:
            program.stop()
        self._launched = []
        owner, self._clipboard_owner = self._clipboard_owner, None
        if owner is not None:
            Program([], owner).stop()
        self._info = {}
        with self.hold_sync():
            self.set_trait("serving", False)
            self.set_trait("display", "")
            self.set_trait("windows", [])

    def _route_for(self, endpoint: Endpoint, session_id: str) -> _routes.Route:
        try:
            return super()._route_for(endpoint, session_id)
        except NbvizError:
            if self._route_choice != "auto":
                raise
        # No Jupyter server with nbviz's route (plain IPython, nbclient, a script): the desktop
        # still runs and is usable from the kernel; it just cannot be shown.
        warn(
            "nbviz: no Jupyter server with nbviz's route was found behind this kernel, so the "
            "desktop cannot be shown in the page (launch(), screenshot(), clipboard and windows "
            "work); if Jupyter runs this kernel, install nbviz where Jupyter runs and restart it"
        )
        return _routes.Route(kind="relative", url="", prefix="/")

    # ---------------------------------------------------------------- the display
    @property
    def x_env(self) -> dict[str, str]:
        """Environment for an X program on this desktop (``DISPLAY``, ``XAUTHORITY``)."""
        if not self._info or self._process.status != "ready":
            self.wait_ready()
        if not self._info:
            raise BackendStoppedError("nbviz: the desktop is not running; call start()")
        env = dict(os.environ)
        env.update(DISPLAY=self._info["display"], XAUTHORITY=self._info["xauthority"])
        return env

    def _x(self, argv: list[str], *, input: bytes | None = None, timeout: float = 10) -> bytes:
        """Run an X tool on the desktop; raises NbvizError with its message when it fails."""
        env = self.x_env
        program = find_program(argv[0], env)
        try:
            result = subprocess.run(
                [program, *argv[1:]], env=env, input=input, capture_output=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise NbvizError(f"nbviz: {argv[0]} did not finish in {timeout:g} s") from None
        if result.returncode != 0:
            raise NbvizError(
                f"nbviz: {shlex.join(argv)} failed on {env['DISPLAY']}: "
                f"{result.stderr.decode(errors='replace').strip()}"
            )
        return result.stdout

    def launch(
        self,
        program: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str | int | float] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> Program:
        """Start an X program on this desktop; it ends with the desktop (and the kernel).

        ``program``: a command line (``"xterm -T 'my title'"``, no shell), a list of arguments,
        or a path. ``env``: variables added to its environment (numbers become strings, as in
        WebApp's)."""
        if isinstance(program, os.PathLike):  # a path to the program (it was iterated)
            program = [program]
        argv = shlex.split(program) if isinstance(program, str) else [str(a) for a in program]
        if not argv:
            raise NbvizError("nbviz: launch() needs a program, e.g. desk.launch('xterm')")
        full_env = self.x_env
        full_env.update({str(k): str(v) for k, v in (env or {}).items()})
        if os.path.basename(argv[0]) in NEEDS_GL and not self._gl:
            raise NbvizError(
                f"nbviz: {os.path.basename(argv[0])} needs OpenGL (GLX), and this desktop was "
                "started with gl=False; use RemoteDesktop(gl=True) (the default) for it"
            )
        argv[0] = find_program(argv[0], full_env)
        if cwd is not None and not os.path.isdir(cwd):  # else the error names the program
            raise NbvizError(f"nbviz: launch(cwd=...): {os.fspath(cwd)} is not a directory")
        if os.path.basename(argv[0]) == "paraview" and "--mpi" not in argv[1:]:
            # Debian's ParaView GUI initialises MPI, whose runtime listens on TCP on every
            # interface: on a shared login node, keep the desktop free of open ports.
            argv.insert(1, "--no-mpi")
        session_dir = self._process.session_dir
        log_path = session_dir / f"program-{len(self._launched)}.log" if session_dir else None
        log = os.open(log_path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            proc = subprocess.Popen(
                argv,
                env=full_env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stop() ends what it starts too
            )
        except OSError as exc:
            raise NbvizError(f"nbviz: could not start {argv[0]}: {exc.strerror or exc}") from None
        finally:
            os.close(log)
        _orphans.guard(proc.pid, [])
        handle = Program(argv, proc, log_path)
        self._launched.append(handle)
        return handle

    def screenshot(self) -> Screenshot:
        """A PNG of the whole X screen, taken on the server (no browser needed)."""
        shot = Screenshot(self._x(["import", "-window", "root", "png:-"], timeout=30))
        self._set_static_picture(shot.data)  # the picture a saved notebook shows
        return shot

    def refresh(self) -> None:
        """Read the desktop's window list and clipboard now (they are also polled)."""
        windows = self._read_windows()
        text = self._read_clipboard()
        with self.hold_sync():
            self.set_trait("windows", windows)
            if text is not None and text != self.clipboard:
                with self._from_backend():  # the desktop's own: not copied back into it
                    self.clipboard = text

    def _read_windows(self) -> list[str]:
        try:
            listing = self._x(["wmctrl", "-l"])
        except NbvizError as exc:
            # No window manager (yet, or window_manager=""): nothing publishes the list.
            if "Cannot get client list" in str(exc):
                return []
            raise
        lines = listing.decode(errors="replace").splitlines()
        titles = []
        for line in lines:
            parts = line.split(None, 3)
            title = parts[3] if len(parts) == 4 else ""
            if title == "N/A":  # wmctrl reads WM_NAME only as Latin-1 text (xterm -T 'Grüße')
                title = self._window_title(parts[0])
            titles.append(title)
        return titles

    def _window_title(self, window: str) -> str:
        """The title of ``window`` (an X window id), read with xprop, which decodes WM_NAME in
        every encoding (COMPOUND_TEXT, UTF-8); "" for a window without one."""
        env = dict(self.x_env, LC_ALL="C.UTF-8")  # xprop prints the text, not octal escapes
        result = subprocess.run(
            [find_program("xprop", env), "-id", window, "_NET_WM_NAME", "WM_NAME"],
            env=env,
            capture_output=True,
            timeout=5,
        )
        for line in result.stdout.decode(errors="replace").splitlines():
            _name, found, value = line.partition(" = ")
            if found and value.startswith('"'):
                with contextlib.suppress(ValueError, SyntaxError):
                    return str(ast.literal_eval(value))  # "..." with C escapes, as xprop quotes
                return value.strip('"')
        return ""

    def _read_clipboard(self) -> str | None:
        env = self.x_env
        try:
            result = subprocess.run(
                [find_program("xclip", env), "-selection", "clipboard", "-o"],
                env=env,
                capture_output=True,
                timeout=5,
            )
        except subprocess.TimeoutExpired:
            return None
        if result.returncode != 0:  # nothing copied yet
            return None
        return result.stdout.decode(errors="replace")

    def _poll(self) -> None:
        while not self._poll_stop.wait(POLL_INTERVAL):
            with contextlib.suppress(NbvizError, OSError):
                if self._process.status == "ready":
                    self.refresh()

    # ------------------------------------------------------------- observers
    def _on_clipboard(self, change: dict[str, Any]) -> None:
        if self._changed_by_backend() or self._process.status != "ready":
            return  # not running: copied in when it is ready (_backend_ready)
        self._copy_to_desktop(str(change["new"]))

    def _copy_to_desktop(self, text: str) -> None:
        """Make ``text`` the desktop's clipboard; returns once the desktop sees it."""
        env = self.x_env
        old = self._clipboard_owner
        # xclip keeps running (-quiet: in the foreground) as the selection's owner until
        # something else is copied.
        proc = subprocess.Popen(
            [find_program("xclip", env), "-selection", "clipboard", "-i", "-quiet"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _orphans.guard(proc.pid, [])
        assert proc.stdin is not None
        proc.stdin.write(text.encode())
        proc.stdin.close()
        self._clipboard_owner = proc
        if old is not None:
            Program([], old).stop()
        # Return once the desktop sees the text (xclip takes the selection asynchronously).
        deadline = time.monotonic() + CLIPBOARD_TIMEOUT
        while self._read_clipboard() != text and time.monotonic() < deadline:
            time.sleep(0.01)

    def _on_frame_size(self, change: dict[str, Any]) -> None:
        if not self._follow_frame or len(change["new"]) != 2:
            return
        width, height = change["new"]
        limit = self._size_limit()
        wanted = (max(320, min(int(width), limit[0])), max(200, min(int(height), limit[1])))
        if wanted != tuple(self.size):
            self._resizing_for_frame = True
            try:
                self.size = wanted
            except NbvizError:
                pass  # the next frame size will try again
            finally:
                self._resizing_for_frame = False

    def _size_limit(self) -> tuple[int, int]:
        """The largest X screen this desktop can have: under Xpra, the framebuffer its Xvfb
        started with (the launcher's, or the size given to the constructor if larger)."""
        if self.backend != "xpra":
            return (8192, 8192)
        return (
            max(self._launch_size[0], _launch.MIN_FRAMEBUFFER[0]),
            max(self._launch_size[1], _launch.MIN_FRAMEBUFFER[1]),
        )

    @t.validate("size")
    def _check_size(self, proposal: dict[str, Any]) -> tuple[int, int]:
        """A size the desktop cannot take is refused before it becomes the trait's value (it
        stayed, and the screen kept its old size)."""
        width, height = _valid_size(proposal["value"])
        most = self._size_limit()
        if width > most[0] or height > most[1]:
            raise NbvizError(
                f"nbviz: this xpra desktop's screen can be at most {most[0]}x{most[1]} (the X "
                f"framebuffer it started with), not {width}x{height}; for a larger one, start "
                f"it with RemoteDesktop(size=({width}, {height}))"
            )
        return width, height

    def _on_size(self, change: dict[str, Any]) -> None:
        if not getattr(self, "_resizing_for_frame", False):
            self._follow_frame = False  # the user chose a size: stop following the frame
        width, height = change["new"]
        if self._process.status != "ready":
            return  # applied when the desktop is ready
        try:
            _launch.set_screen_size(self.x_env, width, height)
        except RuntimeError as exc:
            raise NbvizError(
                f"nbviz: could not resize the desktop to {width}x{height}: {exc}"
            ) from None

    def __repr__(self) -> str:
        where = f" on {self.display}" if self.display else ""
        return f"<RemoteDesktop {self.backend} {self.status}{where}>"


def _start_commands(start: str | Sequence[str | Sequence[str]] | None) -> list[str]:
    """``start=`` as command lines (what the launcher takes), each checked now: the launcher
    would skip a missing program, saying so in its log only. An entry is a command line
    (``"xterm -T 'my title'"``) or a list of arguments, as for :meth:`RemoteDesktop.launch`;
    None is none."""
    if start is None:
        return []
    if isinstance(start, str):  # one command, not its letters
        start = (start,)
    commands = []
    for item in start:
        if isinstance(item, str):
            argv = shlex.split(item)
        elif isinstance(item, Sequence):
            argv = [str(arg) for arg in item]
        else:
            raise NbvizError(
                "nbviz: start= takes commands, each a string ('xterm -T notes') or a list "
                f"(['xterm', '-T', 'notes']), not {item!r}"
            )
        if not argv:
            raise NbvizError(f"nbviz: start= has an empty command: {list(start)!r}")
        _must_exist(argv[0], "start=")
        commands.append(item if isinstance(item, str) else shlex.join(argv))
    return commands


def _display_number(display: int | str) -> int:
    """The number of an X display given as ``5`` or ``":5"``."""
    text = display.removeprefix(":") if isinstance(display, str) else display
    if isinstance(text, bool) or not (isinstance(text, int) or text.isdigit()) or int(text) < 0:
        raise NbvizError(
            f"nbviz: display= must be a display number (5 or ':5'), not {display!r}; "
            "leave it unset for the first free one"
        )
    return int(text)


def _valid_size(size: Sequence[int]) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise NbvizError(f"nbviz: size must be (width, height), not {size!r}") from None
    if not (64 <= width <= 8192 and 64 <= height <= 8192):
        raise NbvizError(f"nbviz: size must be between 64 and 8192 pixels, not {size!r}")
    return width, height
