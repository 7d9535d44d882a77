"""Unit tests of URL and server-discovery logic."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nbviz import NbvizError
from nbviz._routes import route_for, template_values, url_join
from nbviz._server import ServerInfo, find_server, normalize_base_url
from nbviz._spec import Endpoint

HUB = ServerInfo(
    base_url="/user/alice/", source="jupyter-server", url="http://127.0.0.1:9/user/alice/"
)


@pytest.mark.parametrize(
    ("parts", "joined"),
    [
        (("/user/alice/", "proxy", "8000/"), "/user/alice/proxy/8000/"),
        (("/", "proxy", "8000/"), "/proxy/8000/"),
        (("/user/alice", "/proxy/", "absolute", "8000/"), "/user/alice/proxy/absolute/8000/"),
        (("/base/", "x"), "/base/x"),
        (("", "proxy", "1/"), "/proxy/1/"),
        (("/",), "/"),
    ],
)
def test_url_join(parts: tuple[str, ...], joined: str) -> None:
    assert url_join(*parts) == joined


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("", "/"), ("/", "/"), ("user/alice", "/user/alice/"), ("/user/alice/", "/user/alice/")],
)
def test_normalize_base_url(raw: str, normal: str) -> None:
    assert normalize_base_url(raw) == normal


def test_proxy_and_absolute_routes_under_a_base_url() -> None:
    endpoint = Endpoint(port=8123)
    route = route_for(endpoint, HUB)
    assert (route.kind, route.url) == ("proxy", "/user/alice/proxy/8123/")
    absolute = route_for(endpoint, HUB, absolute=True)
    assert (absolute.kind, absolute.url) == ("absolute", "/user/alice/proxy/absolute/8123/")
    assert template_values(absolute, HUB) == {
        "base_url": "/user/alice/",
        "prefix": "/user/alice/proxy/absolute/8123/",
    }


def test_relative_route_when_only_the_front_end_knows_the_base() -> None:
    route = route_for(Endpoint(port=8123), None, front_end_may_know=True)
    assert (route.kind, route.url) == ("relative", "proxy/8123/")


def test_direct_route_without_jupyter() -> None:
    route = route_for(Endpoint(port=8123), None)
    assert (route.kind, route.url) == ("direct", "http://127.0.0.1:8123/")


def test_no_route_ever_contains_the_token() -> None:
    server = ServerInfo(base_url="/", source="jupyter-server", token="sekrit", url="http://h/")
    for absolute in (False, True):
        assert "sekrit" not in route_for(Endpoint(port=1), server, absolute=absolute).url


def test_unix_socket_without_our_route_is_a_clear_error() -> None:
    with pytest.raises(NbvizError, match="Unix socket needs nbviz's own route; the nbviz"):
        route_for(Endpoint(unix_socket="/tmp/x.sock"), HUB)
    # no Jupyter server at all (a script): not "the extension is not loaded in this server"
    with pytest.raises(NbvizError, match=r"no Jupyter server runs this kernel; run it on \{port"):
        route_for(Endpoint(unix_socket="/tmp/x.sock"), None)


def _write_server(runtime: Path, pid: int, base_url: str) -> None:
    info = {"pid": pid, "base_url": base_url, "url": f"http://127.0.0.1:1{base_url}", "token": "t"}
    (runtime / f"jpserver-{pid}.json").write_text(json.dumps(info))


def test_find_server_matches_jpy_parent_pid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    parent = os.getppid()  # a live process that is not us
    _write_server(tmp_path, parent, "/user/bob/")
    _write_server(tmp_path, 2**22 + 7, "/dead/")  # not running: ignored
    server = find_server({"JPY_PARENT_PID": str(parent)})
    assert server is not None
    assert (server.base_url, server.source, server.token) == ("/user/bob/", "jupyter-server", "t")
    # A wrapper between server and kernel: our ancestors count even without JPY_PARENT_PID.
    via_ancestor = find_server({})
    assert via_ancestor is not None and via_ancestor.base_url == "/user/bob/"
    (tmp_path / f"jpserver-{parent}.json").unlink()
    assert find_server({"JPY_PARENT_PID": str(parent)}) is None


def test_find_server_hub_prefix_and_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    hub = find_server({"JUPYTERHUB_SERVICE_PREFIX": "/user/carol"})
    assert hub is not None and (hub.base_url, hub.source) == ("/user/carol/", "jupyterhub")
    override = find_server({"NBVIZ_BASE_URL": "lab", "JUPYTERHUB_SERVICE_PREFIX": "/user/c/"})
    assert override is not None and (override.base_url, override.source) == ("/lab/", "override")
    assert find_server({"JPY_PARENT_PID": "1"}) is None
