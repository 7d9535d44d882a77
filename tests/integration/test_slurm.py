"""nbviz objects as Slurm jobs, on a real one-node cluster (munged, slurmctld, slurmd started by
the fixture; see slurm_helpers.py), in a kernel of a real Jupyter server with nbviz's route.

Each object becomes ready through the route; its job is listed while it runs and gone after
``stop()`` and after the kernel is killed with SIGKILL; a job cancelled from outside turns the
object ``crashed`` with Slurm's reason, as do a job's time limit and its node going down; a job
that waits in the queue says so.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_helpers import BACKEND, JupyterServer, Kernel, assert_route_answers, wait_until
from netns_helpers import Node
from paraview_data import heat_series
from slurm_helpers import SECOND_NODE_NAME, Cluster, jupyter_for
from user_helpers import (
    http_probe_as,
    listeners_by_program,
    other_user,
    probe_as,
    session_pids,
    targets_of,
)

pytestmark = pytest.mark.jupyter

JOB_GONE = 15.0


@pytest.fixture(scope="module")
def cluster(slurm: Cluster) -> Cluster:
    return slurm


@pytest.fixture(scope="module")
def server(cluster: Cluster) -> Iterator[JupyterServer]:
    with jupyter_for(cluster) as started:
        yield started


@pytest.fixture
def kernel(server: JupyterServer, cluster: Cluster) -> Iterator[Kernel]:
    started = Kernel(server)
    started.run(f"import json, sys\nfrom nbviz import WebApp\nBACKEND = {str(BACKEND)!r}")
    try:
        yield started
    finally:
        try:
            started.run("[o.stop() for o in list(globals().get('objects', {}).values())]", 120)
        except Exception:
            pass
        started.close()
        assert cluster.wait_no_jobs() == [], "a job outlived its test"


def info(kernel: Kernel, name: str = "app") -> dict:
    out = kernel.run(
        f"o = objects[{name!r}]\n"
        "print(json.dumps({'status': o.status, 'message': o.message, 'error': o.error,"
        " 'url': o.url, 'job': o.job, 'transport': o.transport, 'pid': o.pid, 'path': o.path,"
        " 'endpoint': [o.endpoint.host, o.endpoint.port] if o.endpoint else None,"
        " 'session': o._process.session_id}))"
    )
    return dict(json.loads(out.strip().splitlines()[-1]))


WEBAPP = (
    "objects = globals().setdefault('objects', {{}})\n"
    "objects[{name!r}] = WebApp([sys.executable, BACKEND, {listen}], slurm={slurm!r}, "
    "timeout=60)\n"
)
LISTEN = {"port": '"--port", "{port}"', "unix": '"--unix-socket", "{unix_socket}"'}


def start_webapp(kernel: Kernel, listen: str, name: str = "app", slurm: object = None) -> None:
    options = slurm if slurm is not None else {"time": "10", "ntasks": 1}
    kernel.run(WEBAPP.format(name=name, listen=LISTEN[listen], slurm=options))


@pytest.mark.parametrize(("listen", "transport"), [("port", "private"), ("unix", "unix")])
def test_webapp_runs_as_a_job_and_stop_ends_it(
    kernel: Kernel, server: JupyterServer, cluster: Cluster, listen: str, transport: str
) -> None:
    start_webapp(kernel, listen)
    kernel.run("objects['app'].wait_ready(90)", timeout=120)
    state = info(kernel)
    assert state["status"] == "ready", state
    assert state["transport"] == f"slurm/{transport}"
    job = state["job"]
    assert job and job["node"] == cluster.node, state
    listed = cluster.jobs(name=f"nbviz-{state['session']}")
    assert [j["id"] for j in listed] == [job["id"]] and listed[0]["state"] == "RUNNING"
    # the backend runs under slurmd (a step of the job), not under the kernel
    steps = cluster.run("squeue", "--steps", "--noheader", f"--jobs={job['id']}").stdout
    assert f"{job['id']}.0" in steps, steps
    # the browser reaches it through Jupyter's route, with Jupyter's auth
    status, body, _ = server.get(state["url"])
    assert status == 200 and b"via the proxy" not in body and b"<h1" in body, (status, body[:300])
    assert server.get(state["url"], auth=False)[0] in (302, 401, 403)
    kernel.run("objects['app'].stop()", timeout=60)
    assert cluster.wait_no_jobs(timeout=JOB_GONE) == []
    assert info(kernel)["status"] == "stopped"


#: Each kind of object, as a Slurm job (the issue's three).
OBJECTS = {
    "webapp": "WebApp([sys.executable, BACKEND, '--port', '{{port}}'], slurm={{'time': '10'}})",
    "paraview-2-ranks": (
        "ParaViewSession({data!r}, ranks=2, size=(200, 150), slurm={{'time': '10'}})"
    ),
    "desktop": "RemoteDesktop('xpra', slurm={{'time': '10'}})",
}


def start_object(kernel: Kernel, kind: str, tmp_path: Path) -> dict:
    data = heat_series(tmp_path / "heat", n=12, steps=2) if "paraview" in kind else ""
    kernel.run(
        "from nbviz import ParaViewSession, RemoteDesktop, WebApp\n"
        "objects = globals().setdefault('objects', {})\n"
        f"objects['app'] = {OBJECTS[kind].format(data=str(data))}\n"
        "objects['app'].wait_ready(150)\n",
        timeout=200,
    )
    return info(kernel)


@pytest.mark.parametrize("kind", list(OBJECTS))
def test_kernel_killed_cancels_the_job(
    server: JupyterServer, cluster: Cluster, kind: str, tmp_path: Path
) -> None:
    kernel = Kernel(server)
    try:
        kernel.run(f"import sys, json\nBACKEND = {str(BACKEND)!r}")
        state = start_object(kernel, kind, tmp_path)
        assert state["transport"].startswith("slurm/"), state
        assert cluster.jobs(name=f"nbviz-{state['session']}"), "the job is not listed"
        members = session_pids(state["pid"], state["session"])
        os.kill(kernel.pid, signal.SIGKILL)
        assert cluster.wait_no_jobs(timeout=JOB_GONE) == [], "the job outlived the kernel"
        wait_until(
            lambda: not session_pids(state["pid"], state["session"]),
            timeout=JOB_GONE,
            what=f"the session's processes {members} to end",
        )
    finally:
        kernel.client.stop_channels()
        server.delete(f"api/kernels/{kernel.id}")


def test_closing_the_widget_and_the_kernels_shutdown_end_the_job(
    server: JupyterServer, cluster: Cluster
) -> None:
    kernel = Kernel(server)
    try:
        kernel.run(f"import sys, json\nfrom nbviz import WebApp\nBACKEND = {str(BACKEND)!r}")
        start_webapp(kernel, "unix", name="closed")
        start_webapp(kernel, "unix", name="kept")
        kernel.run("[o.wait_ready(90) for o in objects.values()]", timeout=200)
        closed, kept = info(kernel, "closed"), info(kernel, "kept")
        assert cluster.jobs(name=f"nbviz-{closed['session']}")
        kernel.run("objects['closed'].close()")  # the widget closed (as a deleted cell's)
        wait_until(
            lambda: not cluster.jobs(name=f"nbviz-{closed['session']}"),
            timeout=JOB_GONE,
            what="the closed widget's job to end",
        )
        assert cluster.jobs(name=f"nbviz-{kept['session']}"), "the other job ended too"
    finally:
        kernel.client.stop_channels()
        server.delete(f"api/kernels/{kernel.id}")  # the kernel's own shutdown, as the UI does
    assert cluster.wait_no_jobs(timeout=JOB_GONE) == [], "the job outlived the kernel's shutdown"


def test_kernel_killed_while_the_job_waits_withdraws_it(
    server: JupyterServer, cluster: Cluster
) -> None:
    """The orphan watchdog cancels a job still in the queue too (by its name: the kernel may
    not have learnt its id)."""
    blocker = cluster.block()
    kernel = Kernel(server)
    try:
        kernel.run(f"import sys, json\nfrom nbviz import WebApp\nBACKEND = {str(BACKEND)!r}")
        start_webapp(kernel, "port")
        wait_until(lambda: "PENDING" in info(kernel)["message"], timeout=20, what="PENDING")
        assert [j for j in cluster.jobs() if j["name"].startswith("nbviz-")]
        os.kill(kernel.pid, signal.SIGKILL)
        assert cluster.wait_no_jobs(timeout=JOB_GONE) == [], "the waiting job outlived the kernel"
    finally:
        kernel.client.stop_channels()
        server.delete(f"api/kernels/{kernel.id}")
        cluster.run("scancel", blocker, check=False)


@pytest.mark.parametrize("kind", list(OBJECTS))
def test_job_cancelled_from_outside_turns_the_object_crashed(
    kernel: Kernel, cluster: Cluster, kind: str, tmp_path: Path
) -> None:
    job = start_object(kernel, kind, tmp_path)["job"]
    cluster.run("scancel", job["id"])
    wait_until(lambda: info(kernel)["status"] == "crashed", timeout=30, what="crashed")
    state = info(kernel)
    first = state["error"].splitlines()[0]
    assert first.startswith(f"nbviz: Slurm job {job['id']} was cancelled"), state["error"]
    assert "restart() submits a new job" in first
    assert cluster.wait_no_jobs(timeout=JOB_GONE) == []
    if kind == "webapp":  # restart() submits again
        kernel.run("objects['app'].restart(); objects['app'].wait_ready(90)", timeout=120)
        again = info(kernel)
        assert again["status"] == "ready" and again["job"]["id"] != job["id"], again


def test_pending_job_shows_its_queue_state_and_stop_withdraws_it(
    kernel: Kernel, cluster: Cluster
) -> None:
    blocker = cluster.block()
    try:
        start_webapp(kernel, "port")
        wait_until(lambda: "PENDING" in info(kernel)["message"], timeout=20, what="PENDING")
        state = info(kernel)
        assert state["status"] == "starting"
        listed = cluster.jobs(name=f"nbviz-{state['session']}")
        assert listed and listed[0]["state"] == "PENDING", listed
        assert state["message"] == f"Slurm job {listed[0]['id']}: PENDING (Resources)", state
        # the queue frees up: the same object runs
        cluster.run("scancel", blocker)
        kernel.run("objects['app'].wait_ready(90)", timeout=120)
        assert info(kernel)["job"]["id"] == listed[0]["id"]
        kernel.run("objects['app'].stop()")
        # a stop while the job waits withdraws it
        blocker = cluster.block()
        kernel.run("objects['app'].start()")
        wait_until(lambda: "PENDING" in info(kernel)["message"], timeout=20, what="PENDING")
        started = time.monotonic()
        kernel.run("objects['app'].stop()")
        assert cluster.wait_no_jobs(timeout=JOB_GONE) == []
        assert time.monotonic() - started < JOB_GONE
        assert info(kernel)["status"] == "stopped"
    finally:
        cluster.run("scancel", blocker, check=False)


def test_a_job_slurm_refuses_is_a_clear_error(kernel: Kernel, cluster: Cluster) -> None:
    start_webapp(kernel, "port", slurm={"partition": "no-such-partition"})
    wait_until(lambda: info(kernel)["status"] == "crashed", timeout=30, what="crashed")
    state = info(kernel)
    assert state["error"].startswith("nbviz: Slurm refused the job"), state["error"]
    assert "invalid partition" in state["error"].lower(), state["error"]  # salloc's own words
    # nothing of it stays behind
    assert kernel.run("print(objects['app']._process.session_dir)").strip() == "None"
    assert cluster.wait_no_jobs(timeout=5) == []


def test_without_slurm_programs_the_error_says_how_to_install(kernel: Kernel) -> None:
    out = kernel.run(
        "try:\n"
        "    WebApp([sys.executable, BACKEND, '--port', '{port}'], slurm=True,"
        " env={'PATH': '/nonexistent'})\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    assert "NbvizError" in out and "slurm-client" in out and "salloc" in out, out


def test_nobody_else_reaches_a_job_on_the_node(kernel: Kernel, cluster: Cluster) -> None:
    """The backend's listeners: nobody else connects. The local ``srun`` (Slurm's client, which
    forwards the step's output and signals) listens on TCP ports of every interface, as srun
    always does; Slurm accepts only messages signed for the job (munge, the step's credential)
    there, and the other user's HTTP request gets no answer: those ports lead to no backend."""
    user = other_user()
    start_webapp(kernel, "port", name="port")
    start_webapp(kernel, "unix", name="unix")
    kernel.run("[o.wait_ready(90) for o in objects.values()]", timeout=200)
    for name in ("port", "unix"):
        state = info(kernel, name)
        by_program = listeners_by_program(state["pid"], state["session"])
        slurm_own = by_program.pop("srun", [])
        found = sorted({item for items in by_program.values() for item in items})
        assert found, f"{name}: no backend listener found (the probe would prove nothing)"
        targets = targets_of(found)
        results = dict(zip(map(str, targets), probe_as(user, targets), strict=True))
        assert "connected" not in results.values(), (name, state["transport"], results)
        srun_ports = [where for kind, where, _netns in slurm_own if kind == "tcp"]
        answers = dict(zip(srun_ports, http_probe_as(user, srun_ports), strict=True))
        assert "http" not in answers.values(), (name, answers)


def test_paraview_with_two_ranks_in_the_allocation(
    kernel: Kernel, server: JupyterServer, cluster: Cluster, tmp_path: Path
) -> None:
    data = heat_series(tmp_path / "heat", n=12, steps=2)
    kernel.run(
        "from nbviz import ParaViewSession\n"
        "objects = globals().setdefault('objects', {})\n"
        f"objects['app'] = ParaViewSession({str(data)!r}, ranks=2, size=(200, 150),"
        " slurm={'ntasks': 3, 'time': '10'})\n"
        "objects['app'].wait_ready(150)\n",
        timeout=200,
    )
    state = info(kernel)
    assert state["status"] == "ready" and state["transport"] == "slurm/unix", state
    job = state["job"]["id"]
    steps = cluster.run("squeue", "--steps", "--noheader", f"--jobs={job}", "--format=%i|%j").stdout
    names = dict(line.split("|") for line in steps.split())
    # pvpython's step, and the pvserver ranks' step started with srun inside the allocation
    assert any(name == "pvserver" for name in names.values()), steps
    out = kernel.run("print(objects['app'].partitions())")
    assert "[0, 1]" in out, out
    assert_route_answers(server, state["url"])
    kernel.run("objects['app'].stop()", timeout=60)
    assert cluster.wait_no_jobs(timeout=JOB_GONE) == []


def test_remote_desktop_as_a_job(kernel: Kernel, server: JupyterServer, cluster: Cluster) -> None:
    kernel.run(
        "from nbviz import RemoteDesktop\n"
        "objects = globals().setdefault('objects', {})\n"
        "objects['app'] = RemoteDesktop('xpra', slurm={'time': '10'})\n"
        "objects['app'].wait_ready(120)\n",
        timeout=150,
    )
    state = info(kernel)
    assert state["status"] == "ready" and state["transport"].startswith("slurm/"), state
    assert cluster.jobs(name=f"nbviz-{state['session']}")
    assert_route_answers(server, state["url"])
    kernel.run("objects['app'].stop()", timeout=60)
    assert cluster.wait_no_jobs(timeout=JOB_GONE) == []


def test_session_api_reports_the_transport(kernel: Kernel, server: JupyterServer) -> None:
    start_webapp(kernel, "unix")
    kernel.run("objects['app'].wait_ready(90)", timeout=120)
    session = info(kernel)["session"]
    status, body, _ = server.get("nbviz/api/sessions")
    assert status == 200
    sessions = {s["id"]: s for s in json.loads(body)["sessions"]}
    assert sessions[session]["transport"] == "slurm/unix", sessions[session]


def test_doctor_sees_the_cluster_and_a_kernel_inside_a_job(cluster: Cluster) -> None:
    nbviz = [sys.executable, "-m", "nbviz.cli", "doctor", "--no-routes"]
    out = cluster.run(*nbviz).stdout
    assert "[ok  ] Slurm: slurm= can submit here; partitions: debug*" in out, out
    # run where a kernel on a compute node runs: inside a job
    out = cluster.run("srun", "--ntasks=1", "--time=5", *nbviz).stdout
    assert "runs inside Slurm job" in out and f"on {cluster.node}" in out, out


# ----------------------------------------------------- a second node, on another "host"
@pytest.fixture(scope="module")
def two_node_server(two_nodes: tuple[Cluster, Node]) -> Iterator[JupyterServer]:
    cluster, node = two_nodes
    allow = "".join(
        f"c.{route}.host_allowlist = [{node.ip!r}]\n" for route in ("NbvizRoute", "ServerProxy")
    )
    with jupyter_for(cluster, allow) as started:
        yield started


def test_a_job_on_another_node_is_reached_across_hosts(
    two_nodes: tuple[Cluster, Node], two_node_server: JupyterServer, tmp_path: Path
) -> None:
    """On another node, a host gate stands in front of the backend: the route passes it (the
    server shows it the session's secret), nobody else on the network does."""
    cluster, node = two_nodes
    kernel = Kernel(two_node_server)
    remote = {"partition": "remote", "time": "10"}
    try:
        kernel.run(f"import json, sys\nfrom nbviz import WebApp\nBACKEND = {str(BACKEND)!r}")
        baseline = node.pids()
        kernel.run(
            "objects = {}\n"
            "objects['app'] = WebApp([sys.executable, BACKEND, '--port', '{port}', '--heading',"
            " 'on the second node', '--require-secret', 'key'], secret_param='key',"
            f" slurm={remote!r}, timeout=60)\n"
            "objects['app'].wait_ready(90)\n",
            timeout=120,
        )
        state = info(kernel)
        assert state["transport"] == "slurm/gate/private", state
        assert state["job"]["node"] == SECOND_NODE_NAME and state["job"]["address"] == node.ip
        host, port = state["endpoint"]
        assert host == node.ip, state
        # the backend runs on the node (in its network), started there by its slurmd
        assert node.pids() - baseline, "nothing runs on the second node"
        # through Jupyter's route, across the "hosts"; the page holds the session secret
        status, body, _ = two_node_server.get(state["url"] + state["path"].lstrip("/"))
        assert status == 200 and b"on the second node" in body, (status, body[:300])
        assert two_node_server.get(state["url"])[0] == 403  # the app's own check, behind the gate
        # anyone on the cluster network reaches the node's port: the gate, which says no
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://{host}:{port}/", timeout=10)
        assert refused.value.code == 403 and b"gate" in refused.value.read()
        kernel.run("objects['app'].stop()", timeout=60)
        assert cluster.wait_no_jobs(timeout=JOB_GONE) == []
        wait_until(lambda: node.pids() == baseline, timeout=JOB_GONE, what="node2 to be empty")

        # a backend on a Unix socket there: behind the gate too
        start_webapp(kernel, "unix", slurm=remote)
        kernel.run("objects['app'].wait_ready(90)", timeout=120)
        state = info(kernel)
        assert state["transport"] == "slurm/gate/unix", state
        assert_route_answers(two_node_server, state["url"])
        kernel.run("objects['app'].stop()", timeout=60)
        assert cluster.wait_no_jobs(timeout=JOB_GONE) == []

        # a desktop and a ParaView session work with their kernel through their own host's
        # files (X tools, the control channel): not on another node; a clear error, and their
        # jobs are cancelled
        data = heat_series(tmp_path / "heat", n=8, steps=1)
        kernel.run(
            "from nbviz import ParaViewSession, RemoteDesktop\n"
            f"objects['desk'] = RemoteDesktop('xpra', slurm={remote!r})\n"
            f"objects['view'] = ParaViewSession({str(data)!r}, slurm={remote!r})"
        )
        for name in ("desk", "view"):
            wait_until(lambda n=name: info(kernel, n)["status"] == "crashed", timeout=30, what=name)
            assert "another host than this kernel" in info(kernel, name)["error"]
        assert cluster.wait_no_jobs(timeout=JOB_GONE) == []

        # without nbviz's route (jupyter-server-proxy's by port: it cannot show a gate the
        # secret): the node's host:port, where the app itself checks the secret
        kernel.run(
            "objects['app'] = WebApp([sys.executable, BACKEND, '--host', '0.0.0.0', '--port',"
            " '{port}', '--heading', 'by port', '--require-secret', 'key'], secret_param='key',"
            f" route='proxy', slurm={remote!r}, timeout=60)\n"
            "objects['app'].wait_ready(90)\n",
            timeout=120,
        )
        state = info(kernel)
        assert state["transport"] == "slurm/host", state
        assert state["url"].endswith(f"proxy/{node.ip}:{state['endpoint'][1]}/"), state
        status, body, _ = two_node_server.get(state["url"] + state["path"].lstrip("/"))
        assert status == 200 and b"by port" in body, (status, body[:300])
        kernel.run("objects['app'].stop()", timeout=60)
        assert cluster.wait_no_jobs(timeout=JOB_GONE) == []
    finally:
        kernel.close()


def test_jobs_that_slurm_ends_turn_their_objects_crashed(
    two_nodes: tuple[Cluster, Node], two_node_server: JupyterServer
) -> None:
    """Two jobs end without anyone cancelling them, with their backends running:
    - one reaches its time limit (``time='1'``: slurmctld ends it in 60-90 s);
    - the other's node goes down (``scontrol update State=DOWN``, as an admin or slurmctld does
      when a node stops answering) meanwhile.
    Each object turns ``crashed`` with Slurm's word for it, its job ends, and nothing of it
    stays on the node."""
    cluster, node = two_nodes
    kernel = Kernel(two_node_server)
    down = ("scontrol", "update", f"NodeName={SECOND_NODE_NAME}")
    try:
        kernel.run(f"import json, sys\nfrom nbviz import WebApp\nBACKEND = {str(BACKEND)!r}")
        baseline = node.pids()
        start_webapp(kernel, "unix", name="timed", slurm={"time": "1"})
        kernel.run("objects['timed'].wait_ready(90)", timeout=120)
        timed = info(kernel, "timed")["job"]
        start_webapp(kernel, "port", slurm={"partition": "remote", "time": "10"})
        kernel.run("objects['app'].wait_ready(90)", timeout=120)
        job = info(kernel)["job"]
        assert job["node"] == SECOND_NODE_NAME, job
        cluster.run(*down, "State=DOWN", "Reason=nbviz test node failure")
        wait_until(lambda: info(kernel)["status"] == "crashed", timeout=60, what="crashed")
        first = info(kernel)["error"].splitlines()[0]
        # (the node's own state and reason are in it while the node stays down; this
        # cluster's ReturnToService=2 may have it back already: unit-tested)
        assert first.startswith(f"nbviz: Slurm job {job['id']} lost its node (nbviz-node2"), first
        assert "Slurm's reason: NodeDown" in first, first
        wait_until(lambda: node.pids() == baseline, timeout=JOB_GONE, what="node2 to be empty")

        assert info(kernel, "timed")["status"] == "ready"
        wait_until(
            lambda: info(kernel, "timed")["status"] == "crashed", timeout=120, what="TIMEOUT"
        )
        first = info(kernel, "timed")["error"].splitlines()[0]
        assert first.startswith(f"nbviz: Slurm job {timed['id']} reached its time limit"), first
        assert cluster.wait_no_jobs(timeout=JOB_GONE) == []
    finally:
        kernel.close()
        cluster.run(*down, "State=RESUME", check=False)
        state = ""
        for _ in range(300):
            state = cluster.run("sinfo", "-h", "-n", SECOND_NODE_NAME, "-o", "%T").stdout.strip()
            if state == "idle":
                break
            time.sleep(0.1)
        assert state == "idle", f"node2 is {state!r} after State=RESUME"
