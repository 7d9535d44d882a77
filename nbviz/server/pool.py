"""Keep-alive HTTP clients, one per backend endpoint (aiohttp), closed when the session is gone;
and the socket broker of a session in a private network namespace."""

from __future__ import annotations

import socket

import aiohttp

from .. import _registry
from .._runtime import netns

#: Seconds an idle backend connection is kept (below gunicorn's 2 s and most servers' limits,
#: so the backend rarely closes one as it is reused).
KEEPALIVE_SECONDS = 1.0
#: Seconds a private network's broker may take to hand out a socket (it answers at once; this
#: bounds a hung one, as the call blocks the server's event loop).
BROKER_SECONDS = 1.0
#: Bytes of a body relayed before waiting for the browser to take them (back-pressure).
FLUSH_BYTES = 1 << 20

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
    return netns.from_broker(broker, family, BROKER_SECONDS)


def backend_session(entry: _registry.Entry) -> aiohttp.ClientSession:
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


async def close_unused_sessions() -> None:
    """Close the clients of backends no longer registered."""
    live = {_session_key(e) for e in _registry.list_entries()}
    for key in [k for k in _sessions if k not in live]:
        await _sessions.pop(key).close()


def forget_all() -> None:
    """At the server's exit: let go of every client (``detach``: the process ends, and with it
    the connections), so none is reported as an "Unclosed client session" in the server's log
    while the interpreter shuts down."""
    while _sessions:
        _sessions.popitem()[1].detach()


async def sweep() -> None:
    """Remove the registry's stale entries, then the clients of backends gone with them."""
    _registry.sweep_stale()
    await close_unused_sessions()
