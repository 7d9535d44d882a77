"""What Slurm placement costs at start: constructor to ready with ``slurm=`` and without, side
by side in one run (``make bench``).

A real one-node cluster (munged, slurmctld, slurmd; tests/slurm_helpers.py) is started for the
run. The test backend (tests/resources/backend.py) is started again and again with
``nbviz._process.Process``, the two placements taking turns:

  here    the backend on this machine (the {port} app in its private network namespace)
  slurm   the same as a Slurm job: salloc, then srun as a step of it (slurm/private)

Reported: median (min/max) of start() to ready and the ratio slurm/here, the part of it that
is the allocation (salloc granted), and start to the job gone after stop(). The queue is empty
(no job waits for resources): this is the cost of Slurm itself. Never asserted in tests.

    python benchmarks/slurm.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
BACKEND = HERE.parent / "tests" / "resources" / "backend.py"

from _common import end_cleanly_on_sigterm, show  # noqa: E402
from slurm_helpers import NoCluster, slurm_cluster  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    end_cleanly_on_sigterm()
    try:
        cluster_context = slurm_cluster()
        cluster = cluster_context.__enter__()
    except NoCluster as exc:
        print(f"slurm benchmark skipped: {exc}")
        return 0
    try:
        os.environ.update(cluster.env)
        with tempfile.TemporaryDirectory(prefix="nbviz-bench-") as tmp:
            os.environ["NBVIZ_RUNTIME_DIR"] = str(Path(tmp) / "nbviz")
            from nbviz._process import Process
            from nbviz._spec import Spec

            kinds = {"here": None, "slurm": {"time": "5", "ntasks": 1}}
            ready: dict[str, list[float]] = {kind: [] for kind in kinds}
            granted: list[float] = []
            gone: list[float] = []
            for round_ in range(args.rounds):
                order = list(kinds) if round_ % 2 == 0 else list(reversed(kinds))
                for kind in order:
                    spec = Spec.build(
                        [sys.executable, str(BACKEND), "--port", "{port}"],
                        timeout=60,
                        slurm=kinds[kind],
                    )
                    process = Process(spec, private_route=True)
                    started = time.perf_counter()
                    process.start()
                    process.wait_ready(90)
                    ready[kind].append(time.perf_counter() - started)
                    if kind == "slurm":
                        assert process.transport.name == "slurm/private", process.transport.name
                        assert process.started_at is not None
                        # the step's launch is when the allocation was granted (plus a spawn)
                        granted.append(process.started_at - (time.time() - ready[kind][-1]))
                        stopping = time.perf_counter()
                        process.stop()
                        left = cluster.wait_no_jobs(timeout=30)
                        assert not left, left
                        gone.append(time.perf_counter() - stopping)
                    else:
                        process.stop()
    finally:
        cluster_context.__exit__(None, None, None)
    load = os.getloadavg()[0]
    base = statistics.median(ready["here"])

    def line(name: str, values: list[float], ratio: bool = False) -> str:
        median = statistics.median(values)
        text = (
            f"  {name:34s} median {median * 1000:7.1f} ms  (min {min(values) * 1000:.1f}, "
            f"max {max(values) * 1000:.1f})"
        )
        return text + (f"  {median / base:.2f}x here" if ratio else "")

    show(
        f"start() -> ready, test backend on {{port}}, {args.rounds} rounds, load {load:.1f}",
        [
            line("here (private network namespace)", ready["here"], ratio=True),
            line("slurm= (salloc + srun step)", ready["slurm"], ratio=True),
            line("  of which: until the job ran", granted),
            line("stop() -> job gone from squeue", gone),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
