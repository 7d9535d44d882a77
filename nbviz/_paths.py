"""Private per-user directories for sockets, logs and secrets (0700 dirs, 0600 files)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import tempfile
from pathlib import Path

from ._log import BackendLog

#: The kernel's limit on a Unix socket path on Linux: 107 bytes, plus the final NUL.
SOCKET_PATH_LIMIT = 107
#: Longest Unix socket path we create (a margin below SOCKET_PATH_LIMIT).
MAX_SOCKET_PATH = 100


def _runtime_root() -> Path:
    override = os.environ.get("NBVIZ_RUNTIME_DIR")
    if override:
        return Path(override)
    try:
        from jupyter_core.paths import jupyter_runtime_dir

        return Path(jupyter_runtime_dir()) / "nbviz"
    except Exception:  # jupyter_core missing or broken: fall back to the temp dir
        return temp_root()


def temp_root() -> Path:
    """This user's directory in this machine's temp dir (made by whoever needs it): short
    socket paths, and what must stay on this host."""
    return Path(tempfile.gettempdir()) / f"nbviz-{os.getuid()}"


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make sure only this user can use it (0700)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise PermissionError(
            f"nbviz: {path} is not a directory of this user; remove it or set NBVIZ_RUNTIME_DIR"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        path.chmod(0o700)
    return path


def runtime_root() -> Path:
    """The 0700 directory that holds one sub-directory per session (shared with the server)."""
    return private_dir(_runtime_root())


def new_session_dir(session_id: str) -> Path:
    """A fresh 0700 directory for one session."""
    path = runtime_root() / session_id
    path.mkdir(mode=0o700)
    return path


def socket_dir(session_dir: Path, longest_name: int = 24) -> Path:
    """A 0700 directory for a session's extra sockets: its own directory, or a short private one
    under /tmp when socket paths there would exceed the limit (deep home directories)."""
    if len(os.fsencode(session_dir)) + 1 + longest_name <= MAX_SOCKET_PATH:  # bytes, not chars
        return session_dir
    return private_dir(temp_root() / session_dir.name)


def new_session_id() -> str:
    """A short random id, safe in URLs and file names (12 hex digits)."""
    return secrets.token_hex(6)


def write_private(path: Path, text: str) -> None:
    """Write a 0600 file atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def remove_tree(path: Path | str | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)


class StartFiles:
    """The private files of one start of a backend: its session directory (log, registry
    entry, socket), a short socket directory when that one is too deep, and directories its
    transport adds; all removed by :meth:`remove`, after which ``log`` still reads."""

    def __init__(self) -> None:
        self.session_dir: Path | None = None
        #: Where extra sockets go (``{socket_dir}``).
        self.socket_dir: Path | None = None
        #: Paths beside the session directory (removed with it; handed to the watchdog).
        self.extra: list[str] = []
        self.log = BackendLog()

    def open(self, session_id: str) -> Path:
        """A new session directory (and socket directory) with an empty log."""
        session_dir = self.session_dir = new_session_dir(session_id)
        self.log.open(session_dir)
        self.socket_dir = socket_dir(session_dir)
        if self.socket_dir != session_dir:
            self.extra.append(str(self.socket_dir))
        return session_dir

    def use_socket_dir(self, path: Path) -> None:
        """The transport's own socket directory (on the node: a gate's)."""
        self.socket_dir = path
        self.extra.append(str(path))

    def remove(self) -> None:
        if self.session_dir is not None:
            self.log.close()
            remove_tree(self.session_dir)
            self.session_dir = None
        for path in self.extra:
            if os.path.isdir(path) and not os.path.islink(path):
                remove_tree(path)
                continue
            with contextlib.suppress(OSError):
                os.unlink(path)
        self.extra = []
