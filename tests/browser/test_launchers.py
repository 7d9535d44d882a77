"""JupyterLab launcher tiles (jupyter-server-proxy entry points): Desktop and ParaView.

A real JupyterLab at /user/alice/ in the system Chromium: the tiles are in Lab's launcher; a
click opens a Lab tab whose frame is Xpra's HTML5 client, served through the named server
route over a Unix socket. Keys typed in the page reach the desktop's xterm; the ParaView tile
shows ParaView's GUI. The desktops listen on no TCP port, their socket directory is private,
and stopping the server leaves no process and no directory behind.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from browser_helpers import (
    ARTIFACTS,
    VIEWPORT,
    chromium,
    colour_fraction,
    quiet_lab,
    save_screenshot,
)
from jupyter_helpers import JupyterServer, wait_until
from playwright.sync_api import Browser, FrameLocator, Page, expect, sync_playwright

from nbviz import launchers
from nbviz.desktop.runtime import shared

pytestmark = [pytest.mark.browser, pytest.mark.jupyter, pytest.mark.timeout(120)]


def need(*programs: str) -> None:
    missing = [p for p in ("xpra", "xdotool", *programs) if shutil.which(p) is None]
    if not missing:
        return
    if os.environ.get("CI"):  # CI installs scripts/debian-packages.txt: a missing one is a bug
        pytest.fail(f"not installed: {', '.join(missing)}")
    pytest.skip(f"not installed: {', '.join(missing)}")


class Lab(JupyterServer):
    @property
    def env(self) -> dict[str, str]:
        # The tiles' xterm runs $SHELL: a plain one, not the login shell's startup files.
        return {**super().env, "SHELL": "/bin/sh"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """A JupyterLab of its own: the test checks what stopping it leaves behind."""
    need()
    server = Lab(root=tmp_path_factory.mktemp("launchers")).start()
    quiet_lab(server)
    launched: list[psutil.Process] = []
    server.launched = launched  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()
    # The server is gone: so are its desktops, their sockets and directories.
    _gone, alive = psutil.wait_procs(launched, timeout=15)
    assert not alive, [p.pid for p in alive]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright, chromium(playwright) as browser:
        yield browser


def launcher_processes(server: JupyterServer, tile: str) -> list[psutil.Process]:
    assert server.proc is not None
    return [
        child
        for child in psutil.Process(server.proc.pid).children()
        if child.cmdline()[1:4] == ["-m", "nbviz.launchers", tile]
    ]


def desktop_env(process: psutil.Process) -> dict[str, str]:
    """DISPLAY and XAUTHORITY of the desktop a launcher process runs (from its state file)."""
    argv = process.cmdline()
    socket = argv[argv.index("--socket") + 1]
    info_path = shared.state_dir_for(socket) / "desktop.json"
    wait_until(info_path.exists, timeout=20, what=f"{info_path}")
    info = json.loads(info_path.read_text())
    return {**os.environ, "DISPLAY": info["display"], "XAUTHORITY": info["xauthority"]}


def check_private(server: JupyterServer, process: psutil.Process) -> None:
    """The socket is in a 0700 directory of ours, and nothing in the tree listens on TCP."""
    argv = process.cmdline()
    socket = Path(argv[argv.index("--socket") + 1])
    wait_until(socket.exists, timeout=20, what=f"{socket}")
    info = socket.parent.stat()
    assert info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700, oct(info.st_mode)
    tree = [process, *process.children(recursive=True)]
    listening = [
        (p.name(), c.laddr)
        for p in tree
        for c in p.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert not listening, listening
    server.launched.extend(tree)  # type: ignore[attr-defined]
    server.socket_dirs = [*getattr(server, "socket_dirs", []), socket.parent]  # type: ignore[attr-defined]


def open_tile(page: Page, server: JupyterServer, title: str) -> FrameLocator:
    """Click the tile in Lab's launcher; the frame of the Lab tab it opens."""
    page.goto(server.url(f"lab?reset&token={server.token}"))
    launcher = page.locator(".jp-Launcher")
    card = launcher.locator(f'.jp-LauncherCard[title="{title}"]')
    expect(card).to_be_visible(timeout=30_000)
    card.click()
    iframe = page.locator(f'#jp-main-dock-panel iframe[src$="{launchers_path(title)}"]')
    expect(iframe).to_be_visible(timeout=15_000)
    return page.frame_locator(f'#jp-main-dock-panel iframe[src$="{launchers_path(title)}"]')


def launchers_path(title: str) -> str:
    name = next(key for key, value in launchers.TILES.items() if value[0] == title)
    return f"/user/alice/nbviz-{name}/"


def test_entry_points_are_registered() -> None:
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group="jupyter_serverproxy_servers")}
    assert names["nbviz-desktop"] == "nbviz.launchers:desktop"
    assert names["nbviz-paraview"] == "nbviz.launchers:paraview"
    config = launchers.desktop()
    assert config["unix_socket"] is True and "{unix_socket}" in config["command"]
    assert "port" not in config


def test_desktop_tile_opens_a_working_desktop(
    lab: JupyterServer, browser: Browser, tmp_path: Path
) -> None:
    """Desktop tile -> Lab tab with Xpra's client; keys typed there reach the xterm."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    try:
        frame = open_tile(page, lab, "Desktop")
        expect(frame.locator("#screen canvas").first).to_be_attached(timeout=30_000)
        [process] = launcher_processes(lab, "desktop")
        check_private(lab, process)
        env = desktop_env(process)
        # The xterm the tile starts has the focus once the client shows it; type into it.
        subprocess.run(
            ["xdotool", "search", "--sync", "--class", "xterm", "windowactivate", "--sync"],
            env=env,
            check=True,
            timeout=20,
        )
        page.wait_for_timeout(1000)
        box = page.locator("#jp-main-dock-panel iframe").last.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + 120, box["y"] + 120)
        target = tmp_path / "typed.txt"
        page.keyboard.type(f"echo typed-in-a-lab-tab > {target}\n", delay=25)
        wait_until(target.exists, timeout=15, what="the file the xterm's shell writes")
        assert target.read_text().strip() == "typed-in-a-lab-tab"
        shot = save_screenshot(page.locator("#jp-main-dock-panel"), "launcher-desktop")
        background = tuple(int(shared.BACKGROUND[i : i + 2], 16) for i in (1, 3, 5))
        assert colour_fraction(shot, background, tolerance=12) > 0.2  # type: ignore[arg-type]
    finally:
        page.screenshot(path=ARTIFACTS / "launcher-desktop-page.png")
        context.close()


def test_paraview_tile_shows_paraview(lab: JupyterServer, browser: Browser) -> None:
    """ParaView tile -> Lab tab with a desktop that runs ParaView's GUI."""
    need("paraview")
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    try:
        frame = open_tile(page, lab, "ParaView")
        expect(frame.locator("#screen canvas").first).to_be_attached(timeout=30_000)
        [process] = launcher_processes(lab, "paraview")
        check_private(lab, process)
        env = desktop_env(process)
        found = subprocess.run(
            ["xdotool", "search", "--sync", "--onlyvisible", "--name", "ParaView"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert found.stdout.split(), found
        names = {p.name() for p in process.children(recursive=True)}
        assert "paraview" in names, names
        page.wait_for_timeout(3000)
        save_screenshot(page.locator("#jp-main-dock-panel"), "launcher-paraview")
    finally:
        page.screenshot(path=ARTIFACTS / "launcher-paraview-page.png")
        context.close()


def test_stopping_the_server_cleans_up(lab: JupyterServer) -> None:
    """Runs last in this module: stop the server now and look for leftovers."""
    launched = list(lab.launched)  # type: ignore[attr-defined]
    dirs = list(getattr(lab, "socket_dirs", []))
    assert launched and dirs
    # Stop it as Control-C would (the fixture's stop() kills what is left at once, which would
    # race with the launchers' own cleanup).
    assert lab.proc is not None
    lab.proc.terminate()
    lab.proc.wait(30)
    _gone, alive = psutil.wait_procs(launched, timeout=15)
    assert not alive, [(p.pid, p.name()) for p in alive]
    for directory in dirs:
        assert not directory.exists(), directory
