"""nbviz's warnings point at a line a user can read."""

from __future__ import annotations

import threading
import warnings

import pytest

from nbviz import NbvizWarning, app


def warn_from_nbviz() -> None:  # stands for nbviz's code (see the test's _PACKAGE_DIR)
    app.warn("nbviz: something to know")


def test_a_warning_on_a_thread_of_nbviz_points_at_nbviz_not_at_threading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Warned on a thread nbviz started (no user code on its stack): the line that warned, not
    Python's threading.py (as a ParaView session's warnings did, once ready)."""
    monkeypatch.setattr(app, "_PACKAGE_DIR", __file__)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        thread = threading.Thread(target=warn_from_nbviz)
        thread.start()
        thread.join()
    assert [w.category for w in caught] == [NbvizWarning]
    assert (caught[0].filename, caught[0].lineno) == (__file__, 14)
