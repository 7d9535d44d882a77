"""Browser tests: a real JupyterLab in the system Chromium, WebApp cells, and their pixels.

Each test opens its own notebook (and kernel) under the session's Jupyter server at
/user/alice/, types cells as a person would, and looks at what the widget shows: the
backend's page inside the iframe, the path going both ways, the error panel after a crash
and after a failed start. Screenshots are kept in test-artifacts/browser/.
Set NBVIZ_UPDATE_DOCS_IMAGES=1 to also refresh docs/images/webapp.png.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from browser_helpers import (
    ARTIFACTS,
    REPO,
    Notebook,
    chromium,
    colour_fraction,
    hex_rgb,
    open_notebook,
    save_screenshot,
)
from jupyter_helpers import BACKEND, JupyterServer
from playwright.sync_api import Browser, expect, sync_playwright

pytestmark = [pytest.mark.browser, pytest.mark.jupyter, pytest.mark.timeout(90)]

COLOUR = "#cfe2ff"  # the backend page's background (light, so its links stay readable)
READY_DOT = "#2e9e44"  # .nbviz-dot[data-status="ready"] in js/frame.css
CRASHED_DOT = "#d0342c"


def webapp_cell(heading: str, *extra: str) -> str:
    """The cell that starts the test backend and shows it (the WebApp is the cell's value)."""
    args = ", ".join(f'"{a}"' for a in ("--heading", heading, "--color", COLOUR, *extra))
    return (
        "import sys\n"
        "from nbviz import WebApp\n"
        f'app = WebApp([sys.executable, r"{BACKEND}", "--port", "{{port}}", {args}],'
        " height=320)\n"
        "app"
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright, chromium(playwright) as browser:
        yield browser


@pytest.fixture
def notebook(
    jupyter_server: JupyterServer, browser: Browser, request: pytest.FixtureRequest
) -> Iterator[Notebook]:
    """A fresh notebook open in JupyterLab; afterwards its kernel is shut down and every
    backend whose pid the test put into ``notebook.pids`` must be gone."""
    # Named after the test, or by indirect parametrization: parametrize("notebook", ["name"]).
    name = getattr(request, "param", None) or request.node.originalname.removeprefix("test_")
    with open_notebook(jupyter_server, browser, name) as nb:
        yield nb


def backend_pid(nb: Notebook) -> int:
    printed = nb.printed("print(app.pid)")
    assert printed.isdigit(), printed
    pid = int(printed)
    nb.pids.append(pid)
    return pid


@pytest.mark.parametrize("notebook", ["webapp"], indirect=True)  # a tab name for the README
def test_webapp_shows_backend_page(notebook: Notebook, jupyter_server: JupyterServer) -> None:
    """The cell's output is the backend's page, proxied under /user/alice/, in its colour.

    This cell doubles as the README's picture, so it reads like a user's: the backend is
    copied next to the notebook (the kernel's working directory) and named relatively.
    """
    shutil.copyfile(BACKEND, jupyter_server.root / "notebooks" / "backend.py")
    cell = notebook.run(
        "import sys\n"
        "from nbviz import WebApp\n"
        "\n"
        "app = WebApp(\n"
        '    [sys.executable, "backend.py", "--port", "{port}",\n'
        f'     "--heading", "Hello from a web app", "--color", "{COLOUR}"],\n'
        "    height=320,\n"
        ")\n"
        "app"
    )
    widget = cell.locator(".nbviz-frame")
    frame = cell.frame_locator("iframe.nbviz-iframe")
    expect(frame.locator("#heading")).to_have_text("Hello from a web app", timeout=20_000)
    expect(frame.locator("#where")).to_have_text("/")
    expect(widget).to_have_attribute("data-status", "ready")
    # Through the Jupyter server under its base URL, at the URL the kernel chose (whichever
    # route), and the token never reaches the frame.
    src = cell.locator("iframe.nbviz-iframe").get_attribute("src") or ""
    assert src.startswith("/user/alice/"), src
    assert src == notebook.printed("print(app.url)")
    assert "token" not in src
    # The bar shows the title and the path; the page's <title> came back to the kernel.
    expect(widget.locator(".nbviz-title")).to_have_text("backend.py")
    expect(widget.locator(".nbviz-info")).to_have_text("nbviz test backend \u2014 /")
    assert notebook.printed("print(app.page_title)") == "nbviz test backend"
    backend_pid(notebook)

    # Pixels: the iframe is the backend's colour, the status dot is green.
    body = widget.locator(".nbviz-body")
    box = body.bounding_box()
    assert box is not None and abs(box["height"] - 320) <= 1, box
    shot = save_screenshot(body, "webapp-body")
    assert colour_fraction(shot, hex_rgb(COLOUR)) > 0.8
    dot = save_screenshot(widget.locator(".nbviz-dot"), "webapp-dot")
    assert colour_fraction(dot, hex_rgb(READY_DOT), tolerance=24) > 0.3

    # The notebook's tab down to the end of this cell: what the README shows.
    dock = notebook.page.locator("#jp-main-dock-panel").bounding_box()
    cell_box = cell.bounding_box()
    assert dock is not None and cell_box is not None
    bottom = cell_box["y"] + cell_box["height"] + 4
    clip = {"x": dock["x"], "y": dock["y"], "width": dock["width"], "height": bottom - dock["y"]}
    notebook.page.screenshot(path=ARTIFACTS / "webapp-notebook.png", clip=clip)
    if os.environ.get("NBVIZ_UPDATE_DOCS_IMAGES") == "1":
        target = REPO / "docs" / "images" / "webapp.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ARTIFACTS / "webapp-notebook.png", target)


def test_path_round_trips(notebook: Notebook) -> None:
    """kernel -> frame: setting app.path navigates; frame -> kernel: a click updates app.path."""
    cell = notebook.run(webapp_cell("Paths"))
    widget = cell.locator(".nbviz-frame")
    frame = cell.frame_locator("iframe.nbviz-iframe")
    expect(frame.locator("#where")).to_have_text("/", timeout=20_000)
    backend_pid(notebook)

    notebook.run('app.path = "/docs/"')
    expect(frame.locator("#where")).to_have_text("/docs/", timeout=10_000)
    expect(widget.locator(".nbviz-info")).to_have_text("nbviz test backend \u2014 /docs/")

    frame.locator("a#to-root").click()
    expect(frame.locator("#where")).to_have_text("/", timeout=10_000)
    # The bar shows the model's path: once it reads "/", the front end has sent it.
    expect(widget.locator(".nbviz-info")).to_have_text(
        "nbviz test backend \u2014 /", timeout=10_000
    )
    assert notebook.printed("print(repr(app.path))") == "'/'"

    frame.locator("a#to-docs").click()
    expect(frame.locator("#where")).to_have_text("/docs/", timeout=10_000)
    expect(widget.locator(".nbviz-info")).to_have_text(
        "nbviz test backend \u2014 /docs/", timeout=10_000
    )
    assert notebook.printed("print(repr(app.path))") == "'/docs/'"
    save_screenshot(widget, "path-docs")

    # Spaces and non-ASCII letters: the app gets them percent-encoded (as browsers send them);
    # the kernel and the bar keep them readable, whichever side navigated.
    notebook.run('app.path = "/docs/ü b/"')
    expect(frame.locator("#where")).to_have_text("/docs/%C3%BC%20b/", timeout=10_000)
    frame.locator("a#to-docs").click()
    expect(frame.locator("#where")).to_have_text("/docs/%C3%BC%20b/docs/", timeout=10_000)
    expect(widget.locator(".nbviz-info")).to_have_text(
        "nbviz test backend \u2014 /docs/ü b/docs/", timeout=10_000
    )
    assert notebook.printed("print(repr(app.path))") == "'/docs/ü b/docs/'"

    # The same object shown again in another cell: both views follow it. Stop in one view
    # stops the app (both say so); Start in the other brings both back.
    again = notebook.run("app")
    other = again.locator(".nbviz-frame")
    expect(again.frame_locator("iframe.nbviz-iframe").locator("#heading")).to_have_text(
        "Paths", timeout=10_000
    )
    other.locator(".nbviz-bar").get_by_role("button", name="stop").click()
    for view in (widget, other):
        expect(view).to_have_attribute("data-status", "stopped", timeout=10_000)
        expect(view.locator(".nbviz-panel-title")).to_have_text("backend.py is stopped")
    assert notebook.printed("print(app.status, app.pid)") == "stopped None"
    widget.locator(".nbviz-panel").get_by_role("button", name="Start").click()
    for view in (widget, other):
        expect(view).to_have_attribute("data-status", "ready", timeout=20_000)
    expect(frame.locator("#heading")).to_have_text("Paths", timeout=10_000)
    backend_pid(notebook)


def test_crash_shows_error_and_restart_recovers(notebook: Notebook) -> None:
    """While it starts the panel shows progress; after SIGKILL it says the backend exited, with
    its log; Restart shows progress again, then a freshly loaded page."""
    cell = notebook.run(webapp_cell("Before the crash", "--delay", "2"))
    widget = cell.locator(".nbviz-frame")
    panel = widget.locator(".nbviz-panel")
    iframe = cell.locator("iframe.nbviz-iframe")
    frame = cell.frame_locator("iframe.nbviz-iframe")
    expect(widget).to_have_attribute("data-status", "starting")
    expect(panel.locator(".nbviz-panel-title")).to_have_text("Starting backend.py\u2026")
    expect(panel.locator(".nbviz-progress")).to_be_visible()
    expect(frame.locator("#heading")).to_have_text("Before the crash", timeout=20_000)
    first_pid = backend_pid(notebook)
    # A mark in the page's window: gone once the frame has loaded a new page.
    first_page = iframe.element_handle().content_frame()
    assert first_page is not None
    first_page.evaluate("window.nbvizTestMark = 1")

    notebook.run("import os, signal; os.kill(app.pid, signal.SIGKILL)")
    expect(widget).to_have_attribute("data-status", "crashed", timeout=10_000)
    expect(panel).to_be_visible()
    expect(iframe).to_be_hidden()
    expect(panel.locator(".nbviz-panel-title")).to_have_text("backend.py failed")
    text = panel.locator(".nbviz-panel-text")
    expect(text).to_contain_text("exited with signal SIGKILL")
    expect(text).to_contain_text("last lines of the backend's output")
    expect(text).to_contain_text(f"backend: starting (pid {first_pid})")
    expect(text).to_contain_text("backend: listening on 127.0.0.1:")
    shot = save_screenshot(widget, "crashed")
    assert colour_fraction(shot, hex_rgb(COLOUR)) < 0.01  # no stale page behind the panel
    dot = save_screenshot(widget.locator(".nbviz-dot"), "crashed-dot")
    assert colour_fraction(dot, hex_rgb(CRASHED_DOT), tolerance=24) > 0.3

    panel.get_by_role("button", name="Restart").click()
    expect(widget).to_have_attribute("data-status", "starting", timeout=10_000)
    expect(panel.locator(".nbviz-panel-title")).to_have_text("Starting backend.py\u2026")
    expect(text).not_to_contain_text("SIGKILL")
    expect(widget).to_have_attribute("data-status", "ready", timeout=20_000)
    expect(frame.locator("#heading")).to_have_text("Before the crash", timeout=10_000)
    expect(panel).to_be_hidden()
    second_pid = backend_pid(notebook)
    assert second_pid != first_pid
    page = iframe.element_handle().content_frame()
    assert page is not None
    assert page.evaluate("window.nbvizTestMark") is None
    shot = save_screenshot(widget.locator(".nbviz-body"), "restarted")
    assert colour_fraction(shot, hex_rgb(COLOUR)) > 0.8


def test_failed_start_shows_output_instead_of_blank_frame(notebook: Notebook) -> None:
    """A command that exits before it is ready: the panel shows why, with its last lines."""
    cell = notebook.run(
        "import sys\n"
        "from nbviz import WebApp\n"
        "app = WebApp([sys.executable, '-c', "
        "\"print('loading config.toml'); print('error: config.toml not found'); "
        'raise SystemExit(3)", "{port}"])\n'
        "app"
    )
    widget = cell.locator(".nbviz-frame")
    panel = widget.locator(".nbviz-panel")
    expect(widget).to_have_attribute("data-status", "crashed", timeout=20_000)
    expect(panel).to_be_visible()
    expect(cell.locator("iframe.nbviz-iframe")).to_be_hidden()
    expect(panel.locator(".nbviz-panel-title")).to_contain_text("failed")
    text = panel.locator(".nbviz-panel-text")
    expect(text).to_contain_text("exited with code 3 before it was ready")
    expect(text).to_contain_text("loading config.toml\nerror: config.toml not found")
    expect(panel.get_by_role("button", name="Restart")).to_be_visible()
    save_screenshot(widget, "failed-start")
    # The kernel raises the same error for code that waits on it.
    printed = notebook.printed(
        "try:\n    app.wait_ready(10)\nexcept Exception as e:\n    print(type(e).__name__)"
    )
    assert printed == "BackendExitedError"
