"""The data of nbviz's ParaView app: opening files, arrays and OpenFOAM cases, and what they hold.

Runs *inside pvpython* (a part of ``pvapp.py``, imported relatively); imports nothing of the
nbviz package.
"""

from __future__ import annotations

import fnmatch
import os
from typing import Any

from paraview import servermanager, simple

from .pvargs import ARGS, Fail, log


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
        if reader.GetDataInformation().GetNumberOfPoints() == 0:
            if ARGS.regions:
                raise Fail(f"the regions {', '.join(ARGS.regions)} of {paths[0]} hold no points")
            where = "processor*/constant/polyMesh" if opened_case_type == "decomposed" else ""
            raise Fail(
                f"{paths[0]}: the case has no mesh ParaView could read "
                f"({where or 'constant/polyMesh'}; run blockMesh, or the mesher, first)"
            )
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

    def numeric(name: str) -> bool:
        info = reader.GetDataInformation().DataInformation
        array = info.GetAttributeInformation(vtkDataObject.ROW).GetArrayInformation(name)
        return array is not None and array.GetDataType() != VTK_STRING

    columns = names()
    if not columns:
        raise Fail(f"{path} is a table without rows: it has no points to show")
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
            for column in (x, y, z):
                if column is not None and not numeric(column):
                    raise Fail(not_a_number(reader, path, column))
            points = simple.TableToPoints(
                Input=reader, XColumn=x, YColumn=y, ZColumn=z or x, a2DPoints=int(z is None)
            )
            points.UpdatePipeline()
            if points.GetDataInformation().GetNumberOfPoints() == 0:
                raise Fail(f"{path} is a table without rows: it has no points to show")
            return points
    raise Fail(
        f"{path} is a table; ParaViewSession shows a table as points when it has columns "
        f"x, y (and z), any case, units in brackets allowed; its columns: "
        f"{', '.join(columns[:12]) or 'none'}"
    )


VTK_STRING = 13  # (vtkType.h: a column the CSV reader read as text)


def not_a_number(reader: Any, path: str, column: str) -> str:
    """Why coordinate ``column`` of a table is text: its first value that is not a number."""
    table = servermanager.Fetch(reader)
    values = table.GetColumnByName(column) if table is not None else None
    for row in range(values.GetNumberOfValues() if values is not None else 0):
        text = str(values.GetValue(row))
        try:
            float(text)
        except ValueError:
            return (
                f"{path}: column {column!r} holds {text!r} (data row {row + 1}), not a number; "
                "the coordinates of a table's points must all be numbers"
            )
    return f"{path}: column {column!r} does not hold numbers; coordinates must be numbers"


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
