"""Websockets as byte tunnels: the backend answers the browser's handshake itself, then the
two connections are pumped into each other (``pump.tunnel``), as nginx and JupyterHub's proxy
do. Used by :class:`~nbviz.server.relay.RouteHandler` for every websocket it can tunnel."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tornado import httputil, web

from . import pump
from .headers import HOP_BY_HOP, HOP_BY_HOP_REQUEST
from .pool import netns_socket

if TYPE_CHECKING:
    from .relay import RouteHandler

#: Seconds to reach a backend (HTTP and websocket); a response itself may take any time.
CONNECT_SECONDS = 30.0
#: Largest response head a backend may send to a websocket handshake.
MAX_HEAD = 1 << 16


async def tunnel_websocket(handler: RouteHandler, session_id: str, proxied_path: str) -> bool:
    """A websocket as a byte tunnel: the backend answers the browser's handshake itself,
    then the two connections are pumped into each other (``pump.tunnel``), as nginx and
    JupyterHub's proxy do. Frames pass unparsed (no size cap, pings end to end).

    Returns False, having sent nothing, when tornado's relay (``RouteHandler.open``) should take
    the request instead: TLS to the browser, a bad handshake or origin (tornado
    refuses it), an unknown session or host (closed with a code saying why), a backend that
    cannot be reached.
    """
    stream = handler._client_stream()
    headers = handler.request.headers
    connection = {t.strip().lower() for t in headers.get("Connection", "").split(",")}
    origin = headers.get("Origin") or headers.get("Sec-Websocket-Origin")
    if (
        stream is None
        or "upgrade" not in connection
        or (origin is not None and not handler.check_origin(origin))
    ):
        return False
    try:
        host, port = handler._target(session_id)
    except web.HTTPError:
        return False
    backend = await connect(handler, host, port)
    if backend is None:
        return False
    try:
        head, rest = await asyncio.wait_for(
            backend_handshake(handler, backend, host, port, proxied_path), CONNECT_SECONDS
        )
    except (OSError, ValueError, asyncio.TimeoutError) as exc:
        backend.close()
        raise web.HTTPError(
            502, f"nbviz: the backend of session {session_id} failed the websocket ({exc})"
        ) from None
    status = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if status[1:2] != [b"101"]:
        backend.close()
        relay_refusal(handler, head, rest)
        return True
    handler._record_activity()
    client_stream = handler.detach()
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
        await pump.tunnel(client, backend, handler._activity_every_second())
    except OSError:
        pass
    finally:
        client.close()
        backend.close()
        handler._record_activity()
    return True


async def connect(handler: RouteHandler, host: str, port: int) -> socket.socket | None:
    """A non-blocking socket connected to the backend, or None."""
    loop = asyncio.get_running_loop()
    try:
        if handler.broker:
            try:
                sock = netns_socket(handler.broker, socket.AF_INET)
            except OSError as exc:  # the relay (a hop more) still works
                handler.log.debug("nbviz: session %s's broker: %s", handler.session_id, exc)
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
        if handler.unix_socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await asyncio.wait_for(
                    loop.sock_connect(sock, handler.unix_socket), CONNECT_SECONDS
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
        handler.log.debug("nbviz: cannot reach session %s: %s", handler.session_id, exc)
    return None


async def backend_handshake(
    handler: RouteHandler, backend: socket.socket, host: str, port: int, proxied_path: str
) -> tuple[bytes, bytes]:
    """Send the browser's upgrade request (without Jupyter's credentials and without
    extension offers, as the relay) and return the backend's response head and any bytes
    after it."""
    if not proxied_path.startswith("/"):
        proxied_path = "/" + proxied_path
    url = urlsplit(handler.get_client_uri("ws", host, port, proxied_path))
    target = url.path + (f"?{url.query}" if url.query else "")
    headers = handler.proxy_request_headers()
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


def relay_refusal(handler: RouteHandler, head: bytes, body: bytes) -> None:
    """The backend answered the handshake with a plain HTTP response: pass it on."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    handler.set_status(int(parts[1]), parts[2] if len(parts) > 2 else None)
    handler._headers = httputil.HTTPHeaders()
    length = None
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or name.strip().title() in HOP_BY_HOP:
            continue
        if name.strip().lower() == "content-length":
            length = int(value.strip())
            continue
        handler.add_header(name.strip(), value.strip())
    handler.finish(body if length is None else body[:length])
