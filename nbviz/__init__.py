"""nbviz: live ParaView views, X11 desktops and any web GUI inside a Jupyter notebook cell."""

from ._errors import (
    BackendExitedError,
    NbvizError,
    PortInUseError,
    ProgramNotFoundError,
    ReadyTimeoutError,
    TemplateError,
)
from ._version import __version__
from .app import NbvizWarning, WebApp
from .desktop import RemoteDesktop
from .paraview import ParaViewSession

__all__ = [
    "BackendExitedError",
    "NbvizError",
    "NbvizWarning",
    "ParaViewSession",
    "PortInUseError",
    "ProgramNotFoundError",
    "ReadyTimeoutError",
    "RemoteDesktop",
    "TemplateError",
    "WebApp",
    "__version__",
]
