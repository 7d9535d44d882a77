"""Private per-user directories for sockets, logs and secrets (0700 dirs, 0600 files)."""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import tempfile
from pathlib import Path

#: Longest Unix socket path we create (the kernel limit is 107 bytes plus NUL on Linux).
MAX_SOCKET_PATH = 100


def _runtime_root() -> Path:
    override = os.environ.get("NBVIZ_RUNTIME_DIR")
    if override:
        return Path(override)
    try:
        from jupyter_core.paths import jupyter_runtime_dir

        return Path(jupyter_runtime_dir()) / "nbviz"
    except Exception:  # jupyter_core missing or broken: fall back to the temp dir
        return Path(tempfile.gettempdir()) / f"nbviz-{os.getuid()}"


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make sure only this user can use it (0700)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise PermissionError(
            f"nbviz: {path} belongs to another user; remove it or set NBVIZ_RUNTIME_DIR"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        path.chmod(0o700)
    return path


def runtime_root() -> Path:
    """The 0700 directory that holds one sub-directory per session."""
    return private_dir(_runtime_root())


def new_session_dir(session_id: str) -> Path:
    """A fresh 0700 directory for one session; short enough for socket paths inside it."""
    root = runtime_root()
    path = root / session_id
    if len(str(path / "backend.sock")) > MAX_SOCKET_PATH:
        # Deep home directories make socket paths too long: use a private temp dir instead.
        base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
        path = base / f"nbviz-{os.getuid()}" / session_id
        private_dir(path.parent)
    path.mkdir(mode=0o700)
    return path


def new_session_id() -> str:
    """A short random id, safe in URLs and file names."""
    return secrets.token_hex(6)


def remove_tree(path: Path | str | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)
