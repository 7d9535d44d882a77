"""ParaViewSession on real solver output: OpenFOAM cases made by OpenFOAM's own tools in the
test (blockMesh, icoFoam, decomposePar, foamToVTK), opened as ParaView opens them."""

from __future__ import annotations

import io
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from openfoam_cases import cavity, decompose, needs_openfoam, run
from PIL import Image

from nbviz import NbvizError, NbvizWarning, ParaViewSession
from nbviz.paraview import DataError, Screenshot

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


def changed(a: Screenshot, b: Screenshot) -> bool:
    return bool((np.abs(rgb(a) - rgb(b)).sum(axis=2) > 30).mean() > 0.005)


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
        finally:
            session.stop()


def test_a_decomposed_case(tmp_path: Path) -> None:
    """decomposePar, then a parallel run (mpirun -np 2 icoFoam -parallel): the time steps are in
    processor0/ and processor1/ only, and the case is read as ParaView's "Decomposed Case"."""
    if not shutil.which("mpirun"):
        pytest.skip("needs mpirun (apt-get install mpi-default-bin)")
    case = cavity(tmp_path, solve=False)
    decompose(case, 2)
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
    with pytest.raises(DataError, match=r"regions= and case_type= choose the parts of an OpenF"):
        ParaViewSession(vtm, regions=["internalMesh"])
    with pytest.raises(NbvizError, match=r"case_type= must be one of 'auto', 'reconstructed'"):
        ParaViewSession(case / "cavity.foam", case_type="parallel")
    with pytest.raises(NbvizError, match=r"regions= must be a list of region names"):
        ParaViewSession(case / "cavity.foam", regions="internalMesh")  # type: ignore[arg-type]
    session = ParaViewSession(case / "cavity.foam", regions=["nope"])
    with pytest.raises(DataError, match=r"no region 'nope'; regions: internalMesh"):
        session.wait_ready(120)


def test_regions_given_at_the_start(case: Path) -> None:
    session = open_view(case / "cavity.foam", regions=["internalMesh", "movingWall"])
    try:
        assert session.regions == ["internalMesh", "patch/movingWall"]
    finally:
        session.stop()
