"""The same dashboard notebook in Voilà (inside Jupyter, `nbviz dashboard`, standalone) and in
Notebook 7, in the system Chromium.

The dashboard shows a WebApp (tests/resources/backend.py), two buttons that set ``app.path``
from the kernel and a line that shows the kernel's ``app.path``: no cell is typed, so the state
round trip is what a dashboard user does. Each test checks the backend's page in the frame,
kernel -> frame (a button navigates the frame) and frame -> kernel (a link clicked in the frame
changes the kernel's line). Screenshots in test-artifacts/browser/voila-*.png.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from browser_helpers import (
    ARTIFACTS,
    VIEWPORT,
    chromium,
    colour_fraction,
    hex_rgb,
    save_screenshot,
    wait_processes_gone,
)
from jupyter_helpers import BACKEND, JupyterServer, wait_until
from playwright.sync_api import Browser, Page, expect, sync_playwright

from nbviz import NbvizError, NbvizWarning, WebApp, _server

pytestmark = [pytest.mark.browser, pytest.mark.jupyter, pytest.mark.timeout(120)]

COLOUR = "#cfe2ff"
DASHBOARD = """\
import sys

import ipywidgets as widgets
from IPython.display import display
from nbviz import WebApp

app = WebApp(
    [sys.executable, r"{backend}", "--port", "{{port}}", "--heading", "{heading}",
     "--color", "{colour}"],
    height=300,
)
seen = widgets.HTML(f"kernel sees: {{app.path}}")
app.observe(lambda change: setattr(seen, "value", f"kernel sees: {{change['new']}}"), names="path")
buttons = [widgets.Button(description=path) for path in ("/", "/docs/")]
for button in buttons:
    button.on_click(lambda button: setattr(app, "path", button.description))
display(widgets.HBox([*buttons, seen]))
display(app)
"""


def write_dashboard(
    directory: Path, heading: str, name: str = "dashboard", kernel: str = "python3"
) -> Path:
    source = DASHBOARD.format(backend=BACKEND, heading=heading, colour=COLOUR)
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "id": "dashboard",
                "metadata": {},
                "source": source,
                "outputs": [],
                "execution_count": None,
            }
        ],
        "metadata": {
            "kernelspec": {"name": kernel, "display_name": "Python 3", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.ipynb"
    path.write_text(json.dumps(notebook))
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright, chromium(playwright) as browser:
        yield browser


def backend_pids(server_pid: int) -> list[int]:
    """The test backends (backend.py) started under a server's kernels."""
    return [
        p.pid
        for p in psutil.Process(server_pid).children(recursive=True)
        if str(BACKEND) in " ".join(p.cmdline())
    ]


def check_dashboard(
    page: Page, heading: str, name: str, url_prefix: str, *, frame_to_kernel: bool = True
) -> None:
    """The frame shows the backend; buttons move it (kernel -> frame); links in it update the
    kernel's line (frame -> kernel; not for a cross-origin frame, whose location the page
    cannot read)."""
    iframe = page.locator("iframe.nbviz-iframe")
    frame = page.frame_locator("iframe.nbviz-iframe")
    expect(frame.locator("#heading")).to_have_text(heading, timeout=45_000)
    expect(frame.locator("#where")).to_have_text("/")
    src = iframe.get_attribute("src") or ""
    assert src.startswith(url_prefix), src
    assert "token" not in src
    seen = page.locator(".widget-html-content", has_text="kernel sees:")
    expect(seen).to_have_text("kernel sees: /")

    page.get_by_role("button", name="/docs/").click()  # kernel -> frame
    expect(frame.locator("#where")).to_have_text("/docs/", timeout=10_000)
    expect(seen).to_have_text("kernel sees: /docs/")
    frame.locator("a#to-root").click()  # frame -> kernel
    expect(frame.locator("#where")).to_have_text("/", timeout=10_000)
    if frame_to_kernel:
        expect(seen).to_have_text("kernel sees: /", timeout=10_000)
        frame.locator("a#to-docs").click()
        expect(seen).to_have_text("kernel sees: /docs/", timeout=10_000)
    else:
        page.get_by_role("button", name="/", exact=True).click()
        expect(seen).to_have_text("kernel sees: /", timeout=10_000)

    widget = page.locator(".nbviz-frame")
    expect(widget).to_have_attribute("data-status", "ready")
    shot = save_screenshot(widget.locator(".nbviz-body"), f"voila-{name}-body")
    assert colour_fraction(shot, hex_rgb(COLOUR)) > 0.8
    page.screenshot(path=ARTIFACTS / f"voila-{name}-page.png")


def open_page(browser: Browser) -> tuple[Page, list[str]]:
    page = browser.new_context(viewport=VIEWPORT).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page, errors


def shutdown_kernels(server: JupyterServer) -> None:
    """Shut down the server's kernels (a Voilà page's kernel outlives the page for a while)."""
    for kernel in json.loads(server.get("api/kernels")[1]):
        server.delete(f"api/kernels/{kernel['id']}")


def end_dashboard(server: JupyterServer, page: Page, errors: list[str]) -> None:
    """Shut the server's kernels down; their backends must go with them."""
    assert server.proc is not None
    pids = backend_pids(server.proc.pid)
    shutdown_kernels(server)
    close_and_check(page, pids, errors)


def close_and_check(page: Page, pids: list[int], errors: list[str]) -> None:
    """Once the dashboard's kernel is gone, so is its backend (nbviz's watchdog)."""
    page.context.close()
    assert pids
    wait_processes_gone(pids, timeout=30)
    assert not [e for e in errors if "nbviz" in e or "frame" in e], errors


# ------------------------------------------------------- Voilà inside Jupyter
def test_voila_inside_jupyter_lab(jupyter_server: JupyterServer, browser: Browser) -> None:
    """{base}voila/render/<nb>: the kernel's server has nbviz's route; the frame uses it."""
    write_dashboard(jupyter_server.root / "notebooks", "Voilà in Jupyter", "dash-voila")
    page, errors = open_page(browser)
    page.goto(jupyter_server.url(f"voila/render/dash-voila.ipynb?token={jupyter_server.token}"))
    check_dashboard(page, "Voilà in Jupyter", "server-extension", "/user/alice/nbviz/")
    end_dashboard(jupyter_server, page, errors)


# ------------------------------------------------------------------ JupyterHub
def test_jupyterhub_prefix_only(
    jupyter_server: JupyterServer, browser: Browser, tmp_path: Path
) -> None:
    """A kernel that sees only JUPYTERHUB_SERVICE_PREFIX (its runtime dir is not the server's,
    so no jpserver-*.json and no nbviz registry in common): the base URL comes from the prefix
    and a TCP backend goes through jupyter-server-proxy's {base}proxy/<port>/."""
    elsewhere = tmp_path / "kernel-runtime"
    spec = jupyter_server.root / "data" / "kernels" / "python3-hub" / "kernel.json"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (hub prefix only)",
                "language": "python",
                "env": {
                    "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/",
                    "JUPYTER_RUNTIME_DIR": str(elsewhere),
                    "NBVIZ_RUNTIME_DIR": str(elsewhere / "nbviz"),
                },
            }
        )
    )
    write_dashboard(jupyter_server.root / "notebooks", "Hub prefix", "dash-hub", "python3-hub")
    page, errors = open_page(browser)
    page.goto(jupyter_server.url(f"voila/render/dash-hub.ipynb?token={jupyter_server.token}"))
    check_dashboard(page, "Hub prefix", "hub-prefix", "/user/alice/proxy/")
    end_dashboard(jupyter_server, page, errors)


# ------------------------------------------------------------ nbviz dashboard
def test_nbviz_dashboard(tmp_path: Path, browser: Browser) -> None:
    """`nbviz dashboard nb.ipynb`: a Jupyter server whose default page is the dashboard."""
    notebook = write_dashboard(tmp_path / "server" / "notebooks", "nbviz dashboard")
    server = JupyterServer(
        root=tmp_path / "server",
        command=[sys.executable, "-m", "nbviz.cli", "dashboard", str(notebook), "--"],
    )
    server.start()
    try:
        # The printed URL is the dashboard's; the server's root redirects there.
        wait_until(
            lambda: "/user/alice/voila/render/dashboard.ipynb" in server.log_text(),
            what="the dashboard URL in the log",
        )
        status, _, headers = server.get("")
        location = headers["Location"].split("?")[0]
        assert status == 302 and location == "/user/alice/voila/render/dashboard.ipynb"
        page, errors = open_page(browser)
        page.goto(server.url(f"?token={server.token}"))
        assert page.url.split("?")[0].endswith("/user/alice/voila/render/dashboard.ipynb")
        check_dashboard(page, "nbviz dashboard", "dashboard", "/user/alice/nbviz/")
        end_dashboard(server, page, errors)
    finally:
        server.stop()


def test_nbviz_dashboard_errors() -> None:
    missing = subprocess.run(
        [sys.executable, "-m", "nbviz.cli", "dashboard", "no-such.ipynb"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 2
    assert missing.stderr.startswith("nbviz: notebook not found: no-such.ipynb")


# ---------------------------------------------------------- standalone Voilà
def test_standalone_voila(tmp_path: Path, browser: Browser) -> None:
    """`voila nb.ipynb` serves no proxy routes: a TCP backend is loaded directly (a browser on
    this machine sees it, with a warning naming `nbviz dashboard`). The frame is then of
    another origin: the kernel moves it, but cannot follow clicks inside it."""
    notebook = write_dashboard(tmp_path, "standalone Voilà")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JPY_", "NBVIZ_"))}
    log = open(tmp_path / "voila.log", "wb")  # noqa: SIM115 - closed below
    voila = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("voila")),
            str(notebook),
            "--no-browser",
            "--port=0",
            "--Voila.ip=127.0.0.1",
            "--show_tracebacks=True",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def port() -> int | None:
            for conn in psutil.Process(voila.pid).net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    return int(conn.laddr.port)
            return None

        listening = wait_until(port, timeout=30, what="standalone Voilà to listen")
        page, errors = open_page(browser)
        page.goto(f"http://127.0.0.1:{listening}/")
        check_dashboard(
            page, "standalone Voilà", "standalone", "http://127.0.0.1:", frame_to_kernel=False
        )
        pids = backend_pids(voila.pid)
        assert pids
    finally:
        voila.terminate()  # its kernels end, hence their backends
        try:
            voila.wait(15)
        except subprocess.TimeoutExpired:
            voila.kill()
        log.close()
    close_and_check(page, pids, errors)


def test_standalone_voila_kernel_is_told_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel whose parent is a standalone Voilà: a Unix-socket backend has no route there,
    and the error says how to serve the dashboard instead."""
    fake = tmp_path / "voila"  # a process whose command line is that of `voila nb.ipynb`
    fake.write_text("import time\ntime.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, str(fake), "nb.ipynb"])
    try:
        monkeypatch.setenv("JPY_PARENT_PID", str(parent.pid))
        wait_until(lambda: _server.standalone_voila(), what="the parent's command line")
        with pytest.raises(NbvizError, match=r"^nbviz: .*`nbviz dashboard notebook.ipynb`"):
            WebApp([sys.executable, str(BACKEND), "--unix-socket", "{unix_socket}"])
        with pytest.warns(NbvizWarning, match="nbviz dashboard"):
            app = WebApp([sys.executable, str(BACKEND), "--port", "{port}"])
        try:
            assert app.route == "direct" and app.url.startswith("http://127.0.0.1:")
        finally:
            app.stop()
        monkeypatch.setenv("JPY_PARENT_PID", str(os.getpid()))
        assert not _server.standalone_voila()
    finally:
        parent.kill()
        parent.wait()


# ---------------------------------------------------------------- Notebook 7
def test_notebook7(tmp_path: Path, browser: Browser) -> None:
    """`jupyter notebook` at /user/alice/: tree -> notebooks/<nb>, Run All, the same checks."""
    root = tmp_path / "nb7"
    write_dashboard(root / "notebooks", "Notebook 7")
    server = JupyterServer(root=root, app="notebook").start()
    try:
        page, errors = open_page(browser)
        page.goto(server.url(f"tree?token={server.token}"))
        listing = page.get_by_text("dashboard.ipynb")
        expect(listing).to_be_visible(timeout=30_000)
        with page.context.expect_page() as opened:
            listing.dblclick()
        nb = opened.value
        nb.on("pageerror", lambda error: errors.append(str(error)))
        nb.wait_for_url("**/user/alice/notebooks/dashboard.ipynb", timeout=30_000)
        status = nb.locator(".jp-Notebook-ExecutionIndicator")
        expect(status).to_have_attribute("data-status", "idle", timeout=45_000)
        time.sleep(0.5)
        nb.get_by_role("menuitem", name="Run").click()
        nb.get_by_text("Run All Cells", exact=True).click()
        check_dashboard(nb, "Notebook 7", "notebook7", "/user/alice/nbviz/")
        end_dashboard(server, page, errors)
    finally:
        server.stop()
