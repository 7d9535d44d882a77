"""A backend that streams small frames some milliseconds apart (for ``benchmarks/run.py``).

GET /frames?n=20&gap=0.005 answers with ``n`` lines, one every ``gap`` seconds, each the
``time.time()`` at which it was written, so a client on the same machine sees how long every
frame was held on its way. Like most app servers (aiohttp, hence trame/wslink) it sends with
TCP_NODELAY: what delays a frame is the proxy in between, not this backend.

    python frames_backend.py --port P
    python frames_backend.py --unix-socket S
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from aiohttp import web


async def frames(request: web.Request) -> web.StreamResponse:
    count = min(int(request.query.get("n", "20")), 1000)
    gap = min(float(request.query.get("gap", "0.005")), 1.0)
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    for _ in range(count):
        await response.write(f"{time.time():.6f}\n".encode())
        await asyncio.sleep(gap)
    await response.write_eof()
    return response


async def index(request: web.Request) -> web.Response:
    return web.Response(text="frames backend")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int)
    parser.add_argument("--unix-socket")
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/frames", frames)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    if args.unix_socket:
        await web.UnixSite(runner, args.unix_socket).start()
        os.chmod(args.unix_socket, 0o600)
    if args.port is not None:
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
