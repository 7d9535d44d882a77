"""A kernel on a compute node, its Jupyter server on the login node (the jupyter-slurm-provisioner
setup at JSC), on a real Slurm cluster whose second node is a network namespace: another host as
far as the network goes (its own 127.0.0.1, its own address).

The server (here, with nbviz's route and the node in its allow-list) starts the kernel as a
Slurm job step on the node through a kernel provisioner (``tests/resources/provisioner``). nbviz
in that kernel sees that its server is elsewhere and puts a host gate in front of each backend;
the browser's way in is still the server's route, behind Jupyter's auth.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from jupyter_helpers import (
    BACKEND,
    RESOURCES,
    JupyterServer,
    Kernel,
    assert_route_answers,
    pid_running,
    wait_until,
)
from netns_helpers import Node
from paraview_data import heat_series
from slurm_helpers import SECOND_NODE_NAME, Cluster, jupyter_for
from user_helpers import (
    http_status_as,
    other_user,
    probe_as,
    session_listeners,
    session_pids,
    targets_of,
)

from nbviz import _registry

pytestmark = pytest.mark.jupyter

GONE = 15.0
PROVISIONER = RESOURCES / "provisioner"


@pytest.fixture(scope="module")
def login_node(two_nodes: tuple[Cluster, Node]) -> Iterator[JupyterServer]:
    """The Jupyter server, here (the login node), with a kernel spec whose kernels run on the
    second node."""
    cluster, node = two_nodes
    config = f"c.NbvizRoute.host_allowlist = [{node.ip!r}]\nc.NbvizRoute.sweep_seconds = 1\n"
    with jupyter_for(cluster, config, env={"PYTHONPATH": str(PROVISIONER)}) as server:
        spec = server.root / "data" / "kernels" / "node2"
        spec.mkdir(parents=True)
        provisioner = {
            "provisioner_name": "nbviz-test-srun",
            "config": {"partition": "remote", "address": node.ip},
        }
        (spec / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": "Python 3 on node 2",
                    "language": "python",
                    "metadata": {"kernel_provisioner": provisioner},
                }
            )
        )
        yield server


@pytest.fixture
def node_kernel(login_node: JupyterServer, two_nodes: tuple[Cluster, Node]) -> Iterator[Kernel]:
    cluster, _node = two_nodes
    kernel = Kernel(login_node, name="node2")
    try:
        kernel.run(
            "import json, os, sys\nfrom nbviz import WebApp, _registry\n"
            f"BACKEND = {str(BACKEND)!r}\nobjects = {{}}"
        )
        yield kernel
    finally:
        if not getattr(kernel, "killed", False):
            kernel.run("[o.stop() for o in objects.values()]", 60)
        kernel.close()
        wait_until(lambda: not cluster.jobs(), timeout=GONE, what="the kernel's job to end")


def state(kernel: Kernel, name: str) -> dict:
    out = kernel.run(
        f"o = objects[{name!r}]\n"
        "print(json.dumps({'status': o.status, 'error': o.error, 'url': o.url, 'pid': o.pid,"
        " 'transport': o.transport, 'session': o._process.session_id,"
        " 'endpoint': [o.endpoint.host, o.endpoint.port],"
        " 'socket_dir': str(o._process.socket_dir), 'session_dir': str(o._process.session_dir)}))"
    )
    return dict(json.loads(out.strip().splitlines()[-1]))


def start(kernel: Kernel, name: str, listen: str, heading: str) -> dict:
    where = '"--port", "{port}"' if listen == "port" else '"--unix-socket", "{unix_socket}"'
    kernel.run(
        f"objects[{name!r}] = WebApp([sys.executable, BACKEND, {where}, '--heading', "
        f"{heading!r}], timeout=60)\nobjects[{name!r}].wait_ready(60)",
        timeout=90,
    )
    return state(kernel, name)


def test_a_kernel_on_a_compute_node_reaches_its_backends_through_a_host_gate(
    node_kernel: Kernel, login_node: JupyterServer, two_nodes: tuple[Cluster, Node]
) -> None:
    cluster, node = two_nodes
    where = json.loads(
        node_kernel.run(
            "import socket\nprint(json.dumps([os.getpid(), _registry.this_machine(),"
            " os.environ.get('SLURMD_NODENAME')]))"
        )
    )
    kernel_pid, machine, slurm_node = where
    # the kernel really runs on node 2, in its network, as a step of a Slurm job
    assert slurm_node == SECOND_NODE_NAME and kernel_pid in node.pids(), where
    assert machine != _registry.this_machine()

    unix = start(node_kernel, "unix", "unix", "gated unix")
    port = start(node_kernel, "port", "port", "gated port")
    assert unix["transport"] == "gate/unix", unix
    assert port["transport"] == "gate/private", port
    for app, heading in ((unix, b"gated unix"), (port, b"gated port")):
        host, gate_port = app["endpoint"]
        assert host == node.ip, app
        # the browser's way in: the server's route, with Jupyter's auth, across the hosts
        status, body, _ = login_node.get(app["url"])
        assert status == 200 and heading in body, (status, body[:300])
        assert login_node.get(app["url"], auth=False)[0] in (302, 403)
        # the backend's sockets are on the node, in a 0700 directory of the session
        assert app["socket_dir"].startswith("/tmp/") and app["socket_dir"].endswith("-gate")
        assert os.stat(app["socket_dir"]).st_mode & 0o777 == 0o700
        # the gate itself, from anywhere on the network: nothing without the session's secret
        direct = f"http://{host}:{gate_port}/"
        for headers in ({}, {"X-Nbviz-Gate": "wrong"}):
            request = urllib_request(direct, headers)
            assert request[0] == 403 and heading not in request[1], request

    # another local user reaches none of the session's listeners: the Unix sockets refuse, the
    # gate answers 403
    user = other_user()
    for app in (unix, port):
        found = session_listeners(app["pid"], app["session"])
        gate = f"{node.ip}:{app['endpoint'][1]}"
        tcp = {where: netns for kind, where, netns in found if kind == "tcp"}
        # on the node's network: the gate alone (an app on {port} listens in a network of its
        # own, on its 127.0.0.1)
        assert gate in tcp, found
        for where, netns in tcp.items():
            assert where == gate or (where.startswith("127.0.0.1:") and netns != tcp[gate])
        others = [t for t in targets_of(found) if t[0] != "tcp"]
        assert others, found
        assert "connected" not in probe_as(user, others), (app["transport"], others)
        assert http_status_as(user, [gate]) == ["403"], gate

    node_kernel.run("objects['unix'].stop(); objects['port'].stop()", timeout=60)
    for app in (unix, port):
        wait_until(lambda app=app: not os.path.exists(app["socket_dir"]), what="the gate's dir")
        assert not os.path.exists(app["session_dir"])
    assert not cluster.jobs("nbviz-")  # nothing of nbviz's is a job of its own here


def test_paraview_and_a_desktop_in_a_kernel_on_a_compute_node(
    node_kernel: Kernel, login_node: JupyterServer, tmp_path: Path
) -> None:
    """The backends that work with their kernel through files and sockets on their host (the
    control channel, the X display) run next to it, on the node, behind their gates."""
    data = heat_series(tmp_path / "heat", n=12, steps=2)
    node_kernel.run(
        "from nbviz import ParaViewSession, RemoteDesktop\n"
        f"objects['view'] = ParaViewSession({str(data)!r}, size=(200, 150))\n"
        "objects['desk'] = RemoteDesktop('xpra')\n"
        "objects['view'].wait_ready(150)\nobjects['desk'].wait_ready(150)\n",
        timeout=320,
    )
    for name in ("view", "desk"):
        app = state(node_kernel, name)
        assert app["status"] == "ready" and app["transport"] == "gate/unix", app
        assert_route_answers(login_node, app["url"])
    # the kernel API, over the control channel on the node
    out = node_kernel.run("print(len(objects['view'].times), objects['view'].data_range())")
    assert out.startswith("2 ["), out
    shot = node_kernel.run("print(objects['desk'].screenshot().size)")
    assert shot.strip().startswith("("), shot
    node_kernel.run("objects['view'].stop(); objects['desk'].stop()", timeout=60)


def test_killing_the_kernel_on_the_node_ends_its_backends(
    node_kernel: Kernel, two_nodes: tuple[Cluster, Node]
) -> None:
    _cluster, node = two_nodes
    app = start(node_kernel, "app", "unix", "to be orphaned")
    kernel_pid = int(node_kernel.run("print(os.getpid())").strip())
    backend = session_listeners(app["pid"], app["session"])
    assert backend and pid_running(app["pid"])
    os.kill(kernel_pid, signal.SIGKILL)
    node_kernel.killed = True  # type: ignore[attr-defined]
    wait_until(lambda: not pid_running(app["pid"]), timeout=GONE, what="the backend to end")
    wait_until(
        lambda: not session_listeners(app["pid"], app["session"]),
        timeout=GONE,
        what="the session's listeners (the gate) to end",
    )
    wait_until(lambda: not os.path.exists(app["socket_dir"]), timeout=GONE, what="gate's dir")
    wait_until(lambda: not os.path.exists(app["session_dir"]), timeout=GONE, what="session dir")
    assert kernel_pid not in node.pids()


def test_a_session_whose_kernel_died_with_its_watchdog_goes_with_its_job(
    node_kernel: Kernel, two_nodes: tuple[Cluster, Node]
) -> None:
    """Slurm ends a job's processes together (cgroup tracking): the kernel and its orphan
    watchdog can die at once, and nobody on the node removes the session's directory. The
    server cannot judge another machine's pids; it asks Slurm, and removes the session once
    the kernel's job is over."""
    cluster, _node = two_nodes
    app = start(node_kernel, "app", "unix", "left behind")
    job, kernel_pid = node_kernel.run("print(os.environ['SLURM_JOB_ID'], os.getpid())").split()
    watchdogs = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            watchdog = any("_watchdog.py" in part for part in proc.info["cmdline"] or ())
            if watchdog and proc.environ().get("SLURM_JOB_ID") == job:
                watchdogs.append(proc.pid)
    assert watchdogs, "the kernel's watchdog was not found"
    everything = [*watchdogs, int(kernel_pid), *session_pids(app["pid"], app["session"])]
    for pid in everything:  # as the job's end does: all at once, the watchdog first
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    node_kernel.killed = True  # type: ignore[attr-defined]
    wait_until(lambda: not cluster.jobs(f"kernel-{node_kernel.id}"), timeout=GONE, what="job end")
    wait_until(
        lambda: not os.path.exists(app["session_dir"]),
        timeout=GONE,
        what="the server's sweep to remove the session",
    )


def test_doctor_in_a_kernel_on_a_compute_node_says_how_backends_are_reached(
    node_kernel: Kernel, two_nodes: tuple[Cluster, Node]
) -> None:
    _cluster, node = two_nodes
    out = node_kernel.run(
        "import subprocess\n"
        "nbviz = os.path.join(os.path.dirname(sys.executable), 'nbviz')\n"
        "print(subprocess.run([nbviz, 'doctor', '--no-routes'], capture_output=True,"
        " text=True).stdout)",
        timeout=120,
    )
    assert "runs on another host than the Jupyter server" in out, out
    assert f"host gate on {node.ip}" in out, out
    assert "in the server's allow-list" in out, out


def urllib_request(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
