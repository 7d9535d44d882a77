"""Filters in a ``ParaViewSession``'s pipeline as the kernel holds them, and what is sent.

:class:`Filter` is the handle ``view.slice()``, ``view.calculator()``, ... return; it changes
and removes its filter through the session's control channel. :func:`jsonable` turns the
user's values (numpy scalars and arrays, tuples) into what that channel sends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._widget import ParaViewSession

#: Filters that add a field to the data (``calculator``, ``python_calculator``).
DERIVED = ("calculator", "python_calculator")


class Filter:
    """A ParaView filter in the session's pipeline (slice, clip, contour, threshold), or a
    derived field (calculator, python_calculator)."""

    def __init__(
        self, session: ParaViewSession, ident: str, kind: str, args: dict[str, Any]
    ) -> None:
        self.session, self.id, self.kind, self.args = session, ident, kind, dict(args)

    def set(self, **args: Any) -> Filter:
        """Change the filter (e.g. ``normal=(1, 0, 0)``, ``values=[0.5]``, or a derived
        field's ``expression=``, ``name=``); the view updates."""
        self.session._request("filter_set", {"id": self.id, "args": jsonable(args)})
        self.args.update(args)
        self.session._refresh_fields(self.kind)
        return self

    def remove(self) -> None:
        """Take the filter (or derived field) out of the pipeline."""
        self.session._request("filter_remove", {"id": self.id})
        self.session._filters.pop(self.id, None)
        self.session._refresh_fields(self.kind)

    def __repr__(self) -> str:
        return f"<Filter {self.id} {self.args}>"


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    return value
