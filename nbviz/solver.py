"""``Solver``: a simulation run in the background from a notebook, ended with the kernel.

>>> run = Solver("icoFoam", cwd="cavity")          # starts at once, output in cavity/log.icoFoam
>>> view = ParaViewSession("cavity/cavity.foam", follow=True)
>>> run.status, run.logs(5)
>>> run.stop()                                      # or: the kernel dies (even SIGKILL)

The process runs in a process group of its own, marked with a session id in its environment,
and is registered with nbviz's orphan watchdog (``_orphans``), the one that ends backends: when
the kernel exits or is killed, the watchdog ends the solver with every process it started
(``mpirun`` and its ranks too).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from . import _orphans
from ._errors import NbvizError, ProgramNotFoundError
from ._spec import split_command
from ._tree import SESSION_ENV_VAR, kill_tree

__all__ = ["Solver"]

Status = Literal["running", "finished", "failed", "stopped"]
#: Debian's OpenFOAM finds its etc/ only through this variable.
DEBIAN_OPENFOAM = "/usr/share/openfoam"
STOP_GRACE = 5.0


class Solver:
    """Run ``command`` (a list, or a string split like a shell would) in ``cwd``, in the
    background; its output goes to ``log`` (default ``<cwd>/log.<program>``, as OpenFOAM's
    tutorials name theirs).

    The environment is the kernel's plus ``env``; ``WM_PROJECT_DIR`` is set to Debian's
    OpenFOAM (``/usr/share/openfoam``) when it is not set and that exists, and a root user may
    run ``mpirun`` (OpenMPI's ``OMPI_ALLOW_RUN_AS_ROOT``). ``stop()`` ends the solver and all
    it started; so does the kernel's death.
    """

    def __init__(
        self,
        command: str | Sequence[str],
        *,
        cwd: str | os.PathLike[str] = ".",
        env: Mapping[str, str] | None = None,
        log: str | os.PathLike[str] | None = None,
    ) -> None:
        argv = (
            split_command(command, "Solver")
            if isinstance(command, str)
            else [str(c) for c in command]
        )
        if not argv:
            raise NbvizError("nbviz: Solver needs a command, e.g. Solver('icoFoam', cwd=case)")
        self.cwd = Path(cwd).resolve()
        if not self.cwd.is_dir():
            raise NbvizError(f"nbviz: Solver: the directory {self.cwd} does not exist")
        environment = {**os.environ, **(env or {})}
        if "WM_PROJECT_DIR" not in environment and os.path.isdir(DEBIAN_OPENFOAM):
            environment["WM_PROJECT_DIR"] = DEBIAN_OPENFOAM
        if os.getuid() == 0:
            environment.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
            environment.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        self.session_id = "solver-" + secrets.token_hex(6)
        environment[SESSION_ENV_VAR] = self.session_id
        program = shutil.which(argv[0], path=environment.get("PATH"))
        if program is None:
            hint = (
                "install OpenFOAM (apt-get install openfoam)"
                if argv[0].endswith("Foam") or argv[0] in ("blockMesh", "decomposePar")
                else "install it or give its full path"
            )
            raise ProgramNotFoundError(f"nbviz: Solver: {argv[0]} not found on PATH; {hint}")
        self.command = argv
        self.log = Path(log) if log is not None else self.cwd / f"log.{_solver_name(argv)}"
        self._stopped = False
        with open(self.log, "ab") as out:
            self._proc = subprocess.Popen(
                [program, *argv[1:]],
                cwd=self.cwd,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() reaches its children
                close_fds=True,
            )
        _orphans.guard(self._proc.pid, [], session=self.session_id)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once it ended (negative: killed by that signal), else None."""
        return self._proc.poll()

    @property
    def status(self) -> Status:
        code = self._proc.poll()
        if code is None:
            return "running"
        if self._stopped:
            return "stopped"
        if code == 0:
            self._release()
            return "finished"
        self._release()
        return "failed"

    def wait(self, timeout: float | None = None) -> int:
        """Wait until it ends; its exit code (``subprocess.TimeoutExpired`` after ``timeout``)."""
        code = self._proc.wait(timeout)
        self._release()
        return code

    def logs(self, lines: int | None = 20) -> str:
        """The last ``lines`` lines of its output (all with None)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        kept = text.splitlines()
        return "\n".join(kept if lines is None else kept[-lines:])

    def stop(self) -> None:
        """End it and every process it started (SIGTERM, then SIGKILL after 5 s): its process
        tree, its process group and whatever carries its session id (as for a backend)."""
        if self._proc.poll() is None:
            self._stopped = True
        kill_tree(self._proc, grace=STOP_GRACE, session_id=self.session_id)
        self._proc.poll()
        self._release()

    def _release(self) -> None:
        _orphans.release(self._proc.pid)

    def __enter__(self) -> Solver:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Solver {' '.join(self.command)!r} in {self.cwd} {self.status}>"


#: Programs that start the solver (its name is further on in the command).
LAUNCHERS = ("mpirun", "mpiexec", "orterun", "srun")


def _solver_name(argv: list[str]) -> str:
    """``icoFoam`` of ``mpirun -np 2 icoFoam -parallel``: the log file's name."""
    for arg in argv:
        name = os.path.basename(arg)
        if name not in LAUNCHERS and not arg.startswith("-") and not arg.isdigit():
            return name
    return os.path.basename(argv[0])
