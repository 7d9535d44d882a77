"""The iframe widget every nbviz object is: url, status, progress, error, two-way path."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

import anywidget
import traitlets as t


def static_bundle(title: str, kind: str, png: bytes | None) -> dict[str, str]:
    """What a notebook viewer without the live widget shows: the picture, or a card."""
    name = html.escape(title)
    if png is None:
        return {
            "text/html": (
                '<div style="border:1px solid #ccc;border-radius:4px;padding:10px 14px;'
                'font-family:sans-serif;color:#444;background:#fafafa">'
                f"<b>{name}</b> &mdash; a live nbviz {html.escape(kind)}; "
                "run the notebook in Jupyter to see it.</div>"
            )
        }
    encoded = base64.b64encode(png).decode()
    return {
        "image/png": encoded,
        "text/html": (
            f'<figure style="margin:0"><img src="data:image/png;base64,{encoded}" '
            f'alt="{name}" style="max-width:100%"/>'
            f'<figcaption style="font-family:sans-serif;color:#666;font-size:12px">{name} '
            f"&mdash; last picture of a live nbviz {html.escape(kind)}</figcaption></figure>"
        ),
    }


#: A frame height CSS takes: a number (pixels), a length ("60vh", "12.5em") or a calc().
CSS_HEIGHT = re.compile(
    r"\d+(\.\d+)?(px|em|rem|ex|ch|lh|vh|vw|vmin|vmax|svh|lvh|dvh|cm|mm|in|pt|pc|%)?"
    r"|(calc|min|max|clamp)\([^;{}]+\)"
)


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
    queue = t.Dict(
        help="The backend's Slurm job while it is not running yet (slurm=): id, state, "
        "reason, nodes; empty otherwise. The frame then counts time in the queue, not toward "
        "the start timeout."
    ).tag(sync=True)
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
    frame_size = t.List(
        t.Int(), help="Size of the frame in the page, [width, height] pixels (from the browser)."
    ).tag(sync=True)
    serving = t.Bool(
        False,
        help="The backend serves its page while it starts: the frame loads it hidden, to show "
        "it as soon as the backend is ready.",
    ).tag(sync=True)
    started_at = t.Float(0.0, help="When the backend was started (epoch seconds).").tag(sync=True)
    timeout = t.Float(30.0, help="Seconds the backend gets to become ready.").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_msg(self._handle_frame_message)
        self._display_id = ""
        self._static_png: bytes | None = None

    # ------------------------------------------------------------ static fallback
    # A notebook saved with an nbviz output shows a picture on GitHub, nbviewer and in
    # `jupyter nbconvert --to html`: next to the live widget, each output carries an HTML
    # card, and the latest server-side screenshot once there is one (updated in place).
    def _ipython_display_(self) -> None:
        from IPython.display import display

        if not self._display_id:
            self._display_id = f"nbviz-{self.model_id}"
        display(self._bundle(), raw=True, display_id=self._display_id)

    def _bundle(self) -> dict[str, Any]:
        bundle = self._repr_mimebundle_()
        data = dict(bundle[0] if isinstance(bundle, tuple) else bundle or {})
        data.update(
            static_bundle(self.title or type(self).__name__, type(self).__name__, self._static_png)
        )
        return data

    def _set_static_picture(self, png: bytes) -> None:
        """Make ``png`` the picture a saved notebook shows for this output (re-renders it)."""
        self._static_png = png
        if self._display_id:
            from IPython.display import update_display

            update_display(self._bundle(), raw=True, display_id=self._display_id)

    @t.validate("height")
    def _valid_height(self, proposal: dict[str, Any]) -> int | str:
        value = proposal["value"]
        if isinstance(value, int) and value > 0:
            return value
        if isinstance(value, str) and CSS_HEIGHT.fullmatch(value.strip()):
            return value
        raise t.TraitError(
            "nbviz: height must be pixels (an int above 0) or a CSS length such as '60vh' or "
            f"'calc(100vh - 80px)', got {value!r}"
        )

    @t.validate("path")
    def _valid_path(self, proposal: dict[str, Any]) -> str:
        path = str(proposal["value"]) or "/"
        return path if path.startswith("/") else "/" + path

    def _handle_frame_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("action") in self._frame_actions:
            getattr(self, self._frame_actions[content["action"]])()

    #: Messages the front end may send -> the method they call.
    _frame_actions: dict[str, str] = {}
