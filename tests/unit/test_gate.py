"""nbviz._gate: the per-session secret gate shared by backends on a TCP port (pure logic; the
backends' use of it is tested through real servers in test_route, test_paraview, test_apps,
test_desktop_browser)."""

from __future__ import annotations

import pytest

from nbviz import _gate

SECRET = "s3cret-XYZ_0123456789abcdefghijklmnop"


def test_the_secret_in_the_query_becomes_a_cookie_and_a_redirect_without_it() -> None:
    verdict = _gate.check(
        SECRET, "/user/a/proxy/9/index.html", f"x=1&nbviz_secret={SECRET}&y=2", None
    )
    assert verdict.admitted
    assert verdict.location == "index.html?x=1&y=2"
    assert verdict.set_cookie == f"nbviz-secret={SECRET}; HttpOnly; SameSite=Strict"
    assert "Path" not in verdict.set_cookie  # the browser scopes it to the proxied directory
    assert _gate.check(SECRET, "/a/", f"nbviz_secret={SECRET}", None).location == "./"


@pytest.mark.parametrize(
    "query, cookie",
    [
        ("", None),
        ("nbviz_secret=guess", None),
        ("nbviz_secret=", "nbviz-secret="),
        ("nbviz_secret=%C3%A9", "nbviz-secret=\u00e9"),  # not ASCII: refused, not an error
        ("", "other=1; nbviz-secret=guess"),
        ("", 'nbviz-secret="unterminated'),
        ("", f"nbviz-secret={SECRET[:-1]}"),
    ],
)
def test_strangers_are_refused(query: str, cookie: str | None) -> None:
    verdict = _gate.check(SECRET, "/", query, cookie)
    assert not verdict.admitted and verdict.location is None and verdict.set_cookie is None


def test_the_cookie_admits_and_no_secret_admits_nobody() -> None:
    assert _gate.check(SECRET, "/ws", "", f"a=b; nbviz-secret={SECRET}") == (True, None, None)
    assert not _gate.check("", "/", "nbviz_secret=", "nbviz-secret=").admitted
