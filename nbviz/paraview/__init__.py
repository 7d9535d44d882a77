"""``ParaViewSession``: a live ParaView view of simulation output in a notebook cell.

Kernel side: ``_spec.py`` (arguments to the launcher's command and Spec; pure), ``_widget.py``
(``ParaViewSession``: traits and API), ``_filters.py`` (``Filter``, the handle of a filter in
the pipeline), ``_checks.py`` (the data, arguments and programs checked before pvpython starts;
its startup errors), ``_files.py`` (VTK writers). Other interpreters: ``runtime/`` (the
launcher, run by path, standard library only: a private Xvfb and ParaView's ``pvpython``
running nbviz's trame app, which the kernel drives over a control channel, a Unix socket; the
browser shows trame's remote view through nbviz's route).
"""

from .._screenshot import Screenshot
from ._checks import DataError
from ._checks import _vtk_values as _vtk_values
from ._checks import find_pvpython as find_pvpython
from ._checks import resolve_data as resolve_data
from ._checks import trame_site as trame_site
from ._files import write_pvd, write_vti
from ._filters import Filter
from ._widget import ParaViewSession

__all__ = ["DataError", "Filter", "ParaViewSession", "Screenshot", "write_pvd", "write_vti"]
