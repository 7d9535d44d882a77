"""Small simulation-like outputs for the ParaView tests, written with nbviz's own writers."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

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


def write_surface(path: Path, nu: int = 1000, nv: int = 500) -> dict[str, Any]:
    """A bumpy torus of ``2 * nu * nv`` triangles with two point arrays, ``pressure`` and
    ``temperature``, as VTK XML PolyData (raw appended binary): the benchmarks' 1M-triangle
    surface by default."""
    u = np.linspace(0, 2 * np.pi, nu, endpoint=False)
    v = np.linspace(0, 2 * np.pi, nv, endpoint=False)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    r = 0.35 * (1 + 0.08 * np.sin(12 * uu) * np.cos(9 * vv))
    xyz = np.stack(
        [(1 + r * np.cos(vv)) * np.cos(uu), (1 + r * np.cos(vv)) * np.sin(uu), r * np.sin(vv)],
        axis=-1,
    )
    arrays = {
        "pressure": np.cos(5 * uu + vv).astype(np.float32),
        "temperature": (np.sin(3 * uu) * np.cos(2 * vv)).astype(np.float32),
    }
    i, j = np.meshgrid(np.arange(nu), np.arange(nv), indexing="ij")
    a, b = i * nv + j, (i + 1) % nu * nv + j
    c, d = (i + 1) % nu * nv + (j + 1) % nv, i * nv + (j + 1) % nv
    triangles = np.stack([np.stack([a, b, c], -1), np.stack([a, c, d], -1)], axis=2)
    connectivity = triangles.reshape(-1).astype(np.int32)
    cells = connectivity.size // 3
    blocks = [
        ("Points", "Float32", 3, xyz.reshape(-1, 3).astype(np.float32)),
        *((name, "Float32", 1, values.reshape(-1)) for name, values in arrays.items()),
        ("connectivity", "Int32", 1, connectivity),
        ("offsets", "Int32", 1, np.arange(3, 3 * cells + 1, 3, dtype=np.int32)),
    ]
    tags: dict[str, str] = {}
    payload: list[bytes] = []
    offset = 0
    for name, kind, components, values in blocks:
        raw = np.ascontiguousarray(values).tobytes()
        tags[name] = (
            f'<DataArray type="{kind}" Name="{name}" NumberOfComponents="{components}" '
            f'format="appended" offset="{offset}"/>'
        )
        payload.append(struct.pack("<Q", len(raw)) + raw)
        offset += 8 + len(raw)
    head = (
        '<?xml version="1.0"?>\n'
        '<VTKFile type="PolyData" version="1.0" byte_order="LittleEndian" header_type="UInt64">\n'
        f'<PolyData><Piece NumberOfPoints="{nu * nv}" NumberOfPolys="{cells}">\n'
        f'<PointData Scalars="pressure">{tags["pressure"]}{tags["temperature"]}</PointData>\n'
        f"<Points>{tags['Points']}</Points>\n"
        f"<Polys>{tags['connectivity']}{tags['offsets']}</Polys>\n"
        '</Piece></PolyData>\n<AppendedData encoding="raw">\n_'
    )
    with open(path, "wb") as f:
        f.write(head.encode())
        for block in payload:
            f.write(block)
        f.write(b"\n</AppendedData>\n</VTKFile>\n")
    return {"file": path.name, "cells": cells, "points": nu * nv, "bytes": path.stat().st_size}
