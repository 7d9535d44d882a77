"""OpenFOAM cases for the tests, made by the real OpenFOAM tools (Debian's ``openfoam``).

A tutorial case is copied into the test's directory and run there with blockMesh, icoFoam,
decomposePar, foamToVTK: the files ParaView reads are the solver's, not ones nbviz writes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

TUTORIALS = Path("/usr/share/doc/openfoam-examples/examples")
CAVITY = TUTORIALS / "incompressible/icoFoam/cavity/cavity"

needs_openfoam = pytest.mark.skipif(
    not shutil.which("icoFoam") or not CAVITY.is_dir(),
    reason="needs OpenFOAM and its tutorials (apt-get install openfoam openfoam-examples)",
)


def openfoam_env() -> dict[str, str]:
    """The environment OpenFOAM's tools need (Debian's build finds its etc/ through
    WM_PROJECT_DIR); MPI runs as root need OpenMPI's consent."""
    env = dict(os.environ, WM_PROJECT_DIR=os.environ.get("WM_PROJECT_DIR", "/usr/share/openfoam"))
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env.setdefault("OMPI_MCA_btl", "self,vader")
    return env


def run(case: Path, *command: str) -> None:
    """Run an OpenFOAM tool in ``case``; its output goes to ``log.<tool>`` there."""
    name = next(part for part in command if not part.startswith("-") and part != "mpirun")
    log = case / f"log.{name}"
    with open(log, "ab") as out:
        done = subprocess.run(
            command, cwd=case, env=openfoam_env(), stdout=out, stderr=subprocess.STDOUT
        )
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed in {case}:\n{log.read_text()[-3000:]}")


def set_control(case: Path, **entries: object) -> None:
    """Change entries of ``system/controlDict`` (``endTime=2``, ``writeInterval=5``)."""
    path = case / "system" / "controlDict"
    text = path.read_text()
    for key, value in entries.items():
        text, count = re.subn(rf"^({key}\s+)[^;]*;", rf"\g<1>{value};", text, flags=re.M)
        assert count == 1, f"no {key} in {path}"
    path.write_text(text)


def cavity(directory: Path, *, solve: bool = True, name: str = "cavity") -> Path:
    """The lid-driven cavity tutorial (20x20 cells, lid moving in +x), meshed and, with
    ``solve``, run to t = 0.5 (steps 0.1 .. 0.5); returns the case directory, which holds the
    empty ``<name>.foam`` file ParaView opens a case by."""
    case = directory / name
    shutil.copytree(CAVITY, case)
    run(case, "blockMesh")
    if solve:
        run(case, "icoFoam")
    (case / f"{name}.foam").touch()
    return case


def decompose(case: Path, parts: int = 2) -> None:
    """Split the case into ``parts`` processor directories (``decomposePar``, simple method)."""
    (case / "system" / "decomposeParDict").write_text(
        "FoamFile { version 2.0; format ascii; class dictionary; object decomposeParDict; }\n"
        f"numberOfSubdomains {parts};\nmethod simple;\n"
        f"coeffs {{ n ({parts} 1 1); }}\nsimpleCoeffs {{ n ({parts} 1 1); delta 0.001; }}\n"
    )
    run(case, "decomposePar", "-force")


def start_solver(case: Path, solver: str = "icoFoam") -> subprocess.Popen[bytes]:
    """Start ``solver`` in ``case`` in the background (its own process group, output in
    ``log.<solver>``); the caller ends it with ``stop_solver``."""
    log = open(case / f"log.{solver}", "ab")  # noqa: SIM115 - closed with the process
    try:
        return subprocess.Popen(
            [solver],
            cwd=case,
            env=openfoam_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        log.close()


def stop_solver(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
