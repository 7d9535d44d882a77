"""Jupyter server extension: ``{base_url}nbviz/<session-id>/`` routes to a kernel's backend.

Built on jupyter-server-proxy's ``ProxyHandler`` (authentication, hop-by-hop headers, websocket
relay, Location rewriting); what it adds:

- the backend is looked up per request in the session registry (``_registry``): a Unix socket
  (0600, in a 0700 directory) or a 127.0.0.1 port that a kernel of this user registered, or a
  port on another host when that host is in ``c.NbvizRoute.host_allowlist`` (403 otherwise);
- responses are streamed chunk by chunk with back-pressure (no whole-body buffering, no
  100 MiB cap), websocket messages are not capped at 10 MiB, small frames are not delayed
  (TCP_NODELAY on the browser leg; the backend leg is a Unix socket, where Nagle does not apply);
- Jupyter's credentials never reach the backend: its login and XSRF cookies, the
  ``Authorization`` and ``X-XSRFToken`` headers and a ``token`` query parameter are removed.

Enabled automatically by ``etc/jupyter/jupyter_server_config.d/nbviz.json``.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qsl, urlencode

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from jupyter_server_proxy.handlers import AddSlashHandler, ProxyHandler
from jupyter_server_proxy.unixsock import UnixResolver
from jupyter_server_proxy.websocket import PingableWSClientConnection
from tornado import httpclient, httputil, ioloop, web
from tornado.escape import xhtml_escape
from tornado.simple_httpclient import SimpleAsyncHTTPClient
from traitlets import Callable, List, Unicode, Union
from traitlets.config import Configurable

from . import _registry, _remote
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


def strip_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, v) for k, v in pairs if k not in JUPYTER_QUERY])


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


class RouteHandler(ProxyHandler):
    """``{base}nbviz/<session>/<path>``: HTTP and websockets to one registered backend."""

    session_id = ""
    entry: _registry.Entry | None = None

    # ------------------------------------------------------------- lookup
    def _lookup(self, session_id: str) -> _registry.Entry:
        entry = _registry.read_entry(session_id)
        if entry is None:
            raise web.HTTPError(404, f"nbviz: no session {session_id} (stopped, or never started)")
        self.session_id = session_id
        self.entry = entry
        self.unix_socket = entry.unix_socket
        self.absolute_url = entry.absolute
        return entry

    def _target(self, session_id: str) -> tuple[str, int]:
        entry = self._lookup(session_id)
        if entry.host is not None:
            return self._remote_target(entry)
        # jupyter-server-proxy builds "http://host:port/path"; over a Unix socket the resolver
        # ignores host and port.
        return "localhost", entry.port or 80

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
            query = strip_query(self.request.query)
            uri = f"{base}?{query}" if query else base
        return uri

    def proxy_request_options(self) -> dict[str, Any]:
        return {"follow_redirects": False, "connect_timeout": 30.0, "request_timeout": 86400.0}

    # ------------------------------------------------------------ HTTP methods
    async def http_get(self, session_id: str, proxied_path: str) -> None:
        await self._relay(session_id, proxied_path)

    async def post(self, session_id: str, proxied_path: str) -> None:
        await self._relay(session_id, proxied_path)

    async def put(self, session_id: str, proxied_path: str) -> None:
        await self._relay(session_id, proxied_path)

    async def delete(self, session_id: str, proxied_path: str) -> None:
        await self._relay(session_id, proxied_path)

    async def head(self, session_id: str, proxied_path: str) -> None:
        await self._relay(session_id, proxied_path)

    async def patch(self, session_id: str, proxied_path: str) -> None:
        await self._relay(session_id, proxied_path)

    async def options(self, session_id: str, proxied_path: str) -> None:
        await self._relay(session_id, proxied_path)

    async def _relay(self, session_id: str, proxied_path: str) -> None:
        host, port = self._target(session_id)
        # jupyter-server-proxy's proxy() drops hop-by-hop headers, records activity, makes the
        # client and calls _proxy_buffered / _proxy_progressive, which we replace by streaming.
        await self.proxy(host, port, proxied_path)

    async def _proxy_buffered(
        self, host: str, port: int, proxied_path: str, body: Any, client: Any
    ) -> None:
        await self._proxy_streaming(host, port, proxied_path, body, client)

    async def _proxy_progressive(
        self, host: str, port: int, proxied_path: str, body: Any, client: Any
    ) -> None:
        await self._proxy_streaming(host, port, proxied_path, body, client)

    def _client(self) -> SimpleAsyncHTTPClient:
        resolver = UnixResolver(self.unix_socket) if self.unix_socket else None
        kwargs: dict[str, Any] = {"resolver": resolver} if resolver else {}
        return SimpleAsyncHTTPClient(force_instance=True, max_body_size=MAX_BODY, **kwargs)

    async def _proxy_streaming(
        self, host: str, port: int, proxied_path: str, body: Any, given: Any
    ) -> None:
        given.close()  # jupyter-server-proxy's client caps bodies at 100 MiB: use our own
        # Small pieces of a streamed reply must not wait for the browser's delayed ACK
        # (tornado turns Nagle off only when the response finishes).
        stream = getattr(self.request.connection, "stream", None)
        if stream is not None:
            stream.set_nodelay(True)
        client = self._client()
        status: dict[str, Any] = {"code": 502, "reason": None}
        received = httputil.HTTPHeaders()
        sent = False

        def header_callback(line: str) -> None:
            if line.startswith("HTTP/"):
                start = httputil.parse_response_start_line(line.strip())
                status["code"], status["reason"] = start.code, start.reason
                received.clear()  # a 100 Continue before the real answer
            elif line.strip():
                received.parse_line(line)

        def send_headers() -> None:
            nonlocal sent
            if sent:
                return
            sent = True
            self.set_status(status["code"], status["reason"])
            self._headers = httputil.HTTPHeaders()
            for name, value in received.get_all():
                if name in HOP_BY_HOP:
                    continue
                if (
                    name == "Location"
                    and not self.absolute_url
                    and status["code"] in (301, 302, 303, 307, 308)
                ):
                    value = self._rewrite_location_header(value, host, port, proxied_path)
                self.add_header(name, value)

        async def streaming_callback(chunk: bytes) -> None:
            send_headers()
            self.write(chunk)
            # back-pressure: read no faster than the browser takes it. (The websocket mixin
            # wraps self.flush and drops its future, so call the plain handler's.)
            await web.RequestHandler.flush(self)

        request = self._build_proxy_request(
            host,
            port,
            proxied_path,
            body,
            header_callback=header_callback,
            streaming_callback=streaming_callback,
        )
        try:
            response = await client.fetch(request, raise_error=False)
            error = response.error if response.code == 599 else None
        except (httpclient.HTTPClientError, OSError) as exc:  # raised even with raise_error=False
            error = exc
        finally:
            client.close()
        self._record_activity()
        if error is not None:
            if sent:  # the backend went away mid-body: the browser sees a cut-off response
                raise web.HTTPError(502)
            raise web.HTTPError(
                502, f"nbviz: the backend of session {self.session_id} does not answer ({error})"
            )
        send_headers()

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
            connect_timeout=30.0,
            request_timeout=30.0,
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
                "transport": "unix" if e.unix_socket else "tcp",
                "host": None if e.unix_socket else (e.host or "127.0.0.1"),
                "url": url_path_join(self.base_url, "nbviz", e.session_id) + "/",
                "pid": e.pid,
                "owner_pid": e.owner_pid,
            }
            for e in _registry.list_entries()
        ]
        self.finish({"version": __version__, "sessions": sessions})


def _sweep() -> None:
    _registry.sweep_stale()


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
