"""Unit: the host gate's verdict on a request head (``nbviz/_runtime/hostgate.py``; the gate as a
process is tested in tests/integration/test_hostgate.py), and where a kernel on another host than
its server puts its backends."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from nbviz import _paths, _registry, _server, _transport
from nbviz._errors import NbvizError
from nbviz._runtime import hostgate
from nbviz._spec import Spec

SECRET = b"s3cret-0123456789"
HEAD = b"GET /a?b=1 HTTP/1.1\r\nHost: node2:4000\r\nX-Nbviz-Gate: %s\r\nAccept: */*\r\n\r\n"


def test_the_gate_admits_the_secret_and_takes_its_header_out() -> None:
    admitted = hostgate.admit(HEAD % SECRET + b"body", SECRET)
    assert admitted == b"GET /a?b=1 HTTP/1.1\r\nHost: node2:4000\r\nAccept: */*\r\n\r\nbody"


@pytest.mark.parametrize(
    "head",
    [
        HEAD % b"s3cret-012345678",  # a prefix
        HEAD % b"",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # no header
        b"GET / HTTP/1.1\r\nX-Nbviz-Gate-Other: " + SECRET + b"\r\n\r\n",
        b"GET /?x-nbviz-gate:" + SECRET + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # not a header line
    ],
)
def test_the_gate_refuses_anything_else(head: bytes) -> None:
    assert hostgate.admit(head, SECRET) is None


def test_the_header_name_is_case_insensitive_and_one_good_copy_is_enough() -> None:
    head = b"GET / HTTP/1.1\r\nx-NBVIZ-gate: wrong\r\nX-Nbviz-Gate:   " + SECRET + b"\r\n\r\n"
    assert hostgate.admit(head, SECRET) == b"GET / HTTP/1.1\r\n\r\n"


def test_refusals_are_whole_http_responses() -> None:
    head, _, body = hostgate.REFUSED.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 ") and f"Content-Length: {len(body)}".encode() in head


# ------------------------------------------------------------ a server on another machine
@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NBVIZ_RUNTIME_DIR", str(tmp_path / "nbviz"))
    return tmp_path / "nbviz"


def announce(pid: int, machine: str, addresses: list[str]) -> None:
    _registry.announce_server(pid, {"machine": machine, "addresses": addresses})


DEAD_PID = 2**22 + 12345  # above Linux's pid_max: never a live process


def test_a_server_elsewhere_is_taken_at_its_word(runtime: Path) -> None:
    announce(DEAD_PID, "another-boot/123", ["10.0.0.1"])
    assert _registry.server_has_route(DEAD_PID)  # its pid means nothing here
    _registry.sweep_stale()
    assert _registry.server_marker(DEAD_PID).exists()  # and is not swept from here
    announce(DEAD_PID, _registry.this_machine(), ["10.0.0.1"])
    assert not _registry.server_has_route(DEAD_PID)  # here, a dead pid is a dead server
    _registry.sweep_stale()
    assert not _registry.server_marker(DEAD_PID).exists()


def test_sessions_of_kernels_elsewhere_are_left_to_their_machine(runtime: Path) -> None:
    def session(session_id: str, machine: str | None) -> Path:
        directory = _paths.private_dir(_paths.runtime_root() / session_id)
        entry = _registry.Entry(
            session_id, port=1, pid=DEAD_PID, owner_pid=DEAD_PID, machine=machine
        )
        _registry.write_entry(directory, entry)
        return directory

    elsewhere = session("aaaaaaaaaaaa", "another-boot/123")
    here = session("bbbbbbbbbbbb", _registry.this_machine())
    unknown = session("cccccccccccc", None)
    assert sorted(_registry.sweep_stale()) == ["bbbbbbbbbbbb", "cccccccccccc"]
    assert elsewhere.exists() and not here.exists() and not unknown.exists()
    entry = _registry.read_entry("aaaaaaaaaaaa")
    assert entry is not None and entry.machine == "another-boot/123"


@pytest.mark.parametrize(
    ("running", "kept"),
    [({"12", "13"}, True), ({"13"}, False), (None, True)],
    ids=["job-runs", "job-over", "slurm-unknown"],
)
def test_a_session_of_a_kernel_elsewhere_in_a_slurm_job_goes_with_the_job(
    runtime: Path, monkeypatch: pytest.MonkeyPatch, running: set[str] | None, kept: bool
) -> None:
    monkeypatch.setattr(_registry, "running_jobs", lambda: running)
    directory = _paths.private_dir(_paths.runtime_root() / "dddddddddddd")
    entry = _registry.Entry(
        "dddddddddddd", port=1, pid=DEAD_PID, owner_pid=DEAD_PID, machine="other/1", kernel_job="12"
    )
    _registry.write_entry(directory, entry)
    assert _registry.sweep_stale() == ([] if kept else ["dddddddddddd"])
    assert directory.exists() == kept


def server(machine: str, addresses: tuple[str, ...] = ("127.0.0.1",)) -> _server.ServerInfo:
    return _server.ServerInfo("/", "jupyter-server", machine=machine, addresses=addresses)


def test_where_a_kernel_elsewhere_listens() -> None:
    assert _server.away_address(None) is None
    assert _server.away_address(server("")) is None  # no nbviz extension: nothing known
    assert _server.away_address(server(_registry.this_machine())) is None
    # the address this machine reaches the server from (here: loopback, so not usable)
    with pytest.raises(NbvizError, match="NBVIZ_HOST_ADDRESS"):
        _server.away_address(server("other/1", ("127.0.0.1",)), env={})
    env = {_server.HOST_ADDRESS_ENV: "10.1.2.3"}
    assert _server.away_address(server("other/1"), env=env) == "10.1.2.3"
    assert server("other/1").elsewhere and "another host" in server("other/1").describe()


def test_a_kernel_elsewhere_puts_a_gate_in_front_of_each_backend(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(_transport, "private_network_problem", lambda: "")
    monkeypatch.delenv(_transport.PRIVATE_NETWORK_ENV, raising=False)
    port_app = Spec.build([sys.executable, "-m", "http.server", "{port}"])
    unix_app = Spec.build([sys.executable, "app.py", "--socket", "{unix_socket}"])
    chosen = _transport.choose(unix_app, private_route=True, away="127.0.0.1")
    assert chosen.name == "gate/unix"
    assert _transport.choose(port_app, private_route=True, away="127.0.0.1").name == "gate/private"
    monkeypatch.setenv(_transport.PRIVATE_NETWORK_ENV, "no")
    assert _transport.choose(port_app, private_route=True, away="127.0.0.1").name == "gate/loopback"
    with pytest.raises(NbvizError, match="only through nbviz's route"):
        _transport.choose(port_app, private_route=False, away="10.0.0.2")
    # host= says itself where the backend runs
    on_host = Spec.build(["true", "{port}"], host="n1")
    assert _transport.choose(on_host, private_route=True, away="10.0.0.2").name == "host"
    session = _transport.Session("abcdefabcdef", tmp_path, tmp_path, "s3cret")
    plan = chosen.plan(unix_app, session)
    assert (plan.endpoint.host, plan.endpoint.gate) == ("127.0.0.1", "s3cret")
    assert plan.socket_dir is not None and plan.socket_dir.name == "abcdefabcdef-gate"
    assert plan.values["unix_socket"] == str(plan.socket_dir / "backend.sock")
    command = [sys.executable, "app.py", "--socket", plan.values["unix_socket"]]
    argv = chosen.launch_argv(command, unix_app, plan)
    assert argv[:3] == [sys.executable, "-S", str(_transport.HOSTGATE)]
    assert argv[argv.index("--listen") + 1] == f"127.0.0.1:{plan.endpoint.port}"
    assert chosen.shown_argv(argv) == command
