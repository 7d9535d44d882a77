"""The iframe widget every nbviz object is: url, status, progress, error, two-way path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anywidget
import traitlets as t


def _asset(name: str) -> Path:
    """The front-end file: packaged copy in a wheel, ``js/`` in a source checkout."""
    packaged = Path(__file__).with_name("static") / name
    return packaged if packaged.exists() else Path(__file__).parent.parent / "js" / name


class Frame(anywidget.AnyWidget):
    """An iframe that shows a backend through the Jupyter server, with a status bar.

    The kernel sets ``url``/``status``/``message``/``error``; the browser reports ``path`` and
    ``page_title``. Subclasses connect it to a backend (see :class:`nbviz.WebApp`).
    """

    _esm = _asset("frame.js")
    _css = _asset("frame.css")

    url = t.Unicode("", help="Where the frame loads the backend's root (see route).").tag(sync=True)
    route = t.Unicode(
        "proxy", help="How the browser reaches the backend: proxy, absolute, relative or direct."
    ).tag(sync=True)
    status = t.Enum(
        ["starting", "ready", "crashed", "stopped"],
        default_value="stopped",
        help="Lifecycle state of the backend.",
    ).tag(sync=True)
    message = t.Unicode("", help="Progress or status text shown while the backend starts.").tag(
        sync=True
    )
    error = t.Unicode("", help="Why the backend failed, with the last lines of its output.").tag(
        sync=True
    )
    height = t.Union(
        [t.Int(), t.Unicode()], default_value=480, help="Height of the frame: pixels or CSS length."
    ).tag(sync=True)
    title = t.Unicode("", help="Label shown in the frame's bar.").tag(sync=True)
    page_title = t.Unicode(
        "", help="The document title of the page in the frame (from the browser)."
    ).tag(sync=True)
    path = t.Unicode(
        "/",
        help="Path of the page in the frame, relative to the backend's root; two-way: set it to "
        "navigate, read it to see where the user went.",
    ).tag(sync=True)
    started_at = t.Float(0.0, help="When the backend was started (epoch seconds).").tag(sync=True)
    timeout = t.Float(30.0, help="Seconds the backend gets to become ready.").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_msg(self._handle_frame_message)

    @t.validate("path")
    def _valid_path(self, proposal: dict[str, Any]) -> str:
        path = str(proposal["value"]) or "/"
        return path if path.startswith("/") else "/" + path

    def _handle_frame_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("action") in self._frame_actions:
            getattr(self, self._frame_actions[content["action"]])()

    #: Messages the front end may send -> the method they call.
    _frame_actions: dict[str, str] = {}
