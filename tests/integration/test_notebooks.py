"""The tutorials run top to bottom in a real kernel (as `jupyter execute` would)."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.jupyter
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_tutorial_runs(
    notebook: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    monkeypatch.setenv("NBVIZ_TUTORIAL_VOLUME", "64")  # 07-large-data: 64³, not 512³
    if "slurm" in notebook.stem:  # 09-slurm: a real one-node cluster to submit to
        for key, value in request.getfixturevalue("slurm").env.items():
            monkeypatch.setenv(key, value)
    shutil.copy(notebook, tmp_path)
    nb = nbformat.read(tmp_path / notebook.name, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    errors = [
        output
        for cell in nb.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors, errors
    widgets = [
        output
        for cell in nb.cells
        for output in cell.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in output.get("data", {})
    ]
    assert widgets, "the tutorial shows no widget"


def test_there_are_tutorials() -> None:
    assert [p.name for p in NOTEBOOKS][:1] == ["01-webapp.ipynb"]
