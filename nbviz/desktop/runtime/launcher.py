"""The backend process of a RemoteDesktop: X server, window manager, web client, in one group.

Run by :class:`nbviz.desktop.RemoteDesktop` as its backend command, by path::

    python nbviz/desktop/runtime/launcher.py --backend xpra --socket S --size 1280x800 --start xterm

It starts every piece as its own child (so nbviz's process-group kill and orphan watchdog end
all of them), writes ``desktop.json`` (display, Xauthority) into a private state directory next
to the socket once the desktop is usable, then watches: if the X server or the web-facing
process exits, it ends the rest and exits non-zero with a line that says what happened.

- ``xpra``: an Xvfb started here, then ``xpra start-desktop --use-display`` on it (Xvfb and
  the window manager come up while Xpra's Python imports), its websocket on a private Unix socket;
  nbviz's own copy of the Xpra config (no Xsession pop-up); this launcher serves the HTML5
  client's files on ``S`` (threads, keep-alive, gzipped copies; plus a small script,
  ``pages.xpra_page_script``) and passes websocket upgrades through to Xpra. With
  ``--encryption AES`` the websocket is AES-encrypted with a per-session key file.
- ``vnc``: TigerVNC's ``Xvnc`` on a private Unix socket with a per-session VNC password, and
  this launcher serving noVNC's files on ``S`` (threads, keep-alive) and carrying noVNC's
  websocket to Xvnc itself (websockify's WebSocket class, no websockify process).

It serves the client from its start: a page loaded meanwhile (nbviz's frame loads it early,
hidden) gets its files, and its websocket waits until Xpra or Xvnc listens. The VNC password
and the AES key are derived from the session secret in ``NBVIZ_SECRET`` (``shared.credential``),
so the kernel knows the page's URL before the desktop is up.

Its pieces are the files beside it: ``xserver.py`` (display numbers, screen size),
``webserver.py`` (the client's files and websocket), ``pages.py`` (the clients' web roots),
``shared.py`` (what the kernel side agrees on); the children are run by nbviz's one supervisor
(``nbviz/_runtime/supervise.py``). Only the standard library is used, and websockify for the
VNC websocket. Secrets are passed in files (0600), never on command lines or in the log.
"""

from __future__ import annotations

if not __package__:  # run by path: plain relative imports all the same (see the file named)
    import runpy
    from pathlib import Path

    _bypath = Path(__file__).resolve().parents[2] / "_runtime" / "bypath.py"
    __package__ = runpy.run_path(str(_bypath))["package"](__file__)

import argparse
import contextlib
import functools
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..._runtime import supervise
from .commands import xpra_argv, xvfb_argv, xvnc_argv
from .pages import (
    link_gzipped,
    novnc_web_root,
    vnc_password_file,
    xpra_config,
    xpra_http_headers,
    xpra_web_root,
)
from .shared import (
    BACKGROUND,
    INFO_FILE,
    VNC_PASSWORD_LENGTH,
    XPRA_KEY_LENGTH,
    credential,
    say,
    state_dir_for,
    write_private,
)
from .webserver import TCPWebServer, WebServer, connect_unix, websocket_class
from .xserver import X_START_TIMEOUT, display_in_use, free_display, set_screen_size

#: When this process got going (wall clock, so the kernel and the browser can line it up).
STARTED = time.time()

WM_START_TIMEOUT = 10.0
#: How many times the window manager is started again when it exits (killed, or "Exit" in
#: openbox's menu): without it windows lose their frames and the window list goes stale.
WM_RESTARTS = 10


def say_why_we_end(reason: str) -> None:
    """The launcher's last line: why the desktop ends. nbviz makes it the first line of the
    error (``nbviz._log.EXIT_REASON``, the agreed prefix)."""
    say(f"nbviz-exit: {reason}")


class Launcher:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.socket = args.socket
        self.state = state_dir_for(args.socket)
        self.supervisor = supervise.Supervisor(
            say, gone="the desktop is gone, restart() starts a new one"
        )
        self.display = ""
        self.env = dict(os.environ)
        self.secret = os.environ.get("NBVIZ_SECRET", "")
        self.key = ""
        self.web_server: WebServer | TCPWebServer | None = None
        self.xpra_socket = str(self.state / "xpra.sock")
        self.web_root: Path | None = None
        self.gzip_links: threading.Thread | None = None
        #: Wall-clock time each start-up phase ended (in ``desktop.json`` and the log).
        self.timeline: dict[str, float] = {}

    def mark(self, phase: str) -> None:
        self.timeline[phase] = time.time()

    # ---------------------------------------------------------------- helpers
    def spawn(
        self,
        name: str,
        argv: list[str],
        *,
        essential: bool,
        env: dict[str, str],
        pass_fds: tuple[int, ...] = (),
        **restart: Any,
    ) -> subprocess.Popen[bytes]:
        return self.supervisor.spawn(
            name, argv, essential=essential, env=env, pass_fds=pass_fds, **restart
        )

    def end_child(self, proc: subprocess.Popen[bytes]) -> None:
        """End one child now (it is no longer part of the desktop)."""
        self.supervisor.end(proc)

    def end_children(self) -> None:
        if self.web_server is not None:
            self.web_server.started.set()  # a waiting websocket gets its 502 now
            self.web_server.server_close()
        with contextlib.suppress(OSError):
            os.unlink(self.socket)
        self.supervisor.end_all()
        shutil.rmtree(self.state, ignore_errors=True)

    def read_display(
        self, read_fd: int, server: subprocess.Popen[bytes], *, may_fail: bool = False
    ) -> str | None:
        """The display number the X server writes to its -displayfd pipe; None if it exited
        first and ``may_fail``."""
        deadline = time.monotonic() + X_START_TIMEOUT
        data = b""
        os.set_blocking(read_fd, False)
        while not data.endswith(b"\n"):
            if server.poll() is not None:
                if may_fail:
                    os.close(read_fd)
                    self.supervisor.forget(server)
                    return None
                raise SystemExit(
                    f"nbviz: the X server exited with code {server.returncode} while starting; "
                    "see the lines above"
                )
            if time.monotonic() > deadline:
                raise SystemExit(f"nbviz: the X server did not start in {X_START_TIMEOUT:g} s")
            try:
                chunk = os.read(read_fd, 64)
            except BlockingIOError:
                time.sleep(0.02)
                continue
            if not chunk:
                time.sleep(0.02)
                continue
            data += chunk
        os.close(read_fd)
        return ":" + data.decode().strip().lstrip(":")

    def wait_for_socket(self, path: str) -> None:
        try:
            connect_unix(path, X_START_TIMEOUT).close()
        except OSError:
            raise SystemExit(
                f"nbviz: xpra did not listen on its socket in {X_START_TIMEOUT:g} s"
            ) from None

    def wait_for_x(self) -> None:
        deadline = time.monotonic() + X_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.x_run(["xdpyinfo"], quiet=True) == 0:
                return
            time.sleep(0.05)
        raise SystemExit(f"nbviz: the X server on {self.display} does not answer")

    def wait_for_wm(self) -> None:
        """Wait until the window manager runs, so windows mapped next get managed (a window
        mapped while it starts up may be missed: no decorations, not in the window list)."""
        deadline = time.monotonic() + WM_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.x_run(["wmctrl", "-m"], quiet=True) in (0, 127):
                return
            time.sleep(0.03)
        say(f"the window manager did not start in {WM_START_TIMEOUT:g} s")

    def x_run(self, argv: list[str], quiet: bool = False) -> int:
        if shutil.which(argv[0]) is None:
            say(f"{argv[0]} not found, skipped")
            return 127
        out = subprocess.DEVNULL if quiet else None
        return subprocess.run(argv, env=self.env, stdout=out, stderr=out, check=False).returncode

    # ----------------------------------------------------------------- pieces
    def start_xvfb(self, write_fd: int, number: int | None) -> subprocess.Popen[bytes]:
        """Xpra's X server on display ``:number`` (None: the first free one), started here (not
        by Xpra): it comes up while Xpra's Python still imports (0.2-0.3 s), and the launcher
        owns it like every other piece."""
        xvfb = shutil.which("Xvfb")
        if xvfb is None:
            raise SystemExit("nbviz: Xvfb not found; install it (apt-get install xvfb)")
        argv = xvfb_argv(xvfb, write_fd, number, self.args.size, self.args.gl, self.env)
        proc = self.spawn("Xvfb", argv, essential=True, env=self.env, pass_fds=(write_fd,))
        os.close(write_fd)
        return proc

    def start_xpra(self, display: str) -> subprocess.Popen[bytes]:
        """``xpra start-desktop`` on the launcher's X server (``--use-display``; Xpra waits
        for the display to answer)."""
        xpra = shutil.which("xpra")
        if xpra is None:
            raise SystemExit("nbviz: xpra not found; install it (apt-get install xpra)")
        assert self.web_root is not None
        keyfile = None
        if self.args.encryption:
            keyfile = self.state / "aes.key"
            write_private(keyfile, self.key)
        argv = xpra_argv(
            xpra,
            display,
            self.xpra_socket,
            self.web_root,
            self.state,
            self.args.encryption,
            keyfile,
        )
        # GDK_GL=disable: GTK (in Xpra's server, which draws nothing with OpenGL) otherwise
        # loads Mesa, and with it LLVM, to list GL visuals: 50 MB of its 120 MB. Only Xpra's
        # own process gets it: the launcher starts the desktop's programs without it, and
        # what Xpra's client menu starts gets it emptied (--start-env).
        # XPRA_UINPUT=0: on a display it did not start, Xpra would run xprop to look for
        # input devices it made earlier (it made none). XPRA_VFB_WAIT: how long Xpra waits
        # for the display to answer (3 s by default; more on a loaded machine).
        env = dict(
            self.env,
            GDK_GL="disable",
            XPRA_UINPUT="0",
            XPRA_VFB_WAIT=str(int(X_START_TIMEOUT)),
        )
        argv.append("--start-env=GDK_GL=")
        return self.spawn("xpra", argv, essential=True, env=env)

    def start_xvnc(self, write_fd: int) -> tuple[subprocess.Popen[bytes], str]:
        xvnc = shutil.which("Xvnc")
        if xvnc is None:
            raise SystemExit(
                "nbviz: Xvnc not found; install it (apt-get install tigervnc-standalone-server)"
            )
        password = credential(self.secret, "vnc-password", VNC_PASSWORD_LENGTH)
        passwd = vnc_password_file(self.state, password)
        argv = xvnc_argv(
            xvnc,
            write_fd,
            self.args.display,
            self.args.size,
            self.args.gl,
            self.env,
            rfb=self.state / "vnc.sock",
            passwd=passwd,
        )
        proc = self.spawn("Xvnc", argv, essential=True, env=self.env, pass_fds=(write_fd,))
        os.close(write_fd)
        return proc, password

    def add_cookie(self, display: str) -> None:
        subprocess.run(
            ["xauth", "-q", "-f", self.env["XAUTHORITY"], "add", display, ".", self.cookie],
            check=True,
        )

    def serve(
        self,
        web: Path,
        upstream: str,
        websocket: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """The client's files on the session's socket (or 127.0.0.1:PORT), its websocket
        carried to ``upstream``.

        Serves from the start: a page loaded while the desktop starts gets its files, and its
        websocket waits until the desktop listens (:meth:`ClientHandler.connect_upstream`)."""
        if self.args.port is not None:
            self.serve_tcp(web, upstream, websocket, headers)
            return
        self.web_server = WebServer(self.socket, web, upstream, websocket, headers)
        threading.Thread(target=self.web_server.serve_forever, daemon=True).start()

    def serve_tcp(
        self,
        web: Path,
        upstream: str,
        websocket: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """The client on 127.0.0.1:PORT, admitting only holders of the session secret."""
        secret = os.environ.get("NBVIZ_SECRET", "")
        if not secret:
            raise SystemExit("nbviz: --port needs the session secret in NBVIZ_SECRET")
        try:
            self.web_server = TCPWebServer(
                self.args.port, web, upstream, secret, websocket, headers
            )
        except OSError as exc:
            raise SystemExit(f"nbviz: cannot listen on 127.0.0.1:{self.args.port}: {exc}") from None
        threading.Thread(target=self.web_server.serve_forever, daemon=True).start()

    def start_window_manager(self, argv: list[str]) -> None:
        """Start it and wait until it runs; then the desktop has one workspace: openbox's four
        switch on the mouse wheel over the background, so scrolling the notebook page across
        the frame took the user to an empty one (the windows "gone")."""
        # started again when it exits (killed, or "Exit" in openbox's menu): without it windows
        # lose their frames and the window list goes stale
        self.spawn(
            "window manager",
            argv,
            essential=False,
            env=self.env,
            restart=functools.partial(self.start_window_manager, argv),
            restarts=WM_RESTARTS,
        )
        self.wait_for_wm()
        self.x_run(["wmctrl", "-n", "1"], quiet=True)

    def start_session(self) -> None:
        self.x_run(["xsetroot", "-solid", BACKGROUND])
        if self.args.backend == "xpra":  # Xvfb starts at its full framebuffer size
            set_screen_size(self.env, *self.args.size, windows=False)  # none yet
        wm_argv = shlex.split(self.args.wm)  # with its arguments, as the kernel checked them
        if wm_argv:
            wm = shutil.which(wm_argv[0])
            if wm is None:
                say(f"window manager {wm_argv[0]} not found (apt-get install openbox); none")
            else:
                self.start_window_manager([wm, *wm_argv[1:]])
                self.mark("window_manager")
        for command in self.args.start:
            argv = shlex.split(command)  # quoted arguments, as the kernel checked them
            program = shutil.which(argv[0])
            if program is None:
                say(f"{argv[0]} not found, not started")
                continue
            self.spawn(command, [program, *argv[1:]], essential=False, env=self.env)

    # -------------------------------------------------------------------- run
    def run(self) -> int:
        self.state.mkdir(mode=0o700, exist_ok=True)
        xauthority = self.state / "Xauthority"
        write_private(xauthority, b"")
        self.env["XAUTHORITY"] = str(xauthority)
        self.cookie = secrets.token_hex(16)
        read_fd, write_fd = os.pipe()
        info: dict[str, object] = {}
        if self.args.backend == "xpra":
            if self.args.encryption:
                self.key = credential(self.secret, "xpra-key", XPRA_KEY_LENGTH)
                info.update(encryption=self.args.encryption, key=self.key)
            # Xvfb and Xpra start together: Xpra imports (0.2-0.3 s) while Xvfb starts, then
            # waits for the display. So the number is picked here, not by Xvfb (-displayfd).
            self.add_cookie(":0")  # as for Xvnc below
            number = self.args.display
            if number is None:
                number = free_display()
            self.add_cookie(f":{number}")
            xvfb = self.start_xvfb(write_fd, number)
            self.web_root = xpra_web_root(self.state)
            self.env["XPRA_SYSTEM_CONF_DIRS"] = str(xpra_config(self.state))
            self.env["XPRA_USER_CONF_DIRS"] = str(self.state / "xpra-user")
            xpra = self.start_xpra(f":{number}")
            self.serve(self.web_root, self.xpra_socket, headers=xpra_http_headers())
            # While Xvfb starts (made once per user; then only links).
            self.gzip_links = threading.Thread(
                target=link_gzipped, args=(self.web_root,), daemon=True
            )
            self.gzip_links.start()
            display = self.read_display(read_fd, xvfb, may_fail=self.args.display is None)
            if display is None:
                # Another X server took the number since it was free (or Xvfb failed there
                # for another reason, said above): Xvfb picks one, and Xpra (still importing,
                # or waiting for that display) starts again for it.
                say(f"Xvfb could not start on :{number} (taken meanwhile?); letting it pick")
                self.end_child(xpra)
                read_fd, write_fd = os.pipe()
                xvfb = self.start_xvfb(write_fd, None)
                display = self.read_display(read_fd, xvfb)
                assert display is not None
                self.add_cookie(display)
                self.start_xpra(display)
            self.display = display
            self.mark("x_server")
            self.env["DISPLAY"] = self.display
        else:
            self.add_cookie(":0")
            xvnc, info["password"] = self.start_xvnc(write_fd)
            # noVNC's page, its websocket carried to Xvnc (while Xvnc starts)
            self.serve(novnc_web_root(self.state), str(self.state / "vnc.sock"), websocket_class())
            self.display = self.read_display(read_fd, xvnc) or ""
            self.mark("x_server")
            self.env["DISPLAY"] = self.display
            # The server accepted the cookie under :0 (it loads every entry); clients look it
            # up under the real display number.
            self.add_cookie(self.display)
        self.wait_for_x()
        self.mark("x_answers")
        self.start_session()
        self.mark("session")
        if self.args.backend == "xpra":  # its page and websocket (else a client may be early)
            assert self.gzip_links is not None
            self.gzip_links.join()
            self.wait_for_socket(self.xpra_socket)
            self.mark("xpra_socket")
        info.update(display=self.display, xauthority=str(xauthority), pid=os.getpid())
        info["timeline"] = {"launcher": STARTED, **self.timeline}
        info_path = self.state / INFO_FILE
        write_private(self.state / ".desktop.json", json.dumps(info))
        os.replace(self.state / ".desktop.json", info_path)
        self.mark("served")
        assert self.web_server is not None
        self.web_server.started.set()
        steps = ", ".join(f"{k} {t - STARTED:.2f}" for k, t in self.timeline.items())
        say(f"desktop on display {self.display} ({self.args.backend}); s after start: {steps}")
        return self.watch()

    def watch(self) -> int:
        return int(self.supervisor.watch())


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbviz/desktop/runtime/launcher.py")
    parser.add_argument("--backend", choices=("xpra", "vnc"), default="xpra")
    parser.add_argument("--socket", required=True, help="Unix socket the web client is served on")
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="serve on 127.0.0.1:PORT instead (needs NBVIZ_SECRET)",
    )
    parser.add_argument("--size", type=parse_size, default=(1280, 800))
    parser.add_argument("--display", type=int, default=None, help="X display number (auto)")
    parser.add_argument("--wm", default="openbox", help="window manager ('' for none)")
    parser.add_argument("--start", action="append", default=[], help="program to start")
    parser.add_argument(
        "--encryption", choices=("AES",), default=None, help="xpra: encrypt the websocket"
    )
    parser.add_argument(
        "--no-gl",
        dest="gl",
        action="store_false",
        help="no OpenGL (GLX) on the X server: about 50 MB less",
    )
    args = parser.parse_args(argv)
    if args.display is not None and display_in_use(args.display):
        say_why_we_end(
            f"nbviz: display :{args.display} is in use; pick another or leave display= unset"
        )
        return 2
    launcher = Launcher(args)
    return supervise.run_launcher(
        launcher.run,
        why=say_why_we_end,
        end=launcher.end_children,
        signals=(signal.SIGTERM, signal.SIGHUP),
    )


if __name__ == "__main__":
    sys.exit(main())
