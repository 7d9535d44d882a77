"""A WebApp on a Slurm compute node, in JupyterLab: while its job waits in the queue the frame
says so (job id, state, reason, time in the queue); once the job runs, the app shows.

The cluster is real (tests/slurm_helpers.py); a job that holds every CPU keeps ours pending.
Set NBVIZ_UPDATE_DOCS_IMAGES=1 to also refresh docs/images/slurm-pending.png.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from browser_helpers import ARTIFACTS, REPO, Notebook, chromium, open_notebook, save_screenshot
from jupyter_helpers import BACKEND, JupyterServer
from playwright.sync_api import Browser, expect, sync_playwright
from slurm_helpers import Cluster

pytestmark = [pytest.mark.browser, pytest.mark.jupyter, pytest.mark.timeout(150)]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright, chromium(playwright) as browser:
        yield browser


@pytest.fixture
def notebook(jupyter_server: JupyterServer, browser: Browser) -> Iterator[Notebook]:
    with open_notebook(jupyter_server, browser, "slurm") as nb:
        yield nb


def test_pending_job_shows_its_state_in_the_frame(notebook: Notebook, slurm: Cluster) -> None:
    blocker = slurm.block()
    try:
        # (a user's kernel has SLURM_CONF from the site; this one learns this cluster's here)
        notebook.run(f"import os; os.environ.update({slurm.env!r})")
        cell = notebook.run(
            "import sys\n"
            "from nbviz import WebApp\n"
            "\n"
            "app = WebApp(\n"
            f'    [sys.executable, r"{BACKEND}", "--port", "{{port}}",\n'
            '     "--heading", "Running on a compute node"],\n'
            '    slurm={"partition": "debug", "time": "00:10:00"},\n'
            "    height=260,\n"
            ")\n"
            "app"
        )
        widget = cell.locator(".nbviz-frame")
        panel = widget.locator(".nbviz-panel")
        expect(widget).to_have_attribute("data-status", "starting")
        expect(panel.locator(".nbviz-panel-title")).to_have_text(
            "backend.py waits for a compute node\u2026", timeout=20_000
        )
        job = notebook.printed("print(app.queue['id'])")
        assert job.isdigit(), job
        text = panel.locator(".nbviz-panel-text")
        expect(text).to_contain_text(f"Slurm job {job}: PENDING (Resources)")
        expect(text).to_contain_text("in the queue for")
        expect(text).not_to_contain_text(" s of ")  # queue time is not start time
        save_screenshot(widget, "slurm-pending")
        if os.environ.get("NBVIZ_UPDATE_DOCS_IMAGES") == "1":
            shutil.copyfile(
                ARTIFACTS / "slurm-pending.png", REPO / "docs" / "images" / "slurm-pending.png"
            )
        # the node frees up: the same frame shows the app, through the route
        slurm.run("scancel", blocker)
        frame = cell.frame_locator("iframe.nbviz-iframe")
        expect(frame.locator("#heading")).to_have_text("Running on a compute node", timeout=60_000)
        expect(widget).to_have_attribute("data-status", "ready")
        assert notebook.printed("print(app.job['id'])") == job
        notebook.run("app.stop()")
        assert slurm.wait_no_jobs() == []
    finally:
        slurm.run("scancel", blocker, check=False)
