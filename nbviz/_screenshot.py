"""A PNG picture taken on the server side (a ParaView view, an X screen)."""

from __future__ import annotations

import os
from pathlib import Path


class Screenshot:
    """A PNG image; shows as the picture in a notebook, ``.data`` has the bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def _repr_png_(self) -> bytes:
        return self.data

    def save(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_bytes(self.data)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels, read from the PNG header."""
        return int.from_bytes(self.data[16:20], "big"), int.from_bytes(self.data[20:24], "big")

    def __repr__(self) -> str:
        width, height = self.size
        return f"<Screenshot {width}x{height} PNG, {len(self.data)} bytes>"
