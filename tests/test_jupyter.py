"""Integration: a real Jupyter server (base URL /user/alice/, token), kernel and backends."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import websocket
from jupyter_client import BlockingKernelClient
from jupyter_helpers import BACKEND, JupyterServer, wait_until

pytestmark = pytest.mark.jupyter


class Kernel:
    """A kernel started by the Jupyter server (as the notebook UI would), driven over ZMQ."""

    def __init__(self, server: JupyterServer) -> None:
        self.server = server
        status, body, _ = server.post("api/kernels", {"name": "python3"})
        assert status == 201, body
        self.id = json.loads(body)["id"]
        connection = Path(server.root / "runtime" / f"kernel-{self.id}.json")
        wait_until(connection.exists, what="the kernel's connection file")
        self.client = BlockingKernelClient(connection_file=str(connection))
        self.client.load_connection_file()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    @property
    def pid(self) -> int:
        for proc in psutil.Process(self.server.proc.pid).children(recursive=True):  # type: ignore[union-attr]
            if any(self.id in part for part in proc.cmdline()):
                return proc.pid
        raise AssertionError("kernel process not found")

    def run(self, code: str, timeout: float = 60) -> str:
        out: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append("\n".join(msg["content"]["traceback"]))

        reply = self.client.execute_interactive(code, output_hook=hook, timeout=timeout)
        assert reply["content"]["status"] == "ok", "".join(out)
        return "".join(out)

    def close(self) -> None:
        self.client.stop_channels()
        self.server.delete(f"api/kernels/{self.id}")


@pytest.fixture
def kernel(jupyter_server: JupyterServer) -> Iterator[Kernel]:
    k = Kernel(jupyter_server)
    try:
        yield k
    finally:
        k.close()


START = """
import json, sys
from nbviz import WebApp
command = [sys.executable, {backend!r}, "--port", "{{port}}", "--heading", "via the proxy"]
app = WebApp(command{extra})
app.wait_ready(30)
print(json.dumps({{"url": app.url, "route": app.route, "pid": app.pid, "port": app.endpoint.port,
                  "message": app.message}}))
"""


def start_app(kernel: Kernel, extra: str = "") -> dict[str, Any]:
    out = kernel.run(START.format(backend=str(BACKEND), extra=extra))
    return dict(json.loads(out.strip().splitlines()[-1]))


def test_kernel_computes_the_proxied_url(kernel: Kernel, jupyter_server: JupyterServer) -> None:
    info = start_app(kernel)
    assert info["route"] == "proxy"
    assert info["url"] == f"/user/alice/proxy/{info['port']}/"
    assert "token" not in info["url"] and jupyter_server.token not in info["url"]
    # HTTP through the server, authenticated
    status, body, _ = jupyter_server.get(info["url"] + "docs/")
    assert status == 200 and b"via the proxy" in body
    assert b'<p id="where">/docs/</p>' in body  # proxy/<port>/ strips the prefix
    # websocket round trip through the server
    ws_url = f"ws://127.0.0.1:{jupyter_server.port}{info['url']}ws"
    ws = websocket.create_connection(
        ws_url, header=[f"Authorization: token {jupyter_server.token}"], timeout=10
    )
    try:
        ws.send("ping through jupyter")
        assert ws.recv() == "ping through jupyter"
        ws.send_binary(b"\x00\x01binary")
        assert ws.recv() == b"\x00\x01binary"
    finally:
        ws.close()
    kernel.run("app.stop()")


def test_unauthenticated_requests_are_refused(
    kernel: Kernel, jupyter_server: JupyterServer
) -> None:
    info = start_app(kernel)
    status, body, headers = jupyter_server.get(info["url"], auth=False)
    assert status in (302, 401, 403), status
    assert b"via the proxy" not in body
    if status == 302:
        assert "/login" in headers["Location"]
    ws_url = f"ws://127.0.0.1:{jupyter_server.port}{info['url']}ws"
    with pytest.raises(websocket.WebSocketException):
        websocket.create_connection(ws_url, timeout=10).close()
    wrong = [f"Authorization: token not-{jupyter_server.token}"]
    with pytest.raises(websocket.WebSocketException):
        websocket.create_connection(ws_url, header=wrong, timeout=10).close()
    kernel.run("app.stop()")


def test_absolute_route_passes_the_full_path(kernel: Kernel, jupyter_server: JupyterServer) -> None:
    info = start_app(kernel, extra=", absolute_url=True")
    assert info["route"] == "absolute"
    assert info["url"] == f"/user/alice/proxy/absolute/{info['port']}/"
    status, body, _ = jupyter_server.get(info["url"] + "x")
    assert status == 200
    assert f'<p id="where">{info["url"]}x</p>'.encode() in body
    kernel.run("app.stop()")


def test_sigkill_of_the_kernel_ends_its_backends(
    kernel: Kernel, jupyter_server: JupyterServer
) -> None:
    first = start_app(kernel)
    second = start_app(kernel)
    pids = [first["pid"], second["pid"]]
    assert all(psutil.pid_exists(pid) for pid in pids)
    sessions = list((jupyter_server.root / "runtime" / "nbviz").iterdir())
    assert len(sessions) == 2
    started = time.monotonic()
    os.kill(kernel.pid, signal.SIGKILL)
    wait_until(
        lambda: not any(psutil.pid_exists(pid) for pid in pids), timeout=8, what="backends to end"
    )
    elapsed = time.monotonic() - started
    wait_until(lambda: not any(p.exists() for p in sessions), timeout=5, what="session dirs")
    assert elapsed < 8
