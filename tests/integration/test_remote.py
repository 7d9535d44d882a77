"""Backends on another host: ``host=`` behind allow-lists, and ``ssh=`` with a forwarded socket.

The "other host" is a network namespace joined to this one by a veth pair; its ssh server is a
private sshd (own host key, key-only login) started inside it for these tests.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import websocket
from jupyter_helpers import (
    BACKEND,
    JupyterServer,
    Kernel,
    pid_running,
    running,
    wait_until,
    ws_connect,
)
from netns_helpers import Node, NoNamespace, Sshd, network_namespace, private_sshd

from nbviz import _remote
from nbviz._errors import BackendExitedError, TemplateError
from nbviz._process import Process
from nbviz._routes import route_for
from nbviz._server import ServerInfo
from nbviz._spec import Endpoint, Spec


# ------------------------------------------------------------------ pure logic
def test_spec_validates_host_and_ssh() -> None:
    spec = Spec.build("app --port {port}", host="node12")
    assert spec.host == "node12" and spec.ssh == ()
    assert Spec.build("app --port {port}", host="localhost").host is None  # local, fully checked
    spec = Spec.build("app --socket {unix_socket}", ssh=["-p", "2222", "alice@node12"])
    assert spec.ssh == ("-p", "2222", "alice@node12") and spec.uses_unix_socket
    bad = {
        "both": dict(command="app {port}", host="n", ssh="n"),
        "host with socket": dict(command="app {unix_socket}", host="n"),
        "host not a name": dict(command="app {port}", host="http://n/"),
        "ssh with port": dict(command="app {port}", ssh="n"),
        "ssh without socket": dict(command="app", ssh="n", port=80),
        "ssh ends in option": dict(command="app {unix_socket}", ssh=["n", "-v"]),
        "ssh empty": dict(command="app {unix_socket}", ssh=[]),
    }
    for case, kwargs in bad.items():
        with pytest.raises(TemplateError, match="nbviz: "):
            Spec.build(**kwargs)  # type: ignore[arg-type]
        print("rejected:", case)


def test_host_allowlist_patterns_and_callable() -> None:
    assert _remote.host_allowed("127.0.0.1", []) and _remote.host_allowed("localhost", [])
    assert _remote.host_allowed("127.0.0.2", []) and _remote.host_allowed("::1", [])  # all loopback
    assert not _remote.host_allowed("128.0.0.1", []) and not _remote.host_allowed("127.node", [])
    assert not _remote.host_allowed("10.0.0.5", [])
    assert _remote.host_allowed("10.0.0.5", ["10.0.0.*"])
    assert not _remote.host_allowed("10.0.1.5", ["10.0.0.*"])
    assert _remote.host_allowed("node7.cluster", ["node?.cluster"])
    seen: list[tuple[object, str]] = []

    def only_nodes(handler: object, host: str) -> bool:
        seen.append((handler, host))
        return host.startswith("node")

    assert _remote.host_allowed("node1", only_nodes, "h")
    assert not _remote.host_allowed("login1", only_nodes, "h")
    assert seen == [("h", "node1"), ("h", "login1")]


def test_a_remote_port_is_one_nothing_answers_on() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        free = next(p for p in range(*_remote.REMOTE_PORTS) if not _remote.answers("127.0.0.1", p))

        class Choices(random.Random):
            def randrange(self, *_args: object) -> int:  # type: ignore[override]
                return self.ports.pop(0)

        rng = Choices()
        rng.ports = [busy, free]  # type: ignore[attr-defined]
        assert _remote.answers("127.0.0.1", busy) is True
        assert _remote.pick_remote_port("127.0.0.1", rng) == free


def test_routes_to_a_backend_on_another_host() -> None:
    endpoint = Endpoint(port=20123, host="node12")
    server = ServerInfo(base_url="/user/a/", source="jupyter-server")
    assert route_for(endpoint, server).url == "/user/a/proxy/node12:20123/"
    assert route_for(endpoint, server, absolute=True).url == "/user/a/proxy/absolute/node12:20123/"
    assert route_for(endpoint, None, choice="direct").url == "http://node12:20123/"
    assert route_for(endpoint, None, front_end_may_know=True).url == "proxy/node12:20123/"
    nbviz = route_for(endpoint, server, session_id="0123456789ab", nbviz_route=True)
    assert nbviz.url == "/user/a/nbviz/0123456789ab/"


def test_ssh_command_passes_arguments_through_the_remote_shell() -> None:
    argv = _remote.ssh_command(
        "/usr/bin/ssh",
        ["-p", "2222", "node"],
        local_socket="/run/l.sock",
        remote_socket="/tmp/nbviz-x/backend.sock",
        directory="/tmp/nbviz-x",
        command=["app", "a b", "it's", "$HOME"],
    )
    assert argv[-5:-2] == ["-p", "2222", "node"] and argv[-2] == "--"
    assert argv[argv.index("-L") : argv.index("-L") + 2] == [
        "-L",
        "/run/l.sock:/tmp/nbviz-x/backend.sock",
    ]
    # the remote login shell splits the one string back into the wrapper's argv, unexpanded
    assert shlex.split(argv[-1]) == [
        "sh", "-c", _remote.WRAPPER, "nbviz", "/tmp/nbviz-x", "", "app", "a b", "it's", "$HOME",
    ]  # fmt: skip
    assert "\n" not in argv[-1]


def test_wrapper_ends_the_backend_when_its_stdin_closes(tmp_path: Path) -> None:
    """The remote side, run locally: EOF on stdin ends the backend group and removes the dir."""
    directory = tmp_path / "remote"
    sock = directory / "backend.sock"
    wrapper = subprocess.Popen(
        ["sh", "-c", _remote.WRAPPER, "nbviz", str(directory), str(tmp_path), sys.executable,
         str(BACKEND), "--unix-socket", str(sock)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert wrapper.stdin is not None and wrapper.stdout is not None
    try:
        env = {"NBVIZ_TEST_VALUE": "a b $HOME 'quoted' ünï\ncode", "EMPTY": ""}
        wrapper.stdin.write(_remote.env_block(env))
        wrapper.stdin.flush()
        wait_until(sock.exists, timeout=15, what="the backend's socket")
        assert (directory.stat().st_mode & 0o777) == 0o700
        children = psutil.Process(wrapper.pid).children()
        backend = [p for p in children if p.cmdline()[1:2] == [str(BACKEND)]]
        assert len(backend) == 1 and os.getpgid(backend[0].pid) == backend[0].pid
        seen = backend[0].environ()
        assert seen["NBVIZ_TEST_VALUE"] == env["NBVIZ_TEST_VALUE"] and seen["EMPTY"] == ""
        assert backend[0].cwd() == str(tmp_path)
        assert env["NBVIZ_TEST_VALUE"] not in " ".join(psutil.Process(wrapper.pid).cmdline())
        wrapper.stdin.close()
        assert wrapper.wait(10) == 128 + signal.SIGTERM  # the backend's end, passed on
        assert not directory.exists()
        wait_until(lambda: not running(backend[0]), 5)
        # a directory that already exists is never reused
        directory.mkdir()
        again = subprocess.run(
            ["sh", "-c", _remote.WRAPPER, "nbviz", str(directory), "", "true"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        assert again.returncode == _remote.DIR_EXISTS and "cannot create" in again.stderr
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
        wrapper.wait()
        wrapper.stdout.close()


# ------------------------------------------------------------------ the other host
@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    try:
        with network_namespace() as made:
            yield made
    except NoNamespace as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def sshd(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with private_sshd(node, tmp_path_factory.mktemp("ssh")) as started:
        # ip netns exec, unshare and sh all exec: the process started is the sshd listener
        assert "sshd" in psutil.Process(started.pid).name()
        yield started


@pytest.fixture(scope="module")
def server(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """A Jupyter server that proxies to ``node.ip`` (both routes) but not to ``node.other_ip``."""
    root = Path(tmp_path_factory.mktemp("jupyter-remote"))
    (root / "config").mkdir()
    (root / "config" / "jupyter_server_config.py").write_text(
        f"c.NbvizRoute.host_allowlist = [{node.ip.rsplit('.', 1)[0] + '.[2]'!r}]\n"
        f"c.ServerProxy.host_allowlist = ['localhost', '127.0.0.1', {node.ip!r}]\n"
    )
    started = JupyterServer(root=root).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def remote_kernel(server: JupyterServer) -> Iterator[Kernel]:
    started = Kernel(server)
    try:
        yield started
    finally:
        started.close()


START = """
import json, sys, warnings
from nbviz import WebApp
warnings.simplefilter("always")
{name} = WebApp({command!r}, {kwargs})
{name}.wait_ready(30)
print(json.dumps({{"url": {name}.url, "route": {name}.route, "pid": {name}.pid,
                  "session": {name}._process.session_id, "port": {name}.endpoint.port,
                  "socket": {name}.endpoint.unix_socket, "argv": {name}.command}}))
"""


def start(kernel: Kernel, name: str, command: list[str], kwargs: str) -> tuple[dict[str, Any], str]:
    out = kernel.run(START.format(name=name, command=command, kwargs=kwargs))
    result = [line for line in out.splitlines() if line.startswith('{"url"')][-1]
    return dict(json.loads(result)), out


def get_direct(host: str, port: int, path: str) -> int:
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        return int(sock.recv(100).split()[1])


@pytest.mark.jupyter
def test_backend_on_another_host_through_the_allow_lists(
    node: Node, server: JupyterServer, remote_kernel: Kernel
) -> None:
    def backend(ip: str, heading: str) -> list[str]:
        script = [sys.executable, str(BACKEND), "--host", ip, "--port", "{port}"]
        return node.exec(*script, "--heading", heading)

    baseline = node.pids()  # e.g. the ssh tests' sshd, if they ran first
    info, _ = start(remote_kernel, "app", backend(node.ip, "on the node"), f"host={node.ip!r}")
    assert info["route"] == "nbviz" and info["url"] == f"/user/alice/nbviz/{info['session']}/"
    # the launcher runs here (`ip netns exec` becomes the backend), the backend listens there
    assert info["pid"] in node.pids() - baseline
    assert get_direct(node.ip, info["port"], "/") == 200
    # nbviz's route: allowed host -> the backend (HTTP and websocket)
    status, body, _ = server.get(info["url"] + "docs/")
    assert status == 200 and b"on the node" in body and b'<p id="where">/docs/</p>' in body
    ws = ws_connect(server, info["url"] + "ws", header=[f"Authorization: token {server.token}"])
    try:
        ws.send("across the veth")
        assert ws.recv() == "across the veth"
    finally:
        ws.close()
    sessions = json.loads(server.get("nbviz/api/sessions")[1])["sessions"]
    entry = next(s for s in sessions if s["id"] == info["session"])
    assert entry["transport"] == "host" and entry["host"] == node.ip
    # jupyter-server-proxy's proxy/<host>:<port>/ (its own allow-list has node.ip)
    status, body, _ = server.get(f"proxy/{node.ip}:{info['port']}/docs/")
    assert status == 200 and b"on the node" in body

    # a host neither allow-list has: 403 from both routes, and the request never reaches it
    other, out = start(
        remote_kernel, "other", backend(node.other_ip, "x"), f"host={node.other_ip!r}"
    )
    assert "c.NbvizRoute.host_allowlist" in out  # the kernel warned at start
    status, body, _ = server.get(other["url"] + "exit")
    assert status == 403 and b"c.NbvizRoute.host_allowlist" in body
    assert server.get(f"proxy/{node.other_ip}:{other['port']}/exit")[0] == 403
    assert get_direct(node.other_ip, other["port"], "/pid") == 200  # /exit never arrived
    ws = ws_connect(server, other["url"] + "ws", header=[f"Authorization: token {server.token}"])
    try:
        opcode, data = ws.recv_data(control_frame=True)
    finally:
        ws.shutdown()
    assert opcode == websocket.ABNF.OPCODE_CLOSE and int.from_bytes(data[:2], "big") == 4403
    assert get_direct(node.other_ip, other["port"], "/pid") == 200

    doctor = subprocess.run(
        [sys.executable, "-m", "nbviz.cli", "doctor", "--no-routes"],
        env=server.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert f"{node.ip.rsplit('.', 1)[0]}.[2] (c.NbvizRoute.host_allowlist)" in doctor.stdout

    remote_kernel.run("app.stop(); other.stop()")
    # nothing left on the node or here
    assert node.pids() == baseline
    assert not any(psutil.pid_exists(i["pid"]) for i in (info, other))
    sessions_root = server.root / "runtime" / "nbviz"
    assert not (sessions_root / info["session"]).exists()
    assert server.get(info["url"])[0] == 404


def _remote_processes(node: Node, sshd: Sshd) -> set[int]:
    """What runs on the node besides the sshd listener: sessions, wrappers, backends."""
    return node.pids() - {sshd.pid}


@pytest.mark.jupyter
def test_backend_over_ssh_with_a_forwarded_unix_socket(
    node: Node, sshd: Sshd, server: JupyterServer, remote_kernel: Kernel
) -> None:
    command = [sys.executable, str(BACKEND), "--unix-socket", "{unix_socket}", "--heading", "ssh"]
    extra = "env={'NBVIZ_NODE_VALUE': 'set on the node'}, cwd='/usr'"
    info, _ = start(remote_kernel, "app", command, f"ssh={sshd.args!r}, {extra}")
    session = info["session"]
    remote_dir = Path(_remote.remote_dir(session))
    # the route is the ordinary Unix-socket route, to a private local socket forwarded by ssh
    assert info["route"] == "nbviz" and info["port"] is None
    local = Path(info["socket"])
    assert local.is_socket() and (local.stat().st_mode & 0o777) == 0o600
    assert os.path.basename(info["argv"][0]) == "ssh" and psutil.pid_exists(info["pid"])
    status, body, _ = server.get(info["url"] + "docs/")
    assert status == 200 and b'<h1 id="heading">ssh</h1>' in body
    ws = ws_connect(server, info["url"] + "ws", header=[f"Authorization: token {server.token}"])
    try:
        ws.send_binary(b"\x00through ssh")
        assert ws.recv() == b"\x00through ssh"
    finally:
        ws.close()
    # on the node: the backend in the node's namespace, its socket in a private 0700 directory
    on_node = _remote_processes(node, sshd)
    backend = [p for p in on_node if psutil.Process(p).cmdline()[1:2] == [str(BACKEND)]]
    assert len(backend) == 1
    assert psutil.Process(backend[0]).environ()["NBVIZ_NODE_VALUE"] == "set on the node"
    assert psutil.Process(backend[0]).cwd() == "/usr"  # cwd= is a directory on the node
    assert "set on the node" not in " ".join(info["argv"])  # sent on stdin, not in argv
    assert (remote_dir.stat().st_mode & 0o777) == 0o700
    assert (remote_dir / "backend.sock").is_socket()

    remote_kernel.run("app.stop()")
    # stop() ends ssh's stdin and waits for ssh to exit, which it does once the remote wrapper
    # has ended the backend and removed its directory
    assert not remote_dir.exists() and not local.exists()
    assert not psutil.pid_exists(info["pid"])
    wait_until(lambda: not _remote_processes(node, sshd), timeout=5, what="the node to be clean")

    # the kernel dies without a word: the watchdog (and the dropped connection) clean up
    info, _ = start(remote_kernel, "app", command, f"ssh={sshd.args!r}")
    remote_dir = Path(_remote.remote_dir(info["session"]))
    assert remote_dir.exists() and _remote_processes(node, sshd)
    os.kill(remote_kernel.pid, signal.SIGKILL)
    wait_until(lambda: not psutil.pid_exists(info["pid"]), timeout=10, what="the local ssh")
    wait_until(lambda: not _remote_processes(node, sshd), timeout=10, what="the node to be clean")
    assert not remote_dir.exists()


def test_ssh_failures_are_clear_and_leave_nothing(node: Node, sshd: Sshd, tmp_path: Path) -> None:
    # the node's host key is not known: ssh refuses (BatchMode: no prompt), the session fails
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    args = [
        a if not a.startswith("UserKnownHostsFile=") else f"UserKnownHostsFile={empty}"
        for a in sshd.args
    ]
    command = [sys.executable, str(BACKEND), "--unix-socket", "{unix_socket}"]
    refused = Process(Spec.build(command, ssh=args, timeout=20))
    # the backend exits on the node: its code and output come back through ssh
    script = "echo backend says bye; exit 3"
    exits = Process(Spec.build(["sh", "-c", script, "{unix_socket}"], ssh=sshd.args, timeout=20))
    # a working directory the node does not have
    nowhere = Process(Spec.build(command, ssh=sshd.args, cwd="/no/such/dir", timeout=20))
    where = sshd.args[-1]  # the destination
    for process, expected in (
        # ssh's own failure (255) is said as ssh's, not as the backend's exit
        (refused, f"nbviz: ssh to {where} failed (Host key verification failed.); check that"),
        (exits, "nbviz: sh exited with code 3 before it was ready"),
        (nowhere, f"nbviz: cwd= /no/such/dir does not exist on {where}"),
    ):
        process.start()
        with pytest.raises(BackendExitedError) as failed:
            process.wait_ready(30)
        assert failed.value.message.startswith(expected), failed.value.full_message()
        assert not pid_running(process.pid or 0)
        process.stop()
        assert process.session_dir is None
    assert "backend says bye" in exits.logs()
    assert not Path(_remote.remote_dir(exits.session_id)).exists()
    wait_until(lambda: not _remote_processes(node, sshd), timeout=5, what="the node to be clean")
