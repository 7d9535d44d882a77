"""Following a running solver in nbviz's ParaView app: new time steps, once complete.

Runs *inside pvpython* (a part of ``pvapp.py``, imported relatively); imports nothing of the
nbviz package.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

from paraview import simple

from . import pvdata
from .pvargs import ARGS, log
from .pvdata import openfoam_reader, reader_times

if TYPE_CHECKING:
    from .pvscene import Scene

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
        if pvdata.opened_case_type == "decomposed":
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
