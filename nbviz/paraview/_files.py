"""Write numpy arrays as VTK files ParaView reads: ``.vti`` image data and ``.pvd`` time series.

Pure numpy (no VTK needed in the kernel). Arrays are indexed ``[x, y, z]`` (x varies fastest
in the file, as VTK expects).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

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
    """Write point arrays (all the same shape, 2-D or 3-D) as a VTK XML image file.

    The values go in raw binary after the XML header (VTK's "appended raw" encoding), one
    z-slab at a time, so large arrays are not copied whole; ParaView's reader can then read
    just the slab each MPI rank needs (``ParaViewSession(path, ranks=N)``).
    """
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
    cell_shape = tuple(max(n - 1, 1) for n in shape)
    cells = {name: np.asarray(a) for name, a in (cell_arrays or {}).items()}
    extent = f"0 {shape[0] - 1} 0 {shape[1] - 1} 0 {shape[2] - 1}"

    blocks: list[tuple[str, Any]] = []  # (XML element, array shaped [x, y, z]) in file order
    offset = 0
    for arrays_of, block_shape in ((point, shape), (cells, cell_shape)):
        for name, a in arrays_of.items():
            kind = _TYPES.get(a.dtype.name)
            if kind is None:
                a, kind = a.astype(np.float64), "Float64"
            a = a.reshape(block_shape, order="C")
            blocks.append(
                (
                    f'<DataArray type="{kind}" Name={quoteattr(str(name))} format="appended" '
                    f'offset="{offset}"/>',
                    a,
                )
            )
            offset += 8 + a.nbytes
    header = [
        '<?xml version="1.0"?>',
        '<VTKFile type="ImageData" version="1.0" byte_order="LittleEndian" header_type="UInt64">',
        f'<ImageData WholeExtent="{extent}" Origin="{" ".join(map(str, origin))}" '
        f'Spacing="{" ".join(map(str, spacing))}">',
        f'<Piece Extent="{extent}">',
        f"<PointData Scalars={quoteattr(str(next(iter(point))))}>",
        *(element for element, _a in blocks[: len(point)]),
        "</PointData>",
        "<CellData>",
        *(element for element, _a in blocks[len(point) :]),
        "</CellData>",
        "</Piece>",
        "</ImageData>",
        '<AppendedData encoding="raw">',
        "_",
    ]
    out = Path(path)
    with open(out, "wb") as f:
        f.write("\n".join(header).encode())
        for _element, a in blocks:
            little = a.dtype.newbyteorder("<")
            f.write(struct.pack("<Q", a.nbytes))
            for k in range(a.shape[2]):  # x varies fastest in the file, then y, then z
                f.write(np.ascontiguousarray(a[:, :, k].T, dtype=little).tobytes())
        f.write(b"\n</AppendedData>\n</VTKFile>\n")
    return out


def write_pvd(
    path: str | os.PathLike[str], steps: Sequence[tuple[float, str | os.PathLike[str]]]
) -> Path:
    """Write a ParaView collection: one ``(time, file)`` per step.

    Each file is a path as usual (absolute, or relative to the working directory, as
    ``write_vti`` returns it); the collection names it relative to its own directory.
    """
    out = Path(path)
    rows = [
        f'<DataSet timestep="{float(time)!r}" part="0" '
        f"file={quoteattr(os.path.relpath(f, out.parent))}/>"
        for time, f in steps
    ]
    out.write_text(
        '<?xml version="1.0"?>\n<VTKFile type="Collection" version="0.1">\n<Collection>\n'
        + "\n".join(rows)
        + "\n</Collection>\n</VTKFile>\n",
        encoding="utf-8",
    )
    return out
