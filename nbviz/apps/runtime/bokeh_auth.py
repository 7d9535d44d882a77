"""``bokeh serve --auth-module``: admit only the page holding this session's secret.

Used by the Bokeh preset when it listens on a 127.0.0.1 port (nbviz's route missing, the page
comes through jupyter-server-proxy): any local user can reach that port. The rule is nbviz's
one for such gates (``nbviz/_gate.py``, run by path: Bokeh imports this file in its own
process): the frame's first URL carries the secret, then an HttpOnly cookie does. Bokeh has no
place for a redirect here, so the cookie is set on the page that carried the secret. Everyone
else gets 403, pages and websocket alike.
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tornado.web import HTTPError

GATE = SimpleNamespace(**runpy.run_path(str(Path(__file__).resolve().parents[2] / "_gate.py")))
SECRET = os.environ.get("NBVIZ_SECRET", "")


def get_user(handler: Any) -> str | None:
    """Bokeh's hook: "nbviz" for the page holding the secret, None (then 403) for others."""
    request = handler.request
    verdict = GATE.check(SECRET, request.path, request.query, request.headers.get("Cookie"))
    if verdict.set_cookie is not None:
        handler.add_header("Set-Cookie", verdict.set_cookie)
    return "nbviz" if verdict.admitted else None


def get_login_url(handler: Any) -> str:
    """Bokeh asks where to send a stranger: nowhere."""
    raise HTTPError(403, "nbviz: this Bokeh session admits only the notebook that started it")
