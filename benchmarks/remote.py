"""What does reaching a backend on another host cost? Side by side, in one run (root only).

The "other host" is a network namespace joined by a veth pair (tests/netns_helpers.py), with a
private sshd in it. The test backend (tests/resources/backend.py) runs three ways:

  local Unix      here, on a Unix socket                          the baseline of every ratio
  ssh forward     in the namespace via WebApp(ssh=...): its Unix socket forwarded by ssh -L
  host= TCP       in the namespace via `ip netns exec`, on <node ip>:<port> (WebApp(host=...))

and each is measured directly (the socket or address itself) and through nbviz's route in a
real JupyterLab (token, base URL /user/alice/, c.NbvizRoute.host_allowlist = [node ip]).
Loads per round, routes taking turns: 1 KB replies with 4 keep-alive clients (req/s), 10 MB
bodies on one connection (MB/s); and the time from start() to ready and of stop() for a fresh
session of each kind. Every number is the median over the rounds. Results go to
benchmarks/results/remote.json.

    sudo python benchmarks/remote.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _client

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"


def _load(name: str) -> Any:
    path = REPO / "tests" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"nbviz_bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


helpers = _load("jupyter_helpers")
netns = _load("netns_helpers")

KINDS = {"unix": "local Unix", "ssh": "ssh forward", "host": "host= TCP"}


def spec_for(kind: str, node: Any, sshd: Any) -> Any:
    from nbviz._spec import Spec

    backend = [sys.executable, str(helpers.BACKEND)]
    if kind == "unix":
        return Spec.build([*backend, "--unix-socket", "{unix_socket}"], name=kind)
    if kind == "ssh":
        return Spec.build([*backend, "--unix-socket", "{unix_socket}"], ssh=sshd.args, name=kind)
    command = node.exec(*backend, "--host", node.ip, "--port", "{port}")
    return Spec.build(command, host=node.ip, name=kind)


def startups(node: Any, sshd: Any, rounds: int) -> dict[str, dict[str, list[float]]]:
    from nbviz._process import Process

    samples: dict[str, dict[str, list[float]]] = {"ready_s": {}, "stop_s": {}}
    kinds = list(KINDS)
    for round_ in range(rounds):
        print(f"round {round_ + 1}/{rounds} start/stop", flush=True)
        shift = round_ % len(kinds)
        for kind in kinds[shift:] + kinds[:shift]:
            proc = Process(spec_for(kind, node, sshd))
            started = time.perf_counter()
            proc.start()
            proc.wait_ready(30)
            ready = time.perf_counter() - started
            started = time.perf_counter()
            proc.stop()
            samples["ready_s"].setdefault(kind, []).append(ready)
            samples["stop_s"].setdefault(kind, []).append(time.perf_counter() - started)
    return samples


def run(root: Path, rounds: int) -> dict[str, dict[str, list[float]]]:
    with netns.network_namespace() as node, netns.private_sshd(node, root) as sshd:
        jupyter = root / "jupyter"
        (jupyter / "config").mkdir(parents=True)
        (jupyter / "config" / "jupyter_server_config.py").write_text(
            f"c.NbvizRoute.host_allowlist = [{node.ip!r}]\n"
        )
        server = helpers.JupyterServer(root=jupyter)
        processes: dict[str, Any] = {}
        try:
            print("starting JupyterLab, the namespace's sshd and three backends ...", flush=True)
            server.start()
            os.environ["NBVIZ_RUNTIME_DIR"] = str(jupyter / "runtime" / "nbviz")
            from nbviz._process import Process

            for kind in KINDS:
                processes[kind] = Process(spec_for(kind, node, sshd))
                processes[kind].start()
            for proc in processes.values():
                proc.wait_ready(30)
            samples = asyncio.run(
                _client.load_rounds(_client.session_targets(server, processes), rounds)
            )
        finally:
            for proc in processes.values():
                proc.stop()
            server.stop()
        samples.update(startups(node, sshd, rounds))
        return samples


def table(samples: dict[str, dict[str, list[float]]]) -> list[str]:
    def median(metric: str, key: str) -> float:
        return statistics.median(samples[metric][key])

    lines = [
        "| route | 1 KB req/s | 10 MB body (MB/s) |",
        "| --- | --- | --- |",
    ]
    for key in samples["req_1k"]:
        cells = []
        for metric in ("req_1k", "body_10m"):
            value = median(metric, key)
            base = median(metric, "direct unix" if key.startswith("direct") else "nbviz unix")
            cells.append(f"{value:,.0f} ({value / base:.2f}x)")
        via, kind = key.split()
        lines.append(f"| {via} {KINDS[kind]} | {' | '.join(cells)} |")
    lines += ["", "| backend | start() to ready (s) | stop() (s) |", "| --- | --- | --- |"]
    for kind, label in KINDS.items():
        lines.append(f"| {label} | {median('ready_s', kind):.2f} | {median('stop_s', kind):.3f} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds; each number is a median")
    parser.add_argument("--out", type=Path, default=RESULTS / "remote.json", help="JSON results")
    args = parser.parse_args()
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="nbviz-bench-remote-") as tmp:
            samples = run(Path(tmp), args.rounds)
    except netns.NoNamespace as exc:
        print(f"nbviz remote benchmark skipped: {exc}")
        return 0
    elapsed = time.perf_counter() - started
    now = datetime.datetime.now().astimezone()
    print()
    print(
        f"nbviz remote benchmark, {now:%Y-%m-%d %H:%M %Z}, {os.cpu_count()} cores, "
        f"median of {args.rounds} rounds, {elapsed:.0f} s; ratios to the local Unix backend "
        "(direct rows to direct, route rows to the route)"
    )
    print()
    print("\n".join(table(samples)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"date": now.isoformat(timespec="seconds"), "rounds": args.rounds, "samples": samples}
    args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
