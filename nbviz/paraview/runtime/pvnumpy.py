"""Inside pvpython: the numpy ParaView's VTK was built with, before anything imports another.

Run by pvpython with nbviz's app (``pvapp.py`` imports it first); standard library only,
nothing of nbviz.
"""

from __future__ import annotations

import os
import sys


def import_numpy_of_vtk() -> str:
    """Import the numpy that ParaView's VTK was built with, before anything else imports one.

    pvpython finds trame on the kernel's site-packages, which comes first on its path; that
    site-packages may hold a numpy VTK was not built for (numpy 2 next to Debian's VTK 9.1, built
    for Debian's numpy 1.24), and VTK's numpy_interface (the Python Calculator, the
    ProgrammableFilter) then breaks. The numpy in the directory that holds ParaView's own
    Python packages is VTK's: import it from there once; every later ``import numpy`` gets
    that module, whatever the path says. Returns where numpy came from ("" if none).
    """
    import importlib.util

    spec = importlib.util.find_spec("paraview")
    site = os.path.dirname(os.path.dirname(spec.origin)) if spec and spec.origin else ""
    if "numpy" in sys.modules or not os.path.isfile(os.path.join(site, "numpy", "__init__.py")):
        return ""  # (no numpy next to ParaView: the first on the path, as before)
    sys.path.insert(0, site)
    try:
        import numpy
    except ImportError as exc:  # a broken numpy there: the first on the path, as before
        print("nbviz-paraview: cannot import the numpy next to ParaView:", exc, flush=True)
        for name in [m for m in sys.modules if m == "numpy" or m.startswith("numpy.")]:
            del sys.modules[name]
        return ""
    finally:
        sys.path.remove(site)  # the first occurrence: the one just added
    return str(numpy.__file__)
