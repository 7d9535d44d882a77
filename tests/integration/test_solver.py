"""``Solver``: a real OpenFOAM solver run in the background, ended by stop() and by the death
of the kernel that started it (SIGKILL: the orphan watchdog ends it)."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import psutil
import pytest
from jupyter_helpers import JupyterServer, Kernel, running, wait_until
from openfoam_cases import cavity, decompose, needs_openfoam, set_control

from nbviz import NbvizError, ProgramNotFoundError, Solver

pytestmark = [needs_openfoam]


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def long_run(directory: Path) -> Path:
    """A cavity case that runs for minutes unless stopped."""
    case = cavity(directory, solve=False)
    set_control(case, deltaT=0.00005, endTime=1000, writeControl="clockTime", writeInterval=1)
    return case


def test_a_run_to_the_end(tmp_path: Path) -> None:
    case = cavity(tmp_path, solve=False)
    (case / "log.icoFoam").unlink(missing_ok=True)
    run = Solver("icoFoam", cwd=case)
    assert run.wait(60) == 0 and run.status == "finished" and run.returncode == 0
    assert (case / "0.5" / "U").is_file()  # the solver's own output
    assert run.log == case / "log.icoFoam" and "End" in run.logs(5)
    assert "finished" in repr(run)
    run.stop()  # stopping an ended run is harmless


def test_stop_ends_the_solver_and_all_it_started(tmp_path: Path) -> None:
    """A parallel run: mpirun and its two icoFoam ranks all end at stop()."""
    if not shutil.which("mpirun"):
        pytest.skip("needs mpirun (apt-get install mpi-default-bin)")
    case = long_run(tmp_path)
    decompose(case, 2)
    run = Solver(["mpirun", "-np", "2", "icoFoam", "-parallel"], cwd=case)
    try:
        wait_until(
            lambda: sum(p.name() == "icoFoam" for p in tree(run.pid)) == 2,
            timeout=30,
            what="two icoFoam ranks",
        )
        wait_until(lambda: (case / "processor1").is_dir(), timeout=30, what="processor dirs")
        procs = tree(run.pid)
        assert run.status == "running" and run.log == case / "log.icoFoam"
    finally:
        run.stop()
    assert run.status == "stopped"
    assert not any(running(p) for p in procs), [p for p in procs if running(p)]


def test_a_failing_run_and_mistakes(tmp_path: Path) -> None:
    run = Solver("icoFoam", cwd=tmp_path)  # not a case: OpenFOAM says why in its log
    assert run.wait(60) != 0 and run.status == "failed"
    assert "FOAM FATAL" in run.logs(None)
    with pytest.raises(ProgramNotFoundError, match=r"nbviz: Solver: nopeFoam not found.*openfoam"):
        Solver("nopeFoam", cwd=tmp_path)
    with pytest.raises(NbvizError, match=r"nbviz: Solver: the directory .*missing does not exist"):
        Solver("icoFoam", cwd=tmp_path / "missing")


@pytest.mark.jupyter
@pytest.mark.paraview
def test_the_kernel_killed_ends_the_solver(tmp_path: Path, jupyter_server: JupyterServer) -> None:
    """SIGKILL of the kernel that started a parallel run and a view following it (the
    tutorial's setup): the watchdog ends mpirun, its ranks, pvpython and its Xvfb."""
    if not shutil.which("mpirun"):
        pytest.skip("needs mpirun (apt-get install mpi-default-bin)")
    case = long_run(tmp_path)
    decompose(case, 2)
    kernel = Kernel(jupyter_server)
    try:
        out = kernel.run(
            "import json, time\nfrom nbviz import Solver\n"
            f"run = Solver('mpirun -np 2 icoFoam -parallel', cwd={str(case)!r})\n"
            "from nbviz import ParaViewSession\n"
            f"view = ParaViewSession({str(case / 'cavity.foam')!r}, follow=True)\n"
            "view.wait_ready(120)\n"
            "print(json.dumps({'pid': run.pid, 'status': run.status, 'view': view.pid,"
            " 'case_type': view.request('list')['case_type']}))"
        )
        info = json.loads(out.strip().splitlines()[-1])
        assert info["status"] == "running" and info["case_type"] == "decomposed"
        wait_until(
            lambda: sum(p.name() == "icoFoam" for p in tree(info["pid"])) == 2,
            timeout=30,
            what="two icoFoam ranks",
        )
        procs = tree(info["pid"]) + tree(info["view"])
        assert {"icoFoam", "mpirun", "pvpython", "Xvfb"} <= {p.name() for p in procs}
        os.kill(kernel.pid, signal.SIGKILL)
        wait_until(lambda: not any(running(p) for p in procs), timeout=15, what="all of it")
    finally:
        kernel.close()
