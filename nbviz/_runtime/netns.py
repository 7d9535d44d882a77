"""Run an app that listens on TCP in a network namespace of its own, reached by a Unix socket.

    python -S netns.py --socket PATH [--broker PATH] --port N -- PROGRAM ARGS...
    python -S netns.py --check

The runner moves itself into a new network namespace that has nothing but a loopback device
(root does so directly; another user inside a new user namespace that maps their own uid and
gid to themselves, so programs keep running as that user). There ``127.0.0.1:N`` belongs to the
session alone: no other process on the host, of any user, can connect to it. The runner then
listens on ``PATH`` (a Unix socket, 0600, in the session's 0700 directory: Unix sockets are
files and work across network namespaces), starts the program, and relays every connection
made to the socket to ``127.0.0.1:N`` inside the namespace.

With ``--broker PATH`` (another 0600 Unix socket) it also hands out sockets of the namespace:
a client that connects there and sends ``4`` (or ``6``) gets a new, unconnected TCP socket
(IPv4 or IPv6) made inside the namespace, passed as a file descriptor (SCM_RIGHTS). A socket
belongs to the network namespace it was made in: the client then connects it to
``127.0.0.1:N`` itself and talks to the app directly, with no relay in between (nbviz's server
extension does this; other clients, such as the kernel's readiness probe, use the relay).

The runner then *becomes* the program (exec): the program keeps the pid nbviz started, exits
with its own status and gets signals directly. The relay (and the broker) run in a child made
just before, which ends with the program (a parent-death signal).
``--check`` exits 0 when this machine lets this user make such a namespace, else 1 with the
reason on stderr.

Standard library only: run by path, never imported by the kernel (``nbviz._transport`` runs it).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import NoReturn

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
#: Bytes moved per splice (or recv) call, and the pipe's size between the two splices.
CHUNK = 256 * 1024
F_SETPIPE_SZ = 1031
#: Seconds a connection waits for an app that does not listen yet (below the kernel's 2 s
#: probe timeout), and between two tries meanwhile.
HOLD, RETRY = 1.0, 0.005
#: prctl(2): a signal for this process when its parent ends.
PR_SET_PDEATHSIG = 1


def enter_private_network() -> None:
    """Move this process into a new network namespace with only ``lo`` (up).

    Raises OSError when the kernel does not allow it (user namespaces disabled or limited).
    A namespace made but not set up completely ends the process: better no session than a
    session on a broken network.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNET if uid == 0 else CLONE_NEWUSER | CLONE_NEWNET
    if libc.unshare(flags) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"unshare: {os.strerror(error)}")
    try:
        if flags & CLONE_NEWUSER:
            maps = (
                ("setgroups", "deny"),
                ("uid_map", f"{uid} {uid} 1"),
                ("gid_map", f"{gid} {gid} 1"),
            )
            for name, text in maps:
                with open(f"/proc/self/{name}", "w") as file:
                    file.write(text)
        layout = "16sH14x"  # struct ifreq: the interface name, then its flags
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            current = fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack(layout, b"lo", 0))
            up = struct.unpack(layout, current)[1] | IFF_UP
            fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack(layout, b"lo", up))
    except OSError as exc:
        end_because(f"nbviz: could not set up the private network namespace: {exc}")


def connect_inside(port: int, hold: float = HOLD) -> socket.socket | None:
    """A connection to the app on 127.0.0.1 (where nbviz's route connects too: an app that
    listens on ::1 only gets the kernel's advice to listen on 127.0.0.1, as on the host),
    held while the app does not listen yet (:func:`connect_held`)."""
    return connect_held(lambda: connect_loopback(port), hold)


def connect_loopback(port: int) -> socket.socket:
    """A connection to 127.0.0.1:``port`` without Nagle's delay (OSError if nothing listens)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def connect_held(connect: Callable[[], socket.socket], hold: float = HOLD) -> socket.socket | None:
    """``connect()``'s connection, or None. While it fails (the app does not listen yet), the
    client is held and the app tried again every few milliseconds, for up to ``hold`` seconds:
    a request that comes early (the kernel's readiness probe, a page loaded while the app
    starts) is answered as soon as the app listens, instead of failing and waiting for the next
    try."""
    deadline = time.monotonic() + hold
    while True:
        try:
            return connect()
        except OSError:
            if time.monotonic() >= deadline:
                return None
            time.sleep(RETRY)


def pump(source: socket.socket, sink: socket.socket) -> None:
    """Move bytes from ``source`` to ``sink`` until ``source`` ends; then end ``sink``'s
    writing side (a half-close, as HTTP clients may do)."""
    try:
        pump_splice(source, sink)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS):
            return finish(sink)
        pump_copy(source, sink)
    finish(sink)


def pump_splice(source: socket.socket, sink: socket.socket) -> None:
    """Kernel to kernel, through a pipe: the bytes never enter this process."""
    read_end, write_end = os.pipe()
    try:
        fcntl.fcntl(write_end, F_SETPIPE_SZ, CHUNK)
        while True:
            moved = os.splice(source.fileno(), write_end, CHUNK)
            if moved == 0:
                return
            while moved:
                moved -= os.splice(read_end, sink.fileno(), moved)
    finally:
        os.close(read_end)
        os.close(write_end)


def pump_copy(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
    except OSError:
        pass


def finish(sink: socket.socket) -> None:
    try:
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def relay(client: socket.socket, port: int) -> None:
    """One connection: the socket's client on one side, the app on the other."""
    with client:
        app = connect_inside(port)
        if app is None:  # not listening (yet): the client sees the connection end
            return
        with app:
            upstream = threading.Thread(target=pump, args=(client, app), daemon=True)
            upstream.start()
            pump(app, client)
            upstream.join()


def serve(listener: socket.socket, port: int) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=relay, args=(client, port), daemon=True).start()


def hand_out(broker: socket.socket) -> None:
    """Answer each broker client with one fresh socket of this namespace."""
    while True:
        try:
            client, _ = broker.accept()
        except OSError:
            return
        with client:
            try:
                client.settimeout(2.0)
                family = socket.AF_INET6 if client.recv(1) == b"6" else socket.AF_INET
                with socket.socket(family, socket.SOCK_STREAM) as fresh:
                    socket.send_fds(client, [b"s"], [fresh.fileno()])
            except OSError:
                continue


def from_broker(broker: str, family: int = socket.AF_INET, timeout: float = 2.0) -> socket.socket:
    """A new, unconnected TCP socket of ``family`` made in the namespace, from its broker (the
    client's end of :func:`hand_out`). Raises OSError when the broker is not there (yet) or
    hands out none; ``timeout`` bounds a hung one."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(broker)
        client.sendall(b"6" if family == socket.AF_INET6 else b"4")
        _data, fds, _flags, _address = socket.recv_fds(client, 1, 1)
    if not fds:
        raise OSError(f"nbviz: {broker} handed out no socket")
    return socket.socket(fileno=fds[0])


def listen(path: str) -> socket.socket:
    """The session's Unix socket, 0600 from the start (no moment when others may connect)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    listener.listen(128)
    return listener


def end_because(reason: str) -> NoReturn:
    """Exit 1 with the agreed last line (``nbviz-exit: ...``, see ``nbviz._process``): nbviz
    makes ``reason`` the first line of the error."""
    print(f"nbviz-exit: {reason}", file=sys.stderr, flush=True)
    sys.exit(1)


USAGE = (
    "usage: netns.py --check | netns.py --socket PATH [--broker PATH] --port N -- PROGRAM ARGS..."
)


def parse(argv: list[str]) -> dict[str, str | list[str]]:
    """The options and the command (no argparse: the runner starts with every start of an app,
    and argparse alone takes longer to import than the rest of the runner)."""
    options: dict[str, str | list[str]] = {}
    rest = list(argv)
    while rest and rest[0] != "--":
        name = rest.pop(0)
        if name == "--check":
            options["check"] = "yes"
        elif name in ("--socket", "--broker", "--port") and rest:
            options[name[2:]] = rest.pop(0)
        else:
            sys.exit(f"nbviz: netns.py: unknown argument {name!r}\n{USAGE}")
    options["command"] = rest[1:]
    return options


def main() -> None:
    options = parse(sys.argv[1:])
    try:
        enter_private_network()
    except OSError as exc:
        if options.get("check"):
            sys.exit(f"nbviz: could not make a private network namespace: {exc}")
        end_because(f"nbviz: could not make a private network namespace: {exc}")
    if options.get("check"):
        return
    command, path, port = options["command"], options.get("socket"), options.get("port")
    if not (isinstance(command, list) and command and isinstance(path, str) and port):
        sys.exit(USAGE)
    # The relay and the broker run in a child made before any thread; this process then
    # becomes the app (exec): the app keeps the pid nbviz started, its own exit status, and
    # gets signals directly. The child ends with it (parent-death signal).
    listener = listen(path)
    broker = options.get("broker")
    handing_out = listen(broker) if isinstance(broker, str) else None
    app = os.getpid()
    if os.fork() == 0:
        relay_forever(listener, handing_out, int(str(port)), app)
    os.execvp(command[0], command)


def relay_forever(
    listener: socket.socket, broker: socket.socket | None, port: int, app: int
) -> NoReturn:
    """The relay's process: serve the socket (and the broker) as long as the app lives."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != app:  # the app ended before the line above
        os._exit(0)
    for number in (signal.SIGINT, signal.SIGHUP):  # the app's to handle, not ours
        signal.signal(number, signal.SIG_IGN)
    threading.Thread(target=serve, args=(listener, port), daemon=True).start()
    if broker is not None:
        threading.Thread(target=hand_out, args=(broker,), daemon=True).start()
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
