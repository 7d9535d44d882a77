"""``NestDesktop``: NEST Desktop and its NEST Server as one app, with a kernel-side API."""

from __future__ import annotations

import json
from typing import Any

from .._errors import BackendStoppedError, NbvizError
from .._http import UnixHTTPConnection
from .._routes import RouteChoice, url_join
from ._app import App
from ._builtin import NEST_DESKTOP
from .runtime.nest import SERVER_PATH

#: How long one call to NEST Server may take by default (a simulation can be long).
CALL_TIMEOUT = 300.0


class NestDesktop(App):
    """NEST Desktop (the web UI) with its own NEST Server, shown in a notebook cell.

    Both run as one session: one widget, one ``stop()``. The browser reaches NEST Server
    through the app's route (``<route>/nestserver/``); NEST Server keeps its access token
    (a fresh one per session, added by nbviz on the way), and listens only on a private Unix
    socket. The kernel talks to the same NEST Server, so it sees what the UI did:

    >>> desk = NestDesktop()
    >>> desk.wait_ready()
    >>> desk.kernel_status("biological_time", "network_size")
    {'biological_time': 1000.0, 'network_size': 12}
    >>> desk.call("Create", "iaf_psc_alpha", 5)
    >>> desk.exec("import nest\\nn = nest.GetKernelStatus('network_size')", returns="n")
    """

    def __init__(
        self,
        *,
        modules: str = "import nest; import numpy as np",
        restricted: bool = True,
        route: RouteChoice = "auto",
        height: int | str = 640,
        title: str | None = None,
        timeout: float | None = None,
        start: bool = True,
    ) -> None:
        super().__init__(
            NEST_DESKTOP,
            route=route,
            height=height,
            title=title,
            timeout=timeout,
            start=start,
            modules=modules,
            restricted="yes" if restricted else "no",
        )

    @property
    def server_url(self) -> str:
        """The URL the browser uses for NEST Server (under the app's route)."""
        return url_join(self.url, SERVER_PATH + "/") if self.url else ""

    def _nest_server(self) -> tuple[str, str]:
        """NEST Server's socket and access token (written by the launcher, 0600)."""
        if self._process.status != "ready":
            self.wait_ready()
        session_dir = self._process.session_dir
        try:
            assert session_dir is not None
            info = json.loads((session_dir / "nest.json").read_text())
        except (AssertionError, OSError, ValueError):
            raise BackendStoppedError(
                "nbviz: NEST Server is not running; call start() (or restart())"
            ) from None
        return str(info["server_socket"]), str(info["token"])

    def request(
        self, method: str, path: str, body: Any = None, timeout: float = CALL_TIMEOUT
    ) -> Any:
        """Send one request to NEST Server (``path`` like ``/api/GetKernelStatus``); its JSON."""
        socket_path, token = self._nest_server()
        conn = UnixHTTPConnection(socket_path, timeout=timeout)
        headers = {"NESTServerAuth": token}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            payload = response.read()
        except OSError as exc:
            raise NbvizError(
                f"nbviz: NEST Server did not answer {path} ({exc}); see logs()",
                log_tail=self.logs(20),
            ) from None
        finally:
            conn.close()
        text = payload.decode(errors="replace")
        if response.status != 200:
            raise NbvizError(
                f"nbviz: NEST Server answered {path} with {response.status}: {text.strip()[:500]}"
            )
        try:
            return json.loads(text)
        except ValueError:
            return text

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``nest.<name>(*args, **kwargs)`` in NEST Server (its REST API); the result."""
        body: dict[str, Any] = dict(kwargs)
        if args:
            body["args"] = list(args)
        return self.request("POST", f"/api/{name}", body)

    def kernel_status(self, *keys: str) -> Any:
        """``nest.GetKernelStatus()`` of NEST Server: all of it, or a dict of ``keys``."""
        if not keys:
            return self.call("GetKernelStatus")
        values = self.call("GetKernelStatus", keys=list(keys))
        return dict(zip(keys, values, strict=True))

    def exec(self, source: str, returns: str | None = None) -> Any:
        """Run a Python script in NEST Server (as NEST Desktop does); the variable ``returns``."""
        body: dict[str, Any] = {"source": source}
        if returns:
            body["return"] = returns
        answer = self.request("POST", "/exec", body)
        if isinstance(answer, dict) and "data" in answer:
            return answer["data"]
        return answer

    @property
    def version(self) -> str:
        """NEST's version, as NEST Server reports it."""
        return str(self.request("GET", "/").get("nest", ""))
