"""A tiny web backend for nbviz's tests: pages, a websocket echo, and a header recorder.

python backend.py --port 8000 [--host 10.0.0.5]
python backend.py --unix-socket /path/backend.sock
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import socket

import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title></head>
<body style="font-family: sans-serif; background: {color};">
<h1 id="heading">{heading}</h1>
<p id="where">{path}</p>
<p><a id="to-docs" href="docs/">docs</a> <a id="to-root" href="{root}">home</a></p>
</body></html>
"""


#: --require-secret NAME: pages and /headers answer 403 unless ?NAME= is the session's NBVIZ_SECRET.
REQUIRED_SECRET = ("", "")


class Checked(tornado.web.RequestHandler):
    def prepare(self) -> None:
        name, secret = REQUIRED_SECRET
        if secret and self.get_query_argument(name, "") != secret:
            raise tornado.web.HTTPError(403)


class Page(Checked):
    def initialize(self, heading: str, title: str, color: str) -> None:
        self.heading, self.page_title, self.color = heading, title, color

    def get(self) -> None:
        depth = self.request.path.count("/") - 1
        self.write(
            PAGE.format(
                title=self.page_title,
                heading=self.heading,
                path=self.request.path,
                color=self.color,
                root="../" * depth or "./",
            )
        )


class Headers(Checked):
    def get(self) -> None:
        self.write(
            {
                "headers": dict(self.request.headers),
                "path": self.request.path,
                "query": self.request.query,
            }
        )


class Echo(tornado.websocket.WebSocketHandler):
    def check_origin(self, origin: str) -> bool:
        return True

    def get_compression_options(self) -> dict[str, object]:
        return {}  # accept permessage-deflate when offered, as aiohttp (trame) does

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return subprotocols[-1] if subprotocols else None  # the last: a proxy picking shows

    def on_message(self, message: str | bytes) -> None:
        self.write_message(message, binary=isinstance(message, bytes))


class WsHeaders(tornado.websocket.WebSocketHandler):
    """A websocket that sends the handshake's headers and query, then closes."""

    def check_origin(self, origin: str) -> bool:
        return True

    def open(self) -> None:
        self.write_message(
            json.dumps({"headers": dict(self.request.headers), "query": self.request.query})
        )


#: Bodies repeat bytes 0..250: 251 is prime, so a lost, doubled or reordered piece of any
#: power-of-two size shows (see pattern()).
PERIOD = 251
_REPEATED = bytes(range(PERIOD)) * ((1 << 20) // PERIOD + 2)


def pattern(offset: int, size: int) -> bytes:
    """Bytes ``offset`` to ``offset + size`` (size <= 1 MiB) of every /bytes body."""
    start = offset % PERIOD
    return _REPEATED[start : start + size]


class Bytes(tornado.web.RequestHandler):
    """GET /bytes/<n>: n bytes (see pattern()), written in 1 MiB chunks (streamed, never held
    whole). /cut/<n> announces n bytes, sends half, and drops the connection."""

    async def get(self, size: str) -> None:
        total = int(size)
        cut = self.request.path.startswith("/cut/")
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Length", str(total))
        sent = 0
        while sent < (total // 2 if cut else total):
            piece = pattern(sent, min(total - sent, 1 << 20))
            self.write(piece)
            await self.flush()
            sent += len(piece)
        if cut:
            self.request.connection.stream.close()  # type: ignore[attr-defined]


class TwoFrames(tornado.web.RequestHandler):
    """A small reply sent as two separate writes (shows Nagle/delayed-ACK stalls in proxies)."""

    async def get(self) -> None:
        self.write(b"first ")
        await self.flush()
        self.write(b"second")
        await self.flush()


@tornado.web.stream_request_body
class Upload(tornado.web.RequestHandler):
    """POST /upload: the length and SHA-256 of the body, read as it streams in (not held)."""

    def prepare(self) -> None:
        self.request.connection.set_max_body_size(1 << 40)  # type: ignore[attr-defined]
        self.digest = hashlib.sha256()
        self.length = 0

    def data_received(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.length += len(chunk)

    def post(self) -> None:
        self.write({"length": self.length, "sha256": self.digest.hexdigest()})

    def on_connection_close(self) -> None:
        UPLOADS_CUT_OFF.append(self.length)


#: Bytes received by each /upload whose client went away before the end (GET /uploads-cut-off).
UPLOADS_CUT_OFF: list[int] = []


class UploadsCutOff(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"cut_off": UPLOADS_CUT_OFF})


class NotModified(tornado.web.RequestHandler):
    """A 304 that names the length of the page it does not send (as RFC 9110 allows)."""

    def get(self) -> None:
        stream = self.request.connection.detach()  # type: ignore[attr-defined]
        stream.write(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 2097152\r\nConnection: close\r\n\r\n"
        )
        # Closed only later: a proxy that waits for the announced bytes waits until then.
        asyncio.get_running_loop().call_later(30, stream.close)


class Redirect(tornado.web.RequestHandler):
    def get(self) -> None:
        self.redirect("/docs/")


class Exit(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("bye")
        self.flush()
        asyncio.get_running_loop().call_later(0.05, os._exit, 7)


def make_app(heading: str, title: str, color: str) -> tornado.web.Application:
    page = {"heading": heading, "title": title, "color": color}
    return tornado.web.Application(
        [
            (r"/ws", Echo),
            (r"/ws-headers", WsHeaders),
            (r"/headers", Headers),
            (r"/exit", Exit),
            (r"/pid", PidHandler),
            (r"/connection", Connection),
            (r"/bytes/(\d+)", Bytes),
            (r"/cut/(\d+)", Bytes),
            (r"/not-modified", NotModified),
            (r"/upload", Upload),
            (r"/uploads-cut-off", UploadsCutOff),
            (r"/twoframes", TwoFrames),
            (r"/redirect", Redirect),
            (r"/.*", Page, page),
        ],
        websocket_max_message_size=1 << 30,
    )


class Connection(tornado.web.RequestHandler):
    """Which client connection carried this request (a proxy's keep-alive reuse shows here)."""

    def get(self) -> None:
        self.write({"connection": id(self.request.connection.stream)})  # type: ignore[attr-defined]


class PidHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(json.dumps({"pid": os.getpid()}))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int)
    parser.add_argument("--unix-socket")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind --port on")
    parser.add_argument("--heading", default="Hello from the nbviz test backend")
    parser.add_argument("--title", default="nbviz test backend")
    parser.add_argument("--color", default="#ffffff")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before listening")
    parser.add_argument("--require-secret", metavar="NAME", help="see REQUIRED_SECRET")
    args = parser.parse_args()
    if args.require_secret:
        global REQUIRED_SECRET
        REQUIRED_SECRET = (args.require_secret, os.environ["NBVIZ_SECRET"])
    print(f"backend: starting (pid {os.getpid()})", flush=True)
    await asyncio.sleep(args.delay)
    server = tornado.httpserver.HTTPServer(make_app(args.heading, args.title, args.color))
    if args.unix_socket:
        server.add_socket(tornado.netutil.bind_unix_socket(args.unix_socket, mode=0o600))
        print(f"backend: listening on {args.unix_socket}", flush=True)
    if args.port is not None:
        server.add_sockets(
            tornado.netutil.bind_sockets(args.port, args.host, family=socket.AF_INET)
        )
        print(f"backend: listening on {args.host}:{args.port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
