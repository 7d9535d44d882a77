"""What the kernel builds for a ``ParaViewSession`` before anything runs (pure: no traits).

The arguments are checked here (the data and the programs by ``_checks.py``) and turned into
the launcher's command (``runtime/launcher.py``, run by path: a private Xvfb and pvpython with
nbviz's app) and the :class:`~nbviz._spec.Spec` the lifecycle starts.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import _gate
from .._errors import ArgumentTypeError
from .._spec import Endpoint, Spec, find_program
from ._checks import (
    DataError,
    _explain,
    _glob_of,
    _vtk_values,
    check_arguments,
    check_xvfb,
    find_pvpython,
    is_openfoam,
    resolve_data,
    trame_site,
)

DEFAULT_LAUNCHER = "mpiexec -n {ranks}"
#: How ranks start inside a Slurm job (``slurm=``): a step sharing the allocation's CPUs.
SLURM_LAUNCHER = "srun --overlap -n {ranks}"
#: Launchers that start the ranks on this machine: their sessions get a network of their own.
LOCAL_LAUNCHERS = ("mpiexec", "mpirun", "orterun")
#: The session's backend process, run by path in another interpreter (standard library only).
LAUNCHER = Path(__file__).resolve().with_name("runtime") / "launcher.py"
#: How the data of an OpenFOAM case is read (ParaView's OpenFOAM reader's "CaseType").
CASE_TYPES = ("auto", "reconstructed", "decomposed")
#: The query parameter by which the page hands the trame app its session secret (TCP only).
SECRET_PARAM = _gate.PARAM


@dataclass(frozen=True)
class SessionSpec:
    """What one ``ParaViewSession`` starts: its Spec, the title, and the numpy array (or None)
    saved as ``{session_dir}/array.npy`` at each start."""

    spec: Spec
    title: str
    array: Any = None


def session_spec(
    data: Any,
    *,
    probe: Callable[[Endpoint], bool],
    title: str | None,
    size: tuple[int, int],
    timeout: float,
    spacing: Sequence[float],
    origin: Sequence[float],
    array_name: str,
    ranks: int | None,
    launcher: str,
    regions: Sequence[str] | None,
    case_type: str,
    follow: bool,
    follow_interval: float,
    settle: float,
    slurm: Mapping[str, object] | bool | None,
) -> SessionSpec:
    """Check the arguments of ``ParaViewSession(data, ...)`` and build what it starts;
    ``probe`` tells when the app answers on its control channel."""
    check_arguments(size=size, spacing=spacing, origin=origin, ranks=ranks, regions=regions)
    if slurm not in (None, False) and ranks is not None:
        # the job holds pvpython and the ranks; the ranks are a step of it (srun), which
        # starts them with the site's MPI plugin (MpiDefault) and never on the login node
        options = {} if slurm is True else dict(slurm)  # type: ignore[arg-type]
        options.setdefault("ntasks", int(ranks) + 1)
        options.setdefault("nodes", 1)  # the ranks connect back to pvpython on localhost
        if str(options["nodes"]).strip() not in ("1", "1-1"):
            raise ArgumentTypeError(
                f"nbviz: ParaView's ranks run on pvpython's node (they connect to it on "
                f"localhost and talk through shared memory): slurm={{'nodes': "
                f"{options['nodes']!r}}} is not supported; leave nodes out or give nodes=1"
            )
        slurm = options
        if launcher == DEFAULT_LAUNCHER:
            launcher = SLURM_LAUNCHER
    for name, value in (("follow_interval", follow_interval), ("settle", settle)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ArgumentTypeError(f"{name}= must be a number of seconds >= 0, got {value!r}")
    if case_type not in CASE_TYPES:
        raise ArgumentTypeError(
            f"case_type= must be one of {', '.join(map(repr, CASE_TYPES))}, got {case_type!r}"
        )
    pvpython = find_pvpython()
    check_xvfb()
    site = trame_site()
    parallel: list[str] = []
    private_network = False
    if ranks is not None:
        if int(ranks) < 1:
            raise DataError(f"nbviz: ranks must be 1 or more, got {ranks}")
        if hasattr(data, "shape"):
            raise DataError(
                "nbviz: ranks= reads files in parallel; write the array with write_vti first"
            )
        program = launcher.split()[0] if launcher.split() else ""
        for needed in (program, "pvserver"):
            find_program(needed)
        # a local mpiexec listens on every interface: keep the session off the network
        private_network = os.path.basename(program).startswith(LOCAL_LAUNCHERS)
        parallel = [
            "--ranks",
            str(int(ranks)),
            "--launcher",
            literal(launcher),
            "--pvserver",
            literal(shutil.which("pvserver") or "pvserver"),
        ]
    array: Any = None
    pattern = ""
    if hasattr(data, "shape") and hasattr(data, "dtype"):
        if len(data.shape) not in (2, 3):
            raise DataError(f"nbviz: a numpy array must be 2-D or 3-D, got shape {data.shape}")
        array = _vtk_values(data)
        paths = ["{session_dir}/array.npy"]
        label = f"array {'x'.join(map(str, data.shape))}"
    else:
        files = resolve_data(data)
        pattern = _glob_of(data)
        if case_type != "auto" and not is_openfoam(files[0]):
            raise DataError(
                "nbviz: case_type= says how to read an OpenFOAM case (a .foam file); "
                f"{os.path.basename(files[0])} is not one"
            )
        paths = [literal(p) for p in files]
        label = os.path.basename(files[0]) + (f" (+{len(paths) - 1})" if len(paths) > 1 else "")
    title = title or f"ParaView \u2014 {label}"
    width, height_px = size
    command = [
        sys.executable,
        "-S",  # the launcher needs only the standard library: start it fast
        literal(str(LAUNCHER)),
        "--pvpython",
        literal(pvpython),
        "--pythonpath",
        literal(site),
        *(
            ["--xvfb", "--xauthority", "{session_dir}/xauthority"]
            if not os.environ.get("NBVIZ_PARAVIEW_DISPLAY")
            else []
        ),
        *(["--connect-id", str(secrets.randbelow(2**31 - 2) + 1)] if ranks is not None else []),
        *(["--private-network"] if private_network else []),
        "--",
        *parallel,
        "--socket",
        "{unix_socket}",
        "--control",
        "{socket_dir}/control.sock",
        "--title",
        literal(title),
        "--width",
        str(width),
        "--height",
        str(height_px),
        "--spacing",
        *[str(float(v)) for v in spacing],
        "--origin",
        *[str(float(v)) for v in origin],
        "--array-name",
        literal(array_name),
        "--case-type",
        case_type,
        *(["--follow"] if follow else []),
        "--follow-interval",
        str(max(float(follow_interval), 0.05)),
        "--settle",
        str(float(settle)),
        *(["--glob", literal(pattern)] if pattern else []),
        *(["--regions", *(literal(r) for r in regions)] if regions is not None else []),
        "--data",
        *paths,
    ]
    env = {}
    if os.environ.get("NBVIZ_PARAVIEW_DISPLAY"):
        env["DISPLAY"] = os.environ["NBVIZ_PARAVIEW_DISPLAY"]
    at = command.index("{unix_socket}")
    spec = Spec.build(
        command,
        timeout=timeout,
        env=env,
        name="pvpython",
        probe=probe,
        # Without nbviz's route the page reaches trame on a loopback port, where every
        # local user could connect: the app then admits only holders of the session secret.
        secret_param=SECRET_PARAM,
        # (A TCP port inside a private network namespace would be out of reach: over TCP
        # the MPI ranks stay on the host's network.)
        tcp_command=[
            *(item for item in command[: at - 1] if item != "--private-network"),
            "--port",
            "{port}",
            *command[at + 1 :],
        ],
        slurm=slurm,
        near_kernel=True,  # the control channel: a Unix socket in the session's socket dir
        explain=_explain,  # (unreadable data: the app's own words, not "pvpython exited")
    )
    return SessionSpec(spec, title, array)


def literal(text: str) -> str:
    """Escape braces so a user's string passes through the command template unchanged."""
    return text.replace("{", "{{").replace("}", "}}")
