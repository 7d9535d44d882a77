"""What runs outside the kernel for ``RemoteDesktop``: the launcher and its pieces.

``launcher.py`` is the desktop's backend process, started by the kernel by path (``python
.../launcher.py``; see ``nbviz/_runtime/bypath.py`` for how its imports work there); it and its
siblings use the standard library only (and websockify, for VNC). The kernel side imports only
``shared`` and ``xserver`` from here.
"""
