"""A saved notebook shows a picture of an nbviz output where no live widget can run
(GitHub, nbviewer, `jupyter nbconvert --to html`): a card, then the latest screenshot."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import nbformat
import pytest
from jupyter_helpers import BACKEND
from nbclient import NotebookClient
from nbconvert import HTMLExporter
from PIL import Image

WIDGET = "application/vnd.jupyter.widget-view+json"


def run(cells: list[str], path: Path) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    # JupyterLab does not save widget state by default: viewers then show the fallback outputs
    NotebookClient(
        nb,
        timeout=180,
        kernel_name="python3",
        store_widget_state=False,
        resources={"metadata": {"path": path}},
    ).execute()
    return nb


def outputs(cell: nbformat.NotebookNode) -> list[dict]:
    return [o for o in cell.outputs if o.get("output_type") != "stream"]


@pytest.mark.jupyter
def test_webapp_output_carries_a_card(tmp_path: Path) -> None:
    nb = run(
        [
            "import sys\nfrom nbviz import WebApp\n"
            f"command = [sys.executable, {str(BACKEND)!r}, '--port', '{{port}}']\n"
            "app = WebApp(command, title='My app')\n"
            "app",
            "app.wait_ready(); app.stop()",
        ],
        tmp_path,
    )
    (output,) = outputs(nb.cells[0])
    assert output["output_type"] == "display_data"
    assert WIDGET in output["data"]  # the live widget in Jupyter
    assert (
        "My app" in output["data"]["text/html"]
        and "live nbviz WebApp" in output["data"]["text/html"]
    )
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert "live nbviz WebApp" in html


@pytest.mark.jupyter
@pytest.mark.paraview
def test_paraview_output_keeps_the_latest_screenshot(tmp_path: Path) -> None:
    nb = run(
        [
            "import numpy as np, warnings\nfrom nbviz import ParaViewSession, NbvizWarning\n"
            "warnings.simplefilter('ignore', NbvizWarning)\n"
            "x, y, z = np.mgrid[-1:1:16j, -1:1:16j, -1:1:16j]\n"
            "view = ParaViewSession(x, size=(320, 240))\n"
            "view",
            "view.wait_ready(120)\nview.colormap = 'Viridis (matplotlib)'\n"
            "shot = view.screenshot()",
            "view.stop()",
        ],
        tmp_path,
    )
    (output,) = outputs(nb.cells[0])
    assert WIDGET in output["data"]
    png = base64.b64decode(output["data"]["image/png"])  # updated in place by screenshot()
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size == (320, 240)
    assert len(image.getcolors(maxcolors=100_000) or []) > 20  # a rendered picture, not a blank
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert output["data"]["image/png"][:200] in html


def test_there_is_no_card_without_display() -> None:
    from nbviz._frame import static_bundle

    card = static_bundle("<b>x</b>", "WebApp", None)
    assert "&lt;b&gt;x&lt;/b&gt;" in card["text/html"] and "image/png" not in card
    picture = static_bundle("t", "ParaViewSession", b"\x89PNG")
    assert base64.b64decode(picture["image/png"]) == b"\x89PNG"
