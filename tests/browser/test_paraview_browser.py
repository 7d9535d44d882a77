"""Browser tests of ParaViewSession: the trame app in a JupyterLab cell, driven both ways.

A real JupyterLab in the system Chromium runs ``view = ParaViewSession(run.pvd, height=420)``;
the tests look at the pixels of ParaView's server-rendered image inside the cell's iframe,
drag the mouse over it, use the app's field menu, and read the kernel's traits back from
cells. After each test the kernel is shut down and its pvpython and Xvfb must be gone.
Screenshots are kept in test-artifacts/browser/paraview-*.png.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from browser_helpers import (
    Notebook,
    changed_fraction,
    chromium,
    colour_fraction,
    open_notebook,
    save_screenshot,
    wait_for_screenshot,
)
from jupyter_helpers import JupyterServer
from paraview_data import heat_series
from PIL import Image
from playwright.sync_api import Browser, Locator, expect, sync_playwright

pytestmark = [
    pytest.mark.browser,
    pytest.mark.jupyter,
    pytest.mark.paraview,
    pytest.mark.timeout(90),
]

BACKGROUND = (82, 87, 110)  # ParaView 5.11's default background, grey-blue


# Colour classes of the shaded surface (lighting dims the colormap's colours by ~20 %).
def cool_blue(r: int, g: int, b: int) -> bool:  # the low end of "Cool to Warm"
    return b > 120 and b - r > 60 and b - g > 50


def warm_red(r: int, g: int, b: int) -> bool:  # its high end
    return r > 120 and g < 70 and b < 70


def viridis_purple(r: int, g: int, b: int) -> bool:  # the low end of "Viridis (matplotlib)"
    return 35 < r < 100 and g < 30 and 45 < b < 110


def viridis_yellow(r: int, g: int, b: int) -> bool:  # its high end
    return r > 150 and g > 140 and b < 90


def fraction(image: Image.Image, colour: Callable[[int, int, int], bool]) -> float:
    """Fraction of the pixels in the middle of ``image`` (where the cube is, away from the
    scalar bar and the axes) of the colour class ``colour``."""
    width, height = image.size
    middle = image.crop((int(width * 0.3), int(height * 0.1), int(width * 0.7), int(height * 0.9)))
    data = middle.convert("RGB").tobytes()
    hits = sum(1 for i in range(0, len(data), 3) if colour(data[i], data[i + 1], data[i + 2]))
    return hits / max(1, len(data) // 3)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright, chromium(playwright) as browser:
        yield browser


@pytest.fixture(scope="module")
def pvd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return heat_series(tmp_path_factory.mktemp("heat"))


@pytest.fixture
def notebook(
    jupyter_server: JupyterServer, browser: Browser, request: pytest.FixtureRequest
) -> Iterator[Notebook]:
    name = "paraview-" + request.node.originalname.removeprefix("test_")
    with open_notebook(jupyter_server, browser, name) as nb:
        yield nb


def show_view(nb: Notebook, pvd: Path, ranks: int | None = None) -> tuple[Locator, Locator]:
    """Run the ParaViewSession cell; wait for the remote view's image; (the widget, the image).

    The pids of pvpython and its children (its Xvfb; with ``ranks``, mpiexec and the pvserver
    ranks) go into ``nb.pids``: they must all be gone once the test has shut the kernel down."""
    cell = nb.run(
        "from nbviz import ParaViewSession\n"
        f'view = ParaViewSession(r"{pvd}", height=420, ranks={ranks})\nview'
    )
    widget = cell.locator(".nbviz-frame")
    try:
        expect(widget).to_have_attribute("data-status", "ready", timeout=60_000)
    except AssertionError as exc:  # say why: the kernel's view of the backend, and its output
        why = nb.printed("print(view.status, view.message)\nprint(view.logs(30))")
        raise AssertionError(why) from exc
    procs = ast.literal_eval(
        nb.printed(
            "import psutil\n"
            "_procs = [psutil.Process(view.pid), *psutil.Process(view.pid).children(True)]\n"
            "print([(p.pid, p.name()) for p in _procs])"
        )
    )
    nb.pids.extend(pid for pid, _name in procs)
    assert {name for _pid, name in procs} >= {"pvpython", "Xvfb"}, procs
    frame = cell.frame_locator("iframe.nbviz-iframe")
    # trame's VtkRemoteView: the server's images land in an <img> under a transparent canvas.
    image = frame.locator("main.v-main img")
    expect(image).to_have_attribute("src", re.compile(r"^blob:"), timeout=30_000)
    image.scroll_into_view_if_needed()
    return widget, image


def rendered(shot: Image.Image) -> bool:
    """ParaView's image is shown: mostly background, and a data set in front of it."""
    background = colour_fraction(shot, BACKGROUND, tolerance=10)
    return 0.3 < background < 0.95


def kernel_wait(nb: Notebook, condition: str, value: str, timeout: float = 10) -> object:
    """In the kernel, poll until ``condition`` holds (or ``timeout``); then the repr of ``value``.

    The traits change on nbviz's channel thread, so a busy cell sees them change."""
    printed = nb.printed(
        "import time as _time\n"
        f"_deadline = _time.monotonic() + {timeout}\n"
        f"while not ({condition}) and _time.monotonic() < _deadline:\n"
        "    _time.sleep(0.05)\n"
        f"print(repr({value}))",
        timeout=timeout + 10,
    )
    return ast.literal_eval(printed)


@pytest.mark.parametrize("ranks", [None, 2], ids=["pvpython", "2-mpi-ranks"])
def test_view_shows_and_follows_the_mouse(notebook: Notebook, pvd: Path, ranks: int | None) -> None:
    """The remote view renders in the cell; a drag over it rotates the camera: new pixels, and
    ``view.camera`` in the kernel follows (same distance to the focal point: a rotation).
    With 2 MPI ranks the picture is composited from the ranks' halves of the data."""
    widget, image = show_view(notebook, pvd, ranks)
    if ranks:
        names = notebook.printed("print(sorted({p.name() for p in _procs}))")
        assert "pvserver" in names and "mpiexec" in names, names
    box = widget.locator(".nbviz-body").bounding_box()
    assert box is not None and abs(box["height"] - 420) <= 1, box
    suffix = f"-{ranks}-ranks" if ranks else ""
    before = wait_for_screenshot(image, "paraview-view" + suffix, rendered, "ParaView's image")
    # The pressure ramp along x in "Cool to Warm": both of its ends are on screen.
    assert fraction(before, cool_blue) > 0.03 and fraction(before, warm_red) > 0.03
    save_screenshot(widget, "paraview-widget" + suffix)

    start = ast.literal_eval(notebook.printed("_before = view.camera; print(view.camera)"))
    assert isinstance(start, dict)
    # The cells run above moved the page (their outputs' lengths vary: a launcher's process
    # list wraps to two lines, or not): aim the drag at where the view is now.
    image.scroll_into_view_if_needed()
    view_box = image.bounding_box()
    assert view_box is not None
    x = view_box["x"] + view_box["width"] / 2
    y = view_box["y"] + view_box["height"] / 2
    mouse = notebook.page.mouse
    mouse.move(x, y)
    mouse.down()
    mouse.move(x + 160, y + 60, steps=12)
    mouse.up()

    after = wait_for_screenshot(
        image,
        "paraview-rotated" + suffix,
        lambda shot: changed_fraction(before, shot) > 0.05 and rendered(shot),
        "the rotated view",
    )
    assert changed_fraction(before, after) > 0.05
    end = kernel_wait(notebook, "view.camera != _before", "view.camera")
    assert isinstance(end, dict)
    assert end["position"] != pytest.approx(start["position"], abs=1e-3), (start, end)
    assert end["focal_point"] == pytest.approx(start["focal_point"], abs=1e-6)
    assert math.dist(end["position"], end["focal_point"]) == pytest.approx(
        math.dist(start["position"], start["focal_point"]), rel=0.01
    )


def test_field_changes_both_ways(notebook: Notebook, pvd: Path) -> None:
    """Kernel -> page: a new field and colormap change the pixels and the app's field menu;
    page -> kernel: choosing a field in the app's menu sets ``view.field``."""
    widget, image = show_view(notebook, pvd)
    field_menu = widget.frame_locator("iframe.nbviz-iframe").locator(".nbviz-field")
    expect(field_menu).to_contain_text("pressure")
    before = wait_for_screenshot(image, "paraview-pressure", rendered, "ParaView's image")
    assert fraction(before, viridis_purple) < 0.01

    notebook.run('view.field = "temperature"; view.colormap = "Viridis (matplotlib)"')
    # Temperature is a blob inside the cube: its faces are at the low end of the colormap.
    temperature = wait_for_screenshot(
        image,
        "paraview-temperature",
        lambda shot: fraction(shot, viridis_purple) > 0.2,
        "the cube in Viridis' dark end",
    )
    assert changed_fraction(before, temperature) > 0.05
    assert fraction(temperature, cool_blue) < 0.01 and fraction(temperature, warm_red) < 0.01
    expect(field_menu).to_contain_text("temperature")

    field_menu.click()
    frame = widget.frame_locator("iframe.nbviz-iframe")
    frame.get_by_role("option", name="pressure").click()
    expect(field_menu).to_contain_text("pressure")
    assert kernel_wait(notebook, 'view.field == "pressure"', "view.field") == "pressure"
    # Pressure's ramp now in Viridis: its yellow end shows.
    wait_for_screenshot(
        image,
        "paraview-pressure-viridis",
        lambda shot: fraction(shot, viridis_yellow) > 0.03,
        "pressure in Viridis",
    )
    assert notebook.printed("print(view.colormap)") == "Viridis (matplotlib)"


def test_view_through_jupyter_server_proxy(
    lab_without_nbviz: JupyterServer, browser: Browser, pvd: Path
) -> None:
    """Without nbviz's route, the frame loads trame through proxy/<port>/ holding the session
    secret (first URL, then a cookie inside the iframe); the view renders and is live."""
    with open_notebook(lab_without_nbviz, browser, "paraview-proxy-fallback") as nb:
        widget, image = show_view(nb, pvd)
        assert nb.printed("print(view.route)") == "proxy"
        before = wait_for_screenshot(image, "paraview-proxy", rendered, "ParaView's image")
        nb.run('view.colormap = "Viridis (matplotlib)"')
        wait_for_screenshot(
            image,
            "paraview-proxy-viridis",
            lambda shot: changed_fraction(before, shot) > 0.05 and rendered(shot),
            "the view in Viridis",
        )
        path = nb.printed("print(view.path)")
        assert "nbviz_secret" not in path  # the page moved on to the app's root
        assert "nbviz_secret" not in (widget.locator(".nbviz-bar").text_content() or "")


def test_new_steps_of_a_running_simulation_reach_the_page(
    notebook: Notebook, tmp_path: Path
) -> None:
    """``follow=True``: a step file written after the view started shows in the page (new
    pixels, the app's slider label on the new last step), and ``view.times`` grows."""
    heat_series(tmp_path, steps=4)
    later = {name: (tmp_path / name).read_bytes() for name in ("step2.vti", "step3.vti")}
    for name in later:
        (tmp_path / name).unlink()
    cell = notebook.run(
        "from nbviz import ParaViewSession\n"
        f'view = ParaViewSession(r"{tmp_path}/step*.vti", height=420, follow=True,\n'
        '                       field="pressure", follow_interval=0.2, settle=0.2)\nview'
    )
    widget = cell.locator(".nbviz-frame")
    expect(widget).to_have_attribute("data-status", "ready", timeout=60_000)
    notebook.pids.extend(
        ast.literal_eval(
            notebook.printed(
                "import psutil\n"
                "print([p.pid for p in [psutil.Process(view.pid),"
                " *psutil.Process(view.pid).children(True)]])"
            )
        )
    )
    frame = cell.frame_locator("iframe.nbviz-iframe")
    image = frame.locator("main.v-main img")
    expect(image).to_have_attribute("src", re.compile(r"^blob:"), timeout=30_000)
    image.scroll_into_view_if_needed()
    label = frame.locator(".nbviz-time-label")
    expect(label).to_contain_text("(2/2)")
    before = wait_for_screenshot(image, "paraview-follow-2", rendered, "ParaView's image")
    (tmp_path / "step2.vti").write_bytes(later["step2.vti"])  # the solver writes a step
    expect(label).to_contain_text("(3/3)", timeout=15_000)
    after = wait_for_screenshot(
        image,
        "paraview-follow-3",
        lambda shot: changed_fraction(before, shot) > 0.05 and rendered(shot),
        "the new step's picture",
    )
    assert changed_fraction(before, after) > 0.05
    assert kernel_wait(notebook, "len(view.times) == 3", "(len(view.times), view.time)") == (3, 2)
