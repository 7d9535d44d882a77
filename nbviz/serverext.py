"""Jupyter server extension: ``{base_url}nbviz/<session-id>/`` routes to a kernel's backend.

Built on jupyter-server-proxy's ``ProxyHandler`` (authentication, hop-by-hop headers, websocket
relay, Location rewriting); what it adds:

- the backend is looked up per request in the session registry (``_registry``): a Unix socket
  (0600, in a 0700 directory) or a 127.0.0.1 port that a kernel of this user registered, or a
  port on another host when that host is in ``c.NbvizRoute.host_allowlist`` (403 otherwise);
- HTTP goes to the backend over pooled keep-alive connections (aiohttp, a dependency of
  jupyter-server-proxy), and responses are streamed with back-pressure (no whole-body
  buffering, no 100 MiB cap); so are request bodies (started as soon as the head is in, no
  ``max_body_size``); small frames are not delayed (TCP_NODELAY on both legs);
- once nothing is left to parse, bytes are pumped socket to socket (``_pump``): bodies of
  1 MiB and more after their head, websockets after the backend has answered the handshake
  (no message cap, the backend's own subprotocol and pings); tornado's relay remains for HTTPS
  to the browser and for refused sessions;
- Jupyter's credentials never reach the backend: its login and XSRF cookies, the
  ``Authorization`` and ``X-XSRFToken`` headers and a ``token`` query parameter are removed
  (unless it carries the session's own secret, for a backend that asked for it as ``token``).

Enabled automatically by ``etc/jupyter/jupyter_server_config.d/nbviz.json``.
"""

from __future__ import annotations

import asyncio
import collections.abc
import os
import socket
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from jupyter_server_proxy.handlers import AddSlashHandler, ProxyHandler
from jupyter_server_proxy.unixsock import UnixResolver
from jupyter_server_proxy.websocket import PingableWSClientConnection
from tornado import httpclient, httputil, ioloop, iostream, web
from tornado.escape import xhtml_escape
from traitlets import Callable, List, Unicode, Union
from traitlets.config import Configurable

from . import _pump, _registry, _remote
from ._version import __version__

#: Largest response body and websocket message relayed (effectively unlimited).
MAX_BODY = 1 << 50
MAX_WS_MESSAGE = 1 << 40
#: Cookies of Jupyter and JupyterHub (exact names or prefixes), never forwarded.
JUPYTER_COOKIES = ("_xsrf", "username-", "jupyterhub-")
#: Request headers never forwarded (credentials of the Jupyter server).
JUPYTER_HEADERS = ("Authorization", "X-XSRFToken", "X-Xsrftoken")
#: Query parameters never forwarded.
JUPYTER_QUERY = ("token",)
#: Response headers tornado sets itself.
HOP_BY_HOP = (
    "Connection",
    "Keep-Alive",
    "Transfer-Encoding",
    "Proxy-Connection",
    "Trailer",
    "Upgrade",
)
#: Request headers that apply to one hop only (as jupyter-server-proxy drops them).
HOP_BY_HOP_REQUEST = (
    *HOP_BY_HOP,
    "TE",
    "Proxy-Authorization",
    "Proxy-Authenticate",
)
#: Seconds to reach a backend (HTTP and websocket); a response itself may take any time.
CONNECT_SECONDS = 30.0
#: Methods retried once when a kept-alive backend connection turns out to be closed.
IDEMPOTENT = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")
#: Seconds an idle backend connection is kept (below gunicorn's 2 s and most servers' limits,
#: so the backend rarely closes one as it is reused).
KEEPALIVE_SECONDS = 1.0
#: Seconds a private network's broker may take to hand out a socket (it answers at once; this
#: bounds a hung one, as the call blocks the server's event loop).
BROKER_SECONDS = 1.0
#: Bytes of a body relayed before waiting for the browser to take them (back-pressure).
FLUSH_BYTES = 1 << 20
#: Bodies of at least this length (given by Content-Length) are pumped from the backend's socket
#: to the browser's (``_pump``); smaller ones and chunked ones go through tornado and aiohttp.
PUMP_BYTES = 1 << 20
#: Largest response head a backend may send to a websocket handshake.
MAX_HEAD = 1 << 16
#: Pieces of a request body (tornado reads 64 KiB at a time) held while the backend is slower.
UPLOAD_PIECES = 8

SWEEP_SECONDS = 60


def strip_jupyter_cookies(header: str, login_cookie: str = "") -> str:
    """The ``Cookie`` header without Jupyter's and JupyterHub's cookies."""
    kept = []
    for part in header.split(";"):
        name = part.split("=", 1)[0].strip()
        if not name:
            continue
        if name == login_cookie or name.startswith(JUPYTER_COOKIES):
            continue
        kept.append(part.strip())
    return "; ".join(kept)


def strip_query(query: str, keep: tuple[str, str] | None = None) -> str:
    """``query`` without Jupyter's ``token``, except the pair ``keep`` (the session's secret,
    when the backend asked for it under that name)."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, v) for k, v in pairs if k not in JUPYTER_QUERY or (k, v) == keep])


class NbvizRoute(Configurable):
    """Configuration of nbviz's route (``c.NbvizRoute.*`` in ``jupyter_server_config.py``)."""

    host_allowlist = Union(
        [List(Unicode()), Callable()],
        default_value=[],
        help="""Hosts other than this machine that nbviz's route may proxy to: backends started
        with ``WebApp(..., host=...)`` on another node. A list of shell-style patterns
        (``["node*.cluster", "10.200.0.*"]``), or a callable ``f(handler, host) -> bool`` (the
        same shape as ``c.ServerProxy.host_allowlist``). Loopback is always allowed; the
        default (empty) allows nothing else. A session whose host is not allowed gets 403.""",
    ).tag(config=True)

    def describe_allowlist(self) -> list[str] | str:
        """For the server marker and ``nbviz doctor``: the patterns, or "callable"."""
        allowlist = self.host_allowlist
        return "callable" if callable(allowlist) else list(allowlist)


class _Upload:
    """A request body on its way to the backend while the browser is still sending it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=UPLOAD_PIECES)
        self.closed = False

    async def pieces(self) -> Any:
        """The body for aiohttp, piece by piece as tornado receives it."""
        while (piece := await self.queue.get()) is not None:
            yield piece

    async def put(self, piece: bytes | None) -> None:
        if not self.closed:
            await self.queue.put(piece)

    def close(self) -> None:
        """The relay is over: later pieces are dropped, and a waiting put is released."""
        self.closed = True
        while not self.queue.empty():
            self.queue.get_nowait()


@web.stream_request_body
class RouteHandler(ProxyHandler):
    """``{base}nbviz/<session>/<path>``: HTTP and websockets to one registered backend."""

    session_id = ""
    entry: _registry.Entry | None = None
    #: Set when the request has a body: the relay starts as soon as the head is in.
    _upload: _Upload | None = None
    _relay_task: asyncio.Future[None] | None = None

    async def prepare(self, *args: Any, **kwargs: Any) -> None:
        await super().prepare(*args, **kwargs)  # authentication
        headers = self.request.headers
        chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        if self._finished or not (chunked or int(headers.get("Content-Length") or 0) > 0):
            return
        # Streamed to the backend as it arrives: no whole-body buffering, and no cap but the
        # backend's own (Jupyter's max_body_size holds bodies in memory; this one is not).
        self.request.connection.set_max_body_size(MAX_BODY)
        self._upload = _Upload()
        self._relay_task = asyncio.ensure_future(self._relay(*self.path_args))
        # Its error is raised by the method; if the browser leaves first, nobody awaits it.
        self._relay_task.add_done_callback(lambda task: task.cancelled() or task.exception())

    async def data_received(self, chunk: bytes) -> None:
        if self._upload is not None:
            await self._upload.put(chunk)

    def on_connection_close(self) -> None:
        # The browser went away mid-upload: tornado never calls the method, so end the relay
        # here (else it would wait for the rest of the body, holding the backend's request).
        if self._relay_task is not None and not self._relay_task.done():
            self._relay_task.cancel()
        super().on_connection_close()

    # ------------------------------------------------------------- lookup
    def _lookup(self, session_id: str) -> _registry.Entry:
        entry = _registry.read_entry(session_id)
        if entry is None:
            raise web.HTTPError(404, f"nbviz: no session {session_id} (stopped, or never started)")
        self.session_id = session_id
        self.entry = entry
        self.unix_socket = entry.unix_socket
        #: A private network's socket broker: TCP sockets made inside it (see netns_socket).
        self.broker = entry.broker
        self.absolute_url = entry.absolute
        return entry

    def _target(self, session_id: str) -> tuple[str, int]:
        entry = self._lookup(session_id)
        if entry.host is not None:
            return self._remote_target(entry)
        # jupyter-server-proxy builds "http://host:port/path"; over a Unix socket the connector
        # ignores host and port. A TCP backend listens on 127.0.0.1: no name lookup per request.
        # (A backend in a private network namespace: 127.0.0.1 there, with the broker's sockets.)
        if entry.broker and entry.port:
            return "127.0.0.1", int(entry.port)
        if entry.unix_socket:
            return "localhost", 80
        return "127.0.0.1", entry.port or 80

    def _check_host_allowlist(self, host: str) -> bool:
        """jupyter-server-proxy's check (it asks before every proxied request): ours."""
        config: NbvizRoute = self.settings.get("nbviz_route") or NbvizRoute()
        return _remote.host_allowed(host, config.host_allowlist, self)

    def _remote_target(self, entry: _registry.Entry) -> tuple[str, int]:
        """A backend on another host: only when the server's allow-list has that host."""
        host = str(entry.host)
        if not self._check_host_allowlist(host):
            raise web.HTTPError(
                403,
                f"nbviz: session {entry.session_id} runs on host {host}, which this Jupyter "
                f"server does not proxy to; add it to c.NbvizRoute.host_allowlist in "
                f"jupyter_server_config.py (e.g. {host!r} or a pattern) and restart Jupyter",
            )
        if not entry.port:
            raise web.HTTPError(502, f"nbviz: session {entry.session_id} has no port")
        return host, int(entry.port)

    def _get_context_path(self, host: str, port: int) -> str:
        return str(url_path_join(self.base_url, "nbviz", self.session_id))

    # -------------------------------------------------- what reaches the backend
    def proxy_request_headers(self) -> httputil.HTTPHeaders:
        headers = super().proxy_request_headers()
        for name in JUPYTER_HEADERS:
            headers.pop(name, None)
        cookie = headers.pop("Cookie", None)
        if cookie:
            kept = strip_jupyter_cookies(cookie, self.cookie_name)
            if kept:
                headers["Cookie"] = kept
        return headers

    def get_client_uri(self, protocol: str, host: str, port: int, proxied_path: str) -> str:
        uri = str(super().get_client_uri(protocol, host, port, proxied_path))
        if self.request.query:
            base = uri.split("?", 1)[0]
            entry = self.entry
            keep = (
                (entry.secret_param, entry.secret)
                if entry is not None and entry.secret_param and entry.secret
                else None
            )
            query = strip_query(self.request.query, keep)
            uri = f"{base}?{query}" if query else base
        return uri

    # ------------------------------------------------------------ HTTP methods
    async def http_get(self, session_id: str, proxied_path: str) -> None:
        await self._respond(session_id, proxied_path)

    async def post(self, session_id: str, proxied_path: str) -> None:
        await self._respond(session_id, proxied_path)

    async def put(self, session_id: str, proxied_path: str) -> None:
        await self._respond(session_id, proxied_path)

    async def delete(self, session_id: str, proxied_path: str) -> None:
        await self._respond(session_id, proxied_path)

    async def head(self, session_id: str, proxied_path: str) -> None:
        await self._respond(session_id, proxied_path)

    async def patch(self, session_id: str, proxied_path: str) -> None:
        await self._respond(session_id, proxied_path)

    async def options(self, session_id: str, proxied_path: str) -> None:
        await self._respond(session_id, proxied_path)

    async def _respond(self, session_id: str, proxied_path: str) -> None:
        """tornado calls the method once the whole body is in: with a body, the relay has
        been running since prepare(); end its body and wait for it."""
        if self._upload is None or self._relay_task is None:
            await self._relay(session_id, proxied_path)
            return
        await self._upload.put(None)
        await self._relay_task

    async def _relay(self, session_id: str, proxied_path: str) -> None:
        try:
            await self._relay_once(session_id, proxied_path)
        finally:
            if self._upload is not None:
                self._upload.close()

    async def _relay_once(self, session_id: str, proxied_path: str) -> None:
        host, port = self._target(session_id)
        # What jupyter-server-proxy's proxy() does before its own fetch: drop hop-by-hop
        # request headers, record activity. Its request builder makes the backend URL and the
        # X-Forwarded-* headers; the fetch itself goes through a pooled keep-alive client
        # (jupyter-server-proxy opens a new connection per request and caps bodies).
        for name in HOP_BY_HOP_REQUEST:
            self.request.headers.pop(name, None)
        self._record_activity()
        body = b"" if self._upload is not None or self.request.method in ("POST", "PUT") else None
        request = self._build_proxy_request(host, port, proxied_path, body)
        data = self._upload.pieces() if self._upload is not None else None
        await self._fetch_streaming(request, host, port, proxied_path, data)

    async def _fetch_streaming(
        self,
        request: httpclient.HTTPRequest,
        host: str,
        port: int,
        proxied_path: str,
        data: Any = None,
    ) -> None:
        """Send ``request`` (its body, or ``data``: pieces streamed as they arrive) and relay
        the response."""
        assert self.entry is not None
        # Small pieces of a streamed reply must not wait for the browser's delayed ACK
        # (tornado turns Nagle off only when the response finishes).
        stream = getattr(self.request.connection, "stream", None)
        if stream is not None:
            stream.set_nodelay(True)
        sent = False
        retry = request.method in IDEMPOTENT and data is None  # a streamed body is gone
        while True:
            try:
                async with _backend_session(self.entry).request(
                    request.method,
                    request.url,
                    headers=list(request.headers.get_all()),
                    data=request.body if data is None else data,
                    allow_redirects=False,
                    skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
                    timeout=aiohttp.ClientTimeout(
                        total=None, connect=CONNECT_SECONDS, sock_read=None
                    ),
                ) as response:
                    self._send_headers(response, host, port, proxied_path)
                    sent = True
                    length = response.content_length
                    if (
                        length is not None
                        and length >= PUMP_BYTES
                        and request.method != "HEAD"
                        # a 304's Content-Length is that of the page, which it does not send
                        and response.status not in (204, 304)
                        and response.status >= 200
                        # None once aiohttp holds the whole body (it then lets go of the socket)
                        and response.connection is not None
                        and response.connection.transport is not None
                        and self._can_pump()
                    ):
                        await self._pump_body(response, length)
                        break
                    unflushed = 0
                    async for chunk in response.content.iter_any():
                        # Send each piece at once (small frames must not wait), but wait for
                        # the browser to take them only every FLUSH_BYTES (back-pressure). The
                        # websocket mixin wraps self.flush and drops its future: call the
                        # plain handler's.
                        self.write(chunk)
                        flushed = web.RequestHandler.flush(self)
                        unflushed += len(chunk)
                        if unflushed >= FLUSH_BYTES:
                            await flushed
                            unflushed = 0
                break
            except (aiohttp.ClientError, OSError) as exc:
                if isinstance(exc, aiohttp.ServerDisconnectedError) and retry and not sent:
                    # A kept-alive connection the backend closed just as we reused it: once
                    # more on a fresh one (as browsers do).
                    retry = False
                    continue
                self._record_activity()
                if sent:  # the backend went away mid-body: the browser sees a cut-off response
                    raise web.HTTPError(502) from None
                raise web.HTTPError(
                    502, f"nbviz: the backend of session {self.session_id} does not answer ({exc})"
                ) from None
        self._record_activity()

    def _client_stream(self) -> iostream.IOStream | None:
        """The browser's connection, when bytes can be pumped into it (plain TCP, not TLS)."""
        stream = getattr(self.request.connection, "stream", None)
        if not isinstance(stream, iostream.IOStream) or isinstance(stream, iostream.SSLIOStream):
            return None
        return stream

    def _can_pump(self) -> bool:
        # tornado counts the body bytes written through it against Content-Length; the pumped
        # ones are accounted for by hand (see _pump_body).
        return self._client_stream() is not None and hasattr(
            self.request.connection, "_expected_content_remaining"
        )

    async def _pump_body(self, response: aiohttp.ClientResponse, length: int) -> None:
        """Send a body of known length from the backend's socket straight to the browser's.

        The head goes out through tornado. aiohttp stops reading the backend's socket; what it
        had already read is written through tornado, the rest is pumped (``_pump.copy``). The
        backend connection is then closed (aiohttp's parser never saw the rest of the body);
        the browser's stays alive for its next request.
        """
        stream = self._client_stream()
        assert stream is not None and response.connection is not None
        transport = response.connection.transport
        assert transport is not None  # checked by the caller, with no await since
        # In this order and with no await between: reading may resume aiohttp's flow-controlled
        # transport; after the pause, nothing more is read from the backend's socket.
        buffered = response.content.read_nowait()
        transport.pause_reading()
        src = dst = -1
        try:
            self.write(buffered)
            await web.RequestHandler.flush(self)  # the head and that, through tornado
            remaining = length - len(buffered)
            src = os.dup(transport.get_extra_info("socket").fileno())
            dst = os.dup(stream.socket.fileno())
            moved = await _pump.copy(
                src, dst, count=remaining, on_progress=self._activity_every_second()
            )
            if moved < remaining:
                self.log.warning("nbviz: session %s ended mid-body", self.session_id)
                self.detach().close()  # the browser sees a cut-off body, as before
            else:
                self.request.connection._expected_content_remaining -= moved
        except OSError as exc:  # the browser went away, or the backend reset
            self.log.info("nbviz: body of session %s cut off: %s", self.session_id, exc)
            self.detach().close()
        finally:
            for fd in (src, dst):
                if fd >= 0:
                    os.close(fd)
            response.close()

    def _activity_every_second(self) -> collections.abc.Callable[[int], None]:
        """A progress callback that records activity (for idle culling) at most once a second."""
        last = time.monotonic()

        def progress(_moved: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= 1.0:
                last = now
                self._record_activity()

        return progress

    def _send_headers(
        self, response: aiohttp.ClientResponse, host: str, port: int, proxied_path: str
    ) -> None:
        self.set_status(response.status, response.reason)
        self._headers = httputil.HTTPHeaders()
        for raw_name, raw_value in response.raw_headers:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            if name.title() in HOP_BY_HOP:
                continue
            if (
                name.lower() == "location"
                and not self.absolute_url
                and response.status in (301, 302, 303, 307, 308)
            ):
                value = self._location(value, host, port, proxied_path)
            self.add_header(name, value)

    def _location(self, location: str, host: str, port: int, proxied_path: str) -> str:
        """A redirect's target under the route: a root-relative path gets the route's prefix
        (jupyter-server-proxy's rule), unless it already carries it (an app told its prefix,
        e.g. ``uvicorn --root-path {prefix}``, redirects to ``{prefix}other``)."""
        prefix = self._get_context_path(host, port).rstrip("/") + "/"
        path = urlsplit(location).path
        if location.startswith("/") and (path + "/").startswith(prefix):
            return location
        return str(self._rewrite_location_header(location, host, port, proxied_path))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """A short page saying what went wrong (it shows inside the notebook's frame)."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else ""
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            f"<!doctype html><title>{status_code}</title>"
            f"<body style='font-family:sans-serif'><h3>{status_code} {self._reason}</h3>"
            f"<p>{xhtml_escape(message or 'nbviz: request failed')}</p></body>"
        )

    # ---------------------------------------------------------------- websockets
    async def get(self, *args: Any, **kwargs: Any) -> None:
        if self.request.headers.get("Upgrade", "").lower() == "websocket" and (
            await self._tunnel_websocket(*args)
        ):
            return
        await super().get(*args, **kwargs)

    async def _tunnel_websocket(self, session_id: str, proxied_path: str) -> bool:
        """A websocket as a byte tunnel: the backend answers the browser's handshake itself,
        then the two connections are pumped into each other (``_pump.tunnel``), as nginx and
        JupyterHub's proxy do. Frames pass unparsed (no size cap, pings end to end).

        Returns False, having sent nothing, when tornado's relay (``open`` below) should take
        the request instead: TLS to the browser, a bad handshake or origin (tornado
        refuses it), an unknown session or host (closed with a code saying why), a backend that
        cannot be reached.
        """
        stream = self._client_stream()
        headers = self.request.headers
        connection = {t.strip().lower() for t in headers.get("Connection", "").split(",")}
        origin = headers.get("Origin") or headers.get("Sec-Websocket-Origin")
        if (
            stream is None
            or "upgrade" not in connection
            or (origin is not None and not self.check_origin(origin))
        ):
            return False
        try:
            host, port = self._target(session_id)
        except web.HTTPError:
            return False
        backend = await self._connect(host, port)
        if backend is None:
            return False
        try:
            head, rest = await asyncio.wait_for(
                self._backend_handshake(backend, host, port, proxied_path), CONNECT_SECONDS
            )
        except (OSError, ValueError, asyncio.TimeoutError) as exc:
            backend.close()
            raise web.HTTPError(
                502, f"nbviz: the backend of session {session_id} failed the websocket ({exc})"
            ) from None
        status = head.split(b"\r\n", 1)[0].split(b" ", 2)
        if status[1:2] != [b"101"]:
            backend.close()
            self._relay_refusal(head, rest)
            return True
        self._record_activity()
        client_stream = self.detach()
        pending = bytes(getattr(client_stream, "_read_buffer", b""))  # sent after its request
        client = client_stream.socket.dup()
        client_stream.close()
        if client.family in (socket.AF_INET, socket.AF_INET6):
            # small frames must not wait for the browser's delayed ACK
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_sendall(client, head + rest)
            if pending:
                await loop.sock_sendall(backend, pending)
            await _pump.tunnel(client, backend, self._activity_every_second())
        except OSError:
            pass
        finally:
            client.close()
            backend.close()
            self._record_activity()
        return True

    async def _connect(self, host: str, port: int) -> socket.socket | None:
        """A non-blocking socket connected to the backend, or None."""
        loop = asyncio.get_running_loop()
        try:
            if self.broker:
                try:
                    sock = netns_socket(self.broker, socket.AF_INET)
                except OSError as exc:  # the relay (a hop more) still works
                    self.log.debug("nbviz: session %s's broker: %s", self.session_id, exc)
                else:
                    sock.setblocking(False)
                    try:
                        await asyncio.wait_for(
                            loop.sock_connect(sock, ("127.0.0.1", port)), CONNECT_SECONDS
                        )
                    except BaseException:
                        sock.close()
                        raise
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    return sock
            if self.unix_socket:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    await asyncio.wait_for(
                        loop.sock_connect(sock, self.unix_socket), CONNECT_SECONDS
                    )
                except BaseException:
                    sock.close()
                    raise
                return sock
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            for family, kind, proto, _, address in infos:
                sock = socket.socket(family, kind, proto)
                sock.setblocking(False)
                try:
                    await asyncio.wait_for(loop.sock_connect(sock, address), CONNECT_SECONDS)
                except (OSError, asyncio.TimeoutError):
                    sock.close()
                    continue
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
        except (OSError, asyncio.TimeoutError) as exc:
            self.log.debug("nbviz: cannot reach session %s: %s", self.session_id, exc)
        return None

    async def _backend_handshake(
        self, backend: socket.socket, host: str, port: int, proxied_path: str
    ) -> tuple[bytes, bytes]:
        """Send the browser's upgrade request (without Jupyter's credentials and without
        extension offers, as the relay) and return the backend's response head and any bytes
        after it."""
        if not proxied_path.startswith("/"):
            proxied_path = "/" + proxied_path
        url = urlsplit(self.get_client_uri("ws", host, port, proxied_path))
        target = url.path + (f"?{url.query}" if url.query else "")
        headers = self.proxy_request_headers()
        for name in (*HOP_BY_HOP_REQUEST, "Sec-WebSocket-Extensions", "Content-Length"):
            headers.pop(name, None)
        lines = [f"GET {target} HTTP/1.1", "Connection: Upgrade", "Upgrade: websocket"]
        lines += [f"{name}: {value}" for name, value in headers.get_all()]
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(backend, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        received = b""
        while (end := received.find(b"\r\n\r\n")) < 0:
            if len(received) > MAX_HEAD:
                raise ValueError("response head too large")
            data = await loop.sock_recv(backend, 1 << 16)
            if not data:
                raise ConnectionResetError("closed before answering")
            received += data
        return received[: end + 4], received[end + 4 :]

    def _relay_refusal(self, head: bytes, body: bytes) -> None:
        """The backend answered the handshake with a plain HTTP response: pass it on."""
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        self.set_status(int(parts[1]), parts[2] if len(parts) > 2 else None)
        self._headers = httputil.HTTPHeaders()
        length = None
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or name.strip().title() in HOP_BY_HOP:
                continue
            if name.strip().lower() == "content-length":
                length = int(value.strip())
                continue
            self.add_header(name.strip(), value.strip())
        self.finish(body if length is None else body[:length])

    @property
    def max_message_size(self) -> int:
        return MAX_WS_MESSAGE

    async def open(self, session_id: str, proxied_path: str) -> None:
        try:
            host, port = self._target(session_id)
        except web.HTTPError as exc:
            if exc.status_code == 403:
                self.close(4403, "nbviz: host not in c.NbvizRoute.host_allowlist")
            else:
                self.close(4404, "nbviz: no such session")
            return
        self.set_nodelay(True)
        if not proxied_path.startswith("/"):
            proxied_path = "/" + proxied_path
        headers = self.proxy_request_headers()
        # The backend leg negotiates its own extensions: a browser's permessage-deflate offer,
        # passed on, would be accepted by the backend and refused by our (uncompressed) client.
        headers.pop("Sec-WebSocket-Extensions", None)
        request = httpclient.HTTPRequest(
            url=self.get_client_uri("ws", host, port, proxied_path),
            headers=headers,
            connect_timeout=CONNECT_SECONDS,
            request_timeout=CONNECT_SECONDS,
        )
        request.headers = httputil.HTTPHeaders(request.headers)
        proxied = httpclient._RequestProxy(request, httpclient.HTTPRequest._DEFAULTS)

        def on_message(message: str | bytes | None) -> None:
            self._record_activity()
            if message is None:
                self.close()
            else:
                self.write_message(message, binary=isinstance(message, bytes))

        def on_ping(data: bytes) -> None:
            self._record_activity()
            self.ping(data)

        kwargs: dict[str, Any] = (
            {"resolver": UnixResolver(self.unix_socket)} if self.unix_socket else {}
        )
        connection = PingableWSClientConnection(
            request=proxied,
            compression_options=None,
            on_message_callback=on_message,
            on_ping_callback=on_ping,
            max_message_size=MAX_WS_MESSAGE,
            subprotocols=self._requested_subprotocols,
            **kwargs,
        )
        try:
            self.ws = await connection.connect_future
        except Exception as exc:
            self.log.warning("nbviz: websocket to session %s failed: %s", session_id, exc)
            self.close(1011, "nbviz: the backend does not answer")
            return
        self.ws.protocol.set_nodelay(True)
        self._record_activity()


class SessionsHandler(JupyterHandler):
    """``{base}nbviz/api/sessions``: this user's registered sessions (for doctor and tests)."""

    @web.authenticated
    def get(self) -> None:
        sessions = [
            {
                "id": e.session_id,
                # how the backend listens (nbviz._transport's names: unix, private, loopback,
                # host, ssh); entries written before transports were recorded: unix or loopback
                "transport": e.transport or ("unix" if e.unix_socket else "loopback"),
                "host": None if e.unix_socket else (e.host or "127.0.0.1"),
                "url": url_path_join(self.base_url, "nbviz", e.session_id) + "/",
                "pid": e.pid,
                "owner_pid": e.owner_pid,
            }
            for e in _registry.list_entries()
        ]
        self.finish({"version": __version__, "sessions": sessions})


_sessions: dict[tuple[str | None, str | None, int | None], aiohttp.ClientSession] = {}


def _session_key(entry: _registry.Entry) -> tuple[str | None, str | None, int | None]:
    if entry.unix_socket:
        return (entry.unix_socket, None, None)
    return (None, entry.host, entry.port)


def netns_socket(broker: str, family: int) -> socket.socket:
    """A new, unconnected TCP socket made inside a session's private network namespace, from
    its broker (``nbviz/_runtime/netns.py``): connected to 127.0.0.1:<port>, it reaches the
    backend there directly. The broker is a 0600 socket in the session's 0700 directory and
    answers at once; the timeout bounds a hung one."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(BROKER_SECONDS)
        client.connect(broker)
        client.sendall(b"6" if family == socket.AF_INET6 else b"4")
        _data, fds, _flags, _address = socket.recv_fds(client, 1, 1)
    if not fds:
        raise OSError(f"nbviz: {broker} handed out no socket")
    return socket.socket(fileno=fds[0])


def _backend_session(entry: _registry.Entry) -> aiohttp.ClientSession:
    """A keep-alive client for one backend endpoint, made on first use."""
    key = _session_key(entry)
    session = _sessions.get(key)
    if session is None or session.closed:
        connector: aiohttp.BaseConnector
        if entry.broker:
            broker = entry.broker
            connector = aiohttp.TCPConnector(
                limit=0,
                keepalive_timeout=KEEPALIVE_SECONDS,
                socket_factory=lambda info: netns_socket(broker, info[0]),
            )
        elif entry.unix_socket:
            connector = aiohttp.UnixConnector(
                path=entry.unix_socket, limit=0, keepalive_timeout=KEEPALIVE_SECONDS
            )
        else:
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_SECONDS)
        session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # cookies pass through as headers only
            read_bufsize=FLUSH_BYTES,
        )
        _sessions[key] = session
    return session


async def _close_unused_sessions() -> None:
    """Close the clients of backends no longer registered."""
    live = {_session_key(e) for e in _registry.list_entries()}
    for key in [k for k in _sessions if k not in live]:
        await _sessions.pop(key).close()


async def _sweep() -> None:
    _registry.sweep_stale()
    await _close_unused_sessions()


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbviz.serverext"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    web_app = serverapp.web_app
    base = web_app.settings["base_url"]
    route_config = NbvizRoute(parent=serverapp)
    web_app.settings["nbviz_route"] = route_config
    session = r"([0-9a-f]{12})"
    web_app.add_handlers(
        ".*",
        [
            (url_path_join(base, "nbviz/api/sessions"), SessionsHandler),
            (url_path_join(base, "nbviz", session), AddSlashHandler),
            (
                url_path_join(base, "nbviz", session) + r"(/.*)",
                RouteHandler,
                {"absolute_url": False},
            ),
        ],
    )
    _registry.sweep_stale()
    _registry.announce_server(
        os.getpid(),
        {
            "version": __version__,
            "base_url": base,
            "host_allowlist": route_config.describe_allowlist(),
        },
    )
    ioloop.PeriodicCallback(_sweep, SWEEP_SECONDS * 1000).start()
    serverapp.log.info("nbviz: route %snbviz/<session>/ enabled", base)


# Jupyter looks these up on the module named in the config.
load_jupyter_server_extension = _load_jupyter_server_extension
__all__ = ["NbvizRoute", "RouteHandler", "SessionsHandler", "strip_jupyter_cookies", "strip_query"]
