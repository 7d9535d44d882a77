"""ParaViewSession through the kernel API: real pvpython (under its own Xvfb), generated data."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import websocket
from jupyter_helpers import JupyterServer, Kernel, pid_running, running, wait_until, ws_connect
from paraview_data import heat_grid, heat_series
from PIL import Image

from nbviz import NbvizError, NbvizWarning, ParaViewSession, ProgramNotFoundError
from nbviz.paraview import (
    DataError,
    Screenshot,
    _vtk_values,
    resolve_data,
    write_pvd,
    write_vti,
)

pytestmark = [
    pytest.mark.paraview,
    pytest.mark.filterwarnings("ignore::nbviz.NbvizWarning"),  # no Jupyter server here: no route
]


def pixel(shot: Screenshot, x: float = 0.5, y: float = 0.5) -> tuple[int, int, int]:
    image = Image.open(io.BytesIO(shot.data)).convert("RGB")
    return image.getpixel((int(x * (image.width - 1)), int(y * (image.height - 1))))  # type: ignore[return-value]


def differs(a: tuple[int, int, int], b: tuple[int, int, int], by: int = 40) -> bool:
    return sum(abs(p - q) for p, q in zip(a, b, strict=True)) > by


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return heat_series(tmp_path_factory.mktemp("heat"))


@pytest.fixture(scope="module")
def view(data: Path) -> Iterator[ParaViewSession]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NbvizWarning)
        session = ParaViewSession(data, size=(400, 300))
    session.wait_ready(120)
    yield session
    session.stop()


def test_fields_times_and_defaults(view: ParaViewSession) -> None:
    assert view.status == "ready" and view.route == "none"  # no Jupyter server in this test
    assert sorted(view.fields) == ["pressure", "temperature"]
    assert view.times == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert view.field in view.fields and view.time == 0
    assert "Viridis (matplotlib)" in view.colormaps
    assert set(view.camera) == {"position", "focal_point", "view_up", "view_angle"}
    listing = view.request("list")
    assert listing["sources"][0]["kind"] == "reader"
    assert listing["bounds"] == pytest.approx([-1, 1, -1, 1, -1, 1])


def test_field_and_colormap_change_the_pixels(view: ParaViewSession) -> None:
    view.field = "pressure"
    view.colormap = "Cool to Warm"
    view.time = 0
    middle_cool = pixel(view.screenshot())
    view.colormap = "Viridis (matplotlib)"
    middle_viridis = pixel(view.screenshot())
    assert differs(middle_cool, middle_viridis), (middle_cool, middle_viridis)
    view.field = "temperature"  # hot in the middle: the top of the colormap
    middle_temperature = pixel(view.screenshot())
    assert differs(middle_viridis, middle_temperature), (middle_viridis, middle_temperature)
    edge_temperature = pixel(view.screenshot(), x=0.5, y=0.85)
    assert differs(middle_temperature, edge_temperature)


def test_time_steps_and_color_range(view: ParaViewSession) -> None:
    view.field = "pressure"
    view.colormap = "Viridis (matplotlib)"
    view.time = 0  # pressure = x: left and right differ, top and bottom agree
    shot = view.screenshot()
    assert differs(pixel(shot, 0.4, 0.5), pixel(shot, 0.6, 0.5))
    view.time = 3  # pressure = y
    shot = view.screenshot()
    assert differs(pixel(shot, 0.5, 0.4), pixel(shot, 0.5, 0.6))
    assert not differs(pixel(shot, 0.4, 0.5), pixel(shot, 0.6, 0.5), by=25)
    view.color_range = (5, 6)  # all data below the range: one colour everywhere
    shot = view.screenshot()
    assert not differs(pixel(shot, 0.5, 0.4), pixel(shot, 0.5, 0.6), by=25)
    view.color_range = "auto"
    view.time = 0


def test_camera_both_ways(view: ParaViewSession) -> None:
    view.reset_camera()
    before = view.screenshot()
    side = dict(view.camera)
    side["position"] = [6.0, 0.0, 0.0]
    side["view_up"] = [0.0, 0.0, 1.0]
    view.camera = side
    assert view.camera["position"] == pytest.approx([6, 0, 0])
    after = view.screenshot()
    assert before.data != after.data
    view.reset_camera()
    assert view.camera["position"] != pytest.approx([6, 0, 0])


FRONT = {"position": [0.0, 0.0, 6.0], "focal_point": [0.0, 0.0, 0.0], "view_up": [0.0, 1.0, 0.0]}


def test_filters(view: ParaViewSession) -> None:
    view.field = "temperature"
    view.colormap = "Cool to Warm"
    view.time = 0
    view.camera = FRONT
    view.reset_camera()
    plain = view.screenshot()
    clip = view.clip(normal=(1, 0, 0))  # keeps x >= 0: the left half of the cube goes
    clipped = view.screenshot()
    assert differs(pixel(plain, 0.4, 0.5), pixel(clipped, 0.4, 0.5))
    assert not differs(pixel(plain, 0.6, 0.5), pixel(clipped, 0.6, 0.5), by=30)
    clip.set(normal=(-1, 0, 0))  # now the right half goes
    flipped = view.screenshot()
    assert differs(pixel(flipped, 0.6, 0.5), pixel(clipped, 0.6, 0.5))
    clip.remove()
    assert not differs(pixel(view.screenshot(), 0.4, 0.5), pixel(plain, 0.4, 0.5), by=10)
    # the hot blob inside the cube: a contour shows it (red in the middle of the view)
    contour = view.contour(values=[0.5])
    blob = view.screenshot()
    assert [f.id for f in view.filters] == [contour.id]
    assert any(s["kind"] == "contour" for s in view.request("list")["sources"])
    assert differs(pixel(plain), pixel(blob))
    red, _green, blue = pixel(blob)
    assert red > blue, pixel(blob)
    contour.remove()
    threshold = view.threshold(0.5, 1.0)
    assert differs(pixel(plain), pixel(view.screenshot()))
    threshold.remove()
    view.slice(normal=(0, 0, 1)).remove()
    assert view.filters == []
    with pytest.raises(DataError, match="no field 'nope'"):
        view.contour(field="nope")
    assert view.filters == []


def test_bad_values_are_clear_errors(view: ParaViewSession) -> None:
    with pytest.raises(DataError, match="no field 'nope'; fields: "):
        view.field = "nope"
    with pytest.raises(DataError, match=r"time step 9 does not exist; there are 4 \(0..3\)"):
        view.time = 9
    with pytest.raises(DataError, match="did you mean 'Viridis"):
        view.colormap = "viridis"
    with pytest.raises(DataError, match="low < high"):
        view.color_range = (2, 1)
    with pytest.raises(DataError, match=r"threshold needs low <= high, got \(200, 100\)"):
        view.threshold(200, 100, field="pressure")
    assert view.filters == [] and view.request("list")["sources"][1:] == []
    high = view.threshold(0, 1, field="pressure")
    with pytest.raises(DataError, match=r"threshold needs low <= high, got \(1, 0\)"):
        high.set(range=[1, 0])
    high.remove()
    view.field = "pressure"
    with pytest.raises(
        DataError, match=r"'pressure' has one component \(a scalar\); component 'y'"
    ):
        view.component = "y"
    assert view.component == "magnitude"
    view.component = "x"  # (the one component there is)
    view.component = "magnitude"
    for size in [(-5, 10), (0, 10), (640, None), (640.5, 400), (True, 10), (20000, 10)]:
        with pytest.raises(NbvizError, match=r"screenshot\(\) takes width and height in pixels"):
            view.screenshot(*size)  # type: ignore[arg-type]
    assert view.field in view.fields and view.time in range(4)


def test_no_tcp_port_is_open(view: ParaViewSession) -> None:
    """On a shared login node nothing of a session may listen on TCP (pvpython's MPI would)."""
    procs = tree(view.pid)  # type: ignore[arg-type]
    _launcher, *children = procs  # nbviz's launcher (the supervisor), its pvpython and Xvfb
    assert {p.name() for p in children} == {"pvpython", "Xvfb"}
    listening = [
        (p.name(), c.laddr)
        for p in procs
        for c in p.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert listening == []


def test_screenshot_size(view: ParaViewSession) -> None:
    shot = view.screenshot(320, 200)
    assert shot.size == (320, 200)
    assert shot._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
    assert view.last_screenshot is shot


def test_numpy_array_input() -> None:
    axis = np.linspace(-1, 1, 20)
    x, y, _z = np.meshgrid(axis, axis, axis, indexing="ij")
    # half floats (which VTK has no type for) are widened; so are booleans
    session = ParaViewSession((x + 2 * y).astype(np.float16), array_name="ramp", size=(300, 300))
    try:
        session.wait_ready(120)
        assert session.fields == ["ramp"] and session.field == "ramp"
        assert session.request("list")["bounds"] == pytest.approx([0, 19, 0, 19, 0, 19])
        shot = session.screenshot()
        assert differs(pixel(shot, 0.5, 0.35), pixel(shot, 0.5, 0.65))
    finally:
        session.stop()


def test_array_values_vtk_takes() -> None:
    assert _vtk_values(np.ones((2, 2), bool)).dtype == np.uint8
    masked = _vtk_values(np.ma.masked_less(np.arange(8.0).reshape(2, 4), 3))
    assert np.isnan(masked[0, :3]).all() and masked[1, 3] == 7
    with pytest.raises(DataError, match=r"\.real, \.imag or abs\(\)"):
        ParaViewSession(np.ones((3, 3)) * 1j)
    with pytest.raises(DataError, match="a numpy array of numbers is needed, not of <U1"):
        ParaViewSession(np.full((3, 3), "a"))


def test_crash_then_restart_restores_the_view(data: Path) -> None:
    # a bad setting given to the constructor is a warning, and the good ones still apply
    with pytest.warns(NbvizWarning, match=r"time step 99 does not exist"):
        session = ParaViewSession(
            data, field="pressure", time=99, colormap="Viridis (matplotlib)", size=(300, 200)
        )
        session.wait_ready(120)
    try:
        assert session.field == "pressure" and session.colormap == "Viridis (matplotlib)"
        applied = session.request("list")["values"]
        assert applied["field"] == "pressure" and applied["colormap"] == "Viridis (matplotlib)"
        assert "time step 99" in session.message
        session.time = 2
        procs = tree(session.pid)  # type: ignore[arg-type]
        pids = [p.pid for p in procs]
        assert len(pids) >= 3  # the launcher, pvpython and its private Xvfb
        pvpython = next(p for p in procs if p.name() == "pvpython")
        os.kill(pvpython.pid, signal.SIGKILL)
        wait_until(lambda: session.status == "crashed", timeout=10, what="crash detection")
        # the launcher's last line says why, as the error's first line
        assert session.error.startswith(
            "nbviz: pvpython exited (signal SIGKILL); the ParaView session is gone"
        ), session.error
        wait_until(lambda: not any(pid_running(p) for p in pids), timeout=10, what="Xvfb too")
        with pytest.raises(NbvizError, match=r"crashed; restart\(\) it"):
            session.screenshot()
        session.restart()
        session.wait_ready(120)
        assert (session.field, session.time) == ("pressure", 2)  # the view came back as it was
        assert session.request("list")["values"]["time"] == 2
    finally:
        session.stop()


def test_xvfb_gone_ends_the_session_with_the_reason(data: Path) -> None:
    """The private Xvfb is an essential child of the launcher, as pvpython is: when it dies
    the launcher ends pvpython, and the error's first line is the launcher's reason."""
    session = ParaViewSession(data, size=(300, 200))
    try:
        session.wait_ready(120)
        procs = tree(session.pid)  # type: ignore[arg-type]
        xvfb = next(p for p in procs if p.name() == "Xvfb")
        os.kill(xvfb.pid, signal.SIGKILL)
        wait_until(lambda: session.status == "crashed", timeout=10, what="crash detection")
        assert session.error.startswith(
            "nbviz: Xvfb exited (signal SIGKILL); the ParaView session is gone"
        ), session.error
        wait_until(
            lambda: not any(pid_running(p.pid) for p in procs), timeout=10, what="pvpython too"
        )
    finally:
        session.stop()


def test_stop_leaves_nothing_also_with_a_deep_runtime_dir(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runtime dir as deep as HPC home directories get: socket paths in it would exceed the
    kernel's limit (108 bytes), so the sockets go to a short private dir, removed at stop."""
    deep = tmp_path / ("projects-" + "x" * 40) / ("users-" + "y" * 40) / "runtime"
    monkeypatch.setenv("NBVIZ_RUNTIME_DIR", str(deep / "nbviz"))
    session = ParaViewSession(data, size=(300, 200))
    session.wait_ready(120)
    procs = tree(session.pid)  # type: ignore[arg-type]
    names = {p.name() for p in procs}
    assert "Xvfb" in names, names
    session_dir, socket_dir = session._process.session_dir, session._process.socket_dir
    assert socket_dir is not None and session_dir is not None and socket_dir != session_dir
    assert (socket_dir.stat().st_mode & 0o777) == 0o700
    assert session.request("list")["fields"]  # the control channel works
    session.stop()
    wait_until(lambda: not any(running(p) for p in procs), timeout=10, what="all processes")
    assert not session_dir.exists() and not socket_dir.exists()


def test_a_csv_table_shows_as_coloured_points(tmp_path: Path) -> None:
    """A table with x, y, z columns (any case) becomes a point cloud coloured by a scalar column;
    a table without coordinates is a clear error."""
    rng = np.random.default_rng(0)
    points = rng.normal(size=(500, 3))
    cloud = tmp_path / "cloud.csv"
    header = "X,Y,Z,radius,angle"
    rows = np.c_[points, np.linalg.norm(points, axis=1), np.arctan2(points[:, 1], points[:, 0])]
    np.savetxt(cloud, rows, delimiter=",", header=header, comments="")
    view = ParaViewSession(cloud, size=(300, 200))
    try:
        view.wait_ready(120)
        assert sorted(view.fields) == ["angle", "radius"] and view.representation == "Points"
        view.field = "radius"
        data = Image.open(io.BytesIO(view.screenshot().data)).convert("RGB").tobytes()
        pixels = [tuple(data[i : i + 3]) for i in range(0, len(data), 3)]
        red = sum(1 for r, g, b in pixels if r > 150 and g < 120 and b < 120)
        blue = sum(1 for r, g, b in pixels if b > 150 and r < 150)
        assert red > 20 and blue > 20, (red, blue)  # far points red, near ones blue
    finally:
        view.stop()
    table = tmp_path / "table.csv"
    np.savetxt(table, points, delimiter=",", header="a,b,c", comments="")
    with pytest.raises(DataError, match=r"columns x, y \(and z\).*; its columns: a, b, c"):
        ParaViewSession(table).wait_ready(120)
    # a coordinate that is not a number (the reader then reads the column as text, and the
    # table had no points: an empty view); a table without rows
    typo = tmp_path / "typo.csv"
    typo.write_text("x,y,z,T\n1,2,3,4\n1,2,abc,5\n")
    with pytest.raises(DataError, match=r"typo\.csv: column 'z' holds 'abc' \(data row 2\), not a"):
        ParaViewSession(typo).wait_ready(120)
    rowless = tmp_path / "header.csv"
    rowless.write_text("x,y,z,T\n")
    with pytest.raises(DataError, match=r"header\.csv is a table without rows"):
        ParaViewSession(rowless).wait_ready(120)
    # separated by semicolons (a spreadsheet's CSV in many locales) or by spaces
    spaced = tmp_path / "cloud.txt"
    np.savetxt(spaced, rows, delimiter="  ", header=header.replace(",", " "), comments="")
    semicolons = tmp_path / "semicolons.csv"
    with_units = "x [m];y [m];z (m);radius;angle"  # (units in the header are common too)
    np.savetxt(semicolons, rows, delimiter=";", header=with_units, comments="")
    for path in (spaced, semicolons):
        view = ParaViewSession(path, size=(300, 200))
        try:
            view.wait_ready(120)
            assert sorted(view.fields) == ["angle", "radius"], path
            assert view.bounds == pytest.approx(
                [v for pair in zip(points.min(0), points.max(0), strict=True) for v in pair],
                abs=1e-3,
            )
        finally:
            view.stop()


def test_association_a_field_has_not_is_a_clear_error(tmp_path: Path) -> None:
    """association="points" for a field of cell values (or "cells" for one of point values)
    says so and what to set, and the view stays as it was."""
    grid = tmp_path / "grid.vtk"  # 3x3x2 points, 2x2x1 cells: p on the cells, q on the points
    grid.write_text(
        "# vtk DataFile Version 3.0\ncells and points\nASCII\nDATASET STRUCTURED_POINTS\n"
        "DIMENSIONS 3 3 2\nORIGIN 0 0 0\nSPACING 1 1 1\n"
        "CELL_DATA 4\nSCALARS p float 1\nLOOKUP_TABLE default\n0 1 2 3\n"
        "POINT_DATA 18\nSCALARS q float 1\nLOOKUP_TABLE default\n"
        + " ".join(str(i) for i in range(18))
        + "\n"
    )
    view = ParaViewSession(grid, size=(200, 150))
    try:
        view.wait_ready(120)
        assert sorted(view.fields) == ["p", "q"]
        view.field = "p"
        with pytest.raises(DataError, match=r"^nbviz: field 'p' has no point data \(it is cell "):
            view.association = "points"
        assert view.association == "auto" and view.field == "p"
        view.association = "cells"
        with pytest.raises(DataError, match=r"field 'q' has no cell data .*association='points'"):
            view.field = "q"
        assert view.field == "p" and view.request("list")["values"]["field"] == "p"
        view.association = "auto"
        view.field = "q"
        view.association = "points"
        assert view.data_range("p") == pytest.approx([0, 3])  # (a range takes what p has)
        view.screenshot()
    finally:
        view.stop()


def test_a_glob_of_steps_in_number_order(tmp_path: Path) -> None:
    """step_10 is the step after step_9, not after step_1 (numbers not zero-padded)."""
    for i in (0, 1, 2, 9, 10, 11):
        (tmp_path / f"step_{i}.vtk").write_text("x")
    found = resolve_data(str(tmp_path / "step_*.vtk"))
    assert [Path(p).name for p in found] == [f"step_{i}.vtk" for i in (0, 1, 2, 9, 10, 11)]


def test_first_colouring_of_meshes_and_blocks(tmp_path: Path) -> None:
    """An STL's only array (a constant solid label) is not used: the mesh is drawn in one
    plain colour; of a multiblock's arrays, the one on the bigger block is shown first."""
    corners = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)]
    faces = [(0, 2, 1), (0, 1, 3), (0, 3, 2), (1, 2, 3)]
    mesh = tmp_path / "part of a wing \u00e9.stl"  # spaces and non-ASCII in the name
    mesh.write_text(
        "solid tet\n"
        + "".join(
            "facet normal 0 0 0\nouter loop\n"
            + "".join("vertex {} {} {}\n".format(*corners[i]) for i in face)
            + "endloop\nendfacet\n"
            for face in faces
        )
        + "endsolid tet\n"
    )
    small = np.ones((3, 3, 3)) * np.arange(3)  # partial arrays: each on one block only
    write_vti(tmp_path / "small.vti", {"a_small": small}, origin=(5, 5, 5))
    big = np.random.default_rng(1).random((12, 12, 12))
    write_vti(tmp_path / "big.vti", {"z_big": big})
    blocks = tmp_path / "blocks.vtm"
    blocks.write_text(
        '<?xml version="1.0"?>\n<VTKFile type="vtkMultiBlockDataSet" version="1.0">\n'
        '<vtkMultiBlockDataSet>\n<DataSet index="0" file="small.vti"/>\n'
        '<DataSet index="1" file="big.vti"/>\n</vtkMultiBlockDataSet>\n</VTKFile>\n'
    )
    view = ParaViewSession(mesh, size=(200, 200))
    try:
        view.wait_ready(120)
        assert view.fields == ["STLSolidLabeling"] and view.field == ""
        image = Image.open(io.BytesIO(view.screenshot().data)).convert("RGB")
        colours = [c for _n, c in image.getcolors(200 * 200) or []]
        grey = [c for c in colours if min(c) > 150 and max(c) - min(c) < 30]
        blue = [c for c in colours if c[2] > 120 and c[2] - c[0] > 60]  # a colormap's low end
        assert len(grey) > 10 and not blue, (len(grey), blue[:5])  # plain light grey
    finally:
        view.stop()
    view = ParaViewSession(blocks, size=(200, 200))
    try:
        view.wait_ready(120)
        assert view.fields == ["a_small", "z_big"] and view.field == "z_big"
        coloured = view.screenshot()
        view.field = ""  # one plain colour, and back
        view.colormap = "Viridis (matplotlib)"
        plain = view.screenshot()
        assert view.field == "" and plain.data != coloured.data
        view.field = "z_big"
        assert view.field == "z_big" and view.screenshot().data != plain.data
        with pytest.raises(DataError, match="no field 'nope'"):
            view.field = "nope"
    finally:
        view.stop()


def test_names_with_xml_characters(tmp_path: Path) -> None:
    """write_vti and write_pvd escape what XML reserves: an array named 'p & "q" <0>' in a file
    named 'a&b <1>.vti' in a series is read by ParaView with those names."""
    name = 'p & "q" <0>'
    values = np.random.default_rng(2).random((6, 6, 6))
    step = write_vti(tmp_path / "a&b <1>.vti", {name: values})
    series = write_pvd(tmp_path / "s&t.pvd", [(0.0, step), (1.5, step)])
    view = ParaViewSession(series, size=(160, 120))
    try:
        view.wait_ready(120)
        assert view.fields == [name] and view.field == name
        assert view.times == [0.0, 1.5]
    finally:
        view.stop()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": (640,)}, r"size= must be \(width, height\) in pixels, got \(640,\)"),
        ({"size": "640x480"}, r"size= must be \(width, height\) in pixels, got '640x480'"),
        ({"size": (0, 480)}, r"size= must be \(width, height\) in pixels, got \(0, 480\)"),
        ({"spacing": (1, 1)}, r"spacing= must be three numbers \(x, y, z\), got \(1, 1\)"),
        ({"origin": "0,0,0"}, r"origin= must be three numbers \(x, y, z\), got '0,0,0'"),
        ({"ranks": "2"}, r"ranks= must be an int \(or None\), got '2'"),
        ({"ranks": 0}, r"ranks must be 1 or more, got 0"),
        (
            {"ranks": 2, "slurm": {"nodes": 2}},
            r"ParaView's ranks run on pvpython's node .*slurm=\{'nodes': 2\} is not supported",
        ),
    ],
)
def test_wrong_arguments_are_named(data: Path, kwargs: dict[str, object], message: str) -> None:
    """Mistyped arguments are refused at once, naming the argument (not a bare ValueError from
    unpacking, nor a pvpython that fails later)."""
    with pytest.raises(NbvizError, match=f"^nbviz: {message}"):
        ParaViewSession(data, start=False, **kwargs)  # type: ignore[arg-type]


def test_missing_and_unreadable_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: Path
) -> None:
    with pytest.raises(DataError, match="does not exist"):
        ParaViewSession(tmp_path / "nope.pvd")
    with pytest.raises(DataError, match="no file matches"):
        ParaViewSession(str(tmp_path / "step*.vti"))
    monkeypatch.chdir(tmp_path)  # a relative path: the error says where it was looked for
    with pytest.raises(DataError, match=rf"run\.vtu does not exist \(looked in {tmp_path}\)"):
        ParaViewSession("run.vtu")
    # a directory, a glob over several formats, an empty file: said before pvpython starts
    with pytest.raises(DataError, match=r"is a directory; give a file in it.*glob"):
        ParaViewSession(data.parent)
    (tmp_path / "a.vtu").write_text("x")
    (tmp_path / "b.vtk").write_text("x")
    with pytest.raises(DataError, match=r"files of 2 kinds \(\.vtk, \.vtu\)"):
        ParaViewSession(str(tmp_path / "*"))
    with pytest.raises(DataError, match=r"the list has files of 2 kinds"):
        ParaViewSession([tmp_path / "a.vtu", tmp_path / "b.vtk"])
    steps = [(0.0, data.parent / "step0.vti"), (1.0, tmp_path / "gone" / "step1.vti")]
    with pytest.raises(DataError, match=r"refers to gone/step1\.vti, which does not exist"):
        ParaViewSession(write_pvd(tmp_path / "holes.pvd", steps))
    (tmp_path / "notxml.pvd").write_text("not XML")
    with pytest.raises(DataError, match=r"notxml\.pvd is not a valid VTK XML file"):
        ParaViewSession(tmp_path / "notxml.pvd")
    (tmp_path / "empty.vtu").write_text("")
    with pytest.raises(DataError, match=r"empty\.vtu is empty"):
        ParaViewSession(tmp_path / "empty.vtu")
    with monkeypatch.context() as patched:  # (the tests run as root, who reads any file)
        access = os.access
        patched.setattr(os, "access", lambda p, mode: os.fspath(p) != str(data) and access(p, mode))
        with pytest.raises(DataError, match=r"run\.pvd cannot be read \(permission denied\)"):
            ParaViewSession(data)
    junk = tmp_path / "junk.vti"
    junk.write_text("this is not VTK")
    session = ParaViewSession(junk)
    with pytest.raises(DataError, match=r"could not read .*junk\.vti: no \.vti reader accepts it"):
        session.wait_ready(120)
    assert session.status == "crashed" and session.pid is not None
    assert not psutil.pid_exists(session.pid)
    unknown = tmp_path / "data.xyz123"
    unknown.write_text("1 2 3")
    session = ParaViewSession(unknown)
    with pytest.raises(DataError, match=r"no reader for .*unsupported format \.xyz123.*\.vtu"):
        session.wait_ready(120)


def test_unreadable_data_is_said_in_the_frame_too(tmp_path: Path) -> None:
    """Data ParaView cannot read: the cell's frame (status, message, error) says what
    wait_ready() raises, the data's problem first, not "pvpython exited"; the log lines it
    shows carry no terminal colour codes (ParaView's own log has them)."""
    surface = tmp_path / "cut.vtp"
    from paraview_data import write_surface

    write_surface(surface, nu=40, nv=20)
    surface.write_bytes(surface.read_bytes()[: surface.stat().st_size // 2])  # cut off
    script = tmp_path / "script.py"
    script.write_text("print('hello')\n")
    table = tmp_path / "table.csv"
    table.write_text("a,b,c\n1,2,3\n4,5,6\n")
    cases = [
        (surface, r"cut\.vtp holds no data ParaView could read"),
        (script, r"script\.py"),
        (table, r"table\.csv is a table; .*its columns: a, b, c"),
    ]
    for path, message in cases:
        session = ParaViewSession(path, size=(200, 150))
        try:
            with pytest.raises(DataError, match=f"^nbviz: .*{message}") as raised:
                session.wait_ready(120)
            headline = raised.value.message
            assert session.status == "crashed"
            assert session.message == headline, path
            assert session.error.splitlines()[0] == headline, path
            assert "pvpython exited" not in session.message
            assert "\x1b" not in session.error and "\x1b" not in session.logs(), path
            if path == surface:  # ParaView's complaints (coloured in its log) are shown
                assert "vtkXMLPolyDataReader" in session.error and "ERR|" in session.error
        finally:
            session.stop()


def test_missing_pvpython(monkeypatch: pytest.MonkeyPatch, data: Path) -> None:
    monkeypatch.setenv("NBVIZ_PVPYTHON", "/nonexistent/pvpython")
    with pytest.raises(ProgramNotFoundError, match="NBVIZ_PVPYTHON"):
        ParaViewSession(data)
    monkeypatch.delenv("NBVIZ_PVPYTHON")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ProgramNotFoundError, match="apt-get install paraview"):
        ParaViewSession(data)


def test_missing_xvfb(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data: Path) -> None:
    """ParaView installed, Xvfb not: said before anything starts, with what to install (not
    the launcher's traceback after pvpython's start); with NBVIZ_PARAVIEW_DISPLAY no Xvfb is
    needed."""
    pvpython = shutil.which("pvpython")
    assert pvpython is not None
    bin_dir = tmp_path / "bin"  # /usr/bin without Xvfb
    bin_dir.mkdir()
    for entry in Path("/usr/bin").iterdir():
        if entry.name != "Xvfb":
            (bin_dir / entry.name).symlink_to(entry)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("NBVIZ_PVPYTHON", pvpython)
    monkeypatch.delenv("NBVIZ_PARAVIEW_DISPLAY", raising=False)
    with pytest.raises(ProgramNotFoundError, match=r"^nbviz: Xvfb is not installed \(apt-get"):
        ParaViewSession(data)
    monkeypatch.setenv("NBVIZ_PARAVIEW_DISPLAY", ":99")
    view = ParaViewSession(data, start=False)
    assert "--xvfb" not in view._spec.command


# ------------------------------------------------------------ through a real Jupyter server
@pytest.mark.jupyter
def test_view_through_the_route_and_kernel_death(data: Path, jupyter_server: JupyterServer) -> None:
    kernel = Kernel(jupyter_server)
    try:
        out = kernel.run(
            "import json\nfrom nbviz import ParaViewSession\n"
            f"view = ParaViewSession({str(data)!r}, size=(300, 200))\n"
            "view.wait_ready(120)\n"
            "print(json.dumps({'url': view.url, 'route': view.route, 'pid': view.pid}))"
        )
        info = json.loads(out.strip().splitlines()[-1])
        assert info["route"] == "nbviz" and info["url"].startswith("/user/alice/nbviz/")
        # the trame page and its websocket, through Jupyter's login
        status, body, _ = jupyter_server.get(info["url"] + "index.html")
        assert status == 200 and b"trame" in body
        offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
        ws = ws_connect(
            jupyter_server,
            info["url"] + "ws",
            header=[f"Authorization: token {jupyter_server.token}", offer],
        )
        ws.close()
        assert jupyter_server.get(info["url"] + "index.html", auth=False)[0] in (302, 403)
        procs = tree(info["pid"])
        assert {"Xvfb"} <= {p.name() for p in procs}
        os.kill(kernel.pid, signal.SIGKILL)
        wait_until(lambda: not any(running(p) for p in procs), timeout=10, what="pvpython, Xvfb")
    finally:
        kernel.close()


@pytest.mark.jupyter
def test_without_our_route_trame_admits_only_the_session_secret(
    data: Path, server_without_nbviz: JupyterServer
) -> None:
    """No nbviz extension: trame listens on 127.0.0.1 behind jupyter-server-proxy, and only a
    browser holding the session secret (handed over in the first URL, then a cookie) gets in."""
    kernel = Kernel(server_without_nbviz)
    try:
        out = kernel.run(
            "import json\nfrom nbviz import ParaViewSession\n"
            f"view = ParaViewSession({str(data)!r}, size=(300, 200))\n"
            "view.wait_ready(120)\n"
            "print(json.dumps({'url': view.url, 'route': view.route, 'path': view.path,"
            " 'port': view.endpoint.port, 'field': view.field}))"
        )
        info = json.loads(out.strip().splitlines()[-1])
        assert info["route"] == "proxy" and info["url"] == f"/user/alice/proxy/{info['port']}/"
        assert info["path"].startswith("/?nbviz_secret=") and info["field"]
        # another local user, straight to the port or through the proxy: refused
        direct = f"http://127.0.0.1:{info['port']}/"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(direct + "index.html", timeout=10)
        assert refused.value.code == 403
        refused.value.close()
        assert server_without_nbviz.get(info["url"] + "index.html")[0] == 403
        with pytest.raises(websocket.WebSocketBadStatusException):
            websocket.create_connection(f"ws://127.0.0.1:{info['port']}/ws", timeout=10)
        # the page: the secret becomes a cookie scoped to the app's path, then page and websocket
        status, _, headers = server_without_nbviz.get(info["url"] + info["path"].lstrip("/"))
        assert status == 302 and headers["Location"] == "./"
        cookie = headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "Path=" not in cookie
        browser = {"Cookie": cookie.split(";", 1)[0]}
        status, body, _ = server_without_nbviz.get(info["url"] + "index.html", headers=browser)
        assert status == 200 and b"trame" in body
        ws = ws_connect(
            server_without_nbviz,
            info["url"] + "ws",
            header=[
                f"Authorization: token {server_without_nbviz.token}",
                f"Cookie: {browser['Cookie']}",
            ],
        )
        ws.close()
        # the kernel API works as on the Unix socket
        shot = kernel.run("print(len(view.screenshot().data) > 1000)")
        assert shot.strip().endswith("True")
    finally:
        kernel.run("view.stop()")
        kernel.close()


# ------------------------------------------------------------ data on MPI-parallel pvserver ranks
def listening_ports(pid: int) -> list[tuple[str, int]]:
    """TCP listeners (address, port) in the network namespace of ``pid``, as it sees them."""
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A":  # LISTEN
                address, port = local.split(":")
                found.append((address, int(port, 16)))
    return found


def changed(a: Screenshot, b: Screenshot) -> float:
    """The fraction of pixels that differ visibly between two pictures of the same size."""
    first, second = (np.asarray(Image.open(io.BytesIO(s.data)).convert("RGB")) for s in (a, b))
    return float((np.abs(first.astype(int) - second.astype(int)).sum(axis=2) > 30).mean())


@pytest.mark.skipif(
    not shutil.which("mpiexec"), reason="needs mpiexec (apt-get install mpi-default-bin)"
)
def test_two_mpi_ranks(data: Path, view: ParaViewSession) -> None:
    """Two ranks each read and render half the data; the composited picture is the one a
    single process makes; mpiexec's listeners are unreachable from the host."""
    session = ParaViewSession(data, ranks=2, field="temperature", size=(300, 200))
    try:
        session.wait_ready(120)
        assert session.partitions() == [0, 1]  # each rank holds a piece of the data
        assert session.request("list")["ranks"] == 2
        points = session.request("pieces")  # points per rank, counted on the ranks
        assert len(points) == 2 and all(0 < p < 24**3 for p in points), points
        assert sum(points) >= 24**3  # halves of the 24^3 grid (they share a plane)
        procs = tree(session.pid)  # type: ignore[arg-type]
        names = sorted(p.name() for p in procs)
        assert names.count("pvserver") == 2 and "pvpython" in names, names

        # the same pictures as one process (ranks=None) makes of the same data and view
        for other in (session, view):
            other.field, other.time, other.colormap = "temperature", 2, "Cool to Warm"
            other.color_range = "auto"
            other.reset_camera()
        full = [session.screenshot(300, 200), view.screenshot(300, 200)]
        cut = [f.slice(normal=(0, 0, 1)) for f in (session, view)]
        sliced = [session.screenshot(300, 200), view.screenshot(300, 200)]
        for f in cut:
            f.remove()
        surfaces = [f.contour(values=[0.3]) for f in (session, view)]
        contoured = [session.screenshot(300, 200), view.screenshot(300, 200)]
        # rendered by the ranks and composited, not by pvpython from their geometry
        assert session.request("list")["remote_rendering"] is True
        assert view.request("list")["remote_rendering"] is False
        for f in surfaces:
            f.remove()
        assert len(Image.open(io.BytesIO(full[0].data)).getcolors(100_000) or []) > 20
        for pair in (full, sliced, contoured):
            assert changed(*pair) < 0.01, changed(*pair)
        assert changed(full[0], sliced[0]) > 0.05  # the filters changed the picture
        assert changed(sliced[0], contoured[0]) > 0.05

        # mpiexec listens on every interface, but in a network namespace of the session's own
        host_net = os.readlink("/proc/self/ns/net")
        assert all(os.readlink(f"/proc/{p.pid}/ns/net") != host_net for p in procs)
        interfaces = [
            line.split(":")[0].strip()
            for line in Path(f"/proc/{session.pid}/net/dev").read_text().splitlines()[2:]
        ]
        assert interfaces == ["lo"]
        mpiexec = next(p for p in procs if p.name() == "mpiexec")
        assert listening_ports(mpiexec.pid)  # there, it does listen ...
        seen_from_host = [
            c for p in procs for c in p.net_connections("inet") if c.status == "LISTEN"
        ]
        assert seen_from_host == []  # ... but nothing of the session listens on the host
    finally:
        session.stop()
    wait_until(
        lambda: not any(running(p) for p in procs), timeout=10, what="mpiexec and its ranks to end"
    )


@pytest.mark.skipif(
    not shutil.which("mpiexec"), reason="needs mpiexec (apt-get install mpi-default-bin)"
)
def test_a_file_in_one_piece_is_spread_over_the_ranks(
    tmp_path: Path, view: ParaViewSession
) -> None:
    """A .vtu in one piece is read by rank 0 alone, then shared: both ranks hold points and
    the picture is the one a single process makes of the same (image) data."""
    session = ParaViewSession(heat_grid(tmp_path), ranks=2, field="temperature", size=(300, 200))
    try:
        session.wait_ready(120)
        points = session.request("pieces")
        assert session.partitions() == [0, 1] and sum(points) >= 24**3, points
        shots = []
        for other in (session, view):
            other.field, other.time, other.colormap = "temperature", 0, "Cool to Warm"
            other.color_range = (0, 1)
            other.reset_camera()
            shots.append(other.screenshot(300, 200))
        assert changed(*shots) < 0.01, changed(*shots)
    finally:
        session.stop()


def test_ranks_need_files(data: Path) -> None:
    with pytest.raises(DataError, match="write_vti"):
        ParaViewSession(np.zeros((4, 4, 4)), ranks=2)
    with pytest.raises(DataError, match="ranks must be 1 or more"):
        ParaViewSession(data, ranks=0)
