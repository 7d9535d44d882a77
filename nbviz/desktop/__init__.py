"""``RemoteDesktop``: an X11 desktop (Xpra or TigerVNC + noVNC) in a notebook cell."""

from ._desktop import Program, RemoteDesktop, Screenshot

__all__ = ["Program", "RemoteDesktop", "Screenshot"]
