"""nbviz/_runtime/bypath.py: a file run by path uses plain relative imports, and the __init__
files above its own package are not run (nbviz's would load the widgets)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from nbviz._runtime import bypath

ENTRY = """
if not __package__:
    import runpy
    __package__ = runpy.run_path({bypath!r})["package"](__file__)

from . import sibling
from ..._runtime_like import helper

print(__package__, sibling.NAME, helper.NAME)
"""


def test_a_file_run_by_path_imports_its_siblings(tmp_path: Path) -> None:
    top = tmp_path / "top"
    (top / "backend" / "runtime").mkdir(parents=True)
    (top / "_runtime_like").mkdir()
    (top / "__init__.py").write_text("raise SystemExit('the package was imported')\n")
    (top / "backend" / "__init__.py").write_text("raise SystemExit('the backend was imported')\n")
    (top / "backend" / "runtime" / "__init__.py").write_text("")
    (top / "backend" / "runtime" / "sibling.py").write_text("NAME = 'sibling'\n")
    (top / "_runtime_like" / "__init__.py").write_text("")
    (top / "_runtime_like" / "helper.py").write_text("NAME = 'helper'\n")
    entry = top / "backend" / "runtime" / "entry.py"
    entry.write_text(ENTRY.format(bypath=bypath.__file__))
    done = subprocess.run(
        [sys.executable, "-S", str(entry)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["top.backend.runtime", "sibling", "helper"]
