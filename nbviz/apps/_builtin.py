"""The presets nbviz ships. Each is plain data; see docs/apps.md to write your own."""

from __future__ import annotations

from pathlib import Path

from .. import _gate
from ._preset import Preset


def _beside(name: str) -> str:
    """A file under this one's folder, as a command item (braces kept literal)."""
    return str(Path(__file__).parent / name).replace("{", "{{").replace("}", "}}")


#: Run by path, not with -m: importing the nbviz package (widgets) would slow every start.
_NEST_LAUNCHER = _beside("runtime/nest.py")


def _nest_launch(*listen: str) -> tuple[str, ...]:
    """The NEST Desktop launcher's command, listening where ``listen`` says."""
    return (
        "{python}",
        _NEST_LAUNCHER,
        *listen,
        "--state",
        "{session_dir}",
        "--prefix",
        "{prefix}",
        "--modules",
        "{modules}",
        "--restricted",
        "{restricted}",
    )


NEST_DESKTOP = Preset(
    name="nest-desktop",
    origin="nbviz",
    title="NEST Desktop",
    description="NEST Desktop (web UI) with its own NEST Server, one session",
    command=_nest_launch("--socket", "{unix_socket}"),
    # Without nbviz's route: 127.0.0.1, behind the session secret (UI and NEST Server alike).
    tcp_command=_nest_launch("--port", "{port}"),
    secret_param=_gate.PARAM,
    args={"modules": "import nest; import numpy as np", "restricted": "yes"},
    args_help={
        "modules": "Python statements NEST Server runs at start; scripts may use what they import",
        "restricted": "yes: scripts sent to NEST Server run under RestrictedPython; no: plain exec",
    },
    # Through the launcher: answers only once NEST Server answers behind it.
    ready_path="/nestserver/",
    path="/nbviz.html",
    timeout=60,
    requires={
        "nest": "nest-simulator",
        "nest_desktop": "nest-desktop",
        "gunicorn": "gunicorn",
        "flask": "flask",
        "flask_cors": "flask-cors",
        "RestrictedPython": "RestrictedPython",
    },
)

#: Bokeh's auth hook, by path (Bokeh imports it in its own process).
_BOKEH_AUTH = _beside("runtime/bokeh_auth.py")


def _bokeh_serve(*listen: str) -> tuple[str, ...]:
    """``bokeh serve`` of the preset's script, listening where ``listen`` says."""
    return ("{python}", "-m", "bokeh", "serve", "{script}", *listen, "--prefix", "{prefix}")


BOKEH = Preset(
    name="bokeh",
    origin="nbviz",
    title="Bokeh",
    description="a Bokeh server app (bokeh serve) from a script, notebook or directory",
    command=_bokeh_serve("--unix-socket", "{unix_socket}"),
    args={"script": None},
    args_help={"script": "the app: a .py file, a .ipynb notebook or a directory"},
    # Bokeh builds its page and websocket URLs from --prefix: it must see the full path.
    absolute_url=True,
    # Without nbviz's route: a 127.0.0.1 port behind jupyter-server-proxy, where the auth hook
    # admits only the page holding the session's secret. The page's origin is Jupyter's, which
    # Bokeh cannot know; the secret cookie (SameSite=Strict) and Jupyter's own origin check on
    # the proxy guard the websocket instead.
    tcp_command=(
        *_bokeh_serve("--port", "{port}", "--address", "127.0.0.1"),
        "--allow-websocket-origin",
        "*",
        "--auth-module",
        _BOKEH_AUTH,
    ),
    secret_param=_gate.PARAM,
    timeout=30,
    requires={"bokeh": "bokeh"},
)

BUILTIN = {preset.name: preset for preset in (NEST_DESKTOP, BOKEH)}
