"""What Jupyter loads (through ``nbviz.serverext``, the name in its config): the route's
handlers, the sessions API, the server's entry in the registry and the periodic sweep."""

from __future__ import annotations

import atexit
import os
from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from jupyter_server_proxy.handlers import AddSlashHandler
from tornado import ioloop, web

from .. import _registry
from .._version import __version__
from . import pool
from .config import NbvizRoute
from .relay import RouteHandler


class SessionsHandler(JupyterHandler):
    """``{base}nbviz/api/sessions``: this user's registered sessions (for doctor and tests)."""

    @web.authenticated
    def get(self) -> None:
        sessions = [
            {
                "id": e.session_id,
                # how the backend listens (nbviz._transport's names: unix, private, loopback,
                # host, ssh); entries written before transports were recorded: unix or loopback
                "transport": e.transport or ("unix" if e.unix_socket else "loopback"),
                "host": None if e.unix_socket else (e.host or "127.0.0.1"),
                "url": url_path_join(self.base_url, "nbviz", e.session_id) + "/",
                "pid": e.pid,
                "owner_pid": e.owner_pid,
            }
            for e in _registry.list_entries()
        ]
        self.finish({"version": __version__, "sessions": sessions})


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbviz.serverext"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    web_app = serverapp.web_app
    base = web_app.settings["base_url"]
    route_config = NbvizRoute(parent=serverapp)
    web_app.settings["nbviz_route"] = route_config
    session = r"([0-9a-f]{12})"
    web_app.add_handlers(
        ".*",
        [
            (url_path_join(base, "nbviz/api/sessions"), SessionsHandler),
            (url_path_join(base, "nbviz", session), AddSlashHandler),
            (
                url_path_join(base, "nbviz", session) + r"(/.*)",
                RouteHandler,
                {"absolute_url": False},
            ),
        ],
    )
    _registry.sweep_stale()
    _registry.announce_server(
        os.getpid(),
        {
            "version": __version__,
            "base_url": base,
            "host_allowlist": route_config.describe_allowlist(),
            "machine": _registry.this_machine(),
            "addresses": _registry.this_host_addresses(),
        },
    )
    ioloop.PeriodicCallback(pool.sweep, route_config.sweep_seconds * 1000).start()
    atexit.register(pool.forget_all)
    serverapp.log.info("nbviz: route %snbviz/<session>/ enabled", base)
