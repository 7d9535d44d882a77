"""What the desktop's kernel side and its launcher agree on (standard library only).

Imported by both: by the kernel as ``nbviz.desktop.runtime.shared`` (the page's URL carries
credentials derived here; the state directory holds ``desktop.json``), and by the launcher, run
by path, as its sibling.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

#: The X framebuffer Xvfb (under Xpra) allocates; the screen can be resized up to it.
MIN_FRAMEBUFFER = (2560, 1600)
NOVNC_DIR = Path("/usr/share/novnc")
BACKGROUND = "#3b5b7a"
#: VncAuth uses at most 8 characters of a password.
VNC_PASSWORD_LENGTH = 8
#: Characters of Xpra's AES key (URL-safe base64: 192 bits).
XPRA_KEY_LENGTH = 32
#: What the launcher writes into its state directory once the desktop is usable.
INFO_FILE = "desktop.json"


def say(message: str) -> None:
    print(f"nbviz-desktop: {message}", flush=True)


def state_dir_for(socket_path: str) -> Path:
    """The launcher's private directory for a given web socket path (shared with the kernel)."""
    path = Path(socket_path)
    return path.with_name(path.stem + ".d")


def credential(secret: str, purpose: str, length: int) -> str:
    """The desktop's credential for ``purpose`` ("vnc-password", "xpra-key"): derived from the
    session secret (``NBVIZ_SECRET``, new for each start) when there is one, else random.

    Derived, the kernel knows it as soon as it starts the desktop, so the page that carries it
    (in the URL fragment) can load while the desktop starts; the secret cannot be recovered
    from it. ``length`` URL-safe characters (at most 43).
    """
    if not secret:
        return secrets.token_urlsafe(32)[:length]
    digest = hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:length]


def write_private(path: Path, data: str | bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
