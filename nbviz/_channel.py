"""Kernel <-> backend control channel: newline-delimited JSON over a private Unix socket.

Messages (both directions are plain JSON objects, one per line):

- kernel -> backend ``{"op": "request", "id": n, "name": str, "args": {...}}``
- backend -> kernel ``{"op": "answer", "id": n, "ok": bool, "value": ..., "error": str}``
- backend -> kernel ``{"op": "changed", "values": {...}}`` -- the user changed something in
  the browser (camera, field, time step); delivered to ``on_changed`` on the reader thread.

Knows nothing of which backend it talks to. Works with no browser attached.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import socket
import threading
from collections.abc import Callable
from typing import Any

from ._errors import NbvizError


class ChannelError(NbvizError):
    """The backend answered a request with an error, or the channel is closed."""


class Channel:
    def __init__(
        self,
        path: str,
        *,
        on_changed: Callable[[dict[str, Any]], None] | None = None,
        name: str = "backend",
        connect_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.on_changed = on_changed
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(connect_timeout)
        try:
            self._sock.connect(path)
        except OSError as exc:
            self._sock.close()
            raise ChannelError(
                f"nbviz: cannot reach {name}'s control socket {path}: {exc}"
            ) from None
        self._sock.settimeout(None)
        self._file = self._sock.makefile("rb")
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, concurrent.futures.Future[Any]] = {}
        self._closed = False
        self._reader = threading.Thread(
            target=self._read, name=f"nbviz-channel-{name}", daemon=True
        )
        self._reader.start()

    def request(self, name: str, args: dict[str, Any] | None = None, timeout: float = 60.0) -> Any:
        """Send a request and wait for the answer (a ChannelError carries the backend's error)."""
        future = self.request_async(name, args)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise ChannelError(
                f"nbviz: {self.name} did not answer {name!r} within {timeout:g} s"
            ) from None

    def request_async(
        self, name: str, args: dict[str, Any] | None = None
    ) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise ChannelError(f"nbviz: {self.name} is not running (its channel is closed)")
            ident = next(self._ids)
            self._pending[ident] = future
            line = json.dumps({"op": "request", "id": ident, "name": name, "args": args or {}})
            try:
                self._sock.sendall(line.encode() + b"\n")
            except OSError as exc:
                self._pending.pop(ident, None)
                raise ChannelError(f"nbviz: lost the connection to {self.name}: {exc}") from None
        return future

    def _read(self) -> None:
        try:
            for line in self._file:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                op = message.get("op")
                if op == "answer":
                    future = self._pending.pop(message.get("id"), None)
                    if future is None:
                        continue
                    if message.get("ok"):
                        future.set_result(message.get("value"))
                    else:
                        future.set_exception(ChannelError(f"nbviz: {message.get('error')}"))
                elif op == "changed" and self.on_changed is not None:
                    try:
                        self.on_changed(dict(message.get("values") or {}))
                    except Exception:  # a bad observer must not kill the channel
                        pass
        except (OSError, ValueError):
            pass
        finally:
            self._fail_pending()

    def _fail_pending(self) -> None:
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ChannelError(f"nbviz: {self.name} went away"))

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._lock:
            self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._file.close()
        if self._reader is not threading.current_thread():
            self._reader.join(timeout=5)
        self._fail_pending()
