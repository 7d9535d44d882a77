"""Write numpy arrays as VTK files ParaView reads: ``.vti`` image data and ``.pvd`` time series.

Pure numpy (no VTK needed in the kernel). Arrays are indexed ``[x, y, z]`` (x varies fastest
in the file, as VTK expects).
"""

from __future__ import annotations

import base64
import os
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_TYPES = {
    "float32": "Float32",
    "float64": "Float64",
    "int32": "Int32",
    "int64": "Int64",
    "uint8": "UInt8",
}


def write_vti(
    path: str | os.PathLike[str],
    arrays: Mapping[str, Any],
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    cell_arrays: Mapping[str, Any] | None = None,
) -> Path:
    """Write point arrays (all the same shape, 2-D or 3-D) as a VTK XML image file."""
    import numpy as np

    point = {name: np.asarray(a) for name, a in arrays.items()}
    if not point:
        raise ValueError("nbviz: write_vti needs at least one array")
    shape = next(iter(point.values())).shape
    if len(shape) == 2:
        shape = (*shape, 1)
    for name, a in point.items():
        if a.size != int(np.prod(shape)):
            raise ValueError(f"nbviz: array {name!r} has shape {a.shape}, expected {shape}")
    extent = f"0 {shape[0] - 1} 0 {shape[1] - 1} 0 {shape[2] - 1}"

    def data_array(name: str, a: Any, point_shape: tuple[int, ...]) -> str:
        a = np.asarray(a)
        kind = _TYPES.get(a.dtype.name)
        if kind is None:
            a = a.astype(np.float64)
            kind = "Float64"
        raw = np.ascontiguousarray(a.reshape(point_shape, order="C").ravel(order="F")).tobytes()
        blob = base64.b64encode(struct.pack("<Q", len(raw)) + raw).decode()
        return (
            f'<DataArray type="{kind}" Name="{name}" format="binary" header_type="UInt64">'
            f"{blob}</DataArray>"
        )

    cells = cell_arrays or {}
    cell_shape = tuple(max(n - 1, 1) for n in shape)
    xml = [
        '<?xml version="1.0"?>',
        '<VTKFile type="ImageData" version="1.0" byte_order="LittleEndian" header_type="UInt64">',
        f'<ImageData WholeExtent="{extent}" Origin="{" ".join(map(str, origin))}" '
        f'Spacing="{" ".join(map(str, spacing))}">',
        f'<Piece Extent="{extent}">',
        f'<PointData Scalars="{next(iter(point))}">',
        *(data_array(n, a, shape) for n, a in point.items()),
        "</PointData>",
        "<CellData>",
        *(data_array(n, a, cell_shape) for n, a in cells.items()),
        "</CellData>",
        "</Piece>",
        "</ImageData>",
        "</VTKFile>",
    ]
    out = Path(path)
    out.write_text("\n".join(xml))
    return out


def write_pvd(
    path: str | os.PathLike[str], steps: Sequence[tuple[float, str | os.PathLike[str]]]
) -> Path:
    """Write a ParaView collection: one ``(time, file)`` per step, files relative to ``path``."""
    out = Path(path)
    rows = [
        f'<DataSet timestep="{float(time)!r}" part="0" file="{os.path.relpath(f, out.parent)}"/>'
        for time, f in steps
    ]
    out.write_text(
        '<?xml version="1.0"?>\n<VTKFile type="Collection" version="0.1">\n<Collection>\n'
        + "\n".join(rows)
        + "\n</Collection>\n</VTKFile>\n"
    )
    return out
