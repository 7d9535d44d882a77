"""``ParaViewSession``: traits, lifecycle hooks and the user's API (kernel side).

What it starts is built in ``_spec.py``; the filters' handles are in ``_filters.py``; the
backend (``runtime/``) is driven over a control channel (a Unix socket).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import traitlets as t

from .._channel import Channel, ChannelError
from .._errors import ArgumentTypeError, NbvizError
from .._screenshot import Screenshot
from .._spec import Endpoint
from ..app import WebApp, warn
from . import _spec
from ._checks import DataError
from ._filters import DERIVED, Filter, jsonable

REPRESENTATIONS = ["Surface", "Surface With Edges", "Wireframe", "Points", "Volume", "Outline"]
#: Traits mirrored in the backend, in the order they are applied after a (re)start.
VIEW_TRAITS = (
    "interactive_quality",
    "interactive_ratio",
    "regions",
    "field",
    "association",
    "component",
    "colormap",
    "color_range",
    "representation",
    "opacity",
    "follow",
    "time",
    "camera",
)


class ParaViewSession(WebApp):
    """A live ParaView view of ``data`` (a file, a list/glob of time steps, or a numpy array).

    >>> view = ParaViewSession("run/output.pvd")
    >>> view.field = "temperature"; view.time = 12; view.colormap = "Viridis (matplotlib)"
    >>> view.camera            # follows the user's mouse in the browser
    >>> view.screenshot()      # PNG
    """

    field = t.Unicode(
        "", help='Array the data is coloured by; one of `fields`, or "" for one plain colour.'
    ).tag(sync=True)
    fields = t.List(t.Unicode(), help="Point and cell arrays of the data (read-only).").tag(
        sync=True
    )
    time = t.Int(0, help="Index of the time step shown; `times` has their values.").tag(sync=True)
    times = t.List(t.Float(), help="Time values of the data's steps (read-only).").tag(sync=True)
    colormap = t.Unicode("Cool to Warm", help="ParaView colormap preset; see `colormaps`.").tag(
        sync=True
    )
    color_range = t.Union(
        [t.Unicode(), t.List(t.Float(), minlen=2, maxlen=2)],
        default_value="auto",
        help='Range of the colormap: "auto" (the data range) or [low, high].',
    ).tag(sync=True)
    representation = t.Enum(
        REPRESENTATIONS, default_value="Surface", help="How the data is drawn."
    ).tag(sync=True)
    opacity = t.Float(1.0, min=0.0, max=1.0, help="Opacity of the data, 0 to 1.").tag(sync=True)
    camera = t.Dict(
        help="position, focal_point, view_up, view_angle; follows the mouse in the browser."
    ).tag(sync=True)
    association = t.Enum(
        ["auto", "points", "cells"],
        default_value="auto",
        help="Colour by the point or the cell values of `field` (an OpenFOAM case has both: "
        '"cells" shows the solver\'s own cell values); "auto": points when there are any.',
    ).tag(sync=True)
    component = t.Unicode(
        "magnitude",
        help='What of a vector field colours the data: "magnitude", or a component: "x", '
        '"y", "z" (or its index, "0", "1", ...).',
    ).tag(sync=True)
    follow = t.Bool(
        False,
        help="Pick up the time steps a running solver writes (new OpenFOAM time directories, "
        "new files matching the glob, a rewritten .pvd or .series file), once complete; the "
        "view moves on to the newest step unless another one was picked.",
    ).tag(sync=True)
    regions = t.List(
        t.Unicode(),
        help='Parts of an OpenFOAM case shown: "internalMesh", patches ("patch/movingWall"), '
        'groups ("group/wall"); or blocks of a multiblock data set ("internal", '
        '"boundary/movingWall"); `all_regions` lists them. [] for other data.',
    ).tag(sync=True)

    interactive_quality = t.Int(
        60,
        min=1,
        max=100,
        help="JPEG quality (1-100) of the reduced frames the page gets while the view moves "
        "(a drag) and first after a change; the full-quality still follows once it stops. "
        "Reduced frames also draw big geometry decimated (ParaView's level of detail) at "
        "`interactive_ratio` of the size. 100 with `interactive_ratio` 1: every frame is a "
        "full-quality still.",
    ).tag(sync=True)
    interactive_ratio = t.Float(
        0.5,
        min=0.1,
        max=1.0,
        help="Size of the reduced frames, as a fraction of the view's width and height "
        "(0.1-1); see `interactive_quality`.",
    ).tag(sync=True)

    _route_required = False  # screenshots, fields, filters work with no browser too

    def __init__(
        self,
        data: Any,
        *,
        field: str | None = None,
        time: int | None = None,
        colormap: str | None = None,
        title: str | None = None,
        height: int | str = 600,
        size: tuple[int, int] = (1280, 800),
        timeout: float = 120,
        spacing: Sequence[float] = (1.0, 1.0, 1.0),
        origin: Sequence[float] = (0.0, 0.0, 0.0),
        array_name: str = "values",
        ranks: int | None = None,
        launcher: str = _spec.DEFAULT_LAUNCHER,
        regions: Sequence[str] | None = None,
        case_type: str = "auto",
        follow: bool = False,
        follow_interval: float = 1.0,
        settle: float = 0.5,
        route: Any = "auto",
        start: bool = True,
        slurm: Mapping[str, object] | bool | None = None,
    ) -> None:
        start_with = _spec.session_spec(
            data,
            probe=self._control_answers,
            title=title,
            size=size,
            timeout=timeout,
            spacing=spacing,
            origin=origin,
            array_name=array_name,
            ranks=ranks,
            launcher=launcher,
            regions=regions,
            case_type=case_type,
            follow=follow,
            follow_interval=follow_interval,
            settle=settle,
            slurm=slurm,
        )
        self._array: Any = start_with.array
        self.colormaps: list[str] = []
        self.bounds: list[float] = []
        #: What `regions` may name: an OpenFOAM case's internal mesh, patches and groups, or
        #: the blocks of a multiblock data set.
        self.all_regions: list[str] = []
        self._channel: Channel | None = None
        self._filters: dict[str, Filter] = {}
        self.last_screenshot: Screenshot | None = None
        self._apply_from_backend({"follow": bool(follow)})  # (not a setting to send)
        pending = {"field": field, "time": time, "colormap": colormap}
        self._pending = {k: v for k, v in pending.items() if v is not None}
        self._init_backend(
            start_with.spec, route=route, height=height, title=start_with.title, start=start
        )

    # ------------------------------------------------------------ lifecycle hooks
    def _values_for(self, endpoint: Endpoint, session_id: str) -> dict[str, str]:
        values = super()._values_for(endpoint, session_id)
        if self._array is not None and self._process.session_dir is not None:
            import numpy as np  # only needed for array input

            np.save(self._process.session_dir / "array.npy", np.ascontiguousarray(self._array))
        return values

    def _control_path(self) -> str:
        assert self._process.socket_dir is not None
        return str(self._process.socket_dir / "control.sock")

    def _control_answers(self, _endpoint: Endpoint) -> bool:
        return os.path.exists(self._control_path())

    def _backend_ready(self) -> None:
        channel = Channel(self._control_path(), on_changed=self._on_changed, name="pvpython")
        self._channel = channel
        info = channel.request("describe")
        self.colormaps = list(info["colormaps"])
        self.bounds = list(info["bounds"])
        self.all_regions = list(info["all_regions"])
        wanted = {name: getattr(self, name) for name in VIEW_TRAITS if self._was_set(name)}
        wanted.update(self._pending)
        self._pending = {}
        self._apply_from_backend(
            {"fields": info["fields"], "times": info["times"], **info["values"]}
        )
        # The user's settings (before start, or before a restart) win, one by one: a bad one
        # (time=99) must not stop the others, nor leave the kernel and the view disagreeing.
        problems = []
        for name in sorted(wanted, key=VIEW_TRAITS.index):
            try:
                answer = channel.request("set", jsonable({name: wanted[name]}))
                self._apply_from_backend({**answer["values"], "camera": answer["camera"]})
            except ChannelError as exc:
                problems.append(exc.message.removeprefix("nbviz: "))
        if problems:
            self._notice = "nbviz: " + "; ".join(problems)
            warn(self._notice)
        self._filters = {}

    def _backend_gone(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    def _was_set(self, name: str) -> bool:
        return name in getattr(self, "_user_set", set())

    # ------------------------------------------------------------ kernel -> backend
    @t.observe(*VIEW_TRAITS)
    def _push_to_backend(self, change: dict[str, Any]) -> None:
        if self._changed_by_backend():
            return
        name = change["name"]
        self.__dict__.setdefault("_user_set", set()).add(name)
        if self._channel is None:
            self._pending[name] = change["new"]
            return
        try:
            answer = self._channel.request("set", {name: jsonable(change["new"])})
        except ChannelError as exc:
            self._apply_from_backend({name: change["old"]})
            raise DataError(exc.message) from None
        self._apply_from_backend({**answer["values"], "camera": answer["camera"]})
        if name == "regions":  # other parts of the data: other bounds
            self.bounds = list(self._channel.request("list")["bounds"])

    @t.validate("field")
    def _valid_field(self, proposal: dict[str, Any]) -> str:
        value = str(proposal["value"])
        if value and value not in self.fields and not self._changed_by_backend():
            raise DataError(f"nbviz: no field {value!r}; fields: {', '.join(self.fields)}")
        return value

    @t.validate("time")
    def _valid_time(self, proposal: dict[str, Any]) -> int:
        value = int(proposal["value"])
        count = max(len(self.times), 1)
        if not 0 <= value < count and not self._changed_by_backend():
            raise DataError(
                f"nbviz: time step {value} does not exist; there are {count} (0..{count - 1})"
            )
        return value

    @t.validate("colormap")
    def _valid_colormap(self, proposal: dict[str, Any]) -> str:
        value = str(proposal["value"])
        if self.colormaps and value not in self.colormaps:
            close = [c for c in self.colormaps if value.lower() in c.lower()][:5]
            hint = (
                f"; did you mean {', '.join(map(repr, close))}?"
                if close
                else "; see view.colormaps"
            )
            raise DataError(f"nbviz: unknown colormap {value!r}{hint}")
        return value

    @t.validate("color_range")
    def _valid_range(self, proposal: dict[str, Any]) -> Any:
        value = proposal["value"]
        if isinstance(value, str):
            if value != "auto":
                raise DataError(f'nbviz: color_range is "auto" or (low, high), not {value!r}')
            return value
        low, high = (float(v) for v in value)
        if not low < high:
            raise DataError(f"nbviz: color_range needs low < high, got {value!r}")
        return [low, high]

    # ------------------------------------------------------------ backend -> kernel
    def _on_changed(self, values: dict[str, Any]) -> None:
        self._apply_from_backend(values)

    def _apply_from_backend(self, values: dict[str, Any]) -> None:
        # (the base class's echo guard: these are not sent back to pvpython)
        with self._from_backend(), self.hold_sync():
            for name, value in values.items():
                if name in ("fields", "times", *VIEW_TRAITS) and value is not None:
                    setattr(self, name, value)

    # ------------------------------------------------------------ requests
    def _request(self, name: str, args: dict[str, Any] | None = None, timeout: float = 120) -> Any:
        if self._channel is None and self.status == "starting":
            self.wait_ready()
        if self._channel is None:
            raise NbvizError(f"nbviz: the ParaView session is {self.status}; restart() it")
        try:
            return self._channel.request(name, args, timeout=timeout)
        except ChannelError as exc:
            raise DataError(exc.message) from None

    def refresh(self) -> int:
        """Look for new time steps now (as ``follow=True`` does every ``follow_interval``
        seconds); returns how many were added. Steps still being written are left for later."""
        answer = self._request("refresh")
        self._apply_from_backend({"times": answer["times"], **answer["values"]})
        return int(answer["added"])

    def partitions(self) -> list[int]:
        """The ranks that hold a piece of the data: ``[0]``, or ``[0, 1]`` with ``ranks=2``."""
        return list(self._request("partitions"))

    def request(self, name: str, **args: Any) -> Any:
        """Ask the backend: ``"list"`` gives sources, fields, times, bounds and current values."""
        return self._request(name, jsonable(args))

    def screenshot(self, width: int | None = None, height: int | None = None) -> Screenshot:
        """A PNG of the view as ParaView renders it (server side, no browser needed); ``width``
        and ``height`` in pixels (1 to 16384), both or neither (the view's size)."""
        if width is not None or height is not None:
            sizes = (width, height)
            if not all(
                isinstance(v, numbers.Integral) and not isinstance(v, bool) and 0 < v <= 16384
                for v in sizes
            ):
                raise ArgumentTypeError(
                    "nbviz: screenshot() takes width and height in pixels, both, each from 1 "
                    f"to 16384, got width={width!r}, height={height!r}"
                )
        if self._channel is None and self.status == "starting":
            self.wait_ready()
        if self._process.session_dir is None:
            raise NbvizError(f"nbviz: the ParaView session is {self.status}; restart() it")
        path = str(self._process.session_dir / "screenshot.png")
        args: dict[str, Any] = {"path": path}
        if width is not None and height is not None:
            args.update(width=int(width), height=int(height))
        self._request("screenshot", args)
        shot = Screenshot(Path(path).read_bytes())
        self.last_screenshot = shot
        self._set_static_picture(shot.data)  # the picture a saved notebook shows
        return shot

    def reset_camera(self) -> None:
        """Fit the data in the view."""
        self._apply_from_backend({"camera": self._request("reset_camera")})

    def _filter(self, kind: str, args: dict[str, Any]) -> Filter:
        ident = self._request("filter", {"kind": kind, "args": jsonable(args)})
        handle = Filter(self, ident, kind, args)
        self._filters[ident] = handle
        self._refresh_fields(kind)
        return handle

    def _refresh_fields(self, kind: str) -> None:
        """A derived field came, went or changed: the data's fields (and the one shown)."""
        if kind in DERIVED:
            listing = self._request("list")
            self._apply_from_backend({"fields": listing["fields"], **listing["values"]})

    def calculator(
        self, expression: str, name: str = "result", *, association: str = "points"
    ) -> Filter:
        """A new field ``name`` computed by ParaView's Calculator on every time step, e.g.
        ``view.calculator("mag(U)", name="speed")``, ``"U_X*p"``, ``"sqrt(p^2)"``, ``"coordsY"``.

        It joins `fields`: colour by it, contour or threshold it, follow it over time.
        ``association``: "points" or "cells" (from the point or the cell values of the fields).
        Returns a `Filter`: ``.set(expression=..., name=...)``, ``.remove()``.
        """
        args = {"expression": expression, "name": name, "association": association}
        return self._filter("calculator", args)

    def python_calculator(
        self, expression: str, name: str = "result", *, association: str = "points"
    ) -> Filter:
        """A new field ``name`` computed by ParaView's Python Calculator: a numpy expression
        over the fields, with VTK's numpy_interface functions, e.g. ``"mag(U)"``,
        ``"U[:, 0] * p"``, ``"gradient(p)"``, ``"p - mean(p)"``. Otherwise as `calculator`."""
        args = {"expression": expression, "name": name, "association": association}
        return self._filter("python_calculator", args)

    def data_range(self, field: str | None = None, component: str | None = None) -> list[float]:
        """[low, high] of ``field`` (default: the one shown) at the time step shown: of its
        magnitude, or of ``component`` ("x", "y", "z")."""
        args = {"field": field, **({"component": component} if component else {})}
        return list(self._request("range", args))

    def slice(
        self, normal: Sequence[float] = (0, 0, 1), origin: Sequence[float] | None = None
    ) -> Filter:
        """Cut the data with a plane (through the centre by default)."""
        return self._filter("slice", {"normal": normal, **({"origin": origin} if origin else {})})

    def clip(
        self, normal: Sequence[float] = (1, 0, 0), origin: Sequence[float] | None = None
    ) -> Filter:
        """Keep one side of a plane."""
        return self._filter("clip", {"normal": normal, **({"origin": origin} if origin else {})})

    def contour(
        self, values: float | Sequence[float] | None = None, field: str | None = None
    ) -> Filter:
        """Iso-surfaces of a point field (the middle of its range by default)."""
        return self._filter("contour", {"values": values, **({"field": field} if field else {})})

    def threshold(self, low: float, high: float, field: str | None = None) -> Filter:
        """Keep the cells whose ``field`` lies in [low, high]."""
        return self._filter(
            "threshold", {"range": [low, high], **({"field": field} if field else {})}
        )

    @property
    def filters(self) -> list[Filter]:
        return list(self._filters.values())
