"""The frames nbviz's ParaView app sends the page: runs *inside pvpython*, a part of pvapp.py.

After a change (from the kernel or from the app's own menus) the page gets a *reduced* frame
first -- ParaView's decimated level-of-detail (LOD) geometry, a smaller image, a lower JPEG
quality: what trame's remote view sends while the mouse moves -- and the full-quality still
once no further change came. A burst of changes (a slider moved from the kernel) is rendered
once, when it pauses; a change superseded before its still was rendered never gets one.

The images go out through trame-vtk's image delivery (``ParaViewWebPublishImageDelivery``):
this module only sets its per-view quality and size before asking it for a push, and notes
when each image was rendered and published (``records``: what ``view.request("frames")``
returns, the breakdown ``benchmarks/paraview_interaction.py`` reports).

This file imports nothing of nbviz nor of ParaView (pvpython's objects come in as arguments).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

#: Geometry bigger than this (MB, as ParaView counts it) is drawn decimated in reduced frames.
LOD_THRESHOLD_MB = 10.0
#: ParaView's LODThreshold that turns its level of detail off.
NO_LOD_MB = 1e9
#: Seconds without a further change before a change is rendered (a burst is rendered once).
QUIET = 0.015
#: A burst that goes on still gets a reduced frame this often (seconds), so the page follows.
BURST_FRAME = 0.25
#: How often to look whether the encoder thread has published the reduced frame (seconds).
POLL = 0.004
#: Give up waiting for a reduced frame's JPEG after this long (seconds) and send the still.
ENCODE_TIMEOUT = 2.0
#: Changes that keep the geometry (only colours or the camera): the LOD geometry stays valid.
KEEPS_GEOMETRY = frozenset(
    ("field", "colormap", "color_range", "component", "association", "opacity", "camera")
)
#: Settings of the frames themselves: they change no picture.
FRAME_SETTINGS = frozenset(("interactive_quality", "interactive_ratio"))
IMAGE_TOPIC = "viewport.image.push.subscription"


def check_quality(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= 100:
        raise ValueError(f"interactive_quality is a JPEG quality from 1 to 100, not {value!r}")
    return int(value)


def check_ratio(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.1 <= value <= 1:
        raise ValueError(f"interactive_ratio is a scale from 0.1 to 1, not {value!r}")
    return float(value)


class Frames:
    """Sends the frames of one ParaView view (``view``: its proxy) to the page.

    ``delivery()`` gives trame-vtk's image delivery protocol once the server runs (None
    before); ``set_page_quality(quality, ratio)`` hands the page's remote view the settings
    of the frames it asks for while the mouse moves; ``sending()`` says whether messages
    published are still being written to the websocket (the still's render would hold them
    back: it blocks the event loop); ``fit_overlays(ratio)`` scales what ParaView draws in
    pixels (the colour legend's fonts) to an image ``ratio`` of the view's size.
    """

    def __init__(
        self,
        view: Any,
        delivery: Callable[[], Any],
        set_page_quality: Callable[[int, float], None],
        quality: int = 60,
        ratio: float = 0.5,
        sending: Callable[[], bool] = lambda: False,
        fit_overlays: Callable[[float], None] = lambda ratio: None,
    ) -> None:
        self.view = view
        self._sending = sending
        self._fit_overlays = fit_overlays
        self.overlay_ratio = 1.0
        self._delivery = delivery
        self._set_page_quality = set_page_quality
        self.quality, self.ratio = 100, 1.0
        self.generation = 0  # one more with every change
        self.burst_start: float | None = None  # the first change not yet rendered
        self.last_frame = 0.0
        self.keeps_geometry = True  # every change of the burst kept the geometry
        self.lod_ready = False  # ParaView has decimated the current geometry
        self.timer: asyncio.TimerHandle | None = None
        #: the page's own (still) quality and ratio while a reduced frame's are in place
        self.page_settings: tuple[Any, Any] | None = None
        self.records: deque[dict[str, Any]] = deque(maxlen=400)
        self._next: dict[str, Any] = {"kind": "page"}  # what the next image is
        if hasattr(view, "EnableRenderOnInteraction"):
            # a mouse event moves the camera and nothing more: the frames of a drag are
            # rendered by trame-vtk's animation loop, at the rate the renders allow (trame's
            # own view update does this, on its first call)
            view.EnableRenderOnInteraction = 0
        self.configure(quality, ratio)

    # ------------------------------------------------------------ settings
    @property
    def adaptive(self) -> bool:
        """Reduced frames are sent (quality 100 at ratio 1: every frame is a full still)."""
        return self.quality < 100 or self.ratio < 1

    def configure(self, quality: Any = None, ratio: Any = None) -> None:
        if quality is not None:
            self.quality = check_quality(quality)
        if ratio is not None:
            self.ratio = check_ratio(ratio)
        if hasattr(self.view, "LODThreshold"):
            self.view.LODThreshold = LOD_THRESHOLD_MB if self.adaptive else NO_LOD_MB
        self._set_page_quality(self.quality, self.ratio)

    # ------------------------------------------------------------ changes
    def changed(self, keeps_geometry: bool = False) -> None:
        """The picture changed: send its frames once the changes pause (``QUIET``)."""
        now = time.time()
        self.generation += 1
        if not keeps_geometry:
            self.lod_ready = False
        if self.burst_start is None:
            self.burst_start, self.keeps_geometry = now, keeps_geometry
        else:
            self.keeps_geometry = self.keeps_geometry and keeps_geometry
        if self.timer is not None:
            self.timer.cancel()
        waited = now - max(self.burst_start, self.last_frame)
        delay = 0.0 if waited >= BURST_FRAME else QUIET
        self.timer = asyncio.get_event_loop().call_later(delay, self._send)

    def _target(self) -> tuple[Any, str]:
        """The delivery protocol and our view's id, if a page shows the view."""
        protocol = self._delivery()
        view_id = self.view.GetGlobalIDAsString()
        if protocol is None or view_id not in getattr(protocol, "tracking_views", {}):
            return None, view_id
        return protocol, view_id

    def _send(self) -> None:
        self.timer = None
        protocol, view_id = self._target()
        started, self.burst_start = self.burst_start, None
        keeps_geometry, self.keeps_geometry = self.keeps_geometry, True
        self.last_frame = time.time()
        if protocol is None or protocol.views_in_animations:
            # no page (nothing to draw for), or the user drags: the drag's frames show the
            # change, and its release brings the still (the page's settings are in place)
            self.page_settings = None
            return
        generation = self.generation
        # a reduced frame needs ParaView's decimated geometry: decimating a new one takes
        # longer than the full render, so after a new geometry the still comes alone
        if self.adaptive and keeps_geometry and self.lod_ready:
            self._reduce(protocol, view_id)
            self._push(protocol, view_id, "reduced", started, generation)
            self._when_published(
                protocol, view_id, time.time(), lambda: self._still(started, generation)
            )
        else:
            self._restore(protocol, view_id)
            self._push(protocol, view_id, "still", started, generation)

    def _reduce(self, protocol: Any, view_id: str) -> None:
        info = protocol.tracking_views[view_id]
        if self.page_settings is None:  # (not when the last reduced frame is still going out)
            self.page_settings = info.get("quality", 100), info.get("ratio", 1)
        info["quality"], info["ratio"] = self.quality, self.ratio
        if hasattr(self.view, "UseInteractiveRenderingForScreenshots"):
            self.view.UseInteractiveRenderingForScreenshots = 1

    def _restore(self, protocol: Any, view_id: str) -> None:
        """The page's own settings again, after a reduced frame."""
        saved, self.page_settings = self.page_settings, None
        if saved is None:
            return
        info = protocol.tracking_views[view_id]
        info["quality"], info["ratio"] = saved
        if hasattr(self.view, "UseInteractiveRenderingForScreenshots"):
            self.view.UseInteractiveRenderingForScreenshots = 0

    def _still(self, started: float | None, generation: int) -> None:
        if generation != self.generation:
            return  # superseded: the newer change's frames restore the settings, send a still
        protocol, view_id = self._target()
        if protocol is None or protocol.views_in_animations:
            self.page_settings = None  # gone, or a drag took over (the page's settings now)
            return
        self._restore(protocol, view_id)
        self._push(protocol, view_id, "still", started, generation)

    def _push(
        self, protocol: Any, view_id: str, kind: str, started: float | None, generation: int
    ) -> None:
        self._next = {"kind": kind, "changed": started, "generation": generation}
        try:
            protocol.image_push({"view": view_id})  # renders once; JPEG on trame-vtk's thread
        finally:
            self._next = {"kind": "page"}
        if kind == "reduced":
            self.lod_ready = True

    def _when_published(
        self, protocol: Any, view_id: str, since: float, then: Callable[[], None]
    ) -> None:
        """Call ``then`` once the image being encoded went out (or after ENCODE_TIMEOUT)."""
        busy = protocol.last_stale_time.get(view_id) or self._sending()
        if busy and time.time() - since < ENCODE_TIMEOUT:
            asyncio.get_event_loop().call_later(
                POLL, self._when_published, protocol, view_id, since, then
            )
            return
        then()

    def warm_up(self) -> None:
        """Decimate the geometry now (once, while idle), so that the first reduced frame does
        not wait for it: the drag's first frames and the next change's reduced frame."""
        idle = time.time() - self.last_frame > 1.0
        if self.adaptive and not self.lod_ready and self.timer is None and idle:
            protocol, _view_id = self._target()
            if protocol is not None and not protocol.views_in_animations:
                started = time.time()
                self.view.InteractiveRender()
                self.records.append(
                    {"kind": "lod", "render": [started, time.time()], "generation": self.generation}
                )
                self.lod_ready = True

    # ------------------------------------------------------------ what went out
    def watch(self, protocol: Any) -> None:
        """Note when each image is rendered and published (wraps two of the protocol's
        methods on this instance only)."""
        still_render, publish = protocol.still_render, protocol.publish

        def timed_still_render(options: dict[str, Any]) -> Any:
            begun = time.time()
            size = options.get("size")
            ours = str(options.get("view")) in ("-1", self.view.GetGlobalIDAsString())
            if ours and size and min(size) > 10 and list(self.view.ViewSize) != list(size):
                # resized here, trame-vtk renders once; resized by it, its check of the size
                # sees the last *encoded* image (of the old size) and renders again and again
                self.view.ViewSize = list(size)
            full = protocol.tracking_views.get(self.view.GetGlobalIDAsString(), {})
            if ours and size and full.get("originalSize"):
                ratio = min(1.0, size[0] / max(1, full["originalSize"][0]))
                if abs(ratio - self.overlay_ratio) > 0.01:
                    self._fit_overlays(ratio)  # a legend of the same size in a smaller image
                    self.overlay_ratio = ratio
            reply = still_render(options)
            open_ = self.records[-1] if self.records else None
            if open_ is not None and (
                "published" in open_ or open_["kind"] == "lod" or begun - open_["render"][0] > 2
            ):
                open_ = None
            # (a re-push of an image still being encoded renders nothing: no new record)
            if reply and open_ is None and (reply.get("image") is not None or reply.get("stale")):
                record = dict(self._next, render=[begun, time.time()])
                record["quality"] = options.get("quality")
                self.records.append(record)
            return reply

        def noted_publish(topic: str, event: Any) -> Any:
            if topic == IMAGE_TOPIC and isinstance(event, dict):
                record = self.records[-1] if self.records else None
                if record is not None and "published" not in record and record["kind"] != "lod":
                    record["published"] = time.time()
                    record["bytes"] = event.get("memsize")
                    record["size"] = event.get("size")
            return publish(topic, event)

        protocol.still_render = timed_still_render
        protocol.publish = noted_publish
        self.keep_frame_rate(protocol)

    @staticmethod
    def keep_frame_rate(protocol: Any) -> None:
        """trame-vtk's render loop for a drag aims at a frame rate it adapts to the renders,
        from ``min_frame_rate`` (12) up; but one frame over a second late (a busy machine)
        sets its aim to 1 frame/s, and it climbs back by one frame/s per frame: seconds of
        drag at a few frames/s. Keep the aim at ``min_frame_rate`` or above."""
        animate = protocol.animate

        def steady_animate(render_all_views: bool = True) -> Any:
            protocol.target_frame_rate = max(protocol.target_frame_rate, protocol.min_frame_rate)
            return animate(render_all_views)

        protocol.animate = steady_animate
