"""One backend process: start, readiness, crash detection, stop, restart, logs.

Knows nothing of widgets or URLs. All waiting happens on a private thread per process,
so ``wait_ready()`` may block a kernel cell safely and ``ready()`` is a plain awaitable
(no nested event loop).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

from . import _orphans, _paths, _slurm, _transport
from ._errors import (
    BackendExitedError,
    BackendStoppedError,
    NbvizError,
    ReadyTimeoutError,
)
from ._http import http_answers
from ._log import LOG_CHECK_INTERVAL, LOG_TAIL_LINES, exit_reason
from ._runtime import supervise
from ._spawn import clean_env, spawn
from ._spec import Endpoint, Spec, render_command
from ._transport import Plan
from ._tree import (
    SESSION_ENV_VAR,
    end_gently,
    kill_tree,
    process_name,
    session_members,
)

Status = Literal["starting", "ready", "crashed", "stopped"]


class Process:
    """Lifecycle of one backend described by a :class:`Spec`.

    ``start()`` spawns and returns at once (raising for errors known before the process runs:
    bad template, missing program, port in use); readiness is awaited on a private thread.
    ``on_change`` is called (from any thread) whenever ``status`` or ``message`` changes.
    ``template_values(endpoint, session_id)`` supplies extra command fields (``{base_url}``,
    ``{prefix}``) once the endpoint is known; ``private_route``: see
    :func:`nbviz._transport.choose`. Each start gets a new session: a private directory (log,
    socket, ``endpoint.json`` for the server route) named by its id.
    """

    def __init__(
        self,
        spec: Spec,
        *,
        on_change: Callable[[Process], None] | None = None,
        template_values: Callable[[Endpoint, str], Mapping[str, str]] | None = None,
        private_route: bool = False,
        away: str | None = None,
    ) -> None:
        self.spec = spec
        #: The browser reaches the backend through nbviz's route (Unix sockets): a ``{port}``
        #: backend may then run in a private network namespace (see :mod:`nbviz._transport`).
        self.private_route = private_route
        #: This kernel's address that the Jupyter server reaches, when the server runs on
        #: another host (a host gate then stands in front of each backend).
        self.away = away
        #: How the current (or last) start listens and is reached; before the first start, how
        #: it would.
        self.transport = _transport.choose(spec, private_route=private_route, away=away)
        self._plan: Plan | None = None
        self.on_change = on_change
        self.template_values = template_values
        self.status: Status = "stopped"
        self.message = ""
        self.error: NbvizError | None = None
        self.endpoint: Endpoint | None = None
        self.session_id = ""
        #: The per-session secret of the current start (``{secret}``, ``NBVIZ_SECRET``).
        self.secret = ""
        #: The addresses our process tree listens on (a local TCP backend, once it answered).
        self.listen_addresses: set[str] = set()
        self._files = _paths.StartFiles()
        self.argv: list[str] = []
        self.started_at: float | None = None
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._future = failed(BackendStoppedError(f"{spec.name} has not been started"))
        self._wake = threading.Event()
        self._stopping = False
        self._monitor: threading.Thread | None = None
        #: The Slurm job of the current start, once granted (``spec.slurm``).
        self.allocation: _slurm.Allocation | None = None
        #: The Slurm job while it waits in the queue (id, name, state, reason, nodes), else {}.
        self.queue: dict[str, str] = {}
        #: Extra pids handed to the orphan watchdog (salloc), released at stop.
        self._guarded: list[int] = []

    # ----------------------------------------------------------------- queries
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        return self._files.log.path

    @property
    def session_dir(self) -> Path | None:
        """The current start's private directory (None once its files are gone)."""
        return self._files.session_dir

    @property
    def socket_dir(self) -> Path | None:
        """Where extra sockets of the current start go (``{socket_dir}``)."""
        return self._files.socket_dir

    def logs(self, lines: int | None = None) -> str:
        """What the backend printed (stdout and stderr), the last ``lines`` lines if given."""
        return self._files.log.lines(lines)

    # --------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Spawn the backend (idempotent while it is starting or ready). With ``spec.slurm``,
        submit its Slurm job: the backend starts once the job is granted (on the lifecycle
        thread; until then ``message`` tells the job's state)."""
        with self._lock:
            if self.status in ("starting", "ready"):
                return
            self._files.remove()
            self._stopping = False
            self._wake.clear()
            self.error = None
            self.listen_addresses = set()
            self.allocation = None
            self.queue = {}
            self.started_at = None
            self.session_id = _paths.new_session_id()
            try:
                session_dir = self._files.open(self.session_id)
                self.secret = secrets.token_urlsafe(24)
                if self.spec.slurm is None:
                    self._spawn(
                        _transport.choose(
                            self.spec, private_route=self.private_route, away=self.away
                        )
                    )
                else:
                    _slurm.check_programs(self.spec.env)
                    if self.template_values is not None:
                        # The route, as far as it is known before the node is: nbviz's is by
                        # session id; one by port is known once the backend starts (the
                        # template values are asked again then).
                        self.template_values(
                            Endpoint(unix_socket=str(session_dir / "backend.sock"))
                            if self.spec.uses_unix_socket
                            else Endpoint(port=0),
                            self.session_id,
                        )
            except BaseException:
                self._files.remove()
                raise
            future: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._future = future
            lifecycle: Callable[[], None]
            if self.spec.slurm is None:
                assert self._proc is not None
                lifecycle = functools.partial(self._run, self._proc, future)
                self._set("starting", f"starting {self.spec.name}")
            else:
                lifecycle = functools.partial(self._run_in_slurm, future)
                self._set("starting", f"submitting {self.spec.name} to Slurm")
            self._monitor = threading.Thread(
                target=lifecycle, name=f"nbviz-{self.spec.name}", daemon=True
            )
            self._monitor.start()

    def _spawn(self, transport: _transport.Transport) -> None:
        spec, session_dir = self.spec, self.session_dir
        assert session_dir is not None and self.socket_dir is not None
        session = _transport.Session(self.session_id, session_dir, self.socket_dir, self.secret)
        plan = transport.plan(spec, session)
        values = dict(plan.values)
        if self.template_values is not None:
            values.update(self.template_values(plan.endpoint, self.session_id))
        command = render_command(spec.command, values)
        argv = transport.launch_argv(command, spec, plan)
        self.transport, self._plan = transport, plan
        if plan.socket_dir is not None:
            self._files.use_socket_dir(plan.socket_dir)
        self._launch(session_dir, argv, transport, plan)
        self.argv = transport.shown_argv(argv)

    def _run_in_slurm(self, future: concurrent.futures.Future[None]) -> None:
        """Allocate the job, then start the backend as a step of it and watch it (``_run``)."""
        spec, name = self.spec, _slurm.job_name(self.session_id)
        assert spec.slurm is not None and self.session_dir is not None
        paths = [str(self.session_dir), *self._files.extra]

        def guard(pid: int) -> None:  # salloc: if the kernel dies, the watchdog cancels the job
            _orphans.guard(pid, paths, session=self.session_id, end=[_slurm.cancel_argv(name)])
            self._guarded.append(pid)

        def on_state(text: str, job: _slurm.Job | None) -> None:
            with self._lock:
                if not self._stopping:
                    waiting = job is not None and job.state not in ("RUNNING", "COMPLETING")
                    self.queue = dataclasses.asdict(job) if waiting and job else {}
                    self._set("starting", text)

        log_fd = self._files.log.writer()
        allocation: _slurm.Allocation | None = None
        try:
            allocation = _slurm.allocate(
                spec.slurm,
                name,
                env=clean_env({**spec.env, SESSION_ENV_VAR: self.session_id}),
                log_fd=log_fd,
                on_state=on_state,
                stopping=lambda: self._stopping,
                guard=guard,
                wait=self._wake.wait,
            )
            with self._lock:
                if allocation is None:
                    return
                if self._stopping:
                    _slurm.cancel(allocation.job_id)
                    return
                self.allocation = allocation
                self._spawn(
                    _transport.on_node(
                        spec, allocation, private_route=self.private_route, away=self.away
                    )
                )
                proc = self._proc
                # the step's srun is guarded now, with the job's scancel; salloc has exited, and
                # its pid must not stay registered (it may name another process later)
                for pid in self._guarded:
                    _orphans.release(pid)
                self._guarded = []
        except NbvizError as exc:
            if allocation is not None:
                _slurm.cancel(allocation.job_id)
            with self._lock:
                if self._stopping:
                    return
                self.error = NbvizError(exc.message, log_tail=self.logs(LOG_TAIL_LINES))
                self._files.remove()
                self._set("crashed", self.error.message)
            future.set_exception(self.error)
            return
        finally:
            os.close(log_fd)
        assert proc is not None
        self._run(proc, future)

    def _launch(
        self, session_dir: Path, argv: list[str], transport: _transport.Transport, plan: Plan
    ) -> None:
        """Start ``argv`` here (see :func:`nbviz._spawn.spawn`)."""
        self._proc = spawn(
            argv,
            spec=self.spec,
            transport=transport,
            plan=plan,
            session_dir=session_dir,
            session_id=self.session_id,
            secret=self.secret,
            log=self._files.log,
            paths=self._files.extra,
        )
        self.endpoint = plan.endpoint
        self.started_at = time.time()

    def _run(self, proc: subprocess.Popen[bytes], future: concurrent.futures.Future[None]) -> None:
        spec = self.spec
        start = time.monotonic()
        deadline = start + spec.timeout
        delay = 0.02
        attempts = 0
        assert self.endpoint is not None and self._plan is not None
        endpoint, plan, transport = self.endpoint, self._plan, self.transport
        while True:
            if self._stopping:
                return
            code = proc.poll()
            if code is not None:
                left = [
                    p
                    for p in (session_members(self.session_id) if transport.local_tree else [])
                    if p.pid != proc.pid
                ]
                daemon = (
                    f", leaving pid {left[0].pid} ({process_name(left[0])}) in the background, "
                    "where nbviz cannot manage it (nbviz ended it); run the program in the "
                    "foreground (an option such as --foreground or --no-daemon)"
                    if left
                    else ""
                )
                error = self._exit_error(
                    code, transport.end_reason(plan), f" before it was ready{daemon}"
                )
                self._fail(future, error, kill=proc)
                return
            attempts += 1
            self._files.log.cap()
            if self._probe(proc, endpoint):
                break
            now = time.monotonic()
            if now >= deadline:
                where = endpoint.http_url.rstrip("/") + spec.ready_path
                if plan.inner_port is not None:
                    where += f" (port {plan.inner_port} in its private network)"
                other = transport.held_by_other(proc.pid, plan)
                advice = (
                    transport.advice(proc.pid, plan) or "; check the command, or raise timeout="
                )
                self._fail(
                    future,
                    ReadyTimeoutError(
                        f"nbviz: {spec.name} did not answer on {where} within "
                        f"{spec.timeout:g} s{other}{advice}",
                        log_tail=self.logs(LOG_TAIL_LINES),
                    ),
                    kill=proc,
                )
                return
            self._set(
                "starting",
                f"waiting for {spec.name} to answer ({now - start:.1f} s)",
                quiet=attempts % 10 != 1,
            )
            self._wake.wait(min(delay, deadline - now))
            delay = min(delay * 1.5, 0.05)
        with self._lock:
            if self._stopping:
                return
            self._set("ready", f"{spec.name} is ready ({time.monotonic() - start:.1f} s)")
        future.set_result(None)
        while True:
            try:
                code = proc.wait(timeout=LOG_CHECK_INTERVAL)
                break
            except subprocess.TimeoutExpired:
                self._files.log.cap()
        reason = transport.end_reason(plan)  # before the job is cancelled below
        if not self._stopping:
            # what it started (an X server, helpers) must not outlive it
            kill_tree(proc, session_id=self.session_id)
            self._end_held(transport, plan)
        with self._lock:
            if self._stopping:
                return
            self.error = self._exit_error(code, reason, "; restart() starts it again")
            # Whoever waits for readiness from now on learns of the crash.
            self._future = failed(self.error)
            self._files.remove()
            self._set("crashed", self.error.message)

    def _exit_error(self, code: int, reason: str | None, otherwise: str) -> NbvizError:
        """The backend's exit as its user needs to hear of it: why what ended it did (Slurm's
        ``reason``), what the transport's own program meant (ssh), or what the backend's
        supervisor said, else its exit status plus ``otherwise``; then ``spec.explain``."""
        assert self._plan is not None
        log_tail = self.logs(LOG_TAIL_LINES)
        error = BackendExitedError(
            reason
            or self.transport.exit_reason(self._plan, code, log_tail)
            or exit_reason(log_tail)
            or f"nbviz: {self.spec.name} exited with {describe_exit(code)}{otherwise}",
            log_tail=log_tail,
        )
        return self.spec.explain(error) if self.spec.explain is not None else error

    def _probe(self, proc: subprocess.Popen[bytes], endpoint: Endpoint) -> bool:
        if not http_answers(endpoint, self.spec.ready_path):
            return False
        if endpoint.unix_socket is not None:
            # Whatever umask the backend had: only this user may connect (the 0700 directory
            # already guarantees it; this covers sockets placed elsewhere too).
            with contextlib.suppress(OSError):
                os.chmod(endpoint.unix_socket, 0o600)
        assert self._plan is not None
        owned = self.transport.owns(proc.pid, self._plan)
        if owned is not None:
            self.listen_addresses = owned
            if not owned:
                # Something answers, but it is not our backend (another user's process took the
                # port). (On another host this cannot be checked: see docs/remote.md.)
                return False
        return self.spec.probe is None or bool(self.spec.probe(endpoint))

    def _fail(
        self,
        future: concurrent.futures.Future[None],
        error: NbvizError,
        kill: subprocess.Popen[bytes],
    ) -> None:
        kill_tree(kill, session_id=self.session_id)
        if self._plan is not None:
            self._end_held(self.transport, self._plan)
        with self._lock:
            if self._stopping:
                return
            self.error = error
            self._files.remove()  # nothing of a failed start stays behind; logs() still reads
            self._set("crashed", error.message)
        future.set_exception(error)

    def _set(self, status: Status, message: str, quiet: bool = False) -> None:
        changed = status != self.status
        self.status = status
        self.message = message
        if (changed or not quiet) and self.on_change is not None:
            self.on_change(self)

    async def ready(self) -> None:
        """Wait until the backend answers (raises the startup error if it failed)."""
        await asyncio.wrap_future(self._future)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the backend answers; safe in a kernel cell (waits on another thread)."""
        future = self._future
        try:
            future.result(timeout)
        except concurrent.futures.TimeoutError:
            if future.done():  # the backend's own ReadyTimeoutError (a TimeoutError too)
                raise
            raise ReadyTimeoutError(
                f"nbviz: {self.spec.name} was not ready after waiting {timeout:g} s",
                log_tail=self.logs(LOG_TAIL_LINES),
            ) from None

    def stop(self) -> None:
        """Stop the backend and everything it started; remove its private files."""
        with self._lock:
            self._stopping = True
            self._wake.set()
            proc = self._proc
        if proc is not None:
            if self._plan is not None:
                # a Slurm job first: its end ends the step and the local srun with it
                self._end_held(self.transport, self._plan)
            if proc.stdin is not None:
                end_gently(proc)
            kill_tree(proc, session_id=self.session_id)
            _orphans.release(proc.pid)
        if self._monitor is not None and self._monitor is not threading.current_thread():
            self._monitor.join(timeout=5)
        if proc is None and self.spec.slurm is not None and self.session_id:
            _slurm.cancel(_slurm.job_name(self.session_id))  # a job still waiting in the queue
        for pid in self._guarded:
            _orphans.release(pid)
        self._guarded = []
        with self._lock:
            stopped = BackendStoppedError(
                f"nbviz: {self.spec.name} was stopped; start() starts it again"
            )
            if not self._future.done():
                self._future.set_exception(stopped)
                self._future.exception()
            else:  # it was ready (or failed): from now on, waiting says it is stopped
                self._future = failed(stopped)
            self._files.remove()
            self._proc = None
            self.queue = {}
            if self.status != "stopped":
                self._set("stopped", f"{self.spec.name} stopped")

    def restart(self) -> None:
        self.stop()
        self.start()

    @staticmethod
    def _end_held(transport: _transport.Transport, plan: Plan) -> None:
        """End what the start holds beyond its processes (its Slurm job)."""
        for argv in transport.end_commands(plan):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(argv, capture_output=True, timeout=20, check=False)


def failed(error: BaseException) -> concurrent.futures.Future[None]:
    """A future that already holds ``error`` (marked as retrieved: no "never retrieved" log)."""
    future: concurrent.futures.Future[None] = concurrent.futures.Future()
    future.set_exception(error)
    future.exception()
    return future


#: An exit status as people say it (``code 1``, ``signal SIGKILL``): the runtime's one function.
describe_exit = supervise.describe
