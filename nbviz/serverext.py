"""The Jupyter server extension's entry point: ``nbviz.serverext`` is the name Jupyter's config
enables (``etc/jupyter/jupyter_server_config.d/nbviz.json``, ``jpserver_extensions``); the
code is in :mod:`nbviz.server`.
"""

from __future__ import annotations

from .server.config import NbvizRoute
from .server.extension import (
    SessionsHandler,
    _jupyter_server_extension_points,
    _load_jupyter_server_extension,
)
from .server.headers import strip_jupyter_cookies, strip_query
from .server.pool import netns_socket
from .server.relay import RouteHandler

# Jupyter looks these up on the module named in the config.
load_jupyter_server_extension = _load_jupyter_server_extension
__all__ = [
    "NbvizRoute",
    "RouteHandler",
    "SessionsHandler",
    "_jupyter_server_extension_points",
    "_load_jupyter_server_extension",
    "load_jupyter_server_extension",
    "netns_socket",
    "strip_jupyter_cookies",
    "strip_query",
]
