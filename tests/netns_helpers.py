"""Another host on this machine: a network namespace joined by a veth pair, and a private sshd.

Used by tests/integration/test_remote.py and benchmarks/remote.py. Needs root (or CAP_NET_ADMIN and
CAP_SYS_ADMIN); :class:`NoNamespace` says why when it cannot be made.
"""

from __future__ import annotations

import contextlib
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SSH_PORT = 2222


class NoNamespace(RuntimeError):
    """A network namespace cannot be created here (not root, no ``ip``)."""


@dataclass
class Node:
    """A network namespace reachable from here at ``ip`` (and at ``other_ip``)."""

    name: str
    ip: str
    other_ip: str

    def exec(self, *argv: str) -> list[str]:
        """The argv that runs ``argv`` on the node (the local launcher of a remote backend)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def pids(self) -> set[int]:
        out = subprocess.run(
            ["ip", "netns", "pids", self.name], capture_output=True, text=True, check=True
        ).stdout
        return {int(pid) for pid in out.split()}


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def network_namespace() -> Iterator[Node]:
    """A fresh namespace with two addresses in an unused 10.200.N.0/24; always removed after."""
    if shutil.which("ip") is None:
        raise NoNamespace("needs iproute2's `ip` to create a network namespace")
    name = f"nbviz-test-{os.getpid()}"
    used = subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True).stdout
    subnet = next(
        f"10.200.{n}" for n in random.sample(range(256), 256) if f"10.200.{n}." not in used
    )
    outside, inside = f"nbv{os.getpid()}a", f"nbv{os.getpid()}b"
    try:
        _ip("netns", "add", name)
    except subprocess.CalledProcessError as exc:
        raise NoNamespace(
            f"cannot create a network namespace (needs root/CAP_NET_ADMIN): {exc.stderr.strip()}"
        ) from None
    node = Node(name=name, ip=f"{subnet}.2", other_ip=f"{subnet}.3")
    try:
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", name)
        _ip("addr", "add", f"{subnet}.1/24", "dev", outside)
        _ip("link", "set", outside, "up")
        for address in (node.ip, node.other_ip):
            _ip("netns", "exec", name, "ip", "addr", "add", f"{address}/24", "dev", inside)
        _ip("netns", "exec", name, "ip", "link", "set", inside, "up")
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield node
    finally:
        for pid in node.pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)  # removes the veth too
        subprocess.run(["ip", "link", "del", outside], capture_output=True)


@dataclass
class Sshd:
    pid: int
    #: what ``ssh=`` gets: our key, the node's host key pinned, no ~/.ssh/config, no prompts
    args: list[str]
    #: where the keys, configuration and log are
    directory: Path


def _answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def private_sshd(node: Node, directory: Path) -> Iterator[Sshd]:
    """An sshd in ``node`` on port 2222: its own host key, login only with a key made here."""
    if not (shutil.which("sshd") or os.path.exists("/usr/sbin/sshd")):
        raise RuntimeError("needs OpenSSH's server: apt-get install openssh-server")
    for key in ("host_key", "user_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / key)], check=True
        )
    shutil.copy(directory / "user_key.pub", directory / "authorized_keys")
    host_key = (directory / "host_key.pub").read_text().strip()
    (directory / "known_hosts").write_text(f"[{node.ip}]:{SSH_PORT} {host_key}\n")
    (directory / "sshd_config").write_text(
        f"Port {SSH_PORT}\nListenAddress {node.ip}\nHostKey {directory / 'host_key'}\n"
        f"AuthorizedKeysFile {directory / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nStrictModes no\n"
        "UsePAM no\nPidFile none\nLogLevel ERROR\n"
    )
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    # The node's login shell must not run this machine's interactive ~/.bashrc (pyenv and the
    # like): hide it in sshd's own mount namespace, as a compute node's plain account would be.
    bashrc = Path.home() / ".bashrc"
    mask = f"mount --bind /dev/null {shlex.quote(str(bashrc))} && " if bashrc.exists() else ""
    config = shlex.quote(str(directory / "sshd_config"))
    start = f"{mask}exec /usr/sbin/sshd -D -e -f {config}"
    log = open(directory / "sshd.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        node.exec("unshare", "--mount", "--propagation", "private", "sh", "-c", start),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not _answers(node.ip, SSH_PORT):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {(directory / 'sshd.log').read_text()}")
            time.sleep(0.05)
        yield Sshd(
            pid=proc.pid,
            args=[
                "-F", "/dev/null", "-p", str(SSH_PORT), "-i", str(directory / "user_key"),
                "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={directory / 'known_hosts'}",
                "-o", "StrictHostKeyChecking=yes", f"root@{node.ip}",
            ],
            directory=directory,
        )  # fmt: skip
    finally:
        proc.kill()
        proc.wait()
        log.close()
