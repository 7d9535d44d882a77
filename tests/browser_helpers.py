"""Playwright helpers for nbviz's browser tests: the system Chromium and a JupyterLab notebook.

A :class:`Notebook` drives JupyterLab the way a person does: it clicks into the last cell,
types the code and presses Shift+Enter, then waits on the DOM (the cell's prompt, its output)
rather than on fixed sleeps.
"""

from __future__ import annotations

import io
import json
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from jupyter_helpers import JupyterServer, pid_running, wait_until
from PIL import Image
from playwright.sync_api import Browser, Locator, Page, Playwright, expect

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
REPO = Path(__file__).resolve().parent.parent
#: Screenshots of every browser test land here (git-ignored).
ARTIFACTS = REPO / "test-artifacts" / "browser"
VIEWPORT = {"width": 1280, "height": 900}

#: A finished cell's prompt: "[3]:" (not "[ ]:" nor "[*]:").
DONE_PROMPT = re.compile(r"^\s*\[\d+\]:\s*$")
#: The status bar's kernel item once a kernel is connected and idle ("Python 3 (ipykernel) |
#: Idle"; before a kernel exists it reads "No Kernel | Initializing").
KERNEL_IDLE = re.compile(r"^(?!No Kernel).+ \| Idle$")


@contextmanager
def chromium(playwright: Playwright) -> Iterator[Browser]:
    """The system Chromium, headless. ``launch`` gives it a fresh temporary profile (removed on
    close); each test then opens its own context (no cookies or storage shared)."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


def quiet_lab(server: JupyterServer) -> None:
    """User settings for the test server's JupyterLab: no "fetch news?" toast over the cells."""
    settings = server.root / "config" / "lab" / "user-settings" / "@jupyterlab"
    notification = settings / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True, exist_ok=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))


def write_notebook(server: JupyterServer, name: str) -> str:
    """An empty Python notebook in the server's root; returns its path relative to the root."""
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "id": "first",
                "metadata": {},
                "source": "",
                "outputs": [],
                "execution_count": None,
            }
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = server.root / "notebooks" / f"{name}.ipynb"
    path.write_text(json.dumps(notebook))
    return path.name


def api(server: JupyterServer, method: str, path: str) -> object:
    """Call the Jupyter REST API with the token (for cleanup; the page uses its cookie)."""
    request = urllib.request.Request(server.url(path), method=method)
    request.add_header("Authorization", f"token {server.token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else None


class Notebook:
    """One notebook open in JupyterLab in ``page``, with its own kernel."""

    def __init__(self, page: Page, server: JupyterServer, path: str) -> None:
        self.page = page
        self.server = server
        self.path = path
        #: Backend pids the test saw; the fixture checks they are gone after the kernel is.
        self.pids: list[int] = []

    def open(self, timeout: float = 45) -> Notebook:
        """Load JupyterLab on the notebook (``reset``: no tabs restored from other tests)."""
        self.page.goto(
            self.server.url(f"lab/tree/{self.path}?reset&token={self.server.token}"),
            timeout=timeout * 1000,
        )
        self.wait_idle(timeout)
        return self

    def wait_idle(self, timeout: float = 30) -> None:
        """Wait until the notebook's kernel is connected and idle.

        The toolbar's execution indicator also says "idle" before any kernel exists; the
        status bar's "<kernel name> | Idle" appears only once the kernel is connected.
        """
        status = self.page.locator("#jp-main-statusbar").get_by_text(KERNEL_IDLE)
        expect(status).to_be_visible(timeout=timeout * 1000)
        indicator = self.page.locator(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator")
        expect(indicator).to_have_attribute("data-status", "idle", timeout=timeout * 1000)

    @property
    def cells(self) -> Locator:
        return self.page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")

    def run(self, code: str, timeout: float = 30) -> Locator:
        """Type ``code`` into the last (empty) cell, run it, wait until it finished; the cell."""
        cell = self.cells.nth(self.cells.count() - 1)  # pinned: Shift+Enter adds one below
        editor = cell.locator(".cm-content")
        expect(editor).to_have_text("")
        editor.click()
        # insert_text types it in one go: no auto-closed brackets, no completer popups.
        self.page.keyboard.insert_text(code)
        self.page.keyboard.press("Shift+Enter")
        expect(cell.locator(".jp-InputPrompt")).to_have_text(DONE_PROMPT, timeout=timeout * 1000)
        return cell

    def printed(self, code: str, timeout: float = 30) -> str:
        """Run ``code`` and return the text of its outputs (what it printed)."""
        cell = self.run(code, timeout)
        return "".join(cell.locator(".jp-OutputArea-output").all_inner_texts()).strip()

    def shutdown(self) -> None:
        """Shut down this notebook's kernel through the REST API (as "Shut Down Kernel" does)."""
        sessions = api(self.server, "GET", "api/sessions")
        assert isinstance(sessions, list)
        for session in sessions:
            if session.get("path") == self.path:
                api(self.server, "DELETE", f"api/sessions/{session['id']}")


def save_screenshot(locator: Locator, name: str) -> Image.Image:
    """Screenshot ``locator`` into test-artifacts/browser/<name>.png; the image, as RGB."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    png = locator.screenshot(path=ARTIFACTS / f"{name}.png", animations="disabled")
    return Image.open(io.BytesIO(png)).convert("RGB")


def colour_fraction(image: Image.Image, rgb: tuple[int, int, int], tolerance: int = 8) -> float:
    """Fraction of ``image``'s pixels within ``tolerance`` (per channel) of ``rgb``."""
    data = image.convert("RGB").tobytes()
    r, g, b = rgb
    close = sum(
        1
        for i in range(0, len(data), 3)
        if abs(data[i] - r) <= tolerance
        and abs(data[i + 1] - g) <= tolerance
        and abs(data[i + 2] - b) <= tolerance
    )
    return close / max(1, len(data) // 3)


def hex_rgb(colour: str) -> tuple[int, int, int]:
    value = colour.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def wait_processes_gone(pids: list[int], timeout: float = 15) -> None:
    wait_until(
        lambda: not any(pid_running(pid) for pid in pids),
        timeout=timeout,
        what=f"processes {pids} to exit",
    )


@contextmanager
def open_notebook(server: JupyterServer, browser: Browser, name: str) -> Iterator[Notebook]:
    """A fresh notebook ``name`` open in JupyterLab in its own browser context.

    Afterwards: no uncaught exception in the page, a screenshot of the page in
    test-artifacts/browser/<name>-page.png, the kernel shut down, and every pid the test put
    into ``notebook.pids`` gone (nbviz's orphan watchdog stops a dead kernel's backends).
    """
    quiet_lab(server)
    path = write_notebook(server, name)
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page_errors: list[str] = []  # uncaught exceptions in the page (JupyterLab's or the widget's)
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    nb = Notebook(page, server, path)
    try:
        nb.open()
        yield nb
        assert not page_errors, page_errors
    finally:
        try:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=ARTIFACTS / f"{name}-page.png")
        finally:
            context.close()
            nb.shutdown()
    wait_processes_gone(nb.pids)


def changed_fraction(a: Image.Image, b: Image.Image, threshold: int = 40) -> float:
    """Fraction of pixels whose colours differ by more than ``threshold`` (sum over RGB)."""
    if a.size != b.size:
        return 1.0
    da, db = a.convert("RGB").tobytes(), b.convert("RGB").tobytes()
    changed = sum(
        1
        for i in range(0, len(da), 3)
        if abs(da[i] - db[i]) + abs(da[i + 1] - db[i + 1]) + abs(da[i + 2] - db[i + 2]) > threshold
    )
    return changed / max(1, len(da) // 3)


def wait_for_screenshot(
    locator: Locator,
    name: str,
    predicate: Callable[[Image.Image], object],
    what: str,
    timeout: float = 15,
) -> Image.Image:
    """Screenshot ``locator`` (as :func:`save_screenshot`) until ``predicate`` holds for it."""
    deadline = time.monotonic() + timeout
    while True:
        shot = save_screenshot(locator, name)
        if predicate(shot):
            return shot
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what}; see {ARTIFACTS / name}.png"
            )
        time.sleep(0.2)
