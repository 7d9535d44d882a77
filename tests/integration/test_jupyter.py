"""Integration: a real Jupyter server (base URL /user/alice/, token), kernel and backends."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest
import websocket
from jupyter_helpers import (
    BACKEND,
    REPO,
    ROUTES,
    TRANSPORTS,
    JupyterServer,
    Kernel,
    expected_url,
    pid_running,
    start_app,
    wait_until,
    ws_connect,
)

pytestmark = pytest.mark.jupyter


@pytest.mark.parametrize("route", list(ROUTES))
def test_kernel_computes_the_url_and_it_works(
    route: str, kernel: Kernel, jupyter_server: JupyterServer
) -> None:
    info = start_app(kernel, route)
    assert info["route"] == ROUTES[route][0]
    assert info["url"] == expected_url(info, route)
    assert info["transport"] == TRANSPORTS[route]
    assert (info["socket"] is not None) == (TRANSPORTS[route] in ("unix", "private"))
    assert jupyter_server.token not in info["url"]
    # HTTP through the server, authenticated
    status, body, _ = jupyter_server.get(info["url"] + "docs/")
    assert status == 200 and b"via the proxy" in body
    assert b'<p id="where">/docs/</p>' in body  # the prefix is stripped
    # websocket round trip through the server
    # like a browser, offer compression: each leg must negotiate its own extensions
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
    ws = ws_connect(
        jupyter_server,
        info["url"] + "ws",
        header=[f"Authorization: token {jupyter_server.token}", offer],
    )
    try:
        ws.send("ping through jupyter")
        assert ws.recv() == "ping through jupyter"
        ws.send_binary(b"\x00\x01binary")
        assert ws.recv() == b"\x00\x01binary"
    finally:
        ws.close()
    kernel.run("app.stop()")
    if route.startswith("nbviz"):  # a stopped session is gone from the route
        assert jupyter_server.get(info["url"])[0] == 404


def test_route_direct_asked_for_in_a_server_kernel_says_so(kernel: Kernel) -> None:
    """route='direct' behind a Jupyter server: the warning says the frame bypasses the server
    as asked (it said that no Jupyter server was found behind the kernel)."""
    out = kernel.run(
        "import sys, warnings\n"
        "from nbviz import WebApp\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    direct = WebApp([sys.executable, {str(BACKEND)!r}, '--port', '{{port}}'],"
        " route='direct')\n"
        "direct.stop()\n"
        "print([str(w.message) for w in caught])"
    )
    assert "route='direct': the frame loads http://127.0.0.1:" in out, out
    assert "no Jupyter server found" not in out, out


@pytest.mark.parametrize("route", list(ROUTES))
def test_unauthenticated_requests_are_refused(
    route: str, kernel: Kernel, jupyter_server: JupyterServer
) -> None:
    info = start_app(kernel, route)
    status, body, headers = jupyter_server.get(info["url"], auth=False)
    assert status in (302, 401, 403), status
    assert b"via the proxy" not in body
    if status == 302:
        assert "/login" in headers["Location"]
    with pytest.raises(websocket.WebSocketException):
        ws_connect(jupyter_server, info["url"] + "ws").close()
    wrong = [f"Authorization: token not-{jupyter_server.token}"]
    with pytest.raises(websocket.WebSocketException):
        ws_connect(jupyter_server, info["url"] + "ws", header=wrong).close()
    kernel.run("app.stop()")


@pytest.mark.parametrize("route", ["nbviz-tcp", "nbviz-loopback", "proxy"])
def test_absolute_route_passes_the_full_path(
    route: str, kernel: Kernel, jupyter_server: JupyterServer
) -> None:
    info = start_app(kernel, route, extra=", absolute_url=True")
    if route == "proxy":
        assert info["route"] == "absolute"
        assert info["url"] == f"/user/alice/proxy/absolute/{info['port']}/"
    else:
        assert info["url"] == expected_url(info, route)
    status, body, _ = jupyter_server.get(info["url"] + "x")
    assert status == 200
    assert f'<p id="where">{info["url"]}x</p>'.encode() in body
    kernel.run("app.stop()")


ASGI = """
import json, sys
from nbviz import WebApp
listen = ["--uds", "{{unix_socket}}"] if {unix!r} else ["--port", "{{port}}"]
asgi = WebApp([sys.executable, "-m", "uvicorn", "--app-dir", {resources!r}, "asgi_app:app",
               *listen, "--root-path", "{{prefix}}"], route={route!r})
asgi.wait_ready(30)
print(json.dumps(asgi.url))
"""


@pytest.mark.parametrize("route", list(ROUTES))
def test_an_asgi_app_told_its_root_path(
    route: str, kernel: Kernel, jupyter_server: JupyterServer
) -> None:
    """An ASGI app (uvicorn) given ``--root-path {prefix}`` with the default, prefix-stripping
    route builds its links, redirects and websocket under the route, as docs/routes.md says."""
    choice, unix = ROUTES[route]
    code = ASGI.format(resources=str(BACKEND.parent), route=choice, unix=unix)
    url = json.loads(kernel.run(code).strip().splitlines()[-1])
    status, body, _ = jupyter_server.get(url)
    assert status == 200, body
    assert f'<a id="other" href="{url}other">'.encode() in body
    status, body, _ = jupyter_server.get(url + "other")
    assert (status, body) == (200, b"the other page")
    status, _, headers = jupyter_server.get(url + "go")
    assert status == 307 and headers["Location"] == jupyter_server.url(url + "other")
    # a root-relative redirect that carries the prefix keeps it once through nbviz's route;
    # jupyter-server-proxy prefixes it again (docs/routes.md, known limits)
    status, _, headers = jupyter_server.get(url + "go-path")
    path = urllib.parse.urlsplit(url).path
    twice = path + path.lstrip("/")
    assert status == 307 and headers["Location"] == (twice if choice == "proxy" else path) + "other"
    ws = ws_connect(
        jupyter_server, url + "ws", header=[f"Authorization: token {jupyter_server.token}"]
    )
    try:
        ws.send("through the root path")
        assert ws.recv() == "through the root path"
    finally:
        ws.close()
    kernel.run("asgi.stop()")


RELATIVE_SOCKET = """
import json, os, sys
from nbviz import WebApp
os.chdir({here!r})
os.makedirs("elsewhere", exist_ok=True)
relative = WebApp([sys.executable, {backend!r}, "--unix-socket", "{{unix_socket}}"],
                  unix_socket="app.sock", cwd="elsewhere")
relative.wait_ready(30)
print(json.dumps([relative.url, relative.endpoint.unix_socket]))
"""


def test_a_relative_socket_path(
    kernel: Kernel, jupyter_server: JupyterServer, tmp_path: Path
) -> None:
    """unix_socket="app.sock" is the kernel's ./app.sock, for the app (started in another
    cwd=) and for the Jupyter server (whose working directory is yet another) alike."""
    code = RELATIVE_SOCKET.format(here=str(tmp_path), backend=str(BACKEND))
    url, path = json.loads(kernel.run(code).strip().splitlines()[-1])
    assert path == str(tmp_path / "app.sock")
    status, body, _ = jupyter_server.get(url + "docs/")
    assert status == 200 and b'<p id="where">/docs/</p>' in body
    kernel.run("relative.stop()")


FLASK_SECRET = """
import json, os, sys
os.chdir({here!r})
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
from nbviz import WebApp
{notebook}
app.wait_ready(30)
print(json.dumps({{"url": app.url, "path": app.path, "port": app.endpoint.port}}))
"""


def webapp_doc_examples() -> tuple[str, str]:
    """The secret example of docs/webapp.md: app.py and the notebook's lines, as written."""
    text = (REPO / "docs" / "webapp.md").read_text()
    section = text.split("## A secret for apps on a TCP port", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks[0].startswith("# app.py") and blocks[1].startswith("# in the notebook")
    return blocks[0], blocks[1]


def test_the_documented_secret_checking_app(
    server_without_nbviz: JupyterServer, tmp_path: Path
) -> None:
    """docs/webapp.md's Flask app, run exactly as written behind jupyter-server-proxy (the case
    it is for): the frame's first URL gets in and sets the cookie, which admits later pages;
    a request without them gets 403, through the proxy and straight to the port."""
    server = server_without_nbviz
    app_py, notebook = webapp_doc_examples()
    (tmp_path / "app.py").write_text(app_py)
    kernel = Kernel(server)
    try:
        code = FLASK_SECRET.format(here=str(tmp_path), notebook=notebook)
        info = json.loads(kernel.run(code).strip().splitlines()[-1])
        assert info["path"].startswith("/?key=")
        first = info["url"] + info["path"].lstrip("/")
        status, body, headers = server.get(first)
        assert status == 200 and b"only for my notebook" in body
        cookie = headers["Set-Cookie"].split(";", 1)[0]
        assert cookie.startswith("app-")
        assert server.get(info["url"], headers={"Cookie": cookie})[0] == 200
        assert server.get(info["url"])[0] == 403
        assert server.get(info["url"] + "?key=guess")[0] == 403
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{info['port']}/", timeout=10)
        assert refused.value.code == 403
        refused.value.close()
    finally:
        kernel.run("app.stop()")
        kernel.close()


#: A backend that leaves a daemon behind at once (double fork and a session of its own): it is
#: in neither the backend's process tree nor its process group when the kernel dies.
DAEMONIZING = """
import sys
from nbviz import WebApp
shell = "(setsid sleep 300 & echo $! > {pidfile}); exec \\"$0\\" {backend} --port {{port}}"
daemonizing = WebApp(["sh", "-c", shell, sys.executable])
daemonizing.wait_ready(30)
print(daemonizing.pid)
"""


def test_sigkill_of_the_kernel_ends_its_backends(
    kernel: Kernel, jupyter_server: JupyterServer, tmp_path: Path
) -> None:
    first = start_app(kernel, "nbviz-unix")
    second = start_app(kernel, "proxy")
    pidfile = tmp_path / "daemon.pid"
    backend = int(kernel.run(DAEMONIZING.format(pidfile=pidfile, backend=BACKEND)).split()[-1])
    daemon = int(pidfile.read_text())
    assert pid_running(daemon) and os.getsid(daemon) != os.getsid(backend)
    assert daemon not in [p.pid for p in psutil.Process(backend).children(recursive=True)]
    pids = [first["pid"], second["pid"], daemon]
    assert all(psutil.pid_exists(pid) for pid in pids)
    root = jupyter_server.root / "runtime" / "nbviz"
    sessions = [root / first["session"], root / second["session"]]
    assert all(p.is_dir() for p in sessions)
    started = time.monotonic()
    os.kill(kernel.pid, signal.SIGKILL)
    wait_until(lambda: not any(pid_running(pid) for pid in pids), timeout=8, what="backends to end")
    elapsed = time.monotonic() - started
    wait_until(lambda: not any(p.exists() for p in sessions), timeout=5, what="session dirs")
    assert elapsed < 8
    assert jupyter_server.get(f"nbviz/{first['session']}/")[0] == 404


def test_restarting_the_kernel_ends_its_backends(
    kernel: Kernel, jupyter_server: JupyterServer
) -> None:
    """Kernel > Restart (a shutdown request, then a new kernel process): the old kernel's
    backends and session directories are gone, and the new kernel starts apps again."""
    first = start_app(kernel, "nbviz-unix")
    second = start_app(kernel, "proxy")
    root = jupyter_server.root / "runtime" / "nbviz"
    status, body, _ = jupyter_server.post(f"api/kernels/{kernel.id}/restart", {})
    assert status == 200, body
    pids = [first["pid"], second["pid"]]
    wait_until(lambda: not any(pid_running(pid) for pid in pids), timeout=10, what="backends")
    sessions = [root / first["session"], root / second["session"]]
    wait_until(lambda: not any(p.exists() for p in sessions), timeout=5, what="session dirs")
    kernel.client.wait_for_ready(timeout=60)
    again = start_app(kernel, "nbviz-unix")
    assert jupyter_server.get(again["url"] + "docs/")[0] == 200
    kernel.run("app.stop()")
