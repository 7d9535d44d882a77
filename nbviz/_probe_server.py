"""A minimal HTTP server on a Unix socket or a port, for ``nbviz doctor``'s route checks.

python -m nbviz._probe_server (--unix-socket PATH | --port N)
"""

from __future__ import annotations

import argparse
import http.server
import os
import socketserver

BODY = b"nbviz probe: the route works\n"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def address_string(self) -> str:
        return "local"

    def log_message(self, format: str, *args: object) -> None:
        pass


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def server_bind(self) -> None:
        super().server_bind()
        os.chmod(str(self.server_address), 0o600)


def main() -> None:
    parser = argparse.ArgumentParser()
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--unix-socket")
    where.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.unix_socket:
        UnixServer(args.unix_socket, Handler).serve_forever()
    else:
        http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
