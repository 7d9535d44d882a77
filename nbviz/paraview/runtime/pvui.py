"""The page of nbviz's ParaView app: a compact toolbar (field menu, time slider, reset) over
trame's remote view of the scene.

Runs *inside pvpython* (a part of ``pvapp.py``, imported relatively); imports nothing of the
nbviz package. The page's values are trame state that ``pvapp.py`` keeps: ``fields``,
``field``, ``times``, ``time_index``, ``startup_error``, and the remote view's
``interactive_quality`` and ``interactive_ratio``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trame.ui.vuetify3 import SinglePageLayout
from trame.widgets import html
from trame.widgets import paraview as pv_widgets
from trame.widgets import vuetify3 as v3


def page(server: Any, title: str, scene: Any, reset_camera: Callable[[], None]) -> None:
    """The page of ``server``; with no ``scene`` (it failed to load) the startup error."""
    ctrl = server.controller
    with SinglePageLayout(server, full_height=True) as layout:
        layout.title.set_text(title)  # the browser tab's title; the cell's bar shows it already
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
            v3.VBtn(
                icon="mdi-crop-free", click=reset_camera, density="compact", classes="nbviz-reset"
            )
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
