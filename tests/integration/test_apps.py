"""Ready-made apps: presets (unit), entry points, NEST Desktop + NEST Server, Bokeh; real
processes, a real Jupyter server (base URL /user/alice/) and the system Chromium."""

from __future__ import annotations

import json
import re
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
import websocket
from jupyter_helpers import RESOURCES, JupyterServer, Kernel, pid_running, wait_until

from nbviz import NbvizWarning, ProgramNotFoundError, TemplateError, apps
from nbviz._errors import BackendExitedError, NbvizError
from nbviz.apps._preset import ENTRY_POINT_GROUP, FileRewrite, Preset, fill

BOKEH_APP = RESOURCES / "bokeh_app.py"
#: A small network NEST Server simulates: 5 neurons driven above threshold, one recorder
#: (it runs under RestrictedPython: no sorted() or set(); np comes from modules=).
SIMULATION = textwrap.dedent(
    """
    import nest
    nest.ResetKernel()
    neurons = nest.Create("iaf_psc_alpha", 5, params={"I_e": 400.0})
    recorder = nest.Create("spike_recorder")
    nest.Connect(neurons, recorder)
    nest.Simulate(200.0)
    events = recorder.get("events")
    result = {"spikes": len(events["times"]), "senders": int(np.unique(events["senders"]).size)}
    """
)


def tree(pid: int) -> list[int]:
    try:
        root = psutil.Process(pid)
        return [pid, *(child.pid for child in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def all_gone(pids: list[int]) -> bool:
    return not any(pid_running(pid) for pid in pids)


def start_quietly(factory, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Start an app with no Jupyter server behind the test: nbviz warns that no browser can
    show it (Unix socket: the kernel API works) or that it is shown directly (TCP port)."""
    with pytest.warns(NbvizWarning, match="no browser can show it|no Jupyter server found"):
        return factory(*args, **kwargs)


# ------------------------------------------------------------------------ presets (unit)
def test_a_bad_template_names_the_preset() -> None:
    with pytest.raises(TemplateError, match=r"preset 'broken'.*unknown field \{prot\}"):
        Preset(name="broken", command=("python", "-m", "http.server", "{prot}"))
    with pytest.raises(TemplateError, match=r"preset 'broken'.*not a valid template"):
        Preset(name="broken", command=("serve", "--port", "{port"))
    with pytest.raises(TemplateError, match=r"preset 'broken'.*\{port\} or \{unix_socket\}"):
        Preset(name="broken", command=("serve", "--logdir", "{logdir}"), args={"logdir": "."})
    with pytest.raises(TemplateError, match=r"preset 'broken'.*env LOG='\{nope\}'"):
        Preset(name="broken", command=("s", "{port}"), env={"LOG": "{nope}"})
    with pytest.raises(TemplateError, match=r"preset 'broken'.*shadow"):
        Preset(name="broken", command=("s", "{port}"), args={"port": "1"})
    with pytest.raises(TemplateError, match=r"preset 'broken'.*unknown keys \['comand'\]"):
        Preset.from_dict("broken", {"comand": ["s", "{port}"]})


def test_a_template_error_found_at_start_names_the_preset() -> None:
    both = Preset(name="both", command=("s", "{port}", "{unix_socket}"))
    with pytest.raises(TemplateError, match=r"preset 'both'.*both \{port\} and \{unix_socket\}"):
        apps.App(both, start=False)


def test_user_values_are_not_templates() -> None:
    filled = fill("{python} {script} --port {port}", {"python": "py", "script": "a{b}.py"})
    assert filled.format(port=8) == "py a{b}.py --port 8"


def test_args_are_checked() -> None:
    preset = Preset(name="board", command=("s", "{logdir}", "{port}"), args={"logdir": None})
    with pytest.raises(NbvizError, match=r"the board app needs logdir="):
        preset.resolve_args({})
    with pytest.raises(NbvizError, match=r"takes logdir=; not \['logdri'\]"):
        preset.resolve_args({"logdir": ".", "logdri": "."})
    assert preset.resolve_args({"logdir": 3}) == {"logdir": "3"}


def test_a_missing_package_says_what_to_pip_install() -> None:
    needy = Preset(
        name="needy",
        command=("{python}", "-m", "needy_server", "{port}"),
        requires={"json": "json", "nbviz_test_surely_missing": "surely-missing-package"},
    )
    with pytest.raises(ProgramNotFoundError, match=r"pip install surely-missing-package`"):
        apps.App(needy)


def test_unknown_preset_lists_the_available_ones() -> None:
    with pytest.raises(NbvizError, match=r"no app preset named 'tensorbord'; available: .*bokeh"):
        apps.launch("tensorbord")
    assert {"bokeh", "nest-desktop"} <= set(apps.available())
    assert "pip install bokeh" in apps.describe("bokeh")


# -------------------------------------------------------------- presets from entry points
def publish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, source: str) -> None:
    """Install (on sys.path) a distribution that publishes ``module:preset`` as a preset."""
    site = tmp_path / "site"
    site.mkdir()
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n{module.replace('_', '-')} = {module}:preset\n"
    )
    monkeypatch.syspath_prepend(str(site))


def test_a_package_publishes_a_preset_through_an_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = tmp_path / "page.html"
    page.write_text("<h1>Hello @WHO@</h1><a href='@PREFIX@about'>about</a>")
    publish(
        tmp_path,
        monkeypatch,
        "hello_site",
        f"""
        def preset():  # a callable returning a dict, like jupyter-server-proxy's
            return {{
                "command": ["{{python}}", "-m", "http.server", "--bind", "127.0.0.1",
                            "--directory", "{{session_dir}}/site", "{{port}}"],
                "args": {{"who": "world"}},
                "files": [{{"source": {str(page)!r}, "dest": "site/index.html",
                            "replace": {{"@WHO@": "{{who}}", "@PREFIX@": "{{prefix}}"}}}}],
                "title": "Hello",
            }}
        """,
    )
    assert "hello-site" in apps.available()
    assert "from: hello_site (entry point hello-site)" in apps.describe("hello-site")
    app = start_quietly(apps.launch, "hello-site", who="nbviz {users}")
    try:
        app.wait_ready(20)
        assert app.route == "direct" and app.title == "Hello"
        body = urllib.request.urlopen(app.url, timeout=5).read().decode()
        assert body == "<h1>Hello nbviz {users}</h1><a href='/about'>about</a>"
        app.path = "/about"  # where the page navigated to (the frame syncs it back)
        with pytest.warns(NbvizWarning, match="no Jupyter server found"):
            app.restart()
        app.wait_ready(20)
        assert app.path == "/"  # a new session starts at the preset's page
        pids = tree(app.pid)
    finally:
        app.stop()
    wait_until(lambda: all_gone(pids), what="the preset's server to exit")
    assert page.read_text().startswith("<h1>Hello @WHO@")  # the source is never changed


def test_a_bad_template_from_an_entry_point_names_preset_and_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(
        tmp_path,
        monkeypatch,
        "bad_board",
        """
        preset = {"command": ["board", "--port", "{port}", "--logdir", "{log_dir}"],
                  "args": {"logdir": "."}}
        """,
    )
    # Listing skips it with a warning (one broken package does not hide the others)...
    with pytest.warns(NbvizWarning, match=r"preset 'bad-board' \(bad_board.*\{log_dir\}"):
        assert "bokeh" in apps.available() and "bad-board" not in apps.available()
    # ...starting it is the error.
    with pytest.raises(TemplateError, match=r"preset 'bad-board' \(bad_board.*\{log_dir\}"):
        apps.launch("bad-board", logdir=".")


def test_file_rewrites_fail_clearly_when_the_text_is_not_there(tmp_path: Path) -> None:
    source = tmp_path / "config.json"
    source.write_text('{"port": 1}')
    preset = Preset(
        name="stale",
        command=("{python}", "-m", "http.server", "{port}"),
        files=(FileRewrite(str(source), "config.json", {'"port": 52425': '"path": "{prefix}"'}),),
    )
    with pytest.raises(NbvizError, match=r"preset 'stale'.*does not contain '\"port\": 52425'"):
        apps.App(preset)


# ------------------------------------------------------------- NEST Desktop, kernel side
def test_nest_desktop_runs_simulations_and_stops_everything() -> None:
    desk = start_quietly(apps.NestDesktop)
    try:
        desk.wait_ready(60)
        assert desk.route == "none" and desk.path == "/nbviz.html"
        pids = tree(desk.pid)
        names = " ".join(" ".join(psutil.Process(pid).cmdline()) for pid in pids)
        assert "gunicorn" in names and "apps/runtime/nest.py" in names
        assert desk.version.startswith("3.")
        assert desk.kernel_status("biological_time") == {"biological_time": 0.0}
        result = desk.exec(SIMULATION, returns="result")
        assert result["spikes"] > 5 and result["senders"] == 5
        status = desk.kernel_status("biological_time", "network_size")
        assert status == {"biological_time": 200.0, "network_size": 6}
        desk.call("ResetKernel")
        assert desk.call("GetKernelStatus", "network_size") == 0
        # The access token stays private: it is in no log and no command line.
        info = json.loads((desk._process.session_dir / "nest.json").read_text())
        assert info["token"] not in desk.logs() and info["token"] not in names
        session_dir = desk._process.session_dir
    finally:
        desk.stop()
    assert desk.status == "stopped"
    wait_until(lambda: all_gone(pids), what="NEST Server and the UI to exit")
    assert not session_dir.exists()


def test_nest_server_failing_to_start_is_one_clear_error() -> None:
    desk = start_quietly(apps.NestDesktop, modules="import nbviz_test_no_such_module")
    with pytest.raises(BackendExitedError) as info:
        desk.wait_ready(60)
    message = str(info.value).splitlines()[0]
    assert message.startswith("nbviz: NEST Server cannot run scripts with modules=")
    assert "No module named 'nbviz_test_no_such_module'" in message
    assert "UI was not started" in message
    assert desk.status == "crashed"
    session = desk._process.session_id
    assert not [
        proc.pid
        for proc in psutil.process_iter(["cmdline", "status"])
        if proc.info["status"] != psutil.STATUS_ZOMBIE
        and any(session in part for part in proc.info["cmdline"] or [])
    ]
    desk.stop()


def test_nest_server_dying_stops_the_ui_with_one_error() -> None:
    desk = start_quietly(apps.NestDesktop)
    try:
        desk.wait_ready(60)
        pids = tree(desk.pid)
        gunicorn = next(
            psutil.Process(pid)
            for pid in pids
            if "nest.server:app" in psutil.Process(pid).cmdline()
            and psutil.Process(pid).ppid() == desk.pid
        )
        gunicorn.kill()
        wait_until(lambda: desk.status == "crashed", what="the app to report the crash")
        assert desk.error.splitlines()[0] == (
            "nbviz: NEST Server exited (signal SIGKILL); NEST Desktop stopped too, restart() "
            "starts both again"
        )
        wait_until(lambda: all_gone(pids), what="the UI and NEST Server's worker to exit")
    finally:
        desk.stop()


# ---------------------------------------------------- through a real Jupyter server + browser
START = """
import json, psutil
from nbviz import apps
desk = apps.NestDesktop()
board = apps.launch("bokeh", script={script!r})
desk.wait_ready(60); board.wait_ready(30)
roots = [psutil.Process(app.pid) for app in (desk, board)]
print(json.dumps({{"nest": desk.url + desk.path.lstrip("/"), "nest_route": desk.route,
                  "bokeh": board.url, "bokeh_route": board.route,
                  "pids": [p.pid for r in roots for p in [r, *r.children(recursive=True)]]}}))
"""


#: NEST Desktop 4.2's own race on a browser's first visit: example projects are drawn before
#: its model store has loaded (nothing of nbviz's is involved; simulations work after it).
KNOWN_PAGE_ERRORS = ("Cannot read properties of undefined (reading 'isRecorder')",)


def unexpected(errors: list[str]) -> list[str]:
    return [error for error in errors if error not in KNOWN_PAGE_ERRORS]


def post_json(server: JupyterServer, url: str, body: object) -> tuple[int, object]:
    request = urllib.request.Request(server.url(url), data=json.dumps(body).encode(), method="POST")
    request.add_header("Authorization", f"token {server.token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, json.loads(response.read())


@pytest.mark.jupyter
@pytest.mark.browser
def test_nest_desktop_and_bokeh_through_the_route(
    jupyter_server: JupyterServer, kernel: Kernel, tmp_path: Path
) -> None:
    from browser_helpers import ARTIFACTS, chromium, colour_fraction, hex_rgb
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    server = jupyter_server
    info = json.loads(kernel.run(START.format(script=str(BOKEH_APP))).strip().splitlines()[-1])
    pids = info["pids"]
    try:
        assert info["nest_route"] == info["bokeh_route"] == "nbviz"
        nest_root = info["nest"].removesuffix("nbviz.html")
        assert nest_root.startswith("/user/alice/nbviz/")
        # The UI's server address, rewritten in a copy (site-packages is not touched).
        status, body, _ = server.get(nest_root + "assets/workspaces/nest/config/backends.json")
        assert status == 200
        assert json.loads(body)["nest"] == {
            "path": nest_root.strip("/") + "/nestserver",
            "enabled": True,
        }
        # A simulation request through the route returns results...
        status, answer = post_json(
            server, nest_root + "nestserver/exec", {"source": SIMULATION, "return": "result"}
        )
        assert status == 200 and answer["data"]["spikes"] > 5  # type: ignore[index]
        # ...and the kernel sees what it did (the same NEST Server).
        seen = kernel.run("print(desk.kernel_status('biological_time', 'network_size'))")
        assert seen.strip() == "{'biological_time': 200.0, 'network_size': 6}"
        # Without Jupyter's login nothing gets through.
        assert server.get(nest_root + "nestserver/", auth=False)[0] in (302, 403)

        with sync_playwright() as playwright, chromium(playwright) as browser:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            traffic: list[str] = []
            page.on("request", lambda r: traffic.append(f"{r.method} {r.url}"))
            page.on("console", lambda m: traffic.append(f"console {m.type}: {m.text}"))

            def simulation_request(request) -> bool:  # type: ignore[no-untyped-def]
                return "/nestserver/" in request.url and request.method == "POST"

            # A simulation started in the UI: open an example project, press Simulate; the UI
            # sends its script to NEST Server through the route. About 1 run in 5 (also with
            # the machine idle) NEST Desktop's click handler throws ("reading 'reset'" of an
            # object it has not made yet) and sends nothing: as a user would, load the page
            # again (at most 3 times). Only the page errors of the attempt that worked count.
            for attempt in range(3):
                errors.clear()
                page.goto(server.url(info["nest"]) + f"?token={server.token}")
                indicator = page.locator("button[title$='/nestserver'] i.mdi-circle")
                expect(indicator).to_have_class(re.compile("text-green"), timeout=30000)
                if attempt == 0:
                    ARTIFACTS.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=ARTIFACTS / "apps-nest-desktop.png")
                page.get_by_text("spike activity", exact=True).click()
                simulate = page.get_by_role("button", name="Simulate")
                expect(simulate).to_be_enabled(timeout=30000)  # the project, its models loaded
                page.wait_for_load_state("networkidle")
                try:
                    with page.expect_request(simulation_request, timeout=15000) as sent:
                        simulate.click()
                    break
                except PlaywrightTimeout:
                    page.screenshot(path=ARTIFACTS / f"apps-nest-desktop-no-request-{attempt}.png")
            else:
                raise AssertionError(
                    f"Simulate sent nothing 3 times; page traffic: {traffic[-30:]}"
                )
            answer = sent.value.response()
            assert answer is not None and answer.status == 200, answer and answer.text()[:500]
            # generous: a busy 2-core machine runs NEST, gunicorn, Jupyter and Chromium at once
            expect(page.get_by_text("Simulation finished.").first).to_be_visible(timeout=60000)
            page.screenshot(path=ARTIFACTS / "apps-nest-desktop-simulation.png")
            seen = kernel.run("print(desk.kernel_status('biological_time'))")
            assert seen.strip() == "{'biological_time': 1000.0}"
            assert not unexpected(errors), errors

            page = context.new_page()
            page.goto(server.url(info["bokeh"]) + f"?token={server.token}")
            canvas = page.locator("canvas").first
            expect(canvas).to_be_visible(timeout=30000)
            shot = wait_for_orange(page, ARTIFACTS / "apps-bokeh.png")
            assert colour_fraction(shot, hex_rgb("#ff6600"), tolerance=12) > 0.05
            context.close()
        kernel.run("desk.stop(); board.stop()")
        wait_until(lambda: all_gone(pids), timeout=15, what="both apps' processes to exit")
        assert server.get(nest_root + "nbviz.html")[0] == 404
    finally:
        kernel.run("desk.stop(); board.stop()")


def wait_for_orange(page, path: Path, timeout: float = 20):  # type: ignore[no-untyped-def]
    """Bokeh draws after its websocket delivered the document: wait for the square's pixels."""
    import io

    from browser_helpers import colour_fraction, hex_rgb
    from PIL import Image

    deadline = time.monotonic() + timeout
    while True:
        shot = Image.open(io.BytesIO(page.screenshot(path=path))).convert("RGB")
        if colour_fraction(shot, hex_rgb("#ff6600"), tolerance=12) > 0.05:
            return shot
        if time.monotonic() > deadline:
            raise AssertionError(f"the Bokeh plot did not render; see {path}")
        time.sleep(0.3)


@pytest.mark.jupyter
@pytest.mark.browser
def test_nest_desktop_in_a_jupyterlab_cell_survives_a_restart(
    jupyter_server: JupyterServer,
) -> None:
    """In the cell's (sandboxed) frame the UI connects; after restart() (a new session, a new
    route) it connects to the new NEST Server, not to the URL it remembered."""
    from browser_helpers import (
        ARTIFACTS,
        VIEWPORT,
        Notebook,
        chromium,
        quiet_lab,
        wait_processes_gone,
        write_notebook,
    )
    from playwright.sync_api import expect, sync_playwright

    quiet_lab(jupyter_server)
    path = write_notebook(jupyter_server, "apps-nest-lab")
    with sync_playwright() as playwright, chromium(playwright) as browser:
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        nb = Notebook(page, jupyter_server, path)
        try:
            nb.open()
            nb.run("from nbviz.apps import NestDesktop\ndesk = NestDesktop()\ndesk", timeout=60)
            frame = page.frame_locator(".jp-OutputArea-output iframe").first
            indicator = frame.locator("button[title$='/nestserver'] i.mdi-circle")
            expect(indicator).to_have_class(re.compile("text-green"), timeout=30000)
            first = nb.printed("print(desk.url)")
            nb.pids += [int(nb.printed("print(desk.pid)"))]
            nb.run("desk.restart(); desk.wait_ready(60)", timeout=90)
            second = nb.printed("print(desk.url)")
            assert first != second
            button = frame.locator("button[title$='/nestserver']")
            expect(button).to_have_attribute("title", re.compile(re.escape(second)), timeout=30000)
            expect(indicator).to_have_class(re.compile("text-green"), timeout=30000)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=ARTIFACTS / "apps-nest-lab.png")
            nb.pids += [int(nb.printed("print(desk.pid)"))]
            assert not unexpected(errors), errors
        finally:
            context.close()
            nb.shutdown()
    wait_processes_gone(nb.pids)  # the kernel is gone: so are both NEST Desktop sessions


BOKEH_WITHOUT_ROUTE = """
import json, psutil
from nbviz import apps
board = apps.launch("bokeh", script={script!r})
board.wait_ready(30)
print(json.dumps({{"url": board.url, "path": board.path, "route": board.route,
                  "argv": psutil.Process(board.pid).cmdline()}}))
"""


@pytest.mark.jupyter
def test_bokeh_without_our_route_admits_only_the_session_secret(
    server_without_nbviz: JupyterServer,
) -> None:
    """No nbviz route: Bokeh listens on 127.0.0.1 behind jupyter-server-proxy, and its auth
    hook admits the page holding the session's secret (then its cookie), pages and websocket;
    other local users get 403."""
    server = server_without_nbviz
    kernel = Kernel(server)
    try:
        info = json.loads(
            kernel.run(BOKEH_WITHOUT_ROUTE.format(script=str(BOKEH_APP))).splitlines()[-1]
        )
        assert info["route"] == "absolute"  # jupyter-server-proxy's proxy/absolute/<port>/
        secret = info["path"].split("nbviz_secret=", 1)[1]
        assert len(secret) >= 32 and not any(secret in item for item in info["argv"])
        page = info["url"] + "bokeh_app"
        assert server.get(page)[0] == 403
        assert server.get(page + "?nbviz_secret=guess")[0] == 403
        status, body, headers = server.get(page + f"?nbviz_secret={secret}")
        assert status == 200 and b"nbviz bokeh test" in body
        cookie = headers["Set-Cookie"].split(";", 1)[0]
        assert cookie == f"nbviz-secret={secret}" and "HttpOnly" in headers["Set-Cookie"]
        status, body, _ = server.get(page, headers={"Cookie": cookie})
        assert status == 200
        token = re.search(rb'"token":\s*"([^"]+)"', body)
        assert token, "Bokeh's page has no session token"
        ws_url = f"ws://127.0.0.1:{server.port}{page}/ws"
        auth = f"Authorization: token {server.token}"
        # with the cookie, Bokeh's protocol starts (an ACK); without it, nothing but a close
        with_cookie = websocket.create_connection(
            ws_url,
            timeout=10,
            header=[auth, f"Cookie: {cookie}"],
            subprotocols=["bokeh", token.group(1).decode()],
        )
        try:
            assert "ACK" in with_cookie.recv()
        finally:
            with_cookie.close()
        stranger = websocket.create_connection(
            ws_url, timeout=10, header=[auth], subprotocols=["bokeh", token.group(1).decode()]
        )
        try:
            opcode, _ = stranger.recv_data(control_frame=True)
            assert opcode == websocket.ABNF.OPCODE_CLOSE
        except websocket.WebSocketConnectionClosedException:
            pass
        finally:
            stranger.shutdown()
    finally:
        kernel.run("board.stop()")
        kernel.close()


NEST_WITHOUT_ROUTE = """
import json, psutil
from nbviz import apps
desk = apps.NestDesktop()
desk.wait_ready(60)
print(json.dumps({"url": desk.url, "path": desk.path, "route": desk.route,
                  "argv": [a for p in [psutil.Process(desk.pid)] for a in p.cmdline()]}))
"""


@pytest.mark.jupyter
def test_nest_desktop_without_our_route_admits_only_the_session_secret(
    server_without_nbviz: JupyterServer,
) -> None:
    """No nbviz route: NEST Desktop's launcher listens on 127.0.0.1 behind jupyter-server-proxy
    and admits only the page holding the session's secret, for the UI and for NEST Server
    (which runs the Python it is sent: other local users must not reach it)."""
    server = server_without_nbviz
    kernel = Kernel(server)
    try:
        info = json.loads(kernel.run(NEST_WITHOUT_ROUTE).splitlines()[-1])
        assert info["route"] == "proxy"
        page, _, query = info["path"].lstrip("/").partition("?")
        secret = query.removeprefix("nbviz_secret=")
        assert page == "nbviz.html" and len(secret) >= 32
        assert not any(secret in item for item in info["argv"])
        exec_url = info["url"] + "nestserver/exec"
        assert server.get(info["url"] + page)[0] == 403
        assert server.get(info["url"] + "nestserver/")[0] == 403
        status, _, headers = server.get(info["url"] + f"{page}?nbviz_secret={secret}")
        assert status == 302 and headers["Location"] == page
        cookie = headers["Set-Cookie"].split(";", 1)[0]
        status, body, _ = server.get(info["url"] + page, headers={"Cookie": cookie})
        assert status == 200 and b"nest_server_url" in body
        simulation = json.dumps({"source": SIMULATION, "return": "result"}).encode()
        for headers_sent, expected in (({}, 403), ({"Cookie": cookie}, 200)):
            request = urllib.request.Request(server.url(exec_url), data=simulation, method="POST")
            request.add_header("Authorization", f"token {server.token}")
            request.add_header("Content-Type", "application/json")
            for name, value in headers_sent.items():
                request.add_header(name, value)
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    status, answer = response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                status, answer = error.code, None
            assert status == expected
        assert answer["data"]["spikes"] > 5
    finally:
        kernel.run("desk.stop()")
        kernel.close()
