"""The scene of nbviz's ParaView app: the ParaView pipeline and view of one session, and its values.

Runs *inside pvpython* (a part of ``pvapp.py``, imported relatively); imports nothing of the
nbviz package.
"""

from __future__ import annotations

import math
import time
from typing import Any

from paraview import servermanager, simple

from . import pvdata
from .pvargs import ARGS, Fail, log
from .pvdata import (
    block_paths,
    default_field,
    open_data,
    openfoam_reader,
    process_ids,
    reader_times,
    set_regions,
)
from .pvfilters import Filters
from .pvfollow import complete

REPRESENTATIONS = ["Surface", "Surface With Edges", "Wireframe", "Points", "Volume", "Outline"]


def preset_names() -> list[str]:
    presets = servermanager.vtkSMTransferFunctionPresets.GetInstance()
    return sorted({presets.GetPresetName(i) for i in range(presets.GetNumberOfPresets())})


class Scene(Filters):
    """The ParaView objects of one session and the state the kernel sees (its filters and
    derived fields: :class:`pvfilters.Filters`)."""

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
        self.frames: Any = None  # what sends the page its images (pvframes.Frames)
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
        #: the user chose the field (or "" for one plain colour): new arrays do not change it
        self.field_chosen = False
        self.known_fields = self.fields()  # (what the kernel was told: see update_fields)
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

    def update_fields(self) -> bool:
        """The arrays of the step shown, read again: a new step (a solver's first one, or one
        writing more arrays) may bring arrays the first did not have. When no field was chosen
        yet and nothing was coloured, the first choice is shown as at the start. Returns
        whether the list of fields changed (the kernel and the page must be told)."""
        self.source.UpdatePipeline(self.view.ViewTime)
        fields = self.fields()
        if fields == self.known_fields:
            return False
        self.known_fields = fields
        if not self.values["field"] and not self.field_chosen:
            field = default_field(self.source, fields)
            if field:
                try:
                    self.set_field(field)
                except Fail:  # (association="points" chosen, a cell field): stay plain
                    self.values["field"] = ""
        return True

    def association(self, field: str, wanted: str | None = None, strict: bool = True) -> str:
        """POINTS or CELLS: where ``field`` is taken from (``wanted``: the view's choice).
        ``strict``: a field without the values asked for ("points" of cell data) is an error;
        otherwise the values it has are taken (a filter's or a range's field)."""
        wanted = wanted or self.values["association"]
        points = field in self.source.PointData.keys()  # noqa: SIM118
        cells = field in self.source.CellData.keys()  # noqa: SIM118
        if not (points or cells):
            raise Fail(f"no field {field!r}; fields: {', '.join(self.fields()) or 'none'}")
        if (
            strict
            and wanted in ("points", "cells")
            and not (points if wanted == "points" else cells)
        ):
            has, other = ("cell", "cells") if wanted == "points" else ("point", "points")
            raise Fail(
                f"field {field!r} has no {wanted[:-1]} data (it is {has} data): "
                f"association={other!r} (or 'auto') shows it"
            )
        if (wanted == "cells" and cells) or not points:
            return "CELLS"
        return "POINTS"

    def describe(self) -> dict[str, Any]:
        bounds = self.source.GetDataInformation().GetBounds()
        foam = openfoam_reader(self.reader)
        return {
            "all_regions": list(foam.GetProperty("MeshRegions").GetAvailable())
            if foam
            else self.blocks,
            "case_type": pvdata.opened_case_type or None,
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
        where = self.association(field, strict=False)
        arrays = self.source.PointData if where == "POINTS" else self.source.CellData
        return int(arrays[field].GetNumberOfComponents())

    def apply_component(self, value: str, strict: bool = True) -> None:
        """Colour a vector field by its magnitude or one component ("x", "y", "z", "0", ...)."""
        value = str(value).lower()
        index = {"x": 0, "y": 1, "z": 2}.get(value, int(value) if value.isdigit() else None)
        if value != "magnitude" and index is None:
            raise Fail(f'component is "magnitude", "x", "y", "z" or an index, not {value!r}')
        count = self.components(self.values["field"])
        if index is not None and self.values["field"] and index >= count:
            if strict:
                what = "one component (a scalar)" if count == 1 else f"{count} components"
                raise Fail(
                    f"field {self.values['field']!r} has {what}; component {value!r} does not "
                    'exist (component="magnitude" shows it as it is)'
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
        self.update_fields()  # (this step may hold other arrays; a first field may come)
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
        frames = self.frames
        try:
            frames.configure(quality=value)
        except ValueError as exc:
            raise Fail(str(exc)) from None
        self.values["interactive_quality"] = frames.quality

    def set_interactive_ratio(self, value: Any) -> None:
        frames = self.frames
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
        if key == "field":
            self.field_chosen = True

    # ranges
    def field_range(self, field: str, component: str | None = None) -> tuple[float, float]:
        """The range of ``field`` at the time shown: of its magnitude, or of a component."""
        self.source.UpdatePipeline(self.view.ViewTime)  # (its information: of the last update)
        where = self.association(field, strict=False)
        arrays = self.source.PointData if where == "POINTS" else self.source.CellData
        index = {"x": 0, "y": 1, "z": 2}.get(str(component).lower(), -1)
        if str(component).isdigit():
            index = int(str(component))
        if arrays[field].GetNumberOfComponents() == 1:
            index = 0
        low, high = arrays[field].GetRange(index)
        return float(low), float(high)

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
