"""Unit tests of the command-template logic."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nbviz import ProgramNotFoundError, TemplateError
from nbviz._spec import Spec, default_name, find_program, render_command, template_fields


def test_fields_found_and_rendered() -> None:
    spec = Spec.build(["srv", "--port={port}", "--base", "{base_url}x", "{{literal}}"])
    assert spec.port is None and not spec.uses_unix_socket
    assert render_command(spec.command, {"port": 8123, "base_url": "/user/a/"}) == [
        "srv",
        "--port=8123",
        "--base",
        "/user/a/x",
        "{literal}",
    ]


def test_paths_and_numbers_as_users_pass_them() -> None:
    """A pathlib.Path in the command is taken as it is (braces included); numbers in env
    become strings; other env values are refused before anything runs."""
    spec = Spec.build([Path("/opt/my {app}/run"), "{port}"], env={"WORKERS": 4, "A": "b"})
    assert render_command(spec.command, {"port": 80}) == ["/opt/my {app}/run", "80"]
    assert spec.env == {"WORKERS": "4", "A": "b"}
    with pytest.raises(TemplateError, match=r"env values must be strings.*'DEBUG': None"):
        Spec.build(["srv", "{port}"], env={"DEBUG": None})  # type: ignore[dict-item]


def test_unknown_field_names_the_item_and_known_fields() -> None:
    with pytest.raises(TemplateError) as info:
        Spec.build(["srv", "--port", "{prot}"])
    message = str(info.value)
    assert message.startswith("nbviz:")
    assert "{prot}" in message and "command[2]" in message and "{port}" in message


def test_a_command_line_with_unbalanced_quotes_is_a_template_error() -> None:
    """A string command is split as a shell would: a quote left open is said so, with the
    line (it was shlex's bare ValueError)."""
    from nbviz import Solver
    from nbviz.desktop._spec import start_commands

    said = "cannot be split into arguments (no closing quotation): close its quotes"
    for what, build, line in (
        ("the command", Spec.build, "python -m http.server '{port}"),
        ("start=", start_commands, "xterm -T 'x"),
        ("Solver", Solver, "icoFoam '"),
    ):
        with pytest.raises(TemplateError, match=re.escape(f"nbviz: {what} {line!r} {said}")):
            build(line)


@pytest.mark.parametrize("item", ["{port", "port}", "{port!r}", "{port:5d}", "{0}", "{}"])
def test_malformed_templates_rejected(item: str) -> None:
    with pytest.raises(TemplateError):
        template_fields(item)


def test_unix_socket_field_switches_to_socket_mode() -> None:
    spec = Spec.build(["srv", "--socket", "{unix_socket}"])
    assert spec.uses_unix_socket and spec.port is None
    # a socket path may be a Path, as cwd= may
    spec = Spec.build(["srv", "--socket", "{unix_socket}"], unix_socket=Path("/tmp/app.sock"))
    assert spec.uses_unix_socket and spec.unix_socket == "/tmp/app.sock"


def test_contradictions_rejected() -> None:
    with pytest.raises(TemplateError, match="both"):
        Spec.build(["srv", "{port}", "{unix_socket}"])
    with pytest.raises(TemplateError, match="either port"):
        Spec.build(["srv", "{unix_socket}"], port=80)
    with pytest.raises(TemplateError, match=r"uses \{port\}: put \{unix_socket\}"):
        Spec.build(["srv", "{port}"], unix_socket=True)
    with pytest.raises(TemplateError, match=r"must contain \{port\}"):
        Spec.build(["srv"])
    with pytest.raises(TemplateError, match="between 1 and 65535"):
        Spec.build(["srv"], port=70000)
    with pytest.raises(TemplateError, match="timeout"):
        Spec.build(["srv", "{port}"], timeout=0)
    with pytest.raises(TemplateError, match="empty"):
        Spec.build([])


def test_fixed_port_needs_no_field() -> None:
    spec = Spec.build("srv --listen 9999", port=9999, ready_path="health")
    assert spec.command == ("srv", "--listen", "9999")
    assert spec.port == 9999 and spec.ready_path == "/health"


@pytest.mark.parametrize(
    ("command", "name"),
    [
        (["python", "-m", "http.server", "{port}"], "http.server"),
        (["/usr/bin/python3", "app/serve.py", "{port}"], "serve.py"),
        (["python3", "-c", "pass", "{port}"], "python3"),
        (["/opt/bin/tensorboard", "--port", "{port}"], "tensorboard"),
        (["env", "-u", "X", "BASE={prefix}", "python", "app.py", "{port}"], "app.py"),
        (["/usr/bin/env", "PORT={port}", "node", "server.js"], "node"),
    ],
)
def test_default_name(command: list[str], name: str) -> None:
    assert default_name(command) == name


def test_missing_program_says_how_to_install() -> None:
    with pytest.raises(ProgramNotFoundError, match=r"apt-get install xpra"):
        find_program("xpra", {"PATH": "/nonexistent"})
    with pytest.raises(ProgramNotFoundError, match="not found on PATH"):
        find_program("no-such-program-nbviz")
    with pytest.raises(ProgramNotFoundError, match="does not exist"):
        find_program("/no/such/dir/prog")
    with pytest.raises(ProgramNotFoundError, match=r"is not executable; chmod \+x it"):
        find_program(__file__)  # a script without its execute bit
    with pytest.raises(ProgramNotFoundError, match=r"'DEBUG=1'.*without a shell: pass env="):
        find_program("DEBUG=1")  # a shell habit: "DEBUG=1 python app.py {port}"
    assert find_program("sh").endswith("/sh")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout": "30"}, r"timeout= must be a number of seconds, got '30' \(str\)"),
        ({"timeout": True}, r"timeout= must be a number of seconds, got True \(bool\)"),
        ({"timeout": float("nan")}, r"timeout= must be a finite number of seconds, got nan"),
        ({"timeout": float("inf")}, r"timeout= must be a finite number of seconds, got inf"),
        ({"port": "8000"}, r"port= must be an int \(or None\), got '8000' \(str\)"),
        ({"port": True}, r"port= must be an int \(or None\), got True \(bool\)"),
        ({"port": 8000.0}, r"port= must be an int \(or None\), got 8000.0 \(float\)"),
        ({"env": ["A=1"]}, r"env= must be a mapping .*, got \['A=1'\] \(list\)"),
        ({"env": {"A=B": "1"}}, r"env= names must be non-empty strings without '=', got 'A=B'"),
        ({"env": {3: "1"}}, r"env= names must be non-empty strings without '=', got 3"),
        ({"cwd": 3}, r"cwd= must be a str or path \(or None\), got 3 \(int\)"),
        ({"ready_path": None}, r"ready_path= must be a str, got None \(NoneType\)"),
        ({"secret_param": 5}, r"secret_param= must be a str \(or None\), got 5 \(int\)"),
        (
            {"unix_socket": 1},
            r"unix_socket= must be True, False or a socket path \(str or Path\), got 1 \(int\)",
        ),
    ],
)
def test_wrong_argument_types_are_named(kwargs: dict[str, object], message: str) -> None:
    """A wrong type is refused before anything runs, naming the argument and what it takes; the
    error is a TemplateError (an NbvizError) and a TypeError or ValueError as Python's own."""
    with pytest.raises(TemplateError, match=f"^nbviz: {message}") as info:
        Spec.build(["srv", "{port}"] if "port" not in kwargs else ["srv"], **kwargs)  # type: ignore[arg-type]
    bad_type = "must be a finite" not in message and "without '='" not in message
    assert isinstance(info.value, TypeError if bad_type else ValueError)


def test_wrong_ssh_and_command_types_are_named() -> None:
    with pytest.raises(TemplateError, match=r"ssh must be a destination .*got 5"):
        Spec.build(["srv", "{unix_socket}"], ssh=5)  # type: ignore[arg-type]
    with pytest.raises(TemplateError, match=r"command must be a list of str .*got None"):
        Spec.build(None)  # type: ignore[arg-type]
    with pytest.raises(TemplateError, match=r"command\[1\] contains a NUL character"):
        Spec.build(["srv", "a\0b", "{port}"])


def test_a_socket_path_is_made_absolute_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = Spec.build(["srv", "{unix_socket}"], unix_socket="app.sock")
    assert spec.unix_socket == str(tmp_path / "app.sock")
    with pytest.raises(TemplateError, match=r"longer than Unix sockets allow \(107 bytes\)"):
        Spec.build(["srv", "{unix_socket}"], unix_socket="/tmp/" + "s" * 103)
