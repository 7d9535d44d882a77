"""What of the browser's request reaches a backend: never Jupyter's credentials (its login
and XSRF cookies, ``Authorization`` and ``X-XSRFToken``, a ``token`` query parameter), never
hop-by-hop headers."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

#: Cookies of Jupyter and JupyterHub (exact names or prefixes), never forwarded.
JUPYTER_COOKIES = ("_xsrf", "username-", "jupyterhub-")
#: Request headers never forwarded (credentials of the Jupyter server).
JUPYTER_HEADERS = ("Authorization", "X-XSRFToken", "X-Xsrftoken")
#: Query parameters never forwarded.
JUPYTER_QUERY = ("token",)
#: Response headers tornado sets itself.
HOP_BY_HOP = (
    "Connection",
    "Keep-Alive",
    "Transfer-Encoding",
    "Proxy-Connection",
    "Trailer",
    "Upgrade",
)
#: Request headers that apply to one hop only (as jupyter-server-proxy drops them).
HOP_BY_HOP_REQUEST = (
    *HOP_BY_HOP,
    "TE",
    "Proxy-Authorization",
    "Proxy-Authenticate",
)


def strip_jupyter_cookies(header: str, login_cookie: str = "") -> str:
    """The ``Cookie`` header without Jupyter's and JupyterHub's cookies."""
    kept = []
    for part in header.split(";"):
        name = part.split("=", 1)[0].strip()
        if not name:
            continue
        if name == login_cookie or name.startswith(JUPYTER_COOKIES):
            continue
        kept.append(part.strip())
    return "; ".join(kept)


def strip_query(query: str, keep: tuple[str, str] | None = None) -> str:
    """``query`` without Jupyter's ``token``, except the pair ``keep`` (the session's secret,
    when the backend asked for it under that name)."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, v) for k, v in pairs if k not in JUPYTER_QUERY or (k, v) == keep])
