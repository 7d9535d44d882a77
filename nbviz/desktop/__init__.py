"""``RemoteDesktop``: an X11 desktop (Xpra or TigerVNC + noVNC) in a notebook cell.

Kernel side: ``_spec.py`` (arguments to the launcher's command and Spec; pure),
``_widget.py`` (``RemoteDesktop``: traits and API), ``_display.py`` (X tools on the display,
launched programs). Other interpreter: ``runtime/`` (the launcher, run by path; standard
library only). Browser: ``web/`` (nbviz's additions to the clients' pages).
"""

from .._screenshot import Screenshot
from ._display import Program
from ._widget import RemoteDesktop

__all__ = ["Program", "RemoteDesktop", "Screenshot"]
