"""``RemoteDesktop``: the widget (traits, lifecycle hooks, the kernel's API) of an X11 desktop
(Xpra or TigerVNC + noVNC) shown in a notebook cell.

Kernel side. What it starts is built in ``_spec.py``; the X tools it runs on the display are in
``_display.py``; the desktop itself runs in another interpreter (``runtime/launcher.py``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import traitlets as t

from .. import _orphans, _routes
from .._errors import BackendStoppedError, NbvizError, PortInUseError
from .._process import Process
from .._routes import RouteChoice
from .._screenshot import Screenshot
from .._spec import Endpoint, find_program, split_command
from .._tree import SESSION_ENV_VAR
from ..app import WebApp, warn
from . import _display, _spec
from ._display import Program
from ._spec import Backend
from .runtime import xserver

#: How often the kernel looks at the desktop's clipboard and window list (seconds).
POLL_INTERVAL = 1.0


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
        _spec.check_backend(backend, encryption)
        start = _spec.start_commands(start)
        window_manager = window_manager or ""  # None: none, as ""
        if window_manager.strip():  # a command line, like the start= entries
            _spec.must_exist(split_command(window_manager, "window_manager=")[0], "window_manager=")
        # No size given: the X screen follows the frame in the page (1280x800 until it reports).
        self._follow_frame = size is None
        width, height_px = _spec.valid_size(size or (1280, 800))
        if display is not None:
            display = _spec.display_number(display)
        if display is not None and xserver.display_in_use(display):
            raise PortInUseError(
                f"nbviz: X display :{display} is in use; pick another or leave display= unset"
            )
        command = _spec.launcher_command(
            backend,
            size=(width, height_px),
            window_manager=window_manager,
            display=display,
            start=start,
            encryption=encryption,
            gl=gl,
        )
        spec = _spec.desktop_spec(backend, command, timeout, self._desktop_is_up, slurm=slurm)
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
            path=_spec.CLIENT_PAGE[backend],
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
        return _spec.read_info(self._process.socket_dir)

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
        """The client's start page for the start whose session secret is ``secret``."""
        return _spec.client_page(self.backend, secret, self._encryption)

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
                xserver.set_screen_size(self.x_env, *self.size)
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
        return _display.run_x(self.x_env, argv, input=input, timeout=timeout)

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
        argv = (
            split_command(program, "launch()")
            if isinstance(program, str)
            else [str(a) for a in program]
        )
        if not argv:
            raise NbvizError("nbviz: launch() needs a program, e.g. desk.launch('xterm')")
        full_env = self.x_env
        full_env.update({str(k): str(v) for k, v in (env or {}).items()})
        # marked as the desktop's: what it starts and detaches (setsid, a double fork) still
        # ends with the desktop's stop() and with the kernel (the watchdog ends the session)
        full_env[SESSION_ENV_VAR] = self._process.session_id
        if os.path.basename(argv[0]) in _spec.NEEDS_GL and not self._gl:
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
        _orphans.guard(proc.pid, [], session=self._process.session_id)
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
        return _display.read_windows(self.x_env)

    def _read_clipboard(self) -> str | None:
        return _display.read_clipboard(self.x_env)

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
        self._clipboard_owner = _display.own_clipboard(env, text)
        if old is not None:
            Program([], old).stop()
        _display.wait_for_clipboard(env, text)

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
        """The largest X screen this desktop can have (see :func:`_spec.size_limit`)."""
        return _spec.size_limit(self.backend, self._launch_size)

    @t.validate("size")
    def _check_size(self, proposal: dict[str, Any]) -> tuple[int, int]:
        """A size the desktop cannot take is refused before it becomes the trait's value (it
        stayed, and the screen kept its old size)."""
        width, height = _spec.valid_size(proposal["value"])
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
            xserver.set_screen_size(self.x_env, width, height)
        except RuntimeError as exc:
            raise NbvizError(
                f"nbviz: could not resize the desktop to {width}x{height}: {exc}"
            ) from None

    def __repr__(self) -> str:
        where = f" on {self.display}" if self.display else ""
        return f"<RemoteDesktop {self.backend} {self.status}{where}>"
