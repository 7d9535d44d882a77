"""A ParaView trame app written by hand, as a user would: the baseline of benchmarks/paraview.py.

    pvpython --force-offscreen-rendering trame_paraview.py --data FILE [--port 0]

It shows FILE coloured by its first point array in trame's ``VtkRemoteView``, with a field menu
and a colormap state, and serves on 127.0.0.1 (``--port 0``: trame prints the URL it got).
Debian's ParaView is GLX-only: run it under an X server (Xvfb) with ``DISPLAY`` set. trame comes
from a venv: ``PYTHONPATH=<venv>/lib/python3.11/site-packages``.
"""

import argparse
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--data", required=True)
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--width", type=int, default=1280)
parser.add_argument("--height", type=int, default=800)
args = parser.parse_args()
sys.argv = sys.argv[:1]  # ParaView parses sys.argv on import

from paraview import simple  # noqa: E402
from trame.app import get_server  # noqa: E402
from trame.ui.vuetify3 import SinglePageLayout  # noqa: E402
from trame.widgets import paraview as pv_widgets  # noqa: E402
from trame.widgets import vuetify3 as v3  # noqa: E402

server = get_server(client_type="vue3")
state, ctrl = server.state, server.controller

reader = simple.OpenDataFile(args.data)
view = simple.GetActiveViewOrCreate("RenderView")
view.ViewSize = [args.width, args.height]
display = simple.Show(reader, view)
state.fields = list(reader.PointData.keys())
state.field = state.fields[0]
state.colormap = "Cool to Warm"


def color_by(field: str) -> None:
    simple.ColorBy(display, ("POINTS", field))
    simple.GetColorTransferFunction(field).ApplyPreset(state.colormap, True)
    display.RescaleTransferFunctionToDataRange(True, False)
    display.SetScalarBarVisibility(view, True)


color_by(state.field)
simple.ResetCamera(view)


@state.change("field")
def on_field(field: str, **_: object) -> None:
    color_by(field)
    ctrl.view_update()


@state.change("colormap")
def on_colormap(colormap: str, **_: object) -> None:
    simple.GetColorTransferFunction(state.field).ApplyPreset(colormap, True)
    ctrl.view_update()


with SinglePageLayout(server, full_height=True) as layout:
    layout.title.set_text("ParaView")
    with layout.toolbar as toolbar:
        toolbar.density = "compact"
        v3.VSpacer()
        v3.VSelect(
            v_model=("field",),
            items=("fields",),
            density="compact",
            hide_details=True,
            style="max-width: 220px",
        )
    with layout.content, v3.VContainer(fluid=True, classes="pa-0 fill-height"):
        remote_view = pv_widgets.VtkRemoteView(view, interactive_ratio=1)
        ctrl.view_update = remote_view.update
    layout.footer.hide()

server.start(host="127.0.0.1", port=args.port, open_browser=False)
