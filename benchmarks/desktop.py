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
- **gl=False**: the same nbviz desktop started with ``RemoteDesktop(backend, gl=False)``
  (no GLX on the X server).
- **RSS**: the desktop as started, with the page attached: X server, Xpra's server or the
  web side (nbviz's launcher, websockify), window manager and one xterm (with its shell),
  summed; **PSS** the same with each shared page divided among the processes that map it (RSS
  sums count shared libraries and forked children's pages again for every process). Also with
  the benchmark's two xterms (typing, moving), as these runs measured before 2026-11-26.
- **in JupyterLab**: from ``RemoteDesktop(backend)`` in a notebook cell to the desktop drawn
  in the cell's frame (the whole path a user sees), ``LAB_ROUNDS`` rounds alternating two
  variants: the frame loading the client page as soon as the launcher serves it (nbviz's
  default, the ``serving`` trait) or only once the desktop is ready (a subclass that never
  reports ``serving``, as nbviz did before 2026-11-26).

Prints tables with PASS/MISS against the issue's targets; never asserts. About 3 minutes.
Run: ``.venv/bin/python benchmarks/desktop.py`` (also ``make bench``).
"""

# ruff: noqa: E501  (the in-page JavaScript)
from __future__ import annotations

import contextlib
import functools
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
from playwright.sync_api import Browser, Page, sync_playwright

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, open_notebook  # noqa: E402
from jupyter_helpers import JupyterServer, Kernel, wait_until  # noqa: E402

from nbviz.desktop import _spec  # noqa: E402
from nbviz.desktop.runtime import shared, xserver  # noqa: E402

KEYS = 10
LAB_ROUNDS = 3
FPS_SECONDS = 3.0
MOVE_EVERY = 0.016  # about 60 moves per second
MOVING = "bench-moving"
#: The moving xterm's geometry and the screen row the page samples (inside its path).
MOVING_Y, STRIP_Y = 300, 360
TARGETS = {"start_s": 1.0, "key_ms": 50.0, "rss_mb": 200.0}
BACKGROUND = shared.BACKGROUND
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


def wait_drawn(page: Page, timeout: float = 30, in_frames: bool = False) -> float:
    """Poll the page (``in_frames``: the frames in it, as nbviz's in a notebook) until the
    desktop is drawn; time.time() then."""
    deadline = time.monotonic() + timeout
    js = background_drawn_js()
    while time.monotonic() < deadline:
        for target in page.frames[1:] if in_frames else [page]:
            with contextlib.suppress(Exception):
                if target.evaluate(js):
                    return time.time()
        time.sleep(0.02)
    raise TimeoutError("the desktop was never drawn in the page")


#: Before any page script: note when the client's websocket opens and first receives (epoch ms).
WEBSOCKET_TIMES_JS = """
(() => {
  const Native = window.WebSocket;
  const now = () => performance.timeOrigin + performance.now();
  window.__ws = {};
  window.WebSocket = function (...args) {
    const ws = new Native(...args);
    window.__ws.created = window.__ws.created || now();
    ws.addEventListener('open', () => { window.__ws.open = window.__ws.open || now(); });
    ws.addEventListener('message', () => { window.__ws.message = window.__ws.message || now(); });
    return ws;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
})();
"""

#: In the page: when the document and its files arrived (epoch ms), how many, how many bytes.
PAGE_TIMES_JS = """
() => {
  const origin = performance.timeOrigin;
  const nav = performance.getEntriesByType('navigation')[0];
  const files = performance.getEntriesByType('resource').filter(r => r.initiatorType !== 'xmlhttprequest' || true);
  const scripts = files.filter(r => /\\.m?js(\\?|$)/.test(r.name));
  return {
    start: origin,
    html: nav ? origin + nav.responseEnd : null,
    dom: nav ? origin + nav.domContentLoadedEventEnd : null,
    scripts: scripts.length ? origin + Math.max(...scripts.map(r => r.responseEnd)) : null,
    files: files.length,
    kb: files.reduce((n, r) => n + (r.transferSize || 0), 0) / 1024,
    ws: window.__ws || {},
  };
}
"""


def page_phases(page: Page, t0: float, drawn: float) -> dict[str, float]:
    """The page's phases (seconds after ``t0``) from the browser's own timings."""
    times = page.evaluate(PAGE_TIMES_JS)
    out = {"files": float(times["files"]), "kb": float(times["kb"])}
    for key, value in (
        ("page_start", times["start"]),
        ("page_html", times["html"]),
        ("scripts", times["scripts"]),
        ("dom_ready", times["dom"]),
        ("ws_open", times["ws"].get("open")),
        ("ws_data", times["ws"].get("message")),
    ):
        if value:
            out[key] = value / 1000 - t0
    out["drawn"] = drawn - t0
    return out


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


def label(proc: psutil.Process) -> str:
    """A short name for a process of a desktop (the launcher and websockify are both Python)."""
    argv = proc.cmdline()
    words = " ".join(argv[:4])
    if "runtime/launcher.py" in words:
        return "nbviz launcher"
    if "websockify" in words:
        return "websockify"
    if "xpra" in words:
        return "xpra " + next((a for a in argv[1:] if not a.startswith("-")), "")
    return Path(argv[0]).name if argv else proc.name()


def tree_memory(pid: int, skip: str = "") -> list[tuple[str, float, float]]:
    """(name, RSS, PSS) of ``pid`` and each of its descendants, MB (PSS shares shared pages
    out among the processes that map them); without the processes that have ``skip`` as an
    argument (an xterm's title), and their descendants."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    skipped: set[int] = set()
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if skip and skip in proc.cmdline():
                skipped |= {proc.pid, *(c.pid for c in proc.children(recursive=True))}
    out = []
    for proc in procs:
        if proc.pid in skipped:
            continue
        with contextlib.suppress(psutil.Error):
            info = proc.memory_full_info()
            out.append((label(proc), info.rss / 1e6, info.pss / 1e6))
    return out


START = """
import json, subprocess, time
from nbviz import RemoteDesktop
_t0 = time.time()
desk = RemoteDesktop({backend!r}, gl={gl!r})
desk.wait_ready(30)
_ready = time.time() - _t0
_timeline = desk._info.get("timeline", {{}})
term = desk.launch(["xterm", "-T", {title!r}, "-geometry", "60x10+20+20", "-e", "sh"])
mover = desk.launch(["xterm", "-T", {moving!r}, "-geometry", "80x12+20+{y}"])
_env = {{"DISPLAY": desk.x_env["DISPLAY"], "XAUTHORITY": desk.x_env["XAUTHORITY"]}}
print(json.dumps([_t0, _ready, desk.url, desk.path, desk.pid, term.pid, mover.pid,
                  desk.endpoint.unix_socket, _env, _timeline]))
"""
ACTIVATE = (
    "subprocess.run(['xdotool', 'search', '--sync', '--name', {title!r}, 'windowactivate',"
    " '--sync'], env=desk.x_env, check=True, timeout=20)"
)


def nbviz_run(server: JupyterServer, page: Page, backend: str, gl: bool = True) -> dict[str, Any]:
    kernel = Kernel(server)
    try:
        code = START.format(backend=backend, gl=gl, title=TYPING, moving=MOVING, y=MOVING_Y)
        t0, ready, url, path, pid, term, mover, sock, x_env, timeline = json.loads(
            kernel.run(code).strip().splitlines()[-1]
        )
        phases = {k: v - t0 for k, v in timeline.items()}
        phases["wait_ready"] = ready
        phases["page_asked"] = time.time() - t0
        page.goto(server.url(url.rstrip("/") + path))
        drawn = wait_drawn(page)
        phases.update(page_phases(page, t0, drawn))
        keys = key_latencies(page, lambda: kernel.run(ACTIVATE.format(title=TYPING)))
        processes = [m for p in (pid, term, mover) for m in tree_memory(p)]
        desktop = tree_memory(pid)  # as started: X, Xpra or the web side, openbox, an xterm
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
            "processes": processes,
            "desktop": desktop,
            "phases": phases,
            "fps_route": fps_route,
            "fps_direct": fps_direct,
        }
    finally:
        kernel.close()


#: In a notebook cell: a desktop shown by nbviz's frame, the frame loading the client page
#: early (``serving``, the default) or only once the desktop is ready (as before 2026-11-26).
LAB_CELL = """
import time
from nbviz import RemoteDesktop

class _PageAtReady(RemoteDesktop):
    def _desktop_is_up(self, _endpoint):
        return bool(self._read_info())  # never "serving": the frame waits for "ready"

_t0 = time.time()
desk = ({cls})({backend!r})
desk"""
LAB_VARIANTS = {"page early": "RemoteDesktop", "page at ready": "_PageAtReady"}


def lab_start(server: JupyterServer, browser: Browser, backend: str, cls: str) -> float:
    """Seconds from the constructor in a JupyterLab notebook cell to the desktop drawn in the
    cell's frame (the whole path a user sees: kernel, frame, route, client page)."""
    name = f"bench-{backend}-{cls.strip('_').lower()}-{time.monotonic_ns()}"
    with open_notebook(server, browser, name) as nb:
        nb.run(LAB_CELL.format(cls=cls, backend=backend).strip())
        try:
            drawn = wait_drawn(nb.page, in_frames=True)
        finally:
            nb.pids.append(int(nb.printed("print(desk.pid)")))
            t0 = float(nb.printed("print(repr(_t0))"))
            nb.run("desk.stop()")
    return drawn - t0


def lab_rows(server: JupyterServer, browser: Browser, backends: list[str]) -> list[list[str]]:
    """``LAB_ROUNDS`` rounds per backend, the two variants alternating: medians (all)."""
    rows = []
    for backend in backends:
        times: dict[str, list[float]] = {variant: [] for variant in LAB_VARIANTS}
        for round_ in range(LAB_ROUNDS):
            order = list(LAB_VARIANTS) if round_ % 2 == 0 else list(reversed(LAB_VARIANTS))
            for variant in order:
                try:
                    times[variant].append(
                        lab_start(server, browser, backend, LAB_VARIANTS[variant])
                    )
                except Exception as exc:  # a benchmark reports, never asserts
                    print(f"{backend} {variant}: {exc}", file=sys.stderr)
        early, late = times["page early"], times["page at ready"]
        for variant, values in times.items():
            if not values:
                rows.append([backend, variant, "error", "", ""])
                continue
            median = statistics.median(values)
            ratio = (
                f"{statistics.median(early) / statistics.median(late):.2f}x"
                if variant == "page early" and early and late
                else ""
            )
            rows.append(
                [
                    backend,
                    variant,
                    f"{median:.2f} {verdict('start_s', median)}",
                    ", ".join(f"{v:.2f}" for v in values),
                    ratio,
                ]
            )
    return rows


def free_port() -> int:
    # Only for the by-hand baseline (the commands of ENVIRONMENT.md take a port number).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def by_hand(backend: str, work: Path) -> Iterator[tuple[float, str, dict[str, str], list[Any]]]:
    """Start the stack by hand; (start time, page URL, X environment, processes)."""
    port, display = free_port(), xserver.free_display(200)
    env = dict(os.environ, DISPLAY=f":{display}")
    procs: list[subprocess.Popen[bytes]] = []
    log = open(work / f"{backend}.log", "wb")  # noqa: SIM115
    t0 = time.time()

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
        # Xpra runs its Xvfb in a session of its own, which outlives a killed Xpra
        owner = xserver.display_owner(display)
        if owner is not None:
            with contextlib.suppress(OSError):
                os.kill(owner, 9)
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
        phases = page_phases(page, t0, drawn)

        def activate() -> None:
            subprocess.run(
                ["xdotool", "search", "--sync", "--name", TYPING, "windowactivate", "--sync"],
                env=env,
                timeout=20,
                check=False,
            )

        keys = key_latencies(page, activate)
        processes = [m for p in procs for m in tree_memory(p.pid)]
        # the same as nbviz's desktop as started: one xterm (the typing one), not the moving one
        desktop = [m for p in procs for m in tree_memory(p.pid, skip=MOVING)]
        fps = moving_fps(page, env)
        return {
            "start_s": drawn - t0,
            "key_ms": keys,
            "processes": processes,
            "desktop": desktop,
            "phases": phases,
            "fps_direct": fps,
        }


def verdict(metric: str, value: float) -> str:
    return "PASS" if value <= TARGETS[metric] else "MISS"


#: The phase columns of the timeline table: (key, heading).
PHASES = [
    ("launcher", "launcher"),
    ("x_server", "X server"),
    ("window_manager", "WM"),
    ("xpra_socket", "Xpra socket"),
    ("wait_ready", "wait_ready"),
    ("page_start", "page asked"),
    ("page_html", "HTML"),
    ("scripts", "scripts"),
    ("ws_open", "ws open"),
    ("ws_data", "ws data"),
    ("drawn", "drawn"),
]


def table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> int:
    rows: list[list[str]] = []
    timelines: list[list[str]] = []
    memory: list[list[str]] = []
    lab: list[list[str]] = []
    backends = [b for b in ("xpra", "vnc") if _spec.missing_backend(b) is None]
    root = Path(tempfile.mkdtemp(prefix="nbviz-bench-jupyter-"))
    server = JupyterServer(root=root).start()
    load = os.getloadavg()[0]
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for backend in backends:
                    for how, run in (
                        ("nbviz", nbviz_run),
                        ("nbviz gl=False", functools.partial(nbviz_run, gl=False)),
                        ("by hand", None),
                    ):
                        context = browser.new_context(viewport={"width": 1300, "height": 850})
                        context.add_init_script(WEBSOCKET_TIMES_JS)
                        page = context.new_page()
                        try:
                            if run is None:
                                result = hand_run(page, backend)
                            else:
                                page.goto(server.url(f"lab?token={server.token}"))  # cookie
                                result = run(server, page, backend)
                        except Exception as exc:  # a benchmark reports, never asserts
                            rows.append([backend, how, f"error: {exc}"[:80], *[""] * 7])
                            continue
                        finally:
                            context.close()
                        keys = result["key_ms"]
                        key = statistics.median(keys) if keys else float("nan")
                        rss = sum(m[1] for m in result["processes"])
                        pss = sum(m[2] for m in result["processes"])
                        own_rss = sum(m[1] for m in result["desktop"])
                        own_pss = sum(m[2] for m in result["desktop"])
                        rows.append(
                            [
                                backend,
                                how,
                                f"{result['start_s']:.2f} {verdict('start_s', result['start_s'])}",
                                f"{key:.0f} {verdict('key_ms', key)} ({len(keys)}/{KEYS})",
                                f"{own_rss:.0f} {verdict('rss_mb', own_rss)}",
                                f"{own_pss:.0f} {verdict('rss_mb', own_pss)}",
                                f"{rss:.0f} / {pss:.0f}",
                                f"{result['fps_route']:.0f}" if "fps_route" in result else "",
                                f"{result['fps_direct']:.0f}",
                                f"{result['ready_s']:.2f}" if "ready_s" in result else "",
                            ]
                        )
                        phases = result["phases"]
                        timelines.append(
                            [
                                backend,
                                how,
                                *(f"{phases[k]:.2f}" if k in phases else "" for k, _ in PHASES),
                                f"{phases.get('files', 0):.0f} / {phases.get('kb', 0):.0f}",
                            ]
                        )
                        memory.append(
                            [
                                backend,
                                how,
                                ", ".join(
                                    f"{name} {r:.0f}/{p:.0f}" for name, r, p in result["processes"]
                                ),
                            ]
                        )
                lab = lab_rows(server, browser, backends)  # after: as the rows above were
            finally:
                browser.close()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"load average at the start {load:.1f}, at the end {os.getloadavg()[0]:.1f}\n")
    head = [
        "backend",
        "how",
        "start → drawn, s (≤ 1.0)",
        "key → echo, ms (≤ 50)",
        "desktop RSS, MB (≤ 200)",
        "desktop PSS, MB",
        "with 2 more xterms, RSS / PSS",
        "fps, route",
        "fps, direct",
        "wait_ready, s",
    ]
    print(table(head, rows))
    print(
        f"\nConstructor → drawn in a JupyterLab notebook's frame ({LAB_ROUNDS} rounds each, "
        "alternating; the frame loads the client page as soon as the launcher serves it, or "
        "only once the desktop is ready):\n"
    )
    print(table(["backend", "page", "median, s (≤ 1.0)", "all, s", "early / at ready"], lab))
    print("\nTimeline, s after the constructor (nbviz) or the first process (by hand):\n")
    head = ["backend", "how", *(h for _, h in PHASES), "files / KB"]
    print(table(head, timelines))
    print("\nMemory per process with the page attached, RSS/PSS MB:\n")
    print(table(["backend", "how", "processes"], memory))
    return 0


if __name__ == "__main__":
    sys.exit(main())
