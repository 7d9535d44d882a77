"""`nbviz doctor` against real Jupyter servers: one with jupyter-server-proxy, one without."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_helpers import JupyterServer

pytestmark = pytest.mark.jupyter


def doctor(server: JupyterServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbviz.cli", "doctor", *args],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def server_without_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    server = JupyterServer(
        root=Path(tmp_path_factory.mktemp("noproxy")),
        base_url="/user/bob/",
        app="server",
        extra_args=[
            "--ServerApp.jpserver_extensions="
            '{"jupyter_server_proxy": False, "nbviz.serverext": False}'
        ],
    ).start()
    try:
        yield server
    finally:
        server.stop()


def test_doctor_finds_the_server_and_tests_its_routes(jupyter_server: JupyterServer) -> None:
    result = doctor(jupyter_server)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert f"pid {jupyter_server.proc.pid}" in out  # type: ignore[union-attr]
    assert "nbviz route loaded, jupyter-server-proxy loaded" in out
    assert "[ok  ] nbviz /user/alice/nbviz/" in out and "(Unix socket): HTTP 200" in out
    assert "({port} in a private network namespace): HTTP 200" in out
    assert "[ok  ] private network namespaces: apps on {port}" in out
    assert "[ok  ] proxy /user/alice/proxy/" in out
    assert "[ok  ] absolute /user/alice/proxy/absolute/" in out
    assert "[ok  ] direct http://127.0.0.1:" in out
    assert "0 server(s) without a working route" in out
    assert ("Backends" in out and "apt-get install" in out) or "[MISS]" not in out


def test_doctor_says_why_a_route_fails(server_without_proxy: JupyterServer) -> None:
    result = doctor(server_without_proxy)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "NO nbviz route, NO jupyter-server-proxy" in out
    assert "[MISS] nbviz route: the nbviz server extension is not loaded" in out
    assert "RemoteDesktop admit only the page holding their per-session secret" in out
    assert "[MISS] proxy /user/bob/proxy/" in out and "HTTP 404" in out
    assert "pip install jupyter-server-proxy" in out
    assert "1 server(s) without a working route" in out


def test_doctor_outside_jupyter(tmp_path: Path) -> None:
    server = JupyterServer(root=tmp_path)  # not started: only its isolated env is used
    (tmp_path / "runtime").mkdir()
    result = doctor(server, "--no-routes")
    assert result.returncode == 0, result.stderr
    assert "no running Jupyter server found" in result.stdout
    assert "Security" in result.stdout and "0700" in result.stdout


def test_server_options_after_the_separator(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`nbviz dashboard nb.ipynb --no-browser -- --IdentityProvider.token=x` (as in the docs):
    options between the notebook and `--` made argparse reject what follows `--`."""
    from nbviz import _dashboard, cli

    seen: list[list[str]] = []
    monkeypatch.setattr(_dashboard, "dashboard", lambda args: seen.append(args.server_args) or 0)
    line = ["dashboard", "nb.ipynb", "--port", "8866", "--no-browser", "--", "--A.b=1", "--c"]
    assert cli.main(line) == 0
    assert cli.main(["dashboard", "nb.ipynb", "--", "--A.b=1"]) == 0
    assert seen == [["--A.b=1", "--c"], ["--A.b=1"]]
    with pytest.raises(SystemExit):
        cli.main(["doctor", "--", "--A.b=1"])
    assert "options after -- are for nbviz dashboard" in capsys.readouterr().err


#: A user namespace whose limits allow no new namespaces (as on a site that turned them off).
NO_NAMESPACES = (
    "echo 0 > /proc/sys/user/max_net_namespaces && echo 0 > /proc/sys/user/max_user_namespaces "
    '&& exec "$@"'
)


def test_doctor_says_when_private_namespaces_are_not_allowed() -> None:
    command = [sys.executable, "-m", "nbviz.cli", "doctor", "--no-routes"]
    result = subprocess.run(
        ["unshare", "--user", "--map-root-user", "sh", "-c", NO_NAMESPACES, "sh", *command],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = result.stdout
    assert "[MISS] private network namespaces: not allowed here" in out, out + result.stderr
    assert "No space left on device" in out and "user.max_user_namespaces" in out
    turned_off = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NBVIZ_PRIVATE_NETWORK": "no"},
    ).stdout
    assert "private network namespaces turned off (NBVIZ_PRIVATE_NETWORK=no)" in turned_off


def test_doctor_names_the_desktops_tools_and_how_to_install_them(tmp_path: Path) -> None:
    """RemoteDesktop needs its X tools and window manager too: without them on PATH, doctor
    says so, with the Debian package (it said "0 backend(s) missing")."""
    server = JupyterServer(root=tmp_path)  # not started: only its isolated env is used
    (tmp_path / "runtime").mkdir()
    bin_dir = tmp_path / "bin"  # /usr/bin without wmctrl, xclip, openbox and vncpasswd
    bin_dir.mkdir()
    for program in Path("/usr/bin").iterdir():
        if program.name not in ("wmctrl", "xclip", "openbox", "vncpasswd"):
            (bin_dir / program.name).symlink_to(program)
    out = subprocess.run(
        [sys.executable, "-m", "nbviz.cli", "doctor", "--no-routes"],
        env={**server.env, "PATH": f"{Path(sys.executable).parent}:{bin_dir}"},
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    openbox = "[MISS] openbox: not found (for RemoteDesktop, default window manager); "
    assert openbox + "apt-get install openbox" in out, out
    assert "apt-get install wmctrl; apt-get install xclip" in out, out
    assert "[MISS] TigerVNC (Xvnc, vncpasswd): not found" in out, out
    assert "apt-get install tigervnc-tools" in out, out
    # websockify: the Python module the launcher imports (Debian's program is too old)
    assert "[ok  ] websockify (Python module): websockify 0.1" in out, out
