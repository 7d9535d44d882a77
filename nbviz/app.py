"""``WebApp``: any web GUI, started from a cell and shown live through the Jupyter server."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from . import _registry, _remote, _routes, _server, _transport
from ._errors import NbvizError
from ._frame import Frame
from ._process import Process
from ._routes import RouteChoice
from ._spec import Endpoint, Network, Spec


class NbvizWarning(UserWarning):
    """Something works, but not the way it usually does (e.g. no Jupyter server in between)."""


class LogText(str):
    """Text that shows as itself (not as a quoted repr) when it is the last thing in a cell."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, printer: Any, _cycle: bool) -> None:
        printer.text(str(self))


_proxy_checked: dict[str, bool | None] = {}
#: The warning that private network namespaces are not available was given (once per kernel).
_private_network_warned = False
STANDALONE_VOILA_HINT = (
    "standalone Voilà (`voila notebook.ipynb`) has no routes to backends; serve the dashboard "
    "with `nbviz dashboard notebook.ipynb` (Voilà inside a Jupyter server, with nbviz's route)"
)
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def warn(message: str) -> None:
    """Warn, attributed to the first caller outside nbviz (the user's cell); on a thread of
    nbviz's own (a backend that became ready), to the nbviz line that warns, not to Python's
    ``threading.py``."""
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    if frame.f_code.co_filename == threading.__file__:
        level = 2
    warnings.warn(message, NbvizWarning, stacklevel=level)


#: Every object of this kernel that was started (weakly: a closed object the user dropped goes).
_STARTED: weakref.WeakSet[WebApp] = weakref.WeakSet()


def running() -> list[WebApp]:
    """The nbviz objects of this kernel whose backend is starting or ready, oldest first.

    Running a cell again makes a new object; the one it made before keeps its backend until it
    is stopped (or the kernel ends): this finds it."""
    live = [app for app in list(_STARTED) if app.status in ("starting", "ready")]
    return sorted(live, key=lambda app: app.started_at or float("inf"))


def stop_all() -> int:
    """Stop every backend this kernel started (see :func:`running`); how many were running."""
    live = running()
    for app in live:
        app.stop()
    return len(live)


def with_query(path: str, name: str, value: str) -> str:
    """``path`` with ``name=value`` added to its query (before any ``#fragment``)."""
    path, hash_, fragment = path.partition("#")
    separator = "&" if "?" in path else "?"
    return f"{path}{separator}{quote(name)}={quote(value)}{hash_}{fragment}"


class WebApp(Frame):
    """A web application started from a notebook cell and shown in it.

    ``command`` is a list (or a shell-like string) whose items may contain the fields
    ``{port}``, ``{unix_socket}``, ``{base_url}``, ``{prefix}``, ``{session_dir}`` and
    ``{secret}``. The object is itself the widget: leave it last in a cell (or ``display()`` it)
    to see the app.

    Each start gets a new random secret, in the backend's environment as ``NBVIZ_SECRET``. An
    app that can check a token (on a TCP port, every local user can connect to it) gets it from
    there; with ``secret_param="token"`` the frame's first URL carries ``?token=<secret>``.

    >>> app = WebApp(["python", "-m", "http.server", "--bind", "127.0.0.1", "{port}"])
    >>> app.wait_ready()
    >>> app.path = "/docs/"  # the frame navigates there
    >>> app.stop()

    A backend on another host (an HPC compute node): ``ssh="node12"`` runs the command there
    through ssh, listening on ``{unix_socket}``, which ssh forwards to a private local socket;
    ``host="node12"`` is for a local launcher (``srun``) that starts it listening on
    ``node12:{port}`` (the Jupyter server must allow that host). See docs/remote.md.

    Behind nbviz's route an app on ``{port}`` runs in a network namespace of its own, where no
    other local user can reach it; it then has no network but its own loopback. An app that
    must reach other machines, or services on this machine's 127.0.0.1 (a database, a Dask
    scheduler), takes ``network="host"``: it listens on the host's 127.0.0.1 behind the
    session secret. ``network="private"`` insists on the namespace (an error where the machine
    has none). See docs/routes.md, Transports.

    On a cluster, ``slurm={"partition": "batch", "time": "01:00:00"}`` (salloc's options; True
    for the defaults) runs the app as a Slurm job on a compute node: the frame shows the job's
    queue state until it runs, and stopping the app (or the kernel's end) cancels the job. See
    docs/slurm.md.
    """

    def __init__(
        self,
        command: str | Sequence[str | os.PathLike[str]],
        *,
        port: int | None = None,
        unix_socket: bool | str | os.PathLike[str] = False,
        ready_path: str = "/",
        timeout: float = 30,
        env: Mapping[str, str | int | float] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        height: int | str = 480,
        absolute_url: bool = False,
        route: RouteChoice = "auto",
        title: str | None = None,
        path: str = "/",
        secret_param: str | None = None,
        start: bool = True,
        host: str | None = None,
        ssh: str | Sequence[str] | None = None,
        network: Network = "auto",
        slurm: Mapping[str, object] | bool | None = None,
    ) -> None:
        spec = Spec.build(
            command,
            port=port,
            unix_socket=unix_socket,
            ready_path=ready_path,
            timeout=timeout,
            env=env,
            cwd=cwd,
            route_options={"absolute": absolute_url},
            secret_param=secret_param,
            host=host,
            ssh=ssh,
            network=network,
            slurm=slurm,
        )
        self._init_backend(
            spec,
            absolute_url=absolute_url,
            route=route,
            height=height,
            title=title,
            path=path,
            start=start,
        )

    def _init_backend(
        self,
        spec: Spec,
        *,
        absolute_url: bool = False,
        route: RouteChoice = "auto",
        height: int | str = 480,
        title: str | None = None,
        path: str = "/",
        start: bool = True,
    ) -> None:
        """Shared by every backend class: wire a Spec to a Process and to this frame."""
        super().__init__(
            height=height,
            title=spec.name if title is None else title,
            path=path,
            timeout=spec.timeout,
        )
        self._spec = spec
        if route not in ("auto", "nbviz", "proxy", "direct"):
            raise NbvizError(f"nbviz: route must be auto, nbviz, proxy or direct, not {route!r}")
        self._absolute_url = absolute_url
        self._route_choice: RouteChoice = route
        self._server = _server.find_server()
        # Standalone Voilà: a Jupyter client but no server routes; only the direct route works.
        self._standalone_voila = self._server is None and _server.standalone_voila()
        pid = self._server.pid if self._server else None
        self._nbviz_route = _registry.server_has_route(pid) or (
            route == "nbviz" and self._server is not None and pid is None
        )
        self._route: _routes.Route | None = None
        #: Shown as the message while the backend is ready (something the user should know).
        self._notice = ""
        self._initial_path = path
        browser_needs_port = (
            self._server is not None or route == "direct" or _server.launched_by_jupyter()
        )
        if spec.tcp_command and not self._nbviz_route and route != "nbviz" and browser_needs_port:
            # No route to a Unix socket: a browser can only reach a port (proxy/<port>/ or
            # direct), where the backend checks the per-session secret.
            spec = spec.over_tcp()
            self._spec = spec
        self._process = Process(
            spec,
            on_change=self._on_process_change,
            template_values=self._values_for,
            private_route=route in ("auto", "nbviz")
            and self._nbviz_route
            and self._server is not None,
            # a kernel on a compute node, its server on the login node: a host gate per backend
            away=_server.away_address(self._server),
        )
        if start:
            self.start()

    _frame_actions = {"restart": "restart", "stop": "stop"}
    #: False for backends whose kernel API is useful without a browser (route kind "none").
    _route_required = True

    # ----------------------------------------------------------------- routing
    def _route_for(self, endpoint: Endpoint, session_id: str) -> _routes.Route:
        try:
            return _routes.route_for(
                endpoint,
                self._server,
                session_id=session_id,
                choice=self._route_choice,
                nbviz_route=self._nbviz_route,
                absolute=self._absolute_url,
                front_end_may_know=_server.launched_by_jupyter() and not self._standalone_voila,
                required=self._route_required,
            )
        except NbvizError as exc:
            if self._standalone_voila:
                raise NbvizError(f"nbviz: {self._spec.name}: {STANDALONE_VOILA_HINT}") from exc
            raise

    def _values_for(self, endpoint: Endpoint, session_id: str) -> dict[str, str]:
        route = self._route_for(endpoint, session_id)
        self._route = route
        return _routes.template_values(route, self._server)

    # --------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the backend (does nothing while it is starting or running). Returns at once."""
        if getattr(self, "_closed", False):
            raise NbvizError(
                f"nbviz: this {type(self).__name__} was closed (close() closes its widget too, "
                "for good); make a new one"
            )
        if self._process.status not in ("starting", "ready"):
            self._notice = ""
        self._process.start()
        _STARTED.add(self)
        route = self._route
        assert route is not None
        self._check_private_network()
        if route.kind == "none":
            why = (
                _routes.NO_ROUTE_HINT
                if self._server is not None
                else STANDALONE_VOILA_HINT
                if self._standalone_voila
                else "no Jupyter server runs this kernel (its Python API works all the same)"
            )
            warn(f"nbviz: {self._spec.name} runs, but no browser can show it here: {why}")
        if route.kind == "direct" and self._standalone_voila:
            warn(
                f"nbviz: the frame loads {route.url} directly, which works only in a browser on "
                f"this machine: {STANDALONE_VOILA_HINT}"
            )
        elif route.kind == "direct" and self._server is not None:  # route="direct" asked for
            warn(
                f"nbviz: route='direct': the frame loads {route.url} directly, not through the "
                "Jupyter server, which works only in a browser on this machine"
            )
        elif route.kind == "direct":
            warn(
                f"nbviz: no Jupyter server found behind this kernel; the frame loads {route.url} "
                "directly, which works only in a browser on this machine (set NBVIZ_BASE_URL "
                "if Jupyter runs under a base URL)"
            )
        self._check_remote_host(route)
        with self.hold_sync():
            self.route = route.kind
            self.url = route.url
            if self._spec.sends_secret:
                self.path = self._with_secret(self._initial_path)
            self.started_at = self._process.started_at or 0.0
            self._sync_status()

    def _with_secret(self, path: str) -> str:
        """``path`` as the frame must load it: with the session secret, if the backend wants it."""
        if self._spec.sends_secret and self._spec.secret_param:
            return with_query(path, self._spec.secret_param, self._process.secret)
        return path

    def stop(self) -> None:
        """Stop the backend and every process it started."""
        self._process.stop()

    def close(self) -> None:
        """Stop the backend and close the widget (its views go; it cannot be shown again)."""
        # ipywidgets also calls this from __del__: of objects whose __init__ failed, and while
        # the interpreter exits (modules half torn down; the watchdog ends the app then).
        if getattr(self, "_process", None) is not None and not sys.is_finalizing():
            self.stop()
        self._closed = True
        super().close()

    def restart(self) -> None:
        """Stop the backend (if running) and start it again with the same command."""
        self._process.stop()
        self.start()

    async def ready(self) -> None:
        """Wait until the backend answers; raises an :class:`NbvizError` if it failed to start."""
        await self._process.ready()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the backend answers (safe in a notebook cell); raises on failure."""
        self._process.wait_ready(timeout)

    def logs(self, lines: int | None = None) -> LogText:
        """What the backend printed so far (stdout and stderr), or its last ``lines`` lines."""
        return LogText(self._process.logs(lines))

    @property
    def pid(self) -> int | None:
        """Process id of the backend (None when stopped)."""
        return self._process.pid

    @property
    def endpoint(self) -> Endpoint | None:
        """Where the backend listens: a port (on ``host``, if another), or a Unix socket here."""
        return self._process.endpoint

    @property
    def job(self) -> dict[str, str] | None:
        """The Slurm job of the current start (``slurm=``), once granted: its ``id``, the
        ``node`` the backend runs on and that node's ``address``; None otherwise."""
        allocation = self._process.allocation
        if allocation is None:
            return None
        return {"id": allocation.job_id, "node": allocation.node, "address": allocation.address}

    @property
    def transport(self) -> str:
        """How the backend listens and is reached: ``unix`` (a private Unix socket),
        ``private`` (a ``{port}`` app in a network namespace of its own, behind a private Unix
        socket), ``loopback`` (``127.0.0.1:<port>``, which every local user can connect to),
        ``host`` (another machine's port) or ``ssh`` (a socket forwarded by ssh). See
        docs/routes.md."""
        return self._process.transport.name

    @property
    def command(self) -> list[str]:
        """The command as it was run (template fields filled in)."""
        return list(self._process.argv)

    def __enter__(self) -> WebApp:
        self.wait_ready()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f" at {self.url}" if self.url and self.status != "stopped" else ""
        return f"<{type(self).__name__} {self._spec.name!r} {self.status}{where}>"

    # ------------------------------------------------------------------ state
    def _on_process_change(self, process: Process) -> None:
        if process.status == "ready":
            self._backend_ready()
            # Warnings from this thread must not stop it (e.g. under simplefilter("error")).
            with contextlib.suppress(Warning):
                self._check_proxy()
            with contextlib.suppress(Warning):
                self._check_exposure()
        elif process.status in ("crashed", "stopped"):
            self._backend_gone()
        self._sync_status()

    # ------------------------------------------------------------ echo guard
    @contextlib.contextmanager
    def _from_backend(self) -> Iterator[None]:
        """Trait changes made inside come from the backend (its state, read or pushed): the
        observers that send the user's changes to the backend must not send these back
        (:meth:`_changed_by_backend`). Per thread: a change the user makes meanwhile on another
        thread (the kernel's, while a poller or a channel thread applies the backend's) is
        the user's and still goes to the backend."""
        local = self.__dict__.get("_backend_changes")
        if local is None:
            local = self.__dict__.setdefault("_backend_changes", threading.local())
        depth = getattr(local, "depth", 0)
        local.depth = depth + 1
        try:
            yield
        finally:
            local.depth = depth

    def _changed_by_backend(self) -> bool:
        """True inside :meth:`_from_backend` on this thread: the change now observed is the
        backend's own, not one to send to it."""
        local = self.__dict__.get("_backend_changes")
        return bool(local is not None and getattr(local, "depth", 0))

    # Hooks for backend classes (called on the lifecycle thread, before the status trait and
    # wait_ready() see the change).
    def _backend_ready(self) -> None:
        """The backend answers: connect control channels, launch helpers."""

    def _backend_gone(self) -> None:
        """The backend crashed or was stopped: drop channels, end helpers it does not own."""

    def _sync_status(self) -> None:
        process = self._process
        with self.hold_sync():
            notice = self._notice if process.status == "ready" else ""
            self.message = notice or process.message
            self.error = process.error.full_message() if process.error else ""
            self.queue = dict(process.queue) if process.status == "starting" else {}
            if process.started_at and process.started_at != self.started_at:
                self.started_at = process.started_at  # a Slurm job's backend starts late
            route = self._route
            if route is not None and route.url != self.url and process.status != "stopped":
                # a route by port, known once a Slurm job's backend started
                self.route, self.url = route.kind, route.url
            self.status = process.status

    def _check_exposure(self) -> None:
        """Warn when the backend listens on every network interface, not just loopback."""
        endpoint = self._process.endpoint
        if endpoint is None or endpoint.port is None:
            return
        if self._process.listen_addresses & set(_transport.ALL_INTERFACES):
            warn(
                f"nbviz: {self._spec.name} listens on port {endpoint.port} of every network "
                "interface, so other machines can reach it too; make it listen on 127.0.0.1 "
                "(e.g. --bind 127.0.0.1, --host 127.0.0.1) or on {unix_socket}"
            )

    def _check_private_network(self) -> None:
        """Warn once per kernel when a ``{port}`` app could not get a private network here."""
        global _private_network_warned
        process = self._process
        if (
            _private_network_warned
            or not process.private_route
            or process.transport.name != "loopback"
            or _transport.private_network_disabled()
        ):
            return
        _private_network_warned = True
        port = process.endpoint.port if process.endpoint else "?"
        warn(
            f"nbviz: {self._spec.name} listens on 127.0.0.1:{port} "
            "where every local user can connect (only an app that checks NBVIZ_SECRET refuses "
            "them): this machine does not allow private network namespaces "
            f"({_transport.private_network_problem()}); {_transport.ENABLE_USERNS}. "
            "`nbviz doctor` says more"
        )

    def _check_remote_host(self, route: _routes.Route) -> None:
        """Warn when nbviz's route will refuse this backend's host (not in the allow-list)."""
        host = self._spec.host
        if route.kind != "nbviz" or host is None or self._server is None:
            return
        allowlist = _registry.server_info(self._server.pid).get("host_allowlist")
        if isinstance(allowlist, list) and not _remote.host_allowed(host, allowlist):
            warn(
                f"nbviz: {self._spec.name} listens on {host}, which this Jupyter server does not "
                f"proxy to (the frame will show 403); add {host!r} to c.NbvizRoute.host_allowlist "
                "in jupyter_server_config.py and restart Jupyter"
            )

    def _check_proxy(self) -> None:
        """Tell the user when the server has no jupyter-server-proxy (the frame would show 404)."""
        server = self._server
        if server is None or self.route not in ("proxy", "absolute"):
            return
        key = server.url or server.base_url
        if key not in _proxy_checked:
            _proxy_checked[key] = _server.server_has_proxy(server)
        if _proxy_checked[key] is False:
            self._notice = (
                "nbviz: the Jupyter server has no jupyter-server-proxy, so the frame cannot reach "
                "the app; run `pip install jupyter-server-proxy` where Jupyter runs and restart it"
            )
            warn(self._notice)


__all__ = ["LogText", "NbvizError", "NbvizWarning", "WebApp"]
