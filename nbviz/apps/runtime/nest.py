"""The backend process of NestDesktop: NEST Server (gunicorn) and the NEST Desktop UI as one.

Run by :class:`nbviz.apps.NestDesktop` as its backend command, by path::

    python nbviz/apps/runtime/nest.py (--socket S | --port P) --state DIR [--modules M] ...

1. Writes a per-session access token to ``DIR/nest.json`` (0600) and starts NEST Server with
   it (``NEST_SERVER_ACCESS_TOKEN``: auth stays on) under gunicorn, on a private Unix socket
   ``DIR/nest-server.sock``. Lines that would print the token are redacted.
2. Waits until NEST Server answers and runs an empty script (which imports ``--modules``). If
   it exits or fails first (a bad ``--modules``, a broken install), prints one ``nbviz:`` line
   with the reason, stops it and exits 1: the UI is never started.
3. Serves the NEST Desktop UI on ``S``: a copy of the installed app (files symlinked, not
   changed) in ``DIR/web`` with its own ``backends.json`` (NEST Server under the app's route,
   ``--prefix``), a start page ``nbviz.html`` that hands NEST Desktop the server's full URL
   (``nest_server_url``), no service worker, and ``/nestserver/...`` proxied to NEST Server
   with the token added (Jupyter's login guards the route; the browser never needs the token).
4. Watches NEST Server, an essential child of nbviz's one supervisor
   (``nbviz/_runtime/supervise.py``): if it exits, the supervisor prints the agreed last line
   (``nbviz-exit: nbviz: NEST Server exited (<how>); ...``), the UI stops and whatever
   gunicorn left behind (its worker) is ended; nbviz reports the crash with that line.

With ``--port`` (nbviz's route missing: the page comes through jupyter-server-proxy) the UI is
served on 127.0.0.1 instead, where every local user can connect; it then admits only the page
holding the session's secret (``NBVIZ_SECRET``; nbviz's one rule, ``nbviz/_gate.py``), for the
UI's files and for NEST Server, which runs the Python it is sent.

Only the standard library is used here (gunicorn and NEST run in their own process).
"""

from __future__ import annotations

if not __package__:  # run by path: plain relative imports all the same (see the file named)
    import runpy
    from pathlib import Path

    _bypath = Path(__file__).resolve().parents[2] / "_runtime" / "bypath.py"
    __package__ = runpy.run_path(str(_bypath))["package"](__file__)

import argparse
import http.client
import http.server
import importlib.util
import json
import os
import runpy
import secrets
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from ..._runtime import supervise

#: The URL path (under the app's root) where the browser reaches NEST Server.
SERVER_PATH = "nestserver"
#: The page the frame opens. NEST Desktop needs NEST Server's URL with scheme and host (it
#: joins relative ones with themselves), which only the browser knows: this page computes it
#: from its own location and hands it over in NEST Desktop's ``nest_server_url`` parameter
#: (which also wins over a URL that NEST Desktop remembered from an earlier session).
START_PAGE = """<!doctype html>
<meta charset="utf-8"><title>NEST Desktop</title>
<script>
  const server = new URL("nestserver", location.href).href;
  // NEST Desktop keeps its backend settings in localStorage (one per origin, shared by every
  // session): start each session from this one's server, switched on, so it is checked now.
  try {
    localStorage.setItem("nest-backend-store", JSON.stringify(
      {state: {enabled: true, loadedFromAssets: true, url: server}}));
  } catch (error) { /* storage disabled: the parameter below still sets the URL */ }
  const hash = location.hash && location.hash !== "#" ? location.hash : "#/nest/";
  location.replace("index.html?nest_server_url=" + encodeURIComponent(server) + hash);
</script>
"""
START_PAGE_NAME = "nbviz.html"
#: Replaces the UI's service worker registration (its cache would outlive the session).
NO_SERVICE_WORKER = "/* service worker disabled by nbviz: the app lives only for a session */\n"
SERVER_START_TIMEOUT = 60.0
HEADERS_TO_SERVER = ("Content-Type", "Accept", "Content-Length")
HEADERS_FROM_SERVER = ("Content-Type",)
#: The secret gate of TCP mode (run by path: this process must not import the nbviz package).
GATE = SimpleNamespace(**runpy.run_path(str(Path(__file__).resolve().parents[2] / "_gate.py")))


def say(message: str) -> None:
    print(f"nbviz-nest: {message}", flush=True)


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None = None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout is not None:
            sock.settimeout(self.timeout)
        sock.connect(self._socket_path)
        self.sock = sock


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def ui_root() -> Path:
    spec = importlib.util.find_spec("nest_desktop")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("nbviz: nest-desktop is not installed; run `pip install nest-desktop`")
    root = Path(next(iter(spec.submodule_search_locations))) / "app"
    if not (root / "index.html").is_file():
        raise SystemExit(f"nbviz: {root}/index.html is missing; reinstall nest-desktop")
    return root


def backends(prefix: str) -> dict[str, dict[str, object]]:
    """NEST Desktop's ``backends.json``: NEST Server under the app's route (``path`` is taken
    relative to the page's origin), the backends nbviz does not start switched off."""
    return {
        "nest": {
            "path": prefix.strip("/") + "/" + SERVER_PATH if prefix.strip("/") else SERVER_PATH,
            "enabled": True,
        },
        "insite": {"port": 52056, "enabled": False},
        "nestml": {"port": 52426, "enabled": False},
    }


def build_web_root(state: Path, prefix: str) -> Path:
    """A tree of symlinks to the installed UI with our own ``backends.json``, start page and no
    service worker. The installed package is never changed."""
    web = state / "web"
    shutil.copytree(ui_root(), web, copy_function=os.symlink)
    config = web / "assets" / "workspaces" / "nest" / "config" / "backends.json"
    if config.exists() or config.is_symlink():
        config.unlink()
    config.write_text(json.dumps(backends(prefix), indent=2) + "\n")
    (web / START_PAGE_NAME).write_text(START_PAGE)
    register = web / "registerSW.js"
    if register.is_symlink():
        register.unlink()
        register.write_text(NO_SERVICE_WORKER)
    return web


class Server:
    """NEST Server under gunicorn, its output copied to ours with the token redacted."""

    def __init__(
        self,
        supervisor: supervise.Supervisor,
        state: Path,
        token: str,
        modules: str,
        restricted: bool,
    ) -> None:
        self.socket = str(state / "nest-server.sock")
        self.token = token
        env = dict(os.environ)
        env.update(
            NEST_SERVER_ACCESS_TOKEN=token,
            NEST_SERVER_ENABLE_EXEC_CALL="1",
            NEST_SERVER_MODULES=modules,
            PYTHONUNBUFFERED="1",
        )
        env.pop("NEST_SERVER_DISABLE_AUTH", None)
        if restricted:
            env.pop("NEST_SERVER_DISABLE_RESTRICTION", None)
        else:
            env["NEST_SERVER_DISABLE_RESTRICTION"] = "1"
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "nest.server:app",
            "--bind",
            f"unix:{self.socket}",
            "--workers",
            "1",  # NEST's kernel state lives in the worker: one worker, one state
            "--timeout",
            "0",  # a long simulation is not a hung worker
            "--graceful-timeout",
            "2",
            *(["--no-control-socket"] if gunicorn_has_control_socket() else []),
        ]
        # Essential: when it ends, the session is over (the supervisor says why, with the most
        # telling line of its output, and ends the rest).
        self.proc = supervisor.spawn(
            "NEST Server",
            argv,
            essential=True,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            detail=self.reason,
        )
        self.lines: list[str] = []
        self._copier = threading.Thread(target=self._copy_output, daemon=True)
        self._copier.start()

    def _copy_output(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").replace(self.token, "<token>")
            self.lines.append(line.rstrip())
            sys.stdout.write(line)
            sys.stdout.flush()

    def answers(self) -> bool:
        conn = UnixHTTPConnection(self.socket, timeout=2)
        try:
            conn.request("GET", "/", headers={"NESTServerAuth": self.token})
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.proc.poll() is not None:
                self._copier.join(timeout=2)
                raise SystemExit(
                    f"nbviz: NEST Server exited ({supervise.describe(self.proc.returncode)}) "
                    f"while starting{self.reason()}; the NEST Desktop UI was not started"
                )
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"nbviz: NEST Server did not answer within {timeout:g} s; the NEST Desktop UI "
                    "was not started"
                )
            time.sleep(0.05)

    def check_modules(self, modules: str) -> None:
        """Run an empty script: NEST Server imports ``modules`` for every script, so a bad one
        fails here, once, instead of in every simulation the UI starts."""
        conn = UnixHTTPConnection(self.socket, timeout=60)
        try:
            conn.request(
                "POST",
                "/exec",
                body=json.dumps({"source": "pass"}).encode(),
                headers={"NESTServerAuth": self.token, "Content-Type": "application/json"},
            )
            response = conn.getresponse()
            text = response.read().decode(errors="replace")
        except OSError as exc:
            raise SystemExit(
                f"nbviz: NEST Server stopped answering while starting ({exc})"
            ) from None
        finally:
            conn.close()
        if response.status != 200:
            deadline = time.monotonic() + 2  # its traceback may still be on the way
            while not self.reason() and time.monotonic() < deadline:
                time.sleep(0.05)
            detail = self.reason() or f" (HTTP {response.status}: {' '.join(text.split())[:200]})"
            raise SystemExit(
                f"nbviz: NEST Server cannot run scripts with modules={modules!r}{detail}; "
                "fix modules= (e.g. 'import nest; import numpy as np'); the NEST Desktop UI was "
                "not started"
            )

    def reason(self) -> str:
        """The most telling line of NEST Server's output (an exception), if any."""
        for line in reversed(self.lines):
            text = line.strip()
            if text.split(":")[0].endswith(("Error", "Exception")):
                return f" ({text})"
        return ""


def gunicorn_has_control_socket() -> bool:
    """gunicorn >= 25 opens a control socket in ~/.gunicorn (shared by every session): off."""
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:
        return False
    return any(setting.name == "control_socket_disable" for setting in KNOWN_SETTINGS)


def make_handler(
    web: Path, server: Server, secret: str | None = None
) -> type[http.server.SimpleHTTPRequestHandler]:
    """The UI's request handler; with ``secret`` (TCP mode) behind the secret gate."""
    prefix = f"/{SERVER_PATH}"

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(web), **kwargs)  # type: ignore[arg-type]

        def admitted(self) -> bool:
            return bool(
                GATE.admit(
                    self, secret, "this NEST Desktop admits only the notebook that started it"
                )
            )

        def address_string(self) -> str:  # a Unix socket peer has no address
            return "local"

        def log_message(self, format: str, *args: object) -> None:
            pass  # the page loads hundreds of files; errors show in the frame

        def end_headers(self) -> None:
            if not self.path.startswith(prefix):
                self.send_header("Cache-Control", "no-cache")
            super().end_headers()

        def do_HEAD(self) -> None:
            if self.admitted():
                super().do_HEAD()

        def do_GET(self) -> None:
            if not self.admitted():
                return
            if self.path == prefix or self.path.startswith(prefix + "/"):
                self.forward()
            else:
                super().do_GET()

        def do_POST(self) -> None:
            if not self.admitted():
                return
            if self.path == prefix or self.path.startswith(prefix + "/"):
                self.forward()
            else:
                self.send_error(405)

        def do_OPTIONS(self) -> None:
            self.send_response(204)
            self.send_header("Allow", "GET, POST, OPTIONS")
            self.end_headers()

        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k in HEADERS_TO_SERVER if (v := self.headers.get(k))}
            headers["NESTServerAuth"] = server.token
            target = self.path[len(prefix) :] or "/"
            conn = UnixHTTPConnection(server.socket, timeout=None)
            try:
                conn.request(self.command, target, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except OSError as exc:
                self.send_error(502, f"NEST Server does not answer: {exc}")
                return
            finally:
                conn.close()
            self.send_response(response.status)
            for key in HEADERS_FROM_SERVER:
                value = response.getheader(key)
                if value:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class LoopbackHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbviz/apps/runtime/nest.py")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--socket", help="Unix socket the UI is served on")
    where.add_argument("--port", type=int, help="serve on 127.0.0.1:PORT; needs NBVIZ_SECRET")
    parser.add_argument("--state", required=True, help="private (0700) directory for files")
    parser.add_argument("--prefix", default="/", help="URL path of the app's root")
    parser.add_argument("--modules", default="import nest; import numpy as np")
    parser.add_argument(
        "--restricted",
        choices=("yes", "no"),
        default="yes",
        help="run scripts sent to /exec under RestrictedPython (yes) or with plain exec (no)",
    )
    args = parser.parse_args(argv)
    secret = os.environ.get("NBVIZ_SECRET", "")
    if args.port is not None and not secret:
        say(f"{supervise.EXIT_REASON}nbviz: --port needs the session secret in NBVIZ_SECRET")
        return 2
    state = Path(args.state)
    token = secrets.token_urlsafe(24)
    supervisor = supervise.Supervisor(
        say, gone="NEST Desktop stopped too, restart() starts both again"
    )
    servers: list[socketserver.BaseServer] = []  # the page's web server, once it runs

    def serve() -> int:
        web = build_web_root(state, args.prefix)
        server = Server(supervisor, state, token, args.modules, restricted=args.restricted == "yes")
        server.wait(SERVER_START_TIMEOUT)
        server.check_modules(args.modules)
        os.chmod(server.socket, 0o600)  # in a 0700 directory already; as nbviz's own sockets
        write_private(
            state / ".nest.json",
            json.dumps({"server_socket": server.socket, "token": token, "pid": os.getpid()}),
        )
        os.replace(state / ".nest.json", state / "nest.json")
        httpd: socketserver.BaseServer
        if args.port is not None:
            httpd = LoopbackHTTPServer(("127.0.0.1", args.port), make_handler(web, server, secret))
        else:
            httpd = UnixHTTPServer(args.socket, make_handler(web, server))
            os.chmod(args.socket, 0o600)
        servers.append(httpd)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        say(f"NEST Server (pid {server.proc.pid}) and NEST Desktop are up")
        return supervisor.watch()

    def end() -> None:
        for httpd in servers:
            httpd.server_close()
        supervisor.end_all()

    return supervise.run_launcher(
        serve, why=supervisor.why_we_end, end=end, signals=(signal.SIGTERM, signal.SIGHUP)
    )


if __name__ == "__main__":
    sys.exit(main())
