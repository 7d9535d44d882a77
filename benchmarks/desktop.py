"""Benchmark of RemoteDesktop: time to a connected desktop, key -> echo latency, memory.

For each backend (xpra, vnc), loopback only, bounded:

- **start**: from ``RemoteDesktop(backend)`` in a kernel of a real Jupyter server to nbviz's
  desktop background drawn in the client page, loaded through nbviz's route in headless
  Chromium; against the same stack started by hand (the commands of ENVIRONMENT.md: Xpra or
  Xvnc + websockify, openbox, xsetroot, an xterm) on 127.0.0.1 with its HTML5 client page
  loaded directly.
- **key -> echo**: a key pressed in the page (Playwright's keyboard, into a focused xterm)
  until the client's canvas changes, timed in the page: the keydown event's timestamp to the
  first animation frame whose canvas pixels differ (median of ``KEYS`` keys).
- **fps**: an xterm moved across the screen by one ``xdotool`` process (a move every
  ``MOVE_EVERY`` s for ``FPS_SECONDS`` s) while the page counts the animation frames in which a
  strip of canvas pixels across the xterm's path changed, per second. For nbviz's desktop: the
  page through nbviz's route, then the same desktop's Unix socket reached directly through a
  byte-for-byte TCP forwarder (``FORWARDER``, no HTTP or websocket handling); the by-hand stack
  is direct (TCP).
- **RSS**: the desktop's process tree (X server, web client, window manager, xterms), summed;
  **PSS** the same with each shared page divided among the processes that map it (RSS sums
  count shared libraries and forked children's pages again for every process).

Prints a table with PASS/MISS against the issue's targets; never asserts. About 2 minutes.
Run: ``.venv/bin/python benchmarks/desktop.py`` (also ``make bench``).
"""

# ruff: noqa: E501  (the in-page JavaScript)
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from playwright.sync_api import Page, sync_playwright

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))
from browser_helpers import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from jupyter_helpers import JupyterServer, Kernel, wait_until  # noqa: E402

from nbviz.desktop import _desktop, _launch  # noqa: E402

KEYS = 10
FPS_SECONDS = 3.0
MOVE_EVERY = 0.016  # about 60 moves per second
MOVING = "bench-moving"
#: The moving xterm's geometry and the screen row the page samples (inside its path).
MOVING_Y, STRIP_Y = 300, 360
TARGETS = {"start_s": 1.0, "key_ms": 50.0, "rss_mb": 200.0}
BACKGROUND = _launch.BACKGROUND
TYPING = "bench-typing"

#: In the page: record keydown timestamps and the first frame after each whose canvas changed.
WATCH_JS = """
() => {
  const canvases = () => [...document.querySelectorAll('canvas')].filter(c => c.width > 100);
  const sample = () => canvases().map(c => {
    try {
      const d = c.getContext('2d').getImageData(0, 0, Math.min(c.width, 700), Math.min(c.height, 400)).data;
      let h = 0; for (let i = 0; i < d.length; i += 4) h = (h * 31 + d[i] + d[i+1] * 7 + d[i+2] * 13) | 0;
      return h;
    } catch (e) { return 0; }
  }).join(',');
  window.__bench = {down: null, latency: null};
  window.addEventListener('keydown', e => { window.__bench = {down: e.timeStamp, latency: null, base: sample()}; }, true);
  const loop = (t) => {
    const b = window.__bench;
    if (b.down !== null && b.latency === null && sample() !== b.base) b.latency = performance.now() - b.down;
    requestAnimationFrame(loop);
  };
  requestAnimationFrame(loop);
}
"""


#: In the page: for ``seconds``, count the animation frames in which a one-pixel row of the
#: canvases (at STRIP_Y, across the moving window's path) changed.
FPS_JS = f"""
(seconds) => new Promise(resolve => {{
  const canvases = () => [...document.querySelectorAll('canvas')].filter(c => c.width > 100 && c.height > {STRIP_Y});
  const sample = () => canvases().map(c => {{
    try {{
      const d = c.getContext('2d').getImageData(0, {STRIP_Y}, c.width, 1).data;
      let h = 0; for (let i = 0; i < d.length; i += 4) h = (h * 31 + d[i] + d[i+1] * 7 + d[i+2] * 13) | 0;
      return h;
    }} catch (e) {{ return 0; }}
  }}).join(',');
  let last = sample(), frames = 0, changed = 0;
  const t0 = performance.now();
  const loop = (t) => {{
    frames++;
    const now = sample();
    if (now !== last) {{ changed++; last = now; }}
    if (t - t0 < seconds * 1000) requestAnimationFrame(loop);
    else resolve({{changed, frames, seconds: (t - t0) / 1000}});
  }};
  requestAnimationFrame(loop);
}})
"""

#: A TCP port on 127.0.0.1 forwarded byte for byte to a Unix socket (argv: port, socket).
FORWARDER = """
import asyncio, sys

async def pipe(reader, writer):
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()

async def handle(reader, writer):
    up_reader, up_writer = await asyncio.open_unix_connection(sys.argv[2])
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


def background_drawn_js() -> str:
    """In the page: is nbviz's background colour on any canvas (the desktop is drawn)?"""
    r, g, b = (int(BACKGROUND[i : i + 2], 16) for i in (1, 3, 5))
    return f"""
() => [...document.querySelectorAll('canvas')].some(c => {{
  if (c.width < 100) return false;
  try {{
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 400) if (Math.abs(d[i]-{r}) < 10 && Math.abs(d[i+1]-{g}) < 10 && Math.abs(d[i+2]-{b}) < 10) n++;
    return n > d.length / 400 * 0.2;
  }} catch (e) {{ return false; }}
}})
"""


def wait_drawn(page: Page, timeout: float = 30) -> float:
    """Poll the page until the desktop is drawn; time.monotonic() then."""
    deadline = time.monotonic() + timeout
    js = background_drawn_js()
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if page.evaluate(js):
                return time.monotonic()
        time.sleep(0.02)
    raise TimeoutError("the desktop was never drawn in the page")


def key_latencies(page: Page, activate: Any) -> list[float]:
    """Press ``KEYS`` keys into the focused xterm; ms from keydown to a changed canvas."""
    page.evaluate(WATCH_JS)
    page.mouse.move(5, 5)
    activate()
    out = []
    for i in range(KEYS):
        page.keyboard.press("abcdefghij"[i % 10])
        deadline = time.monotonic() + 2
        latency = None
        while time.monotonic() < deadline:
            latency = page.evaluate("window.__bench.latency")
            if latency is not None:
                break
            time.sleep(0.01)
        if latency is not None:
            out.append(float(latency))
        time.sleep(0.15)
    return out


def moving_fps(page: Page, env: dict[str, str]) -> float:
    """Move the MOVING xterm to and fro for FPS_SECONDS; changed frames per second seen."""
    steps = int((FPS_SECONDS + 0.5) / MOVE_EVERY)
    argv = ["xdotool", "search", "--sync", "--name", MOVING]
    for i in range(steps):
        x = 20 + (i * 12) % 1200
        x = x if x <= 620 else 1240 - x  # back and forth between 20 and 620
        # --sync: wait for each move (else xdotool buffers them all until it exits)
        argv += ["windowmove", "--sync", str(x), str(MOVING_Y), "sleep", str(MOVE_EVERY)]
    mover = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)  # the first moves are under way
        result = page.evaluate(FPS_JS, FPS_SECONDS)
    finally:
        mover.kill()
        mover.wait()
    return float(result["changed"]) / float(result["seconds"])


@contextlib.contextmanager
def forwarded(unix_socket: str) -> Iterator[int]:
    """A TCP port on 127.0.0.1 forwarded to ``unix_socket`` (FORWARDER, in its own process)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", FORWARDER, str(port), unix_socket], stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        yield port
    finally:
        proc.kill()
        proc.wait()


def tree_memory(pid: int) -> tuple[float, float]:
    """RSS and PSS of ``pid`` and its descendants, MB (PSS shares shared pages out)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return float("nan"), float("nan")
    rss = pss = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            info = proc.memory_full_info()
            rss += info.rss
            pss += info.pss
    return rss / 1e6, pss / 1e6


START = """
import json, subprocess, time
from nbviz import RemoteDesktop
_t0 = time.monotonic()
desk = RemoteDesktop({backend!r})
desk.wait_ready(30)
_ready = time.monotonic() - _t0
term = desk.launch(["xterm", "-T", {title!r}, "-geometry", "60x10+20+20", "-e", "sh"])
mover = desk.launch(["xterm", "-T", {moving!r}, "-geometry", "80x12+20+{y}"])
_env = {{"DISPLAY": desk.x_env["DISPLAY"], "XAUTHORITY": desk.x_env["XAUTHORITY"]}}
print(json.dumps([_t0, _ready, desk.url, desk.path, desk.pid, term.pid, mover.pid,
                  desk.endpoint.unix_socket, _env]))
"""
ACTIVATE = (
    "subprocess.run(['xdotool', 'search', '--sync', '--name', {title!r}, 'windowactivate',"
    " '--sync'], env=desk.x_env, check=True, timeout=20)"
)


def nbviz_run(server: JupyterServer, page: Page, backend: str) -> dict[str, Any]:
    kernel = Kernel(server)
    try:
        code = START.format(backend=backend, title=TYPING, moving=MOVING, y=MOVING_Y)
        t0, ready, url, path, pid, term, mover, sock, x_env = json.loads(
            kernel.run(code).strip().splitlines()[-1]
        )
        page.goto(server.url(url.rstrip("/") + path))
        drawn = wait_drawn(page)
        keys = key_latencies(page, lambda: kernel.run(ACTIVATE.format(title=TYPING)))
        rss, pss = (sum(m) for m in zip(*map(tree_memory, (pid, term, mover)), strict=True))
        env = dict(os.environ, **x_env)
        fps_route = moving_fps(page, env)
        page.goto("about:blank")
        with forwarded(sock) as port:
            page.goto(f"http://127.0.0.1:{port}{path}")
            wait_drawn(page)
            fps_direct = moving_fps(page, env)
        kernel.run("desk.stop()")
        return {
            "start_s": drawn - t0,
            "ready_s": ready,
            "key_ms": keys,
            "rss_mb": rss,
            "pss_mb": pss,
            "fps_route": fps_route,
            "fps_direct": fps_direct,
        }
    finally:
        kernel.close()


def free_port() -> int:
    # Only for the by-hand baseline (the commands of ENVIRONMENT.md take a port number).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_display() -> int:
    n = 200
    while _launch.display_in_use(n):
        n += 1
    return n


@contextlib.contextmanager
def by_hand(backend: str, work: Path) -> Iterator[tuple[float, str, dict[str, str], list[Any]]]:
    """Start the stack by hand; (start time, page URL, X environment, processes)."""
    port, display = free_port(), free_display()
    env = dict(os.environ, DISPLAY=f":{display}")
    procs: list[subprocess.Popen[bytes]] = []
    log = open(work / f"{backend}.log", "wb")  # noqa: SIM115
    t0 = time.monotonic()

    def spawn(argv: list[str], **kw: Any) -> None:
        procs.append(
            subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kw
            )
        )

    if backend == "xpra":
        spawn(
            [
                "xpra",
                "start-desktop",
                f":{display}",
                f"--bind-tcp=127.0.0.1:{port}",
                "--html=on",
                "--start=openbox",
                f"--start=xsetroot -solid '{BACKGROUND}'",
                "--start=xterm -T " + TYPING + " -geometry 60x10+20+20 -e sh",
                f"--start=xterm -T {MOVING} -geometry 80x12+20+{MOVING_Y}",
                "--daemon=no",
                "--systemd-run=no",
                "--pulseaudio=no",
                "--notifications=no",
                "--mdns=no",
                "--webcam=no",
                "--printing=no",
                "--speaker=off",
                "--microphone=off",
                "--dbus-launch=",
                "--dbus-proxy=no",
                "--file-transfer=no",
                "--resize-display=1280x800",
            ]
        )
        url = f"http://127.0.0.1:{port}/"
    else:
        subprocess.run(["vncpasswd", "-f"], input=b"benchpw\n", stdout=open(work / "passwd", "wb"))  # noqa: SIM115
        sock = work / "vnc.sock"
        spawn(
            [
                "Xvnc",
                f":{display}",
                "-geometry",
                "1280x800",
                "-depth",
                "24",
                "-rfbport",
                "-1",
                "-rfbunixpath",
                str(sock),
                "-SecurityTypes",
                "VncAuth",
                "-PasswordFile",
                str(work / "passwd"),
                "-nolisten",
                "tcp",
            ]
        )
        wait_until(sock.exists, timeout=10, interval=0.01, what="Xvnc's socket")
        spawn(["openbox"], env=env)
        subprocess.run(["xsetroot", "-solid", BACKGROUND], env=env, check=False)
        spawn(["xterm", "-T", TYPING, "-geometry", "60x10+20+20", "-e", "sh"], env=env)
        spawn(["xterm", "-T", MOVING, "-geometry", f"80x12+20+{MOVING_Y}"], env=env)
        websockify = shutil.which("websockify", path=str(Path(sys.executable).parent))
        spawn(
            [
                websockify or "websockify",
                "--web",
                "/usr/share/novnc",
                f"--unix-target={sock}",
                f"127.0.0.1:{port}",
            ]
        )
        url = (
            f"http://127.0.0.1:{port}/vnc.html?autoconnect=true&password=benchpw"
            "&resize=scale&path=websockify"
        )
    try:
        yield t0, url, env, procs
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
        log.close()


def hand_run(page: Page, backend: str) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="nbviz-bench-desk-") as tmp,
        by_hand(backend, Path(tmp)) as (t0, url, env, procs),
    ):
        deadline = time.monotonic() + 30
        while True:  # the page answers once the web server is up
            try:
                page.goto(url, timeout=5000)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        drawn = wait_drawn(page)

        def activate() -> None:
            subprocess.run(
                ["xdotool", "search", "--sync", "--name", TYPING, "windowactivate", "--sync"],
                env=env,
                timeout=20,
                check=False,
            )

        keys = key_latencies(page, activate)
        rss, pss = (sum(m) for m in zip(*(tree_memory(p.pid) for p in procs), strict=True))
        fps = moving_fps(page, env)
        return {
            "start_s": drawn - t0,
            "key_ms": keys,
            "rss_mb": rss,
            "pss_mb": pss,
            "fps_direct": fps,
        }


def verdict(metric: str, value: float) -> str:
    return "PASS" if value <= TARGETS[metric] else "MISS"


def main() -> int:
    rows: list[list[str]] = []
    backends = [b for b in ("xpra", "vnc") if _desktop.missing_backend(b) is None]  # type: ignore[arg-type]
    root = Path(tempfile.mkdtemp(prefix="nbviz-bench-jupyter-"))
    server = JupyterServer(root=root).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for backend in backends:
                    for how, run in (("nbviz", nbviz_run), ("by hand", None)):
                        context = browser.new_context(viewport={"width": 1300, "height": 850})
                        page = context.new_page()
                        try:
                            if run is None:
                                result = hand_run(page, backend)
                            else:
                                page.goto(server.url(f"lab?token={server.token}"))  # cookie
                                result = run(server, page, backend)
                        except Exception as exc:  # a benchmark reports, never asserts
                            rows.append([backend, how, f"error: {exc}"[:80], *[""] * 6])
                            continue
                        finally:
                            context.close()
                        keys = result["key_ms"]
                        key = statistics.median(keys) if keys else float("nan")
                        rows.append(
                            [
                                backend,
                                how,
                                f"{result['start_s']:.2f} {verdict('start_s', result['start_s'])}",
                                f"{key:.0f} {verdict('key_ms', key)} ({len(keys)}/{KEYS})",
                                f"{result['rss_mb']:.0f} {verdict('rss_mb', result['rss_mb'])}",
                                f"{result['pss_mb']:.0f} {verdict('rss_mb', result['pss_mb'])}",
                                f"{result['fps_route']:.0f}" if "fps_route" in result else "",
                                f"{result['fps_direct']:.0f}",
                                f"{result['ready_s']:.2f}" if "ready_s" in result else "",
                            ]
                        )
            finally:
                browser.close()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    head = [
        "backend",
        "how",
        "start → drawn, s (≤ 1.0)",
        "key → echo, ms (≤ 50)",
        "RSS, MB (≤ 200)",
        "PSS, MB",
        "fps, route",
        "fps, direct",
        "wait_ready, s",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
