"""RemoteDesktop: real Xpra / TigerVNC desktops, real X programs, a real Jupyter server.

Every test starts real processes (X server, window manager, web client, xterm) and looks at
what they do: windows listed by the window manager, text typed with xdotool arriving in a
file written by the xterm's shell, pixels of server-side screenshots, the clipboard as X
programs see it, and the process table after stop() and after SIGKILL of the kernel.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import websocket
from jupyter_helpers import JupyterServer, Kernel, pid_running, wait_until, ws_connect
from PIL import Image, ImageChops
from user_helpers import OTHER_USER, other_user

from nbviz import NbvizError, NbvizWarning, PortInUseError, ProgramNotFoundError, RemoteDesktop
from nbviz.desktop import Screenshot, _spec
from nbviz.desktop.runtime import launcher, pages, shared, webserver, xserver

BACKENDS = ["xpra", "vnc"]

pytestmark = pytest.mark.timeout(120)


def need(backend: str) -> None:
    problem = _spec.missing_backend(backend)  # type: ignore[arg-type]
    if problem is None and shutil.which("xdotool"):
        return
    problem = problem or "xdotool is not installed (apt-get install xdotool)"
    if os.environ.get("CI"):  # CI installs scripts/debian-packages.txt: a missing one is a bug
        pytest.fail(f"{backend}: {problem}")
    pytest.skip(f"{backend}: {problem}")


def new_desktop(backend: str, **kwargs: Any) -> RemoteDesktop:
    """A desktop in this process: no Jupyter server, so it runs but is not shown (a warning)."""
    need(backend)
    with pytest.warns(NbvizWarning, match="cannot be shown in the page"):
        desk = RemoteDesktop(backend, **kwargs)  # type: ignore[arg-type]
    desk.wait_ready(30)
    return desk


@pytest.fixture(params=BACKENDS)
def desk(request: pytest.FixtureRequest) -> Iterator[RemoteDesktop]:
    desk = new_desktop(request.param)
    try:
        yield desk
    finally:
        desk.stop()


def tree(pid: int | None) -> set[int]:
    if pid is None:
        return set()
    try:
        root = psutil.Process(pid)
        return {pid} | {p.pid for p in root.children(recursive=True)}
    except psutil.Error:
        return set()


def alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if pid_running(pid)}


def names(pids: set[int]) -> set[str]:
    found = set()
    for pid in pids:
        try:
            found.add(psutil.Process(pid).name())
        except psutil.Error:
            pass
    return found


def detached_sleep(seconds: int) -> str:
    """A command line whose program leaves its process tree and group (``setsid``) at once."""
    return f"sh -c 'setsid sleep {seconds} </dev/null >/dev/null 2>&1 & exit 0'"


def sleeping(seconds: int) -> set[int]:
    """Pids of ``sleep <seconds>`` processes (seconds: a number only one test uses)."""
    found = set()
    for proc in psutil.process_iter(["cmdline"]):
        if proc.info["cmdline"] == ["sleep", str(seconds)]:
            found.add(proc.pid)
    return found


def x_run(desk: RemoteDesktop, *argv: str) -> str:
    return subprocess.run(
        argv, env=desk.x_env, capture_output=True, text=True, check=True, timeout=20
    ).stdout


def pixels(shot: Screenshot) -> Image.Image:
    return Image.open(io.BytesIO(shot.data)).convert("RGB")


def changed_pixels(a: Image.Image, b: Image.Image) -> int:
    diff = ImageChops.difference(a, b).convert("L").point(lambda v: 255 if v > 40 else 0)
    return int(diff.histogram()[255])


# ------------------------------------------------------------------ pure logic
def test_sizes_are_validated() -> None:
    assert _spec.valid_size((800, 600)) == (800, 600)
    for bad in ((10, 600), (800,), "big", (800, 100_000)):
        with pytest.raises(NbvizError, match=r"^nbviz: size must be"):
            _spec.valid_size(bad)  # type: ignore[arg-type]
    assert launcher.parse_size("1024x768") == (1024, 768)


def test_state_dir_is_next_to_the_socket() -> None:
    assert shared.state_dir_for("/r/nbviz/abc/backend.sock") == Path("/r/nbviz/abc/backend.d")
    assert shared.state_dir_for("/tmp/nbviz-0/abc-backend.sock") == Path(
        "/tmp/nbviz-0/abc-backend.d"
    )


def test_credentials_come_from_the_session_secret() -> None:
    """The launcher and the kernel derive the same VNC password and AES key from the session
    secret, so the page's URL is known before the desktop is up; nothing else is derivable."""
    password = shared.credential("secret-1", "vnc-password", 8)
    assert password == shared.credential("secret-1", "vnc-password", 8)
    assert len(password) == 8 and password.isascii()
    assert password != shared.credential("secret-2", "vnc-password", 8)
    key = shared.credential("secret-1", "xpra-key", 32)
    assert len(key) == 32 and not key.startswith(password)
    assert "secret-1" not in key
    # Without a secret (the launcher run by hand): random each time.
    assert shared.credential("", "xpra-key", 32) != shared.credential("", "xpra-key", 32)


def test_a_websocket_opened_while_the_desktop_starts_waits_for_it(tmp_path: Path) -> None:
    """The launcher serves the page from its start; a websocket opened before Xpra or Xvnc
    listens waits (and then reaches it), one opened after a failed start gets 502."""
    upstream = str(tmp_path / "xpra.sock")
    (tmp_path / "www").mkdir()
    server = webserver.WebServer(str(tmp_path / "web.sock"), tmp_path / "www", upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    upgrade = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    try:
        client = socket.socket(socket.AF_UNIX)
        client.connect(str(tmp_path / "web.sock"))
        client.sendall(upgrade)
        client.settimeout(0.5)
        with pytest.raises(TimeoutError):  # no 502: it waits for the desktop
            client.recv(100)
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(upstream)
        listener.listen()
        listener.settimeout(5)
        conn, _ = listener.accept()  # the waiting websocket arrives
        conn.settimeout(5)
        assert conn.recv(1000).startswith(b"GET /ws HTTP/1.1\r\n")
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        client.settimeout(5)
        assert client.recv(100).startswith(b"HTTP/1.1 101")
        conn.close()
        listener.close()
        client.close()
        os.unlink(upstream)
        server.started.set()  # the start is over (here: the desktop's socket is gone)
        late = socket.socket(socket.AF_UNIX)
        late.connect(str(tmp_path / "web.sock"))
        late.sendall(upgrade)
        late.settimeout(5)
        assert late.recv(100).startswith(b"HTTP/1.1 502")
        late.close()
    finally:
        server.shutdown()
        server.server_close()


def test_a_leftover_x_socket_does_not_hold_its_display() -> None:
    """A socket file of an X server that was killed (nobody listens) leaves its number free;
    one that answers, or a live lock owner, holds it."""
    number = xserver.free_display(400)
    path = Path(f"/tmp/.X11-unix/X{number}")
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True)
        path.parent.chmod(0o1777)  # as an X server makes it
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        server.listen()
        assert xserver.display_in_use(number)  # an X server listens there
        server.close()  # killed: the file stays, nobody listens
        assert path.exists() and not xserver.display_in_use(number)
        assert xserver.free_display(number) == number
        Path(f"/tmp/.X{number}-lock").write_text(f"{os.getpid():>10}\n")  # a live lock owner
        assert xserver.display_in_use(number)
    finally:
        server.close()
        path.unlink(missing_ok=True)
        Path(f"/tmp/.X{number}-lock").unlink(missing_ok=True)


def test_encryption_is_for_xpra() -> None:
    with pytest.raises(NbvizError, match="encryption='AES' is for the xpra backend"):
        RemoteDesktop("vnc", encryption="AES")
    with pytest.raises(NbvizError, match="encryption must be 'AES' or None"):
        RemoteDesktop("xpra", encryption="DES")  # type: ignore[arg-type]


def test_unknown_backend() -> None:
    with pytest.raises(NbvizError, match="backend must be 'xpra' or 'vnc'"):
        RemoteDesktop("x2go")  # type: ignore[arg-type]


def test_missing_backend_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    need("vnc")
    need("xpra")
    monkeypatch.setenv("PATH", "/nonexistent")  # nothing is found
    with pytest.raises(ProgramNotFoundError, match=r"apt-get install xpra\)") as info:
        RemoteDesktop("xpra")
    assert info.value.message.startswith("nbviz: the xpra desktop cannot start")
    # only xpra missing: the error offers the other backend
    real = shutil.which

    def which(name: str, *args: Any, **kwargs: Any) -> str | None:
        return None if name == "xpra" else real(name, path=os.defpath + ":/usr/bin")

    monkeypatch.setattr(_spec.shutil, "which", which)
    with pytest.raises(ProgramNotFoundError, match=r"use RemoteDesktop\(backend='vnc'\)"):
        RemoteDesktop("xpra")


# ------------------------------------------------------------- real desktops
def test_desktop_has_a_window_manager_and_an_xterm(desk: RemoteDesktop) -> None:
    assert desk.display.startswith(":")
    wait_until(lambda: desk.refresh() or "xterm" in desk.windows, what="the xterm", timeout=10)
    # openbox manages it (wmctrl needs an EWMH window manager) and decorates it
    assert "Openbox" in x_run(desk, "wmctrl", "-m")
    shot = desk.screenshot()
    assert shot.size == (1280, 800)
    image = pixels(shot)
    background = shared.BACKGROUND.lstrip("#")
    rgb = tuple(int(background[i : i + 2], 16) for i in (0, 2, 4))
    assert image.getpixel((1270, 790)) == rgb  # nbviz's background, not a black root window
    colours = image.getcolors(maxcolors=1 << 16) or []
    assert len(colours) > 10  # decorations, text: more than a flat screen
    # One workspace: the mouse wheel over the background (the notebook page scrolled across
    # the frame) switched openbox to an empty one of its four, the xterm "gone".
    x_run(desk, "xdotool", "mousemove", "5", "5", "click", "5")
    assert len(x_run(desk, "wmctrl", "-d").splitlines()) == 1
    [xterm] = x_run(desk, "xdotool", "search", "--onlyvisible", "--class", "xterm").split()
    # A smaller screen (the frame's size, once the page reports it): the xterm, centred on the
    # 1280x800 screen, is moved into it (it was left cut off at the right and the bottom).
    desk.size = (640, 400)

    def inside() -> bool:  # the client window (xwininfo: wmctrl and xdotool add the frame)
        lines = x_run(desk, "xwininfo", "-id", xterm).splitlines()
        g = dict(line.strip().split(": ", 1) for line in lines if ": " in line)
        keys = ("Absolute upper-left X", "Absolute upper-left Y", "Width", "Height")
        x, y, w, h = (int(g[k]) for k in keys)
        return x >= 0 and y >= 0 and x + w <= 640 and y + h <= 400

    wait_until(inside, what="the xterm inside the 640x400 screen", timeout=10)


def test_launch_type_and_see(desk: RemoteDesktop, tmp_path: Path) -> None:
    target = tmp_path / "typed.txt"
    # a plain sh (no rc files that may take seconds), typed into once it runs
    term = desk.launch(["xterm", "-T", "nbviz-typing", "-geometry", "60x10+40+40", "-e", "sh"])
    assert term.running
    wait_until(lambda: names(tree(term.pid)) >= {"xterm", "sh"}, what="the shell in the xterm")
    wait_until(lambda: desk.refresh() or "nbviz-typing" in desk.windows, what="the window")
    before = pixels(desk.screenshot())
    x_run(desk, "xdotool", "search", "--sync", "--name", "nbviz-typing", "windowactivate", "--sync")
    x_run(desk, "xdotool", "type", "--delay", "15", f"echo typed-in-the-desktop > {target}\n")
    wait_until(target.exists, what="the file the xterm's shell writes", timeout=10)
    assert target.read_text().strip() == "typed-in-the-desktop"
    after = pixels(desk.screenshot())
    assert changed_pixels(before, after) > 200  # the typed line is on the screen
    term.stop()
    assert not term.running
    wait_until(lambda: desk.refresh() or "nbviz-typing" not in desk.windows, what="window gone")


def test_clipboard_round_trip(desk: RemoteDesktop) -> None:
    desk.clipboard = "from the kernel ✓"
    # an X program on the desktop sees it
    assert x_run(desk, "xclip", "-selection", "clipboard", "-o") == "from the kernel ✓"
    # something copied on the desktop comes back to the kernel (polled)
    copier = subprocess.Popen(
        ["xclip", "-selection", "clipboard", "-i", "-quiet"],
        env=desk.x_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        copier.communicate(b"copied in the desktop", timeout=0.5)
    except subprocess.TimeoutExpired:
        pass  # -quiet: it stays as the owner of the selection
    try:
        wait_until(
            lambda: desk.clipboard == "copied in the desktop", what="the clipboard", timeout=5
        )
    finally:
        copier.kill()
        copier.wait()


def test_first_steps_while_it_starts(tmp_path: Path) -> None:
    """What a new user types in the first cell: the clipboard set before the desktop is ready
    reaches it (it was dropped: the trait said one thing, the desktop had nothing); a title
    in other letters than Latin-1 is listed (wmctrl gave 'N/A' for xterm -T); a missing
    cwd= is named as such (the error named the program)."""
    need("vnc")
    with pytest.warns(NbvizWarning, match="cannot be shown in the page"):
        desk = RemoteDesktop("vnc", start=())
    try:
        assert desk.status == "starting"
        desk.clipboard = "set while it starts ✓"
        desk.wait_ready(30)
        assert x_run(desk, "xclip", "-selection", "clipboard", "-o") == "set while it starts ✓"
        title = 'Grüße "✓" 日本'
        desk.launch(["xterm", "-T", title])
        wait_until(lambda: desk.refresh() or title in desk.windows, what=title, timeout=10)
        with pytest.raises(NbvizError, match=r"^nbviz: launch\(cwd=...\): .*/missing is not a"):
            desk.launch("xterm", cwd=tmp_path / "missing")
    finally:
        desk.stop()


def test_resize(desk: RemoteDesktop) -> None:
    desk.size = (1024, 640)
    assert desk.screenshot().size == (1024, 640)
    info = x_run(desk, "xdpyinfo")
    assert "1024x640" in info
    assert "    GLX\n" in info  # OpenGL by default (ParaView's GUI needs it)
    with pytest.raises(NbvizError, match=r"^nbviz: size must be"):
        desk.size = (1, 1)
    assert desk.size == (1024, 640)  # a refused size is not kept (it was, unapplied)
    if desk.backend == "xpra":  # its Xvfb's framebuffer: 2560x1600 unless started larger
        with pytest.raises(NbvizError, match=r"at most 2560x1600 .*size=\(3000, 2000\)\)$"):
            desk.size = (3000, 2000)  # was xrandr's "cannot find mode 3000x2000"
        assert desk.size == (1024, 640)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_desktop_without_opengl(backend: str, tmp_path: Path) -> None:
    """gl=False: no GLX on the X server (50 MB less), the desktop works, and a program known
    to need OpenGL is refused with the reason."""
    desk = new_desktop(backend, gl=False, start=[])
    try:
        extensions = x_run(desk, "xdpyinfo", "-queryExtensions")
        assert "RANDR" in extensions and "GLX" not in extensions
        target = tmp_path / "typed.txt"
        desk.launch(["xterm", "-T", "no-gl", "-e", "sh"])
        wait_until(lambda: desk.refresh() or "no-gl" in desk.windows, what="the xterm")
        x_run(desk, "xdotool", "search", "--sync", "--name", "no-gl", "windowactivate", "--sync")
        x_run(desk, "xdotool", "type", "--delay", "15", f"echo no-gl > {target}\n")
        wait_until(target.exists, what="the file the xterm's shell writes", timeout=10)
        with pytest.raises(NbvizError, match=r"^nbviz: paraview needs OpenGL .* gl=False"):
            desk.launch(["paraview"])
    finally:
        desk.stop()


def test_missing_start_program_or_window_manager() -> None:
    """Said before anything starts (the desktop used to come up without them, silently)."""
    need("xpra")
    with pytest.raises(ProgramNotFoundError, match=r"RemoteDesktop\(start=...\): program 'nope'"):
        RemoteDesktop(start=["xterm", "nope --flag"])
    with pytest.raises(ProgramNotFoundError, match=r"window_manager=...\) \(''.*'fvwm-nope'"):
        RemoteDesktop(window_manager="fvwm-nope")
    with pytest.raises(NbvizError, match="start= has an empty command"):
        RemoteDesktop(start=[""])
    with pytest.raises(NbvizError, match=r"start= takes commands, each a string .* not 3$"):
        RemoteDesktop(start=["xterm", 3])  # type: ignore[list-item]


def test_without_a_window_manager_the_window_list_is_empty() -> None:
    """No window manager publishes the list (window_manager="", or before it is up): windows
    is empty and refresh() does not fail (it raised 'Cannot get client list properties')."""
    desk = new_desktop("vnc", window_manager=None, start=None)  # None for none (TypeErrors)
    try:
        desk.launch(["xterm", "-T", "unmanaged"])
        desk.refresh()
        assert desk.windows == []
    finally:
        desk.stop()


def test_the_window_manager_comes_back() -> None:
    """Openbox killed, or left through "Exit" in its menu (``openbox --exit``): the launcher
    starts it again (the desktop stayed without frames, its window list stale), with the
    arguments given in window_manager= (a command line; 'openbox --sm-disable' was "not found
    on PATH")."""
    desk = new_desktop("vnc", start=(), window_manager="openbox --sm-disable")
    try:
        for how, title in (("kill", "after-kill"), ("exit", "after-exit")):
            [wm] = [p for p in psutil.Process(desk.pid).children() if p.name() == "openbox"]
            assert wm.cmdline()[1:] == ["--sm-disable"]
            if how == "kill":
                wm.kill()
            else:
                x_run(desk, "openbox", "--exit")
            wm.wait(10)

            def back(old: int = wm.pid) -> bool:  # a new openbox, and it runs the display
                again = [p for p in psutil.Process(desk.pid).children() if p.name() == "openbox"]
                ran = subprocess.run(["wmctrl", "-m"], env=desk.x_env, capture_output=True)
                return bool(again) and again[0].pid != old and ran.returncode == 0

            wait_until(back, what="the window manager again", timeout=15)
            desk.launch(["xterm", "-T", title])
            shown = lambda t=title: desk.refresh() or t in desk.windows  # noqa: E731
            wait_until(shown, what=title, timeout=15)
            assert "Openbox" in x_run(desk, "wmctrl", "-m")
        assert desk.status == "ready"
        assert desk.logs().count("starting the window manager again") == 2
    finally:
        desk.stop()


def test_missing_program_and_one_that_exits_at_once(desk: RemoteDesktop) -> None:
    with pytest.raises(ProgramNotFoundError, match=r"^nbviz: program 'no-such-x-program'"):
        desk.launch("no-such-x-program --flag")
    with pytest.raises(ProgramNotFoundError, match=r"'DISPLAY=:1'.*without a shell"):
        desk.launch("DISPLAY=:1 xterm")
    # a program that fails: its exit code and what it printed (its own log, not the others')
    # env= takes numbers, as WebApp's does (subprocess's TypeError came through)
    quiet = desk.launch(
        [sys.executable, "-c", "import os; print('all fine' * int(os.environ['N']))"],
        env={"N": 1},
    )
    failing = desk.launch(
        [sys.executable, "-c", "import os, sys; sys.exit('no display? ' + os.environ['DISPLAY'])"]
    )
    assert failing.wait(30) == 1 and quiet.wait(30) == 0
    assert failing.logs().strip() == f"no display? {desk.display}"
    assert "exited with 1" in repr(failing) and quiet.logs(1) == "all fine"
    assert desk.launch(Path(sys.executable)).wait(30) == 0  # a path (was "not iterable")


@pytest.mark.parametrize("backend", BACKENDS)
def test_stop_leaves_no_process(backend: str) -> None:
    # a command line, quoted, and a list of arguments (was an AttributeError)
    desk = new_desktop(backend, start=["xterm -T 'two words'", ["xterm", "-T", "a list"]])
    program = desk.launch("xterm -T extra")
    desk.launch(detached_sleep(7781))  # it left the program's tree and group
    desk.clipboard = "owned by an xclip"
    titles = {"extra", "two words", "a list"}
    wait_until(lambda: desk.refresh() or titles <= set(desk.windows), what="all three")
    wait_until(lambda: sleeping(7781), what="the detached program")
    pids = tree(desk.pid) | tree(program.pid) | tree(desk._clipboard_owner.pid)  # type: ignore[union-attr]
    pids |= sleeping(7781)
    expected = {"xterm", "openbox", "xclip"} | ({"xpra", "Xvfb"} if backend == "xpra" else {"Xvnc"})
    assert {n[:15] for n in expected} <= {n[:15] for n in names(pids)}, names(pids)
    display = desk.display
    state = shared.state_dir_for(desk.endpoint.unix_socket)  # type: ignore[union-attr, arg-type]
    desk.stop()
    assert alive(pids) == set(), names(alive(pids))
    assert not state.exists()
    assert desk.status == "stopped" and desk.display == "" and desk.windows == []
    number = int(display[1:])
    if xserver.display_in_use(number):  # taken again at once, by another session's X server?
        lock = Path(f"/tmp/.X{number}-lock")
        with contextlib.suppress(FileNotFoundError):  # (that server is replacing a stale lock)
            assert int(lock.read_text().strip()) not in pids, f"our X server still holds :{number}"
    # and it starts again
    with pytest.warns(NbvizWarning):
        desk.start()
    desk.wait_ready(30)
    assert desk.display
    desk.stop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_display_in_use(backend: str) -> None:
    need(backend)
    first = new_desktop(backend)
    try:
        number = int(first.display[1:])
        with pytest.raises(PortInUseError, match=rf"^nbviz: X display :{number} is in use"):
            RemoteDesktop(backend, display=number)  # type: ignore[arg-type]
        # as X writes it (the display trait's form): was a ValueError from int(':N')
        with pytest.raises(PortInUseError, match=rf"^nbviz: X display :{number} is in use"):
            RemoteDesktop(backend, display=first.display)  # type: ignore[arg-type]
        # not a display number: said before anything starts (the launcher died with a traceback)
        for bad in (-1, "x11", True):
            with pytest.raises(NbvizError, match=r"^nbviz: display= must be a display number"):
                RemoteDesktop(backend, display=bad)  # type: ignore[arg-type]
    finally:
        first.stop()


@pytest.mark.parametrize(
    ("backend", "victim"),
    [("xpra", "Xvfb"), ("vnc", "Xvnc"), ("xpra", "xpra"), ("vnc", "launcher")],
)
def test_the_x_server_or_the_web_server_dying(backend: str, victim: str) -> None:
    """Whichever essential piece dies, the desktop reports it and nothing is left running
    (Xpra's Xvfb, in a process group of its own, used to outlive a dead Xpra). For VNC the
    web server (noVNC's files and the websocket to Xvnc) is the launcher itself."""
    desk = new_desktop(backend)
    program = desk.launch("xterm")
    pids = tree(desk.pid) | {program.pid}
    server = desk.pid if victim == "launcher" else next(p for p in pids if names({p}) == {victim})
    os.kill(server, signal.SIGKILL)
    wait_until(lambda: desk.status == "crashed", what="the crash", timeout=15)
    assert desk.error.startswith("nbviz: ")
    assert "exited" in desk.error
    if victim != "launcher":  # the first line says which piece ended (it was only in the tail)
        first = desk.error.splitlines()[0]
        assert first.startswith(f"nbviz: {victim} exited (signal SIGKILL); the desktop is gone")
        with pytest.raises(NbvizError, match=rf"^nbviz: {victim} exited \(signal SIGKILL\)"):
            desk.launch("xterm")
    wait_until(lambda: not alive(pids), what="every desktop process to end", timeout=10)
    desk.stop()


def test_xpra_display_taken_before_xvfb_starts(tmp_path: Path) -> None:
    """The launcher picks Xpra's display number itself (Xvfb and Xpra start together); when
    another X server takes it first, Xvfb picks a free one and Xpra starts again for it."""
    need("xpra")
    other = new_desktop("xpra", start=[])
    try:
        taken = int(other.display[1:])
        sock = tmp_path / "backend.sock"
        code = (
            "import runpy, sys\n"
            f"launcher = runpy.run_path({str(Path(launcher.__file__))!r}, run_name='launcher')\n"
            f"launcher['main'].__globals__['free_display'] = lambda: {taken}  # a stale pick\n"
            f"sys.exit(launcher['main'](['--socket', {str(sock)!r}, '--start', 'xterm']))\n"
        )
        log = open(tmp_path / "launcher.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT)
        try:
            info_path = shared.state_dir_for(str(sock)) / "desktop.json"
            wait_until(info_path.exists, what="the desktop", timeout=30)
            info = json.loads(info_path.read_text())
            assert info["display"] != f":{taken}"
            env = dict(os.environ, DISPLAY=info["display"], XAUTHORITY=info["xauthority"])
            wait_until(
                lambda: (
                    "xterm"
                    in subprocess.run(
                        ["wmctrl", "-l"], env=env, capture_output=True, text=True
                    ).stdout
                ),
                what="the xterm on the new display",
            )
            with socket.socket(socket.AF_UNIX) as probe:  # Xpra, attached to it, listens
                probe.connect(str(shared.state_dir_for(str(sock)) / "xpra.sock"))
            pids = tree(proc.pid)
            assert {"Xvfb", "xpra", "xterm"} <= names(pids)
        finally:
            proc.terminate()
            proc.wait(15)
            log.close()
        logged = (tmp_path / "launcher.log").read_text()
        assert f"Xvfb could not start on :{taken} (taken meanwhile?)" in logged
        wait_until(lambda: not alive(pids), what="every process of that desktop to end")
        assert other.status == "ready"  # the other desktop is untouched
        x_run(other, "xdpyinfo")
    finally:
        other.stop()


# ---------------------------------------------------------- through Jupyter
START = """
import json
from nbviz import RemoteDesktop
desk = RemoteDesktop({backend!r})
desk.wait_ready(30)
term = desk.launch("xterm -T from-the-kernel")
desk.launch("sh -c 'setsid sleep 7782 </dev/null >/dev/null 2>&1 & exit 0'")
print(json.dumps({{"url": desk.url, "route": desk.route, "path": desk.path, "pid": desk.pid,
                   "program": term.pid}}))
"""


@pytest.mark.jupyter
@pytest.mark.parametrize("backend", BACKENDS)
def test_through_the_jupyter_route(backend: str, jupyter_server: JupyterServer) -> None:
    need(backend)
    kernel = Kernel(jupyter_server)
    try:
        out = kernel.run(START.format(backend=backend))
        info = json.loads(out.strip().splitlines()[-1])
        assert info["route"] == "nbviz"
        assert info["url"].startswith("/user/alice/nbviz/")
        auth = [f"Authorization: token {jupyter_server.token}"]
        if backend == "xpra":
            status, body, _ = jupyter_server.get(info["url"])
            assert status == 200 and b"Xpra HTML5 Client" in body
            ws = ws_connect(jupyter_server, info["url"], header=auth, subprotocols=["binary"])
            ws.close()  # the upgrade went through (101) to Xpra
        else:
            assert "password=" in info["path"] and info["path"].startswith("/nbviz.html#")
            status, body, _ = jupyter_server.get(info["url"] + "nbviz.html")
            assert status == 200 and b'"websockify"' in body
            status, body, _ = jupyter_server.get(info["url"] + "vnc.html")
            assert status == 200 and b"noVNC" in body
            ws = ws_connect(
                jupyter_server, info["url"] + "websockify", header=auth, subprotocols=["binary"]
            )
            try:
                assert ws.recv().startswith(b"RFB 003.")  # Xvnc itself, through the route
            finally:
                ws.close()
            # the password is never in a log
            password = info["path"].split("password=")[1].split("&")[0]
            assert password not in jupyter_server.log_text()
            assert password not in kernel.run("print(desk.logs())")
        # unauthenticated: refused
        with pytest.raises(websocket.WebSocketException):
            ws_connect(jupyter_server, info["url"], subprotocols=["binary"]).close()
        assert jupyter_server.get(info["url"], auth=False)[0] in (302, 401, 403)
        # SIGKILL of the kernel: the desktop and its programs end
        wait_until(lambda: sleeping(7782), what="the detached program")
        pids = tree(info["pid"]) | {info["program"]} | sleeping(7782)
        assert len(alive(pids)) >= 6
        os.kill(kernel.pid, signal.SIGKILL)
        wait_until(lambda: not alive(pids), timeout=15, what="the desktop to end")
    finally:
        kernel.close()


# ------------------------------------------------------------ other local users
PROBE = """
import os, socket, subprocess, sys
path, display, xauthority = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(path); web = "ok"
except OSError as e:
    web = type(e).__name__
env = {"XAUTHORITY": xauthority or "/nonexistent"}
x = subprocess.run(["xdpyinfo", "-display", display], capture_output=True, env=env)
print(web, "ok" if x.returncode == 0 else "refused")
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_another_local_user_cannot_connect(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    need(backend)
    user = other_user()
    base = Path(tempfile.mkdtemp(prefix="nbviz-desk-", dir="/tmp"))
    base.chmod(0o755)  # a world-traversable parent: only nbviz's own permissions protect
    monkeypatch.setenv("NBVIZ_RUNTIME_DIR", str(base / "nbviz"))
    desk = new_desktop(backend)
    try:
        sock = desk.endpoint.unix_socket  # type: ignore[union-attr]
        assert sock is not None
        with socket.socket(socket.AF_UNIX) as s:  # we can
            s.connect(sock)

        def probe(xauthority: str = "") -> list[str]:
            argv = ["/usr/bin/python3", "-c", PROBE]
            return subprocess.run(
                ["runuser", "-u", user, "--", *argv, sock, desk.display, xauthority],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout.split()

        assert probe() == ["PermissionError", "refused"]
        # control: with permissions opened and the X cookie shared, the same probe gets in
        for path in (base / "nbviz", Path(sock).parent):
            path.chmod(0o755)
        os.chmod(sock, 0o777)
        cookie = base / "cookie"
        shutil.copy(desk.x_env["XAUTHORITY"], cookie)
        cookie.chmod(0o644)
        assert probe(str(cookie)) == ["ok", "ok"]
        assert user == OTHER_USER
    finally:
        desk.stop()
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------ a browser
BROWSER_START = """
import json, subprocess
from nbviz import RemoteDesktop
desk = RemoteDesktop({backend!r}, encryption={encryption!r})
desk.wait_ready(30)
term = desk.launch(["xterm", "-T", "browser-typing", "-geometry", "50x8+100+100", "-e", "sh"])
print(json.dumps([desk.url, desk.path]))
"""


#: Where the browser tests' xterm is on the X screen (``-geometry 50x8+100+100``): a point inside.
XTERM_POINT = (160, 140)


def click_into_xterm(page: Any, backend: str) -> None:
    """Click the point of the client's canvas that shows :data:`XTERM_POINT` of the X screen:
    noVNC draws the screen on one canvas, Xpra's page the desktop (``start-desktop``) as one
    window's canvas (either maybe scaled)."""
    selector = "#noVNC_container canvas" if backend == "vnc" else "#screen canvas"
    canvas = page.locator(selector).first
    box = canvas.bounding_box()
    assert box is not None, "the client's canvas is not shown"
    width = canvas.evaluate("c => c.width")
    scale = box["width"] / width if width else 1.0
    page.mouse.click(box["x"] + XTERM_POINT[0] * scale, box["y"] + XTERM_POINT[1] * scale)
    page.wait_for_timeout(300)


def focus(page: Any, kernel: Kernel) -> str:
    """What had the focus when keys were lost: the page's element and X's window."""
    active = page.evaluate("document.activeElement && document.activeElement.tagName")
    x_focus = kernel.run(
        "print(subprocess.run(['xdotool', 'getwindowfocus', 'getwindowname'], env=desk.x_env,"
        " capture_output=True, text=True, timeout=10).stdout.strip())"
    ).strip()
    return f"the page's focus was on {active}, X's on the window {x_focus!r}"


@pytest.mark.browser
@pytest.mark.jupyter
@pytest.mark.parametrize("backend", BACKENDS)
def test_keys_typed_in_the_page_reach_the_xterm(
    backend: str, jupyter_server: JupyterServer, tmp_path: Path
) -> None:
    """The HTML5 client, loaded through the route in Chromium, connects and forwards keys.

    Xpra runs with ``encryption="AES"`` here (unencrypted in test_desktop_browser.py): the
    page gets the key in its URL fragment; a page without the key is refused.
    """
    need(backend)
    from browser_helpers import ARTIFACTS, chromium
    from playwright.sync_api import sync_playwright

    target = tmp_path / "from-the-browser.txt"
    encryption = "AES" if backend == "xpra" else None
    kernel = Kernel(jupyter_server)
    try:
        out = kernel.run(BROWSER_START.format(backend=backend, encryption=encryption))
        url, path = json.loads(out.strip().splitlines()[-1])
        if encryption:
            assert path.startswith("/#encryption=AES&key=")
            key = path.split("key=")[1]
            keyfile = Path(kernel.run("print(desk.endpoint.unix_socket)").strip())
            keyfile = shared.state_dir_for(str(keyfile)) / "aes.key"
            assert keyfile.read_text() == key and keyfile.stat().st_mode & 0o777 == 0o600
        kernel.run(
            "subprocess.run(['xdotool', 'search', '--sync', '--name', 'browser-typing',"
            " 'windowactivate', '--sync'], env=desk.x_env, check=True, timeout=20)"
        )
        with sync_playwright() as playwright, chromium(playwright) as browser:
            page = browser.new_page(viewport={"width": 1300, "height": 850})
            page.goto(jupyter_server.url(f"lab?token={jupyter_server.token}"))  # login cookie
            page.goto(jupyter_server.url(url.rstrip("/") + path))
            if backend == "vnc":  # noVNC says so once the RFB session is up
                page.wait_for_selector("#noVNC_status.noVNC_status_normal", timeout=15_000)
            else:
                page.wait_for_selector("#screen canvas", state="attached", timeout=15_000)
            # Like a user: click into the xterm (which gives the client's canvas the page's
            # focus and the xterm X's focus), then type. On a loaded machine the client may
            # not take keys yet when its page says it is connected: what was typed then is lost,
            # so click and type again, up to three times.
            for attempt in range(3):
                click_into_xterm(page, backend)
                if attempt:  # the terminal's kill character: drops what arrived of a line
                    page.keyboard.press("Control+u")
                page.keyboard.type(f"echo typed-in-chromium > {target}\n", delay=25)
                with contextlib.suppress(AssertionError):
                    wait_until(target.exists, what="the xterm's file", timeout=8)
                    break
            if not target.exists():
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=ARTIFACTS / f"desktop-{backend}-keys-lost.png")
                pytest.fail(
                    f"the keys typed in the page never reached the xterm: {focus(page, kernel)}"
                )
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=ARTIFACTS / f"desktop-{backend}.png")
            if encryption:  # the same page without the key (no fragment): refused
                page.goto(jupyter_server.url(url))
                # the client gives up and goes to connect.html (nbviz's page since e42aa1f;
                # "You were disconnected" was Xpra's)
                page.get_by_text("The desktop closed the connection").wait_for(timeout=15_000)
                assert "missing encryption tokens" in (page.text_content("#reason") or "")
                page.screenshot(path=ARTIFACTS / f"desktop-{backend}-no-key.png")
        assert target.read_text().strip() == "typed-in-chromium"
        if encryption:
            logs = kernel.run("print(desk.logs())")
            assert "missing encryption tokens" in logs
            assert key not in logs and key not in jupyter_server.log_text()
        kernel.run("desk.stop()")
    finally:
        kernel.close()


class Hop:
    """A TCP port on 127.0.0.1 forwarded to a Unix socket, whose connections can be cut."""

    def __init__(self, unix_socket: str) -> None:
        self.unix_socket = unix_socket
        self.live: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.unix_socket)
            self.live += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=webserver.pump, args=(a, b), daemon=True).start()

    def cut(self) -> None:
        """Drop every open connection (new ones are still accepted)."""
        live, self.live = self.live, []
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()


# The desktop is one window in Xpra's page (`start-desktop`); keys go to the window it focused.
DESKTOP_SHOWN = "Object.keys(client.id_to_window).length > 0"
DESKTOP_FOCUSED = "client.topwindow !== null && client.topwindow in client.id_to_window"


@pytest.mark.browser
def test_xpra_page_reconnects_when_the_connection_drops(tmp_path: Path) -> None:
    """The websocket is cut (the TCP hop in front of the desktop's socket drops it): the page
    reconnects by itself and keys typed afterwards arrive. (Xpra 3.1's client threw "win is
    not defined" there and stayed dead; nbviz's page script defines it.) Disconnected on
    purpose, it shows nbviz's page, from which it connects again."""
    from browser_helpers import chromium
    from playwright.sync_api import sync_playwright

    desk = new_desktop("xpra", size=(1280, 800))
    hop = Hop(str(desk.endpoint.unix_socket)) if desk.endpoint else None
    assert hop is not None
    try:
        desk.launch(["xterm", "-T", "reconnect-typing", "-geometry", "60x12+80+80", "-e", "sh"])
        x_run(desk, "xdotool", "search", "--sync", "--name", "reconnect-typing", "windowactivate")
        with sync_playwright() as playwright, chromium(playwright) as browser:
            page = browser.new_page(viewport={"width": 1300, "height": 850})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"http://127.0.0.1:{hop.port}{desk.path}")
            page.wait_for_function("window.client && client.connected", timeout=15_000)
            for name in ("before", "after"):
                page.wait_for_function(DESKTOP_SHOWN, timeout=15_000)
                page.mouse.click(300, 200)  # in the xterm
                page.wait_for_function(DESKTOP_FOCUSED, timeout=5_000)
                page.keyboard.type(f"echo {name} > {tmp_path / name}\n", delay=20)
                wait_until((tmp_path / name).exists, what=f"the file typed {name}", timeout=15)
                if name == "before":
                    hop.cut()
                    page.wait_for_function("client.reconnect_attempt > 0", timeout=10_000)
                    # `connected` stays true until the client starts again a second later; the
                    # attempt count goes back to 0 only when the server's hello has arrived.
                    page.wait_for_function(
                        "client.reconnect_attempt === 0 && client.connected", timeout=15_000
                    )
            # Xpra's menu item "Disconnect": the client goes to connect.html, nbviz's page (not
            # Xpra's form for a host and port), whose link connects again.
            page.evaluate("client.disconnect_reason = 'User request'; client.close()")
            page.wait_for_url("**/connect.html*", timeout=10_000)
            assert page.text_content("#reason") == "Reason: User request"
            page.click("#again")
            page.wait_for_function("window.client && client.connected", timeout=15_000)
            assert errors == []
    finally:
        hop.close()
        desk.stop()


@pytest.mark.paraview
def test_launched_paraview_opens_no_tcp_port() -> None:
    """Debian's ParaView GUI starts MPI, which listens on every interface: launch() prevents it."""
    if not shutil.which("paraview"):
        pytest.skip("paraview is not installed")
    desk = new_desktop("vnc")
    try:
        program = desk.launch("paraview")
        assert "--no-mpi" in program.argv

        def paraview_window() -> bool:
            desk.refresh()
            return any("ParaView" in title for title in desk.windows)

        wait_until(paraview_window, timeout=60, what="ParaView's window")
        listening = [
            (p.pid, c.laddr)
            for p in map(psutil.Process, alive(tree(program.pid)))
            for c in p.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        ]
        assert listening == []
    finally:
        desk.stop()


def test_xpra_web_root_has_nbviz_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Xpra's client files are symlinks with gzipped copies beside them; index.html (with
    nbviz's script) and connect.html (where the client goes when its connection ends: a page
    that loads nothing else) are nbviz's own, with no gzipped copy of Xpra's versions."""
    if not (pages.XPRA_WWW_DIR / "index.html").exists():
        pytest.skip("Xpra's HTML5 client is not installed")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    state = tmp_path / "state"
    state.mkdir()
    web = pages.xpra_web_root(state)
    pages.link_gzipped(web)
    assert (web / "js" / "Client.js").is_symlink()
    assert (web / "js" / "Client.js.gz").is_symlink()
    for page in ("index.html", "connect.html"):
        assert not (web / page).is_symlink() and not (web / f"{page}.gz").exists()
    assert '<script src="nbviz.js">' in (web / "index.html").read_text()
    connect = (web / "connect.html").read_text()
    assert "src=" not in connect and 'href="http' not in connect
    assert "The desktop closed the connection" in connect
