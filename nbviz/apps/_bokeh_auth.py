"""``bokeh serve --auth-module``: admit only the page holding this session's secret.

Used by the Bokeh preset when it listens on a 127.0.0.1 port (nbviz's route missing, the page
comes through jupyter-server-proxy): any local user can reach that port. nbviz hands the page
the secret once, as ``?nbviz_secret=`` in the first URL; it is then kept in an HttpOnly,
SameSite=Strict cookie without a Path (the browser scopes it to the proxied directory), as
ParaView's and the desktop's gates do. Everyone else gets 403, pages and websocket alike.
Bokeh imports this file by path, in its own process: the standard library and tornado only.
"""

from __future__ import annotations

import hmac
import os
from typing import Any

from tornado.web import HTTPError

PARAM = "nbviz_secret"
COOKIE = "nbviz-secret"
SECRET = os.environ.get("NBVIZ_SECRET", "")


def _matches(value: str | None) -> bool:
    return bool(SECRET and value) and hmac.compare_digest(str(value), SECRET)


def get_user(handler: Any) -> str | None:
    """Bokeh's hook: "nbviz" for the page holding the secret, None (then 403) for others."""
    if _matches(handler.get_cookie(COOKIE)):
        return "nbviz"
    if _matches(handler.get_query_argument(PARAM, None)):
        handler.set_cookie(COOKIE, SECRET, path=None, httponly=True, samesite="Strict")
        return "nbviz"
    return None


def get_login_url(handler: Any) -> str:
    """Bokeh asks where to send a stranger: nowhere."""
    raise HTTPError(403, "nbviz: this Bokeh session admits only the notebook that started it")
