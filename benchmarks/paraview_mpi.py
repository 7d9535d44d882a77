"""Large volumes on MPI-parallel pvserver ranks: ``ParaViewSession(path, ranks=N)``.

Run by ``make bench`` after the ParaView benchmark. Everything is driven through the kernel API
in this process (no Jupyter server, no browser): the frames are ParaView's own screenshots.

Data: a float32 volume of n^3 points, n = 128, 256, 512 (8 MiB, 64 MiB, 512 MiB of values),
written with ``nbviz.paraview.write_vti`` into a temporary directory: a radial field with
ripples, ``r + 0.05 sin(8x) sin(8y) sin(8z)`` on [-1, 1]^3, so that a contour is a bumpy sphere
and a slice shows rings.

For each size, sessions with ``ranks=None`` (one pvpython process, no MPI), ``ranks=1`` and
``ranks=2`` (``mpiexec -n N pvserver`` connected back to pvpython) take turns:

- first frame: from the constructor to the first screenshot (1280x800) of the whole volume
  (``wait_ready()`` then ``screenshot()``): start, read, render, composite;
- slice frame: ``slice.set(origin=...)`` moves a z-slice through the volume, then
  ``screenshot()``: cut on the ranks, render, composite, PNG; median of the changes;
- contour frame: the same with ``contour.set(values=[...])`` (iso-surfaces of the field);
- memory: peak RSS (VmHWM) of each pvserver rank and of pvpython after the first frame (the
  data read and rendered once) and at the end (after the slices and contours).

Results: benchmarks/results/paraview_mpi.json, .md (the table) and .png (a plot, drawn with
Pillow). ``--budget`` seconds bound the run: what does not fit is skipped and reported.

    python benchmarks/paraview_mpi.py [--sizes 128 256 512] [--changes 5] [--budget 600]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import _common
import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent))

from nbviz import NbvizWarning, ParaViewSession  # noqa: E402
from nbviz.paraview import write_vti  # noqa: E402

RANKS: list[int | None] = [None, 1, 2]
SIZE = (1280, 800)
MiB = 1024 * 1024


def write_volume(path: Path, n: int) -> dict[str, Any]:
    """The benchmark's volume, n^3 float32 points, built slab by slab to bound the memory."""
    axis = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    values = np.empty((n, n, n), dtype=np.float32)
    x, y = np.meshgrid(axis, axis, indexing="ij")
    ripple_xy = np.sin(8 * x) * np.sin(8 * y)
    for k, z in enumerate(axis):
        values[:, :, k] = np.sqrt(x**2 + y**2 + z**2) + 0.05 * ripple_xy * np.sin(8 * z)
    started = time.perf_counter()
    write_vti(path, {"radius": values}, spacing=(2 / (n - 1),) * 3, origin=(-1, -1, -1))
    return {
        "n": n,
        "points": n**3,
        "bytes": path.stat().st_size,
        "write_seconds": round(time.perf_counter() - started, 1),
    }


def peak_memory(session: ParaViewSession) -> dict[str, Any]:
    """VmHWM (MiB) of pvpython and of each pvserver rank of the session."""
    assert session.pid is not None
    root = psutil.Process(session.pid)
    found: dict[str, Any] = {"pvpython": None, "ranks": []}
    for proc in [root, *root.children(recursive=True)]:
        try:
            name = proc.name()
            with open(f"/proc/{proc.pid}/status") as f:
                peak = next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM"))
        except (OSError, psutil.Error, StopIteration):
            continue
        if name == "pvpython":
            found["pvpython"] = round(peak, 1)
        elif name == "pvserver":
            found["ranks"].append(round(peak, 1))
    return found


def timed_changes(session: ParaViewSession, change: Any, count: int) -> list[float]:
    times = []
    for i in range(count):
        started = time.perf_counter()
        change(i)
        session.screenshot()
        times.append(time.perf_counter() - started)
    return times


def run_one(data: Path, ranks: int | None, changes: int) -> dict[str, Any]:
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NbvizWarning)  # no Jupyter server: no route
        session = ParaViewSession(data, ranks=ranks, size=SIZE, timeout=300)
    try:
        session.wait_ready(300)
        session.screenshot()
        first = time.perf_counter() - started
        read_memory = peak_memory(session)
        cut = session.slice(normal=(0, 0, 1))
        session.screenshot()  # the first slice frame: not counted
        slices = timed_changes(
            session, lambda i: cut.set(origin=(0, 0, -0.8 + 1.6 * (i + 1) / (changes + 1))), changes
        )
        cut.remove()
        surface = session.contour(values=[0.5])
        session.screenshot()
        contours = timed_changes(
            session, lambda i: surface.set(values=[0.3 + 0.5 * i / max(changes - 1, 1)]), changes
        )
        memory = peak_memory(session)
        pieces = session.request("pieces")  # last: counting takes memory on the ranks
    finally:
        session.stop()
    return {
        "ranks": ranks,
        "first_frame": round(first, 2),
        "slice": [round(t, 3) for t in slices],
        "contour": [round(t, 3) for t in contours],
        "pieces": pieces,
        "memory_first_frame": read_memory,
        "memory": memory,
    }


def label(ranks: int | None) -> str:
    return "1 process" if ranks is None else f"ranks={ranks}"


def memory_cell(memory: dict[str, Any]) -> str:
    ranks = " / ".join(f"{m:.0f}" for m in memory["ranks"]) or "-"
    return f"{memory['pvpython']:.0f} / {ranks}"


def table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| volume | ranks | first frame, s | slice frame, ms (median) | contour frame, ms "
        "(median) | points per rank | peak RSS after first frame, MiB: pvpython / each rank "
        "| peak RSS at the end, MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size in results:
        for run in size["runs"]:
            if "error" in run:
                lines.append(f"| {size['n']}³ | {label(run['ranks'])} | {run['error']} | | | | | |")
                continue
            lines.append(
                f"| {size['n']}³ | {label(run['ranks'])} | {run['first_frame']:.1f} | "
                f"{statistics.median(run['slice']) * 1000:.0f} | "
                f"{statistics.median(run['contour']) * 1000:.0f} | "
                f"{' / '.join(f'{p:,}' for p in run['pieces'])} | "
                f"{memory_cell(run['memory_first_frame'])} | {memory_cell(run['memory'])} |"
            )
    return lines


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Grouped bars: first frame, slice frame and contour frame per volume and rank count."""
    from PIL import Image, ImageDraw

    panels = [
        ("first frame, s", lambda r: r["first_frame"]),
        ("slice frame, s (median)", lambda r: statistics.median(r["slice"])),
        ("contour frame, s (median)", lambda r: statistics.median(r["contour"])),
    ]
    colours = {None: (120, 120, 120), 1: (66, 133, 244), 2: (219, 68, 55)}
    width, height, margin = 360, 300, 40
    image = Image.new("RGB", (width * len(panels), height + 40), "white")
    draw = ImageDraw.Draw(image)
    for p, (title, value) in enumerate(panels):
        left = p * width + margin
        bottom, top = height - 30, 40
        runs = [(s["n"], r) for s in results for r in s["runs"] if "error" not in r]
        highest = max((value(r) for _n, r in runs), default=1.0) or 1.0
        draw.text((left, 10), title, fill="black")
        draw.line([(left, top), (left, bottom), (p * width + width - 10, bottom)], fill="black")
        draw.text((left - 35, top - 5), f"{highest:.2g}", fill="black")
        draw.text((left - 15, bottom - 5), "0", fill="black")
        group = (width - margin - 20) / max(len(results), 1)
        for g, size in enumerate(results):
            x0 = left + 10 + g * group
            draw.text((x0 + group / 3, bottom + 8), f"{size['n']}^3", fill="black")
            bar = (group - 20) / len(RANKS)
            for b, ranks in enumerate(RANKS):
                run = next((r for r in size["runs"] if r["ranks"] == ranks), None)
                if run is None or "error" in run:
                    continue
                h = (bottom - top) * value(run) / highest
                x = x0 + b * bar
                draw.rectangle([x, bottom - h, x + bar - 3, bottom], fill=colours[ranks])
    for i, ranks in enumerate(RANKS):
        x = 20 + i * 140
        draw.rectangle([x, height + 15, x + 12, height + 27], fill=colours[ranks])
        draw.text((x + 18, height + 15), label(ranks), fill="black")
    image.save(path)


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


def main() -> int:
    _common.end_cleanly_on_sigterm()
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--changes", type=int, default=5, help="timed changes per filter")
    parser.add_argument("--budget", type=float, default=600, help="seconds for the whole run")
    parser.add_argument("--out", type=Path, default=RESULTS / "paraview_mpi.json")
    args = parser.parse_args()
    if not shutil.which("mpiexec"):
        print("nbviz benchmark: mpiexec not found; run `make deps`", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nbviz-mpibench-") as tmp:
        for n in args.sizes:
            data = Path(tmp) / f"volume{n}.vti"
            print(f"writing {n}^3 ...", flush=True)
            size = write_volume(data, n)
            size["runs"] = []
            results.append(size)
            for ranks in RANKS:
                spent = time.perf_counter() - started
                if spent > args.budget:
                    size["runs"].append({"ranks": ranks, "error": "skipped (time budget)"})
                    continue
                print(f"  {label(ranks)} ...", end=" ", flush=True)
                try:
                    run = run_one(data, ranks, args.changes)
                except Exception as exc:  # one failed configuration must not lose the rest
                    run = {"ranks": ranks, "error": f"{type(exc).__name__}: {exc}"[:200]}
                size["runs"].append(run)
                print(
                    run.get("error")
                    or f"first frame {run['first_frame']:.1f} s, slice "
                    f"{statistics.median(run['slice']) * 1000:.0f} ms, contour "
                    f"{statistics.median(run['contour']) * 1000:.0f} ms",
                    flush=True,
                )
            data.unlink()
    elapsed = time.perf_counter() - started
    now = datetime.datetime.now().astimezone()
    header = (
        f"nbviz ParaView MPI benchmark, {now:%Y-%m-%d %H:%M %Z}, {os.cpu_count()} cores, "
        f"{elapsed:.0f} s; {args.changes} changes per filter, view {SIZE[0]}x{SIZE[1]}; "
        f"load average {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    lines = table(results)
    _common.show(header, lines)
    report = {
        "date": now.isoformat(timespec="seconds"),
        "seconds": round(elapsed, 1),
        "machine": machine(),
        "results": results,
    }
    _common.write_results(args.out, report, header + "\n\n" + "\n".join(lines))
    plot(results, args.out.with_suffix(".png"))
    print(f"\nwrote {args.out} and its .md and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
