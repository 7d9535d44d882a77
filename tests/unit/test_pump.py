"""nbviz.server.pump: byte pumps between real sockets (socket pairs), without Jupyter."""

from __future__ import annotations

import asyncio
import os
import socket

from nbviz.server import pump as _pump


def pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


async def read_all(sock: socket.socket, limit: int | None = None) -> bytes:
    loop = asyncio.get_running_loop()
    parts = []
    got = 0
    while limit is None or got < limit:
        data = await loop.sock_recv(sock, 1 << 16)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def test_copy_moves_exactly_count_bytes_through_a_slow_reader() -> None:
    async def main() -> None:
        src_in, src = pair()
        dst, dst_out = pair()
        data = os.urandom(3 << 20)
        extra = b"not part of the body"
        loop = asyncio.get_running_loop()
        writer = asyncio.ensure_future(loop.sock_sendall(src_in, data + extra))
        progress: list[int] = []
        copier = asyncio.ensure_future(
            _pump.copy(src.fileno(), dst.fileno(), count=len(data), on_progress=progress.append)
        )
        await asyncio.sleep(0.05)  # the receiver takes nothing yet: the pump must wait
        assert not copier.done()
        received = await read_all(dst_out, len(data))
        assert await copier == len(data)
        assert received == data
        assert progress and progress[-1] == len(data)
        await writer
        assert await loop.sock_recv(src, 100) == extra  # left for whoever reads next
        for s in (src_in, src, dst, dst_out):
            s.close()

    asyncio.run(main())


def test_copy_stops_at_end_of_file_and_reports_a_short_count() -> None:
    async def main() -> None:
        src_in, src = pair()
        dst, dst_out = pair()
        src_in.sendall(b"half")
        src_in.close()
        assert await _pump.copy(src.fileno(), dst.fileno(), count=10) == 4
        assert dst_out.recv(10) == b"half"
        for s in (src, dst, dst_out):
            s.close()

    asyncio.run(main())


def test_tunnel_relays_both_ways_and_passes_on_the_end() -> None:
    async def main() -> None:
        browser, a = pair()
        b, backend = pair()
        loop = asyncio.get_running_loop()
        tunnel = asyncio.ensure_future(_pump.tunnel(a, b))
        up, down = os.urandom(1 << 20), os.urandom(700_000)
        _, _, got_up, got_down = await asyncio.gather(
            loop.sock_sendall(browser, up),
            loop.sock_sendall(backend, down),
            read_all(backend, len(up)),
            read_all(browser, len(down)),
        )
        assert (got_up, got_down) == (up, down)
        backend.shutdown(socket.SHUT_WR)  # the backend ends: the browser sees the end
        assert await read_all(browser) == b""
        browser.close()
        await asyncio.wait_for(tunnel, 5)
        for s in (a, b, backend):
            s.close()

    asyncio.run(main())


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        a = socket.create_connection(server.getsockname())
        b, _ = server.accept()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def test_tunnel_ends_both_ways_when_one_side_resets() -> None:
    async def main() -> None:
        browser, a = tcp_pair()
        b, backend = pair()
        tunnel = asyncio.ensure_future(_pump.tunnel(a, b))
        await asyncio.sleep(0.01)
        browser.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        browser.close()
        await asyncio.wait_for(tunnel, 5)
        for s in (a, b, backend):
            s.close()

    asyncio.run(main())
