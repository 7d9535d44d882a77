"""nbviz's ParaView app: runs *inside pvpython*, serves a trame UI and a control channel.

    pvpython --force-offscreen-rendering _app.py --socket S --control C --data FILE [FILE ...]

- The browser reaches the trame UI (a live ``VtkRemoteView`` with a field menu and a time
  slider) over the Unix socket ``S`` (0600), through nbviz's Jupyter route.
- The kernel talks to ``C`` (Unix socket, 0600): newline-delimited JSON messages
  ``{"op": "request", "id": n, "name": ..., "args": {...}}`` answered by
  ``{"op": "answer", "id": n, "ok": true, "value": ...}`` (or ``"ok": false, "error": ...``),
  and unsolicited ``{"op": "changed", "values": {...}}`` when the user changes the view in the
  browser (camera, field, time step).

This file imports nothing from nbviz (pvpython has its own Python); keep it standalone.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import math
import os
import runpy
import shlex
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

# ParaView parses sys.argv on import: parse ours first, then hide them.
parser = argparse.ArgumentParser()
where = parser.add_mutually_exclusive_group(required=True)
where.add_argument("--socket", help="serve the page on this Unix socket (nbviz's route)")
where.add_argument("--port", type=int, help="serve on 127.0.0.1:PORT; needs NBVIZ_SECRET")
parser.add_argument("--control", required=True)
parser.add_argument("--data", nargs="+", required=True)
parser.add_argument("--title", default="ParaView")
parser.add_argument("--width", type=int, default=1280)
parser.add_argument("--height", type=int, default=800)
parser.add_argument("--spacing", type=float, nargs=3, default=(1.0, 1.0, 1.0))
parser.add_argument("--origin", type=float, nargs=3, default=(0.0, 0.0, 0.0))
parser.add_argument("--array-name", default="values")
parser.add_argument("--ranks", type=int, default=0, help="run the data on an MPI pvserver")
parser.add_argument("--connect-id", type=int, default=0)
parser.add_argument("--pvserver", default="pvserver")
parser.add_argument("--launcher", default="mpiexec -n {ranks}", help="starts the ranks")
parser.add_argument("--case-type", default="auto", choices=["auto", "reconstructed", "decomposed"])
parser.add_argument("--regions", nargs="+", help="the parts of an OpenFOAM case to show")
parser.add_argument("--follow", action="store_true", help="pick up time steps as they are written")
parser.add_argument("--follow-interval", type=float, default=1.0, help="seconds between looks")
parser.add_argument("--settle", type=float, default=0.5, help="a new file's quiet time")
parser.add_argument("--glob", help="the pattern the --data files matched (new matches are steps)")
parser.add_argument("--interactive-quality", type=int, default=60, help="reduced frames: JPEG")
parser.add_argument("--interactive-ratio", type=float, default=0.5, help="reduced frames' scale")
ARGS = parser.parse_args()
sys.argv = sys.argv[:1]


# (_pvnumpy.py is beside this file, which pvpython runs by path: its directory is sys.path[0])
from _pvframes import FRAME_SETTINGS, KEEPS_GEOMETRY, Frames  # noqa: E402
from _pvnumpy import import_numpy_of_vtk  # noqa: E402

NUMPY = import_numpy_of_vtk()

from paraview import servermanager, simple  # noqa: E402
from trame.app import get_server  # noqa: E402
from trame.ui.vuetify3 import SinglePageLayout  # noqa: E402
from trame.widgets import html  # noqa: E402
from trame.widgets import paraview as pv_widgets  # noqa: E402
from trame.widgets import vuetify3 as v3  # noqa: E402

REPRESENTATIONS = ["Surface", "Surface With Edges", "Wireframe", "Points", "Volume", "Outline"]
CAMERA_DEBOUNCE = 0.15


class DerivedFilter(NamedTuple):
    """One of ParaView's filters for derived fields, and the names of its properties."""

    paraview: str  # in paraview.simple
    engine: str  # in messages
    expression: str
    result: str
    association: str


#: ``calculator``: ParaView's Calculator (its own expression language); any other kind
#: (``python_calculator``): the Python Calculator (numpy).
DERIVED_FILTERS = {
    "calculator": DerivedFilter(
        "Calculator", "Calculator", "Function", "ResultArrayName", "AttributeType"
    ),
    "python": DerivedFilter(
        "PythonCalculator", "Python Calculator", "Expression", "ArrayName", "ArrayAssociation"
    ),
}


def derived_filter(kind: str) -> DerivedFilter:
    return DERIVED_FILTERS["calculator" if kind == "calculator" else "python"]


class Fail(Exception):
    """An error the kernel shows to the user as it is."""


def log(*parts: object) -> None:
    print("nbviz-paraview:", *parts, flush=True)


# ------------------------------------------------------------------ the pipeline
def open_array(path: str) -> Any:
    """A numpy array saved by the kernel, as image data (x varies fastest, like VTK)."""
    import numpy as np
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData

    array = np.load(path)
    if array.ndim == 2:
        array = array[:, :, None]
    image = vtkImageData()
    image.SetDimensions(*array.shape)
    image.SetSpacing(*ARGS.spacing)
    image.SetOrigin(*ARGS.origin)
    values = numpy_to_vtk(np.ascontiguousarray(array.ravel(order="F")), deep=True)
    values.SetName(ARGS.array_name)
    image.GetPointData().SetScalars(values)
    producer = simple.TrivialProducer()
    producer.GetClientSideObject().SetOutput(image)
    producer.UpdatePipeline()
    return producer


def is_openfoam(path: str) -> bool:
    """The kernel's rule (``nbviz.paraview.is_openfoam``): a .foam/.OpenFOAM file, or a case's
    system/controlDict (ParaView's OpenFOAM reader takes it, its file dialog does not)."""
    name = os.path.basename(path)
    return name.lower().endswith((".foam", ".openfoam")) or name == "controlDict"


CASE_TYPES = {"reconstructed": "Reconstructed Case", "decomposed": "Decomposed Case"}
opened_case_type = ""  # how the OpenFOAM case was read: "reconstructed" or "decomposed"


def open_openfoam(path: str) -> Any:
    """An OpenFOAM case with ParaView's reader. ``--case-type auto``: the decomposed case
    (``processor*`` directories) when it has more time steps than the reconstructed one, i.e.
    after ``decomposePar`` and a parallel run that was not (yet) reconstructed, or when neither
    has a step after 0 yet (decomposed, the parallel run has yet to write)."""
    reader = simple.OpenFOAMReader(FileName=path)
    case = ARGS.case_type
    if case == "auto":
        case = "reconstructed"
        case_dir = os.path.dirname(path)
        if os.path.basename(path) == "controlDict":
            case_dir = os.path.dirname(case_dir)
        if os.path.isdir(os.path.join(case_dir, "processor0")):
            steps = {}
            for name in ("decomposed", "reconstructed"):
                reader.CaseType = CASE_TYPES[name]
                reader.UpdatePipelineInformation()
                steps[name] = [t for t in reader_times(reader) if t > 0]
            # more steps in the pieces, or none written yet anywhere (a parallel run that
            # is about to write them there)
            if len(steps["decomposed"]) > len(steps["reconstructed"]) or not any(steps.values()):
                case = "decomposed"
    global opened_case_type
    opened_case_type = case
    reader.CaseType = CASE_TYPES[case]
    reader.UpdatePipelineInformation()
    if ARGS.regions:
        set_regions(reader, ARGS.regions)
    log("OpenFOAM case:", case, "regions:", ", ".join(reader.MeshRegions))
    return reader


def set_regions(reader: Any, names: list[str]) -> list[str]:
    """Show these regions of an OpenFOAM case; a bare patch name means ``patch/<name>``."""
    available = list(reader.GetProperty("MeshRegions").GetAvailable())
    chosen = []
    for name in names:
        if name not in available and f"patch/{name}" in available:
            name = f"patch/{name}"
        if name not in available:
            raise Fail(f"no region {name!r}; regions: {', '.join(available)}")
        chosen.append(name)
    if not chosen:
        raise Fail(f"regions needs at least one of: {', '.join(available)}")
    reader.MeshRegions = chosen
    return chosen


def openfoam_reader(source: Any) -> Any:
    return source if source.GetXMLName() == "OpenFOAMReader" else None


def open_data(paths: list[str]) -> Any:
    for path in paths:
        if not os.path.exists(path):
            raise Fail(f"{path} does not exist")
    if len(paths) == 1 and paths[0].endswith(".npy"):
        return open_array(paths[0])
    if len(paths) == 1 and is_openfoam(paths[0]):
        reader = open_openfoam(paths[0])
        times = list(reader.TimestepValues or [])
        reader.UpdatePipeline(times[0] if times else 0.0)
        return reader
    try:
        reader = simple.OpenDataFile(paths if len(paths) > 1 else paths[0])
    except RuntimeError:  # "File not readable. No reader found for ..."
        reader = None
    if reader is None:
        raise Fail(why_unreadable(paths[0]))
    try:
        reader.UpdatePipeline()
    except Exception as exc:  # a reader that cannot parse the file
        raise Fail(f"ParaView could not read {paths[0]}: {exc}") from None
    info = reader.GetDataInformation()
    if info.GetDataSetTypeAsString() == "vtkTable":
        return table_to_points(reader, paths[0])
    if info.GetNumberOfPoints() == 0 and info.GetNumberOfCells() == 0:
        raise Fail(f"{paths[0]} holds no data ParaView could read (unsupported or broken file)")
    return reader


#: Formats named in the error for a file ParaView has no reader for (it reads many more).
COMMON_FORMATS = ".pvd .vtu .vti .vtk .vtp .vts .vtr .vtm .pvtu .pvti .xdmf .exo .e .nc .h5 "
COMMON_FORMATS += ".csv .stl .ply .obj"


def why_unreadable(path: str) -> str:
    """The error for a file no reader accepted: empty, broken, or a format ParaView lacks."""
    import re

    if os.path.getsize(path) == 0:
        return f"{path} is empty"
    name = os.path.basename(path).lower()
    factory = servermanager.vtkSMProxyManager.GetProxyManager().GetReaderFactory()
    types = factory.GetSupportedFileTypes(servermanager.ActiveConnection.Session)
    patterns = {p.lower() for p in re.findall(r"[^\s()]+", types) if "*" in p}
    known = any(fnmatch.fnmatch(name, p) for p in patterns if p not in ("*", "*.*"))
    ext = os.path.splitext(name)[1] or name
    if known:
        return (
            f"ParaView could not read {path}: no {ext} reader accepts it "
            "(a broken file, or another format under that name)"
        )
    return (
        f"ParaView has no reader for {path} (unsupported format {ext}); it reads "
        f"{COMMON_FORMATS.replace(' ', ', ')} and many more"
    )


#: Column names taken as point coordinates of a table (CSV and the like), in order of preference.
COORDINATE_COLUMNS = [("x", "y", "z"), ("points:0", "points:1", "points:2")]


def table_to_points(reader: Any, path: str) -> Any:
    """A table (e.g. CSV) with coordinate columns, as a point cloud; a clear error otherwise."""
    from paraview.vtk import vtkDataObject

    def names() -> list[str]:
        info = reader.GetDataInformation().DataInformation
        rows = info.GetAttributeInformation(vtkDataObject.ROW)
        return [rows.GetArrayInformation(i).GetName() for i in range(rows.GetNumberOfArrays())]

    columns = names()
    if len(columns) == 1 and hasattr(reader, "FieldDelimiterCharacters"):
        # one column: the file is separated by something else than commas (";", tabs, spaces)
        found = next((c for c in ";\t|" if c in columns[0]), " " if " " in columns[0] else "")
        if found:
            reader.FieldDelimiterCharacters = found
            reader.MergeConsecutiveDelimiters = int(found == " ")
            reader.UpdatePipeline()
            columns = names()
    lower: dict[str, str] = {}
    for name in columns:  # "x", "X", or with a unit: "x [m]", "x (mm)"
        bare = name.split("[")[0].split("(")[0].strip().lower() or name.lower()
        lower.setdefault(bare, name)
    for names in COORDINATE_COLUMNS:
        if names[0] in lower and names[1] in lower:
            x, y = lower[names[0]], lower[names[1]]
            z = lower.get(names[2])
            points = simple.TableToPoints(
                Input=reader, XColumn=x, YColumn=y, ZColumn=z or x, a2DPoints=int(z is None)
            )
            points.UpdatePipeline()
            return points
    raise Fail(
        f"{path} is a table; ParaViewSession shows a table as points when it has columns "
        f"x, y (and z), any case, units in brackets allowed; its columns: "
        f"{', '.join(columns[:12]) or 'none'}"
    )


#: Arrays that label points or cells (ids, blocks) rather than measure something: not the
#: first choice of colouring (Exodus' ids, STL's solid labels, OBJ's groups, ...).
LABEL_ARRAYS = {
    "ids",
    "object_id",
    "objectid",
    "globalnodeid",
    "globalelementid",
    "pedigreenodeid",
    "pedigreeelementid",
    "groupids",
    "stlsolidlabeling",
    "processid",
    "blockid",
}
#: Arrays that are geometry, not data: never the first choice.
GEOMETRY_ARRAYS = {"normals", "tcoords", "texture coordinates", "texturecoordinates"}


def default_field(source: Any, fields: list[str]) -> str:
    """The array to colour by at first: one that varies, preferably a scalar measurement
    present on all of the data (not normals, texture coordinates, ids or a constant label);
    "" (one plain colour) when there is none."""
    info = source.GetDataInformation().DataInformation
    ranked = []
    for index, name in enumerate(fields):
        array = info.GetPointDataInformation().GetArrayInformation(name)
        if array is None:
            array = info.GetCellDataInformation().GetArrayInformation(name)
        if array is None or name.lower() in GEOMETRY_ARRAYS:
            continue
        low, high = array.GetComponentRange(-1 if array.GetNumberOfComponents() > 1 else 0)
        if not low < high:  # one value everywhere: a single colour and a meaningless scale
            continue
        partial = bool(array.GetIsPartial())  # on some blocks of a multiblock data set only
        ranked.append(
            (
                array.GetNumberOfComponents() != 1,
                name.lower() in LABEL_ARRAYS,
                partial,
                -array.GetNumberOfTuples() if partial else 0,
                index,
                name,
            )
        )
    return min(ranked)[-1] if ranked else ""


def process_ids(data: Any) -> list[int]:
    """The values of the ProcessId point arrays in ``data``, a data set or multiblock data."""
    if data is None:
        return []
    if data.IsA("vtkCompositeDataSet"):
        found = []
        blocks = data.NewIterator()
        blocks.InitTraversal()
        while not blocks.IsDoneWithTraversal():
            found += process_ids(blocks.GetCurrentDataObject())
            blocks.GoToNextItem()
        return found
    array = data.GetPointData().GetArray("ProcessId") if data.IsA("vtkDataSet") else None
    return [int(array.GetValue(i)) for i in range(array.GetNumberOfTuples())] if array else []


def block_paths(source: Any) -> list[str]:
    """The blocks of a multiblock data set as paths (``internal``, ``boundary``,
    ``boundary/movingWall``); [] for other data."""
    hierarchy = source.GetDataInformation().DataInformation.GetHierarchy()
    if hierarchy is None:
        return []

    def walk(node: int, prefix: str) -> list[str]:
        found = []
        for index in range(hierarchy.GetNumberOfChildren(node)):
            child = hierarchy.GetChild(node, index)
            path = f"{prefix}{hierarchy.GetNodeName(child)}"
            found += [path, *walk(child, path + "/")]
        return found

    return walk(0, "")


def reader_times(reader: Any) -> list[float]:
    values = getattr(reader, "TimestepValues", None)
    if values is None:
        return []
    if isinstance(values, (int, float)):  # (one step: ParaView gives a number)
        return [float(values)]
    return [float(t) for t in values]


# ------------------------------------------------------------------ following a running solver
#: How files of a format end once written (a VTK XML file; an OpenFOAM field's end divider).
VTK_XML = (".vtu", ".vti", ".vtp", ".vts", ".vtr", ".vtm", ".pvd", ".pvtu", ".pvti", ".pvtp")
VTK_XML += (".pvts", ".pvtr", ".vtk.xml")
XML_END = b"</VTKFile>"
FOAM_END = b"// ****"


def tail(path: str, size: int = 256) -> bytes:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - size))
        return f.read()


def complete(path: str, now: float, depth: int = 0) -> bool:
    """The rule for a file a solver may still be writing: it is complete once it has not been
    modified for ``--settle`` seconds and ends as its format ends (a VTK XML file with
    ``</VTKFile>``, an OpenFOAM field with OpenFOAM's end divider); a VTK index file
    (``.vtm``, ``.pvd``, ``.pvtu``, ...) once the files it names are complete too."""
    try:
        stat = os.stat(path)
        if now - stat.st_mtime < ARGS.settle:
            return False
        lower = path.lower()
        if lower.endswith(VTK_XML):
            if XML_END not in tail(path):
                return False
            if lower.endswith((".vtm", ".pvd", ".pvtu", ".pvti", ".pvtp", ".pvts", ".pvtr")):
                return (
                    all(complete(p, now, depth + 1) for p in parts_of(path)) if depth < 4 else True
                )
        elif lower.endswith(".series"):
            return all(complete(p, now, depth + 1) for p in parts_of(path))
        elif is_foam_field(path) and FOAM_END not in tail(path):
            return False
        return True
    except (OSError, ValueError):
        return False


def is_foam_field(path: str) -> bool:
    """A file in an OpenFOAM time directory (``<case>/<time>/U``), not compressed."""
    parent = os.path.basename(os.path.dirname(path))
    return is_time_name(parent) and not path.endswith(".gz")


def is_time_name(name: str) -> bool:
    try:
        float(name)
    except ValueError:
        return False
    return True


def parts_of(path: str) -> list[str]:
    """The files a VTK index file (XML) or a ``.series`` file (JSON) names, as paths.
    Raises ValueError while it cannot be parsed (still being written)."""
    import xml.etree.ElementTree as ET

    where = os.path.dirname(path)
    if path.lower().endswith(".series"):
        with open(path, "rb") as f:
            names = [entry["name"] for entry in json.load(f)["files"]]
    else:
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as exc:
            raise ValueError(str(exc)) from None
        names = [e.get("file") or e.get("Source") or "" for e in root.iter()]
        names = [n for n in names if n and root.tag == "VTKFile"]
    return [os.path.join(where, n) for n in names]


def natural(path: str) -> list[Any]:
    import re

    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


class Follower:
    """Adds the time steps a running solver writes, once they are complete (see ``complete``).

    What it looks at, by the data's kind, without reading any step already known:
    - an OpenFOAM case: new time directories (in each ``processor*`` directory of a decomposed
      case); one is complete when it holds every field the step before it had and each is
      complete; the reader then rescans (``ReloadFiles``), and only the complete steps are
      offered (the reader lists a half-written directory too);
    - a glob (``--glob``): new matches, in number order, each complete; the reader gets the
      longer list of files;
    - a ``.pvd`` or ``.series`` file: rewritten (size or time changed), parsable, its new parts
      complete; the reader re-reads it (``ReloadFiles``).
    """

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.reader = scene.reader
        self.kind = ""
        self.files: list[str] = list(scene.paths)
        self.index_stat: tuple[int, int] | None = None
        self.reported = ""  # the last error met while looking (said once in the log)
        self.last_complete = max(scene.times) if scene.times else None
        path = ARGS.data[0]
        if openfoam_reader(self.reader) is not None:
            self.kind = "foam"
            case = os.path.dirname(path)
            self.case = os.path.dirname(case) if os.path.basename(path) == "controlDict" else case
            if ARGS.follow:  # the run may be writing a step right now: offer complete ones only
                self.last_complete = None
                self.check_foam()
        elif ARGS.glob:
            self.kind = "glob"
        elif len(ARGS.data) == 1 and path.lower().endswith((".pvd", ".series")):
            self.kind = "index"
            self.index_stat = self.stat(path)
            self.files = parts_of(path)

    @staticmethod
    def stat(path: str) -> tuple[int, int] | None:
        try:
            info = os.stat(path)
        except OSError:
            return None
        return info.st_size, info.st_mtime_ns

    def check(self) -> int:
        """Add the complete new steps; returns how many were added. (A new step may replace
        one: ParaView skips an OpenFOAM case's 0/ once there are other steps.)"""
        before = set(self.scene.times)
        try:
            if self.kind == "foam":
                self.check_foam()
            elif self.kind == "glob":
                self.check_glob()
            elif self.kind == "index":
                self.check_index()
        except OSError as exc:  # the case moved or went away: nothing to add (look again)
            if self.reported != str(exc):
                log("following: cannot look for new steps:", exc)
                self.reported = str(exc)
            return 0
        return len([t for t in self.scene.times if t not in before])

    # OpenFOAM
    def time_dirs(self) -> list[str]:
        """The directories time steps are written to: the case's, or each processor's."""
        if opened_case_type == "decomposed":
            found = [d for d in os.listdir(self.case) if d.startswith("processor")]
            return [os.path.join(self.case, d) for d in found if d[9:].isdigit()]
        return [self.case]

    def check_foam(self) -> None:
        now = time.time()
        roots = self.time_dirs()
        if not roots:
            return
        names: dict[float, str] = {}
        for name in os.listdir(roots[0]):
            if is_time_name(name) and os.path.isdir(os.path.join(roots[0], name)):
                names[float(name)] = name
        newer = sorted(t for t in names if self.last_complete is None or t > self.last_complete)
        if not newer:
            return
        older = sorted(t for t in names if t not in newer)
        done = None
        for value in newer:
            if not all(self.step_complete(root, names, older, value, now) for root in roots):
                break
            done = value
            older.append(value)
        if done is None:
            return
        simple.ReloadFiles(self.reader)
        self.reader.UpdatePipelineInformation()
        self.last_complete = done
        self.offer([t for t in reader_times(self.reader) if t <= done + 1e-12])

    @staticmethod
    def step_complete(
        root: str, names: dict[float, str], older: list[float], value: float, now: float
    ) -> bool:
        step = os.path.join(root, names[value])
        try:
            present = {n for n in os.listdir(step) if os.path.isfile(os.path.join(step, n))}
        except OSError:
            return False
        # every field of the step before, if the solver wrote that one too (the initial
        # conditions, the first directory, may hold other files: U.orig, ...)
        if len(older) >= 2:
            previous = os.path.join(root, names[older[-1]])
            try:
                wanted = {
                    n for n in os.listdir(previous) if os.path.isfile(os.path.join(previous, n))
                }
            except OSError:
                wanted = set()
            if not wanted <= present:
                return False
        if not present:
            return False
        return all(complete(os.path.join(step, n), now) for n in present)

    # a glob of files
    def check_glob(self) -> None:
        import glob

        now = time.time()
        known = set(self.files)
        matches = sorted(
            (m for m in glob.glob(ARGS.glob) if m not in known and not os.path.isdir(m)),
            key=natural,
        )
        added = []
        for path in matches:
            if not complete(path, now):
                break
            added.append(path)
        if not added:
            return
        self.files = sorted([*self.files, *added], key=natural)
        self.reader.FileName = self.files
        self.reader.UpdatePipelineInformation()
        self.offer(reader_times(self.reader))

    # a .pvd or .series file
    def check_index(self) -> None:
        path = ARGS.data[0]
        current = self.stat(path)
        if current is None or current == self.index_stat:
            return
        now = time.time()
        try:  # the index itself: quiet, whole, parsable (the parts known already are not read)
            if now - os.stat(path).st_mtime < ARGS.settle:
                return
            if path.lower().endswith(".pvd") and XML_END not in tail(path):
                return
            parts = parts_of(path)
        except (OSError, ValueError):
            return
        known = set(self.files)
        if not all(complete(part, now) for part in parts if part not in known):
            return  # a new part is still being written
        self.index_stat = current
        self.files = parts
        simple.ReloadFiles(self.reader)
        self.reader.UpdatePipelineInformation()
        self.offer(reader_times(self.reader))

    def offer(self, times: list[float]) -> None:
        """Give the kernel and the page the new list of steps; a view that showed the last
        step moves on to the new last one (one the user picked stays)."""
        scene = self.scene
        follow_latest = scene.at_latest or not scene.times
        shown = scene.times[scene.values["time"]] if scene.times else None
        scene.times = times
        scene.animation.UpdateAnimationUsingDataTimeSteps()
        if follow_latest and times:
            scene.set_time(len(times) - 1)
        elif shown is not None and shown in times:
            scene.set_time(times.index(shown))
        log("time steps:", len(times), "showing", scene.values["time"])


def preset_names() -> list[str]:
    presets = servermanager.vtkSMTransferFunctionPresets.GetInstance()
    return sorted({presets.GetPresetName(i) for i in range(presets.GetNumberOfPresets())})


class Scene:
    """The ParaView objects of one session and the state the kernel sees."""

    def __init__(self, paths: list[str]) -> None:
        if ARGS.follow and ARGS.glob:  # a run may be writing its last step right now
            now = time.time()
            complete_ones = []
            for path in paths:
                if not complete(path, now):
                    break
                complete_ones.append(path)
            paths = complete_ones or paths[:1]
        self.paths = list(paths)  # the files opened
        self.reader = open_data(paths)
        self.source = self.reader  # what is shown and filtered (pieces() looks at it)
        self.source = self.spread(self.reader)
        self.read = self.source  # the data as read (and spread over the ranks)
        self.base = self.source  # the data shown: the blocks chosen; derived fields follow
        self.blocks = [] if openfoam_reader(self.reader) else block_paths(self.read)
        self.extract: Any = None  # an ExtractBlock when some blocks of a multiblock are chosen
        #: derived fields (calculators), in pipeline order: key -> (kind, proxy)
        self.derived: dict[str, tuple[str, Any]] = {}
        self.view = simple.GetActiveViewOrCreate("RenderView")
        self.view.ViewSize = [ARGS.width, ARGS.height]
        self.view.OrientationAxesVisibility = 1
        if ARGS.ranks:  # the ranks render their pieces and composite them; pvpython gets
            self.view.RemoteRenderThreshold = 0  # images, never the (large) geometry
        self.display = simple.Show(self.source, self.view)
        self.filters: dict[str, Any] = {}
        self.next_filter = 0
        self.times = reader_times(self.reader)
        self.at_latest = False  # the view shows the last step, and moves on with new ones
        self.animation = simple.GetAnimationScene()
        self.animation.UpdateAnimationUsingDataTimeSteps()
        self.presets = preset_names()
        self.values: dict[str, Any] = {
            "regions": list(self.reader.MeshRegions)
            if openfoam_reader(self.reader)
            else [b for b in self.blocks if "/" not in b],
            "field": "",
            "association": "auto",
            "component": "magnitude",
            "time": 0,
            "colormap": "Cool to Warm",
            "color_range": "auto",
            "representation": "Surface",
            "opacity": 1.0,
            "follow": bool(ARGS.follow),
            "interactive_quality": ARGS.interactive_quality,
            "interactive_ratio": ARGS.interactive_ratio,
        }
        cloud = self.reader.GetXMLName() == "TableToPolyData"  # a table's (CSV's) points
        if cloud:
            self.display.PointSize = 3
        self.set_representation("Points" if cloud else "Surface")
        field = default_field(self.source, self.fields())
        # "": ParaView would colour by the active scalars, e.g. STL's constant solid label
        self.set_field(field)
        if ARGS.regions and self.blocks:
            self.set_regions(ARGS.regions)
        elif ARGS.regions and not openfoam_reader(self.reader):
            self.set_regions(ARGS.regions)  # (says why not)
        if ARGS.follow and self.times:  # following a run: its latest step
            self.set_time(len(self.times) - 1)
        simple.ResetCamera(self.view)  # no render here: the page asks for its first image

    # what there is
    def fields(self, source: Any = None) -> list[str]:
        names: list[str] = []
        for assoc in ("PointData", "CellData"):
            arrays = getattr(source if source is not None else self.source, assoc)
            for name in arrays.keys():  # noqa: SIM118 - ParaView's arrays are no dict
                if name not in names and not name.startswith("vtk"):
                    names.append(name)
        return names

    def association(self, field: str, wanted: str | None = None) -> str:
        """POINTS or CELLS: where ``field`` is taken from (``wanted``: the view's choice)."""
        wanted = wanted or self.values["association"]
        points = field in self.source.PointData.keys()  # noqa: SIM118
        cells = field in self.source.CellData.keys()  # noqa: SIM118
        if not (points or cells):
            raise Fail(f"no field {field!r}; fields: {', '.join(self.fields()) or 'none'}")
        if (wanted == "cells" and cells) or (wanted != "points" and not points):
            return "CELLS"
        return "POINTS"

    def describe(self) -> dict[str, Any]:
        bounds = self.source.GetDataInformation().GetBounds()
        foam = openfoam_reader(self.reader)
        return {
            "all_regions": list(foam.GetProperty("MeshRegions").GetAvailable())
            if foam
            else self.blocks,
            "case_type": opened_case_type or None,
            "fields": self.fields(),
            "times": self.times,
            "colormaps": self.presets,
            "representations": REPRESENTATIONS,
            "bounds": list(bounds),
            "values": dict(self.values, camera=self.camera()),
            "sources": self.sources(),
            "ranks": servermanager.ActiveConnection.GetNumberOfDataPartitions(),
            "remote_rendering": self.remote_rendering(),
        }

    def pieces(self) -> list[int]:
        """Points each MPI rank holds (index = rank), counted where the data lives: the
        ranks tag their points with their id and a histogram of the ids is reduced to us."""
        ranks = servermanager.ActiveConnection.GetNumberOfDataPartitions()
        ids = simple.ProcessIdScalars(Input=self.source)
        histogram = simple.Histogram(Input=ids)
        histogram.SelectInputArray = ["POINTS", "ProcessId"]
        histogram.BinCount = ranks
        histogram.UseCustomBinRanges = 1
        histogram.CustomBinRanges = [-0.5, ranks - 0.5]
        try:
            table = servermanager.Fetch(histogram)
            counts = table.GetColumnByName("bin_values")
            return [int(counts.GetValue(i)) for i in range(counts.GetNumberOfTuples())]
        finally:
            simple.Delete(histogram)
            simple.Delete(ids)

    def spread(self, reader: Any) -> Any:
        """The data spread over all ranks: readers of files in one piece (.vtu, .vtp, ...)
        give it all to rank 0; then a RedistributeDataSet filter hands every rank a share
        (rank 0 still reads it all). Files in pieces, and image data, are read in parallel."""
        ranks = servermanager.ActiveConnection.GetNumberOfDataPartitions()
        if ranks < 2 or len(self.partitions()) == ranks:
            return reader
        try:
            spread = simple.RedistributeDataSet(Input=reader)
            spread.UpdatePipeline()
        except Exception as exc:  # a data type the filter does not take: leave it on rank 0
            log("data stays on rank 0; RedistributeDataSet failed:", exc)
            return reader
        log("the data is in one piece: redistributed over the ranks")
        return spread

    def remote_rendering(self) -> bool:
        """Whether the last frame was rendered on the pvserver ranks (and composited)."""
        return bool(self.view.GetClientSideObject().GetUseDistributedRenderingForRender())

    def partitions(self) -> list[int]:
        """The MPI ranks that hold a piece of the data, found cheaply: each rank keeps one
        of its points (if it has any), tagged with its id, and those points come to us."""
        sample = simple.MaskPoints(Input=self.source)
        sample.OnRatio, sample.MaximumNumberofPoints, sample.GenerateVertices = 1, 1, 1
        ids = simple.ProcessIdScalars(Input=sample)
        try:
            return sorted(set(process_ids(servermanager.Fetch(ids))))
        finally:
            simple.Delete(ids)
            simple.Delete(sample)

    def sources(self) -> list[dict[str, Any]]:
        out = [{"id": "data", "kind": "reader", "name": type(self.reader).__name__}]
        out += [{"id": key, "kind": kind} for key, (kind, _proxy) in self.derived.items()]
        out += [{"id": key, "kind": kind} for key, (kind, _proxy, _disp) in self.filters.items()]
        return out

    # changes
    def set_field(self, field: str) -> None:
        if not field:  # one plain colour
            for display in self.displays():
                display.SetScalarBarVisibility(self.view, False)
                if display.ColorArrayName[1]:  # (data without arrays: never coloured)
                    simple.ColorBy(display, None)
            self.values["field"] = ""
            return
        assoc = self.association(field)
        for display in self.displays():  # one scalar bar: the old field's goes
            display.SetScalarBarVisibility(self.view, False)
        simple.ColorBy(self.display, (assoc, field))
        self.values["field"] = field
        for _kind, _proxy, display in self.filters.values():
            self.color_filter(display)
        self.apply_component(self.values["component"], strict=False)
        self.apply_colormap(self.values["colormap"])
        self.apply_range(self.values["color_range"])
        self.display.SetScalarBarVisibility(self.view, True)

    def set_association(self, value: str) -> None:
        if value not in ("auto", "points", "cells"):
            raise Fail(f'association is "auto", "points" or "cells", not {value!r}')
        field = self.values["field"]
        if field and value != "auto" and self.association(field, value) != value.upper():
            raise Fail(f"field {field!r} has no {value[:-1]} values")
        self.values["association"] = value
        if field:
            self.set_field(field)

    def components(self, field: str) -> int:
        if not field:
            return 1
        arrays = (
            self.source.PointData if self.association(field) == "POINTS" else self.source.CellData
        )
        return int(arrays[field].GetNumberOfComponents())

    def apply_component(self, value: str, strict: bool = True) -> None:
        """Colour a vector field by its magnitude or one component ("x", "y", "z", "0", ...)."""
        value = str(value).lower()
        index = {"x": 0, "y": 1, "z": 2}.get(value, int(value) if value.isdigit() else None)
        if value != "magnitude" and index is None:
            raise Fail(f'component is "magnitude", "x", "y", "z" or an index, not {value!r}')
        count = self.components(self.values["field"])
        if index is not None and count > 1 and index >= count:
            if strict:
                raise Fail(
                    f"field {self.values['field']!r} has {count} components; "
                    f"component {value!r} does not exist"
                )
            value, index = "magnitude", None
        self.values["component"] = value
        lut = self.lut()
        if lut is None or count == 1:
            return
        if index is None:
            lut.VectorMode = "Magnitude"
        else:
            lut.VectorMode, lut.VectorComponent = "Component", index
        title = "Magnitude" if index is None else ("X", "Y", "Z")[index] if count == 3 else value
        bar = simple.GetScalarBar(lut, self.view)
        bar.Title, bar.ComponentTitle = self.values["field"], title

    def set_component(self, value: str) -> None:
        self.apply_component(value)
        self.apply_range(self.values["color_range"])

    def set_regions(self, names: list[str]) -> None:
        foam = openfoam_reader(self.reader)
        if foam is None:
            self.set_blocks(list(names))
            return
        self.values["regions"] = set_regions(foam, list(names))
        foam.UpdatePipeline(self.view.ViewTime)
        field = self.values["field"]
        self.set_field(
            field if field in self.fields() else default_field(self.source, self.fields())
        )

    def set_blocks(self, names: list[str]) -> None:
        """Show these blocks of a multiblock data set (``internal``, ``boundary/inlet``, or a
        name that ends one path only: ``inlet``), through an ExtractBlock filter."""
        if not self.blocks:
            raise Fail(
                "regions choose the parts of an OpenFOAM case or the blocks of a multiblock "
                "data set (.vtm); this data has none"
            )
        chosen = []
        for name in names:
            path = name.strip("/")
            if path not in self.blocks:
                ends = [b for b in self.blocks if b.split("/")[-1] == path]
                if len(ends) != 1:
                    raise Fail(f"no region {name!r}; regions: {', '.join(self.blocks)}")
                path = ends[0]
            chosen.append(path)
        if not chosen:
            raise Fail(f"regions needs at least one of: {', '.join(self.blocks)}")
        if self.extract is None:
            self.extract = simple.ExtractBlock(Input=self.read)
            self.base = self.extract
        self.extract.Selectors = [f"/Root/{path}" for path in chosen]
        self.values["regions"] = chosen
        self.rewire()

    def displays(self) -> list[Any]:
        return [self.display, *(display for _k, _p, display in self.filters.values())]

    def color_filter(self, display: Any) -> None:
        field = self.values["field"]
        if not field:
            return
        try:
            simple.ColorBy(display, (self.association(field), field))
        except Exception:  # the filter's output lacks the field (a contour of another one)
            pass
        display.SetScalarBarVisibility(self.view, False)

    def lut(self) -> Any:
        field = self.values["field"]
        return simple.GetColorTransferFunction(field) if field else None

    def apply_colormap(self, name: str) -> None:
        if name not in self.presets:
            raise Fail(
                f"unknown colormap {name!r}; see view.colormaps for the {len(self.presets)} names"
            )
        lut = self.lut()
        if lut is not None:
            lut.ApplyPreset(name, True)
        self.values["colormap"] = name

    def apply_range(self, value: Any) -> None:
        lut = self.lut()
        if value == "auto" or value is None:
            if lut is not None:
                self.display.RescaleTransferFunctionToDataRange(False, True)
            self.values["color_range"] = "auto"
            return
        low, high = (float(v) for v in value)
        if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
            raise Fail(f"color_range must be (low, high) with low < high, got {value!r}")
        if lut is not None:
            lut.RescaleTransferFunction(low, high)
            opacity = simple.GetOpacityTransferFunction(self.values["field"])
            opacity.RescaleTransferFunction(low, high)
        self.values["color_range"] = [low, high]

    def set_time(self, index: int) -> None:
        if not self.times:
            if index != 0:
                raise Fail("this data has no time steps")
            return
        if not (0 <= int(index) < len(self.times)):
            last = len(self.times) - 1
            raise Fail(f"time step {index} does not exist; there are {last + 1} (0..{last})")
        self.animation.AnimationTime = self.times[int(index)]
        self.view.ViewTime = self.times[int(index)]
        self.values["time"] = int(index)
        self.at_latest = int(index) == len(self.times) - 1
        if self.values["color_range"] == "auto" and self.values["field"]:
            self.apply_range("auto")

    def set_follow(self, value: bool) -> None:
        self.values["follow"] = bool(value)

    def set_representation(self, name: str) -> None:
        if name not in REPRESENTATIONS:
            raise Fail(f"unknown representation {name!r}; one of {', '.join(REPRESENTATIONS)}")
        self.values["representation"] = name
        if not self.filters:
            self.display.SetRepresentationType(name)

    def set_opacity(self, value: float) -> None:
        value = float(value)
        if not 0 <= value <= 1:
            raise Fail(f"opacity must be between 0 and 1, got {value}")
        self.display.Opacity = value
        self.values["opacity"] = value

    def set_interactive_quality(self, value: Any) -> None:
        try:
            frames.configure(quality=value)
        except ValueError as exc:
            raise Fail(str(exc)) from None
        self.values["interactive_quality"] = frames.quality

    def set_interactive_ratio(self, value: Any) -> None:
        try:
            frames.configure(ratio=value)
        except ValueError as exc:
            raise Fail(str(exc)) from None
        self.values["interactive_ratio"] = frames.ratio

    def camera(self) -> dict[str, Any]:
        v = self.view
        return {
            "position": [float(x) for x in v.CameraPosition],
            "focal_point": [float(x) for x in v.CameraFocalPoint],
            "view_up": [float(x) for x in v.CameraViewUp],
            "view_angle": float(v.CameraViewAngle),
        }

    def set_camera(self, camera: dict[str, Any]) -> None:
        v = self.view
        if "position" in camera:
            v.CameraPosition = list(camera["position"])
        if "focal_point" in camera:
            v.CameraFocalPoint = list(camera["focal_point"])
        if "view_up" in camera:
            v.CameraViewUp = list(camera["view_up"])
        if "view_angle" in camera:
            v.CameraViewAngle = float(camera["view_angle"])

    def set(self, key: str, value: Any) -> None:
        setters = {
            "follow": self.set_follow,
            "regions": self.set_regions,
            "association": self.set_association,
            "component": self.set_component,
            "field": self.set_field,
            "time": self.set_time,
            "colormap": self.apply_colormap,
            "color_range": self.apply_range,
            "representation": self.set_representation,
            "opacity": self.set_opacity,
            "camera": self.set_camera,
            "interactive_quality": self.set_interactive_quality,
            "interactive_ratio": self.set_interactive_ratio,
        }
        if key not in setters:
            raise Fail(f"unknown setting {key!r}")
        setters[key](value)

    # filters
    def center(self) -> list[float]:
        b = self.source.GetDataInformation().GetBounds()
        return [(b[0] + b[1]) / 2, (b[2] + b[3]) / 2, (b[4] + b[5]) / 2]

    def field_range(self, field: str, component: str | None = None) -> tuple[float, float]:
        """The range of ``field`` at the time shown: of its magnitude, or of a component."""
        self.source.UpdatePipeline(self.view.ViewTime)  # (its information: of the last update)
        arrays = (
            self.source.PointData if self.association(field) == "POINTS" else self.source.CellData
        )
        index = {"x": 0, "y": 1, "z": 2}.get(str(component).lower(), -1)
        if str(component).isdigit():
            index = int(str(component))
        if arrays[field].GetNumberOfComponents() == 1:
            index = 0
        low, high = arrays[field].GetRange(index)
        return float(low), float(high)

    # derived fields
    def add_derived(self, kind: str, args: dict[str, Any]) -> str:
        """A new field computed from the others by ParaView's Calculator (its expression
        language: ``mag(U)``, ``U_X*p``) or Python Calculator (numpy: ``mag(U)``,
        ``U[:, 0] * p``, ``gradient(p)``), on every time step. It goes into the pipeline before
        what is shown and filtered, so it can be coloured by, contoured, thresholded."""
        proxy = getattr(simple, derived_filter(kind).paraview)(Input=self.source)
        self.next_filter += 1
        key = f"{kind}-{self.next_filter}"
        try:
            args = {"name": "result", "association": "points", **args}
            self.configure_derived(kind, proxy, self.source, args)
        except Exception:
            simple.Delete(proxy)
            raise
        self.derived[key] = (kind, proxy)
        self.rewire()
        return key

    def configure_derived(self, kind: str, proxy: Any, upstream: Any, args: dict[str, Any]) -> None:
        expression, name = args.get("expression"), args.get("name")
        where = args.get("association")
        if where is not None and where not in ("points", "cells"):
            raise Fail(f'association is "points" or "cells", not {where!r}')
        if name is not None:
            name = str(name).strip()
            if not name:
                raise Fail("a derived field needs a name")
            taken = [f for f in self.fields(upstream) if f != self.derived_name(proxy)]
            if name in taken:
                raise Fail(f"a field named {name!r} exists already; choose another name=")
        association = {"points": "Point Data", "cells": "Cell Data"}
        kinds = derived_filter(kind)
        if expression is not None:
            setattr(proxy, kinds.expression, str(expression))
        if name is not None:
            setattr(proxy, kinds.result, name)
        if where is not None:
            setattr(proxy, kinds.association, association[where])
        shown = getattr(proxy, kinds.expression)
        if not str(shown).strip():
            raise Fail(f"{kind} needs an expression")
        proxy.UpdatePipeline(self.view.ViewTime)
        made = self.derived_name(proxy)
        if made not in self.fields(proxy):
            raise Fail(
                f"ParaView's {kinds.engine} could not compute {str(shown)!r} (view.logs() has its "
                f"message); fields it can use: {', '.join(self.fields(upstream)) or 'none'}"
            )

    @staticmethod
    def derived_name(proxy: Any) -> str:
        name = proxy.ResultArrayName if hasattr(proxy, "ResultArrayName") else proxy.ArrayName
        return str(name)

    def set_derived(self, key: str, args: dict[str, Any]) -> None:
        kind, proxy = self.derived[key]
        keys = list(self.derived)
        index = keys.index(key)
        upstream = self.derived[keys[index - 1]][1] if index else self.base
        self.configure_derived(kind, proxy, upstream, args)
        self.rewire()

    def remove_derived(self, key: str) -> None:
        _kind, proxy = self.derived.pop(key)
        self.rewire()
        simple.Delete(proxy)

    def rewire(self) -> None:
        """Chain the data, the derived fields and what is shown: the last derived field's
        output is what the view shows and the filters take."""
        upstream = self.base
        for _kind, proxy in self.derived.values():
            proxy.Input = upstream
            upstream = proxy
        upstream.UpdatePipeline(self.view.ViewTime)
        if upstream is not self.source:
            old = self.display
            simple.Hide(self.source, self.view)
            self.source = upstream
            self.display = simple.Show(upstream, self.view)
            self.display.Opacity = old.Opacity
            self.display.PointSize = old.PointSize
            for _kind, proxy, _display in self.filters.values():
                proxy.Input = upstream
        field = self.values["field"]
        fields = self.fields()
        self.set_field(field if field in fields else default_field(self.source, fields))
        self.update_input_visibility()

    def add_filter(self, kind: str, args: dict[str, Any]) -> str:
        if kind in ("calculator", "python_calculator"):
            return self.add_derived(kind, args)
        makers = {
            "slice": simple.Slice,
            "clip": simple.Clip,
            "contour": simple.Contour,
            "threshold": simple.Threshold,
        }
        if kind not in makers:
            raise Fail(f"unknown filter {kind!r}; one of {', '.join(makers)}")
        proxy = makers[kind](Input=self.source)
        self.next_filter += 1
        key = f"{kind}-{self.next_filter}"
        display = simple.Show(proxy, self.view)
        self.filters[key] = (kind, proxy, display)
        try:
            self.set_filter(key, {"origin": None, "normal": None, **args})
        except Exception:
            self.remove_filter(key)
            raise
        return key

    def set_filter(self, key: str, args: dict[str, Any]) -> None:
        if key in self.derived:
            self.set_derived(key, args)
            return
        if key not in self.filters:
            raise Fail(f"no filter {key!r} (removed?)")
        kind, proxy, display = self.filters[key]
        field = args.get("field") or self.values["field"]
        if kind in ("slice", "clip"):
            plane = proxy.SliceType if kind == "slice" else proxy.ClipType
            if kind == "clip":
                proxy.Invert = 0  # keep the side the normal points to
            if "origin" in args:
                plane.Origin = list(args["origin"] or self.center())
            if "normal" in args:
                plane.Normal = list(args["normal"] or ((0, 0, 1) if kind == "slice" else (1, 0, 0)))
        elif kind == "contour":
            if not field:
                raise Fail("contour needs a field")
            if self.association(field, "points") != "POINTS":
                raise Fail(f"contour needs a point field; {field!r} is a cell field")
            proxy.ContourBy = ["POINTS", field]
            if self.components(field) > 1:
                raise Fail(f"contour needs a field of one component; {field!r} has more")
            values = args.get("values")
            if values is None and not list(proxy.Isosurfaces):
                low, high = self.field_range(field)
                values = [(low + high) / 2]
            if values is not None:
                values = values if isinstance(values, (list, tuple)) else [values]
                proxy.Isosurfaces = [float(v) for v in values]
        elif kind == "threshold":
            if not field:
                raise Fail("threshold needs a field")
            proxy.Scalars = [self.association(field), field]
            low, high = args.get("range") or self.field_range(field)
            proxy.LowerThreshold, proxy.UpperThreshold = float(low), float(high)
        proxy.UpdatePipeline(self.view.ViewTime)
        self.color_filter(display)
        self.apply_range(self.values["color_range"])  # ColorBy rescaled to the filter's range
        self.update_input_visibility()

    def update_input_visibility(self) -> None:
        """While filters exist the data itself shows as an outline, for context."""
        if self.filters:
            self.display.SetRepresentationType("Outline")
        else:
            self.display.SetRepresentationType(self.values["representation"])
        self.display.SetScalarBarVisibility(self.view, bool(self.values["field"]))

    def remove_filter(self, key: str) -> None:
        if key in self.derived:
            self.remove_derived(key)
            return
        if key not in self.filters:
            raise Fail(f"no filter {key!r}")
        _kind, proxy, _display = self.filters.pop(key)
        simple.Hide(proxy, self.view)
        simple.Delete(proxy)
        self.update_input_visibility()

    def screenshot(self, path: str, width: int, height: int) -> str:
        """A full-quality render, also while a drag or a reduced frame has ParaView's level of
        detail on for images (UseInteractiveRenderingForScreenshots)."""
        reduced = int(getattr(self.view, "UseInteractiveRenderingForScreenshots", 0) or 0)
        if reduced:
            self.view.UseInteractiveRenderingForScreenshots = 0
        try:
            simple.SaveScreenshot(path, self.view, ImageResolution=[int(width), int(height)])
        finally:
            if reduced:
                self.view.UseInteractiveRenderingForScreenshots = reduced
        return path


# ------------------------------------------------------------------ the app
server = get_server(client_type="vue3")
state, ctrl = server.state, server.controller


def start_ranks() -> subprocess.Popen[bytes] | None:
    """Start ``ARGS.ranks`` pvserver ranks that connect back to us (reverse connection).

    pvserver 5.11 can only listen on every interface, so the ranks connect to us instead;
    our one-shot listener accepts only a server that presents the session's connect id.
    MPI messages between the ranks go through shared memory (``btl=self,vader``). With a
    local ``mpiexec`` the launcher has put the whole session into a network namespace of its
    own (loopback only), which hides both this listener and mpiexec's own TCP listeners
    (OpenMPI binds those to every interface whatever ``oob_tcp_if_include`` says).
    """
    if ARGS.ranks < 1:
        return None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launcher = [part.replace("{ranks}", str(ARGS.ranks)) for part in shlex.split(ARGS.launcher)]
    command = [
        *launcher,
        ARGS.pvserver,
        "--reverse-connection",
        "--client-host=localhost",
        f"--server-port={port}",
        f"--connect-id={ARGS.connect_id}",
        "--force-offscreen-rendering",
    ]
    env = dict(os.environ)
    # ranks talk through shared memory; an idle rank (waiting for rank 0) yields its core to
    # pvpython and Xvfb, which share the node. Values set by the user win.
    env.setdefault("OMPI_MCA_btl", "self,vader")
    env.setdefault("OMPI_MCA_mpi_yield_when_idle", "1")
    if os.getuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    log("starting", ARGS.ranks, "pvserver ranks:", " ".join(launcher))
    ranks = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
    simple.ReverseConnect(str(port))  # returns once the ranks have connected
    log("pvserver ranks connected:", servermanager.ActiveConnection.GetNumberOfDataPartitions())
    return ranks


scene: Scene | None = None
startup_error = ""
log("numpy:", NUMPY or "the first on the path (none next to ParaView's packages)")
try:
    mpi_ranks = start_ranks()
    scene = Scene(ARGS.data)
except Fail as exc:
    startup_error = str(exc)
except Exception as exc:  # ParaView itself failed
    startup_error = f"{type(exc).__name__}: {exc}"
    traceback.print_exc()
if startup_error:
    log("error:", startup_error)
    sys.exit(2)

follower = Follower(scene) if scene is not None else None
image_delivery: Any = None  # trame-vtk's ParaViewWebPublishImageDelivery, once serving


def set_page_quality(quality: int, ratio: float) -> None:
    """The page's remote view asks for frames of this quality and scale while the mouse moves
    (trame's VtkRemoteView knobs)."""
    state.interactive_quality, state.interactive_ratio = quality, ratio


def sending() -> bool:
    """Messages published (images) are still being written to the page's websocket."""
    from wslink.publish import publishManager

    return any(p.network_monitor.pending for p in publishManager.protocols)


#: What a colour legend draws in pixels: scaled with a reduced frame's size.
LEGEND_SIZES = ("TitleFontSize", "LabelFontSize", "ScalarBarThickness")
legend_sizes: dict[str, dict[str, int]] = {}  # each legend's own sizes (by its proxy's id)


def fit_overlays(ratio: float) -> None:
    """Draw the colour legends at ``ratio`` of their size (a reduced frame is smaller: the
    same fonts would cover much more of it); 1: their own size again."""
    if scene is None:
        return
    for representation in scene.view.Representations:
        if representation.GetXMLName() != "ScalarBarWidgetRepresentation":
            continue
        own = legend_sizes.setdefault(
            representation.GetGlobalIDAsString(),
            {name: int(getattr(representation, name)) for name in LEGEND_SIZES},
        )
        for name, value in own.items():
            setattr(representation, name, max(1, round(value * ratio)))
        if ratio >= 1:
            legend_sizes.pop(representation.GetGlobalIDAsString(), None)


frames = (
    Frames(
        scene.view,
        lambda: image_delivery,
        set_page_quality,
        ARGS.interactive_quality,
        ARGS.interactive_ratio,
        sending,
        fit_overlays,
    )
    if scene is not None
    else None
)


def poll() -> None:
    """Every ``--follow-interval`` seconds while following: add the complete new steps."""
    try:
        if scene is None or follower is None or not scene.values["follow"]:
            pass
        elif follower.check():
            sync_ui()
            push_image(keeps_geometry=False)
            values = {k: scene.values[k] for k in ("time", "color_range")}
            broadcast({"op": "changed", "values": {"times": scene.times, **values}})
    except Exception:  # a step that cannot be read now: look again next time
        traceback.print_exc()
    asyncio.get_event_loop().call_later(ARGS.follow_interval, poll)


writers: set[asyncio.StreamWriter] = set()
applying = False  # set while the kernel's changes are copied into the UI state


def broadcast(message: dict[str, Any]) -> None:
    line = (json.dumps(message) + "\n").encode()
    for writer in list(writers):
        try:
            writer.write(line)
        except Exception:
            writers.discard(writer)


def push_image(keeps_geometry: bool = False) -> None:
    """Send the page the new picture: soon, after the changes pause; a reduced frame first
    when the geometry is the same (see _pvframes.py)."""
    if frames is not None:
        frames.changed(keeps_geometry)


def sync_ui() -> None:
    """Copy the scene's values into the trame state without echoing them back to the kernel."""
    global applying
    if scene is None:
        return
    applying = True
    try:
        with state:
            state.fields = scene.fields()
            state.times = scene.times
            state.field = scene.values["field"]
            state.time_index = scene.values["time"]
    finally:
        applying = False


@state.change("field")
def _ui_field(field: str, **_: Any) -> None:
    if applying or scene is None or not field or field == scene.values["field"]:
        return
    scene.set_field(field)
    push_image(keeps_geometry=True)
    broadcast(
        {"op": "changed", "values": {"field": field, "color_range": scene.values["color_range"]}}
    )


@state.change("time_index")
def _ui_time(time_index: int, **_: Any) -> None:
    if applying or scene is None or time_index is None or int(time_index) == scene.values["time"]:
        return
    scene.set_time(int(time_index))
    push_image(keeps_geometry=False)
    broadcast({"op": "changed", "values": {"time": int(time_index)}})


camera_timer: asyncio.TimerHandle | None = None
last_camera: dict[str, Any] | None = None


def _camera_modified(*_: Any) -> None:
    """The camera moved (mouse in the browser, or the kernel): tell the kernel, debounced."""
    global camera_timer
    loop = asyncio.get_event_loop()
    if camera_timer is not None:
        camera_timer.cancel()
    camera_timer = loop.call_later(CAMERA_DEBOUNCE, _send_camera)


def _send_camera() -> None:
    global last_camera
    if scene is None:
        return
    camera = scene.camera()
    if camera != last_camera:
        last_camera = camera
        broadcast({"op": "changed", "values": {"camera": camera}})


def reset_camera() -> None:
    if scene is not None:
        simple.ResetCamera(scene.view)
        push_image(keeps_geometry=True)


# ------------------------------------------------------------------ control channel
def handle_request(name: str, args: dict[str, Any]) -> Any:
    if name == "ping":
        return {"error": startup_error}
    if scene is None:
        raise Fail(startup_error or "the scene is not loaded")
    if name == "describe" or name == "list":
        return scene.describe()
    if name == "set":
        for key, value in args.items():
            scene.set(key, value)
        sync_ui()
        if not set(args) <= FRAME_SETTINGS:  # (the answer goes out before the frames)
            push_image(keeps_geometry=set(args) <= KEEPS_GEOMETRY)
        return {"values": dict(scene.values, fields=scene.fields()), "camera": scene.camera()}
    if name == "partitions":
        return scene.partitions()
    if name == "pieces":
        return scene.pieces()
    if name == "reset_camera":
        simple.ResetCamera(scene.view)
        push_image(keeps_geometry=True)
        return scene.camera()
    if name == "screenshot":
        return scene.screenshot(
            args["path"], args.get("width", ARGS.width), args.get("height", ARGS.height)
        )
    if name == "filter":
        key = scene.add_filter(args["kind"], args.get("args") or {})
        sync_ui()
        push_image()
        return key
    if name == "filter_set":
        scene.set_filter(args["id"], args.get("args") or {})
        sync_ui()
        push_image()
        return None
    if name == "filter_remove":
        scene.remove_filter(args["id"])
        sync_ui()
        push_image()
        return None
    if name == "refresh":
        added = follower.check() if follower is not None else 0
        if added:
            sync_ui()
            push_image()
        return {"added": added, "times": scene.times, "values": dict(scene.values)}
    if name == "frames":  # when the last images were rendered and sent (benchmarks)
        return list(frames.records) if frames is not None else []
    if name == "range":
        field = args.get("field") or scene.values["field"]
        return list(scene.field_range(field, args.get("component")))
    raise Fail(f"unknown request {name!r}")


async def serve_control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writers.add(writer)
    try:
        while line := await reader.readline():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("op") != "request":
                continue
            answer: dict[str, Any] = {"op": "answer", "id": message.get("id")}
            try:
                answer["value"] = handle_request(message.get("name", ""), message.get("args") or {})
                answer["ok"] = True
            except Fail as exc:
                answer.update(ok=False, error=str(exc))
            except Exception as exc:
                traceback.print_exc()
                answer.update(ok=False, error=f"{type(exc).__name__}: {exc}")
            writer.write((json.dumps(answer) + "\n").encode())
            await writer.drain()
    finally:
        writers.discard(writer)
        writer.close()


def send_stale_images_promptly() -> Any:
    """trame-vtk encodes images on a thread; when one is not ready right after a render it
    looks again only 100 ms later, and drops the image if it is still not ready then (seen
    under load: 1 change in 12-18 never reached the page). Look again every 10 ms, up to 5 s,
    sending the cached image without rendering again. Guarded: other trame-vtk versions keep
    their own behaviour. Returns that image delivery protocol (None if not found)."""
    for protocol in server.protocol.getLinkProtocols() if server.protocol else []:
        needed = ("render_stale_image", "push_render", "stale_handler_count", "last_stale_time")
        if not all(hasattr(protocol, name) for name in needed):
            continue
        protocol.delta_stale_time_before_render = 0.01
        protocol.stale_count_limit = 500

        def render_stale_image(view_id: Any, stale_count: int = 0, p: Any = protocol) -> None:
            if p.stale_handler_count.get(view_id, 0) > 0:
                p.stale_handler_count[view_id] -= 1
                if p.last_stale_time.get(view_id) and stale_count < p.stale_count_limit:
                    p.push_render(view_id, False, stale_count + 1)

        protocol.render_stale_image = render_stale_image
        return protocol
    return None


#: TCP mode: the session secret, handed over once in the URL, then kept in a cookie (nbviz's
#: one rule for such gates, run by path: this interpreter must not import the nbviz package).
SECRET = os.environ.get("NBVIZ_SECRET", "")
GATE = SimpleNamespace(**runpy.run_path(str(Path(__file__).resolve().parents[1] / "_gate.py")))


@ctrl.add("on_server_bind")
def _require_secret(wslink_server: Any) -> None:
    """On a TCP port every local user can connect: admit only holders of the session secret."""
    if ARGS.port is None:
        return  # a 0600 Unix socket behind Jupyter's login: nothing more to check
    from aiohttp import web

    @web.middleware
    async def check_secret(request: web.Request, handler: Any) -> web.StreamResponse:
        verdict = GATE.check(
            SECRET, request.path, request.query_string, request.headers.get("Cookie")
        )
        if verdict.location is not None:  # swap the query for the cookie
            headers = {"Location": verdict.location, "Set-Cookie": verdict.set_cookie}
            return web.Response(status=302, headers=headers)
        if verdict.admitted:
            return await handler(request)
        return web.Response(
            status=403,
            text="nbviz: this ParaView session admits only the notebook that started it "
            "(the per-session secret is missing or wrong)",
        )

    wslink_server.app.middlewares.append(check_secret)


@ctrl.add("on_server_ready")
def _on_server_ready(**_: Any) -> None:
    task = asyncio.get_event_loop().create_task(_serve_unix())
    task.add_done_callback(_report)


def warm_up() -> None:
    """Once idle, let ParaView decimate the geometry for the reduced frames (looked at every
    second: a new geometry, a time step or a filter, needs it again)."""
    if frames is not None:
        try:
            frames.warm_up()
        except Exception:
            traceback.print_exc()
    asyncio.get_event_loop().call_later(1.0, warm_up)


def _report(task: asyncio.Task[None]) -> None:
    if task.exception() is not None:
        log("error: could not serve:", repr(task.exception()))
        os._exit(3)


async def _serve_unix() -> None:
    from aiohttp import web

    if ARGS.socket:
        wslink_server = server._server  # not public API: the one place we reach into it
        site = web.UnixSite(wslink_server.runner, ARGS.socket)
        await site.start()
        os.chmod(ARGS.socket, 0o600)
        await wslink_server.site.stop()  # no TCP port stays open
    control = await asyncio.start_unix_server(serve_control, ARGS.control)
    os.chmod(ARGS.control, 0o600)
    if scene is not None:
        camera = scene.view.GetActiveCamera()
        camera.AddObserver("ModifiedEvent", _camera_modified)
    global image_delivery
    image_delivery = send_stale_images_promptly()
    if image_delivery is not None and frames is not None:
        frames.watch(image_delivery)
        frames.configure()  # (trame-vtk turned ParaView's level of detail off when it started)
        asyncio.get_event_loop().call_later(1.0, warm_up)
    asyncio.get_event_loop().call_later(ARGS.follow_interval, poll)
    log("serving on", ARGS.socket or f"127.0.0.1:{ARGS.port}", "control on", ARGS.control)
    del control


# ------------------------------------------------------------------ the UI
state.trame__title = ARGS.title
state.fields = scene.fields() if scene else []
state.times = scene.times if scene else []
state.field = scene.values["field"] if scene else ""
state.time_index = scene.values["time"] if scene else 0
state.startup_error = startup_error

with SinglePageLayout(server, full_height=True) as layout:
    layout.title.set_text(ARGS.title)  # the browser tab's title; the cell's bar shows it already
    layout.title.hide()
    layout.icon.hide()
    with layout.toolbar as toolbar:
        toolbar.density = "compact"
        v3.VSpacer()
        v3.VSelect(
            v_model=("field",),
            items=("fields",),
            label="Field",
            density="compact",
            hide_details=True,
            variant="outlined",
            style="max-width: 220px",
            classes="mx-2 nbviz-field",
        )
        v3.VSlider(
            v_if="times.length > 1",
            v_model=("time_index",),
            min=0,
            max=("times.length - 1",),
            step=1,
            hide_details=True,
            density="compact",
            thumb_label=True,
            style="max-width: 260px",
            classes="mx-2 nbviz-time",
        )
        html.Span(
            "{{ times.length > 1 ? `t = ${times[time_index].toPrecision(4)}"
            " (${time_index + 1}/${times.length})` : '' }}",
            classes="text-caption mx-2 nbviz-time-label",
        )
        v3.VBtn(icon="mdi-crop-free", click=reset_camera, density="compact", classes="nbviz-reset")
    with layout.content, v3.VContainer(fluid=True, classes="pa-0 fill-height"):
        if scene is not None:
            view_widget = pv_widgets.VtkRemoteView(  # (frames while the mouse moves)
                scene.view,
                interactive_ratio=("interactive_ratio",),
                interactive_quality=("interactive_quality",),
            )
            ctrl.view_update = view_widget.update
        else:
            v3.VAlert(type="error", text=("startup_error",))
    layout.footer.hide()

if __name__ == "__main__":
    if ARGS.port is not None and not SECRET:
        sys.exit("nbviz: --port needs the session secret in NBVIZ_SECRET")
    server.start(
        host="127.0.0.1",
        port=ARGS.port or 0,
        open_browser=False,
        timeout=0,
        show_connection_info=False,
        disable_logging=True,
    )
