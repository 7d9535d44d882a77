"""The documentation builds without a warning (Sphinx + MyST, API reference from docstrings)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"


def test_docs_build_without_warnings(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            str(DOCS),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    api = (tmp_path / "api.html").read_text()
    for name in ("WebApp", "ParaViewSession", "RemoteDesktop", "write_vti", "NbvizError"):
        assert name in api
    assert "Block until the backend answers" in api  # docstrings made it in


def test_the_preset_example_of_development_md_runs(tmp_path: Path) -> None:
    """docs/development.md shows a new preset in about 15 lines: that very block registers a
    preset that starts, serves a folder and stops."""
    import urllib.request
    import warnings

    from nbviz import NbvizWarning, apps

    text = (DOCS / "development.md").read_text()
    block = text.split("<!-- preset example: run by tests/integration/test_docs.py -->", 1)[1]
    code = block.split("```python\n", 1)[1].split("```", 1)[0]
    assert 10 <= len(code.splitlines()) <= 20, "the example is no longer about 15 lines"
    exec(compile(code, "docs/development.md", "exec"), {})
    (tmp_path / "hello.txt").write_text("hello from a preset")
    with warnings.catch_warnings():  # no Jupyter server behind this test: shown directly
        warnings.simplefilter("ignore", NbvizWarning)
        app = apps.launch("files", folder=str(tmp_path))
    try:
        app.wait_ready(20)
        url = app.url.rstrip("/") + "/hello.txt"
        assert urllib.request.urlopen(url, timeout=5).read() == b"hello from a preset"
    finally:
        app.stop()
    assert app.status == "stopped"
