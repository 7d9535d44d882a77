"""What Slurm placement costs: start to ready with ``slurm=`` and without, and the route to a
job's backend on this node and on a second node, side by side in one run (``make bench``).

A real cluster is started for the run (tests/slurm_helpers.py): munged, slurmctld and this
machine's slurmd, plus, as root, a second slurmd in a network namespace (another host as far
as the network goes; tests/netns_helpers.py). The test backend (tests/resources/backend.py)
runs with ``nbviz._process.Process``:

  start() -> ready, the placements taking turns:
    here     {port} in its private network namespace, as without slurm=
    slurm    the same as a Slurm job: salloc, then a srun step (slurm/private)
    node 2   the same as a job on the second node, behind its host gate (slurm/gate/private)
  loads (1 KB req/s with 4 keep-alive clients; 10 MB bodies, MB/s), each backend directly and
  through nbviz's route in a real JupyterLab, routes taking turns each round:
    local Unix        here, on a Unix socket (the baseline of the ratios)
    job, this node    slurm/unix
    node 2, gate      slurm/gate/unix: the host gate on <node 2 address>:<port>, in front of the
                      backend's Unix socket there ("direct" is through the gate, with the secret)
    node 2, gate, port  slurm/gate/private: the same for a {port} app, in its private network
                      there (the gate connects into it with a socket from its broker)
    node 2, by port   slurm/host: the backend itself on <node 2 address>:<port> (what nbviz
                      does without its route), in the server's allow-list

Every number is a median over the rounds. The queue is empty: this is the cost of Slurm
itself, not of waiting for a node. Never asserted in tests.

    python benchmarks/slurm.py [--rounds 10] [--load-rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
BACKEND = HERE.parent / "tests" / "resources" / "backend.py"

import _client  # noqa: E402
from _common import end_cleanly_on_sigterm, show  # noqa: E402
from jupyter_helpers import JupyterServer  # noqa: E402
from netns_helpers import Node, NoNamespace, network_namespace  # noqa: E402
from slurm_helpers import Cluster, NoCluster, slurm_cluster  # noqa: E402


@contextlib.contextmanager
def cluster_with_second_node() -> Iterator[tuple[Cluster, Node | None]]:
    try:
        with network_namespace() as node, slurm_cluster(second=node) as cluster:
            yield cluster, node
            return
    except NoNamespace as exc:
        print(f"(no second node: {exc})")
    with slurm_cluster() as cluster:
        yield cluster, None


def startups(rounds: int, node: Node | None) -> dict[str, list[float]]:
    from nbviz._process import Process
    from nbviz._spec import Spec

    kinds: dict[str, Any] = {"here": None, "slurm": {"time": "5", "ntasks": 1}}
    if node is not None:
        kinds["node 2"] = {"time": "5", "ntasks": 1, "partition": "remote"}
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    samples.update(granted=[], stop=[])
    transports = {"slurm": "slurm/private", "node 2": "slurm/gate/private"}
    for round_ in range(rounds):
        for kind in list(kinds) if round_ % 2 == 0 else list(reversed(kinds)):
            spec = Spec.build(
                [sys.executable, str(BACKEND), "--port", "{port}"], timeout=60, slurm=kinds[kind]
            )
            process = Process(spec, private_route=True)
            started, wall = time.perf_counter(), time.time()
            process.start()
            process.wait_ready(90)
            samples[kind].append(time.perf_counter() - started)
            stopping = time.perf_counter()
            process.stop()
            if kind in transports:
                assert process.transport.name == transports[kind], process.transport.name
            if kind == "slurm":
                assert process.started_at is not None
                samples["granted"].append(process.started_at - wall)  # the step's launch
                samples["stop"].append(time.perf_counter() - stopping)
    return samples


def route_loads(
    cluster: Cluster, node: Node | None, root: Path, rounds: int
) -> dict[str, dict[str, list[float]]]:
    from nbviz._process import Process
    from nbviz._spec import Spec

    (root / "config").mkdir(parents=True)
    if node is not None:
        (root / "config" / "jupyter_server_config.py").write_text(
            f"c.NbvizRoute.host_allowlist = [{node.ip!r}]\n"
        )
    server = JupyterServer(root=root)
    backend = [sys.executable, str(BACKEND)]
    specs = {
        "local Unix": Spec.build([*backend, "--unix-socket", "{unix_socket}"]),
        "job, this node": Spec.build(
            [*backend, "--unix-socket", "{unix_socket}"], slurm={"partition": cluster.partition}
        ),
    }
    if node is not None:
        specs["node 2, gate"] = Spec.build(
            [*backend, "--unix-socket", "{unix_socket}"], slurm={"partition": "remote"}
        )
        specs["node 2, gate, port"] = Spec.build(
            [*backend, "--port", "{port}"], slurm={"partition": "remote"}
        )
        specs["node 2, by port"] = Spec.build(
            [*backend, "--host", "0.0.0.0", "--port", "{port}"], slurm={"partition": "remote"}
        )
    processes: dict[str, Any] = {}
    try:
        server.start()
        os.environ["NBVIZ_RUNTIME_DIR"] = str(root / "runtime" / "nbviz")
        for name, spec in specs.items():
            # without nbviz's route (jupyter-server-proxy's), a job on another node is reached
            # by its port; the route reaches it that way too
            processes[name] = Process(spec, private_route=name != "node 2, by port")
            processes[name].start()
        for process in processes.values():
            process.wait_ready(90)
        return asyncio.run(_client.load_rounds(_client.session_targets(server, processes), rounds))
    finally:
        for process in processes.values():
            process.stop()
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="start/stop rounds")
    parser.add_argument("--load-rounds", type=int, default=3, help="rounds of the loads")
    args = parser.parse_args()
    end_cleanly_on_sigterm()
    try:
        with (
            cluster_with_second_node() as (cluster, node),
            tempfile.TemporaryDirectory(prefix="nbviz-bench-") as tmp,
        ):
            os.environ.update(cluster.env)
            os.environ["NBVIZ_RUNTIME_DIR"] = str(Path(tmp) / "nbviz")
            start = startups(args.rounds, node)
            load = route_loads(cluster, node, Path(tmp) / "jupyter", args.load_rounds)
            left = [f"job {j['id']}" for j in cluster.jobs()]
    except NoCluster as exc:
        print(f"slurm benchmark skipped: {exc}")
        return 0
    base = statistics.median(start["here"])

    def line(name: str, values: list[float], ratio: bool = False) -> str:
        median = statistics.median(values)
        text = (
            f"  {name:36s} median {median * 1000:7.1f} ms  (min {min(values) * 1000:.1f}, "
            f"max {max(values) * 1000:.1f})"
        )
        return text + (f"  {median / base:.2f}x here" if ratio else "")

    lines = [
        f"start() -> ready, test backend on {{port}}, {args.rounds} rounds:",
        line("here (private network namespace)", start["here"], ratio=True),
        line("slurm= (salloc + srun step)", start["slurm"], ratio=True),
        *([line("slurm= on node 2 (+ host gate)", start["node 2"], ratio=True)] if node else []),
        line("  of which: until the step started", start["granted"]),
        line("stop() of the slurm= one", start["stop"]),
        "",
        f"loads, median of {args.load_rounds} rounds (ratio to the local Unix backend, "
        "direct to direct, route to route):",
        f"  {'backend':20s} {'via':7s} {'1 KB req/s':>18s} {'10 MB body MB/s':>20s}",
    ]
    names = list(dict.fromkeys(key.split(" ", 1)[1] for key in load["req_1k"]))
    for via in ("direct", "nbviz"):
        for name in names:
            cells = []
            for metric in ("req_1k", "body_10m"):
                value = statistics.median(load[metric][f"{via} {name}"])
                ref = statistics.median(load[metric][f"{via} local Unix"])
                cells.append(f"{value:10,.0f} ({value / ref:.2f}x)")
            lines.append(
                f"  {name:20s} {via.replace('nbviz', 'route'):7s} {cells[0]:>18s} {cells[1]:>20s}"
            )
    show(f"nbviz on Slurm, load {os.getloadavg()[0]:.1f}", lines, left=left)
    return 0


if __name__ == "__main__":
    sys.exit(main())
