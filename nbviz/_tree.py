"""A session's processes: finding them (its tree, its process group, the session's mark in
their environment) and ending them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

import psutil

STOP_GRACE = 3.0


def group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for candidate in psutil.process_iter():
        try:
            if os.getpgid(candidate.pid) == pgid:
                members.append(candidate)
        except (OSError, psutil.Error):
            continue
    return members


#: Environment variable that marks every process of a session, so that processes which left
#: its process tree and group (a program that daemonizes: fork, setsid, fork) are found too.
SESSION_ENV_VAR = "NBVIZ_SESSION_ID"


def session_members(session_id: str) -> list[psutil.Process]:
    """This user's processes whose environment carries ``session_id`` (see SESSION_ENV_VAR)."""
    found = []
    uid = os.getuid()
    for candidate in psutil.process_iter():
        try:
            if candidate.uids().real == uid and (
                candidate.environ().get(SESSION_ENV_VAR) == session_id
            ):
                found.append(candidate)
        except psutil.Error:
            continue
    return found


def kill_tree(
    proc: subprocess.Popen[bytes], grace: float = STOP_GRACE, session_id: str | None = None
) -> None:
    """SIGTERM the process, its group and every descendant (and, with ``session_id``, every
    process marked with it); SIGKILL what is left after ``grace``."""
    try:
        root = psutil.Process(proc.pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:  # the leader is gone: whatever is left of its process group
        procs = group_members(proc.pid)
    if session_id:
        known = {p.pid for p in procs}
        procs += [p for p in session_members(session_id) if p.pid not in known]

    def signal_all(sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            pass
        for p in procs:
            try:
                p.send_signal(sig)
            except psutil.Error:
                pass

    signal_all(signal.SIGTERM)
    _gone, alive = psutil.wait_procs(procs, timeout=grace)
    if alive or proc.poll() is None:
        signal_all(signal.SIGKILL)
        psutil.wait_procs(alive, timeout=grace)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass


def process_name(process: psutil.Process) -> str:
    try:
        return process.name()
    except psutil.Error:
        return "?"


def end_gently(proc: subprocess.Popen[bytes], grace: float = STOP_GRACE) -> None:
    """Close the stdin of an ssh launcher and give it ``grace`` s to end the remote backend and
    exit by itself (so the remote side is gone when stop() returns)."""
    assert proc.stdin is not None
    with contextlib.suppress(OSError):
        proc.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
