"""Real Jupyter servers and kernels for nbviz's integration and browser tests."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import websocket
from jupyter_client import BlockingKernelClient

REPO = Path(__file__).resolve().parent.parent
RESOURCES = Path(__file__).parent / "resources"
BACKEND = RESOURCES / "backend.py"
TOKEN = "nbviz-test-token"


@dataclass
class JupyterServer:
    """A `jupyter lab` server started for a test, isolated in its own runtime and config dirs."""

    root: Path
    base_url: str = "/user/alice/"
    token: str = TOKEN
    extra_args: list[str] = field(default_factory=list)
    app: str = "lab"
    #: Serve HTTPS with this (certificate, key) pair (self-signed: clients here do not verify).
    tls: tuple[Path, Path] | None = None
    #: The program to run instead of ``jupyter <app>`` (e.g. ``nbviz dashboard nb.ipynb --``).
    command: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    info: dict[str, object] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("JPY_", "JUPYTER", "NBVIZ_"))
        }
        env.update(
            JUPYTER_RUNTIME_DIR=str(self.root / "runtime"),
            JUPYTER_CONFIG_DIR=str(self.root / "config"),
            JUPYTER_DATA_DIR=str(self.root / "data"),
            JUPYTER_PLATFORM_DIRS="1",
            IPYTHONDIR=str(self.root / "ipython"),
            PYTHONUNBUFFERED="1",
        )
        return env

    def start(self, timeout: float = 60) -> JupyterServer:
        for sub in ("runtime", "config", "data", "ipython", "notebooks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # The kernel must use this very Python (the venv with nbviz installed).
        spec_dir = self.root / "data" / "kernels" / "python3"
        spec_dir.mkdir(parents=True, exist_ok=True)
        (spec_dir / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": "Python 3 (nbviz tests)",
                    "language": "python",
                }
            )
        )
        self.log = open(self.root / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        args = [
            *(self.command or [sys.executable, "-m", "jupyter", self.app]),
            "--no-browser",
            "--ServerApp.port=0",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.base_url={self.base_url}",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root / 'notebooks'}",
            "--ServerApp.open_browser=False",
            "--ServerApp.disable_check_xsrf=False",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            *(["--allow-root"] if os.getuid() == 0 else []),
            *(
                [f"--ServerApp.certfile={self.tls[0]}", f"--ServerApp.keyfile={self.tls[1]}"]
                if self.tls
                else []
            ),
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(
            args, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        info_file = self.root / "runtime" / f"jpserver-{self.proc.pid}.json"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"jupyter {self.app} exited:\n{self.log_text()}")
            if info_file.exists():
                try:
                    self.info = json.loads(info_file.read_text())
                except ValueError:
                    self.info = {}
                try:
                    if self.info and self.get("api/status", auth=True)[0] == 200:
                        return self
                except OSError:  # the info file can appear before the port answers
                    pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"jupyter {self.app} did not start in {timeout} s:\n{self.log_text()}")

    def log_text(self) -> str:
        return (self.root / "server.log").read_text(errors="replace")[-5000:]

    @property
    def port(self) -> int:
        return int(self.info["port"])  # type: ignore[call-overload]

    @property
    def origin(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def url(self, path: str = "") -> str:
        """Absolute URL of ``path`` (relative to the base URL, or an absolute path)."""
        if path.startswith("/"):
            return self.origin + path
        return self.origin + self.base_url + path

    def get(
        self, path: str, *, auth: bool = True, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        request = urllib.request.Request(self.url(path), headers=headers or {})
        if auth:
            request.add_header("Authorization", f"token {self.token}")

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object, **kwargs: object) -> None:
                return None

        handlers: list[urllib.request.BaseHandler] = [NoRedirect()]
        if self.tls:
            handlers.append(urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(request, timeout=10) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    def _request(
        self, method: str, path: str, body: object | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url(path), data=data, method=method)
        request.add_header("Authorization", f"token {self.token}")
        request.add_header("Content-Type", "application/json")
        try:
            context = ssl._create_unverified_context() if self.tls else None
            with urllib.request.urlopen(request, timeout=30, context=context) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    def post(self, path: str, body: object) -> tuple[int, bytes, dict[str, str]]:
        return self._request("POST", path, body)

    def delete(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        return self._request("DELETE", path)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            children = []
            try:
                children = psutil.Process(self.proc.pid).children(recursive=True)
            except psutil.Error:
                pass
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            for child in children:
                try:
                    child.kill()
                except psutil.Error:
                    pass
        if getattr(self, "log", None):
            self.log.close()

    def __enter__(self) -> JupyterServer:
        """``with JupyterServer(...) as server:`` starts it, and stops it at the end."""
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def assert_route_answers(server: JupyterServer, url: str) -> None:
    """The backend's page answers through the route (trame and the desktops redirect to
    their client page first, within the route)."""
    status, body, headers = server.get(url)
    if status == 302:
        location = headers.get("Location") or headers.get("location", "")
        assert location.startswith((url, "./", "index.html")) or "/" not in location, headers
        status, body, _ = server.get(url + location.removeprefix(url).removeprefix("./"))
    assert status == 200, (status, body[:300])


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.1, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def running(process: psutil.Process) -> bool:
    """True while ``process`` runs: a zombie has ended (its new parent, e.g. a container's
    PID 1, may reap it late)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def pid_running(pid: int) -> bool:
    try:
        return running(psutil.Process(pid))
    except psutil.Error:
        return False


class Kernel:
    """A kernel started by the Jupyter server (as the notebook UI would), driven over ZMQ."""

    def __init__(self, server: JupyterServer, name: str = "python3") -> None:
        self.server = server
        status, body, _ = server.post("api/kernels", {"name": name})
        assert status == 201, body
        self.id = json.loads(body)["id"]
        connection = Path(server.root / "runtime" / f"kernel-{self.id}.json")
        wait_until(connection.exists, what="the kernel's connection file")
        self.client = BlockingKernelClient(connection_file=str(connection))
        self.client.load_connection_file()
        # A heartbeat missed for 1 s (jupyter_client's default) counts as a dead kernel in
        # wait_for_ready; on a loaded 2-core machine a starting kernel can miss one.
        self.client.hb_channel.time_to_dead = 10.0
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


# --------------------------------------------------- a WebApp started in a kernel, by route
START = """
import json, os, sys
from nbviz import WebApp
os.environ["NBVIZ_PRIVATE_NETWORK"] = {private!r}
listen = ["--unix-socket", "{{unix_socket}}"] if {unix!r} else ["--port", "{{port}}"]
command = [sys.executable, {backend!r}, *listen, "--heading", "via the proxy"]
app = WebApp(command, route={route!r}{extra})
app.wait_ready(30)
print(json.dumps({{"url": app.url, "route": app.route, "pid": app.pid,
                  "session": app._process.session_id, "port": app.endpoint.port,
                  "socket": app.endpoint.unix_socket, "transport": app.transport}}))
"""

#: (route asked for, backend on a Unix socket?) -> route kind and URL prefix expected
ROUTES = {
    "nbviz-unix": ("nbviz", True),
    # {port} through nbviz's route: in a private network namespace, reached by a Unix socket
    "nbviz-tcp": ("nbviz", False),
    # the same with private namespaces turned off (as where the machine has none): 127.0.0.1
    "nbviz-loopback": ("nbviz", False),
    "proxy": ("proxy", False),
}
#: The transport each route's backend gets.
TRANSPORTS = {
    "nbviz-unix": "unix",
    "nbviz-tcp": "private",
    "nbviz-loopback": "loopback",
    "proxy": "loopback",
}


def start_app(kernel: Kernel, route: str = "nbviz-unix", extra: str = "") -> dict[str, Any]:
    choice, unix = ROUTES[route]
    private = "no" if route == "nbviz-loopback" else ""
    code = START.format(backend=str(BACKEND), route=choice, unix=unix, extra=extra, private=private)
    out = kernel.run(code)
    return dict(json.loads(out.strip().splitlines()[-1]))


def expected_url(info: dict[str, Any], route: str) -> str:
    if route.startswith("nbviz"):
        return f"/user/alice/nbviz/{info['session']}/"
    return f"/user/alice/proxy/{info['port']}/"


def ws_connect(server: JupyterServer, url: str, **kwargs: Any) -> websocket.WebSocket:
    return websocket.create_connection(f"ws://127.0.0.1:{server.port}{url}", timeout=10, **kwargs)
