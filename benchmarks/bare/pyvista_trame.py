"""PyVista's trame backend, server-side rendering, as a user writes it: a baseline of
benchmarks/paraview_interaction.py.

    python pyvista_trame.py --data FILE [--port 0]

Runs with a Python that has ``pyvista[jupyter]`` (not a dependency of nbviz: the benchmark
looks for one in ``.venv-pyvista``). It shows FILE coloured by ``pressure`` in PyVista's
``plotter_ui(mode="server")`` -- what ``jupyter_backend="server"`` shows in a notebook --
with ``field`` and ``colormap`` states the page can change, and serves on 127.0.0.1
(``--port 0``: trame prints the URL it got). VTK renders with EGL (Mesa llvmpipe), no X.
"""

import argparse

import pyvista as pv
from trame.app import get_server
from trame.ui.vuetify3 import SinglePageLayout
from trame_pyvista.ui import plotter_ui

parser = argparse.ArgumentParser()
parser.add_argument("--data", required=True)
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--width", type=int, default=1280)
parser.add_argument("--height", type=int, default=800)
args = parser.parse_args()

server = get_server(client_type="vue3")
state, ctrl = server.state, server.controller
mesh = pv.read(args.data)
plotter = pv.Plotter(off_screen=True, window_size=(args.width, args.height))
actor = plotter.add_mesh(mesh, scalars="pressure", cmap="coolwarm")
state.field, state.colormap = "pressure", "Cool to Warm"
COLORMAPS = {"Cool to Warm": "coolwarm", "Viridis (matplotlib)": "viridis"}


@state.change("field")
def on_field(field: str, **_: object) -> None:
    actor.mapper.array_name = field
    actor.mapper.scalar_range = mesh.get_data_range(field)
    ctrl.view_update()


@state.change("colormap")
def on_colormap(colormap: str, **_: object) -> None:
    actor.mapper.lookup_table.cmap = COLORMAPS.get(colormap, "coolwarm")
    ctrl.view_update()


with SinglePageLayout(server, full_height=True) as layout:
    layout.title.set_text("PyVista")
    layout.toolbar.density = "compact"
    with layout.content:
        view = plotter_ui(plotter, mode="server", add_menu=False)
        ctrl.view_update = view.update
    layout.footer.hide()

server.start(host="127.0.0.1", port=args.port, open_browser=False)
