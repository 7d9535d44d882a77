"""What a transport costs at start: constructor to ready, side by side in one run (``make bench``).

The test backend (tests/resources/backend.py, a tornado app) is started again and again with
``nbviz._process.Process`` on each transport a local app can get, the transports taking turns
(no transport always first):

  loopback   {port} on the host's 127.0.0.1 (the app must check the secret)
  private    {port} in a network namespace of its own, bridged to a 0600 Unix socket
  unix       {unix_socket} (the app listens on the socket itself)

Reported: the median (and min/max) of start() to ready, and the ratios private/loopback and
unix/loopback; and the one-time check whether this machine allows private namespaces (a
kernel runs it once). Never asserted in tests.

    python benchmarks/transports.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BACKEND = HERE.parent / "tests" / "resources" / "backend.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nbviz-bench-") as tmp:
        os.environ["NBVIZ_RUNTIME_DIR"] = str(Path(tmp) / "nbviz")
        from nbviz import _transport
        from nbviz._process import Process
        from nbviz._spec import Spec

        checks = []
        for _ in range(5):
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-S", str(_transport.NETNS_RUNNER), "--check"], check=True
            )
            checks.append(time.perf_counter() - started)
        kinds = {
            "loopback": (["--port", "{port}"], False),
            "private": (["--port", "{port}"], True),
            "unix": (["--unix-socket", "{unix_socket}"], False),
        }
        times: dict[str, list[float]] = {kind: [] for kind in kinds}
        for round_ in range(args.rounds):
            order = list(kinds)
            order = order[round_ % len(order) :] + order[: round_ % len(order)]
            for kind in order:
                listen, private = kinds[kind]
                spec = Spec.build([sys.executable, str(BACKEND), *listen], timeout=30)
                process = Process(spec, private_route=private)
                started = time.perf_counter()
                process.start()
                process.wait_ready(30)
                times[kind].append(time.perf_counter() - started)
                assert process.transport.name == kind, process.transport.name
                process.stop()
    load = os.getloadavg()[0]
    print(f"start() -> ready, test backend, {args.rounds} rounds, load {load:.1f}")
    base = statistics.median(times["loopback"])
    for kind, values in times.items():
        median = statistics.median(values)
        print(
            f"  {kind:9s} median {median * 1000:6.1f} ms  (min {min(values) * 1000:.1f}, "
            f"max {max(values) * 1000:.1f})  {median / base:.2f}x loopback"
        )
    print(f"  namespace check (once per kernel): median {statistics.median(checks) * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
