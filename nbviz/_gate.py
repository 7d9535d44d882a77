"""The per-session secret gate of backends that listen on a TCP port (standard library only).

When nbviz's route is missing, a backend listens on 127.0.0.1, behind jupyter-server-proxy,
where every local user can connect. nbviz hands the page the session's secret once, in the
frame's first URL (``?nbviz_secret=``); the backend answers with a redirect to the same page
without it and an HttpOnly, SameSite=Strict cookie *without a Path* (the browser scopes it to
the directory it asked for, e.g. ``/user/alice/proxy/<port>``). Afterwards the cookie admits
the page, its files and its websockets; everything else gets 403.

One rule for every such backend: ParaView's trame app (aiohttp, in pvpython), the desktop and
NEST Desktop launchers (``http.server``) and Bokeh's auth hook (tornado). They run in their own
interpreters and must not import the ``nbviz`` package (its widgets are slow to import, and
pvpython has a ``paraview`` package of its own), so they run this file by path::

    gate = SimpleNamespace(**runpy.run_path(str(Path(__file__).parents[1] / "_gate.py")))
"""

from __future__ import annotations

import hmac
import http.cookies
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode

#: The query parameter that hands the page the secret, and the cookie that keeps it.
PARAM = "nbviz_secret"
COOKIE = "nbviz-secret"


class Verdict(NamedTuple):
    """What to do with one request."""

    admitted: bool
    #: The secret came in the query: send the browser here (the same page without it) ...
    location: str | None = None
    #: ... with this ``Set-Cookie`` header value.
    set_cookie: str | None = None


def _same(given: str, secret: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), secret.encode("utf-8", "replace"))


def check(secret: str, path: str, query: str, cookie_header: str | None) -> Verdict:
    """The verdict on a request for ``path?query`` carrying ``cookie_header``.

    Without a secret nothing is admitted (the backend was started wrongly).
    """
    if not secret:
        return Verdict(False)
    pairs = parse_qsl(query, keep_blank_values=True)
    given = [value for name, value in pairs if name == PARAM]
    if given and _same(given[-1], secret):
        rest = urlencode([(name, value) for name, value in pairs if name != PARAM])
        # Relative to the page itself: correct under any proxy prefix.
        location = (path.rsplit("/", 1)[-1] or "./") + (f"?{rest}" if rest else "")
        return Verdict(
            True, location=location, set_cookie=f"{COOKIE}={secret}; HttpOnly; SameSite=Strict"
        )
    try:
        cookies = http.cookies.SimpleCookie(cookie_header or "")
    except http.cookies.CookieError:
        return Verdict(False)
    held = cookies[COOKIE].value if COOKIE in cookies else ""
    return Verdict(bool(held) and _same(held, secret))


def admit(handler: Any, secret: str | None, refusal: str) -> bool:
    """The gate for an ``http.server`` request handler: True to go on with the request.

    Otherwise the request has been answered: the redirect that swaps the query for the cookie,
    or 403 with ``refusal``. No ``secret``: no gate (a 0600 Unix socket behind Jupyter's login).
    """
    if not secret:
        return True
    path, _, query = handler.path.partition("?")
    verdict = check(secret, path, query, handler.headers.get("Cookie"))
    if verdict.location is not None:
        handler.send_response(302)
        handler.send_header("Location", verdict.location)
        handler.send_header("Set-Cookie", verdict.set_cookie)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return False
    if not verdict.admitted:
        handler.send_error(403, refusal)
    return verdict.admitted
