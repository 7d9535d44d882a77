"""No other local user reaches a session: every backend and preset, run as on a shared login
node (a real Jupyter server with nbviz's route, a second real Unix user).

Every listening socket of every session's processes (TCP and Unix, in whatever network
namespace each process is) is tried as the other user. Only the Jupyter server, with its auth,
lets anyone in.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from jupyter_helpers import BACKEND, JupyterServer, Kernel, wait_until
from paraview_data import heat_series
from user_helpers import other_user, probe_as, session_listeners, targets_of

from nbviz import _transport
from nbviz._errors import ReadyTimeoutError
from nbviz._process import Process
from nbviz._spec import Spec
from nbviz.serverext import netns_socket

pytestmark = pytest.mark.jupyter

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
NETNS = _transport.NETNS_RUNNER

START_ALL = """
import json, os, sys
from nbviz import ParaViewSession, RemoteDesktop, WebApp, apps
backend = {backend!r}
objects = {{
    "webapp-port": WebApp([sys.executable, backend, "--port", "{{port}}"]),
    "webapp-fixed-port": WebApp([sys.executable, backend, "--port", "{{port}}"], port=8765),
    "webapp-unix": WebApp([sys.executable, backend, "--unix-socket", "{{unix_socket}}"]),
    "bokeh": apps.launch("bokeh", script={bokeh!r}),
    "nest-desktop": apps.NestDesktop(),
    "paraview": ParaViewSession({data!r}, size=(200, 150)),
    "paraview-ranks": ParaViewSession({data!r}, ranks=2, size=(200, 150)),
    "desktop-xpra": RemoteDesktop("xpra"),
    "desktop-vnc": RemoteDesktop("vnc"),
}}
# where this machine has no private network namespaces: 127.0.0.1, behind the secret
os.environ["NBVIZ_PRIVATE_NETWORK"] = "no"
objects["webapp-loopback"] = WebApp([sys.executable, backend, "--port", "{{port}}"])
del os.environ["NBVIZ_PRIVATE_NETWORK"]
for o in objects.values():
    o.wait_ready(180)
print(json.dumps({{name: {{"pid": o.pid, "session": o._process.session_id, "url": o.url,
                         "transport": o.transport}} for name, o in objects.items()}}))
"""


@pytest.fixture
def open_server() -> Iterator[JupyterServer]:
    """A Jupyter server whose own directories every user may traverse (0755, unlike pytest's
    0700 temp dirs): only nbviz's permissions stand between the other user and a session."""
    root = Path(tempfile.mkdtemp(prefix="nbviz-privacy-", dir="/tmp"))
    root.chmod(0o755)
    try:
        with JupyterServer(root=root) as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_no_other_user_reaches_any_session(open_server: JupyterServer) -> None:
    user = other_user()
    jupyter_server = open_server
    data = heat_series(open_server.root / "heat", n=12, steps=2)
    code = START_ALL.format(
        backend=str(BACKEND), bokeh=str(RESOURCES / "bokeh_app.py"), data=str(data)
    )
    kernel = Kernel(open_server)
    try:
        out = kernel.run(code, timeout=300)
        sessions = json.loads(out.strip().splitlines()[-1])
        host_netns = os.readlink("/proc/self/ns/net")
        report = {}
        for name, info in sessions.items():
            found = session_listeners(info["pid"], info["session"])
            assert found, f"{name}: no listener found (the probe would prove nothing)"
            targets = targets_of(found)
            report[name] = {
                "transport": info["transport"],
                "on the host's network": [w for k, w, n in found if k == "tcp" and n == host_netns],
                "results": dict(zip(map(str, targets), probe_as(user, targets), strict=True)),
            }
        text = json.dumps(report, indent=1)
        # a {port} app through nbviz's route: in a network namespace of its own
        for name in ("webapp-port", "webapp-fixed-port"):
            assert report[name]["transport"] == "private", text
        for name, entry in report.items():
            if name == "webapp-loopback":
                continue
            assert not entry["on the host's network"], f"{name} listens on the host: {text}"
            reached = [t for t, r in entry["results"].items() if r == "connected"]
            assert not reached, f"{name}: the other user connected to {reached}: {text}"
        # control: the same probe reaches an app on the host's loopback (the fallback where a
        # machine has no private namespaces; the app must check NBVIZ_SECRET itself)
        loopback = report["webapp-loopback"]
        assert loopback["transport"] == "loopback"
        assert "connected" in loopback["results"].values(), text
        # ... and the owner gets in through Jupyter, with its auth only
        for name in ("webapp-port", "webapp-fixed-port", "webapp-unix"):
            url = sessions[name]["url"]
            status, body, _ = jupyter_server.get(url)
            assert status == 200 and b"Hello" in body, (name, status, body[:200])
            assert jupyter_server.get(url, auth=False)[0] in (302, 401, 403)
    finally:
        kernel.run("for o in objects.values(): o.stop()", timeout=120)
        kernel.close()


# ------------------------------------------------------------ the runner as a real user
OWNER = "nbviz-test-owner"


def test_the_private_network_runner_as_an_ordinary_user() -> None:
    """As a non-root user (a user namespace maps them to themselves): the app's port is out of
    everybody's reach, the 0600 sockets are the owner's alone, and the app's end ends the
    relay."""
    owner, other = other_user(OWNER), other_user()
    home = Path(tempfile.mkdtemp(prefix="nbviz-owner-", dir="/tmp"))  # pytest's are root's
    home.chmod(0o755)
    os.chown(home, *_ids(owner))
    sock, broker, port = home / "app.sock", home / "netns.sock", 23456
    runner = subprocess.Popen(
        [
            "runuser", "-u", owner, "--", "/usr/bin/python3", "-S", str(NETNS),
            "--socket", str(sock), "--broker", str(broker), "--port", str(port), "--",
            "/usr/bin/python3", "-m", "http.server", "--bind", "127.0.0.1", str(port),
            "--directory", str(home),
        ],
        stdout=(log := open(home / "runner.log", "wb")),  # noqa: SIM115 - closed below
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        get = textwrap.dedent(
            """
            import http.client, socket, sys
            c = http.client.HTTPConnection("localhost")
            c.sock = socket.socket(socket.AF_UNIX); c.sock.connect(sys.argv[1])
            c.request("GET", "/"); print(c.getresponse().status)
            """
        )

        def owner_gets() -> bool:
            result = subprocess.run(
                ["runuser", "-u", owner, "--", "/usr/bin/python3", "-c", get, str(sock)],
                capture_output=True,
                text=True,
            )
            return result.stdout.strip() == "200"

        try:
            wait_until(owner_gets, timeout=20, what="the app through the runner's socket")
        except AssertionError:
            runner.kill()
            raise AssertionError(runner.communicate()[0]) from None
        assert oct(sock.stat().st_mode & 0o777) == "0o600"
        app = next(
            p
            for p in psutil.Process(runner.pid).children(recursive=True)
            if p.cmdline()[1:3] == ["-m", "http.server"]
        )
        assert app.uids().real == _ids(owner)[0]  # still the owner, not root of the namespace
        assert os.readlink(f"/proc/{app.pid}/ns/net") != os.readlink("/proc/self/ns/net")
        # the other user: neither the socket nor the port; nor root on the host's network
        assert probe_as(other, [("unix", str(sock)), ("tcp", f"127.0.0.1:{port}")]) == [
            "PermissionError",
            "ConnectionRefusedError",
        ]
        # the broker hands out sockets of the namespace: connected there, they reach the app
        # directly (as the server extension does); the other user cannot use the broker
        assert oct(broker.stat().st_mode & 0o777) == "0o600"
        with netns_socket(str(broker), socket.AF_INET) as inside:
            inside.settimeout(5)
            inside.connect(("127.0.0.1", port))
            inside.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert inside.recv(100).startswith(b"HTTP/1.0 200")
        assert probe_as(other, [("unix", str(broker))]) == ["PermissionError"]
        # the runner became the app (same pid: runuser's child); its relay is the app's child
        assert app.ppid() == runner.pid
        relay = app.children()
        assert [p.cmdline()[2] for p in relay] == [str(NETNS)]
        app.terminate()  # the app's end ends the relay too (parent-death signal)
        assert runner.wait(10) in (-15, 128 + 15)
        wait_until(lambda: not app.is_running(), timeout=5, what="the app to end")
        gone = psutil.wait_procs(relay, timeout=5)[0]
        assert len(gone) == 1, "the relay outlived the app"
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def _ids(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


# ------------------------------------------------------ where namespaces are not allowed
NO_NAMESPACES = (
    "echo 0 > /proc/sys/user/max_net_namespaces && echo 0 > /proc/sys/user/max_user_namespaces "
    '&& exec "$@"'
)

FALLBACK = """
import sys
from nbviz import _transport
from nbviz._process import Process
from nbviz._spec import Spec
print(_transport.private_network_problem())
p = Process(Spec.build([sys.executable, sys.argv[1], "--port", "{port}"]), private_route=True)
p.start(); p.wait_ready(30)
print(p.transport.name, p.endpoint.port)
p.stop()
"""


def test_without_namespaces_a_port_app_falls_back_to_loopback() -> None:
    """In a user namespace whose limits allow no new namespaces (as on a site that turned them
    off: the kernel refuses, ENOSPC), the check says why, and a ``{port}`` app listens on the
    host's 127.0.0.1 behind the session secret, as before private namespaces existed."""
    if not _transport.private_network_available():
        pytest.skip(f"no private namespaces here at all: {_transport.private_network_problem()}")
    result = subprocess.run(
        ["unshare", "--user", "--map-root-user", "sh", "-c", NO_NAMESPACES, "sh",
         sys.executable, "-c", FALLBACK, str(BACKEND)],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    problem, chosen = result.stdout.strip().splitlines()[-2:]
    assert "could not make a private network namespace" in problem
    assert "No space left on device" in problem
    name, port = chosen.split()
    assert name == "loopback" and int(port) > 0


def test_a_request_that_comes_early_waits_for_the_app(tmp_path: Path) -> None:
    """A connection made while the app does not listen yet (the readiness probe, a page loaded
    early) is held and answered once the app listens, not closed at once."""
    sock, port = tmp_path / "app.sock", 23457
    app = f"sleep 0.6; exec {sys.executable} -m http.server --bind 127.0.0.1 {port}"
    runner = subprocess.Popen(
        [sys.executable, "-S", str(NETNS), "--socket", str(sock), "--port", str(port), "--",
         "/bin/sh", "-c", app],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )  # fmt: skip
    try:
        wait_until(sock.exists, timeout=10, what="the runner's socket")
        started = time.monotonic()
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(10)
            client.connect(str(sock))
            client.sendall(b"GET / HTTP/1.0\r\n\r\n")
            answer = client.recv(100)
        assert answer.startswith(b"HTTP/1.0 200"), answer
        assert time.monotonic() - started > 0.3  # it did wait for the app
    finally:
        runner.terminate()
        runner.wait(10)


def test_an_app_on_ipv6_loopback_only_gets_the_advice(tmp_path: Path) -> None:
    """In its private namespace, as on the host: nbviz reaches apps on 127.0.0.1, and an app
    that listens on [::1] only is told so."""
    server = textwrap.dedent(
        """
        import http.server as h, socket, sys
        class S(h.HTTPServer):
            address_family = socket.AF_INET6
        S(("::1", int(sys.argv[1])), h.SimpleHTTPRequestHandler).serve_forever()
        """
    )
    script = tmp_path / "v6.py"
    script.write_text(server)
    process = Process(
        Spec.build([sys.executable, str(script), "{port}"], timeout=3), private_route=True
    )
    try:
        process.start()
        assert process.transport.name == "private"
        with pytest.raises(ReadyTimeoutError, match=r"listens on \[::1\]:\d+ instead"):
            process.wait_ready(10)
    finally:
        process.stop()


REACH = textwrap.dedent(
    """
    import socket, sys
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3).close()
        print("reached the host's service", flush=True)
    except OSError as exc:
        print("could not reach the host's service:", type(exc).__name__, flush=True)
    """
)


@pytest.mark.parametrize(
    ("network", "transport", "outcome"),
    [
        ("auto", "private", "could not reach the host's service"),
        ("host", "loopback", "reached the host's service"),
    ],
)
def test_a_private_app_has_no_network_but_its_own(
    network: str, transport: str, outcome: str, tmp_path: Path
) -> None:
    """In its namespace an app reaches nothing outside it, not even a service on the host's
    127.0.0.1 (a database, a Dask scheduler); network="host" is for such an app."""
    with socket.create_server(("127.0.0.1", 0)) as service:
        port = service.getsockname()[1]
        reach = tmp_path / "reach.py"
        reach.write_text(REACH)
        command = [
            "sh",
            "-c",
            f"{sys.executable} {reach} {port}; exec {sys.executable} {BACKEND} --port {{port}}",
        ]
        spec = Spec.build(command, timeout=20, network=network)  # type: ignore[arg-type]
        process = Process(spec, private_route=True)
        try:
            process.start()
            process.wait_ready(20)
            assert process.transport.name == transport
            assert outcome in process.logs()
        finally:
            process.stop()
