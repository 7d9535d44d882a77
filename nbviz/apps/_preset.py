"""Presets: declarative descriptions of ready-made web apps, and where they come from.

A preset is data (a :class:`Preset`): the command template, its own arguments, environment,
readiness path, the page the frame opens, files to copy with text rewritten, and the Python
packages it needs. nbviz ships a few (:mod:`nbviz.apps._builtin`); other packages publish more
through the ``nbviz_presets`` entry point group. Nothing here starts anything.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import importlib.util
import string
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import NbvizError, ProgramNotFoundError, TemplateError
from .._spec import TEMPLATE_FIELDS, Network
from ..app import warn

#: The entry point group third-party packages publish presets in.
ENTRY_POINT_GROUP = "nbviz_presets"

#: Fields every preset may use besides nbviz's own (``{port}``, ``{unix_socket}``, ...).
PRESET_FIELDS: Mapping[str, str] = {
    "python": "the kernel's Python interpreter (sys.executable)",
}


@dataclass(frozen=True)
class FileRewrite:
    """A file copied into the session directory, with literal text replaced.

    ``source`` is a path, or ``"package:relative/path"`` for a file inside an installed Python
    package (found with importlib, so presets never hard-code site-packages). ``dest`` is
    relative to the session directory (the command reaches it as ``{session_dir}/<dest>``).
    ``replace`` maps literal text in the source to its replacement, a template that may use
    the same fields as the command (e.g. ``{prefix}``). The installed file is never modified.
    """

    source: str
    dest: str
    replace: Mapping[str, str] = field(default_factory=dict)

    def source_path(self) -> Path:
        package, sep, relative = self.source.partition(":")
        if sep and package and not Path(self.source).exists() and "/" not in package:
            if importlib.util.find_spec(package) is None:
                raise NbvizError(
                    f"nbviz: the package {package!r} (for the file {self.source}) is not "
                    f"installed; pip install it"
                )
            return Path(str(importlib.resources.files(package).joinpath(relative)))
        return Path(self.source).expanduser()


@dataclass(frozen=True)
class Preset:
    """A ready-made web app: everything :class:`nbviz.apps.App` needs to start and show it.

    ``command`` items may use nbviz's fields (``{port}`` or ``{unix_socket}``, ``{prefix}``,
    ``{base_url}``, ``{session_dir}``), ``{python}`` (the kernel's interpreter) and the
    preset's own ``args`` (name -> default; ``None`` means the user must give it). ``env``
    values may use the preset's own args and ``{python}``.
    """

    name: str
    command: tuple[str, ...]
    #: The preset's own arguments: name -> default value (None: required), e.g. ``logdir``.
    args: Mapping[str, str | None] = field(default_factory=dict)
    #: One line per argument, shown by ``describe()`` and in errors.
    args_help: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    #: Path the readiness probe requests (any answer but 502/503/504 counts).
    ready_path: str = "/"
    #: Page the frame opens (relative to the app's root; may use the preset's args).
    path: str = "/"
    timeout: float = 30.0
    title: str = ""
    description: str = ""
    #: Python modules the app needs: module name -> what to ``pip install``.
    requires: Mapping[str, str] = field(default_factory=dict)
    #: Files copied into the session directory with text rewritten (e.g. a config's server URL).
    files: tuple[FileRewrite, ...] = ()
    #: True: the app sees the full URL path (give it ``{prefix}``); False: the prefix is stripped.
    absolute_url: bool = False
    #: The command for a 127.0.0.1 port (``{port}``), used when nbviz's route is missing and
    #: the page comes through jupyter-server-proxy: the app must then admit only requests that
    #: carry the per-session secret (``{secret}``, ``NBVIZ_SECRET``), handed to the page as
    #: ``?<secret_param>=`` in its first URL. None: the preset needs nbviz's route.
    tcp_command: tuple[str, ...] | None = None
    secret_param: str | None = None
    #: Where an app on ``{port}`` listens behind nbviz's route: "auto" (a private network
    #: namespace where the machine allows one), "private" or "host" (for an app that must reach
    #: other machines or this one's 127.0.0.1); see WebApp.
    network: Network = "auto"
    #: Where the preset came from: ``nbviz``, the distribution that published it, or empty
    #: (made in this kernel).
    origin: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TemplateError("nbviz: a preset needs a name")
        if isinstance(self.command, str) or not self.command:
            raise self.error("its command must be a non-empty list of str")
        object.__setattr__(self, "command", tuple(self.command))
        if self.network not in ("auto", "private", "host"):
            raise self.error(f"network must be 'auto', 'private' or 'host', not {self.network!r}")
        if self.tcp_command is not None:
            if isinstance(self.tcp_command, str) or not self.tcp_command:
                raise self.error("its tcp_command must be a non-empty list of str")
            object.__setattr__(self, "tcp_command", tuple(self.tcp_command))
            for index, item in enumerate(self.tcp_command):
                self.check_template(item, f"tcp_command[{index}] {item!r}")
            if not any("port" in fields_of(item, self.name) for item in self.tcp_command):
                raise self.error("its tcp_command must contain {port}")
        object.__setattr__(self, "files", tuple(self.files))
        known = {**TEMPLATE_FIELDS, **PRESET_FIELDS}
        clash = sorted(set(self.args) & set(known))
        if clash:
            raise self.error(f"its args {clash} shadow nbviz's own template fields; rename them")
        for index, item in enumerate(self.command):
            self.check_template(item, f"command[{index}] {item!r}")
        for key, value in self.env.items():
            self.check_template(value, f"env {key}={value!r}", nbviz_fields=False)
        self.check_template(self.path, f"path {self.path!r}", nbviz_fields=False)
        for rewrite in self.files:
            for old, new in rewrite.replace.items():
                self.check_template(new, f"the replacement of {old!r} in {rewrite.dest}")
        if not any(
            name in ("port", "unix_socket")
            for item in self.command
            for name in fields_of(item, self.name)
        ):
            raise self.error(
                "its command must contain {port} or {unix_socket} (where the app listens)"
            )
        if self.timeout <= 0:
            raise self.error(f"timeout must be positive, got {self.timeout}")

    def error(self, message: str) -> TemplateError:
        return TemplateError(f"nbviz: preset {self.name!r}{self.source}: {message}")

    @property
    def source(self) -> str:
        return _from(self.origin)

    def check_template(self, text: str, where: str, *, nbviz_fields: bool = True) -> None:
        allowed = set(self.args) | set(PRESET_FIELDS)
        if nbviz_fields:
            allowed |= set(TEMPLATE_FIELDS)
        for name in fields_of(text, self.name, where=where, origin=self.origin):
            if name not in allowed:
                names = ", ".join("{" + key + "}" for key in sorted(allowed))
                raise self.error(
                    f"{where} uses the unknown field {{{name}}}; it may use {names} "
                    "(write {{ and }} for literal braces, or add the field to the preset's args)"
                )

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any], origin: str = "") -> Preset:
        """A preset from plain data (what an entry point may return, like jupyter-server-proxy's
        server dicts); ``files`` items may be dicts with source, dest and replace."""
        if not isinstance(data, Mapping):
            raise TemplateError(
                f"nbviz: preset {name!r}{_from(origin)} must be a dict or a Preset, not "
                f"{type(data).__name__}"
            )
        known = set(cls.__dataclass_fields__) - {"name", "origin"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TemplateError(
                f"nbviz: preset {name!r}{_from(origin)} has unknown keys {unknown}; "
                f"known keys: {sorted(known)}"
            )
        values = dict(data)
        command = values.get("command")
        if isinstance(command, str):
            raise TemplateError(f"nbviz: preset {name!r}{_from(origin)}: give command as a list")
        values["files"] = tuple(
            item if isinstance(item, FileRewrite) else FileRewrite(**item)
            for item in values.get("files", ())
        )
        return cls(name=name, origin=origin, **values)

    def requirements_missing(self) -> list[str]:
        """What to ``pip install`` for this preset (empty when everything is there)."""
        missing: list[str] = []
        for module, requirement in self.requires.items():
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found and requirement not in missing:
                missing.append(requirement)
        return missing

    def check_requirements(self) -> None:
        missing = self.requirements_missing()
        if missing:
            packages = " ".join(missing)
            raise ProgramNotFoundError(
                f"nbviz: the {self.name} app needs {', '.join(missing)}, which "
                f"{'is' if len(missing) == 1 else 'are'} not installed in this kernel's Python "
                f"({sys.executable}); run `pip install {packages}`"
                + (" (or pip install 'nbviz[apps]')" if self.origin == "nbviz" else "")
            )

    def resolve_args(self, given: Mapping[str, object]) -> dict[str, str]:
        """The preset's args with the user's values; raises for unknown or missing ones."""
        unknown = sorted(set(given) - set(self.args))
        if unknown:
            takes = ", ".join(f"{key}=" for key in self.args) or "no arguments"
            raise NbvizError(f"nbviz: the {self.name} app takes {takes}; not {unknown}")
        values: dict[str, str] = {}
        for key, default in self.args.items():
            value = given.get(key, default)
            if value is None:
                hint = f" ({self.args_help[key]})" if key in self.args_help else ""
                raise NbvizError(f"nbviz: the {self.name} app needs {key}=...{hint}")
            values[key] = str(value)
        return values

    def describe(self) -> str:
        """Human-readable summary: what it is, its arguments, what it needs."""
        lines = [f"{self.name}: {self.description or self.title or ' '.join(self.command)}"]
        for key, default in self.args.items():
            shown = "required" if default is None else f"default {default!r}"
            lines.append(f"  {key}= ({shown}) {self.args_help.get(key, '')}".rstrip())
        if self.requires:
            lines.append(f"  needs: pip install {' '.join(dict.fromkeys(self.requires.values()))}")
        lines.append(f"  from: {self.origin or 'this kernel'}")
        return "\n".join(lines)


def _from(origin: str) -> str:
    return f" ({origin})" if origin else ""


def fields_of(text: str, preset: str, *, where: str = "template", origin: str = "") -> set[str]:
    """Template field names used in ``text`` (raises TemplateError naming the preset)."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(
            f"nbviz: preset {preset!r}{_from(origin)}: {where} is not a valid "
            f"template ({exc}); write {{{{ and }}}} for literal braces"
        ) from None
    names = set()
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if spec or conversion or not name.isidentifier():
            raise TemplateError(
                f"nbviz: preset {preset!r}: {where}: {{{name}}} is not a plain field name "
                "(no format specs, conversions, attributes or indexes)"
            )
        names.add(name)
    return names


def fill(text: str, values: Mapping[str, str]) -> str:
    """Fill only the fields in ``values``; leave the others (nbviz's) as template fields.

    Filled values are escaped (``{`` -> ``{{``) so a later fill of nbviz's fields leaves them
    as they are (a path with braces stays that path).
    """
    out = []
    for literal, name, _spec, _conversion in string.Formatter().parse(text):
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if name is None:
            continue
        if name in values:
            out.append(values[name].replace("{", "{{").replace("}", "}}"))
        else:
            out.append("{" + name + "}")
    return "".join(out)


# ------------------------------------------------------------------ where presets come from
_registered: dict[str, Preset] = {}


def register(preset: Preset | Mapping[str, Any], name: str | None = None) -> Preset:
    """Make ``preset`` available by name in this kernel (overrides one of the same name)."""
    if not isinstance(preset, Preset):
        if name is None:
            raise NbvizError("nbviz: register(dict) needs name=")
        preset = Preset.from_dict(name, preset, origin="register()")
    _registered[preset.name] = preset
    return preset


def _from_entry_point(entry_point: importlib.metadata.EntryPoint) -> list[Preset]:
    dist = getattr(entry_point, "dist", None)
    origin = f"{dist.name} (entry point {entry_point.name})" if dist else entry_point.value
    try:
        obj = entry_point.load()
    except Exception as exc:
        raise NbvizError(
            f"nbviz: the preset entry point {entry_point.name!r} = {entry_point.value!r} from "
            f"{origin} failed to load ({type(exc).__name__}: {exc}); upgrade or uninstall "
            "that package"
        ) from exc
    if callable(obj) and not isinstance(obj, Preset):
        obj = obj()
    items: Iterable[Any]
    if isinstance(obj, Preset):
        items = [obj]
    elif isinstance(obj, Mapping) and "command" in obj:
        items = [Preset.from_dict(entry_point.name, obj, origin=origin)]
    elif isinstance(obj, Mapping):  # several: name -> dict or Preset
        items = [
            value if isinstance(value, Preset) else Preset.from_dict(key, value, origin=origin)
            for key, value in obj.items()
        ]
    else:
        raise NbvizError(
            f"nbviz: the preset entry point {entry_point.name!r} from {origin} gave a "
            f"{type(obj).__name__}; it must give a Preset, a dict, or a dict of them"
        )
    return [preset if preset.origin else _with_origin(preset, origin) for preset in items]


def _with_origin(preset: Preset, origin: str) -> Preset:
    values = {key: getattr(preset, key) for key in preset.__dataclass_fields__}
    values["origin"] = origin
    return Preset(**values)


def _scan() -> tuple[dict[str, Preset], dict[str, NbvizError]]:
    """Presets from entry points, and the errors of those that are broken (by entry point name:
    one broken package must not hide the others)."""
    from ._builtin import BUILTIN

    found: dict[str, Preset] = {}
    broken: dict[str, NbvizError] = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            for preset in _from_entry_point(entry_point):
                found.setdefault(preset.name, preset)
        except NbvizError as exc:
            broken.setdefault(entry_point.name, exc)
    found.update(BUILTIN)
    found.update(_registered)
    return found, {name: exc for name, exc in broken.items() if name not in found}


def presets() -> dict[str, Preset]:
    """Every working preset here: entry points, then nbviz's own, then ``register()``-ed ones
    (later ones win for the same name). Broken entry points are skipped with a warning."""
    found, broken = _scan()
    for exc in broken.values():
        warn(f"{exc.message} (skipped)")
    return found


def get(name: str) -> Preset:
    """The preset called ``name``; a clear error listing the available ones otherwise."""
    available, broken = _scan()
    if name in broken:
        raise broken[name]
    if name not in available:
        names = ", ".join(sorted(available)) or "none"
        raise NbvizError(
            f"nbviz: no app preset named {name!r}; available: {names} (packages add more "
            f"through the {ENTRY_POINT_GROUP!r} entry point group, or call "
            "nbviz.apps.register(...))"
        )
    return available[name]
