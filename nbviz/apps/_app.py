"""``App``: a preset started from a cell and shown in it (a :class:`~nbviz.WebApp` underneath)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import _paths
from .._errors import NbvizError, TemplateError
from .._routes import RouteChoice
from .._spec import Endpoint, Spec
from ..app import WebApp
from . import _preset
from ._preset import Preset, fill


class App(WebApp):
    """A ready-made web app from a preset, shown in a notebook cell.

    >>> app = App("bokeh", script="dashboard.py")   # or nbviz.apps.launch(...)
    >>> app.wait_ready()
    >>> app.stop()

    ``preset`` is a preset name (see :func:`nbviz.apps.available`) or a :class:`Preset`;
    keyword arguments are the preset's own arguments (e.g. ``script=``).
    """

    #: A preset's app is a process first: without a route it still runs (with a warning).
    _route_required = False

    def __init__(
        self,
        preset: str | Preset,
        *,
        route: RouteChoice = "auto",
        height: int | str = 600,
        title: str | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        start: bool = True,
        slurm: Mapping[str, object] | bool | None = None,
        **args: Any,
    ) -> None:
        chosen = _preset.get(preset) if isinstance(preset, str) else preset
        if not isinstance(chosen, Preset):
            raise NbvizError(f"nbviz: App() takes a preset name or a Preset, not {preset!r}")
        chosen.check_requirements()
        values = chosen.resolve_args(args)
        values["python"] = sys.executable
        self.preset = chosen
        #: The preset's arguments as used (defaults filled in).
        self.args = {key: values[key] for key in chosen.args}
        self._fill = values
        command = [fill(item, values) for item in chosen.command]
        tcp_command = (
            [fill(item, values) for item in chosen.tcp_command] if chosen.tcp_command else None
        )
        run_env = {key: fill(value, values).format() for key, value in chosen.env.items()}
        run_env.update(env or {})
        try:
            spec = Spec.build(
                command,
                ready_path=chosen.ready_path,
                timeout=chosen.timeout if timeout is None else timeout,
                env=run_env,
                name=chosen.name,
                route_options={"absolute": chosen.absolute_url},
                tcp_command=tcp_command,
                secret_param=chosen.secret_param,
                network=chosen.network,
                slurm=slurm,
            )
        except TemplateError as exc:
            raise chosen.error(exc.message.removeprefix("nbviz: ")) from None
        self._start_path = fill(chosen.path, values).format()
        self._init_backend(
            spec,
            absolute_url=chosen.absolute_url,
            route=route,
            height=height,
            title=title or chosen.title or chosen.name,
            path=self._start_path,
            start=start,
        )

    def _backend_ready(self) -> None:
        # Each start is a new session (a new route): where the page had navigated to in the
        # last one (with that session's URLs in it, e.g. NEST Desktop's server URL) is gone.
        self.path = self._with_secret(self._start_path)

    def _values_for(self, endpoint: Endpoint, session_id: str) -> dict[str, str]:
        values = super()._values_for(endpoint, session_id)
        session_dir = self._process.session_dir
        if self.preset.files and session_dir is not None:
            every = {
                **self._fill,
                **values,
                "port": str(endpoint.port or ""),
                "unix_socket": endpoint.unix_socket or "",
                "session_dir": str(session_dir),
            }
            for rewrite in self.preset.files:
                write_rewritten(self.preset, rewrite, session_dir, every)
        return values


def write_rewritten(
    preset: Preset, rewrite: _preset.FileRewrite, session_dir: os.PathLike[str], values: Any
) -> None:
    """Copy ``rewrite.source`` to ``session_dir/rewrite.dest`` with its replacements (0600)."""
    source = rewrite.source_path()
    try:
        text = source.read_text()
    except OSError as exc:
        raise NbvizError(
            f"nbviz: preset {preset.name!r}{preset.source}: cannot read {source} "
            f"({exc.strerror or exc}); reinstall the package that provides it"
        ) from None
    for old, new in rewrite.replace.items():
        if old not in text:
            raise NbvizError(
                f"nbviz: preset {preset.name!r}{preset.source}: {source} does not contain "
                f"{old!r} (a different version of that package?); update the preset"
            )
        text = text.replace(old, new.format_map(values))
    dest = os.path.join(os.fspath(session_dir), rewrite.dest)
    real_root = os.path.realpath(session_dir)
    if not os.path.realpath(dest).startswith(real_root + os.sep):
        raise NbvizError(
            f"nbviz: preset {preset.name!r}: file dest {rewrite.dest!r} leaves the session dir"
        )
    os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
    _paths.write_private(Path(dest), text)
