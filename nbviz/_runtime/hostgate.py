"""A gate on a host's network in front of a backend, for a Jupyter server on another host.

    python -S hostgate.py --listen ADDRESS:PORT (--socket PATH | [--broker PATH] --port N)
                          [--dir DIR] -- COMMAND...

When the backend runs on another host than the Jupyter server (the kernel runs on a compute
node, or a Slurm job landed on another node), the server's route cannot reach a Unix socket or
127.0.0.1 there. The gate listens on ``ADDRESS:PORT`` (the host's address that the server
reaches) and admits a connection only when the first request on it carries the session's
secret (``NBVIZ_SECRET`` in the environment) in the ``X-Nbviz-Gate`` header: nbviz's server
extension adds it to every request it relays, so the browser still passes Jupyter's auth first.
The header is taken out of that request; the connection is then relayed, byte for byte, to the
backend: its Unix socket ``PATH`` (which the gate's host alone can reach); with ``--port``,
``127.0.0.1:N`` of the gate's host; with ``--broker`` and ``--port``, ``127.0.0.1:N`` in the
app's private network namespace (a socket made there by its broker, see ``netns.py``). Any
other client, of any user, on any host, gets ``403`` and the connection closed, without
reaching the backend.

With ``--dir DIR`` the gate first creates ``DIR`` (0700, in a 0700 parent of this user's) for
the backend's sockets on this host, and removes it when the backend ends.

Like ``netns.py`` (whose byte pumps it uses), the gate then *becomes* the program (exec): the
program keeps the pid nbviz started, exits with its own status and gets signals directly. The
relay runs in a child made just before, which ends with the program (a parent-death signal).

Standard library only: run by path, never imported by the kernel (``nbviz._transport`` runs it).
"""

from __future__ import annotations

if not __package__:  # run by path: see nbviz/_runtime/bypath.py
    import runpy

    __package__ = runpy.run_path(f"{__file__}/../bypath.py")["package"](__file__)

import ctypes
import hmac
import os
import shutil
import signal
import socket
import stat
import sys
import threading
from typing import NoReturn

from .netns import PR_SET_PDEATHSIG, connect_held, connect_loopback, end_because, from_broker, pump

#: Where the gate connects: a Unix socket's path, a port of 127.0.0.1, or (a private network's
#: broker, a port there): a socket made in the namespace, connected to its 127.0.0.1 (the app
#: directly, with no second relay between).
Target = str | int | tuple[str, int]

#: The request header that carries the session's secret (lower case, as compared).
HEADER = b"x-nbviz-gate"
#: The longest request head read before judging it, and how long a client may take to send it.
HEAD_LIMIT = 64 * 1024
HEAD_SECONDS = 10.0


def answer(status: str, text: str) -> bytes:
    """A whole HTTP response that ends the connection."""
    body = f"nbviz: {text}\n".encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


REFUSED = answer("403 Forbidden", "this port is a session's gate; only its Jupyter server passes")
NOT_YET = answer("502 Bad Gateway", "the backend does not answer (yet)")


def read_head(client: socket.socket) -> bytes | None:
    """The bytes up to the end of the first request's head (and any that came with them), or
    None when the client sends no complete head in time."""
    data = b""
    client.settimeout(HEAD_SECONDS)
    try:
        while b"\r\n\r\n" not in data:
            if len(data) > HEAD_LIMIT:
                return None
            chunk = client.recv(65536)
            if not chunk:
                return None
            data += chunk
    except OSError:
        return None
    client.settimeout(None)
    return data


def admit(data: bytes, secret: bytes) -> bytes | None:
    """``data`` without the gate's header when that header carries ``secret``, else None."""
    head, separator, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    kept, admitted = [lines[0]], False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == HEADER:
            admitted = hmac.compare_digest(value.strip(), secret) or admitted
        else:
            kept.append(line)
    return b"\r\n".join(kept) + separator + rest if admitted else None


def connect_once(target: Target) -> socket.socket:
    """A connection to the backend at ``target`` (OSError when it does not listen)."""
    if isinstance(target, int):
        return connect_loopback(target)
    address: tuple[str, int] | str
    if isinstance(target, tuple):
        sock, address = from_broker(target[0]), ("127.0.0.1", target[1])
    else:
        sock, address = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), target
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        raise
    if sock.family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def relay(client: socket.socket, target: Target, secret: bytes) -> None:
    """One connection: admitted (then relayed to the backend) or refused."""
    with client:
        data = read_head(client)
        if data is None:
            return
        admitted = admit(data, secret)
        if admitted is None:
            try:
                client.sendall(REFUSED)
            except OSError:
                pass
            return
        backend = connect_held(lambda: connect_once(target))  # held while it starts
        if backend is None:
            try:
                client.sendall(NOT_YET)
            except OSError:
                pass
            return
        with backend:
            try:
                backend.sendall(admitted)
            except OSError:
                return
            upstream = threading.Thread(target=pump, args=(client, backend), daemon=True)
            upstream.start()
            pump(backend, client)
            upstream.join()


def serve(listener: socket.socket, target: Target, secret: bytes) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=relay, args=(client, target, secret), daemon=True).start()


def make_private_dir(path: str) -> None:
    """``path`` as a new 0700 directory, in a parent of this user's (made 0700). An existing
    ``path`` is an error: never reuse what someone else may have made."""
    parent = os.path.dirname(path.rstrip("/"))
    os.makedirs(parent, mode=0o700, exist_ok=True)
    info = os.lstat(parent)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        end_because(f"nbviz: {parent} is not a directory of this user; remove it")
    if info.st_mode & 0o077:
        os.chmod(parent, 0o700)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        end_because(f"nbviz: {path} already exists on {socket.gethostname()}")


def listen_tcp(address: str, port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((address, port))
    except OSError as exc:
        end_because(
            f"nbviz: the gate cannot listen on {address}:{port} on {socket.gethostname()} "
            f"({exc.strerror or exc})"
        )
    listener.listen(128)
    return listener


USAGE = (
    "usage: hostgate.py --listen ADDRESS:PORT (--socket PATH | [--broker PATH] --port N) "
    "[--dir DIR] -- PROGRAM ARGS..."
)


def parse(argv: list[str]) -> dict[str, str | list[str]]:
    """The options and the command (no argparse, as in netns.py: it starts with every start)."""
    options: dict[str, str | list[str]] = {}
    rest = list(argv)
    while rest and rest[0] != "--":
        name = rest.pop(0)
        if name in ("--listen", "--socket", "--port", "--broker", "--dir") and rest:
            options[name[2:]] = rest.pop(0)
        else:
            sys.exit(f"nbviz: hostgate.py: unknown argument {name!r}\n{USAGE}")
    options["command"] = rest[1:]
    return options


def main() -> None:
    options = parse(sys.argv[1:])
    command, where, directory = options["command"], options.get("listen"), options.get("dir")
    path, port = options.get("socket"), options.get("port")
    if not (isinstance(command, list) and command and isinstance(where, str)):
        sys.exit(USAGE)
    target: Target
    broker = options.get("broker")
    if isinstance(path, str):
        target = path
    elif isinstance(port, str) and port.isdigit():
        target = (broker, int(port)) if isinstance(broker, str) else int(port)
    else:
        sys.exit(USAGE)
    secret = os.environ.get("NBVIZ_SECRET", "").encode()
    if not secret:
        end_because("nbviz: the gate was started without the session's secret (NBVIZ_SECRET)")
    address, _, listen_port = where.rpartition(":")
    if isinstance(directory, str):
        make_private_dir(directory)
    listener = listen_tcp(address, int(listen_port))
    app = os.getpid()
    if os.fork() == 0:
        here = directory if isinstance(directory, str) else ""
        relay_forever(listener, target, secret, app, here)
    listener.close()
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        end_because(f"nbviz: could not start {command[0]}: {exc.strerror or exc}")


def relay_forever(
    listener: socket.socket, target: Target, secret: bytes, app: int, directory: str
) -> NoReturn:
    """The gate's process: serve the port as long as the app lives, then remove ``directory``."""

    def end(_number: int, _frame: object) -> None:
        if directory:
            shutil.rmtree(directory, ignore_errors=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, end)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != app:  # the app ended before the line above
        end(0, None)
    for number in (signal.SIGINT, signal.SIGHUP):  # the app's to handle, not ours
        signal.signal(number, signal.SIG_IGN)
    threading.Thread(target=serve, args=(listener, target, secret), daemon=True).start()
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
