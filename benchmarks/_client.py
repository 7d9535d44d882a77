"""Load generators for ``benchmarks/run.py``: a lean HTTP/1.1 client and an aiohttp websocket echo.

The HTTP client is a plain ``asyncio.Protocol`` (keep-alive, no pipelining, Content-Length and
chunked bodies counted, not stored) so that the client costs far less CPU than the servers it
measures; ``run.py`` records the client's CPU share next to every number to show that. The
websocket side uses aiohttp, whose frame parser and masking are compiled.

Every loop is bounded: a request or message count, and a time budget as a backstop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

#: Bodies up to this size are kept (to check them); larger ones are only counted.
KEEP_BODY = 64 * 1024


@dataclass(frozen=True)
class Target:
    """One way to reach the backend: a TCP port or a Unix socket, plus a URL path prefix."""

    name: str
    prefix: str  # "" for the backend itself, "/user/alice/proxy/1234" through Jupyter
    port: int | None = None
    unix_socket: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: the TCP host (another machine's address for a remote backend)
    host: str = "127.0.0.1"

    def url(self, path: str, scheme: str = "http") -> str:
        host = f"{self.host}:{self.port}" if self.port is not None else "localhost"
        return f"{scheme}://{host}{self.prefix}{path}"

    def raw_request(self, path: str) -> bytes:
        host = f"{self.host}:{self.port}" if self.port is not None else "localhost"
        lines = [f"GET {self.prefix}{path} HTTP/1.1", f"Host: {host}", "User-Agent: nbviz-bench"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass
class Response:
    status: int = 0
    nbytes: int = 0
    body: bytes = b""


_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _TRAILER = range(5)


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; ``get()`` sends a request and awaits its response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._future: asyncio.Future[Response] | None = None
        self._pending = b""
        self._state = _HEAD
        self._remaining = 0
        self._response = Response()
        self._parts: list[bytes] = []
        self._keep = False
        #: Called with (time.time(), data) for every piece of data that arrives.
        self.on_data: Callable[[float, bytes], None] | None = None

    @classmethod
    async def open(cls, target: Target) -> HttpConnection:
        loop = asyncio.get_running_loop()
        if target.unix_socket is not None:
            _, conn = await loop.create_unix_connection(cls, target.unix_socket)
        else:
            assert target.port is not None
            _, conn = await loop.create_connection(cls, target.host, target.port)
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._future is not None and not self._future.done():
            self._future.set_exception(exc or ConnectionError("connection closed mid-response"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def get(self, raw_request: bytes, keep_body: bool = False) -> Response:
        assert self.transport is not None and self._future is None
        self._future = asyncio.get_running_loop().create_future()
        self._state, self._response, self._parts, self._keep = _HEAD, Response(), [], keep_body
        self.transport.write(raw_request)
        try:
            return await self._future
        finally:
            self._future = None

    # ------------------------------------------------------------------ parsing
    def data_received(self, data: bytes) -> None:
        if self.on_data is not None:
            self.on_data(time.time(), data)
        if self._pending:
            data, self._pending = self._pending + data, b""
        pos, end = 0, len(data)
        while pos < end:
            state = self._state
            if state in (_BODY, _CHUNK_DATA):
                n = min(end - pos, self._remaining)
                if self._keep:
                    self._parts.append(data[pos : pos + n])
                self._remaining -= n
                pos += n
                if self._remaining == 0:
                    if state == _BODY:
                        self._finish()
                    else:
                        self._state = _CHUNK_SIZE
                continue
            eol = data.find(b"\r\n\r\n" if state == _HEAD else b"\r\n", pos)
            if eol < 0:
                self._pending = data[pos:]
                return
            line = data[pos:eol]
            pos = eol + (4 if state == _HEAD else 2)
            if state == _HEAD:
                self._head(line)
            elif state == _CHUNK_SIZE:
                if not line:  # the CRLF that ends the previous chunk's data
                    continue
                size = int(line.split(b";", 1)[0], 16)
                if size == 0:
                    self._state = _TRAILER
                else:
                    self._response.nbytes += size
                    self._remaining = size
                    self._state = _CHUNK_DATA
            elif not line:  # _TRAILER: the empty line ends the response
                self._finish()

    def _head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        self._response.status = int(lines[0].split(" ", 2)[1])
        length, chunked = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if chunked:
            self._state = _CHUNK_SIZE
        elif length:
            self._response.nbytes = length
            self._remaining = length
            self._state = _BODY
        else:
            self._finish()

    def _finish(self) -> None:
        self._state = _HEAD
        if self._keep:
            self._response.body = b"".join(self._parts)
        if self._future is not None and not self._future.done():
            self._future.set_result(self._response)


# ---------------------------------------------------------------------- measurements
async def _connections(target: Target, count: int, path: str, warmup: int) -> list[HttpConnection]:
    conns = [await HttpConnection.open(target) for _ in range(count)]
    request = target.raw_request(path)
    for conn in conns:
        for _ in range(warmup):
            response = await conn.get(request)
            if response.status != 200:
                raise RuntimeError(f"{target.name}: GET {path} answered {response.status}")
    return conns


async def http_rate(
    target: Target, path: str, *, clients: int, count: int, budget: float
) -> dict[str, Any]:
    """Requests per second with ``clients`` keep-alive connections, ``count`` requests in all."""
    conns = await _connections(target, clients, path, warmup=5)
    request = target.raw_request(path)
    done = 0
    failed = 0
    deadline = time.perf_counter() + budget

    async def client(conn: HttpConnection) -> None:
        nonlocal done, failed
        while done < count and time.perf_counter() < deadline:
            done += 1
            if (await conn.get(request)).status != 200:
                failed += 1

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in conns))
    elapsed = time.perf_counter() - start
    for conn in conns:
        conn.close()
    return {"value": done / elapsed, "requests": done, "failed": failed, "seconds": elapsed}


async def http_bulk(target: Target, size: int, *, count: int, budget: float) -> dict[str, Any]:
    """MB/s of ``count`` sequential ``size``-byte bodies on one keep-alive connection."""
    path = f"/bytes/{size}"
    (conn,) = await _connections(target, 1, path, warmup=1)
    request = target.raw_request(path)
    received = done = 0
    deadline = time.perf_counter() + budget
    start = time.perf_counter()
    while done < count and time.perf_counter() < deadline:
        response = await conn.get(request)
        if response.status != 200 or response.nbytes != size:
            raise RuntimeError(f"{target.name}: {path} gave {response.status}, {response.nbytes} B")
        received += response.nbytes
        done += 1
    elapsed = time.perf_counter() - start
    conn.close()
    return {"value": received / elapsed / 1e6, "bodies": done, "seconds": elapsed}


async def latency(target: Target, path: str, expect: bytes, *, count: int) -> dict[str, Any]:
    """Milliseconds from sending a request to its last byte, on one keep-alive connection."""
    (conn,) = await _connections(target, 1, path, warmup=3)
    request = target.raw_request(path)
    samples = []
    start = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        response = await conn.get(request, keep_body=True)
        samples.append((time.perf_counter() - t0) * 1e3)
        if response.body != expect:
            raise RuntimeError(f"{target.name}: {path} gave {response.body[:80]!r}")
    elapsed = time.perf_counter() - start
    conn.close()
    samples.sort()
    return {
        "value": statistics.median(samples),
        "p95": samples[max(0, round(0.95 * len(samples)) - 1)],
        "max": samples[-1],
        "requests": count,
        "seconds": elapsed,
    }


async def frame_delays(
    target: Target, *, frames: int, gap: float, streams: int, headers: dict[str, str]
) -> dict[str, Any]:
    """Milliseconds each streamed frame took from the backend's write to this client.

    ``/frames`` (benchmarks/frames_backend.py) writes ``frames`` timestamped lines ``gap``
    seconds apart; ``streams`` such replies are read on one keep-alive connection that has
    served a few requests before (as a browser's connection to a page's origin has).
    """
    target = dataclasses.replace(target, headers={**target.headers, **headers})
    path = f"/frames?n={frames}&gap={gap}"
    (conn,) = await _connections(target, 1, "/frames?n=2&gap=0.001", warmup=3)
    request = target.raw_request(path)
    delays: list[float] = []
    carry = b""

    def on_data(now: float, data: bytes) -> None:
        nonlocal carry
        *lines, carry = (carry + data).split(b"\n")
        for line in lines:
            line = line.strip()
            if len(line) == 17 and line[10:11] == b".":  # "1764111111.123456"
                delays.append((now - float(line)) * 1e3)

    start = time.perf_counter()
    for _ in range(streams):
        carry = b""
        conn.on_data = on_data
        response = await asyncio.wait_for(conn.get(request), timeout=30)
        conn.on_data = None
        if response.status != 200:
            raise RuntimeError(f"{target.name}: {path} answered {response.status}")
    elapsed = time.perf_counter() - start
    conn.close()
    if len(delays) != frames * streams:
        raise RuntimeError(f"{target.name}: {len(delays)} frames, expected {frames * streams}")
    delays.sort()
    return {
        "value": delays[max(0, round(0.95 * len(delays)) - 1)],
        "median": statistics.median(delays),
        "max": delays[-1],
        "frames": len(delays),
        "seconds": elapsed,
    }


async def ws_echo(
    target: Target, size: int, *, count: int, window: int, budget: float
) -> dict[str, Any]:
    """Echoed binary messages per second (and payload MB/s) with ``window`` in flight."""
    connector: aiohttp.BaseConnector = (
        aiohttp.UnixConnector(path=target.unix_socket)
        if target.unix_socket is not None
        else aiohttp.TCPConnector()
    )
    payload = b"m" * size
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.ws_connect(
            target.url("/ws", "ws"), headers=target.headers, max_msg_size=0, autoping=True
        ) as ws,
    ):
        for _ in range(3):  # warm up
            await ws.send_bytes(payload)
            await ws.receive_bytes()
        slots = asyncio.Semaphore(window)
        sent = received = 0
        deadline = time.perf_counter() + budget
        stop = False

        async def sender() -> None:
            nonlocal sent, stop
            while sent < count and time.perf_counter() < deadline:
                await slots.acquire()
                await ws.send_bytes(payload)
                sent += 1
            stop = True

        start = time.perf_counter()
        task = asyncio.create_task(sender())
        while not (stop and received == sent):
            message = await ws.receive_bytes(timeout=30)
            if len(message) != size:
                raise RuntimeError(f"{target.name}: echo of {len(message)} B, sent {size} B")
            received += 1
            slots.release()
        elapsed = time.perf_counter() - start
        await task
    return {
        "value": received / elapsed,
        "mb_per_s": received * size / elapsed / 1e6,
        "messages": received,
        "seconds": elapsed,
    }


def session_targets(server: Any, processes: dict[str, Any]) -> dict[str, Target]:
    """Each started ``nbviz._process.Process`` directly (``"direct <name>"``: its socket or
    address) and through nbviz's route in the Jupyter ``server`` (``"nbviz <name>"``)."""
    auth = {"Authorization": f"token {server.token}"}
    base = server.base_url.rstrip("/")
    out: dict[str, Target] = {}
    for name, proc in processes.items():
        endpoint = proc.endpoint
        # a backend behind a host gate: "direct" is through the gate, showing it the secret
        gate = {"X-Nbviz-Gate": endpoint.gate} if endpoint.gate else {}
        out[f"direct {name}"] = (
            Target(name, "", unix_socket=endpoint.unix_socket)
            if endpoint.unix_socket
            else Target(name, "", port=endpoint.port, host=endpoint.host, headers=gate)
        )
        out[f"nbviz {name}"] = Target(
            name, f"{base}/nbviz/{proc.session_id}", port=server.port, headers=auth
        )
    return out


async def load_rounds(targets: dict[str, Target], rounds: int) -> dict[str, dict[str, list[float]]]:
    """Per round, the targets taking turns: 1 KB replies with 4 keep-alive clients (req/s) and
    10 MB bodies on one connection (MB/s). Samples by load, then by target."""
    samples: dict[str, dict[str, list[float]]] = {"req_1k": {}, "body_10m": {}}
    keys = list(targets)
    for round_ in range(rounds):
        print(f"round {round_ + 1}/{rounds} loads", flush=True)
        shift = round_ % len(keys)
        for key in keys[shift:] + keys[:shift]:
            rate = await http_rate(targets[key], "/bytes/1024", clients=4, count=2000, budget=2.0)
            bulk = await http_bulk(targets[key], 10 * 10**6, count=30, budget=2.0)
            samples["req_1k"].setdefault(key, []).append(rate["value"])
            samples["body_10m"].setdefault(key, []).append(bulk["value"])
    return samples
