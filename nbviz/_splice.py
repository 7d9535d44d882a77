"""Byte relays between two sockets inside the kernel (Linux ``splice(2)``), for nbviz's route.

A relay in Python reads every byte into the interpreter and writes it out again: the Jupyter
server's one thread then caps what a large download or a websocket can carry. ``splice`` moves
the bytes from one socket to the other through a pipe without copying them into the process;
the event loop only learns when a socket is ready. Used for bodies with a known length and for
websockets after their handshake (``serverext``); everything else keeps the ordinary relay.

Every file descriptor given here must be non-blocking and owned by the caller for the duration
(the route passes duplicates, so the event-loop registrations of tornado and aiohttp on the
original descriptors are not disturbed).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
from collections.abc import Callable

#: Whether this platform can splice (Linux, Python >= 3.10).
AVAILABLE = hasattr(os, "splice") and hasattr(fcntl, "F_SETPIPE_SZ")
#: Bytes a relay's pipe holds (the kernel may grant less: /proc/sys/fs/pipe-max-size and the
#: per-user pipe limits). Larger pipes mean fewer wake-ups per megabyte.
PIPE_BYTES = 1 << 20
_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)


class Pipe:
    """A non-blocking pipe that splices pass through (closed by ``close`` or ``with``)."""

    def __init__(self, size: int = PIPE_BYTES) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            self.size = fcntl.fcntl(self.write_fd, fcntl.F_SETPIPE_SZ, size)
        except OSError:  # over the per-user limit: the default size still works
            self.size = fcntl.fcntl(self.write_fd, fcntl.F_GETPIPE_SZ)

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Pipe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _ready(fd: int, write: bool) -> None:
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def wake() -> None:
        if not future.done():
            future.set_result(None)

    if write:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await future
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def copy(
    src: int,
    dst: int,
    pipe: Pipe,
    count: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Move ``count`` bytes (or everything until end of file) from ``src`` to ``dst``.

    Returns the bytes moved; fewer than ``count`` when ``src`` ended early.
    ``on_progress(moved)`` is called after each burst (for activity tracking).
    Errors of either socket (reset, broken pipe) propagate.
    """
    moved = in_pipe = 0
    ended = False
    while count is None or moved < count:
        progressed = False
        wanted = pipe.size - in_pipe
        if count is not None:
            wanted = min(wanted, count - moved - in_pipe)
        if not ended and wanted > 0:
            try:
                n = os.splice(src, pipe.write_fd, wanted, flags=_FLAGS)
            except BlockingIOError:
                pass
            else:
                ended = n == 0
                in_pipe += n
                progressed = n > 0
        if in_pipe:
            try:
                n = os.splice(pipe.read_fd, dst, in_pipe, flags=_FLAGS)
            except BlockingIOError:
                pass
            else:
                in_pipe -= n
                moved += n
                progressed = True
                if on_progress is not None:
                    on_progress(moved)
        if ended and not in_pipe:
            break
        if not progressed:
            # Bytes waiting in the pipe: the receiver is full. Otherwise the sender is empty.
            await _ready(dst if in_pipe else src, write=bool(in_pipe))
    return moved


async def send_all(fd: int, data: bytes) -> None:
    """Write ``data`` to the non-blocking socket ``fd``."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            await _ready(fd, write=True)
        else:
            view = view[n:]


async def tunnel(
    a: socket.socket,
    b: socket.socket,
    on_progress: Callable[[int], None] | None = None,
) -> None:
    """Relay both ways between the connected sockets ``a`` and ``b`` until both directions end.

    When one side finishes sending, the other side's sending half is shut down (as TCP
    proxies do); an error on either side (reset, broken pipe) ends both directions. Closes
    neither socket.
    """

    async def one_way(src: socket.socket, dst: socket.socket) -> None:
        with Pipe() as pipe:
            await copy(src.fileno(), dst.fileno(), pipe, on_progress=on_progress)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    tasks = [asyncio.ensure_future(one_way(a, b)), asyncio.ensure_future(one_way(b, a))]
    try:
        for finished in asyncio.as_completed(tasks):
            try:
                await finished
            except OSError:
                break
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
