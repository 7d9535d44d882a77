"""nbviz: live ParaView views, X11 desktops and any web GUI inside a Jupyter notebook cell."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import (
    BackendExitedError,
    NbvizError,
    PortInUseError,
    ProgramNotFoundError,
    ReadyTimeoutError,
    TemplateError,
)
from ._version import __version__

if TYPE_CHECKING:
    from .app import NbvizWarning, WebApp, running, stop_all
    from .desktop import RemoteDesktop
    from .paraview import ParaViewSession
    from .solver import Solver

#: The widget classes load on first use: the Jupyter server imports nbviz.serverext, which
#: needs none of them (nor anywidget and ipywidgets).
_LAZY = {
    "NbvizWarning": ".app",
    "WebApp": ".app",
    "RemoteDesktop": ".desktop",
    "ParaViewSession": ".paraview",
    "Solver": ".solver",
    "running": ".app",
    "stop_all": ".app",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nbviz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "BackendExitedError",
    "NbvizError",
    "NbvizWarning",
    "ParaViewSession",
    "PortInUseError",
    "ProgramNotFoundError",
    "ReadyTimeoutError",
    "RemoteDesktop",
    "Solver",
    "TemplateError",
    "WebApp",
    "__version__",
    "running",
    "stop_all",
]
