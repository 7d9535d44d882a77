"""Orphan guard: a tiny process that outlives the kernel by a moment and cleans up after it.

The kernel starts one watchdog (``python _watchdog.py``, stdlib only) with a pipe on its
stdin and tells it, one JSON line at a time, which backend processes and private
directories it owns. When the pipe closes -- the kernel exited, crashed or was killed
with SIGKILL -- or the watchdog's parent changes, the watchdog terminates every
registered backend with its whole process tree (SIGTERM, then SIGKILL), removes the
directories and exits. No signal handler is installed in the kernel. The watchdog forks
away from the process the kernel started, so the kernel holds no child for it.

Lines: ``{"add": pid, "paths": [...], "session": id, "end": [argv, ...]}`` and
``{"remove": pid}``. The ``end`` commands run after the processes are gone (``scancel`` of a
Slurm job: its processes run under slurmd, out of the kernel's reach). With a
session id, the cleanup also ends this user's processes whose environment carries
``NBVIZ_SESSION_ID=<id>``: a program that daemonized (fork, setsid, fork) left the tree and
the process group before any scan could see it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

SCAN_INTERVAL = 0.5
GRACE = 3.0
#: The variable marking every process of a session (``_process.SESSION_ENV_VAR``; this file
#: is run by path and imports nothing of nbviz).
SESSION_ENV_VAR = b"NBVIZ_SESSION_ID"


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, start time) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    return int(fields[1]), int(fields[19])


class Guard:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: registered root pid -> its start time and the paths to remove
        self.roots: dict[int, tuple[int | None, list[str]]] = {}
        #: every process we saw in a registered tree: pid -> start time
        self.known: dict[int, int] = {}
        #: registered root pid -> its session id
        self.sessions: dict[int, str] = {}
        #: registered root pid -> commands to run at the end
        self.ends: dict[int, list[list[str]]] = {}

    def add(
        self,
        pid: int,
        paths: list[str],
        session: str | None = None,
        end: list[list[str]] | None = None,
    ) -> None:
        info = _stat(pid)
        with self.lock:
            self.roots[pid] = (info[1] if info else None, paths)
            if info:
                self.known[pid] = info[1]
            if session:
                self.sessions[pid] = session
            if end:
                self.ends[pid] = end

    def remove(self, pid: int) -> None:
        with self.lock:
            self.roots.pop(pid, None)
            self.known.pop(pid, None)
            self.sessions.pop(pid, None)
            self.ends.pop(pid, None)

    def adopt_marked(self) -> None:
        """Add this user's processes marked with a registered session id to the known ones."""
        with self.lock:
            marks = {SESSION_ENV_VAR + b"=" + s.encode() for s in self.sessions.values()}
        if not marks:
            return
        uid = os.getuid()
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == os.getpid():
                continue
            try:
                if os.stat(f"/proc/{name}").st_uid != uid:
                    continue
                with open(f"/proc/{name}/environ", "rb") as f:
                    environ = f.read().split(b"\0")
            except OSError:
                continue
            if marks.intersection(environ):
                info = _stat(int(name))
                if info is not None:
                    with self.lock:
                        self.known.setdefault(int(name), info[1])

    def scan(self) -> None:
        """Remember every descendant of the registered roots (so a re-parented one is found)."""
        with self.lock:
            if not self.roots:
                self.known.clear()
                return
            roots = set(self.roots)
        children: dict[int, list[int]] = {}
        starts: dict[int, int] = {}
        try:
            names = os.listdir("/proc")
        except OSError:
            return
        for name in names:
            if not name.isdigit():
                continue
            info = _stat(int(name))
            if info:
                children.setdefault(info[0], []).append(int(name))
                starts[int(name)] = info[1]
        found: dict[int, int] = {}
        todo = [pid for pid in roots if pid in starts]
        while todo:
            pid = todo.pop()
            if pid in found:
                continue
            found[pid] = starts[pid]
            todo.extend(children.get(pid, ()))
        with self.lock:
            # keep processes seen before that are still the same process (re-parented orphans)
            for pid, start in list(self.known.items()):
                if starts.get(pid) == start:
                    found.setdefault(pid, start)
            self.known = found

    def _signal_all(self, sig: int) -> int:
        alive = 0
        with self.lock:
            targets = dict(self.known)
            roots = list(self.roots.items())
        for pid, (start, _paths) in roots:
            # A process group outlives its leader; a pid is not reused while its group lives.
            info = _stat(pid)
            if info is not None and info[1] != start:
                continue  # the pid now names another process: leave it alone
            try:
                os.killpg(pid, sig)
            except OSError:
                pass
        for pid, start in targets.items():
            info = _stat(pid)
            if info is None or info[1] != start:
                continue
            alive += 1
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        return alive

    def cleanup(self) -> None:
        self.scan()
        self.adopt_marked()
        if self._signal_all(signal.SIGTERM):
            deadline = time.monotonic() + GRACE
            while time.monotonic() < deadline:
                time.sleep(0.1)
                if not self._alive():
                    break
            self._signal_all(signal.SIGKILL)
        with self.lock:
            paths = [p for _start, ps in self.roots.values() for p in ps]
            ends = [argv for argvs in self.ends.values() for argv in argvs]
        for argv in ends:
            try:
                subprocess.run(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, timeout=20, check=False,
                )  # fmt: skip
            except (OSError, subprocess.SubprocessError):
                pass
        for path in paths:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def _alive(self) -> bool:
        with self.lock:
            targets = dict(self.known)
        for pid, start in targets.items():
            info = _stat(pid)
            if info is not None and info[1] == start and not _is_zombie(pid):
                return True
        return False


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return True
    return data[data.rfind(b")") + 2 : data.rfind(b")") + 3] == b"Z"


def main() -> None:
    if os.fork():
        os._exit(0)  # the kernel reaps this parent at once; the child carries on
    guard = Guard()
    done = threading.Event()

    def watch() -> None:
        while not done.wait(SCAN_INTERVAL):
            guard.scan()

    threading.Thread(target=watch, daemon=True).start()

    def read() -> None:
        for line in sys.stdin:
            try:
                message = json.loads(line)
                if "add" in message:
                    guard.add(
                        int(message["add"]),
                        [str(p) for p in message.get("paths", [])],
                        str(message["session"]) if message.get("session") else None,
                        [[str(a) for a in argv] for argv in message.get("end", [])],
                    )
                elif "remove" in message:
                    guard.remove(int(message["remove"]))
            except (ValueError, TypeError, KeyError):
                continue
        done.set()

    threading.Thread(target=read, daemon=True).start()
    done.wait()
    guard.cleanup()


if __name__ == "__main__":
    signal.signal(
        signal.SIGINT, signal.SIG_IGN
    )  # our own process: Ctrl-C in a terminal must not skip cleanup
    main()
