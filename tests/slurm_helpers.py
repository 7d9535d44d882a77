"""A real Slurm cluster of one node on this machine: munged, slurmctld and slurmd (Debian's
``munge`` and ``slurm-wlm``), each with its own files in one temporary directory.

Used by tests/integration/test_slurm.py, tests/browser/test_slurm_browser.py and
benchmarks/slurm.py. Needs root (slurmd runs jobs as their users; munged runs as ``munge``);
:class:`NoCluster` says why when the cluster cannot be made. Nothing of the machine's own
configuration (``/etc/slurm``, ``/run/munge``) is used or changed: clients find this cluster
through ``SLURM_CONF`` (see :attr:`Cluster.env`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_helpers import JupyterServer
from netns_helpers import Node

#: Programs the cluster needs, and the Debian packages that have them.
PROGRAMS = {"munged": "munge", "slurmctld": "slurmctld", "slurmd": "slurmd", "srun": "slurm-client"}
#: CPUs the node says it has (slurmd's config_overrides lets it say more than the machine has:
#: jobs here are light, and a ParaView session with two ranks needs three tasks).
NODE_CPUS = 8
START_TIMEOUT = 30.0


class NoCluster(RuntimeError):
    """A Slurm cluster cannot be started here (not root, or programs missing)."""


@dataclass
class Cluster:
    """A running one-node cluster."""

    directory: Path
    conf: Path
    node: str
    partition: str
    #: The environment clients need (``SLURM_CONF``), to add to os.environ or a kernel's env.
    env: dict[str, str]
    pids: dict[str, int] = field(default_factory=dict)

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=check,
            timeout=30,
        )

    def jobs(self, name: str | None = None) -> list[dict[str, str]]:
        """Jobs squeue lists (pending, running, completing): id, name, state, reason, nodes."""
        argv = ["squeue", "--noheader", "--format=%i|%j|%T|%r|%N"]
        if name:
            argv.append(f"--name={name}")
        out = self.run(*argv).stdout
        keys = ("id", "name", "state", "reason", "nodes")
        return [dict(zip(keys, line.split("|"), strict=True)) for line in out.splitlines()]

    def wait_no_jobs(self, name_prefix: str = "nbviz-", timeout: float = 15.0) -> list[dict]:
        """Wait until no job whose name starts with ``name_prefix`` is listed; return what is
        still listed then (empty when all are gone)."""
        deadline = time.monotonic() + timeout
        while True:
            left = [j for j in self.jobs() if j["name"].startswith(name_prefix)]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.2)

    def block(self) -> str:
        """Submit a job that holds every CPU of the node, wait until it runs; its id. Jobs
        submitted after it wait in the queue (``PENDING (Resources)``) until it is cancelled."""
        job = self.run(
            "sbatch", "--parsable", "--job-name=blocker", "--output=/dev/null",
            f"--ntasks={NODE_CPUS}", "--wrap", "sleep 600",
        ).stdout.strip()  # fmt: skip
        deadline = time.monotonic() + 20
        while not any(j["id"] == job and j["state"] == "RUNNING" for j in self.jobs()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the blocking job {job} did not start: {self.jobs()}")
            time.sleep(0.1)
        return job

    def log(self, daemon: str) -> str:
        """A daemon's log: ``slurmctld``, or ``slurmd-<node name>``."""
        with contextlib.suppress(OSError):
            return (self.directory / f"{daemon}.log").read_text(errors="replace")
        return ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(what: str, ready, procs: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            exited = [" ".join(map(str, p.args)) for p in procs if p.poll() is not None]  # type: ignore[call-overload]
            text = "".join(
                f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}\n"
                for log in logs
                if log.exists()
            )
            raise NoCluster(f"{what} did not start (exited: {exited}):\n{text}")
        time.sleep(0.1)


def _end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


SLURM_CONF = """\
ClusterName=nbviz-test
SlurmctldHost={host}({ctld_address})
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool-%n
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd-%n.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd-%n.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
MinJobAge=300
KillWait=2
InactiveLimit=0
MessageTimeout=10
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=4000 State=UNKNOWN
PartitionName={partition} Nodes={host} Default=YES MaxTime=INFINITE State=UP
{second}"""

#: The second node (another host: a network namespace), in a partition of its own.
SECOND_NODE = """\
NodeName={name} NodeAddr={address} CPUs={cpus} RealMemory=4000 State=UNKNOWN
PartitionName={partition} Nodes={name} MaxTime=INFINITE State=UP
"""
SECOND_NODE_NAME = "nbviz-node2"
SECOND_PARTITION = "remote"


@contextlib.contextmanager
def slurm_cluster(partition: str = "debug", second: Node | None = None) -> Iterator[Cluster]:
    """Start munged, slurmctld and slurmd; end them (by pid) and remove their files.

    With ``second`` (a network namespace, see netns_helpers.py), a second slurmd runs in it as
    node ``nbviz-node2`` at ``second.ip``, in partition ``remote``: another host, as far as
    the network goes (it shares this machine's files, as compute nodes share home and project
    directories). slurmctld then listens at the host's end of the veth pair, which both
    nodes reach."""
    if os.geteuid() != 0:
        raise NoCluster("a test Slurm cluster needs root (slurmd runs jobs as their users)")
    missing = [f"{p} ({pkg})" for p, pkg in PROGRAMS.items() if not shutil.which(p)]
    if missing:
        raise NoCluster(f"missing programs: {', '.join(missing)}: apt-get install slurm-wlm munge")
    if second is not None:
        # the node reaches this machine's other addresses (srun's, for the step's output)
        # through the veth pair, as compute nodes reach their login node
        gateway = second.ip.rsplit(".", 1)[0] + ".1"
        subprocess.run(
            second.exec("ip", "route", "replace", "default", "via", gateway),
            check=True, capture_output=True,
        )  # fmt: skip
    directory = Path(tempfile.mkdtemp(prefix="nbviz-slurm-"))
    directory.chmod(0o755)  # munged (user munge) must reach its own subdirectory
    procs: list[subprocess.Popen[bytes]] = []
    try:
        munge = pwd.getpwnam("munge")
        munge_dir = directory / "munge"
        munge_dir.mkdir(mode=0o755)
        key = munge_dir / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o400)
        for path in (munge_dir, key):
            os.chown(path, munge.pw_uid, munge.pw_gid)
        munge_socket = munge_dir / "munge.socket"
        munge_log = munge_dir / "munged.log"
        munged = subprocess.Popen(
            [
                "runuser", "-u", "munge", "--", "munged", "--foreground",
                f"--socket={munge_socket}", f"--key-file={key}", f"--log-file={munge_log}",
                f"--pid-file={munge_dir / 'munged.pid'}", f"--seed-file={munge_dir / 'seed'}",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        procs.append(munged)
        _wait("munged", munge_socket.exists, [munged], [munge_log])
        host = socket.gethostname().split(".")[0]
        (directory / "state").mkdir()
        for name in (host, SECOND_NODE_NAME):
            (directory / f"spool-{name}").mkdir()
        second_conf = (
            SECOND_NODE.format(
                name=SECOND_NODE_NAME, address=second.ip, cpus=NODE_CPUS,
                partition=SECOND_PARTITION,
            )
            if second is not None
            else ""
        )  # fmt: skip
        conf = directory / "slurm.conf"
        conf.write_text(
            SLURM_CONF.format(
                host=host, d=directory, munge_socket=munge_socket, cpus=NODE_CPUS,
                ctld_port=_free_port(), slurmd_port=_free_port(), partition=partition,
                second=second_conf,
                ctld_address=second.ip.rsplit(".", 1)[0] + ".1" if second else "127.0.0.1",
            )
        )  # fmt: skip
        env = {"SLURM_CONF": str(conf)}
        daemon_env = {**os.environ, **env}
        pids: dict[str, int] = {"munged": munged.pid}
        daemons = {
            "slurmctld": ["/usr/sbin/slurmctld", "-D", "-f", str(conf)],
            "slurmd": ["/usr/sbin/slurmd", "-D", "-f", str(conf)],
        }
        if second is not None:
            # nsenter, not `ip netns exec`: that mounts a sysfs of the namespace's own, without
            # /sys/fs/cgroup, and slurmd refuses to start without it
            daemons["slurmd-node2"] = [
                "nsenter", f"--net=/run/netns/{second.name}",
                "/usr/sbin/slurmd", "-D", "-f", str(conf), "-N", SECOND_NODE_NAME,
            ]  # fmt: skip
        for daemon, argv in daemons.items():
            with open(directory / f"{daemon}.stderr.log", "wb") as out:  # what it says first
                proc = subprocess.Popen(
                    argv, env=daemon_env, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            procs.append(proc)
            pids[daemon] = proc.pid
        cluster = Cluster(directory, conf, host, partition, env, pids)

        def nodes_idle() -> bool:
            out = cluster.run("sinfo", "--noheader", "--format=%t", check=False).stdout.split()
            return bool(out) and all(state in ("idle", "mix", "alloc") for state in out)

        _wait("slurmctld and slurmd", nodes_idle, procs, sorted(directory.glob("*.log")))
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(
                ["scancel", "--full", "--quiet", "--state=PENDING,RUNNING,SUSPENDED"],
                env={**os.environ, "SLURM_CONF": str(directory / "slurm.conf")},
                capture_output=True, timeout=10,
            )  # fmt: skip
        for proc in reversed(procs):
            _end(proc)
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def jupyter_for(
    cluster: Cluster, config: str = "", env: dict[str, str] | None = None
) -> Iterator[JupyterServer]:
    """A Jupyter server whose kernels find ``cluster`` (with ``env`` added to its environment),
    in a world-traversable directory (not pytest's 0700 temp dirs: the privacy probe runs as
    another user)."""
    root = Path(tempfile.mkdtemp(prefix="nbviz-slurm-jupyter-", dir="/tmp"))
    root.chmod(0o755)
    (root / "config").mkdir()
    (root / "config" / "jupyter_server_config.py").write_text(config)
    added = {**cluster.env, **(env or {})}  # the server and its kernels find the cluster
    saved = {key: os.environ.get(key) for key in added}
    try:
        os.environ.update(added)
        try:
            started = JupyterServer(root=root).start()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        try:
            yield started
        finally:
            started.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
