"""The route's handler: ``{base}nbviz/<session>/<path>`` to one registered backend.

Built on jupyter-server-proxy's ``ProxyHandler`` (authentication, hop-by-hop headers, websocket
relay, Location rewriting). The backend is looked up per request in the session registry; HTTP
goes over the pooled keep-alive clients of ``pool.py``, streamed both ways; bodies of 1 MiB and
more are pumped socket to socket after their head (``pump.py``); websockets are tunnelled
(``tunnel.py``) or, when they cannot be, relayed by tornado (:meth:`RouteHandler.open`).
"""

from __future__ import annotations

import asyncio
import collections.abc
import os
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from jupyter_server.utils import url_path_join
from jupyter_server_proxy.handlers import ProxyHandler
from jupyter_server_proxy.unixsock import UnixResolver
from jupyter_server_proxy.websocket import PingableWSClientConnection
from tornado import httpclient, httputil, iostream, web
from tornado.escape import xhtml_escape

from .. import _registry, _remote
from . import pool, pump, tunnel
from .config import NbvizRoute
from .headers import (
    HOP_BY_HOP,
    HOP_BY_HOP_REQUEST,
    JUPYTER_HEADERS,
    strip_jupyter_cookies,
    strip_query,
)
from .pool import FLUSH_BYTES
from .tunnel import CONNECT_SECONDS

#: Largest response body and websocket message relayed (effectively unlimited).
MAX_BODY = 1 << 50
MAX_WS_MESSAGE = 1 << 40
#: Methods retried once when a kept-alive backend connection turns out to be closed.
IDEMPOTENT = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")
#: Bodies of at least this length (given by Content-Length) are pumped from the backend's socket
#: to the browser's (``pump.py``); smaller ones and chunked ones go through tornado and aiohttp.
PUMP_BYTES = 1 << 20
#: Pieces of a request body (tornado reads 64 KiB at a time) held while the backend is slower.
UPLOAD_PIECES = 8


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
            raise web.HTTPError(
                404, f"nbviz: no session {session_id} (stopped, crashed, or never started)"
            )
        self.session_id = session_id
        self.entry = entry
        self.unix_socket = entry.unix_socket
        #: A private network's socket broker: TCP sockets made inside it (see pool.netns_socket).
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
        # The secret for a backend's host gate: only the server may show it (the browser's is
        # dropped).
        headers.pop(_registry.GATE_HEADER, None)
        entry = self.entry
        if entry is not None and entry.gate:
            headers[_registry.GATE_HEADER] = entry.gate
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
        self._record_activity()
        body = b"" if self._upload is not None or self.request.method in ("POST", "PUT") else None
        request = self._build_proxy_request(host, port, proxied_path, body)
        # From the copy the backend gets: tornado still reads the browser's body by the
        # request's own headers (without Transfer-Encoding it took a chunked body for none).
        for name in HOP_BY_HOP_REQUEST:
            request.headers.pop(name, None)
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
                async with pool.backend_session(self.entry).request(
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
        had already read is written through tornado, the rest is pumped (``pump.copy``). The
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
            moved = await pump.copy(
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
            await tunnel.tunnel_websocket(self, *args)
        ):
            return
        await super().get(*args, **kwargs)

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
