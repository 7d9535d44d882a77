"""Asking a backend over HTTP whether it answers (the readiness probe), on a port or a Unix
socket."""

from __future__ import annotations

import http.client
import socket

from ._registry import GATE_HEADER
from ._spec import Endpoint

PROBE_TIMEOUT = 2.0


class UnixHTTPConnection(http.client.HTTPConnection):
    """``http.client`` over a Unix socket."""

    def __init__(self, path: str, timeout: float = PROBE_TIMEOUT) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def http_connection(
    endpoint: Endpoint, timeout: float = PROBE_TIMEOUT
) -> http.client.HTTPConnection:
    if endpoint.unix_socket is not None:
        return UnixHTTPConnection(endpoint.unix_socket, timeout=timeout)
    host = endpoint.host or "127.0.0.1"
    return http.client.HTTPConnection(host, endpoint.port, timeout=timeout)


def http_answers(endpoint: Endpoint, path: str = "/") -> bool:
    """True once the backend answers HTTP on ``path`` (any status but 502/503/504)."""
    conn = http_connection(endpoint)
    try:
        headers = {"User-Agent": "nbviz-probe"}
        if endpoint.gate:
            headers[GATE_HEADER] = endpoint.gate
        conn.request("GET", path, headers=headers)
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
    return status not in (502, 503, 504)
