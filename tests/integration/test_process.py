"""Integration tests of the backend lifecycle: real child processes, no mocks."""

from __future__ import annotations

import asyncio
import http.server
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import traitlets
from jupyter_helpers import BACKEND, running, wait_until

from nbviz import (
    BackendExitedError,
    NbvizError,
    NbvizWarning,
    PortInUseError,
    ProgramNotFoundError,
    ReadyTimeoutError,
    TemplateError,
    WebApp,
    _log,
    _process,
    _spec,
)
from nbviz._errors import BackendStoppedError

PY = sys.executable


@pytest.fixture(autouse=True)
def _base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if Jupyter ran at /: the frame URL is a proxy route, no "direct route" warning.
    monkeypatch.setenv("NBVIZ_BASE_URL", "/")


@pytest.fixture
def apps() -> Iterator[list[WebApp]]:
    made: list[WebApp] = []
    yield made
    for app in made:
        app.stop()


def backend(*extra: str) -> list[str]:
    return [PY, str(BACKEND), "--port", "{port}", *extra]


def fetch(app: WebApp, path: str = "/") -> str:
    assert app.endpoint is not None and app.endpoint.port is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{app.endpoint.port}{path}", timeout=5) as r:
        return str(r.read().decode())


def session_dirs() -> list[Path]:
    root = Path(os.environ["NBVIZ_RUNTIME_DIR"])
    return [p for p in root.iterdir()] if root.exists() else []


def test_start_ready_stop(apps: list[WebApp]) -> None:
    app = WebApp(backend("--heading", "lifecycle"))
    apps.append(app)
    assert app.status == "starting"  # the constructor returns at once
    app.wait_ready(20)
    assert app.status == "ready" and app.error == ""
    assert app.url == f"/proxy/{app.endpoint.port}/" and app.route == "proxy"  # type: ignore[union-attr]
    assert "lifecycle" in fetch(app)
    assert "listening on 127.0.0.1" in app.logs()
    pid = app.pid
    assert pid is not None and psutil.pid_exists(pid)
    (session,) = session_dirs()
    assert stat.S_IMODE(session.stat().st_mode) == 0o700
    assert stat.S_IMODE((session / "backend.log").stat().st_mode) == 0o600
    app.stop()
    assert app.status == "stopped" and app.pid is None
    assert not psutil.pid_exists(pid)
    assert session_dirs() == []
    assert "listening" in app.logs()  # logs survive stop()
    app.stop()  # idempotent


def test_a_backend_on_every_interface_is_pointed_out(apps: list[WebApp], tmp_path: Path) -> None:
    """http.server binds all interfaces unless told otherwise: the user hears of it."""
    with pytest.warns(NbvizWarning, match="every network interface.*127.0.0.1"):
        app = WebApp([PY, "-m", "http.server", "{port}"], cwd=tmp_path)
        apps.append(app)
        app.wait_ready(20)
    assert app.status == "ready"


def test_restart_and_start_are_idempotent(apps: list[WebApp]) -> None:
    app = WebApp(backend())
    apps.append(app)
    app.start()  # no second process while starting
    app.wait_ready(20)
    first = app.pid
    app.start()
    assert app.pid == first
    app.restart()
    app.wait_ready(20)
    assert app.pid != first and not psutil.pid_exists(first)  # type: ignore[arg-type]
    assert "Hello" in fetch(app)


def test_ready_is_awaitable(apps: list[WebApp]) -> None:
    async def main() -> str:
        app = WebApp(backend())
        apps.append(app)
        await app.ready()
        return app.status

    assert asyncio.run(main()) == "ready"


def test_context_manager_stops(apps: list[WebApp]) -> None:
    with WebApp(backend()) as app:
        assert app.status == "ready"
        pid = app.pid
    assert app.status == "stopped" and not psutil.pid_exists(pid)  # type: ignore[arg-type]


def test_closing_the_widget_stops_its_app(apps: list[WebApp]) -> None:
    """close() (ipywidgets': the views go, the object can no longer be shown) ends the app too,
    instead of leaving it running with nothing left to show or stop it."""
    app = WebApp(backend())
    apps.append(app)
    app.wait_ready(20)
    pid = app.pid
    assert pid is not None
    app.close()
    assert app.status == "stopped" and app.comm is None
    wait_until(lambda: not psutil.pid_exists(pid) or not running(psutil.Process(pid)))
    # and it stays closed: no backend starts again that nothing could show (it did, silently)
    for again in (app.start, app.restart):
        with pytest.raises(NbvizError, match=r"^nbviz: this WebApp was closed .* make a new one"):
            again()
    assert app.status == "stopped" and app.pid is None


def test_running_cell_again_leaves_the_first_app_to_be_found_and_stopped(
    apps: list[WebApp],
) -> None:
    """Running a cell again makes a new object; the first keeps its backend: nbviz.running()
    lists both (oldest first), nbviz.stop_all() stops them."""
    import nbviz

    first = WebApp(backend())
    first.wait_ready(20)
    second = WebApp(backend())  # the same cell, run again: `app` names this one now
    apps.extend([first, second])
    second.wait_ready(20)
    mine = [app for app in nbviz.running() if app in (first, second)]
    assert mine == [first, second]
    assert nbviz.stop_all() >= 2
    assert first.status == second.status == "stopped" and nbviz.running() == []


def test_missing_program() -> None:
    with pytest.raises(ProgramNotFoundError, match="not found on PATH"):
        WebApp(["nbviz-no-such-program", "--port", "{port}"])
    assert session_dirs() == []


def test_bad_template_field() -> None:
    with pytest.raises(TemplateError, match=r"\{prot\}"):
        WebApp([PY, str(BACKEND), "--port", "{prot}"])
    assert session_dirs() == []


def test_missing_working_directory() -> None:
    with pytest.raises(NbvizError, match="working directory /no/such/dir does not exist"):
        WebApp(backend(), cwd="/no/such/dir")
    with pytest.raises(NbvizError, match=f"working directory {BACKEND} is a file, not a dir"):
        WebApp(backend(), cwd=BACKEND)
    assert session_dirs() == []


def test_relative_cwd_and_program(
    apps: list[WebApp], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative cwd= means the kernel's working directory when the app was made (a later
    os.chdir in the notebook does not move a restart); a relative program path is taken from
    cwd=, as subprocess does (``./serve.sh`` beside the app's files)."""
    project = tmp_path / "my project ü"
    project.mkdir()
    (project / "index.html").write_text("<h1>from my project</h1>")
    script = project / "serve.sh"
    script.write_text('#!/bin/sh\nexec "$PY" -m http.server --bind 127.0.0.1 "$1"\n')
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    app = WebApp(["./serve.sh", "{port}"], cwd="my project ü", env={"PY": PY})
    apps.append(app)
    app.wait_ready(20)
    assert "from my project" in fetch(app)
    assert os.path.samefile(app.command[0], script)
    monkeypatch.chdir("/")
    app.restart()
    app.wait_ready(20)
    assert "from my project" in fetch(app)
    app.stop()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProgramNotFoundError, match=r"does not exist in .*my project ü.*cwd="):
        WebApp(["my project ü/serve.sh", "{port}"], cwd="my project ü", env={"PY": PY})
    assert session_dirs() == []


def test_unix_socket_under_a_non_ascii_runtime_dir(
    apps: list[WebApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The socket path limit (107 bytes) counts bytes: a runtime dir under a non-ASCII home
    (/home/jürgen/...) that fits in characters but not in bytes gets its socket under /tmp."""
    base = Path(tempfile.mkdtemp(prefix="nbviz-"))
    try:
        runtime = base / ("ü" * 36) / "nbviz"
        monkeypatch.setenv("NBVIZ_RUNTIME_DIR", str(runtime))
        session_chars = len(str(runtime / "0123456789ab"))
        assert session_chars <= 75 and len(os.fsencode(runtime / "0123456789ab")) > 94
        app = WebApp([PY, str(BACKEND), "--unix-socket", "{unix_socket}"], route="nbviz")
        apps.append(app)
        app.wait_ready(20)
        assert app.endpoint is not None and app.endpoint.unix_socket is not None
        socket_path = app.endpoint.unix_socket
        assert len(os.fsencode(socket_path)) <= 107
        app.stop()
        assert not os.path.exists(socket_path) and not list(runtime.iterdir())
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("height", [320, "320", "60vh", "12.5em", "calc(100vh - 80px)"])
def test_frame_heights_that_css_takes(height: int | str) -> None:
    app = WebApp(backend(), height=height, start=False)
    assert app.height == height


@pytest.mark.parametrize("height", [0, -5, "big", "", "60 vh", "320px; color: red"])
def test_frame_heights_that_would_collapse_the_frame_are_refused(height: int | str) -> None:
    """A height the browser would ignore (the frame collapses to nothing) is refused, saying
    what a height may be; nothing starts."""
    with pytest.raises(traitlets.TraitError, match=r"nbviz: height must be .*got"):
        WebApp(backend(), height=height)
    app = WebApp(backend(), start=False)
    with pytest.raises(traitlets.TraitError, match=r"nbviz: height must be"):
        app.height = height
    assert app.height == 480
    assert session_dirs() == []


def test_log_lines(apps: list[WebApp]) -> None:
    app = WebApp([PY, "-c", "print('a'); print('b'); print('c')", "{port}"])
    apps.append(app)
    with pytest.raises(BackendExitedError):
        app.wait_ready(20)
    assert app.logs() == "a\nb\nc\n" and app.logs(2) == "b\nc" and app.logs(0) == ""
    with pytest.raises(TemplateError, match=r"lines= must be a number of lines \(0 or more\)"):
        app.logs(-1)
    with pytest.raises(TypeError, match=r"lines= must be an int"):
        app.logs("5")  # type: ignore[arg-type]


def test_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port} is already in use"):
            WebApp(backend(), port=port)
    assert session_dirs() == []


UNIX_BACKEND = [PY, str(BACKEND), "--unix-socket", "{unix_socket}"]


def test_a_socket_path_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    """``unix_socket=`` naming a file, a symlink or a directory: refused, and the thing stays (a
    stale socket there is removed, a live one is in use)."""
    data = tmp_path / "results.txt"
    data.write_text("important")
    link = tmp_path / "link.sock"
    link.symlink_to(data)
    for path, kind in ((data, "a file"), (link, "a symlink"), (tmp_path, "a directory")):
        with pytest.raises(TemplateError, match=rf"unix_socket='{path}' is {kind}, not a socket"):
            WebApp(UNIX_BACKEND, unix_socket=path, route="nbviz")
    assert data.read_text() == "important" and link.is_symlink()
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(stale))  # never listened: nobody answers there
    with WebApp(UNIX_BACKEND, unix_socket=stale, route="nbviz") as app:
        app.wait_ready(20)
        assert stat.S_ISSOCK(stale.stat().st_mode)
        with pytest.raises(PortInUseError, match=f"socket {stale} is already in use"):
            WebApp(UNIX_BACKEND, unix_socket=stale, route="nbviz")
    assert session_dirs() == []


def test_exits_before_ready_shows_output(apps: list[WebApp]) -> None:
    app = WebApp([PY, "-c", "import sys; print('boom: no config'); sys.exit(3)", "{port}"])
    apps.append(app)
    with pytest.raises(BackendExitedError) as info:
        app.wait_ready(20)
    assert "exited with code 3 before it was ready" in str(info.value)
    assert "boom: no config" in info.value.log_tail
    assert app.status == "crashed"
    assert "boom: no config" in app.error  # the widget shows the same error
    # nothing of the failed start stays behind (its session directory, the route's entry);
    # what it printed is still there
    assert session_dirs() == [] and "boom: no config" in app.logs()


def test_programs_that_daemonize_are_found_and_ended(apps: list[WebApp]) -> None:
    """A process that left the backend's tree and process group (fork, setsid, fork) still
    carries the session's mark: a backend that daemonizes at once gets an error saying so, and
    stop() ends what a running backend sent to the background."""
    daemon = textwrap.dedent(
        """
        import os, sys, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                print("daemon", os.getpid(), flush=True)
                time.sleep(300)
            os._exit(0)
        time.sleep(0.3)
        """
    )
    app = WebApp([PY, "-c", daemon, "{port}"])
    apps.append(app)
    with pytest.raises(BackendExitedError, match=r"code 0 before it was ready, leaving pid \d+"):
        app.wait_ready(20)
    assert "in the background" in app.error and "--foreground" in app.error
    pid = int(app.logs().split("daemon")[1].split()[0])
    wait_until(lambda: not psutil.pid_exists(pid), timeout=5, what="the daemon to end")
    cmd = ["sh", "-c", f"setsid -f sleep 302; exec {PY} {BACKEND} --port {{port}}"]
    app = WebApp(cmd)
    apps.append(app)
    app.wait_ready(20)
    sleeper = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "302"]]
    assert len(sleeper) == 1 and sleeper[0].ppid() != app.pid
    app.stop()
    wait_until(lambda: not running(sleeper[0]), timeout=5, what="the detached sleep to end")


def test_never_answers_times_out_and_kills_the_tree(apps: list[WebApp]) -> None:
    script = "sleep 300 & echo started child $!; exec sleep 301  # {port}"
    app = WebApp(["sh", "-c", script], timeout=1.5)
    apps.append(app)
    pid = app.pid
    wait_until(lambda: "started child" in app.logs(), what="the child to start")
    child = int(app.logs().split("started child")[1].split()[0])
    with pytest.raises(ReadyTimeoutError) as info:
        app.wait_ready(20)
    assert "did not answer" in str(info.value) and "within 1.5 s" in str(info.value)
    assert app.status == "crashed" and "started child" in app.error
    assert not psutil.pid_exists(pid)  # type: ignore[arg-type]
    wait_until(lambda: not psutil.pid_exists(child), timeout=5, what="the grandchild to go")


def test_a_timeout_says_where_the_app_listens_instead(apps: list[WebApp]) -> None:
    """The two usual reasons an app never answers, named in the error: it ignores {port} and
    listens on a port of its own (Flask's 5000, say), or it listens on IPv6's ::1 only (what
    "localhost" means to some servers), where nbviz does not look."""
    own_port = textwrap.dedent(
        """
        import http.server, sys
        server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
        print("listening on", server.server_address[1], "whatever argv says:", sys.argv[1:])
        server.serve_forever()
        """
    )
    app = WebApp([PY, "-c", own_port, "--port", "{port}"], timeout=1.5)
    apps.append(app)
    with pytest.raises(ReadyTimeoutError) as info:
        app.wait_ready(20)
    port = app.logs().split("listening on ")[1].split()[0]
    assert f"it listens on 127.0.0.1:{port} instead" in str(info.value)
    assert "give it {port}" in str(info.value)
    with socket.socket(socket.AF_INET6) as probe:
        try:
            probe.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback here")
    app = WebApp([PY, "-m", "http.server", "--bind", "::1", "{port}"], timeout=1.5)
    apps.append(app)
    with pytest.raises(ReadyTimeoutError) as info:
        app.wait_ready(20)
    assert app.endpoint is not None
    assert f"it listens on [::1]:{app.endpoint.port} instead" in str(info.value)
    assert "make it listen on 127.0.0.1" in str(info.value)


def test_wait_ready_with_a_shorter_wait(apps: list[WebApp]) -> None:
    app = WebApp(backend("--delay", "3"), timeout=20)
    apps.append(app)
    with pytest.raises(ReadyTimeoutError, match=r"not ready after waiting 0\.3 s"):
        app.wait_ready(0.3)
    app.wait_ready(20)  # still starting, then ready
    assert app.status == "ready"


def test_a_flood_of_output_is_capped(apps: list[WebApp], monkeypatch: pytest.MonkeyPatch) -> None:
    """An app that prints without end does not fill the disk (the runtime dir may be a small
    tmpfs or the home quota) nor the kernel's memory: the log keeps its latest part, logs()
    says that earlier output was dropped, and the last lines are all there."""
    monkeypatch.setattr(_log, "LOG_LIMIT", 256 * 1024)
    flood = textwrap.dedent(
        """
        import sys, http.server
        for i in range(200_000):  # ~20 MB
            print("line %06d " % i + "x" * 90)
        print("flood done", flush=True)
        http.server.test(http.server.SimpleHTTPRequestHandler, port=int(sys.argv[1]),
                         bind="127.0.0.1")
        """
    )
    app = WebApp([PY, "-c", flood, "{port}"], timeout=60)
    apps.append(app)
    app.wait_ready(60)
    log = app._process.log_path
    assert log is not None

    def on_disk() -> int:
        return sum(p.stat().st_size for p in log.parent.glob("backend.log*"))

    wait_until(lambda: "flood done" in app.logs(5), timeout=20, what="the end of the flood")
    wait_until(lambda: on_disk() <= 3 * 256 * 1024, timeout=20, what="the log to be rotated")
    text = app.logs()
    assert len(text) <= 3 * 256 * 1024
    assert text.startswith("[nbviz: earlier output was dropped")
    assert "line 199999 " in text and "line 000000" not in text
    lines = text.splitlines()
    first = lines.index("flood done") - 1
    assert lines[first].startswith("line 199999 ")
    assert app.logs(2).splitlines()[0] in ("flood done", lines[-2])
    app.stop()
    assert "flood done" in app.logs() and len(app.logs()) <= 3 * 256 * 1024


def test_crash_while_running_then_restart(apps: list[WebApp]) -> None:
    app = WebApp(backend())
    apps.append(app)
    app.wait_ready(20)
    fetch(app, "/exit")
    wait_until(lambda: app.status == "crashed", what="crash detection")
    assert "exited with code 7" in app.error and "listening" in app.error
    assert session_dirs() == [] and "listening" in app.logs()
    # Waiting for an app that has crashed since it was ready raises the crash, as the widget
    # shows it, instead of returning as if it were ready.
    with pytest.raises(BackendExitedError, match="exited with code 7"):
        app.wait_ready(1)
    with pytest.raises(BackendExitedError, match="exited with code 7"):
        asyncio.run(app.ready())
    app.restart()
    app.wait_ready(20)
    assert "Hello" in fetch(app)
    app.stop()
    with pytest.raises(BackendStoppedError, match=r"was stopped; start\(\) starts it again"):
        app.wait_ready(1)
    with pytest.raises(BackendStoppedError, match="was stopped"):
        asyncio.run(app.ready())


def test_stop_ends_grandchildren(apps: list[WebApp]) -> None:
    cmd = ["sh", "-c", f"sleep 300 & exec {PY} {BACKEND} --port {{port}}"]
    app = WebApp(cmd)
    apps.append(app)
    app.wait_ready(20)
    children = psutil.Process(app.pid).children(recursive=True)
    # this app's sleep (another test run on the machine may have one of its own)
    sleeper = [p for p in children if p.cmdline() == ["sleep", "300"]]
    assert sleeper, children
    app.stop()
    wait_until(lambda: not any(running(p) for p in sleeper), timeout=5, what="sleep to end")


def test_credentials_are_not_handed_to_backends(
    apps: list[WebApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hub-secret")
    monkeypatch.setenv("JUPYTER_TOKEN", "server-secret")
    script = (
        'echo "env: [$JUPYTERHUB_API_TOKEN] [$JUPYTER_TOKEN] [$MINE]"; '
        f"exec {PY} {BACKEND} --port {{port}}"
    )
    app = WebApp(["sh", "-c", script], env={"MINE": "mine"})
    apps.append(app)
    app.wait_ready(20)
    assert "env: [] [] [mine]" in app.logs()


def test_port_answered_by_someone_else_is_not_ready(apps: list[WebApp]) -> None:
    """Another process (on a login node: another user's) answering our port is never 'ready'."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = WebApp(["sleep", "60"], port=port, timeout=2)
    apps.append(app)
    impostor = http.server.HTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=impostor.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ReadyTimeoutError, match="held by another process"):
            app.wait_ready(20)
    finally:
        impostor.shutdown()
        impostor.server_close()


OWNER = textwrap.dedent(
    """
    import os, sys, time
    os.environ["NBVIZ_BASE_URL"] = "/"
    from nbviz import WebApp
    app = WebApp([sys.executable, {backend!r}, "--port", "{{port}}"])
    app.wait_ready(30)
    print(app.pid, app._process.session_dir, flush=True)
    time.sleep(300)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_backend_never_outlives_its_owner(sig: int, tmp_path: Path) -> None:
    owner = subprocess.Popen(
        [PY, "-c", OWNER.format(backend=str(BACKEND))], stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None
        pid_text, session = owner.stdout.readline().split()
        backend_pid = int(pid_text)
        assert psutil.pid_exists(backend_pid) and Path(session).is_dir()
        os.kill(owner.pid, sig)
        owner.wait(10)
        wait_until(lambda: not psutil.pid_exists(backend_pid), timeout=8, what="backend to die")
        wait_until(lambda: not Path(session).exists(), timeout=5, what="session dir removal")
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()


EXITING = """
import sys
from nbviz import WebApp
silent = WebApp([sys.executable, "-c", "import time; time.sleep(60)", "{port}"], timeout=1)
try:
    silent.wait_ready()
except TimeoutError as error:
    print(type(error).__name__, silent.status)
"""


def test_a_script_that_ends_with_a_failed_app_exits_quietly(tmp_path: Path) -> None:
    """A plain script (no kernel) that ends holding an app that failed exits cleanly: no
    "Exception ignored" from its widget torn down with the interpreter (ipywidgets closes
    widgets in __del__, when the modules nbviz needs to stop an app may be gone)."""
    script = tmp_path / "script.py"
    script.write_text(EXITING)
    done = subprocess.run(
        [PY, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NBVIZ_BASE_URL": "/"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ReadyTimeoutError", "crashed"]
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_supervisor_names_the_reason_for_its_end() -> None:
    """A program nbviz runs may print why it ends as its last ``nbviz-exit:`` line: that text is
    the error's first line (the frame shows it), before and after ready."""
    early = _process.Process(
        _spec.Spec.build(
            [
                sys.executable,
                "-c",
                "print('nbviz-exit: nbviz: the disk is full'); raise SystemExit(3)",
                "{port}",
            ],
            timeout=10,
        )
    )
    early.start()
    with pytest.raises(BackendExitedError) as caught:
        early.wait_ready(10)
    assert caught.value.message == "nbviz: the disk is full"
    assert "nbviz-exit: nbviz: the disk is full" in caught.value.log_tail
    # a later crash, and a launcher that prefixes its lines
    later = _process.Process(
        _spec.Spec.build([sys.executable, str(BACKEND), "--port", "{port}"], timeout=10)
    )
    later.start()
    later.wait_ready(10)
    assert later.log_path is not None
    with open(later.log_path, "a") as log:
        log.write("launcher: nbviz-exit: nbviz: Xvfb exited (signal SIGKILL)\n")
    os.kill(later.pid, signal.SIGKILL)  # type: ignore[arg-type]
    wait_until(lambda: later.status == "crashed", timeout=10, what="the crash")
    assert later.error is not None
    assert later.error.message == "nbviz: Xvfb exited (signal SIGKILL)"
    later.stop()


class AppError(NbvizError):
    """What a backend's own diagnosis becomes (as the ParaView app's unreadable data does)."""


def explain_bad_config(error: NbvizError) -> NbvizError:
    for line in error.log_tail.splitlines():
        if line.startswith("app: error: "):
            return AppError(line.removeprefix("app: error: "), log_tail=error.log_tail)
    return error


def test_a_spec_explains_its_backends_exit() -> None:
    """A Spec's ``explain`` turns an exit into the error its user needs: wait_ready() raises
    it, and the status message (what the frame shows) is the same; terminal colour codes are
    not in the log tail."""
    script = (
        "print('\\x1b[0m\\x1b[31mERR| the reader failed\\x1b[0m'); "
        "print('app: error: config.toml line 3 is not TOML'); "
        "print('nbviz-exit: nbviz: app exited (code 2)'); raise SystemExit(2)"
    )
    process = _process.Process(
        _spec.Spec.build(
            [sys.executable, "-c", script, "{port}"], timeout=10, explain=explain_bad_config
        )
    )
    process.start()
    with pytest.raises(AppError) as caught:
        process.wait_ready(10)
    assert caught.value.message == "nbviz: config.toml line 3 is not TOML"
    assert process.status == "crashed" and process.message == caught.value.message
    assert "ERR| the reader failed" in caught.value.log_tail
    assert "\x1b" not in caught.value.log_tail and "\x1b" not in process.logs()
    process.stop()
