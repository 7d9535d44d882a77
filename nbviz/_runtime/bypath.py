"""Plain relative imports in a file that the kernel runs by path (standard library only).

A backend's ``runtime/`` folder runs in another interpreter, started as ``python <file>``: the
nbviz package is not imported there (its ``__init__`` files load the widgets, which would slow
every start, and pvpython has packages of its own). So that such a file and its siblings can
still import each other and ``nbviz/_runtime`` as usual (``from . import pages``, ``from ...
_runtime import supervise``), the file's first lines make its package importable without
running the ``__init__`` files above it::

    if not __package__:  # run by path: see nbviz/_runtime/bypath.py
        import runpy
        __package__ = runpy.run_path(f"{__file__}/../../../_runtime/bypath.py")["package"](__file__)

Imported as a module (``nbviz.desktop.runtime.launcher``, by the kernel or the tests) a file
skips that and nothing here runs.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path


def package(file: str) -> str:
    """The dotted name of the package holding ``file`` (e.g. ``nbviz.desktop.runtime``), with
    each package above it registered bare: a module object whose ``__path__`` is its folder,
    its ``__init__`` not run. A package that is already imported stays as it is. The
    package holding ``file`` itself is then imported as usual (its ``__init__`` runs)."""
    here = Path(file).resolve().parent
    parts: list[Path] = []
    folder = here
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder)
        folder = folder.parent
    names = [p.name for p in parts]
    for depth, path in enumerate(parts[:-1], start=1):
        name = ".".join(names[:depth])
        if name not in sys.modules:
            bare = types.ModuleType(name, f"{name}, registered bare by nbviz/_runtime/bypath.py")
            bare.__path__ = [str(path)]
            sys.modules[name] = bare
    return ".".join(names)
