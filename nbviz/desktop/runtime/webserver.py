"""The launcher's web server: the HTML5 client's files and its websocket (standard library,
plus websockify's protocol class for VNC).

Serves on the session's private Unix socket (:class:`WebServer`) or, without nbviz's route, on
127.0.0.1 behind the session secret (:class:`TCPWebServer`); a websocket is carried to Xpra's or
Xvnc's own Unix socket (:class:`ClientHandler`), waiting while the desktop starts.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import runpy
import select
import socket
import socketserver
import sys
import threading
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .xserver import X_START_TIMEOUT

#: TCP mode: the session-secret gate (nbviz's one rule, ``nbviz/_gate.py``, run by path).
GATE = SimpleNamespace(**runpy.run_path(str(Path(__file__).resolve().parents[2] / "_gate.py")))
#: How long a websocket opened while the desktop starts waits for Xpra or Xvnc to listen.
UPSTREAM_WAIT = 2 * X_START_TIMEOUT
#: Seconds between the pings sent on a VNC websocket (so that no proxy finds it idle).
HEARTBEAT = 30.0


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
