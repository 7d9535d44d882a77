"""``c.NbvizRoute.*``: the route's settings in ``jupyter_server_config.py``."""

from __future__ import annotations

from traitlets import Callable, Float, List, Unicode, Union
from traitlets.config import Configurable


class NbvizRoute(Configurable):
    """Configuration of nbviz's route (``c.NbvizRoute.*`` in ``jupyter_server_config.py``)."""

    host_allowlist = Union(
        [List(Unicode()), Callable()],
        default_value=[],
        help="""Hosts other than this machine that nbviz's route may proxy to: backends started
        with ``WebApp(..., host=...)`` on another node. A list of shell-style patterns
        (``["node*.cluster", "10.200.0.*"]``), or a callable ``f(handler, host) -> bool`` (the
        same shape as ``c.ServerProxy.host_allowlist``). Loopback is always allowed; the
        default (empty) allows nothing else. A session whose host is not allowed gets 403.""",
    ).tag(config=True)

    sweep_seconds = Float(
        60.0,
        help="""Seconds between two sweeps of stale sessions (their kernel and backend gone; for
        a kernel on another machine, inside a Slurm job: the job gone).""",
    ).tag(config=True)

    def describe_allowlist(self) -> list[str] | str:
        """For the server marker and ``nbviz doctor``: the patterns, or "callable"."""
        allowlist = self.host_allowlist
        return "callable" if callable(allowlist) else list(allowlist)
