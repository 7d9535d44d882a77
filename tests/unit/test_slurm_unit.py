"""Unit: slurm= options, the transport a job's node gets, and how Slurm's answers are read.
(The real cluster is in tests/integration/test_slurm.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nbviz import _slurm, _transport
from nbviz._errors import NbvizError, TemplateError
from nbviz._spec import Spec

PORT_APP = Spec.build([sys.executable, "-m", "http.server", "{port}"], slurm=True)
UNIX_APP = Spec.build(["app", "--socket", "{unix_socket}"], slurm={"time": "5"})
HERE = _slurm.Allocation("12", "nbviz-abc", "vm", "127.0.0.1", local=True)
ELSEWHERE = _slurm.Allocation("13", "nbviz-abd", "node7", "10.1.0.7", local=False)
SESSION = _transport.Session("abc", Path("/tmp/s"), Path("/tmp/s"), "secret")


def test_options_become_salloc_arguments() -> None:
    assert _slurm.options_argv(None) is None and _slurm.options_argv(False) is None
    assert _slurm.options_argv(True) == ()
    options = {"partition": "batch", "time": "01:00:00", "cpus_per_task": 4, "exclusive": True}
    assert _slurm.options_argv(options) == (
        "--partition=batch",
        "--time=01:00:00",
        "--cpus-per-task=4",
        "--exclusive",
    )
    assert _slurm.options_argv({"mem": None, "qos": False}) == ()


@pytest.mark.parametrize(
    ("slurm", "says"),
    [
        ("batch", "dict of salloc options"),
        ({"job-name": "x"}, "nbviz sets --job-name itself"),
        ({"--partition": "x"}, "long option names"),
        ({"time": [1]}, "values are strings, numbers or True"),
    ],
)
def test_bad_options_are_clear_errors(slurm: object, says: str) -> None:
    with pytest.raises(TemplateError, match=says):
        Spec.build(["app", "{port}"], slurm=slurm)  # type: ignore[arg-type]


def test_slurm_and_a_named_host_exclude_each_other() -> None:
    with pytest.raises(TemplateError, match="not both"):
        Spec.build(["app", "{port}"], host="node1", slurm=True)


def test_the_node_decides_the_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_transport, "private_network_problem", lambda: "")
    monkeypatch.delenv(_transport.PRIVATE_NETWORK_ENV, raising=False)
    # this machine: as a local backend, inside the step
    assert _transport.on_node(PORT_APP, HERE, private_route=True).name == "slurm/private"
    assert _transport.on_node(UNIX_APP, HERE, private_route=True).name == "slurm/unix"
    assert _transport.on_node(PORT_APP, HERE, private_route=False).name == "slurm/loopback"
    # another host, through nbviz's route: a host gate on the node's address, in front of the
    # transport the backend would get here
    gated = _transport.on_node(UNIX_APP, ELSEWHERE, private_route=True)
    assert gated.name == "slurm/gate/unix" and gated.private
    assert _transport.on_node(PORT_APP, ELSEWHERE, private_route=True).name == "slurm/gate/private"
    plan = gated.plan(UNIX_APP, SESSION)
    assert plan.endpoint.host == "10.1.0.7" and plan.endpoint.gate == SESSION.secret
    assert plan.socket_dir is None  # the gate's directory is on the node, not here
    assert plan.extra["slurm_job"] == "13"
    # without nbviz's route: its address and a port there; a Unix socket cannot cross
    remote = _transport.on_node(PORT_APP, ELSEWHERE, private_route=False)
    assert remote.name == "slurm/host" and not remote.private
    plan = remote.plan(PORT_APP, SESSION)
    assert plan.endpoint.host == "10.1.0.7" and plan.endpoint.port
    with pytest.raises(NbvizError, match="only nbviz's route reaches across hosts"):
        _transport.on_node(UNIX_APP, ELSEWHERE, private_route=False)
    # a backend the kernel works with through its own host's files: not on another node
    near = Spec.build(["app", "{unix_socket}"], near_kernel=True)
    with pytest.raises(NbvizError, match="another host than this kernel"):
        _transport.on_node(near, ELSEWHERE, private_route=True)
    assert _transport.on_node(near, HERE, private_route=True).name == "slurm/unix"


def test_the_step_runs_in_the_allocation_and_ends_with_it() -> None:
    step = _transport.on_node(UNIX_APP, HERE, private_route=True)
    plan = step.plan(UNIX_APP, SESSION)
    argv = step.launch_argv(["/bin/true", "--socket", "/tmp/s/backend.sock"], UNIX_APP, plan)
    assert argv[0].endswith("srun") and "--jobid=12" in argv and "--nodelist=vm" in argv
    assert "--mpi=none" in argv and "--overlap" in argv
    assert step.shown_argv(argv) == ["/bin/true", "--socket", "/tmp/s/backend.sock"]
    assert step.end_commands(plan) == [["scancel", "--quiet", "12"]]
    assert not step.local_tree  # slurmd starts the backend, not the kernel's srun
    # a job still waiting has no id the kernel knows for sure: cancelled by its unique name
    assert _slurm.cancel_argv("nbviz-abc") == ["scancel", "--quiet", "--name", "nbviz-abc"]


def fake_scontrol(monkeypatch: pytest.MonkeyPatch, states: list[str], reason: str = "None") -> None:
    answers = iter(states)

    def run(argv: list[str], env: object = None, timeout: float = 0) -> object:
        state = next(answers, states[-1])
        out = f"JobId=12 JobState={state} Reason={reason} TimeLimit=00:30:00 NodeList=node7\n"
        return subprocess.CompletedProcess(argv, 0, out, "")

    monkeypatch.setattr(_slurm, "run", run)
    monkeypatch.setattr(_slurm.time, "sleep", lambda _s: None)


def test_why_slurm_ended_a_job(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_scontrol(monkeypatch, ["COMPLETING", "COMPLETING", "CANCELLED"])
    reason = _slurm.end_reason("12")
    assert reason and reason.startswith("nbviz: Slurm job 12 was cancelled (scancel)")
    fake_scontrol(monkeypatch, ["TIMEOUT"])
    assert "reached its time limit (00:30:00)" in (_slurm.end_reason("12") or "")
    fake_scontrol(monkeypatch, ["NODE_FAIL"], reason="NodeDown")
    text = _slurm.end_reason("12") or ""
    assert "lost its node (node7)" in text and "Slurm's reason: NodeDown" in text
    # what slurmctld says of the node, when asked (scontrol's own line, shortened)
    node_line = (
        "NodeName=node7 Arch=x86_64 CPUAlloc=0 NodeAddr=10.0.0.7 State=DOWN+NOT_RESPONDING "
        "Partitions=remote LastBusyTime=2026-12-07T03:33:23 Reason=fan broken, see ticket 42 "
        "[root@2026-12-07T03:33:24]\n"
        "NodeName=node8 Arch=x86_64 State=ALLOCATED Partitions=remote\n"
    )
    monkeypatch.setattr(
        _slurm, "run", lambda argv, env=None: subprocess.CompletedProcess(argv, 0, node_line, "")
    )
    assert (
        _slurm.node_trouble("node[7-8]") == "node7 DOWN+NOT_RESPONDING: fan broken, see ticket 42"
    )
    # the backend exited by itself: the job still runs, and that is no reason of Slurm's
    fake_scontrol(monkeypatch, ["RUNNING"])
    assert _slurm.end_reason("12") is None


def test_queue_state_as_people_read_it() -> None:
    waiting = _slurm.Job("12", "nbviz-abc", "PENDING", "Resources", "")
    assert waiting.describe() == "Slurm job 12: PENDING (Resources)"
    running = _slurm.Job("12", "nbviz-abc", "RUNNING", "None", "node7")
    assert running.describe() == "Slurm job 12: RUNNING on node7"


def test_missing_programs_say_how_to_install() -> None:
    with pytest.raises(NbvizError, match="apt-get install slurm-client"):
        _slurm.check_programs({"PATH": "/nonexistent"})
