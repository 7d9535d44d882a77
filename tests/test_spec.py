"""Unit tests of the command-template logic."""

from __future__ import annotations

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
    assert "{prot}" in message and "command item 2" in message and "{port}" in message


@pytest.mark.parametrize("item", ["{port", "port}", "{port!r}", "{port:5d}", "{0}", "{}"])
def test_malformed_templates_rejected(item: str) -> None:
    with pytest.raises(TemplateError):
        template_fields(item)


def test_unix_socket_field_switches_to_socket_mode() -> None:
    spec = Spec.build(["srv", "--socket", "{unix_socket}"])
    assert spec.uses_unix_socket and spec.port is None


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
