"""Small simulation-like outputs for the ParaView tests, written with nbviz's own writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nbviz.paraview import write_pvd, write_vti


def heat_series(directory: Path, n: int = 24, steps: int = 4) -> Path:
    """A cube with a hot blob that spreads (``temperature``) and a linear ``pressure`` that
    turns from the x to the y direction over ``steps`` time steps; returns the .pvd file."""
    directory.mkdir(parents=True, exist_ok=True)
    axis = np.linspace(-1.0, 1.0, n)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    files = []
    for i, t in enumerate(np.linspace(0.0, 1.0, steps)):
        temperature = np.exp(-(x**2 + y**2 + z**2) / (0.05 + 0.5 * t)).astype(np.float32)
        pressure = x * (1 - t) + y * t
        files.append(
            (
                float(t),
                write_vti(
                    directory / f"step{i}.vti",
                    {
                        "temperature": temperature,
                        "pressure": pressure,
                    },
                    spacing=(2 / (n - 1),) * 3,
                    origin=(-1, -1, -1),
                ),
            )
        )
    return write_pvd(directory / "run.pvd", files)
