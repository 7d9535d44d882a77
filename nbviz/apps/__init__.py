"""Ready-made web apps: NEST Desktop, Bokeh, and any app a package publishes as a preset.

>>> from nbviz import apps
>>> desk = apps.NestDesktop()                   # NEST Desktop + NEST Server, one session
>>> board = apps.launch("bokeh", script="dashboard.py")
>>> print(apps.describe())                      # every preset available here

A preset is a declarative :class:`Preset` (command template, args, environment, readiness
path, files to rewrite); packages publish presets through the ``nbviz_presets`` entry point
group. See docs/apps.md.
"""

from __future__ import annotations

from typing import Any

from ._app import App
from ._nest import NestDesktop
from ._preset import ENTRY_POINT_GROUP, FileRewrite, Preset, get, presets, register

#: Presets with a class of their own (a richer kernel API than App's).
_CLASSES: dict[str, type[App]] = {"nest-desktop": NestDesktop}


def launch(name: str | Preset, **kwargs: Any) -> App:
    """Start the app ``name`` (a preset name or a :class:`Preset`) and return its widget.

    Keyword arguments are the preset's own arguments (e.g. ``script=``) and App's options
    (``route=``, ``height=``, ``title=``, ``timeout=``, ``env=``, ``start=``).
    """
    if isinstance(name, str) and name in _CLASSES and get(name).origin == "nbviz":
        return _CLASSES[name](**kwargs)
    return App(name, **kwargs)


def available() -> list[str]:
    """Names of the presets available here (nbviz's own, entry points, register()-ed)."""
    return sorted(presets())


def describe(name: str | None = None) -> str:
    """What a preset (or every preset) is, takes and needs, as text."""
    chosen = [get(name)] if name else [presets()[key] for key in available()]
    return "\n".join(preset.describe() for preset in chosen)


__all__ = [
    "ENTRY_POINT_GROUP",
    "App",
    "FileRewrite",
    "NestDesktop",
    "Preset",
    "available",
    "describe",
    "get",
    "launch",
    "register",
]
