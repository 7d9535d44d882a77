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


def heat_grid(directory: Path, n: int = 24, t: float = 0.0) -> Path:
    """The first step of ``heat_series`` as an unstructured grid of voxels in one ``.vtu``
    piece (a file ParaView's readers cannot split over MPI ranks)."""
    directory.mkdir(parents=True, exist_ok=True)
    axis = np.linspace(-1.0, 1.0, n)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    temperature = np.exp(-(x**2 + y**2 + z**2) / (0.05 + 0.5 * t))
    pressure = x * (1 - t) + y * t

    def flat(a: np.ndarray) -> str:  # x varies fastest, as in the .vti files
        return " ".join(f"{v:.7g}" for v in a.ravel(order="F"))

    i, j, k = np.meshgrid(*(np.arange(n - 1),) * 3, indexing="ij")
    first = (i + n * j + n * n * k).ravel(order="F")
    corners = [dx + n * dy + n * n * dz for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)]
    connectivity = np.stack([first + c for c in corners], axis=1)  # VTK_VOXEL corner order
    cells = len(first)
    points = np.stack([x.ravel(order="F"), y.ravel(order="F"), z.ravel(order="F")], axis=1)
    path = directory / "heat.vtu"
    path.write_text(
        '<?xml version="1.0"?>\n<VTKFile type="UnstructuredGrid" version="1.0">\n'
        f'<UnstructuredGrid><Piece NumberOfPoints="{n**3}" NumberOfCells="{cells}">\n'
        '<PointData Scalars="temperature">'
        f'<DataArray type="Float32" Name="temperature" format="ascii">{flat(temperature)}'
        "</DataArray>"
        f'<DataArray type="Float32" Name="pressure" format="ascii">{flat(pressure)}</DataArray>'
        "</PointData>\n<Points>"
        '<DataArray type="Float32" NumberOfComponents="3" format="ascii">'
        f"{' '.join(f'{v:.7g}' for v in points.ravel())}</DataArray></Points>\n<Cells>"
        '<DataArray type="Int64" Name="connectivity" format="ascii">'
        f"{' '.join(map(str, connectivity.ravel()))}</DataArray>"
        '<DataArray type="Int64" Name="offsets" format="ascii">'
        f"{' '.join(map(str, range(8, 8 * cells + 1, 8)))}</DataArray>"
        '<DataArray type="UInt8" Name="types" format="ascii">'
        f"{' '.join(['11'] * cells)}</DataArray>"
        "</Cells></Piece></UnstructuredGrid>\n</VTKFile>\n"
    )
    return path
