"""nbviz's own route `{base}nbviz/<session>/`: streaming, big messages, credentials, privacy."""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
import websocket
from jupyter_helpers import BACKEND, JupyterServer, Kernel, start_app, wait_until, ws_connect
from user_helpers import other_user, run_as

from nbviz import _registry
from nbviz._process import Process
from nbviz._spec import Spec

pytestmark = pytest.mark.jupyter

_spec = importlib.util.spec_from_file_location("nbviz_test_backend", BACKEND)
assert _spec is not None and _spec.loader is not None
backend = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(backend)


@pytest.fixture
def app(kernel: Kernel) -> Iterator[dict[str, Any]]:
    info = start_app(kernel, "nbviz-unix")
    yield info
    kernel.run("app.stop()")


def test_backend_never_sees_jupyters_credentials(
    app: dict[str, Any], jupyter_server: JupyterServer
) -> None:
    cookie = (
        f"_xsrf=2|abc; username-127-0-0-1-{jupyter_server.port}=login-secret; "
        "jupyterhub-session-id=hub-secret; mine=kept"
    )
    status, body, _ = jupyter_server.get(
        app["url"] + f"headers?token={jupyter_server.token}&a=1",
        headers={"Cookie": cookie, "X-XSRFToken": "xsrf-secret"},
    )
    assert status == 200
    seen = json.loads(body)
    assert seen["query"] == "a=1"
    assert seen["headers"].get("Cookie") == "mine=kept"
    for secret in ("Authorization", "X-Xsrftoken"):
        assert secret not in seen["headers"]
    assert "secret" not in body.decode() and jupyter_server.token not in body.decode()
    # the same for a websocket handshake
    ws = ws_connect(
        jupyter_server,
        app["url"] + f"ws-headers?token={jupyter_server.token}&b=2",
        header=[f"Authorization: token {jupyter_server.token}", f"Cookie: {cookie}"],
    )
    try:
        handshake = json.loads(ws.recv())
    finally:
        ws.close()
    assert handshake["query"] == "b=2"
    assert handshake["headers"].get("Cookie") == "mine=kept"
    assert "Authorization" not in handshake["headers"]
    assert jupyter_server.token not in json.dumps(handshake)


def test_backend_connections_are_kept_alive(
    app: dict[str, Any], jupyter_server: JupyterServer
) -> None:
    """Requests in a row reuse one pooled connection to the backend (jupyter-server-proxy
    opens one per request)."""
    seen = set()
    for _ in range(4):
        status, body, _ = jupyter_server.get(app["url"] + "connection")
        assert status == 200
        seen.add(json.loads(body)["connection"])
    assert len(seen) == 1, seen


class Growth:
    """The peak growth of a process's RSS over a ``with`` block (see ``peak_growth``)."""

    bytes = 0


@contextmanager
def peak_growth(server: JupyterServer) -> Iterator[Growth]:
    """Sample the server's RSS every 50 ms during the block; ``.bytes`` is its peak growth."""
    process = psutil.Process(server.proc.pid)  # type: ignore[union-attr]
    baseline = process.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.05):
            peak = max(peak, process.memory_info().rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    growth = Growth()
    try:
        yield growth
    finally:
        done.set()
        sampler.join()
        growth.bytes = peak - baseline


def test_a_1_gib_body_streams_with_bounded_server_memory(
    app: dict[str, Any], jupyter_server: JupyterServer
) -> None:
    size = 1 << 30
    request = urllib.request.Request(
        jupyter_server.url(app["url"] + f"bytes/{size}"),
        headers={"Authorization": f"token {jupyter_server.token}"},
    )
    received = 0
    with (
        peak_growth(jupyter_server) as growth,
        urllib.request.urlopen(request, timeout=120) as response,
    ):
        assert response.headers["Content-Length"] == str(size)
        while chunk := response.read(1 << 20):
            assert chunk == backend.pattern(received, len(chunk)), f"wrong bytes at {received}"
            received += len(chunk)
    assert received == size
    assert growth.bytes < 150 * (1 << 20), (
        f"server grew by {growth.bytes >> 20} MiB while relaying 1 GiB"
    )


def test_a_600_mib_upload_streams_with_bounded_server_memory(
    app: dict[str, Any], jupyter_server: JupyterServer
) -> None:
    """A request body goes to the backend as it arrives: beyond Jupyter's 512 MiB
    max_body_size (which holds bodies in memory), with the server's memory flat, every byte
    in order; and the small-body path still works on the same connection."""
    size, piece = 600 << 20, os.urandom(1 << 20)
    digest = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for i in range(size // len(piece)):
            chunk = piece[i % 7 :] + piece[: i % 7]  # not the same bytes every time
            digest.update(chunk)
            yield chunk

    conn = http.client.HTTPConnection("127.0.0.1", jupyter_server.port, timeout=120)
    auth = {"Authorization": f"token {jupyter_server.token}"}
    try:
        with peak_growth(jupyter_server) as growth:
            conn.request(
                "POST",
                app["url"] + "upload",
                body=body(),
                headers={**auth, "Content-Length": str(size)},
            )
            response = conn.getresponse()
            answer = json.loads(response.read())
        assert response.status == 200, answer
        assert answer == {"length": size, "sha256": digest.hexdigest()}
        assert growth.bytes < 150 * (1 << 20), (
            f"server grew by {growth.bytes >> 20} MiB for a 600 MiB upload"
        )
        conn.request("POST", app["url"] + "upload", body=b"small", headers=auth)
        answer = json.loads(conn.getresponse().read())
        assert answer == {"length": 5, "sha256": hashlib.sha256(b"small").hexdigest()}
    finally:
        conn.close()


def test_a_chunked_upload_arrives_whole(app: dict[str, Any], jupyter_server: JupyterServer) -> None:
    """A body without Content-Length (``Transfer-Encoding: chunked``, as a generator or a
    browser's stream gives): every byte reaches the backend, small and large."""
    auth = {"Authorization": f"token {jupyter_server.token}"}
    conn = http.client.HTTPConnection("127.0.0.1", jupyter_server.port, timeout=60)
    try:
        for pieces in ([b"hello-", b"chunked-", b"body"], [os.urandom(1 << 20)] * 5):
            conn.request("POST", app["url"] + "upload", body=iter(pieces), headers=auth)
            response = conn.getresponse()
            answer = json.loads(response.read())
            whole = b"".join(pieces)
            assert response.status == 200, answer
            assert answer == {"length": len(whole), "sha256": hashlib.sha256(whole).hexdigest()}
    finally:
        conn.close()


def test_an_upload_cut_off_by_the_browser_is_cut_off_at_the_backend(
    app: dict[str, Any], jupyter_server: JupyterServer
) -> None:
    """The browser goes away mid-upload: the backend's request ends too (it is not left
    waiting for bytes that will never come)."""
    sock = socket.create_connection(("127.0.0.1", jupyter_server.port))
    head = (
        f"POST {app['url']}upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: token {jupyter_server.token}\r\nContent-Length: {100 << 20}\r\n\r\n"
    )
    sock.sendall(head.encode() + os.urandom(5 << 20))
    sock.close()

    def cut_off() -> list[int]:
        status, body, _ = jupyter_server.get(app["url"] + "uploads-cut-off")
        assert status == 200
        return list(json.loads(body)["cut_off"])

    wait_until(lambda: len(cut_off()) == 1, timeout=10, what="the backend to see the cut")
    assert 0 < cut_off()[0] <= 5 << 20


def test_large_bodies_arrive_whole_and_the_connection_lives_on(
    app: dict[str, Any], jupyter_server: JupyterServer
) -> None:
    """Bodies from 1 MiB on are pumped socket to socket: every byte arrives in order, the
    browser's connection serves the next request, and a backend cut off mid-body cuts the
    body off (not a hang, and the server carries on)."""
    auth = {"Authorization": f"token {jupyter_server.token}"}
    conn = http.client.HTTPConnection("127.0.0.1", jupyter_server.port, timeout=30)
    try:
        sock = None
        for size in ((1 << 20) - 1, 1 << 20, (3 << 20) + 7, 0):
            conn.request("GET", app["url"] + f"bytes/{size}", headers=auth)
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200 and len(body) == size
            assert all(
                body[i : i + (1 << 20)] == backend.pattern(i, len(body[i : i + (1 << 20)]))
                for i in range(0, size, 1 << 20)
            )
            sock = sock or conn.sock
            assert conn.sock is sock, "the server closed the connection after a body"
        conn.request("GET", app["url"] + f"cut/{5 << 20}", headers=auth)
        response = conn.getresponse()
        with pytest.raises(http.client.IncompleteRead):
            response.read()
    finally:
        conn.close()
    status, body, _ = jupyter_server.get(app["url"] + "bytes/10")
    assert (status, body) == (200, backend.pattern(0, 10))
    # A 304 may give the page's length without sending it: nothing to wait for.
    assert jupyter_server.get(app["url"] + "not-modified")[0] == 304


def test_websocket_handshake_is_the_backends(
    app: dict[str, Any], jupyter_server: JupyterServer
) -> None:
    """The backend answers the browser's handshake itself (its choice of subprotocol reaches
    the browser; a relay that answers on its own picks the first) and frames pass through."""
    ws = ws_connect(
        jupyter_server,
        app["url"] + "ws",
        header=[f"Authorization: token {jupyter_server.token}"],
        subprotocols=["first", "second"],
    )
    try:
        assert ws.getsubprotocol() == "second"
        for message in (b"", b"x" * 125, os.urandom(70000)):
            ws.send_binary(message)
            assert ws.recv() == message
        ws.send("text")
        assert ws.recv() == "text"
    finally:
        ws.close()


def test_idle_websockets_hold_no_pump_buffers(
    app: dict[str, Any], jupyter_server: JupyterServer
) -> None:
    """An open, idle websocket costs the server little memory: the tunnel's buffers are taken
    only while bytes move (a dashboard or a desktop keeps websockets open for hours)."""
    process = psutil.Process(jupyter_server.proc.pid)  # type: ignore[union-attr]
    header = [f"Authorization: token {jupyter_server.token}"]
    sockets = [ws_connect(jupyter_server, app["url"] + "ws", header=header)]  # warm up
    sockets[0].send_binary(b"x" * 100_000)
    assert sockets[0].recv() == b"x" * 100_000
    before = process.memory_info().rss
    try:
        for _ in range(200):
            sockets.append(ws_connect(jupyter_server, app["url"] + "ws", header=header))
            sockets[-1].send("hello")
            assert sockets[-1].recv() == "hello"
        grown = process.memory_info().rss - before
        # 5.6 MiB here; 106 MiB when each tunnel held two 256 KiB buffers for its lifetime
        assert grown < 200 * 64 * 1024, f"{grown / 2**20:.1f} MiB for 200 idle websockets"
    finally:
        for ws in sockets:
            ws.close()


def test_over_https_the_route_relays_through_tornado(tmp_path: Path) -> None:
    """Jupyter serving HTTPS itself: bytes cannot be pumped into its TLS socket, so the route
    relays bodies and websockets through tornado (and the relay picks the first subprotocol)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-days", "1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    with JupyterServer(root=tmp_path / "tls", app="server", tls=(cert, key)) as server:
        kernel = Kernel(server)
        try:
            info = start_app(kernel, "nbviz-unix")
            size = (3 << 20) + 7
            status, body, _ = server.get(info["url"] + f"bytes/{size}")
            assert status == 200 and len(body) == size
            assert body[-1000:] == backend.pattern(size - 1000, 1000)
            ws = websocket.create_connection(
                f"wss://127.0.0.1:{server.port}{info['url']}ws",
                timeout=10,
                header=[f"Authorization: token {server.token}"],
                subprotocols=["first", "second"],
                sslopt={"cert_reqs": ssl.CERT_NONE},
            )
            try:
                assert ws.getsubprotocol() == "first"
                message = os.urandom(3 << 20)
                ws.send_binary(message)
                assert ws.recv() == message
            finally:
                ws.close()
            kernel.run("app.stop()")
        finally:
            kernel.close()


def test_a_20_mib_websocket_message(app: dict[str, Any], jupyter_server: JupyterServer) -> None:
    ws = ws_connect(
        jupyter_server, app["url"] + "ws", header=[f"Authorization: token {jupyter_server.token}"]
    )
    ws.settimeout(60)
    try:
        message = os.urandom(20 << 20)
        ws.send_binary(message)
        assert ws.recv() == message
    finally:
        ws.close()


def test_redirects_stay_under_the_route(app: dict[str, Any], jupyter_server: JupyterServer) -> None:
    status, _, headers = jupyter_server.get(app["url"] + "redirect")
    assert status == 302
    assert headers["Location"] == app["url"] + "docs/"


def test_unknown_sessions_and_missing_slash(
    app: dict[str, Any], jupyter_server: JupyterServer
) -> None:
    status, body, _ = jupyter_server.get("nbviz/000000000000/")
    assert status == 404 and b"no session 000000000000" in body
    assert jupyter_server.get("nbviz/not-a-session/")[0] in (302, 404)  # not our route at all
    status, _, headers = jupyter_server.get(app["url"].rstrip("/"))
    assert status == 302 and headers["Location"].endswith(app["url"])


def test_sessions_api_lists_the_session(app: dict[str, Any], jupyter_server: JupyterServer) -> None:
    status, body, _ = jupyter_server.get("nbviz/api/sessions")
    assert status == 200
    sessions = {s["id"]: s for s in json.loads(body)["sessions"]}
    assert sessions[app["session"]]["transport"] == "unix"
    assert sessions[app["session"]]["url"] == app["url"]
    assert jupyter_server.get("nbviz/api/sessions", auth=False)[0] in (302, 403)


def test_a_backend_that_does_not_answer_gives_a_clear_502_and_a_crashed_one_404(
    kernel: Kernel, jupyter_server: JupyterServer
) -> None:
    info = start_app(kernel, "nbviz-unix")
    # still running, but nothing answers on its socket any more
    kernel.run("import os, signal; os.unlink(app.endpoint.unix_socket)")
    status, body, _ = jupyter_server.get(info["url"])
    assert status == 502 and b"does not answer" in body
    # crashed: its session is gone from the route with it
    kernel.run("os.kill(app.pid, signal.SIGKILL)")
    wait_until(lambda: kernel.run("print(app.status)").strip() == "crashed", what="crashed")
    status, body, _ = jupyter_server.get(info["url"])
    assert status == 404 and b"(stopped, crashed, or never started)" in body
    kernel.run("app.stop()")


def test_falls_back_to_jupyter_server_proxy(server_without_nbviz: JupyterServer) -> None:
    kernel = Kernel(server_without_nbviz)
    try:
        info = start_app(kernel, "nbviz-tcp")
    except AssertionError as exc:  # route="nbviz" was asked for explicitly: a clear error
        assert "nbviz server extension is not loaded" in str(exc)
    else:
        raise AssertionError(f"route='nbviz' without the extension gave {info}")
    out = kernel.run(
        "import sys\nfrom nbviz import WebApp\n"
        f"auto = WebApp([sys.executable, {str(BACKEND)!r}, '--port', '{{port}}'])\n"
        "auto.wait_ready(30); print(auto.route, auto.url, auto.endpoint.port)\n"
        "try:\n"
        f"    WebApp([sys.executable, {str(BACKEND)!r}, '--unix-socket', '{{unix_socket}}'])\n"
        "except Exception as exc:\n"
        "    print('ERROR', exc)\n"
    )
    first, second = out.strip().splitlines()[-2:]
    route, url, port = first.split()
    assert (route, url) == ("proxy", f"/user/alice/proxy/{port}/")
    assert second.startswith("ERROR nbviz: a backend on a Unix socket needs nbviz's own route")
    status, body, _ = server_without_nbviz.get(url)
    assert status == 200 and b"Hello" in body
    kernel.run("auto.stop()")
    kernel.close()


SECRET_APP = (
    "import json, sys\nfrom nbviz import WebApp\n"
    "app = WebApp([sys.executable, {backend!r}, '--port', '{{port}}', '--require-secret', "
    "{name!r}], secret_param={name!r}, path='/docs/')\n"
    "app.wait_ready(30)\n"
    "print(json.dumps({{'route': app.route, 'url': app.url, 'path': app.path, "
    "'argv': app.command, 'secret': app._process.secret}}))\n"
)


def test_tcp_fallback_admits_only_the_session_secret(server_without_nbviz: JupyterServer) -> None:
    """Without nbviz's route the backend sits on a loopback port: the page hands it the
    per-session secret (from the environment, not the command line) and others get 403."""
    kernel = Kernel(server_without_nbviz)
    code = SECRET_APP.format(backend=str(BACKEND), name="key")
    try:
        info = json.loads(kernel.run(code).splitlines()[-1])
        secret = info["secret"]
        assert info["route"] == "proxy" and len(secret) >= 32
        assert info["path"] == f"/docs/?key={secret}"
        assert not any(secret in item for item in info["argv"])
        status, _, _ = server_without_nbviz.get(info["url"] + "docs/")
        assert status == 403
        status, _, _ = server_without_nbviz.get(info["url"] + "docs/?key=guess")
        assert status == 403
        status, body, _ = server_without_nbviz.get(info["url"] + info["path"].lstrip("/"))
        assert status == 200 and b'<p id="where">/docs/</p>' in body
        # the next start gets a new secret; the old one no longer opens the app
        out = kernel.run("app.restart(); app.wait_ready(30); print(app.url, app.path)")
        url, path = out.splitlines()[-1].split()
        assert secret not in path
        status, _, _ = server_without_nbviz.get(url + f"docs/?key={secret}")
        assert status == 403
        status, _, _ = server_without_nbviz.get(url + path.lstrip("/"))
        assert status == 200
    finally:
        kernel.run("app.stop()")
        kernel.close()


def login_cookie(server: JupyterServer) -> str:
    """The login cookie a browser gets from Jupyter's token URL (a browser's credentials)."""
    status, _, headers = server.get(f"{server.base_url}tree?token={server.token}", auth=False)
    assert status in (200, 302), status
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    assert cookie.startswith("username-")
    return cookie


def test_our_route_passes_the_session_secret_but_not_jupyters_token(
    kernel: Kernel, jupyter_server: JupyterServer
) -> None:
    """A backend that takes its secret as ``token`` (like a Jupyter server) gets it; Jupyter's
    own token under that name is still removed."""
    info = json.loads(
        kernel.run(SECRET_APP.format(backend=str(BACKEND), name="token")).splitlines()[-1]
    )
    browser = {"Cookie": login_cookie(jupyter_server)}
    try:
        assert info["route"] == "nbviz"
        status, _, _ = jupyter_server.get(
            info["url"] + info["path"].lstrip("/"), auth=False, headers=browser
        )
        assert status == 200
        status, body, _ = jupyter_server.get(info["url"] + f"headers?token={jupyter_server.token}")
        assert status == 403 and jupyter_server.token.encode() not in body
        status, body, _ = jupyter_server.get(
            info["url"] + f"headers?token={info['secret']}", auth=False, headers=browser
        )
        assert status == 200 and json.loads(body)["query"] == f"token={info['secret']}"
    finally:
        kernel.run("app.stop()")


def test_sweep_removes_sessions_of_dead_kernels(tmp_path: Path) -> None:
    root = tmp_path / "nbviz"
    root.mkdir(mode=0o700)
    dead = subprocess.Popen(["true"])
    dead.wait()
    for session, owner in (("aaaaaaaaaaaa", dead.pid), ("bbbbbbbbbbbb", os.getpid())):
        (root / session).mkdir(mode=0o700)
        _registry.write_entry(
            root / session, _registry.Entry(session, port=1, pid=dead.pid, owner_pid=owner)
        )
    assert _registry.sweep_stale(root) == ["aaaaaaaaaaaa"]
    assert sorted(p.name for p in root.iterdir()) == ["bbbbbbbbbbbb"]


def test_entries_are_reread_when_rewritten_and_refused_when_opened_up(tmp_path: Path) -> None:
    """The server keeps parsed entries (it reads one per request), but never a stale or a
    no-longer-private one."""
    root = tmp_path / "nbviz"
    root.mkdir(mode=0o700)
    session = root / "cccccccccccc"
    session.mkdir(mode=0o700)
    for port in (1111, 2222):
        _registry.write_entry(session, _registry.Entry(session.name, port=port))
        entry = _registry.read_entry(session.name, root)
        assert entry is not None and entry.port == port
    (session / _registry.ENDPOINT_FILE).chmod(0o644)
    assert _registry.read_entry(session.name, root) is None
    (session / _registry.ENDPOINT_FILE).chmod(0o600)
    session.chmod(0o755)
    assert _registry.read_entry(session.name, root) is None


# --------------------------------------------------------------------- other local users
PROBE = """
import json, os, socket, sys
path, root, entry = sys.argv[1:4]
result = {}
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(path); result["connect"] = "ok"
except OSError as e:
    result["connect"] = type(e).__name__
for name, action in (("list", lambda: os.listdir(root)), ("read", lambda: open(entry).read())):
    try:
        action(); result[name] = "ok"
    except OSError as e:
        result[name] = type(e).__name__
print(json.dumps(result))
"""


def _as_other(user: str, *args: str) -> dict[str, str]:
    return dict(run_as(user, PROBE, *args, timeout=30))


def test_another_local_user_cannot_reach_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    user = other_user()
    # A world-traversable parent, so only nbviz's own permissions stand in the way.
    base = Path(tempfile.mkdtemp(prefix="nbviz-sec-", dir="/tmp"))
    base.chmod(0o755)
    monkeypatch.setenv("NBVIZ_RUNTIME_DIR", str(base / "nbviz"))
    process = Process(Spec.build([sys.executable, str(BACKEND), "--unix-socket", "{unix_socket}"]))
    try:
        process.start()
        process.wait_ready(30)
        sock = process.endpoint.unix_socket  # type: ignore[union-attr]
        entry = str(Path(process.session_dir) / "endpoint.json")  # type: ignore[arg-type]
        root = str(base / "nbviz")
        # we can
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(sock)
        assert _as_other(user, sock, root, entry) == {
            "connect": "PermissionError",
            "list": "PermissionError",
            "read": "PermissionError",
        }
        # control: with the permissions opened up the same probe gets through (the test can fail)
        for path in (base / "nbviz", Path(process.session_dir)):  # type: ignore[arg-type]
            path.chmod(0o755)
        os.chmod(sock, 0o777)
        os.chmod(entry, 0o644)
        assert _as_other(user, sock, root, entry) == {"connect": "ok", "list": "ok", "read": "ok"}
    finally:
        process.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_the_servers_exit_leaves_no_unclosed_client_in_its_log(tmp_path: Path) -> None:
    """The route's pooled clients of backends are let go of when the server exits: its log
    (a hub's, for single-user servers) shows no "Unclosed client session" errors."""
    with JupyterServer(root=tmp_path, app="server") as server:
        kernel = Kernel(server)
        try:
            info = start_app(kernel, "nbviz-unix")
            assert server.get(info["url"])[0] == 200  # a pooled client of the backend now
        finally:
            kernel.close()
        server.stop()
        log = (server.root / "server.log").read_text(errors="replace")
    assert "Stopping" in log or "Shutting down" in log, log[-2000:]
    assert "Unclosed client session" not in log, log[-3000:]
