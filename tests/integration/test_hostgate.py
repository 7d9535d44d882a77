"""The host gate as a process (``nbviz/_runtime/hostgate.py``): in front of the test backend, it
admits the requests that show the session's secret, hides the header from the backend, keeps
the connection for what follows (keep-alive, websockets), refuses everything else, and leaves
nothing behind. (Through a real Jupyter server and a kernel on another host:
test_kernel_on_node.py and test_slurm.py.)"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket
from jupyter_helpers import BACKEND, wait_until

from nbviz._transport import HOSTGATE

SECRET = "s3cret-gate-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gate_argv(port: int, directory: Path, target: list[str], command: list[str]) -> list[str]:
    listen = ["--listen", f"127.0.0.1:{port}", *target, "--dir", str(directory)]
    return [sys.executable, "-S", str(HOSTGATE), *listen, "--", *command]


@pytest.fixture
def gate() -> Iterator[tuple[int, Path, subprocess.Popen[bytes]]]:
    """The gate in front of the test backend on a Unix socket in the gate's own directory."""
    directory = Path(tempfile.gettempdir()) / f"nbviz-{os.getuid()}" / f"test-{os.getpid()}-gate"
    port = free_port()
    sock = str(directory / "backend.sock")
    backend = [sys.executable, str(BACKEND), "--unix-socket", sock, "--heading", "behind the gate"]
    proc = subprocess.Popen(
        [*gate_argv(port, directory, ["--socket", sock], backend)],
        env={**os.environ, "NBVIZ_SECRET": SECRET},
    )
    try:
        wait_until(lambda: os.path.exists(sock), timeout=20, what="the backend's socket")
        yield port, directory, proc
    finally:
        proc.terminate()
        proc.wait(10)


def get(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_the_gate_admits_the_secret_only_and_hides_it_from_the_backend(
    gate: tuple[int, Path, subprocess.Popen[bytes]],
) -> None:
    port, directory, _proc = gate
    assert os.stat(directory).st_mode & 0o777 == 0o700
    status, body = get(port, "/", {"X-Nbviz-Gate": SECRET})
    assert status == 200 and b"behind the gate" in body
    status, body = get(port, "/headers", {"X-Nbviz-Gate": SECRET, "X-Other": "kept"})
    seen = {name.lower(): value for name, value in json.loads(body)["headers"].items()}
    assert status == 200 and seen["x-other"] == "kept" and "x-nbviz-gate" not in seen
    for headers in ({}, {"X-Nbviz-Gate": "wrong"}, {"X-Nbviz-Gate": SECRET[:-1]}):
        status, body = get(port, "/", headers)
        assert status == 403 and b"behind the gate" not in body, (headers, body)
    # a client that sends no request head in time, or nothing, holds nothing up
    with socket.create_connection(("127.0.0.1", port), timeout=5) as idle:
        assert get(port, "/", {"X-Nbviz-Gate": SECRET})[0] == 200
        idle.sendall(b"GET / HTTP/1.1\r\n")  # half a head, then gone


def test_an_admitted_connection_carries_what_follows(
    gate: tuple[int, Path, subprocess.Popen[bytes]],
) -> None:
    port, _directory, _proc = gate
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(3):  # keep-alive: one connection, many requests
            conn.request("GET", "/", headers={"X-Nbviz-Gate": SECRET})
            response = conn.getresponse()
            assert response.status == 200 and b"behind the gate" in response.read()
    finally:
        conn.close()
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{port}/ws", header=[f"X-Nbviz-Gate: {SECRET}"], timeout=10
    )
    try:
        ws.send("over the gate")
        assert ws.recv() == "over the gate"
    finally:
        ws.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(f"ws://127.0.0.1:{port}/ws", timeout=10)
    assert refused.value.status_code == 403


def test_the_gate_ends_with_its_backend_and_removes_its_directory(
    gate: tuple[int, Path, subprocess.Popen[bytes]],
) -> None:
    port, directory, proc = gate
    proc.terminate()  # the backend (the gate became it); the relay ends with it
    proc.wait(10)
    wait_until(lambda: not directory.exists(), timeout=10, what="the gate's directory to go")

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError:
            return True
        return False

    wait_until(refused, timeout=10, what="the gate's port to close")


def test_a_port_in_use_and_a_target_on_tcp(tmp_path: Path) -> None:
    env = {**os.environ, "NBVIZ_SECRET": SECRET}
    base = Path(tempfile.gettempdir()) / f"nbviz-{os.getuid()}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        used = taken.getsockname()[1]
        argv = gate_argv(used, base / f"t{os.getpid()}a-gate", ["--port", "1"], ["true"])
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=20)
    assert result.returncode == 1
    assert f"nbviz-exit: nbviz: the gate cannot listen on 127.0.0.1:{used}" in result.stderr
    # an app on 127.0.0.1 of the gate's host (where private networks are off)
    port, app_port = free_port(), free_port()
    backend = [sys.executable, str(BACKEND), "--port", str(app_port), "--heading", "on tcp"]
    directory = base / f"t{os.getpid()}b-gate"
    proc = subprocess.Popen(gate_argv(port, directory, ["--port", str(app_port)], backend), env=env)
    try:

        def answers() -> bool:
            try:
                return get(port, "/", {"X-Nbviz-Gate": SECRET})[0] == 200
            except OSError:
                return False

        wait_until(answers, timeout=20, what="the app behind the gate")
        assert b"on tcp" in get(port, "/", {"X-Nbviz-Gate": SECRET})[1]
    finally:
        proc.terminate()
        proc.wait(10)
    # without the session's secret the gate does not start
    env.pop("NBVIZ_SECRET")
    argv = gate_argv(free_port(), base / f"t{os.getpid()}c-gate", ["--port", "1"], ["true"])
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=20)
    assert result.returncode == 1 and "without the session's secret" in result.stderr
