"""The backend process of a RemoteDesktop: X server, window manager, web client, in one group.

Run by :class:`nbviz.desktop.RemoteDesktop` as its backend command::

    python -m nbviz.desktop._launch --backend xpra --socket S --size 1280x800 --start xterm

It starts every piece as its own child (so nbviz's process-group kill and orphan watchdog end
all of them), writes ``desktop.json`` (display, Xauthority) into a private state directory next
to the socket once the desktop is usable, then watches: if the X server or the web-facing
process exits, it ends the rest and exits non-zero with a line that says what happened.

- ``xpra``: an Xvfb started here, then ``xpra start-desktop --use-display`` on it (Xvfb and
  the window manager come up while Xpra's Python imports), its websocket on a private Unix socket;
  nbviz's own copy of the Xpra config (no Xsession pop-up); this launcher serves the HTML5
  client's files on ``S`` (threads, keep-alive, gzipped copies; plus a small script,
  :func:`xpra_page_script`) and passes websocket upgrades through to Xpra. With
  ``--encryption AES`` the websocket is AES-encrypted with a per-session key file.
- ``vnc``: TigerVNC's ``Xvnc`` on a private Unix socket with a per-session VNC password, and
  this launcher serving noVNC's files on ``S`` (threads, keep-alive) and carrying noVNC's
  websocket to Xvnc itself (websockify's WebSocket class, no websockify process).

It serves the client from its start: a page loaded meanwhile (nbviz's frame loads it early,
hidden) gets its files, and its websocket waits until Xpra or Xvnc listens. The VNC password
and the AES key are derived from the session secret in ``NBVIZ_SECRET`` (:func:`credential`),
so the kernel knows the page's URL before the desktop is up.

Only the standard library is used here, and websockify for the VNC websocket. Secrets are
passed in files (0600), never on command lines or in the log.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import gzip
import hashlib
import hmac
import http.cookies
import http.server
import importlib.util
import json
import os
import runpy
import secrets
import select
import shlex
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any


def _runtime(name: str) -> ModuleType:
    """nbviz's ``_runtime/<name>.py`` loaded by path: this file runs by path too (nbviz is not
    imported: it would load the widgets), and sys.path stays as it is."""
    path = Path(__file__).resolve().parents[1] / "_runtime" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"nbviz_runtime_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


try:  # imported by the kernel, as nbviz.desktop._launch
    from .._runtime import supervise
except ImportError:  # run by path
    supervise = _runtime("supervise")

#: When this process got going (wall clock, so the kernel and the browser can line it up).
STARTED = time.time()

#: The X framebuffer Xvfb (under Xpra) allocates; the screen can be resized up to it.
MIN_FRAMEBUFFER = (2560, 1600)
NOVNC_DIR = Path("/usr/share/novnc")
XPRA_CONF_DIR = Path("/etc/xpra")
XPRA_WWW_DIR = Path("/usr/share/xpra/www")
#: Pages of Xpra's client that nbviz's web root has its own versions of.
OWN_PAGES = ("index.html", "connect.html")
BACKGROUND = "#3b5b7a"
#: TCP mode: the session-secret gate (nbviz's one rule; run by path, as this whole file is).
GATE = SimpleNamespace(**runpy.run_path(str(Path(__file__).resolve().parents[1] / "_gate.py")))
X_START_TIMEOUT = 20.0
#: VncAuth uses at most 8 characters of a password.
VNC_PASSWORD_LENGTH = 8
#: Characters of Xpra's AES key (URL-safe base64: 192 bits).
XPRA_KEY_LENGTH = 32
#: How long a websocket opened while the desktop starts waits for Xpra or Xvnc to listen.
UPSTREAM_WAIT = 2 * X_START_TIMEOUT
WM_START_TIMEOUT = 10.0
#: How many times the window manager is started again when it exits (killed, or "Exit" in
#: openbox's menu): without it windows lose their frames and the window list goes stale.
WM_RESTARTS = 10
#: Seconds between the pings sent on a VNC websocket (so that no proxy finds it idle).
HEARTBEAT = 30.0
#: Files of Xpra's client the launcher serves gzipped (from copies made once per user).
COMPRESSIBLE = (".js", ".css", ".html", ".json", ".svg", ".map", ".txt")

#: The clients' web additions, real .js and .html files (see each file's first lines).
WEB = Path(__file__).with_name("web")


def asset(name: str) -> str:
    return (WEB / name).read_text(encoding="utf-8")


def xpra_page_script() -> str:
    """nbviz.js, which nbviz's copy of Xpra's ``index.html`` loads first: the focus guard (the
    page takes the keyboard only when asked, in a notebook's frame), then nbviz's additions."""
    return asset("focus-guard.js") + asset("xpra-page.js")


def novnc_page_script() -> str:
    """The ``<script>`` nbviz puts into its copy of noVNC's page: the focus guard, then the
    websocket path under the route (before noVNC's modules read their parameters)."""
    return "<script>\n" + asset("focus-guard.js") + asset("novnc-page.js") + "</script>\n"


XPRA_QUIET = [
    "--daemon=no",
    "--systemd-run=no",
    "--pulseaudio=no",
    "--notifications=no",
    "--mdns=no",
    "--webcam=no",
    "--printing=no",
    "--speaker=disabled",  # "off" still loads and probes the sound subsystem
    "--microphone=disabled",
    "--av-sync=no",
    "--mmap=no",  # the HTML5 client cannot use it
    "--opengl=noprobe",  # the probe (for client info only) took 0.5 s of every start
    # No video encoders (x264, vpx, ffmpeg): 40 MB less and no slower here (see
    # benchmarks/RESULTS.md); jpeg, png, webp and rgb remain.
    "--video-encoders=none",
    "--csc-modules=none",
    "--video-decoders=none",
    "--dbus-launch=",
    "--dbus-proxy=no",
    "--dbus-control=no",
    "--file-transfer=no",
    "--clipboard=no",  # else Xpra owns the X clipboard and stalls readers with no client
    "--open-files=no",
    "--resize-display=no",
]


def say(message: str) -> None:
    print(f"nbviz-desktop: {message}", flush=True)


def say_why_we_end(reason: str) -> None:
    """The launcher's last line: why the desktop ends. nbviz makes it the first line of the
    error (``nbviz._process.EXIT_REASON``, the agreed prefix)."""
    say(f"nbviz-exit: {reason}")


def state_dir_for(socket_path: str) -> Path:
    """The launcher's private directory for a given web socket path (shared with the kernel)."""
    path = Path(socket_path)
    return path.with_name(path.stem + ".d")


def display_owner(number: int) -> int | None:
    """The pid in display ``:number``'s lock file (None: no readable lock)."""
    try:
        return int(Path(f"/tmp/.X{number}-lock").read_text().strip())
    except (OSError, ValueError):
        return None


def display_in_use(number: int) -> bool:
    """True if an X server has display ``:number``: its socket answers, or its lock file
    names a live process (an X server writes the lock first, then listens).

    A socket file nobody listens on is a leftover of an X server that was killed (SIGKILL
    leaves it behind); the next X server on that number replaces it, so it does not hold the
    number: else each such leftover took a number for good (and ``display=`` said "in use").
    """
    path = Path(f"/tmp/.X11-unix/X{number}")
    if path.exists():
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(path))
                return True
            except ConnectionRefusedError:
                pass  # nobody listens: a leftover, unless the lock says otherwise
            except OSError:
                return True  # not ours to use (no permission, not a socket)
    pid = display_owner(number)
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_display(start: int = 0) -> int:
    """The lowest display number from ``start`` no X server has (as Xvfb's own -displayfd
    search does from 0)."""
    number = start
    while display_in_use(number):
        number += 1
    return number


def set_screen_size(env: dict[str, str], width: int, height: int, *, windows: bool = True) -> None:
    """Resize the X screen of ``env["DISPLAY"]`` with RandR (Xvfb and Xvnc both accept it).

    Raises ``RuntimeError`` with xrandr's message when the server refuses. ``windows``: then
    keep the windows on the screen (:func:`keep_windows_on_screen`).
    """

    def xrandr(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["xrandr", *args], env=env, capture_output=True, text=True, check=False, timeout=10
        )

    query = xrandr("-q")
    if query.returncode != 0:
        raise RuntimeError(query.stderr.strip() or "xrandr -q failed")
    lines = query.stdout.splitlines()
    output = next((ln.split()[0] for ln in lines if " connected" in ln), None)
    if output is None:
        raise RuntimeError("the X server has no connected RandR output")
    mode = f"{width}x{height}"
    if not any(ln.split()[:1] == [mode] for ln in lines):
        xrandr("--newmode", mode, "0", str(width), "0", "0", "0", str(height), "0", "0", "0")
        xrandr("--addmode", output, mode)
    result = xrandr("--output", output, "--mode", mode, "--fb", mode)
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip() or f"xrandr could not set {mode}")
    if windows:
        keep_windows_on_screen(env, width, height)


def keep_windows_on_screen(env: dict[str, str], width: int, height: int) -> None:
    """Move the windows a smaller screen left partly outside back into it (openbox keeps them
    where they were: the xterm, centred on the 1280x800 screen a desktop starts with, was cut
    off once the screen took the frame's size)."""

    def run(*argv: str) -> str:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10)
        return done.stdout if done.returncode == 0 else ""

    for line in run("wmctrl", "-l", "-G").splitlines():
        fields = line.split()
        try:
            window = fields[0]
            x, y, w, h = (int(n) for n in fields[2:6])
        except (IndexError, ValueError):  # not a line of the listing nbviz knows
            continue
        # wmctrl's x and y are offset by the frame: right and below the client's own
        if x + w <= width and y + h <= height:
            continue
        info = dict(
            item.strip().split(": ", 1)
            for item in run("xwininfo", "-id", window).splitlines()
            if ": " in item
        )
        extents = run("xprop", "-id", window, "_NET_FRAME_EXTENTS").partition(" = ")[2]
        sides = [int(n) for n in extents.split(",") if n.strip().isdigit()]
        left, right, top, bottom = [*sides, 0, 0, 0, 0][:4]
        try:
            fx = int(info["Absolute upper-left X"]) - left
            fy = int(info["Absolute upper-left Y"]) - top
        except (KeyError, ValueError):
            continue
        nx = max(0, min(fx, width - (w + left + right)))
        ny = max(0, min(fy, height - (h + top + bottom)))
        if (nx, ny) != (fx, fy):
            run("wmctrl", "-i", "-r", window, "-e", f"0,{nx},{ny},-1,-1")


def gl_arguments(gl: bool) -> list[str]:
    """X server arguments for OpenGL (GLX) on the desktop, or none.

    GLX loads Mesa's software renderer and LLVM into the X server: about 50 MB of its RSS
    (Xvfb 69 MB with GLX, 15 MB without). Programs that need OpenGL (ParaView's GUI) fail
    on a display without it ("GLX" missing)."""
    return ["+extension", "GLX"] if gl else ["-extension", "GLX"]


def credential(secret: str, purpose: str, length: int) -> str:
    """The desktop's credential for ``purpose`` ("vnc-password", "xpra-key"): derived from the
    session secret (``NBVIZ_SECRET``, new for each start) when there is one, else random.

    Derived, the kernel knows it as soon as it starts the desktop, so the page that carries it
    (in the URL fragment) can load while the desktop starts; the secret cannot be recovered
    from it. ``length`` URL-safe characters (at most 43).
    """
    if not secret:
        return secrets.token_urlsafe(32)[:length]
    digest = hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:length]


def write_private(path: Path, data: str | bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def xpra_config(state: Path) -> Path:
    """A copy of the system Xpra config without the Xsession start command (it pops up an
    error window) and without the huge default virtual screen."""
    conf = state / "xpra-conf"
    shutil.copytree(XPRA_CONF_DIR, conf, ignore=shutil.ignore_patterns("*.pem"))
    for file in conf.rglob("*.conf"):
        lines = file.read_text().splitlines()
        kept = [
            line
            for line in lines
            if not line.strip().startswith(("start = /etc/X11/Xsession", "xvfb ="))
        ]
        if kept != lines:
            file.write_text("\n".join(kept) + "\n")
    return conf


def connect_unix(path: str, timeout: float, stop: threading.Event | None = None) -> socket.socket:
    """A connection to the Unix socket ``path``, tried every 10 ms until something listens
    there; raises the last ``OSError`` after ``timeout`` seconds, or at once after a failed
    try once ``stop`` is set."""
    deadline = time.monotonic() + timeout
    while True:
        conn = socket.socket(socket.AF_UNIX)
        try:
            conn.connect(path)
            return conn
        except OSError:
            conn.close()
            if (stop is not None and stop.is_set()) or time.monotonic() > deadline:
                raise
        if stop is not None:
            stop.wait(0.01)
        else:
            time.sleep(0.01)


def pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes from ``source`` to ``sink`` until either side ends."""
    try:
        while data := source.recv(1 << 16):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def websocket_class() -> Any:
    """websockify's WebSocket (the protocol alone) agreeing to noVNC's "binary" subprotocol.

    Imported without numpy: websockify would use it only to unmask the browser's few small
    frames (keys, pointer), and it costs this process 20 MB and 0.2 s.
    """
    sys.modules.setdefault("numpy", None)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no 'numpy' module, HyBi protocol will be slower"
        from websockify.websocket import WebSocket

    class BinaryWebSocket(WebSocket):
        def select_subprotocol(self, protocols: list[str]) -> str:
            return next((p for p in protocols if p.strip() == "binary"), "")

    return BinaryWebSocket


def bridge(ws: Any, target: socket.socket) -> None:
    """Carry binary websocket messages between the browser (``ws``, a websockify WebSocket
    after ``accept``) and ``target`` (Xvnc's RFB socket) until either side closes."""
    from websockify.websocket import WebSocketWantReadError, WebSocketWantWriteError

    def send(message: bytes) -> None:
        while True:
            try:
                ws.sendmsg(message)
                return
            except WebSocketWantWriteError:  # sent in part: wait, then send the rest
                select.select([], [ws], [], HEARTBEAT)

    next_ping = time.monotonic() + HEARTBEAT
    while True:
        wait = next_ping - time.monotonic()
        if wait <= 0:
            with contextlib.suppress(WebSocketWantWriteError):  # the rest goes with the next
                ws.ping()
            next_ping = time.monotonic() + HEARTBEAT
            continue
        readable = select.select([ws, target], [], [], wait)[0]
        if target in readable:
            data = target.recv(1 << 16)
            if not data:
                ws.close()
                return
            send(data)
        if ws in readable:
            try:
                message = ws.recvmsg()  # reads the socket once
                while True:
                    if message is None:  # the browser closed
                        return
                    target.sendall(message)
                    if not ws.pending():
                        break
                    message = ws.recvmsg()  # frames already read: no socket read
            except WebSocketWantReadError:  # no whole message yet, or control frames only
                pass


class ClientHandler(http.server.SimpleHTTPRequestHandler):
    """The client's files (keep-alive, from threads, ``file.gz`` when there is one) and its
    websocket.

    websockify serves files too, but it forks a process per connection and closes each one
    after a reply: noVNC's ~70 files then took 1-2 s to load through Jupyter's route. Xpra's
    server closes each connection after a reply too, and gzips every file on every request.
    Websocket upgrades go to the server's ``upstream`` Unix socket: for VNC, this handler
    speaks the websocket protocol and carries the RFB bytes to Xvnc (:func:`bridge`); for
    Xpra (which speaks websocket itself), the upgrade and all that follows pass through.
    """

    protocol_version = "HTTP/1.1"
    server: WebServer

    def admitted(self) -> bool:
        """On a TCP port (no nbviz route) every local user can connect: admit only holders of
        the session secret (nbviz's one rule, ``_gate``); answers the request itself (redirect
        or 403) when it returns False."""
        return bool(
            GATE.admit(
                self, self.server.secret, "this desktop admits only the notebook that started it"
            )
        )

    def do_HEAD(self) -> None:
        if self.admitted():
            super().do_HEAD()

    def send_head(self) -> Any:
        path = self.translate_path(self.path)
        packed = path + ".gz"
        if "gzip" not in self.headers.get("Accept-Encoding", "") or not os.path.isfile(packed):
            return super().send_head()
        f = open(packed, "rb")  # noqa: SIM115 (returned open, as SimpleHTTPRequestHandler does)
        self.send_response(200)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(os.fstat(f.fileno()).st_size))
        self.send_header("Vary", "Accept-Encoding")
        self.end_headers()
        return f

    def end_headers(self) -> None:
        for name, value in self.server.extra_headers.items():
            self.send_header(name, value)
        super().end_headers()

    def do_GET(self) -> None:
        if not self.admitted():
            return
        if self.headers.get("Upgrade", "").lower() != "websocket":
            super().do_GET()
            return
        upstream = self.connect_upstream()
        if upstream is None:
            return
        self.close_connection = True
        if self.server.websocket is not None:
            ws = self.server.websocket()
            try:
                ws.accept(self.connection, self.headers)
            except Exception as exc:  # websockify raises plain Exceptions for bad handshakes
                upstream.close()
                self.send_error(400, str(exc))
                return
            try:
                bridge(ws, upstream)
            finally:
                upstream.close()
            return
        head = [self.requestline, *(f"{k}: {v}" for k, v in self.headers.items()), "", ""]
        upstream.sendall("\r\n".join(head).encode("latin-1"))
        back = threading.Thread(target=pump, args=(upstream, self.connection), daemon=True)
        back.start()
        pump(self.connection, upstream)
        back.join()
        upstream.close()

    def connect_upstream(self) -> socket.socket | None:
        """A connection to the desktop's socket; None after answering 502 itself.

        A page may be loaded while the desktop starts (nbviz loads it early, hidden): its
        websocket then waits here until Xpra or Xvnc listens, for as long as the launcher may
        take to start them (:data:`UPSTREAM_WAIT`).
        """
        try:
            return connect_unix(self.server.upstream, UPSTREAM_WAIT, self.server.started)
        except OSError as exc:
            self.send_error(502, f"the desktop does not answer: {exc.strerror}")
            return None

    def log_message(self, format: str, *args: object) -> None:
        pass  # the route logs the requests; a Unix socket has no client address to print


class _ClientServing:
    """What both web servers share: the client's files, the upstream socket its websocket
    goes to, extra headers, the secret (TCP only), and quiet client disconnects."""

    daemon_threads = True
    secret = ""

    def _serving(
        self, web: Path, upstream: str, websocket: Any, headers: dict[str, str] | None
    ) -> Any:
        """Keep the settings; the request handler for ``web``."""
        self.upstream = upstream
        self.websocket = websocket
        #: Set once the desktop is up (or its start failed): websockets stop waiting for it.
        self.started = threading.Event()
        self.extra_headers = headers or {}
        return functools.partial(ClientHandler, directory=str(web))

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client that went away: not news
            super().handle_error(request, client_address)  # type: ignore[misc]


class WebServer(_ClientServing, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """The web client's files and its websocket, on the session's private Unix socket."""

    def __init__(
        self,
        path: str,
        web: Path,
        upstream: str,
        websocket: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        handler = self._serving(web, upstream, websocket, headers)
        super().__init__(path, handler, bind_and_activate=False)
        self.server_bind()
        os.chmod(path, 0o600)  # before it listens
        self.server_activate()


class TCPWebServer(_ClientServing, socketserver.ThreadingMixIn, socketserver.TCPServer):
    """The same on 127.0.0.1:port (when Jupyter has no nbviz route), behind the session secret."""

    allow_reuse_address = True

    def __init__(
        self,
        port: int,
        web: Path,
        upstream: str,
        secret: str,
        websocket: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        handler = self._serving(web, upstream, websocket, headers)
        self.secret = secret
        super().__init__(("127.0.0.1", port), handler)


def xpra_web_root(state: Path) -> Path:
    """Xpra's HTML5 client plus nbviz's page script, loaded first by ``index.html``.

    Every file is a symlink to Xpra's own except ``index.html``, a copy of Xpra's page with one
    ``<script>`` tag added (see :func:`xpra_page_script`), and ``connect.html``
    (``web/xpra-connect.html``). If the page has no ``<head>`` (an Xpra version nbviz
    does not know), Xpra's own directory is served unchanged. :func:`link_gzipped` adds
    gzipped copies next to the symlinks later.
    """
    page = (XPRA_WWW_DIR / "index.html").read_text()
    if "<head>" not in page:
        say(f"{XPRA_WWW_DIR / 'index.html'} has no <head>: serving Xpra's page unchanged")
        return XPRA_WWW_DIR
    web = state / "www"
    web.mkdir(mode=0o700)
    for folder, dirs, files in os.walk(XPRA_WWW_DIR, followlinks=True):
        here = web / Path(folder).relative_to(XPRA_WWW_DIR)
        for name in dirs:
            (here / name).mkdir()
        for name in files:
            if not (here == web and name.startswith(OWN_PAGES)):  # also not index.html.gz
                (here / name).symlink_to(Path(folder, name))
    (web / "nbviz.js").write_text(xpra_page_script())
    (web / "connect.html").write_text(asset("xpra-connect.html"))
    (web / "index.html").write_text(
        page.replace("<head>", '<head>\n<script src="nbviz.js"></script>', 1)
    )
    return web


def xpra_http_headers() -> dict[str, str]:
    """The headers Xpra sends with its files (``name=value`` lines in its http-headers
    directory: no caching)."""
    headers: dict[str, str] = {}
    folder = XPRA_WWW_DIR.parent / "http-headers"
    for file in sorted(folder.glob("*")) if folder.is_dir() else []:
        for line in file.read_text(errors="replace").splitlines():
            name, sep, value = line.strip().partition("=")
            if sep and not name.startswith("#"):
                headers[name.strip()] = value.strip()
    return headers


def gzipped_client() -> Path | None:
    """Gzipped copies of Xpra's client files (4 MB of JavaScript, 1.4 MB gzipped), made once
    per user and Xpra version in the user's cache directory.

    :class:`ClientHandler` sends ``file.gz`` to browsers that accept gzip. (Xpra's own server
    gzipped every file at level 9 on every request: about 0.2 s of its CPU per page load.)
    None when the cache cannot be written: the files then go uncompressed.
    """
    files = sorted(
        path
        for path in XPRA_WWW_DIR.rglob("*")
        if path.suffix in COMPRESSIBLE and path.is_file() and path.name not in OWN_PAGES
    )
    stamp = hashlib.sha256()
    for path in files:
        info = path.stat()
        stamp.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nbviz"
    done = cache / f"xpra-www-gz-{stamp.hexdigest()[:16]}"
    if done.is_dir():
        return done
    try:
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".xpra-www-gz-", dir=cache))
        for path in files:
            target = work / f"{path.relative_to(XPRA_WWW_DIR)}.gz"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(gzip.compress(path.read_bytes(), 9, mtime=0))
        try:
            os.rename(work, done)
        except OSError:  # another desktop made it meanwhile
            shutil.rmtree(work, ignore_errors=True)
    except OSError as exc:
        say(f"no gzipped copy of Xpra's client ({exc}); its files go uncompressed")
        return None
    return done


def link_gzipped(web: Path) -> None:
    """Link the gzipped copies of :func:`gzipped_client` into the web root ``web``, next to
    the files that are Xpra's own (symlinks; not nbviz's pages)."""
    gzipped = gzipped_client()
    if gzipped is None or web == XPRA_WWW_DIR:
        return
    for path in gzipped.rglob("*.gz"):
        link = web / path.relative_to(gzipped)
        if link.with_suffix("").is_symlink() and not link.exists():
            link.symlink_to(path)


def vnc_password_file(state: Path, password: str) -> Path:
    """TigerVNC's obfuscated password file, written by ``vncpasswd -f`` from stdin."""
    vncpasswd = shutil.which("vncpasswd")
    if vncpasswd is None:
        raise SystemExit("nbviz: vncpasswd not found; install it (apt-get install tigervnc-tools)")
    out = subprocess.run(
        [vncpasswd, "-f"], input=password.encode(), capture_output=True, check=True
    ).stdout
    path = state / "passwd"
    write_private(path, out)
    return path


def novnc_web_root(state: Path) -> Path:
    """noVNC's files plus nbviz's start page ``nbviz.html``: noVNC's ``vnc.html`` with
    :func:`novnc_page_script` (or, for a ``vnc.html`` nbviz does not know, a page that
    forwards to it)."""
    web = state / "web"
    web.mkdir(mode=0o700)
    for entry in NOVNC_DIR.iterdir():
        (web / entry.name).symlink_to(entry)
    page = (NOVNC_DIR / "vnc.html").read_text() if (NOVNC_DIR / "vnc.html").is_file() else ""
    if "<head>" in page:
        (web / "nbviz.html").write_text(page.replace("<head>", "<head>\n" + novnc_page_script(), 1))
    else:
        (web / "nbviz.html").write_text(asset("novnc-start.html"))
    return web


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
        width, height = self.args.size
        fb_w, fb_h = max(width, MIN_FRAMEBUFFER[0]), max(height, MIN_FRAMEBUFFER[1])
        where = [f":{number}"] if number is not None else []
        argv = [
            xvfb,
            *where,
            "-displayfd",
            str(write_fd),
            "+extension",
            "Composite",
            "+extension",
            "RANDR",
            *gl_arguments(self.args.gl),
            "-screen",
            "0",
            f"{fb_w}x{fb_h}x24+32",
            "-dpi",
            "96",
            "-nolisten",
            "tcp",
            "-noreset",
            "-auth",
            self.env["XAUTHORITY"],
        ]
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
        argv = [
            xpra,
            "start-desktop",
            display,
            "--use-display=yes",
            f"--bind={self.xpra_socket}",
            f"--html={self.web_root}",
            "--sharing=yes",  # a page reloaded or shown in a second cell attaches alongside
            f"--socket-dirs={self.state}",
            *XPRA_QUIET,
        ]
        if self.args.encryption:
            # Xpra 3.1 applies the "tcp" encryption options to every websocket, also those on
            # the Unix socket; a client without the key is refused ("missing encryption tokens").
            keyfile = self.state / "aes.key"
            write_private(keyfile, self.key)
            argv += [
                f"--tcp-encryption={self.args.encryption}",
                f"--tcp-encryption-keyfile={keyfile}",
            ]
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
        width, height = self.args.size
        password = credential(self.secret, "vnc-password", VNC_PASSWORD_LENGTH)
        passwd = vnc_password_file(self.state, password)
        rfb = self.state / "vnc.sock"
        where = [f":{self.args.display}"] if self.args.display is not None else []
        argv = [
            xvnc,
            *where,
            "-displayfd",
            str(write_fd),
            "-geometry",
            f"{width}x{height}",
            "-depth",
            "24",
            "-rfbport",
            "-1",
            "-rfbunixpath",
            str(rfb),
            "-rfbunixmode",
            "0600",
            "-SecurityTypes",
            "VncAuth",
            "-PasswordFile",
            str(passwd),
            "-nolisten",
            "tcp",
            "-noreset",  # a reset when the last client leaves races the next client's auth
            "-auth",
            self.env["XAUTHORITY"],
            "-desktop",
            "nbviz",
            *gl_arguments(self.args.gl),
        ]
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
        info_path = self.state / "desktop.json"
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
    parser = argparse.ArgumentParser(prog="python -m nbviz.desktop._launch")
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

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    try:
        return launcher.run()
    except SystemExit as exc:
        if isinstance(exc.code, str):
            say_why_we_end(exc.code)
            return 1
        return int(exc.code or 0)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        launcher.end_children()


if __name__ == "__main__":
    sys.exit(main())
