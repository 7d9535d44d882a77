"""Browser tests of RemoteDesktop: the desktop in a JupyterLab cell, typed into, reloaded.

A real JupyterLab in the system Chromium runs ``desk = RemoteDesktop(backend); desk``. The test
waits for nbviz's desktop background in the cell's iframe, clicks into an xterm there and types
a command with Playwright's keyboard; the file that command writes must appear. Then the page
is reloaded: the saved notebook's widget reattaches to the same desktop, the same xterm is
there, and typing into it again works; then ``desk`` is shown in a second cell too and typing
into the first one still works. After the kernel is shut down no desktop process may be
left. Screenshots are kept in test-artifacts/browser/desktop-*.png.
"""

from __future__ import annotations

import ast
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_helpers import (
    Notebook,
    chromium,
    colour_fraction,
    hex_rgb,
    open_notebook,
    wait_for_screenshot,
)
from jupyter_helpers import JupyterServer
from PIL import Image
from playwright.sync_api import Browser, Locator, expect, sync_playwright

from nbviz.desktop import _spec
from nbviz.desktop.runtime import shared

pytestmark = [pytest.mark.browser, pytest.mark.jupyter, pytest.mark.timeout(90)]

BACKGROUND = hex_rgb(shared.BACKGROUND)  # the root window's colour, set by nbviz's launcher
TITLE = "nbviz-typing"
#: The xterm the test types into: its own title, a known place on the X screen (1280x800).
XTERM = ["xterm", "-T", TITLE, "-geometry", "60x12+80+80", "-e", "sh"]
#: White: the xterm's background.
WHITE = (255, 255, 255)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright, chromium(playwright) as browser:
        yield browser


def desktop_drawn(shot: Image.Image) -> bool:
    """nbviz's desktop is on screen: much of its background, and an xterm (white) on it."""
    return colour_fraction(shot, BACKGROUND, 10) > 0.2 and colour_fraction(shot, WHITE, 4) > 0.02


def wait_desktop(cell: Locator, name: str) -> tuple[Locator, Image.Image]:
    """Wait until the cell's iframe shows the desktop; (the iframe, its screenshot)."""
    widget = cell.locator(".nbviz-frame")
    expect(widget).to_have_attribute("data-status", "ready", timeout=45_000)
    iframe = widget.locator("iframe.nbviz-iframe")
    iframe.scroll_into_view_if_needed()
    shot = wait_for_screenshot(iframe, name, desktop_drawn, "the desktop in the iframe", 20)
    return iframe, shot


def wait_file(nb: Notebook, path: Path, timeout: float = 10) -> str:
    """In the kernel, wait until ``path`` exists; its text (or None)."""
    printed = nb.printed(
        "import os as _os, time as _time\n"
        f"_deadline = _time.monotonic() + {timeout}\n"
        f"while not _os.path.exists({str(path)!r}) and _time.monotonic() < _deadline:\n"
        "    _time.sleep(0.05)\n"
        f"print(repr(open({str(path)!r}).read() if _os.path.exists({str(path)!r}) else None))",
        timeout=timeout + 10,
    )
    return ast.literal_eval(printed)


def type_into_xterm(nb: Notebook, iframe: Locator, text: str) -> None:
    """Click into the xterm in the iframe (its top-left area on the scaled desktop), type."""
    # Cells run since may have scrolled it (partly) under the toolbar: bring all of it back.
    iframe.evaluate("frame => frame.scrollIntoView({block: 'center'})")
    nb.page.wait_for_timeout(200)
    box = iframe.bounding_box()
    assert box is not None
    # The X screen (1280x800) is scaled to the iframe's width; the xterm starts at (80, 80).
    scale = box["width"] / 1280
    nb.page.mouse.click(box["x"] + 200 * scale, box["y"] + 130 * scale)
    nb.page.wait_for_timeout(300)
    nb.page.keyboard.type(text, delay=20)
    nb.page.keyboard.press("Enter")


@pytest.mark.parametrize("backend", ["xpra", "vnc"])
def test_type_into_the_desktop_and_reload(
    backend: str, jupyter_server: JupyterServer, browser: Browser, tmp_path: Path
) -> None:
    problem = _spec.missing_backend(backend)  # type: ignore[arg-type]
    if problem:
        pytest.skip(f"{backend}: {problem}")
    tmp_path.chmod(0o755)
    first, second = tmp_path / "typed.txt", tmp_path / "after-reload.txt"
    third = tmp_path / "two-cells.txt"
    with open_notebook(jupyter_server, browser, f"desktop-{backend}") as nb:
        cell = nb.run(f'from nbviz import RemoteDesktop\ndesk = RemoteDesktop("{backend}")\ndesk')
        procs = ast.literal_eval(
            nb.printed(
                "import psutil\n"
                "desk.wait_ready(30)\n"
                f"term = desk.launch({XTERM!r})\n"
                "_seen = []\n"
                "for _p in [psutil.Process(desk.pid), *psutil.Process(desk.pid).children(True)]:\n"
                "    try:\n"
                "        _seen.append((_p.pid, _p.name()))\n"
                "    except psutil.NoSuchProcess:\n"
                "        pass  # a short-lived helper (xsetroot) that has exited\n"
                "print(_seen + [(term.pid, 'xterm')])"
            )
        )
        nb.pids.extend(pid for pid, _name in procs)
        assert {"openbox", "xterm"} <= {name for _pid, name in procs}, procs
        iframe, _ = wait_desktop(cell, f"desktop-{backend}-shown")

        type_into_xterm(nb, iframe, f"echo hello-from-page > {first}")
        assert wait_file(nb, first) == "hello-from-page\n"
        # the X screen followed the frame's size (no part of the desktop cut off)
        sizes = nb.printed("import json; print(json.dumps([list(desk.size), desk.frame_size]))")
        screen, frame = json.loads(sizes)
        assert screen == frame and screen[0] > 300, sizes

        # Reload: the saved notebook's widget reattaches to the same running desktop. (Saved
        # with the toolbar's button: Ctrl+S would go to the xterm, which has the focus.) The
        # cells run since have the keyboard focus: the click into the desktop must take it.
        nb.page.locator('[data-command="docmanager:save"]').first.click()
        nb.page.wait_for_timeout(500)
        nb.page.reload()
        nb.wait_idle()
        cell = nb.cells.first
        iframe, _ = wait_desktop(cell, f"desktop-{backend}-reloaded")
        assert TITLE in ast.literal_eval(nb.printed("desk.refresh(); print(desk.windows)"))
        assert nb.printed("print(term.running)") == "True"
        type_into_xterm(nb, iframe, f"echo again > {second}")
        assert wait_file(nb, second) == "again\n"

        # Shown in a second cell as well: both pages stay attached (neither takes the session
        # from the other), so keys typed into the first one still arrive.
        wait_desktop(nb.run("desk"), f"desktop-{backend}-second-cell")
        type_into_xterm(nb, iframe, f"echo shared > {third}")
        assert wait_file(nb, third) == "shared\n"


@pytest.mark.parametrize("backend", ["xpra", "vnc"])
def test_type_into_the_desktop_through_jupyter_server_proxy(
    backend: str, lab_without_nbviz: JupyterServer, browser: Browser, tmp_path: Path
) -> None:
    """Without nbviz's route the desktop's page is on a loopback port behind
    jupyter-server-proxy: the frame holds the session secret and works; without it, 403."""
    problem = _spec.missing_backend(backend)  # type: ignore[arg-type]
    if problem:
        pytest.skip(f"{backend}: {problem}")
    tmp_path.chmod(0o755)
    typed = tmp_path / "typed.txt"
    with open_notebook(lab_without_nbviz, browser, f"desktop-{backend}-proxy") as nb:
        cell = nb.run(f'from nbviz import RemoteDesktop\ndesk = RemoteDesktop("{backend}")\ndesk')
        info = json.loads(
            nb.printed(
                "import json, psutil\n"
                "desk.wait_ready(30)\n"
                f"term = desk.launch({XTERM!r})\n"
                "_pids = [desk.pid, *(p.pid for p in psutil.Process(desk.pid).children(True))]\n"
                "print(json.dumps({'route': desk.route, 'port': desk.endpoint.port,"
                " 'pids': _pids + [term.pid]}))"
            )
        )
        nb.pids.extend(info["pids"])
        assert info["route"] == "proxy"
        page = _spec.CLIENT_PAGE[backend].lstrip("/")
        # Another local user straight to the port, or a request without the secret (and with
        # Jupyter's token, not the browser's cookies) through the proxy: refused.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{info['port']}/{page}", timeout=10)
        assert refused.value.code == 403
        refused.value.close()
        assert lab_without_nbviz.get(f"proxy/{info['port']}/{page}")[0] == 403
        iframe, _ = wait_desktop(cell, f"desktop-{backend}-proxy-shown")
        type_into_xterm(nb, iframe, f"echo through-the-proxy > {typed}")
        assert wait_file(nb, typed) == "through-the-proxy\n"


@pytest.mark.parametrize("backend", ["xpra", "vnc"])
def test_the_page_loads_while_the_desktop_starts(
    backend: str, jupyter_server: JupyterServer, browser: Browser, tmp_path: Path
) -> None:
    """The frame loads the client page as soon as the launcher serves it, hidden; at "ready" it
    shows that same page (not loaded again), whose websocket waited in the launcher.

    A window manager that takes 4 s to start keeps the desktop "starting" that long after the
    launcher serves the page (the launcher waits for the window manager before it is ready).
    Meanwhile the user clicks into the next cell: the page, connecting, must not take the
    keyboard focus from it.
    """
    problem = _spec.missing_backend(backend)  # type: ignore[arg-type]
    if problem:
        pytest.skip(f"{backend}: {problem}")
    slow_wm = tmp_path / "slow-wm"
    slow_wm.write_text("#!/bin/sh\nsleep 4\nexec openbox\n")
    slow_wm.chmod(0o755)
    tmp_path.chmod(0o755)
    with open_notebook(jupyter_server, browser, f"desktop-{backend}-early") as nb:
        cell = nb.run(
            "from nbviz import RemoteDesktop\n"
            f"desk = RemoteDesktop({backend!r}, window_manager={str(slow_wm)!r})\n"
            "desk"
        )
        widget = cell.locator(".nbviz-frame")
        iframe = widget.locator("iframe.nbviz-iframe")
        # The user goes on typing in the next cell while the desktop starts.
        editor = nb.cells.nth(nb.cells.count() - 1).locator(".cm-content")
        editor.click()
        # While starting: the page is loaded (its scripts ran), the frame keeps it hidden.
        nb.page.wait_for_function(
            "el => el.contentWindow && el.contentWindow.document.readyState === 'complete'"
            " && el.contentWindow.location.pathname.includes('/nbviz/')",
            arg=iframe.element_handle(),
            timeout=20_000,
        )
        expect(widget).to_have_attribute("data-status", "starting")
        expect(iframe).to_have_css("visibility", "hidden")
        # A mark in the loaded page: still there after "ready" means it was not loaded again.
        iframe.evaluate("el => { el.contentWindow.__nbviz_early = 1; }")
        nb.pids.append(int(nb.printed("print(desk.pid)")))
        loaded_early = nb.printed("print(desk.status)")
        assert loaded_early == "starting", loaded_early  # the kernel still waits for the WM
        expect(iframe).to_have_css("visibility", "visible", timeout=30_000)
        iframe, _ = wait_desktop(cell, f"desktop-{backend}-early")
        assert iframe.evaluate("el => el.contentWindow.__nbviz_early") == 1
        # Connected, the client did not take the keyboard from the notebook (Xpra's page
        # focuses its textarea on every connection, noVNC its canvas: nbviz's page script lets
        # them only after a click or a key in the page).
        assert nb.page.evaluate("document.activeElement.tagName") != "IFRAME"
        assert nb.printed("print(desk.status)") == "ready"
