"""Unit: the base class's echo guard (a trait set from the backend is not sent back to it)."""

from __future__ import annotations

import sys
import threading
from typing import Any

import traitlets

from nbviz.app import WebApp


class Recorder(WebApp):
    """A WebApp (never started) whose ``note`` changes are 'sent to the backend' when the user's."""

    note = traitlets.Unicode("")

    def __init__(self) -> None:
        super().__init__([sys.executable, "-m", "http.server", "{port}"], start=False)
        self.sent: list[str] = []

    @traitlets.observe("note")
    def _to_backend(self, change: dict[str, Any]) -> None:
        if not self._changed_by_backend():
            self.sent.append(change["new"])


def test_changes_from_the_backend_are_not_sent_back() -> None:
    app = Recorder()
    app.note = "from the user"
    with app._from_backend():
        app.note = "from the backend"
        with app._from_backend():  # nested: still the backend's
            app.note = "from the backend, nested"
        app.note = "from the backend, after the nested one"
    app.note = "from the user again"
    assert app.sent == ["from the user", "from the user again"]
    app.close()


def test_the_user_setting_a_trait_meanwhile_on_another_thread_is_sent() -> None:
    """A poller thread applies the backend's state while the kernel's thread sets a trait: the
    user's change must reach the backend (a plain flag on the object would swallow it)."""
    app = Recorder()
    inside, done = threading.Event(), threading.Event()

    def poller() -> None:
        with app._from_backend():
            inside.set()
            done.wait(10)
            app.note = "polled from the backend"

    thread = threading.Thread(target=poller)
    thread.start()
    assert inside.wait(10)
    app.note = "typed by the user"  # while the poller is inside its guard
    done.set()
    thread.join(10)
    assert app.sent == ["typed by the user"]
    assert app.note == "polled from the backend"
    app.close()
