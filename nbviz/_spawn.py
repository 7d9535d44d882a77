"""Starting one backend's process here: its environment (without Jupyter's credentials), its own
session and process group, its orphan guard and its registry entry.

The lifecycle (:mod:`nbviz._process`) calls :func:`spawn` once per start, with what the start's
:class:`~nbviz._transport.Transport` planned; everything after (readiness, crashes, stop) is the
lifecycle's.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from . import _orphans, _registry
from ._errors import NbvizError
from ._log import BackendLog
from ._spec import SECRET_ENV_VAR, Spec
from ._transport import Plan, Transport
from ._tree import SESSION_ENV_VAR

#: Environment variables that carry Jupyter/JupyterHub credentials: never handed to backends.
SECRET_ENV = ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "JUPYTER_TOKEN", "JUPYTER_PASSWORD")


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The kernel's environment without Jupyter's credentials, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if key not in SECRET_ENV}
    env.update(extra)
    return env


def spawn(
    argv: list[str],
    *,
    spec: Spec,
    transport: Transport,
    plan: Plan,
    session_dir: Path,
    session_id: str,
    secret: str,
    log: BackendLog,
    paths: list[str],
) -> subprocess.Popen[bytes]:
    """Start ``argv`` here: the backend, a wrapper around it, or an ssh (or srun) that runs it
    elsewhere (``plan.stdin`` then goes to its stdin, which stays open). Its output goes to the
    session's log; the orphan watchdog guards it (and removes ``session_dir`` and ``paths``
    after it); the server's route finds it through the registry entry written here."""
    endpoint, stdin = plan.endpoint, plan.stdin
    cwd = spec.cwd if transport.local_cwd else None  # over ssh, cwd is a directory there
    if cwd is not None and not os.path.isdir(cwd):
        what = "is a file, not a directory" if os.path.exists(cwd) else "does not exist"
        raise NbvizError(f"nbviz: working directory {cwd} {what}")
    log_fd = log.writer()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=clean_env({**spec.env, SECRET_ENV_VAR: secret, SESSION_ENV_VAR: session_id}),
            start_new_session=True,  # its own process group: stop() reaches its children
            close_fds=True,
        )
    except OSError as exc:
        raise NbvizError(f"nbviz: could not start {argv[0]}: {exc.strerror or exc}") from None
    finally:
        os.close(log_fd)
    if stdin is not None and proc.stdin is not None:
        with contextlib.suppress(OSError):  # ssh already exited: its log says why
            proc.stdin.write(stdin)
            proc.stdin.flush()
    _orphans.guard(
        proc.pid,
        [str(session_dir), *paths],
        session=session_id,
        end=transport.end_commands(plan),
    )
    _registry.write_entry(
        session_dir,
        _registry.Entry(
            session_id=session_id,
            unix_socket=endpoint.unix_socket,
            port=endpoint.port if plan.inner_port is None else plan.inner_port,
            host=endpoint.host,
            pid=proc.pid,
            owner_pid=os.getpid(),
            options=dict(spec.route_options),
            secret_param=spec.secret_param,
            secret=secret if spec.secret_param else None,
            transport=transport.name,
            broker=plan.broker,
            machine=_registry.this_machine(),
            gate=endpoint.gate,
            kernel_job=os.environ.get("SLURM_JOB_ID"),
        ),
    )
    return proc
