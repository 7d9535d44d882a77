"""ParaViewSession on real solver output: OpenFOAM cases made by OpenFOAM's own tools in the
test (blockMesh, icoFoam, decomposePar, foamToVTK), opened as ParaView opens them."""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from openfoam_cases import (
    cavity,
    decompose,
    needs_openfoam,
    run,
    set_control,
    start_solver,
    stop_solver,
)
from paraview_data import heat_series
from PIL import Image

from nbviz import NbvizError, NbvizWarning, ParaViewSession
from nbviz.paraview import DataError, Screenshot, write_pvd, write_vti

pytestmark = [
    pytest.mark.paraview,
    needs_openfoam,
    pytest.mark.filterwarnings("ignore::nbviz.NbvizWarning"),  # no Jupyter server here: no route
]

TIMES = [0.1, 0.2, 0.3, 0.4, 0.5]  # the cavity tutorial writes every 0.1 s up to 0.5 s
#: Looking at the cavity's front (z) face: x to the right, y (the moving lid on top) up.
FRONT = {"position": [0.05, 0.05, 0.3], "focal_point": [0.05, 0.05, 0.005], "view_up": [0, 1, 0]}


def rgb(shot: Screenshot) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(shot.data)).convert("RGB")).astype(int)


def redness(shot: Screenshot, x: float, y: float, size: float = 0.04) -> float:
    """Mean red minus blue around (x, y): > 0 towards the top of "Cool to Warm", < 0 below."""
    image = rgb(shot)
    h, w = image.shape[:2]
    box = image[
        int((y - size) * h) : int((y + size) * h), int((x - size) * w) : int((x + size) * w)
    ]
    return float((box[..., 0] - box[..., 2]).mean())


# The cavity (looked at from the front, 300x300 pixels) fills about 0.15 .. 0.84 of the picture.
LID, BOTTOM = 0.17, 0.8


def changed(a: Screenshot, b: Screenshot, by: int = 30) -> bool:
    """Whether more than 0.5 % of the pixels differ by more than ``by`` (summed over RGB)."""
    return bool((np.abs(rgb(a) - rgb(b)).sum(axis=2) > by).mean() > 0.005)


def open_view(path: Path, **kwargs: object) -> ParaViewSession:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NbvizWarning)
        view = ParaViewSession(path, size=(300, 300), **kwargs)  # type: ignore[arg-type]
    view.wait_ready(120)
    return view


def front(view: ParaViewSession) -> None:
    view.camera = FRONT
    view.reset_camera()


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cavity tutorial, solved to t = 0.5 by icoFoam, and written as VTK by foamToVTK."""
    solved = cavity(tmp_path_factory.mktemp("foam"))
    run(solved, "foamToVTK")
    return solved


@pytest.fixture(scope="module")
def view(case: Path) -> Iterator[ParaViewSession]:
    session = open_view(case / "cavity.foam")
    yield session
    session.stop()


def test_a_case_opens_through_its_empty_foam_file(case: Path, view: ParaViewSession) -> None:
    assert (case / "cavity.foam").stat().st_size == 0
    assert view.times == pytest.approx(TIMES)
    assert sorted(view.fields) == ["U", "p"] and view.field == "p"
    assert view.regions == ["internalMesh"]  # ParaView's default
    assert {"internalMesh", "patch/movingWall", "patch/fixedWalls"} <= set(view.all_regions)
    listing = view.request("list")
    assert listing["case_type"] == "reconstructed"
    assert listing["bounds"] == pytest.approx([0, 0.1, 0, 0.1, 0, 0.01])
    # the lid drives the flow: fast along the top, slow at the bottom
    view.field, view.component, view.time = "U", "magnitude", 4
    front(view)
    shot = view.screenshot()
    assert redness(shot, 0.5, LID, 0.02) > 50 > -50 > redness(shot, 0.5, BOTTOM)


def test_controldict_opens_the_same_case(case: Path) -> None:
    """ParaView's OpenFOAM reader also takes the case's system/controlDict."""
    session = open_view(case / "system" / "controlDict")
    try:
        assert session.times == pytest.approx(TIMES) and sorted(session.fields) == ["U", "p"]
    finally:
        session.stop()


def test_regions_internal_mesh_and_patches(view: ParaViewSession) -> None:
    try:
        view.regions = ["movingWall"]  # a patch's bare name means patch/<name>
        assert view.regions == ["patch/movingWall"]
        low_y, high_y = view.request("list")["bounds"][2:4]
        assert low_y == pytest.approx(0.1) and high_y == pytest.approx(0.1)  # the lid: y = 0.1
        assert view.bounds[2:4] == pytest.approx([0.1, 0.1])
        view.regions = ["internalMesh", "group/wall"]
        assert view.request("list")["bounds"][2:4] == pytest.approx([0, 0.1])
        with pytest.raises(DataError, match=r"no region 'inlet'; regions: internalMesh, "):
            view.regions = ["inlet"]
        with pytest.raises(DataError, match=r"regions needs at least one of"):
            view.regions = []
        assert view.regions == ["internalMesh", "group/wall"]
    finally:
        view.regions = ["internalMesh"]


def test_cell_and_point_values(view: ParaViewSession) -> None:
    """Cell values (the solver's own, one per cell) show as flat cells; point values
    (interpolated by ParaView) as smooth gradients: along a row across the 20 cells of the
    cavity, at most one colour per cell against many."""
    view.field, view.time, view.component = "U", 4, "y"
    front(view)
    try:
        view.association = "cells"
        cells = rgb(view.screenshot())
        assert view.request("list")["values"]["association"] == "cells"
        view.association = "points"
        points = rgb(view.screenshot())

        def colours(image: np.ndarray) -> int:  # along the row through the vortex' sides
            row = image[
                int(0.3 * image.shape[0]), int(0.18 * image.shape[1]) : int(0.82 * image.shape[1])
            ]
            return len(np.unique(row, axis=0))

        assert colours(cells) <= 2 * 20, colours(cells)  # (and some blended at cell edges)
        assert colours(points) > 3 * colours(cells), (colours(points), colours(cells))
    finally:
        view.association, view.component = "auto", "magnitude"


def test_vector_field_by_magnitude_or_component(view: ParaViewSession) -> None:
    view.field, view.time, view.color_range = "U", 4, "auto"
    front(view)
    try:
        shots = {}
        for component in ("magnitude", "x", "y"):
            view.component = component
            shots[component] = view.screenshot()
        # under the lid U points along +x: the top of the x range; the vortex the lid drives
        # goes down along the right wall (U_y < 0) and up along the left one (U_y > 0)
        assert redness(shots["x"], 0.5, LID, 0.02) > 50
        assert redness(shots["y"], 0.25, 0.3) > 50 > -50 > redness(shots["y"], 0.75, 0.3)
        assert redness(shots["magnitude"], 0.75, 0.3) < -50  # slow there: the low end
        assert shots["x"].data != shots["y"].data != shots["magnitude"].data
        with pytest.raises(DataError, match=r"component is \"magnitude\", \"x\""):
            view.component = "w"
        with pytest.raises(DataError, match=r"'U' has 3 components; component '5'"):
            view.component = "5"
        assert view.component == "y"
    finally:
        view.component = "magnitude"


def test_derived_fields(view: ParaViewSession) -> None:
    """Fields computed by ParaView's Calculator and Python Calculator join the data's: shown,
    contoured, recomputed for each time step; a bad expression is a clear error."""
    view.field, view.time, view.color_range = "p", 4, "auto"
    front(view)
    speed = view.calculator("mag(U)", name="speed")
    try:
        assert "speed" in view.fields and speed.kind == "calculator"
        assert view.data_range("speed") == pytest.approx(view.data_range("U"), rel=1e-5)
        # numpy through VTK's numpy_interface, inside pvpython
        twice = view.python_calculator("U[:, 0] * 2", name="twice_ux")
        low, high = view.data_range("U", "x")
        assert view.data_range("twice_ux") == pytest.approx([2 * low, 2 * high], rel=1e-5)
        gradient = view.python_calculator("mag(gradient(p))", name="grad_p")
        assert view.data_range("grad_p")[1] > 0
        assert sorted(view.fields) == ["U", "grad_p", "p", "speed", "twice_ux"]
        # recomputed for each step (the flow starts from rest and speeds up inside)
        view.time = 0
        early = view.data_range("grad_p")
        view.time = 4
        assert view.data_range("grad_p") != pytest.approx(early)
        view.field = "speed"  # coloured like U's magnitude: fast under the lid
        shot = view.screenshot()
        assert redness(shot, 0.5, LID, 0.02) > 50 > -50 > redness(shot, 0.5, BOTTOM)
        surface = view.contour(values=[0.2], field="speed")
        assert changed(shot, view.screenshot())
        surface.remove()
        speed.set(expression="2*mag(U)")
        assert view.data_range("speed")[1] == pytest.approx(2 * view.data_range("U")[1], rel=1e-5)
        with pytest.raises(DataError, match=r"Calculator could not compute 'nope\(U\)'"):
            view.calculator("nope(U)", name="bad")
        with pytest.raises(DataError, match=r"Python Calculator could not compute 'U\[:, 7\]'"):
            view.python_calculator("U[:, 7]", name="bad")
        with pytest.raises(DataError, match=r"a field named 'p' exists already"):
            view.calculator("2*p", name="p")
        assert "bad" not in view.fields
        twice.remove()
        gradient.remove()
    finally:
        speed.remove()
    assert sorted(view.fields) == ["U", "p"] and view.field in view.fields
    assert view.filters == []


def test_pvpython_uses_the_numpy_vtk_was_built_for(view: ParaViewSession) -> None:
    """The kernel's numpy (2.x from PyPI here) must not shadow the one next to ParaView's
    packages (Debian's 1.24, which its VTK was built for)."""
    assert "numpy: /usr/lib/python3/dist-packages/numpy/" in view.logs()


def test_foamtovtk_multiblock_series(case: Path) -> None:
    """foamToVTK writes one .vtm per step (internal mesh + boundary blocks) and a .series
    file; both it and a glob of the .vtm files open as one time series."""
    for data in (case / "VTK" / "cavity.vtm.series", str(case / "VTK" / "cavity_*.vtm")):
        session = open_view(data)  # type: ignore[arg-type]
        try:
            assert session.times == pytest.approx([0, *TIMES], abs=1e-6)
            assert sorted(session.fields) == ["U", "p"]
            session.field, session.time = "U", 5
            front(session)
            shot = session.screenshot()
            assert redness(shot, 0.5, LID, 0.02) > 50 > -50 > redness(shot, 0.5, BOTTOM), data
            # its blocks are regions: the internal mesh, the boundary and its patches
            assert session.all_regions == [
                "internal",
                "boundary",
                "boundary/movingWall",
                "boundary/fixedWalls",
            ]
            assert session.regions == ["internal", "boundary"]
            session.regions = ["movingWall"]  # a name that ends one block's path
            assert session.regions == ["boundary/movingWall"]
            assert session.request("list")["bounds"][2:4] == pytest.approx([0.1, 0.1])
            assert session.field == "U" and "speed" not in session.fields
            session.calculator("mag(U)", name="speed")  # derived fields follow the blocks
            session.regions = ["internal"]
            assert session.request("list")["bounds"][2:4] == pytest.approx([0, 0.1])
            assert session.data_range("speed")[1] == pytest.approx(1, abs=0.05)
        finally:
            session.stop()


def test_a_decomposed_case(tmp_path: Path) -> None:
    """decomposePar, then a parallel run (mpirun -np 2 icoFoam -parallel): the time steps are in
    processor0/ and processor1/ only, and the case is read as ParaView's "Decomposed Case"."""
    if not shutil.which("mpirun"):
        pytest.skip("needs mpirun (apt-get install mpi-default-bin)")
    case = cavity(tmp_path, solve=False)
    decompose(case, 2)
    session = open_view(case / "cavity.foam")  # before the run: where its steps will be
    try:
        assert session.request("list")["case_type"] == "decomposed"
    finally:
        session.stop()
    run(case, "mpirun", "-np", "2", "icoFoam", "-parallel")
    assert (case / "processor1" / "0.5").is_dir() and not (case / "0.5").exists()
    session = open_view(case / "cavity.foam")
    try:
        assert session.request("list")["case_type"] == "decomposed"
        assert session.times == pytest.approx(TIMES)
        session.field, session.time = "U", 4
        front(session)
        whole = session.screenshot()  # both halves, drawn as one
        for x in (0.3, 0.7):
            assert redness(whole, x, LID, 0.02) > 50 > -50 > redness(whole, x, BOTTOM)
    finally:
        session.stop()
    # asked for the reconstructed case: only the initial conditions (0/) are there
    session = open_view(case / "cavity.foam", case_type="reconstructed")
    try:
        assert session.request("list")["case_type"] == "reconstructed"
        assert session.times in ([], [0.0])
    finally:
        session.stop()


def test_openfoam_mistakes_are_clear(case: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"is an OpenFOAM case directory; .*touch .*\.foam"):
        ParaViewSession(case)
    stray = tmp_path / "stray.foam"
    stray.touch()
    with pytest.raises(DataError, match=r"stray\.foam is not in an OpenFOAM case: .*controlDict"):
        ParaViewSession(stray)
    empty = tmp_path / "empty.vtu"  # other empty files are still refused
    empty.touch()
    with pytest.raises(DataError, match=r"empty\.vtu is empty"):
        ParaViewSession(empty)
    vtm = case / "VTK" / "cavity.vtm.series"
    with pytest.raises(DataError, match=r"case_type= says how to read an OpenFOAM case"):
        ParaViewSession(vtm, case_type="decomposed")
    session = ParaViewSession(vtm, regions=["internalMesh"])  # foamToVTK calls it "internal"
    with pytest.raises(DataError, match=r"no region 'internalMesh'; regions: internal, bound"):
        session.wait_ready(120)
    single = case / "VTK" / "cavity_100" / "internal.vtu"
    session = ParaViewSession(single, regions=["internal"])
    with pytest.raises(DataError, match=r"the blocks of a multiblock data set \(\.vtm\); this"):
        session.wait_ready(120)
    with pytest.raises(NbvizError, match=r"case_type= must be one of 'auto', 'reconstructed'"):
        ParaViewSession(case / "cavity.foam", case_type="parallel")
    with pytest.raises(NbvizError, match=r"regions= must be a list of region names"):
        ParaViewSession(case / "cavity.foam", regions="internalMesh")  # type: ignore[arg-type]
    with pytest.raises(NbvizError, match=r"regions= must be a list of region names.*got \[\]"):
        ParaViewSession(case / "cavity.foam", regions=[])
    session = ParaViewSession(case / "cavity.foam", regions=["nope"])
    with pytest.raises(DataError, match=r"no region 'nope'; regions: internalMesh"):
        session.wait_ready(120)
    unmeshed = tmp_path / "unmeshed"  # blockMesh not run: nothing to show, said so
    shutil.copytree(case, unmeshed, ignore=shutil.ignore_patterns("polyMesh", "0.*", "VTK"))
    session = ParaViewSession(unmeshed / "cavity.foam")
    with pytest.raises(DataError, match=r"cavity\.foam: the case has no mesh .*blockMesh"):
        session.wait_ready(120)


def test_regions_given_at_the_start(case: Path) -> None:
    session = open_view(case / "cavity.foam", regions=["internalMesh", "movingWall"])
    try:
        assert session.regions == ["internalMesh", "patch/movingWall"]
    finally:
        session.stop()


# ------------------------------------------------------------ following a running solver
def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def test_follow_a_running_icofoam(tmp_path: Path) -> None:
    """icoFoam runs while the view follows it: the time directories it writes (one per second
    of wall-clock time) appear in view.times, the view moves on to each, and its pictures
    change as the flow spins up from rest."""
    case = cavity(tmp_path, solve=False)
    # Re = 200 (nu = 0.0005) instead of 10: the vortex takes about a second of simulated time
    # to form; small steps and a write every wall-clock second show it forming
    properties = case / "constant" / "transportProperties"
    properties.write_text(properties.read_text().replace("0.01", "0.0005"))
    set_control(case, deltaT=0.00005, endTime=100, writeControl="clockTime", writeInterval=1)
    solver = start_solver(case)
    try:
        view = open_view(case / "cavity.foam", follow=True, follow_interval=0.3)
        try:
            view.field, view.component, view.color_range = "U", "y", (-0.3, 0.3)
            front(view)
            start = len(view.times)
            shots, seen = [], []
            while len(seen) < 4:
                wait_for(lambda: len(view.times) > start + len(seen), 60, "a new time step")
                assert solver.poll() is None, "the solver ended early"
                seen.append(len(view.times))
                assert view.time == len(view.times) - 1  # on the newest step
                shots.append(view.screenshot())
            assert view.times == sorted(view.times) and len(view.times) >= start + 4
            steps = itertools.pairwise(shots)
            assert sum(changed(a, b, by=10) for a, b in steps) >= 2, view.times
            # a step the user picks stays picked while new ones come
            view.time = 0
            count = len(view.times)
            wait_for(lambda: len(view.times) > count, 60, "one more step")
            assert view.time == 0
        finally:
            view.stop()
    finally:
        stop_solver(solver)


def slow_write(path: Path, data: bytes, pause: float | threading.Event) -> threading.Thread:
    """Write ``data`` to ``path`` in two halves, ``pause`` seconds apart (or the second when
    the event is set): a slow writer."""
    written = threading.Event()

    def write() -> None:
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            written.set()
            if isinstance(pause, threading.Event):
                pause.wait(60)
            else:
                time.sleep(pause)
            f.write(data[len(data) // 2 :])

    thread = threading.Thread(target=write)
    thread.start()
    written.wait(10)
    return thread


def test_a_half_written_step_is_never_shown(tmp_path: Path) -> None:
    """A step whose file is half written (no end yet, quiet for longer than `settle`) is not
    offered; once its end is written (and `settle` has passed), it is."""
    steps = tmp_path / "steps"
    series = heat_series(steps, n=12, steps=3)
    series.unlink()  # the steps alone: step0.vti .. step2.vti
    source = (steps / "step2.vti").read_bytes()
    (steps / "step2.vti").unlink()
    view = open_view(str(steps / "step*.vti"), follow=True, follow_interval=0.2, settle=0.5)
    try:
        assert len(view.times) == 2 and view.time == 1
        writer = slow_write(steps / "step2.vti", source, pause=2.5)
        time.sleep(2.0)  # half of it quiet for 1.5 s (> settle): still not a step
        assert len(view.times) == 2
        view.screenshot()
        writer.join()
        wait_for(lambda: len(view.times) == 3, 10, "the completed step")
        assert view.time == 2
    finally:
        view.stop()
    # half written when the view starts: not a step either, until it is complete
    (steps / "step2.vti").unlink()
    go_on = threading.Event()
    writer = slow_write(steps / "step2.vti", source, pause=go_on)
    try:
        view = open_view(str(steps / "step*.vti"), follow=True, follow_interval=0.2, settle=0.5)
        try:
            assert len(view.times) == 2 and view.time == 1
            go_on.set()
            wait_for(lambda: len(view.times) == 3, 10, "the completed step")
            assert view.time == 2
        finally:
            view.stop()
    finally:
        go_on.set()
        writer.join()


def test_a_half_written_openfoam_step_is_never_shown(case: Path, tmp_path: Path) -> None:
    """An OpenFOAM time directory is offered once it has every field the step before had, each
    ending with OpenFOAM's end divider: not while a field is missing or half written."""
    copy = tmp_path / "cavity"
    shutil.copytree(case, copy, ignore=shutil.ignore_patterns("0.4", "0.5", "VTK"))
    view = open_view(copy / "cavity.foam", follow=True, follow_interval=0.2, settle=0.3)
    try:
        assert view.times == pytest.approx(TIMES[:3]) and view.time == 2
        step = copy / "0.4"
        step.mkdir()
        shutil.copy(case / "0.4" / "U", step / "U")  # U written, p and phi not yet
        time.sleep(1.0)
        assert view.times == pytest.approx(TIMES[:3])
        writer = slow_write(step / "p", (case / "0.4" / "p").read_bytes(), pause=1.5)
        shutil.copy(case / "0.4" / "phi", step / "phi")
        time.sleep(1.0)  # p half written
        assert view.times == pytest.approx(TIMES[:3])
        writer.join()
        shutil.copytree(case / "0.4" / "uniform", step / "uniform")
        wait_for(lambda: len(view.times) == 4, 10, "the completed time directory")
        assert view.times == pytest.approx(TIMES[:4]) and view.time == 3
    finally:
        view.stop()


def test_initial_conditions_may_hold_other_files(case: Path, tmp_path: Path) -> None:
    """The first step a solver writes need not hold what 0/ holds (tutorials keep U.orig
    and the like there); the steps after it must hold what the step before them held."""
    copy = tmp_path / "cavity"
    shutil.copytree(case, copy, ignore=shutil.ignore_patterns("0.*", "VTK"))
    shutil.copy(copy / "0" / "U", copy / "0" / "U.orig")
    view = open_view(copy / "cavity.foam", follow=True, follow_interval=0.2, settle=0.2)
    try:
        shutil.copytree(case / "0.1", copy / "0.1")
        wait_for(lambda: len(view.times) >= 1 and view.times[-1] == 0.1, 10, "the first step")
        step = copy / "0.2"
        step.mkdir()
        shutil.copy(case / "0.2" / "U", step / "U")  # p and phi: not yet
        time.sleep(1.0)
        assert view.times[-1] == pytest.approx(0.1)
        for name in ("p", "phi"):
            shutil.copy(case / "0.2" / name, step / name)
        wait_for(lambda: view.times[-1] == pytest.approx(0.2), 10, "the second step")
    finally:
        view.stop()


def test_a_growing_pvd_and_a_rewritten_series(case: Path, tmp_path: Path) -> None:
    """A .pvd the solver rewrites with one more step, and foamToVTK's .series file rewritten
    with more steps, are followed; a .pvd cut off mid-write is not read until it is whole."""
    steps = tmp_path / "heat"
    heat_series(steps, n=12, steps=4)
    files = [(t, steps / f"step{i}.vti") for i, t in enumerate([0.0, 1 / 3, 2 / 3, 1.0])]
    pvd = write_pvd(steps / "grow.pvd", files[:2])
    view = open_view(pvd, follow=True, follow_interval=0.2, settle=0.2)
    try:
        assert len(view.times) == 2
        whole = write_pvd(tmp_path / "whole.pvd", files[:3]).read_text()
        pvd.write_text(whole.replace(str(os.path.relpath(steps, tmp_path)) + "/", "")[:-40])
        time.sleep(1.0)  # cut off: not XML yet
        assert len(view.times) == 2
        write_pvd(pvd, files[:3])
        wait_for(lambda: len(view.times) == 3, 10, "the step added to the .pvd")
        assert view.time == 2
    finally:
        view.stop()
    vtk = tmp_path / "VTK"
    shutil.copytree(case / "VTK", vtk)
    full = json.loads((vtk / "cavity.vtm.series").read_text())
    (vtk / "cavity.vtm.series").write_text(json.dumps({**full, "files": full["files"][:3]}))
    view = open_view(vtk / "cavity.vtm.series", follow=True, follow_interval=0.2, settle=0.2)
    try:
        assert len(view.times) == 3
        (vtk / "cavity.vtm.series").write_text(json.dumps(full))
        wait_for(lambda: len(view.times) == 6, 10, "the steps added to the .series file")
        assert view.time == 5
    finally:
        view.stop()


def test_refresh_by_hand(tmp_path: Path) -> None:
    steps = tmp_path / "steps"
    heat_series(steps, n=12, steps=3).unlink()
    source = (steps / "step2.vti").read_bytes()
    (steps / "step2.vti").unlink()
    view = open_view(str(steps / "step*.vti"), settle=0)
    try:
        assert view.follow is False and len(view.times) == 2 and view.time == 0
        assert view.refresh() == 0
        (steps / "step2.vti").write_bytes(source)
        time.sleep(1.5)
        assert len(view.times) == 2  # not following: nothing happens by itself
        assert view.refresh() == 1
        assert len(view.times) == 3 and view.time == 0  # (the user's step stays)
        view.follow = True  # from now on, by itself
        (steps / "step3.vti").write_bytes(source)
        wait_for(lambda: len(view.times) == 4, 10, "the step found by following")
    finally:
        view.stop()


def test_follow_a_decomposed_case(tmp_path: Path) -> None:
    """A parallel run writes each step into every processor directory: a step is offered
    once it is complete in all of them."""
    if not shutil.which("mpirun"):
        pytest.skip("needs mpirun (apt-get install mpi-default-bin)")
    case = cavity(tmp_path, solve=False)
    decompose(case, 2)
    run(case, "mpirun", "-np", "2", "icoFoam", "-parallel")
    later = tmp_path / "later"
    for part in ("processor0", "processor1"):
        (later / part).mkdir(parents=True)
        for step in ("0.4", "0.5"):  # written later
            shutil.move(case / part / step, later / part / step)
    view = open_view(case / "cavity.foam", follow=True, follow_interval=0.2, settle=0.3)
    try:
        assert view.request("list")["case_type"] == "decomposed"
        assert view.times == pytest.approx(TIMES[:3]) and view.time == 2
        shutil.copytree(later / "processor0" / "0.4", case / "processor0" / "0.4")
        time.sleep(1.0)  # in processor0 only: not a step yet
        assert view.times == pytest.approx(TIMES[:3])
        shutil.copytree(later / "processor1" / "0.4", case / "processor1" / "0.4")
        wait_for(lambda: len(view.times) == 4, 10, "the step in both processor directories")
        for part in ("processor0", "processor1"):
            shutil.copytree(later / part / "0.5", case / part / "0.5")
        wait_for(lambda: len(view.times) == 5, 10, "the next step")
        assert view.times == pytest.approx(TIMES) and view.time == 4
    finally:
        view.stop()


def test_new_steps_bring_new_fields(tmp_path: Path) -> None:
    """Steps that hold arrays the first step lacked: `fields` grows as they are picked up
    (following, or refresh() by hand), and the new arrays can be shown."""
    axis = np.linspace(0.0, 1.0, 8)
    ramp = np.add.outer(np.add.outer(axis, axis), axis).astype(np.float32)
    write_vti(tmp_path / "s_0.vti", {"a": ramp})
    view = open_view(str(tmp_path / "s_*.vti"), follow=True, follow_interval=0.2, settle=0.1)
    try:
        assert view.fields == ["a"] and view.field == "a"
        write_vti(tmp_path / "s_1.vti", {"a": ramp, "b": 1 - ramp})
        wait_for(lambda: len(view.times) == 2, 10, "the step with a second array")
        wait_for(lambda: view.fields == ["a", "b"], 5, "the new array in view.fields")
        assert view.field == "a" and view.time == 1  # (the field shown stays)
        view.field = "b"
        assert view.data_range() == pytest.approx([-2, 1])
        view.follow = False
        write_vti(tmp_path / "s_2.vti", {"a": ramp, "b": ramp, "c": 2 * ramp})
        time.sleep(0.5)
        assert view.refresh() == 1
        assert view.fields == ["a", "b", "c"]  # (refresh() answers with them)
        view.field = "c"
        assert view.data_range() == pytest.approx([0, 6])
    finally:
        view.stop()


def test_a_case_without_fields_gets_them_with_its_first_step(case: Path, tmp_path: Path) -> None:
    """A case started before the solver wrote anything (0/ only; ParaView reads no field
    there) has no fields; the first step the solver writes brings them, and the view is
    coloured by the first one, as it would have been at the start."""
    copy = tmp_path / "cavity"
    shutil.copytree(case, copy, ignore=shutil.ignore_patterns("0.*", "VTK"))
    view = open_view(copy / "cavity.foam", follow=True, follow_interval=0.2, settle=0.2)
    try:
        assert view.fields == [] and view.field == ""
        front(view)
        plain = view.screenshot()
        shutil.copytree(case / "0.1", copy / "0.1")
        wait_for(lambda: view.times == pytest.approx([0.1]), 10, "the first step")
        wait_for(lambda: view.fields == ["p", "U"], 5, "its fields in view.fields")
        assert view.field == "p" and view.request("list")["values"]["field"] == "p"
        assert changed(plain, view.screenshot())  # coloured now
        view.field = "U"
        assert view.data_range()[1] > 0.5  # the lid's speed is 1
    finally:
        view.stop()


PROGRAMMABLE = """
import sys
if sys.argv[1] == "fix":
    sys.path.insert(0, sys.argv[2])
    from pvnumpy import import_numpy_of_vtk
    import_numpy_of_vtk()
from paraview import simple
sphere = simple.Sphere(Radius=0.5)
program = simple.ProgrammableFilter(Input=sphere)
program.Script = '''
import numpy as np
from vtkmodules.numpy_interface import dataset_adapter as dsa
self.GetOutput().ShallowCopy(self.GetInput())
out = dsa.WrapDataObject(self.GetOutput())
out.PointData.append(np.linalg.norm(out.Points, axis=1), "radius")
'''
program.UpdatePipeline()
radius = program.PointData["radius"]
print("radius", None if radius is None else list(radius.GetRange()))
"""


def test_programmable_filter_and_numpy_interface_in_pvpython(tmp_path: Path) -> None:
    """ParaView's ProgrammableFilter with VTK's numpy_interface, in pvpython as nbviz runs it
    (the kernel's site-packages, with its numpy 2, first on the path): it works with the fix
    nbviz's app applies first (runtime/pvnumpy.py), and fails without it."""
    import nbviz.paraview as paraview

    script = tmp_path / "programmable.py"
    script.write_text(PROGRAMMABLE)
    here = str(Path(paraview.__file__).parent / "runtime")
    env = {**os.environ, "PYTHONPATH": paraview.trame_site()}

    def run(mode: str) -> str:
        result = subprocess.run(
            [paraview.find_pvpython(), "--no-mpi", str(script), mode, here],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return result.stdout + result.stderr

    fixed = run("fix")
    line = next((ln for ln in fixed.splitlines() if ln.startswith("radius [")), None)
    assert line is not None, fixed
    assert json.loads(line.removeprefix("radius ")) == pytest.approx([0.5, 0.5], abs=1e-6)
    broken = run("plain")  # the control: numpy 2 first on the path breaks VTK's numpy
    assert "radius None" in broken, broken
