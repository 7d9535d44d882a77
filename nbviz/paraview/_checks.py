"""What the kernel checks for ``ParaViewSession``, before and after pvpython starts: the
data (files, globs, arrays), the arguments, the programs (pvpython, trame), and a startup
failure's message.

Runs in the kernel (the user's Python); the files in ``runtime/`` run outside it (the
launcher, and the app inside pvpython).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._errors import ArgumentTypeError, NbvizError, ProgramNotFoundError


class DataError(NbvizError, ValueError):
    """The data cannot be found or read, or a field/time step/colormap does not exist."""


def find_pvpython() -> str:
    configured = os.environ.get("NBVIZ_PVPYTHON")
    if configured:
        if os.access(configured, os.X_OK):
            return configured
        raise ProgramNotFoundError(f"nbviz: NBVIZ_PVPYTHON={configured} is not an executable file")
    found = shutil.which("pvpython")
    if not found:
        raise ProgramNotFoundError(
            "nbviz: pvpython not found; install ParaView (apt-get install paraview "
            "python3-paraview) or set NBVIZ_PVPYTHON to its pvpython"
        )
    return found


def check_xvfb() -> None:
    """ParaView (Debian's build is GLX-only) draws into an X server even offscreen: the
    launcher starts a private Xvfb, unless NBVIZ_PARAVIEW_DISPLAY names a display to use."""
    if os.environ.get("NBVIZ_PARAVIEW_DISPLAY") or shutil.which("Xvfb"):
        return
    raise ProgramNotFoundError(
        "nbviz: Xvfb is not installed (apt-get install xvfb); ParaViewSession runs ParaView "
        "in a private Xvfb (it needs an X server even offscreen), or set "
        "NBVIZ_PARAVIEW_DISPLAY to an X display it may use"
    )


def trame_site() -> str:
    """The site-packages dir that holds trame, handed to pvpython on its PYTHONPATH."""
    spec = importlib.util.find_spec("trame_server")
    if spec is None or spec.origin is None:
        raise ProgramNotFoundError(
            "nbviz: ParaViewSession needs trame next to nbviz: pip install 'nbviz[paraview]'"
        )
    return str(Path(spec.origin).parent.parent)


def resolve_data(data: Any) -> list[str]:
    """Paths of the files to open (one file, a list or glob of time steps)."""
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        if os.path.exists(path):
            return [_readable(path)]
        if glob.has_magic(path):
            matches = sorted((m for m in glob.glob(path) if not os.path.isdir(m)), key=_natural)
            if not matches:
                raise DataError(f"nbviz: no file matches {path}{_where(path)}")
            _one_kind(matches, f"{path} matches", "narrow the glob")
            return [_readable(m) for m in matches]
        raise DataError(f"nbviz: {path} does not exist{_where(path)}")
    if isinstance(data, Sequence) and not isinstance(data, (bytes, bytearray)) and data:
        paths = [os.fspath(p) for p in data]
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            raise DataError(
                f"nbviz: {missing[0]} does not exist{_where(missing[0])} "
                f"({len(missing)} of {len(paths)} missing)"
            )
        _one_kind(paths, "the list has", "give one kind")
        return [_readable(p) for p in paths]
    raise DataError(
        f"nbviz: ParaViewSession takes a file path, a list or glob of files, or a numpy array, "
        f"not {type(data).__name__}"
    )


def _glob_of(data: Any) -> str:
    """The absolute glob pattern ``data`` is, or "" (a file, a list, an array)."""
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        if not os.path.exists(path) and glob.has_magic(path):
            return os.path.abspath(path)
    return ""


def _vtk_values(array: Any) -> Any:
    """``array`` with values VTK takes: booleans as 0/1, half floats as float32, masked values
    as NaN; a clear error for complex numbers and objects."""
    import numpy as np

    if isinstance(array, np.ma.MaskedArray):
        return np.ma.filled(array.astype(np.float64), np.nan)
    kind = array.dtype.kind
    if kind == "b":
        return array.astype(np.uint8)
    if kind == "f" and array.dtype.itemsize < 4:
        return array.astype(np.float32)
    if kind == "c":
        raise DataError(
            "nbviz: ParaView shows real numbers; pass the array's .real, .imag or abs() "
            f"instead of complex values ({array.dtype})"
        )
    if kind not in "iuf":
        raise DataError(f"nbviz: a numpy array of numbers is needed, not of {array.dtype}")
    return array


def _natural(path: str) -> list[Any]:
    """Sort key: numbers in file names by value, so step_10 comes after step_9 (not step_1)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def _one_kind(paths: list[str], what: str, fix: str) -> None:
    """The steps of a series must be files of one format: one reader reads them all."""
    kinds = sorted({os.path.splitext(p)[1].lower() for p in paths})
    if len(kinds) > 1:
        raise DataError(
            f"nbviz: {what} files of {len(kinds)} kinds ({', '.join(kinds)}); the steps of a "
            f"series are files of one kind: {fix}"
        )


def _where(path: str) -> str:
    """For a relative path: the directory it was looked up in (the kernel's, often not the
    notebook's)."""
    return "" if os.path.isabs(path) else f" (looked in {os.getcwd()})"


def is_openfoam(path: str) -> bool:
    """An OpenFOAM case as ParaView opens it: the (empty) ``<name>.foam`` or ``.OpenFOAM`` file
    in the case directory, or the case's ``system/controlDict``."""
    name = os.path.basename(path)
    return name.lower().endswith((".foam", ".openfoam")) or (
        name == "controlDict"
        and os.path.basename(os.path.dirname(os.path.abspath(path))) == "system"
    )


def _readable(path: str) -> str:
    """``path`` made absolute, if it is a file this process may read."""
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "system", "controlDict")):
        marker = os.path.join(path, f"{os.path.basename(os.path.abspath(path))}.foam")
        raise DataError(
            f"nbviz: {path} is an OpenFOAM case directory; open it as ParaView does, through "
            f"an empty .foam file in it: create it (touch {marker}) and give that path"
        )
    if os.path.isdir(path):
        raise DataError(
            f"nbviz: {path} is a directory; give a file in it, a list of files, or a glob "
            f"such as {os.path.join(path, '*.vtu')!r} (one time step per file)"
        )
    if not os.access(path, os.R_OK):
        raise DataError(f"nbviz: {path} cannot be read (permission denied)")
    if is_openfoam(path):
        _check_case(path)
    elif os.path.getsize(path) == 0:
        raise DataError(f"nbviz: {path} is empty")
    _check_parts(path)
    return os.path.abspath(path)


def _check_case(path: str) -> None:
    """An OpenFOAM case file must sit in a case directory (``system/controlDict`` there)."""
    case = os.path.dirname(os.path.abspath(path))
    if os.path.basename(path) == "controlDict":
        case = os.path.dirname(case)
    if not os.path.isfile(os.path.join(case, "system", "controlDict")):
        raise DataError(
            f"nbviz: {path} is not in an OpenFOAM case: {case} has no system/controlDict (the "
            ".foam file goes in the case directory, next to system/ and constant/)"
        )


#: VTK XML files that only name other files: a collection (.pvd), a multiblock (.vtm) and
#: the partitioned formats, whose pieces are in files of their own.
INDEX_FILES = (".pvd", ".vtm", ".pvtu", ".pvti", ".pvts", ".pvtr", ".pvtp")


def _check_parts(path: str) -> None:
    """An index file whose parts are missing: say which, before ParaView shows a hole."""
    if not path.lower().endswith(INDEX_FILES):
        return
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DataError(f"nbviz: {path} is not a valid VTK XML file ({exc})") from None
    parts = [e.get("file") or e.get("Source") for e in root.iter() if e.tag in ("DataSet", "Piece")]
    where = os.path.dirname(os.path.abspath(path))
    missing = [p for p in parts if p and not os.path.exists(os.path.join(where, p))]
    if missing:
        raise DataError(
            f"nbviz: {path} refers to {missing[0]}, which does not exist "
            f"({len(missing)} of {len(parts)} parts missing)"
        )


def check_arguments(
    *, size: object, spacing: object, origin: object, ranks: object, regions: object = None
) -> None:
    """Refuse mistyped arguments at once, naming them (before anything starts)."""

    def numbers(value: object, count: int) -> bool:
        return (
            isinstance(value, Sequence)
            and not isinstance(value, str)
            and len(value) == count
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        )

    if not numbers(size, 2) or not all(int(v) > 0 for v in size):  # type: ignore[attr-defined]
        raise ArgumentTypeError(f"size= must be (width, height) in pixels, got {size!r}")
    for name, value in (("spacing", spacing), ("origin", origin)):
        if not numbers(value, 3):
            raise ArgumentTypeError(f"{name}= must be three numbers (x, y, z), got {value!r}")
    if ranks is not None and (not isinstance(ranks, int) or isinstance(ranks, bool)):
        raise ArgumentTypeError(f"ranks= must be an int (or None), got {ranks!r}")
    if regions is not None and (
        isinstance(regions, str)
        or not isinstance(regions, Sequence)
        or not regions
        or not all(isinstance(r, str) for r in regions)
    ):
        raise ArgumentTypeError(
            f'regions= must be a list of region names (["internalMesh", "patch/inlet"]), '
            f"got {regions!r}"
        )


def _explain(exc: NbvizError) -> NbvizError:
    """Turn a pvpython startup failure into the error the user needs to see (what
    ``wait_ready()`` raises and the frame shows): the app's own words when it said what is
    wrong (the data), the fix when pvpython cannot import trame; ``exc`` otherwise."""
    for line in reversed(exc.log_tail.splitlines()):
        if "nbviz-paraview: error:" in line:
            return DataError(
                "nbviz: " + line.split("nbviz-paraview: error:", 1)[1].strip(),
                log_tail=exc.log_tail,
            )
        if "No module named 'trame" in line or "No module named 'wslink" in line:
            return ProgramNotFoundError(
                "nbviz: pvpython cannot import trame: pvpython's Python must match the kernel's "
                "(pip install 'nbviz[paraview]' into a Python of the same version)",
                log_tail=exc.log_tail,
            )
    return exc
