"""Unit: which transport a start gets, and the warning where private namespaces are missing."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

from nbviz import _registry, _server, _transport, app
from nbviz._errors import NbvizError
from nbviz._spec import Spec

PORT_APP = Spec.build([sys.executable, "-m", "http.server", "{port}"])
UNIX_APP = Spec.build(["app", "--socket", "{unix_socket}"])


@pytest.fixture
def namespaces(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """What the (cached, once per kernel) check says: "" allowed, else the reason."""
    answer = {"problem": ""}
    monkeypatch.setattr(_transport, "private_network_problem", lambda: answer["problem"])
    monkeypatch.delenv(_transport.PRIVATE_NETWORK_ENV, raising=False)
    return answer


def chosen(spec: Spec, private_route: bool = True) -> str:
    return _transport.choose(spec, private_route=private_route).name


def test_a_port_app_behind_nbviz_route_gets_a_private_network(namespaces: dict[str, str]) -> None:
    assert chosen(PORT_APP) == "private"
    assert chosen(PORT_APP, private_route=False) == "loopback"  # a browser needs a host port
    assert chosen(UNIX_APP) == "unix"
    assert chosen(Spec.build(["app", "{port}"], host="node1")) == "host"
    assert chosen(Spec.build(["app", "{unix_socket}"], ssh="node1")) == "ssh"
    namespaces["problem"] = "unshare: Operation not permitted"
    assert chosen(PORT_APP) == "loopback"


@pytest.mark.parametrize("value", ["no", "0", "off", "False"])
def test_private_networks_can_be_turned_off(
    namespaces: dict[str, str], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(_transport.PRIVATE_NETWORK_ENV, value)
    assert chosen(PORT_APP) == "loopback"


def test_plans(tmp_path: Path) -> None:
    session = _transport.Session("abcdefabcdef", tmp_path, tmp_path, "s3cret")
    fixed = Spec.build(["app", "--port", "{port}"], port=8080)
    plan = _transport.PrivateNetwork().plan(fixed, session)
    # the port is the namespace's: a fixed one is never "in use"; the route gets a socket
    assert plan.values["port"] == plan.inner_port == 8080
    assert plan.endpoint.unix_socket == str(tmp_path / "backend.sock")
    argv = _transport.PrivateNetwork().launch_argv(["true", "--port", "8080"], fixed, plan)
    assert argv[:3] == [sys.executable, "-S", str(_transport.NETNS_RUNNER)]
    assert argv[argv.index("--") + 1 :][1:] == ["--port", "8080"]
    assert _transport.PrivateNetwork().shown_argv(argv)[1:] == ["--port", "8080"]
    picked = _transport.PrivateNetwork().plan(PORT_APP, session).inner_port
    assert (
        picked is not None and _transport.PRIVATE_PORTS[0] <= picked < _transport.PRIVATE_PORTS[1]
    )


def test_one_warning_per_kernel_where_namespaces_are_missing(
    namespaces: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind nbviz's route, a {port} app that must listen on the host's 127.0.0.1 says so
    once, with the reason and what an admin can enable; not where the user turned it off."""
    namespaces["problem"] = "could not make a private network namespace: unshare: ENOSPC"
    server = _server.ServerInfo(base_url="/user/a/", source="test", pid=12345)
    monkeypatch.setattr(_server, "find_server", lambda: server)
    monkeypatch.setattr(_registry, "server_has_route", lambda pid: True)
    monkeypatch.setattr(app, "_private_network_warned", False)
    command = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "{port}"]
    with pytest.warns(app.NbvizWarning) as caught:
        first = app.WebApp(command)
    try:
        texts = [str(w.message) for w in caught]
        assert any(
            "listens on 127.0.0.1:" in t and "ENOSPC" in t and "max_user_namespaces" in t
            for t in texts
        ), texts
        assert first.transport == "loopback" and first.url.startswith("/user/a/nbviz/")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            second = app.WebApp(command)  # no second warning
            second.stop()
    finally:
        first.stop()


def test_an_unstarted_app_says_how_it_would_listen(namespaces: dict[str, str]) -> None:
    unix = app.WebApp(["app", "--socket", "{unix_socket}"], start=False)
    assert unix.transport == "unix"
    port = app.WebApp([sys.executable, "-m", "http.server", "{port}"], start=False)
    assert port.transport == "loopback"
    unix.close()
    port.close()


def test_network_choice(namespaces: dict[str, str]) -> None:
    host = Spec.build([sys.executable, "-m", "http.server", "{port}"], network="host")
    private = Spec.build([sys.executable, "-m", "http.server", "{port}"], network="private")
    assert chosen(host) == "loopback"  # an app that must reach the host's network
    assert chosen(private) == "private"
    with pytest.raises(NbvizError, match="network='private' needs nbviz's route"):
        chosen(private, private_route=False)
    namespaces["problem"] = "unshare: Operation not permitted"
    assert chosen(PORT_APP) == "loopback"  # auto falls back
    with pytest.raises(NbvizError, match=r"does not allow private network namespaces \(unshare"):
        chosen(private)
    with pytest.raises(NbvizError, match="network= must be 'auto', 'private' or 'host'"):
        Spec.build(["app", "{port}"], network="nowhere")  # type: ignore[arg-type]
