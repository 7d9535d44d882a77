"""Which Jupyter server this kernel runs behind: its base URL, and whether routes exist there.

Knows nothing of processes. The server is found from ``JPY_PARENT_PID`` (set by
jupyter_client for every kernel it launches) matched against the ``jpserver-*.json``
files Jupyter servers write into the runtime dir; under JupyterHub from
``JUPYTERHUB_SERVICE_PREFIX``; ``NBVIZ_BASE_URL`` overrides both.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil

from . import _netinfo, _registry
from ._errors import NbvizError

Source = Literal["override", "jupyter-server", "jupyterhub"]


@dataclass(frozen=True)
class ServerInfo:
    """A Jupyter server as the kernel sees it."""

    base_url: str
    source: Source
    #: Full URL of the server as reachable from this machine ("" when unknown).
    url: str = ""
    token: str = ""
    pid: int | None = None
    root_dir: str = ""
    #: What nbviz's server extension announced of the server's machine
    #: (:func:`nbviz._registry.this_machine`) and its addresses; empty without the extension.
    machine: str = ""
    addresses: tuple[str, ...] = ()

    @property
    def elsewhere(self) -> bool:
        """The server runs on another machine than this kernel (another host, or another
        network namespace): they share no 127.0.0.1."""
        return bool(self.machine) and self.machine != _registry.this_machine()

    def describe(self) -> str:
        where = self.url or self.base_url
        pid = f", pid {self.pid}" if self.pid else ""
        host = ", on another host" if self.elsewhere else ""
        return f"{where} (found via {self.source}{pid}{host})"


def normalize_base_url(base_url: str) -> str:
    """``user/alice`` -> ``/user/alice/``."""
    base_url = "/" + base_url.strip().strip("/")
    return base_url if base_url == "/" else base_url + "/"


def runtime_dirs() -> list[Path]:
    dirs = []
    try:
        from jupyter_core.paths import jupyter_runtime_dir

        dirs.append(Path(jupyter_runtime_dir()))
    except Exception:
        pass
    return dirs


def running_servers() -> list[dict[str, object]]:
    """Info dicts of the live Jupyter servers (``jpserver-*``, classic ``nbserver-*``)."""
    servers = []
    for directory in runtime_dirs():
        for path in sorted(directory.glob("jpserver-*.json")) + sorted(
            directory.glob("nbserver-*.json")
        ):
            try:
                info = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            pid = info.get("pid")
            # a server on another machine (a kernel on a compute node) is taken at its word
            if isinstance(pid, int) and (psutil.pid_exists(pid) or _registry.server_elsewhere(pid)):
                servers.append(info)
    return servers


def _ancestors(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).parents()]
    except psutil.Error:
        return []


def server_from(info: Mapping[str, object]) -> ServerInfo:
    """A server as its ``jpserver-*.json`` file (and nbviz's marker, if any) describe it."""
    pid = info.get("pid")
    announced = _registry.server_info(pid if isinstance(pid, int) else None)
    return ServerInfo(
        base_url=normalize_base_url(str(info.get("base_url") or "/")),
        source="jupyter-server",
        url=str(info.get("url") or ""),
        token=str(info.get("token") or ""),
        pid=pid if isinstance(pid, int) else None,
        root_dir=str(info.get("root_dir") or info.get("notebook_dir") or ""),
        machine=str(announced.get("machine") or ""),
        addresses=tuple(str(a) for a in announced.get("addresses") or ()),
    )


def find_server(env: Mapping[str, str] | None = None) -> ServerInfo | None:
    """The Jupyter server behind this kernel, or None when there is none we can see."""
    env = os.environ if env is None else env
    override = env.get("NBVIZ_BASE_URL")
    if override:
        return ServerInfo(base_url=normalize_base_url(override), source="override")
    parent = env.get("JPY_PARENT_PID")
    candidates = {int(parent)} if parent and parent.isdigit() else set()
    # Some launchers put a wrapper between server and kernel: also accept our ancestors.
    candidates.update(_ancestors(os.getpid()))
    if candidates:
        for info in running_servers():
            if info.get("pid") in candidates:
                return server_from(info)
    prefix = env.get("JUPYTERHUB_SERVICE_PREFIX")
    if prefix:
        return ServerInfo(base_url=normalize_base_url(prefix), source="jupyterhub")
    return None


#: The address of this host that the Jupyter server reaches, where nbviz cannot tell (the
#: server announces its addresses; the kernel takes its own address on the way to them).
HOST_ADDRESS_ENV = "NBVIZ_HOST_ADDRESS"


def away_address(server: ServerInfo | None, env: Mapping[str, str] | None = None) -> str | None:
    """When this kernel runs on another host than its Jupyter server (a kernel on a compute
    node, the server on the login node): this host's address that the server reaches, where a
    backend's host gate listens. None when kernel and server share a machine."""
    if server is None or not server.elsewhere:
        return None
    env = os.environ if env is None else env
    override = env.get(HOST_ADDRESS_ENV, "").strip()
    if override:
        return override
    address = _netinfo.address_toward(list(server.addresses))
    if address is None:
        raise NbvizError(
            f"nbviz: this kernel runs on another host than its Jupyter server, and none of the "
            f"server's addresses ({', '.join(server.addresses) or 'none announced'}) can be "
            f"reached from here; set {HOST_ADDRESS_ENV} to this host's address that the server "
            "can connect to"
        )
    return address


def launched_by_jupyter(env: Mapping[str, str] | None = None) -> bool:
    """True when a Jupyter client launched this kernel (a front end may know the base URL)."""
    env = os.environ if env is None else env
    return bool(env.get("JPY_PARENT_PID"))


def standalone_voila(env: Mapping[str, str] | None = None) -> bool:
    """True when a standalone Voilà (``voila notebook.ipynb``) started this kernel.

    Standalone Voilà is a Jupyter client with its own small web server: it serves neither
    nbviz's route nor jupyter-server-proxy's, so a frame can only load a backend directly.
    """
    env = os.environ if env is None else env
    parent = env.get("JPY_PARENT_PID")
    if not (parent and parent.isdigit()):
        return False
    try:
        argv = psutil.Process(int(parent)).cmdline()
    except psutil.Error:
        return False
    names = [os.path.basename(arg).removesuffix(".exe") for arg in argv[:2]]
    return "voila" in names or argv[1:3] == ["-m", "voila"]


def server_has_proxy(server: ServerInfo, timeout: float = 2.0) -> bool | None:
    """Ask the server whether jupyter-server-proxy is loaded: True, False, or None (can't tell)."""
    if not server.url:
        return None
    url = server.url.rstrip("/") + "/server-proxy/servers-info"
    request = urllib.request.Request(url)
    if server.token:
        request.add_header("Authorization", f"token {server.token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        return False if exc.code == 404 else None
    except (OSError, ValueError):
        return None
