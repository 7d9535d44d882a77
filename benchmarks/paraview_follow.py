"""Following a running simulation: how soon a new step is on screen, and what a step costs as
the series grows.

Run by ``make bench``. Everything listens on 127.0.0.1 or Unix sockets; every wait has a
deadline. Two parts:

1. **Step written -> new pixels in the page, through the route.** A real JupyterLab (token,
   base URL /user/alice/) and a kernel it started; the kernel runs
   ``ParaViewSession("steps/step_*.vti", follow=True, ...)`` and headless Chromium opens the
   view through nbviz's route ``{base}nbviz/<session>/``, as the widget's frame does. Then this
   process writes one new step file at a time (a 48³ image whose hot blob moves in the plane
   z = 0, which a slice shows, coloured on a fixed range: each step changes the picture) and
   times from the moment the file is closed to the load of the first image in the page that
   differs from the one before (each step is written at a random moment of the app's cycle of
   looks) (the page stamps each image as it loads; see
   ``benchmarks/paraview.py``). Twice: with the defaults (``follow_interval=1``,
   ``settle=0.5``: a step must be quiet for 0.5 s, and the app looks once a second) and with
   ``follow_interval=0.1, settle=0.1`` (the floor: looking, reloading, reading, rendering,
   pushing).
2. **Cost per step as the series grows, 10 -> 100 -> 1,000 steps.** A ParaViewSession (no
   browser, ``settle=0``) on a series of N steps, showing the last one; one step is added
   and ``view.refresh()`` timed (look for it, reload the reader, read and show the new step,
   send the kernel the longer ``times``), 5 times at each size; also a refresh that finds
   nothing (what following costs every ``follow_interval`` while the solver computes), and
   the CPU time pvpython used for each. For three kinds of series: a glob of ``.vti`` files,
   a ``.pvd`` rewritten with one more entry, and an OpenFOAM case with one more time directory
   (the cavity tutorial's output, run by the real icoFoam once, its last step copied under new
   time names).

Results go to benchmarks/results/paraview_follow.json and .md; nothing is asserted.

    python benchmarks/paraview_follow.py [--steps 10] [--sizes 10,100,1000]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import _common
import numpy as np
import psutil
from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(REPO / "tests"))

import browser_helpers  # noqa: E402
import jupyter_helpers  # noqa: E402

from nbviz import NbvizWarning, ParaViewSession  # noqa: E402
from nbviz.paraview import write_pvd, write_vti  # noqa: E402

_spec = importlib.util.spec_from_file_location("pvbench", HERE / "paraview.py")
assert _spec is not None and _spec.loader is not None
pvbench: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pvbench)

N = 48  # points per side of a step's image
CAVITY = Path("/usr/share/doc/openfoam-examples/examples/incompressible/icoFoam/cavity/cavity")
STEP_TIMEOUT = 15.0
step_seed = 16
#: (what, pid) of every process the run started: checked at the end.
SPAWNED: list[tuple[str, int]] = []


# ------------------------------------------------------------------ data
def blob(step: int) -> np.ndarray:
    """A hot blob that moves around the cube's centre, one position per step."""
    axis = np.linspace(-1.0, 1.0, N)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    angle = 0.9 * step
    cx, cy = 0.5 * np.cos(angle), 0.5 * np.sin(angle)
    return np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + z**2) / 0.08).astype(np.float32)


def write_step(directory: Path, step: int, n: int = N) -> Path:
    values = blob(step) if n == N else np.full((n, n, n), float(step), np.float32)
    return write_vti(
        directory / f"step_{step}.vti",
        {"temperature": values},
        spacing=(2 / (n - 1),) * 3,
        origin=(-1, -1, -1),
    )


def openfoam_case(root: Path) -> Path:
    """The cavity tutorial run to t = 0.5 by the real blockMesh and icoFoam."""
    case = root / "cavity"
    shutil.copytree(CAVITY, case)
    env = dict(os.environ, WM_PROJECT_DIR=os.environ.get("WM_PROJECT_DIR", "/usr/share/openfoam"))
    for tool in ("blockMesh", "icoFoam"):
        subprocess.run([tool], cwd=case, env=env, check=True, capture_output=True)
    for name in ("0.1", "0.2", "0.3", "0.4"):
        shutil.rmtree(case / name)
    (case / "cavity.foam").touch()
    return case


# ------------------------------------------------------------------ 1. through the page
CONSTRUCT = """\
view = ParaViewSession({pattern!r}, size=(800, 600), follow=True, field="temperature",
                       follow_interval={interval!r}, settle={settle!r})
view.wait_ready(60)
view.color_range = (0, 1)
view.camera = {{"position": [0, 0, 6], "focal_point": [0, 0, 0], "view_up": [0, 1, 0]}}
view.reset_camera()
cut = view.slice(normal=(0, 0, 1))  # through the blob's plane (z = 0)
print(json.dumps({{"url": view.url, "route": view.route, "pid": view.pid}}))
"""


def step_to_pixels(
    browser: Any, server: Any, kernel: Any, root: Path, steps: int, interval: float, settle: float
) -> dict[str, Any]:
    directory = root / f"page-{interval}"
    directory.mkdir()
    for step in range(2):
        write_step(directory, step)
    old = time.time() - 10
    for path in directory.iterdir():
        os.utime(path, (old, old))  # the first steps are complete when the view opens
    info = json.loads(
        kernel.run(
            CONSTRUCT.format(
                pattern=str(directory / "step_*.vti"), interval=interval, settle=settle
            )
        ).splitlines()[-1]
    )
    pids = [info["pid"], *(c.pid for c in psutil.Process(info["pid"]).children(recursive=True))]
    SPAWNED.extend(("nbviz backend", pid) for pid in pids)
    context, page = pvbench.new_page(browser)
    delays: list[float] = []
    missed = 0
    try:
        page.goto(server.url(f"api/status?token={server.token}"))
        page.goto(server.url(info["url"]), wait_until="commit")
        frames = pvbench.Frames(page)
        pvbench.first_frame(frames)
        pvbench.settle(frames, quiet=0.5)
        rng = random.Random(step_seed)
        for step in range(2, 2 + steps):
            # at a random moment of the app's look-again cycle (the loop would otherwise lock
            # onto it: each step written just after the previous one was shown)
            time.sleep(rng.uniform(0, interval))
            before = pvbench.last_frame(frames)
            index = frames.count()
            write_step(directory, step)
            written = time.time()
            try:
                frame, _ = frames.wait(
                    index, lambda f, b=before: pvbench.differs(f, b), STEP_TIMEOUT
                )
                delays.append(frame["t"] - written)
            except TimeoutError:
                missed += 1
            pvbench.settle(frames, quiet=0.3)
        shown = json.loads(kernel.run("print(json.dumps([len(view.times), view.time]))"))
    finally:
        context.close()
        kernel.run("view.stop()")
    return {
        "route": info["route"],
        "follow_interval": interval,
        "settle": settle,
        "steps": steps,
        "delays": delays,
        "missed": missed,
        "times_at_end": shown[0],
        "time_at_end": shown[1],
    }


# ------------------------------------------------------------------ 2. cost as it grows
class Series:
    """One kind of growing series: ``add(k)`` writes k more steps (complete at once)."""

    def __init__(self, kind: str, root: Path) -> None:
        self.kind = kind
        self.directory = root / f"grow-{kind}"
        self.directory.mkdir()
        self.count = 0
        self.files: list[tuple[float, Path]] = []
        if kind == "openfoam":
            self.case = openfoam_case(self.directory)
            self.template = self.case / "0.5"

    @property
    def data(self) -> str:
        if self.kind == "glob":
            return str(self.directory / "step_*.vti")
        if self.kind == "pvd":
            return str(self.directory / "run.pvd")
        return str(self.case / "cavity.foam")

    def add(self, k: int) -> None:
        for _ in range(k):
            self.count += 1
            if self.kind == "openfoam":
                if self.count == 1:
                    continue  # 0.5 is there
                shutil.copytree(self.template, self.case / f"{0.5 + 0.01 * (self.count - 1):g}")
            else:
                path = write_step(self.directory, self.count, n=12)
                self.files.append((float(self.count), path))
        if self.kind == "pvd":
            write_pvd(self.directory / "run.pvd", self.files)


def pvpython_cpu(pid: int) -> float:
    """CPU time of the session's pvpython (a child of its launcher, ``pid``)."""
    root = psutil.Process(pid)
    tree = [root, *root.children(recursive=True)]
    return pvbench.cpu_seconds([p.pid for p in tree if p.name() == "pvpython"])


def growth(root: Path, kind: str, sizes: list[int], repeats: int) -> dict[str, Any]:
    series = Series(kind, root)
    series.add(sizes[0] - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NbvizWarning)
        view = ParaViewSession(series.data, size=(400, 300), settle=0.0)
    view.wait_ready(120)
    assert view.pid is not None
    SPAWNED.append(("nbviz backend", view.pid))
    rows = []
    try:
        for size in sizes:
            series.add(size - 1 - series.count)
            view.refresh()  # (not timed: brings the series to size - 1 steps)
            view.time = len(view.times) - 1  # showing the last step: new ones are shown
            adds, cpu, idle, idle_cpu = [], [], [], []
            for _ in range(repeats):
                series.add(1)
                before, cpu_before = time.perf_counter(), pvpython_cpu(view.pid)
                added = view.refresh()
                adds.append(time.perf_counter() - before)
                cpu.append(pvpython_cpu(view.pid) - cpu_before)
                assert added == 1, (kind, size, added)
                before, cpu_before = time.perf_counter(), pvpython_cpu(view.pid)
                assert view.refresh() == 0
                idle.append(time.perf_counter() - before)
                idle_cpu.append(pvpython_cpu(view.pid) - cpu_before)
            rows.append(
                {
                    "steps": size,  # the series' size when the first step was added
                    "add": adds,
                    "add_cpu": cpu,
                    "idle": idle,
                    "idle_cpu": idle_cpu,
                    "time_at_end": view.time,
                }
            )
            print(
                f"  {kind}: {size} steps, add {median(adds) * 1000:.0f} ms, "
                f"nothing new {median(idle) * 1000:.1f} ms",
                flush=True,
            )
    finally:
        view.stop()
    return {"kind": kind, "rows": rows}


# ------------------------------------------------------------------ report
def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] if ordered else 0.0


def tables(page: list[dict[str, Any]], grow: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| follow_interval, settle | route | steps | step written -> new pixels, median | p95 |"
        " min | missed |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in page:
        d = run["delays"]
        lines.append(
            f"| {run['follow_interval']:g} s, {run['settle']:g} s | {run['route']} | "
            f"{run['steps']} | {median(d):.2f} s | {p95(d):.2f} s | "
            f"{min(d) if d else float('nan'):.2f} s | {run['missed']} |"
        )
    lines += [
        "",
        "| series | steps | add one step: refresh(), median | pvpython CPU | nothing new:"
        " refresh(), median | pvpython CPU |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kind in grow:
        for row in kind["rows"]:
            lines.append(
                f"| {kind['kind']} | {row['steps']:,} | {median(row['add']) * 1000:.0f} ms | "
                f"{median(row['add_cpu']) * 1000:.0f} ms | {median(row['idle']) * 1000:.1f} ms | "
                f"{median(row['idle_cpu']) * 1000:.1f} ms |"
            )
    return lines


def leftovers(timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        alive = [f"{what} {pid}" for what, pid in SPAWNED if jupyter_helpers.pid_running(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def main() -> int:
    _common.end_cleanly_on_sigterm()
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="steps written per page run")
    parser.add_argument("--sizes", default="10,100,1000", help="series sizes for part 2")
    parser.add_argument("--repeats", type=int, default=5, help="steps added at each size")
    parser.add_argument("--out", type=Path, default=RESULTS / "paraview_follow.json")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    for program in ("pvpython", "icoFoam", browser_helpers.CHROMIUM):
        if not shutil.which(program):
            print(f"nbviz benchmark: {program} not found; run `make deps`", file=sys.stderr)
            return 2
    load_before = os.getloadavg()
    started = time.perf_counter()
    page: list[dict[str, Any]] = []
    grow: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nbviz-follow-") as tmp:
        root = Path(tmp)
        server = jupyter_helpers.JupyterServer(root=root / "jupyter")
        kernel = None
        try:
            print("starting JupyterLab, a kernel and Chromium ...", flush=True)
            server.start()
            kernel = pvbench.Kernel(server)
            kernel.run("import json\nfrom nbviz import ParaViewSession")
            with sync_playwright() as playwright, browser_helpers.chromium(playwright) as browser:
                for interval, settle in ((1.0, 0.5), (0.1, 0.1)):
                    print(f"step -> pixels, follow_interval={interval}, settle={settle} ...")
                    run = step_to_pixels(
                        browser, server, kernel, root, args.steps, interval, settle
                    )
                    page.append(run)
                    print(f"  median {median(run['delays']):.2f} s, missed {run['missed']}")
        finally:
            if kernel is not None:
                kernel.close()
            server.stop()
        for kind in ("glob", "pvd", "openfoam"):
            print(f"cost per step, {kind} ...", flush=True)
            grow.append(growth(root, kind, sizes, args.repeats))
    elapsed = time.perf_counter() - started
    left = leftovers()
    now = datetime.datetime.now().astimezone()
    header = (
        f"nbviz follow benchmark, {now:%Y-%m-%d %H:%M %Z}, {os.cpu_count()} cores, "
        f"{elapsed:.0f} s; load average {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    lines = tables(page, grow)
    _common.show(header, lines, left)
    report = {
        "date": now.isoformat(timespec="seconds"),
        "seconds": round(elapsed, 1),
        "page": page,
        "growth": grow,
        "left_running": left,
    }
    _common.write_results(args.out, report, header + "\n\n" + "\n".join(lines))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
