"""One supervisor for what nbviz runs outside the kernel (standard library only).

A launcher (the desktop's, NEST Desktop's) starts the pieces of a session as children of one
:class:`Supervisor`:

- **essential** children: when one ends, the session is over. :meth:`Supervisor.watch` returns
  1 after printing the agreed last line, ``nbviz-exit: nbviz: <name> exited (<how>); <what
  then>``, which the kernel's lifecycle (``nbviz._log.EXIT_REASON``) makes the first line
  of the error the user sees;
- the others: their end is logged, and a child given ``restarts=N`` and a ``restart`` callback
  is started again (up to N times) by calling it.

:meth:`Supervisor.end_all` ends the children (SIGTERM, the last started first; SIGKILL after a
grace period), then whatever they left behind: the supervisor is the children's subreaper
(Linux ``PR_SET_CHILD_SUBREAPER``), so a child's own children whose parent died come to it and
are ended too, whatever process group or session they moved to.

Used by files run by path (``python <file>``): importable as ``supervise`` with this folder on
``sys.path``, or as ``nbviz._runtime.supervise``. Imports nothing of nbviz.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: The agreed prefix of a launcher's last line, saying why it ends (``nbviz._process``).
EXIT_REASON = "nbviz-exit: "
#: Seconds between SIGTERM and SIGKILL when ending children.
GRACE = 3.0


def describe(code: int) -> str:
    """An exit status as people say it: ``code 1``, ``signal SIGKILL``."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def become_subreaper() -> None:
    """Adopt our descendants whose parent dies (Linux ``PR_SET_CHILD_SUBREAPER``)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def adopted_children() -> list[int]:
    """Pids whose parent is this process (children, and orphans adopted as a subreaper)."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def end_processes(procs: list[subprocess.Popen[bytes]], grace: float = GRACE) -> None:
    """SIGTERM each (the last started first), SIGKILL what is still there after ``grace``."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def end_adopted(grace: float = GRACE) -> None:
    """End what the children left behind (e.g. Xpra's Xvfb when Xpra died first)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = adopted_children()
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-1, os.WNOHANG)[0] > 0:
                    pass
            pids = adopted_children()
            time.sleep(0.02)
        if not pids:
            return


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    essential: bool
    #: Called to start it again after it ended (it spawns the new child itself), or None.
    restart: Callable[[], object] | None = None
    #: How many more times it may be started again.
    restarts: int = 0
    #: Says more about an essential child's end (" (ValueError: ...)", from its output), or None.
    detail: Callable[[], str] | None = None


class Supervisor:
    """The children of one launcher; see the module's docstring.

    ``say`` prints one line of the launcher's log (a launcher prefixes its lines with its
    name); ``gone`` is the end of an essential child's reason ("the desktop is gone, ...").
    """

    def __init__(self, say: Callable[[str], None], gone: str = "the session ended") -> None:
        self.say = say
        self.gone = gone
        self.children: dict[int, Child] = {}
        self._restarts: dict[str, int] = {}
        become_subreaper()

    def spawn(
        self,
        name: str,
        argv: list[str],
        *,
        essential: bool,
        env: dict[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
        restart: Callable[[], object] | None = None,
        restarts: int = 0,
        stdout: int | None = None,
        stderr: int | None = None,
        detail: Callable[[], str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a child. ``restart`` (with ``restarts`` > 0) starts it again when it ends;
        a child of the same ``name`` started again keeps the count of restarts left.
        ``stdout``/``stderr`` as for :class:`subprocess.Popen` (default: the launcher's own);
        ``detail`` adds to the reason an essential child's end gives (see :meth:`watch`)."""
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=env,
            pass_fds=pass_fds,
        )
        left = self._restarts.setdefault(name, restarts)
        self.children[proc.pid] = Child(name, proc, essential, restart, left, detail)
        return proc

    def forget(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop watching ``proc`` (it has ended, or is being replaced)."""
        self.children.pop(proc.pid, None)

    def end(self, proc: subprocess.Popen[bytes]) -> None:
        """End one child now (it is no longer part of the session)."""
        self.forget(proc)
        end_processes([proc])

    def why_we_end(self, reason: str) -> None:
        """The agreed last line: nbviz shows ``reason`` as the error's first line."""
        self.say(EXIT_REASON + reason)

    def watch(self) -> int:
        """Wait for children until an essential one ends (1) or none is left (0)."""
        while True:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                return 0
            child = self.children.pop(pid, None)
            if child is None:  # an adopted orphan, or one we forgot
                continue
            child.proc.returncode = os.waitstatus_to_exitcode(status)
            how = describe(child.proc.returncode)
            if child.essential:
                more = child.detail() if child.detail is not None else ""
                self.why_we_end(f"nbviz: {child.name} exited ({how}){more}; {self.gone}")
                return 1
            self.say(f"{child.name} exited ({how})")
            left = self._restarts.get(child.name, 0)
            if child.restart is not None and left > 0:
                self._restarts[child.name] = left - 1
                self.say(f"starting the {child.name} again")
                child.restart()

    def end_all(self, grace: float = GRACE) -> None:
        """End every child, then what they left behind."""
        end_processes([child.proc for child in self.children.values()], grace)
        self.children.clear()
        end_adopted(grace)


def run_launcher(
    body: Callable[[], int],
    *,
    why: Callable[[str], None],
    end: Callable[[], None],
    signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP),
) -> int:
    """A launcher's main frame: run ``body`` (which starts the children and usually ends in
    :meth:`Supervisor.watch`) and return its exit status. A signal in ``signals`` ends it (status
    128 + the signal's number); a ``SystemExit`` with a text is the agreed last line (``why``
    prints it: nbviz shows it as the error); ``end`` ends the children whatever happened, with
    ``signals`` ignored meanwhile."""

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for number in signals:
        signal.signal(number, terminate)
    try:
        return body()
    except SystemExit as exc:
        if isinstance(exc.code, str):
            why(exc.code)
            return 1
        return int(exc.code or 0)
    finally:
        for number in signals:
            signal.signal(number, signal.SIG_IGN)
        end()
