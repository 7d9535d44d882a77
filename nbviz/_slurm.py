"""Placing a backend on a Slurm compute node (``slurm=`` on every nbviz object).

One start is one Slurm job:

1. **Allocate.** ``salloc --no-shell --job-name=nbviz-<session id> <options>`` asks for the
   resources and returns once they are granted; while the job waits in the queue, ``squeue``
   says why (``PENDING (Resources)``), and the lifecycle shows it in the frame. The allocation
   runs nothing by itself, and it is the job: ``scancel`` ends everything in it.
2. **Run.** The backend runs as a step of it: ``srun --jobid=<id> --nodelist=<first node>
   --ntasks=1 --overlap <command>``. The local ``srun`` is the process the lifecycle watches;
   it forwards the backend's output to the session log and ends when the backend (or the job)
   does. Steps inside it (ParaView's pvserver ranks) use ``srun --overlap`` again.
3. **End.** ``stop()``, a crash, closing the widget and the kernel's death (through the orphan
   watchdog) all ``scancel`` the job. A job that Slurm ends (time limit, ``scancel`` from
   outside, a node failure) ends the step: the object turns ``crashed`` with Slurm's state and
   reason as the error's first line (``scontrol show job``).

Why ``salloc`` then ``srun`` rather than one ``srun`` or ``sbatch``: the node is known before
the backend starts, so the transport can be chosen for it (a Unix socket or a private network
namespace when the node is this machine, host:port behind the secret when it is not), and the
job id is known while it is still pending (for the frame and for ``scancel``). ``sbatch``
would leave no local process whose end is the backend's end.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from . import _registry
from ._errors import NbvizError, TemplateError

#: Programs of Slurm's client that nbviz runs.
PROGRAMS = ("salloc", "srun", "squeue", "scancel", "scontrol")
INSTALL = (
    "apt-get install slurm-client (Debian/Ubuntu), or load your site's Slurm module; "
    "the cluster's slurm.conf must be found (SLURM_CONF, or /etc/slurm/slurm.conf)"
)
JOB_NAME_PREFIX = "nbviz-"
#: Seconds between two looks at a pending job (squeue), and at salloc's exit.
POLL_INTERVAL = 0.5
EXIT_POLL = 0.02
#: Seconds one Slurm command may take.
COMMAND_TIMEOUT = 20.0
#: Seconds to wait for the final state of a job Slurm is ending (COMPLETING).
ENDING_WAIT = 8.0
#: squeue's states of a job that is not over yet.
ALIVE = ("PENDING", "CONFIGURING", "RUNNING", "SUSPENDED", "COMPLETING", "RESIZING")
#: Options nbviz sets itself.
RESERVED = ("job-name", "no-shell", "jobid", "J")

Options = tuple[str, ...]


def options_argv(slurm: Mapping[str, object] | bool | None) -> Options | None:
    """``salloc`` options from ``slurm=``: a dict of its long options (``partition``, ``time``,
    ``nodes``, ``ntasks``, ``account``, ``mem``, ...; ``_`` may stand for ``-``; ``True`` for
    a flag), or ``True`` for the cluster's defaults. None/False: no Slurm."""
    if slurm is None or slurm is False:
        return None
    if slurm is True:
        return ()
    if not isinstance(slurm, Mapping):
        raise TemplateError(
            "nbviz: slurm= takes a dict of salloc options, e.g. "
            "slurm={'partition': 'batch', 'time': '01:00:00'}, or True for the cluster's "
            f"defaults; got {slurm!r}"
        )
    argv: list[str] = []
    for key, value in slurm.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", key):
            raise TemplateError(f"nbviz: slurm= keys are salloc's long option names, got {key!r}")
        name = key.replace("_", "-")
        if name in RESERVED:
            raise TemplateError(f"nbviz: slurm={{{key!r}: ...}}: nbviz sets --{name} itself")
        if value is True:
            argv.append(f"--{name}")
        elif value is False or value is None:
            continue
        elif isinstance(value, (str, int, float)) and "\0" not in str(value):
            argv.append(f"--{name}={value}")
        else:
            raise TemplateError(
                f"nbviz: slurm={{{key!r}: {value!r}}}: values are strings, numbers or True"
            )
    return tuple(argv)


def job_name(session_id: str) -> str:
    return JOB_NAME_PREFIX + session_id


@dataclass
class Job:
    """A Slurm job as ``squeue`` lists it."""

    id: str
    name: str
    state: str
    reason: str
    nodes: str

    def describe(self) -> str:
        """``Slurm job 12: PENDING (Resources)``, or ``... RUNNING on node7``."""
        text = f"Slurm job {self.id}: {self.state}"
        if self.state == "PENDING" and self.reason not in ("", "None"):
            text += f" ({self.reason})"
        if self.nodes and self.state != "PENDING":
            text += f" on {self.nodes}"
        return text


@dataclass(frozen=True)
class Allocation:
    """A granted job: where its backend runs."""

    job_id: str
    name: str
    #: The node the backend's step runs on (the allocation's first).
    node: str
    #: The address Slurm reaches that node at (its NodeAddr).
    address: str
    #: The node is this machine: the backend is reached as a local one.
    local: bool


def run(
    argv: list[str], env: Mapping[str, str] | None = None, timeout: float = COMMAND_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except FileNotFoundError:
        raise NbvizError(f"nbviz: {argv[0]} not found on PATH; {INSTALL}") from None
    except subprocess.TimeoutExpired:
        raise NbvizError(
            f"nbviz: {argv[0]} did not answer within {timeout:g} s: is slurmctld reachable, "
            "and does SLURM_CONF (or /etc/slurm/slurm.conf) name this cluster?"
        ) from None


def find(name: str, env: Mapping[str, str] | None = None) -> Job | None:
    """The job named ``name`` while Slurm still lists it (pending, running, completing)."""
    result = run(["squeue", "--noheader", f"--name={name}", "--format=%i|%j|%T|%r|%N"], env)
    for line in result.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) == 5 and fields[1] == name:
            return Job(*fields)
    return None


def show(job_id: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``scontrol show job <id>`` as a dict (empty once Slurm forgot the job)."""
    result = run(["scontrol", "--oneliner", "show", "job", job_id], env)
    out: dict[str, str] = {}
    for item in result.stdout.split():
        key, found, value = item.partition("=")
        if found and key not in out:
            out[key] = value
    return out


def node_address(node: str, env: Mapping[str, str] | None = None) -> str:
    result = run(["scontrol", "--oneliner", "show", "node", node], env)
    match = re.search(r"\bNodeAddr=(\S+)", result.stdout)
    return match.group(1) if match else node


def node_trouble(nodes: str, env: Mapping[str, str] | None = None) -> str:
    """What Slurm says of the nodes of a job that lost one: ``node7 DOWN: fan broken`` (each
    node that is not up: its state, and the reason an admin or slurmctld gave without the
    ``[who@when]`` stamp), "" if none or unknown."""
    try:
        out = run(["scontrol", "--oneliner", "show", "node", nodes], env).stdout
    except NbvizError:
        return ""
    troubles = []
    for line in out.splitlines():
        name = re.search(r"\bNodeName=(\S+)", line)
        state = re.search(r"\bState=(\S+)", line)
        if not name or not state or not re.search(r"DOWN|FAIL|DRAIN|NOT_RESPONDING|\*", state[1]):
            continue
        reason = re.search(r"\bReason=(.*?)(?:\s+\[[^\]]*@[^\]]*\])?\s*$", line.strip())
        troubles.append(f"{name[1]} {state[1]}" + (f": {reason[1].strip()}" if reason else ""))
    return "; ".join(troubles)


def first_node(nodes: str, env: Mapping[str, str] | None = None) -> str:
    """The first host of a Slurm node list (``node[3-5]`` -> ``node3``)."""
    if not re.search(r"[\[,]", nodes):
        return nodes
    result = run(["scontrol", "show", "hostnames", nodes], env)
    return (result.stdout.split() or [nodes])[0]


def is_this_machine(node: str, address: str) -> bool:
    """The node is the machine the kernel runs on (its name, or one of its addresses)."""
    names = {socket.gethostname(), socket.gethostname().split(".")[0], socket.getfqdn()}
    if node in names or address in names or address in ("localhost",):
        return True
    with contextlib.suppress(OSError, ValueError):
        resolved = socket.gethostbyname(address)
        if resolved.startswith("127."):
            return True
        return resolved in _registry.this_host_addresses()
    return False


def allocate(
    options: Options,
    name: str,
    *,
    env: Mapping[str, str],
    log_fd: int,
    on_state: Callable[[str, Job | None], None],
    stopping: Callable[[], bool],
    guard: Callable[[int], None] = lambda pid: None,
    wait: Callable[[float], object] = time.sleep,
) -> Allocation | None:
    """Ask Slurm for an allocation and wait until it is granted; None if ``stopping()`` became
    true first (the request is then withdrawn). ``on_state`` hears the queue state as it
    changes (text, and the job while it waits; None once it runs); salloc's own messages go
    to ``log_fd``; ``guard(pid)`` hands salloc to the orphan watchdog. Raises NbvizError when
    Slurm refuses."""
    argv = ["salloc", "--no-shell", f"--job-name={name}", *options]
    on_state(f"submitting to Slurm: {' '.join(argv)}", None)
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            env=dict(env),
            start_new_session=True,
        )
    except FileNotFoundError:
        raise NbvizError(f"nbviz: salloc not found on PATH; {INSTALL}") from None
    guard(proc.pid)
    said = ""
    next_look = 0.0
    try:
        while True:
            code = proc.poll()
            if stopping():
                return None
            if code is not None:
                break
            if time.monotonic() >= next_look:  # squeue asks slurmctld: not too often
                next_look = time.monotonic() + POLL_INTERVAL
                job = find(name, env)
                if job is not None and job.describe() != said:
                    said = job.describe()
                    on_state(said, job)
            wait(EXIT_POLL)  # salloc returns the moment the job is granted
    finally:
        if proc.poll() is None:  # withdraw the request (salloc cancels its pending job)
            with contextlib.suppress(OSError):
                proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        if stopping() or proc.returncode:
            cancel(name, env)
    if code != 0:
        raise NbvizError(f"nbviz: Slurm refused the job (salloc exited with {code})")
    job = find(name, env)
    if job is None or job.state not in ALIVE:
        raise NbvizError(
            f"nbviz: the Slurm job {name} ended as soon as it was granted"
            + (f" ({job.state})" if job else "")
        )
    node = first_node(job.nodes, env)
    address = node_address(node, env)
    on_state(f"Slurm job {job.id}: RUNNING on {node}", None)
    return Allocation(job.id, name, node, address, is_this_machine(node, address))


def step_argv(allocation: Allocation, srun: str = "srun") -> list[str]:
    """The ``srun`` that runs a backend in ``allocation`` (followed by the backend's argv)."""
    return [
        srun,
        f"--jobid={allocation.job_id}",
        f"--nodelist={allocation.node}",
        "--nodes=1",
        "--ntasks=1",
        # the backend may start steps of its own (ParaView's pvserver ranks), which share the
        # allocation's CPUs with it
        "--overlap",
        "--kill-on-bad-exit=1",
        # the backend is not an MPI program: no MPI plugin (a PMIx server's listening socket
        # would leak into it, on every interface)
        "--mpi=none",
        "--",
    ]


def cancel_argv(job: str) -> list[str]:
    """``scancel`` of a job by id, or by name (a job still pending, whose id we may not know)."""
    who = ["--name", job] if job.startswith(JOB_NAME_PREFIX) else [job]
    return ["scancel", "--quiet", *who]


def cancel(job: str, env: Mapping[str, str] | None = None) -> None:
    with contextlib.suppress(NbvizError):
        run(cancel_argv(job), env)


def end_reason(job_id: str, env: Mapping[str, str] | None = None) -> str | None:
    """Why Slurm ended the job, when Slurm ended it (not when the backend just exited):
    ``nbviz: Slurm job 12 was CANCELLED (...)``, or None."""
    deadline = time.monotonic() + ENDING_WAIT
    while True:
        try:
            info = show(job_id, env)
        except NbvizError:
            return None
        state = info.get("JobState", "")
        # COMPLETING: Slurm is ending the job; its final state follows in a moment
        if state != "COMPLETING" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if not state or state in ("RUNNING", "COMPLETED"):
        return None
    reason = info.get("Reason", "None")
    nodes = info.get("NodeList", "?")
    if state == "NODE_FAIL":
        nodes = (node_trouble(nodes, env) if nodes != "?" else "") or nodes
    what = {
        "CANCELLED": "was cancelled (scancel)",
        "TIMEOUT": f"reached its time limit ({info.get('TimeLimit', '?')})",
        "NODE_FAIL": f"lost its node ({nodes})",
        "PREEMPTED": "was preempted",
        "OUT_OF_MEMORY": "ran out of memory",
        "FAILED": "failed",
        "DEADLINE": "passed its deadline",
        "COMPLETING": "is ending",
    }.get(state, f"ended ({state})")
    because = f"; Slurm's reason: {reason}" if reason not in ("None", "") else ""
    return (
        f"nbviz: Slurm job {job_id} {what}{because}; the backend on "
        f"{info.get('NodeList', 'its node')} is gone; restart() submits a new job"
    )


def check_programs(env: Mapping[str, str] | None = None) -> None:
    """Raise a clear error when Slurm's client programs are missing."""
    path = (env or {}).get("PATH", os.environ.get("PATH"))
    missing = [p for p in PROGRAMS if shutil.which(p, path=path) is None]
    if missing:
        raise NbvizError(f"nbviz: slurm= needs Slurm's {', '.join(missing)}; {INSTALL}")


def this_process() -> str:
    """Where this process runs, when that is inside a Slurm job (a kernel on a compute node):
    a sentence for ``nbviz doctor``; "" outside any job."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return ""
    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    return (
        f"this process runs inside Slurm job {job} on {node}: backends it starts run there "
        "too (when the Jupyter server runs on another host, a login node, each gets a host "
        "gate that its route reaches: see docs/slurm.md)"
    )
