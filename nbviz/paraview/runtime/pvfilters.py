"""The filters and derived fields of a session's scene in nbviz's ParaView app.

Runs *inside pvpython* (a part of ``pvapp.py``, imported relatively); imports nothing of the
nbviz package. :class:`Filters` is a part of ``pvscene.Scene`` (its base class): slices,
clips, contours and thresholds shown on the data, and fields computed from the others
(ParaView's Calculator and Python Calculator) put into the pipeline before what is shown.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from paraview import simple

from .pvargs import Fail
from .pvdata import default_field


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


class Filters:
    """The filters and derived fields of :class:`pvscene.Scene`, which holds the pipeline
    (``source``, ``base``, ``display``, ``view``), ``values`` and the field helpers used here."""

    # what the scene has (set in its __init__; its methods used here are on it too)
    source: Any
    base: Any
    display: Any
    view: Any
    values: dict[str, Any]
    filters: dict[str, Any]
    derived: dict[str, tuple[str, Any]]
    next_filter: int

    def center(self) -> list[float]:
        b = self.source.GetDataInformation().GetBounds()
        return [(b[0] + b[1]) / 2, (b[2] + b[3]) / 2, (b[4] + b[5]) / 2]

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
            if self.association(field, "auto") != "POINTS":
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
            low, high = args.get("range") or self.field_range(field)
            if not float(low) <= float(high):
                raise Fail(f"threshold needs low <= high, got ({low}, {high})")
            proxy.Scalars = [self.association(field, strict=False), field]
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
