"""The URL the browser uses to reach a backend. URLs are joined, never concatenated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._errors import NbvizError
from ._server import ServerInfo
from ._spec import Endpoint

#: nbviz: ``{base}nbviz/<session-id>/``, nbviz's own server route (Unix socket or port);
#: proxy: ``{base}proxy/<port>/`` (jupyter-server-proxy strips the prefix), or
#: ``{base}proxy/<host>:<port>/`` for a backend on another host;
#: absolute: ``{base}proxy/absolute/<port>/`` (the backend sees the full path);
#: relative: like proxy, but the base URL is only known to the front end;
#: direct: ``http://127.0.0.1:<port>/`` with no Jupyter server in between;
#: none: no browser can reach the backend (a Unix socket without nbviz's route); only the
#: kernel API works (when the backend class allows that).
RouteKind = Literal["nbviz", "proxy", "absolute", "relative", "direct", "none"]

#: What users may ask for with ``route=``; "auto" picks the best available.
RouteChoice = Literal["auto", "nbviz", "proxy", "direct"]


@dataclass(frozen=True)
class Route:
    kind: RouteKind
    #: What the iframe loads: an absolute path, a path relative to the page's base URL
    #: (kind "relative"), or a full http URL (kind "direct"). Always ends in "/".
    url: str
    #: The URL path under which the backend is reached, for a ``{prefix}`` command field.
    prefix: str


def url_join(base: str, *parts: str) -> str:
    """Join URL path parts with single slashes; keeps a trailing slash on the last part."""
    pieces = [base.rstrip("/")] + [str(part).strip("/") for part in parts if str(part).strip("/")]
    joined = "/".join(pieces)
    trailing = (parts[-1] if parts else base).endswith("/")
    if not joined:
        return "/"
    return joined + "/" if trailing and not joined.endswith("/") else joined


NO_ROUTE_HINT = (
    "the nbviz server extension is not loaded in this Jupyter server: install nbviz where "
    "Jupyter runs and restart Jupyter (or run `jupyter server extension enable nbviz.serverext`)"
)


def route_for(
    endpoint: Endpoint,
    server: ServerInfo | None,
    *,
    session_id: str = "",
    choice: RouteChoice = "auto",
    nbviz_route: bool = False,
    absolute: bool = False,
    front_end_may_know: bool = False,
    required: bool = True,
) -> Route:
    """Choose the route for ``endpoint``.

    ``nbviz_route``: the server has nbviz's extension (our own route, preferred).
    ``front_end_may_know``: no server was found, but a Jupyter client launched the kernel, so the
    page probably knows its own base URL; the front end then resolves a relative route.
    """
    if choice == "nbviz" and not (nbviz_route and server is not None):
        raise NbvizError(f"nbviz: route='nbviz' is not available: {NO_ROUTE_HINT}")
    if choice in ("auto", "nbviz") and nbviz_route and server is not None and session_id:
        url = url_join(server.base_url, "nbviz", session_id + "/")
        return Route(kind="nbviz", url=url, prefix=url)
    if endpoint.port is None:
        if not required:
            return Route(kind="none", url="", prefix="/")
        if server is None and not front_end_may_know:
            raise NbvizError(
                "nbviz: a backend on a Unix socket is shown through nbviz's route in a Jupyter "
                "server, and no Jupyter server runs this kernel; run it on {port} instead "
                "(then a browser on this machine can show it directly)"
            )
        raise NbvizError(
            f"nbviz: a backend on a Unix socket needs nbviz's own route; {NO_ROUTE_HINT}"
        )
    port = proxy_target(endpoint)
    if choice == "direct":
        return Route(kind="direct", url=endpoint.http_url, prefix="/")
    segments = ("proxy", "absolute", port + "/") if absolute else ("proxy", port + "/")
    kind: RouteKind = "absolute" if absolute else "proxy"
    if server is not None:
        url = url_join(server.base_url, *segments)
        return Route(kind=kind, url=url, prefix=url)
    if front_end_may_know:
        relative = url_join("", *segments).lstrip("/")
        return Route(kind="relative", url=relative, prefix="/" + relative)
    return Route(kind="direct", url=endpoint.http_url, prefix="/")


def proxy_target(endpoint: Endpoint) -> str:
    """The ``<port>`` of ``proxy/<port>/``, or ``<host>:<port>`` for a backend on another host
    (jupyter-server-proxy then checks ``c.ServerProxy.host_allowlist``)."""
    if endpoint.host is not None:
        return f"{endpoint.host}:{endpoint.port}"
    return str(endpoint.port)


def template_values(route: Route, server: ServerInfo | None) -> dict[str, str]:
    """The ``{base_url}`` and ``{prefix}`` command fields."""
    return {"base_url": server.base_url if server else "/", "prefix": route.prefix}
