"""nbviz's ParaView app: runs *inside pvpython*, serves a trame UI and a control channel.

    pvpython --force-offscreen-rendering pvapp.py --socket S --control C --data FILE [FILE ...]

- The browser reaches the trame UI (a live ``VtkRemoteView`` with a field menu and a time
  slider) over the Unix socket ``S`` (0600), through nbviz's Jupyter route.
- The kernel talks to ``C`` (Unix socket, 0600): newline-delimited JSON messages
  ``{"op": "request", "id": n, "name": ..., "args": {...}}`` answered by
  ``{"op": "answer", "id": n, "ok": true, "value": ...}`` (or ``"ok": false, "error": ...``),
  and unsolicited ``{"op": "changed", "values": {...}}`` when the user changes the view in the
  browser (camera, field, time step).

Started by the launcher beside it (``launcher.py``), by path. It and its parts (the
``pv*.py`` files beside it) import each other with plain relative imports (see
``nbviz/_runtime/bypath.py``) and nothing of the nbviz package (pvpython has its own Python).
"""

from __future__ import annotations

if not __package__:  # run by path: plain relative imports all the same (see the file named)
    import runpy
    from pathlib import Path

    _bypath = Path(__file__).resolve().parents[2] / "_runtime" / "bypath.py"
    __package__ = runpy.run_path(str(_bypath))["package"](__file__)

import asyncio
import json
import os
import runpy
import shlex
import socket
import subprocess
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

# ParaView parses sys.argv on import: pvargs parses ours first, then hides them.
from .pvargs import ARGS, Fail, log
from .pvframes import FRAME_SETTINGS, KEEPS_GEOMETRY, Frames
from .pvnumpy import import_numpy_of_vtk

NUMPY = import_numpy_of_vtk()

from paraview import servermanager, simple  # noqa: E402
from trame.app import get_server  # noqa: E402

from .pvfollow import Follower  # noqa: E402
from .pvscene import Scene  # noqa: E402
from .pvui import page  # noqa: E402

CAMERA_DEBOUNCE = 0.15


# ------------------------------------------------------------------ the app
server = get_server(client_type="vue3")
state, ctrl = server.state, server.controller


def start_ranks() -> subprocess.Popen[bytes] | None:
    """Start ``ARGS.ranks`` pvserver ranks that connect back to us (reverse connection).

    pvserver 5.11 can only listen on every interface, so the ranks connect to us instead;
    our one-shot listener accepts only a server that presents the session's connect id.
    MPI messages between the ranks go through shared memory (``btl=self,vader``). With a
    local ``mpiexec`` the launcher has put the whole session into a network namespace of its
    own (loopback only), which hides both this listener and mpiexec's own TCP listeners
    (OpenMPI binds those to every interface whatever ``oob_tcp_if_include`` says).
    """
    if ARGS.ranks < 1:
        return None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launcher = [part.replace("{ranks}", str(ARGS.ranks)) for part in shlex.split(ARGS.launcher)]
    command = [
        *launcher,
        ARGS.pvserver,
        "--reverse-connection",
        "--client-host=localhost",
        f"--server-port={port}",
        f"--connect-id={ARGS.connect_id}",
        "--force-offscreen-rendering",
    ]
    env = dict(os.environ)
    # ranks talk through shared memory; an idle rank (waiting for rank 0) yields its core to
    # pvpython and Xvfb, which share the node. Values set by the user win.
    env.setdefault("OMPI_MCA_btl", "self,vader")
    env.setdefault("OMPI_MCA_mpi_yield_when_idle", "1")
    if os.getuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    log("starting", ARGS.ranks, "pvserver ranks:", " ".join(launcher))
    ranks = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
    simple.ReverseConnect(str(port))  # returns once the ranks have connected
    log("pvserver ranks connected:", servermanager.ActiveConnection.GetNumberOfDataPartitions())
    return ranks


scene: Scene | None = None
startup_error = ""
log("numpy:", NUMPY or "the first on the path (none next to ParaView's packages)")
try:
    mpi_ranks = start_ranks()
    scene = Scene(ARGS.data)
except Fail as exc:
    startup_error = str(exc)
except Exception as exc:  # ParaView itself failed
    startup_error = f"{type(exc).__name__}: {exc}"
    traceback.print_exc()
if startup_error:
    log("error:", startup_error)
    sys.exit(2)

follower = Follower(scene) if scene is not None else None
image_delivery: Any = None  # trame-vtk's ParaViewWebPublishImageDelivery, once serving


def set_page_quality(quality: int, ratio: float) -> None:
    """The page's remote view asks for frames of this quality and scale while the mouse moves
    (trame's VtkRemoteView knobs)."""
    state.interactive_quality, state.interactive_ratio = quality, ratio


def sending() -> bool:
    """Messages published (images) are still being written to the page's websocket."""
    from wslink.publish import publishManager

    return any(p.network_monitor.pending for p in publishManager.protocols)


#: What a colour legend draws in pixels: scaled with a reduced frame's size.
LEGEND_SIZES = ("TitleFontSize", "LabelFontSize", "ScalarBarThickness")
legend_sizes: dict[str, dict[str, int]] = {}  # each legend's own sizes (by its proxy's id)


def fit_overlays(ratio: float) -> None:
    """Draw the colour legends at ``ratio`` of their size (a reduced frame is smaller: the
    same fonts would cover much more of it); 1: their own size again."""
    if scene is None:
        return
    for representation in scene.view.Representations:
        if representation.GetXMLName() != "ScalarBarWidgetRepresentation":
            continue
        own = legend_sizes.setdefault(
            representation.GetGlobalIDAsString(),
            {name: int(getattr(representation, name)) for name in LEGEND_SIZES},
        )
        for name, value in own.items():
            setattr(representation, name, max(1, round(value * ratio)))
        if ratio >= 1:
            legend_sizes.pop(representation.GetGlobalIDAsString(), None)


frames = (
    Frames(
        scene.view,
        lambda: image_delivery,
        set_page_quality,
        ARGS.interactive_quality,
        ARGS.interactive_ratio,
        sending,
        fit_overlays,
    )
    if scene is not None
    else None
)
if scene is not None:
    scene.frames = frames


def poll() -> None:
    """Every ``--follow-interval`` seconds while following: add the complete new steps."""
    try:
        if scene is None or follower is None or not scene.values["follow"]:
            pass
        elif follower.check():
            sync_ui()
            push_image(keeps_geometry=False)
            broadcast({"op": "changed", "values": {"times": scene.times, **step_values()}})
    except Exception:  # a step that cannot be read now: look again next time
        traceback.print_exc()
    asyncio.get_event_loop().call_later(ARGS.follow_interval, poll)


def step_values() -> dict[str, Any]:
    """What another time step may change, for the kernel: its arrays (a solver's new steps
    may write more, see Scene.update_fields), the field shown and the colours' range."""
    assert scene is not None
    values = {k: scene.values[k] for k in ("time", "field", "component", "color_range")}
    return {"fields": scene.fields(), **values}


writers: set[asyncio.StreamWriter] = set()
applying = False  # set while the kernel's changes are copied into the UI state


def broadcast(message: dict[str, Any]) -> None:
    line = (json.dumps(message) + "\n").encode()
    for writer in list(writers):
        try:
            writer.write(line)
        except Exception:
            writers.discard(writer)


def push_image(keeps_geometry: bool = False) -> None:
    """Send the page the new picture: soon, after the changes pause; a reduced frame first
    when the geometry is the same (see pvframes.py)."""
    if frames is not None:
        frames.changed(keeps_geometry)


def sync_ui() -> None:
    """Copy the scene's values into the trame state without echoing them back to the kernel."""
    global applying
    if scene is None:
        return
    applying = True
    try:
        with state:
            state.fields = scene.fields()
            state.times = scene.times
            state.field = scene.values["field"]
            state.time_index = scene.values["time"]
    finally:
        applying = False


@state.change("field")
def _ui_field(field: str, **_: Any) -> None:
    if applying or scene is None or not field or field == scene.values["field"]:
        return
    scene.set_field(field)
    scene.field_chosen = True
    push_image(keeps_geometry=True)
    broadcast(
        {"op": "changed", "values": {"field": field, "color_range": scene.values["color_range"]}}
    )


@state.change("time_index")
def _ui_time(time_index: int, **_: Any) -> None:
    if applying or scene is None or time_index is None or int(time_index) == scene.values["time"]:
        return
    scene.set_time(int(time_index))
    push_image(keeps_geometry=False)
    sync_ui()  # (the step may have brought a first field)
    broadcast({"op": "changed", "values": step_values()})


camera_timer: asyncio.TimerHandle | None = None
last_camera: dict[str, Any] | None = None


def _camera_modified(*_: Any) -> None:
    """The camera moved (mouse in the browser, or the kernel): tell the kernel, debounced."""
    global camera_timer
    loop = asyncio.get_event_loop()
    if camera_timer is not None:
        camera_timer.cancel()
    camera_timer = loop.call_later(CAMERA_DEBOUNCE, _send_camera)


def _send_camera() -> None:
    global last_camera
    if scene is None:
        return
    camera = scene.camera()
    if camera != last_camera:
        last_camera = camera
        broadcast({"op": "changed", "values": {"camera": camera}})


def reset_camera() -> None:
    if scene is not None:
        simple.ResetCamera(scene.view)
        push_image(keeps_geometry=True)


# ------------------------------------------------------------------ control channel
def handle_request(name: str, args: dict[str, Any]) -> Any:
    if name == "ping":
        return {"error": startup_error}
    if scene is None:
        raise Fail(startup_error or "the scene is not loaded")
    if name == "describe" or name == "list":
        return scene.describe()
    if name == "set":
        for key, value in args.items():
            scene.set(key, value)
        sync_ui()
        if not set(args) <= FRAME_SETTINGS:  # (the answer goes out before the frames)
            push_image(keeps_geometry=set(args) <= KEEPS_GEOMETRY)
        return {"values": dict(scene.values, fields=scene.fields()), "camera": scene.camera()}
    if name == "partitions":
        return scene.partitions()
    if name == "pieces":
        return scene.pieces()
    if name == "reset_camera":
        simple.ResetCamera(scene.view)
        push_image(keeps_geometry=True)
        return scene.camera()
    if name == "screenshot":
        return scene.screenshot(
            args["path"], args.get("width", ARGS.width), args.get("height", ARGS.height)
        )
    if name == "filter":
        key = scene.add_filter(args["kind"], args.get("args") or {})
        sync_ui()
        push_image()
        return key
    if name == "filter_set":
        scene.set_filter(args["id"], args.get("args") or {})
        sync_ui()
        push_image()
        return None
    if name == "filter_remove":
        scene.remove_filter(args["id"])
        sync_ui()
        push_image()
        return None
    if name == "refresh":
        added = follower.check() if follower is not None else 0
        if added:
            sync_ui()
            push_image()
        return {"added": added, "times": scene.times, "values": dict(scene.values, **step_values())}
    if name == "frames":  # when the last images were rendered and sent (benchmarks)
        return list(frames.records) if frames is not None else []
    if name == "range":
        field = args.get("field") or scene.values["field"]
        return list(scene.field_range(field, args.get("component")))
    raise Fail(f"unknown request {name!r}")


async def serve_control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writers.add(writer)
    try:
        while line := await reader.readline():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("op") != "request":
                continue
            answer: dict[str, Any] = {"op": "answer", "id": message.get("id")}
            try:
                answer["value"] = handle_request(message.get("name", ""), message.get("args") or {})
                answer["ok"] = True
            except Fail as exc:
                answer.update(ok=False, error=str(exc))
            except Exception as exc:
                traceback.print_exc()
                answer.update(ok=False, error=f"{type(exc).__name__}: {exc}")
            writer.write((json.dumps(answer) + "\n").encode())
            await writer.drain()
    finally:
        writers.discard(writer)
        writer.close()


def send_stale_images_promptly() -> Any:
    """trame-vtk encodes images on a thread; when one is not ready right after a render it
    looks again only 100 ms later, and drops the image if it is still not ready then (seen
    under load: 1 change in 12-18 never reached the page). Look again every 10 ms, up to 5 s,
    sending the cached image without rendering again. Guarded: other trame-vtk versions keep
    their own behaviour. Returns that image delivery protocol (None if not found)."""
    for protocol in server.protocol.getLinkProtocols() if server.protocol else []:
        needed = ("render_stale_image", "push_render", "stale_handler_count", "last_stale_time")
        if not all(hasattr(protocol, name) for name in needed):
            continue
        protocol.delta_stale_time_before_render = 0.01
        protocol.stale_count_limit = 500

        def render_stale_image(view_id: Any, stale_count: int = 0, p: Any = protocol) -> None:
            if p.stale_handler_count.get(view_id, 0) > 0:
                p.stale_handler_count[view_id] -= 1
                if p.last_stale_time.get(view_id) and stale_count < p.stale_count_limit:
                    p.push_render(view_id, False, stale_count + 1)

        protocol.render_stale_image = render_stale_image
        return protocol
    return None


#: TCP mode: the session secret, handed over once in the URL, then kept in a cookie (nbviz's
#: one rule for such gates, run by path: this interpreter must not import the nbviz package).
SECRET = os.environ.get("NBVIZ_SECRET", "")
GATE = SimpleNamespace(**runpy.run_path(str(Path(__file__).resolve().parents[2] / "_gate.py")))


@ctrl.add("on_server_bind")
def _require_secret(wslink_server: Any) -> None:
    """On a TCP port every local user can connect: admit only holders of the session secret."""
    if ARGS.port is None:
        return  # a 0600 Unix socket behind Jupyter's login: nothing more to check
    from aiohttp import web

    @web.middleware
    async def check_secret(request: web.Request, handler: Any) -> web.StreamResponse:
        verdict = GATE.check(
            SECRET, request.path, request.query_string, request.headers.get("Cookie")
        )
        if verdict.location is not None:  # swap the query for the cookie
            headers = {"Location": verdict.location, "Set-Cookie": verdict.set_cookie}
            return web.Response(status=302, headers=headers)
        if verdict.admitted:
            return await handler(request)
        return web.Response(
            status=403,
            text="nbviz: this ParaView session admits only the notebook that started it "
            "(the per-session secret is missing or wrong)",
        )

    wslink_server.app.middlewares.append(check_secret)


@ctrl.add("on_server_ready")
def _on_server_ready(**_: Any) -> None:
    task = asyncio.get_event_loop().create_task(_serve_unix())
    task.add_done_callback(_report)


def warm_up() -> None:
    """Once idle, let ParaView decimate the geometry for the reduced frames (looked at every
    second: a new geometry, a time step or a filter, needs it again)."""
    if frames is not None:
        try:
            frames.warm_up()
        except Exception:
            traceback.print_exc()
    asyncio.get_event_loop().call_later(1.0, warm_up)


def _report(task: asyncio.Task[None]) -> None:
    if task.exception() is not None:
        log("error: could not serve:", repr(task.exception()))
        os._exit(3)


async def _serve_unix() -> None:
    from aiohttp import web

    if ARGS.socket:
        wslink_server = server._server  # not public API: the one place we reach into it
        site = web.UnixSite(wslink_server.runner, ARGS.socket)
        await site.start()
        os.chmod(ARGS.socket, 0o600)
        await wslink_server.site.stop()  # no TCP port stays open
    control = await asyncio.start_unix_server(serve_control, ARGS.control)
    os.chmod(ARGS.control, 0o600)
    if scene is not None:
        camera = scene.view.GetActiveCamera()
        camera.AddObserver("ModifiedEvent", _camera_modified)
    global image_delivery
    image_delivery = send_stale_images_promptly()
    if image_delivery is not None and frames is not None:
        frames.watch(image_delivery)
        frames.configure()  # (trame-vtk turned ParaView's level of detail off when it started)
        asyncio.get_event_loop().call_later(1.0, warm_up)
    asyncio.get_event_loop().call_later(ARGS.follow_interval, poll)
    log("serving on", ARGS.socket or f"127.0.0.1:{ARGS.port}", "control on", ARGS.control)
    del control


# ------------------------------------------------------------------ the UI
state.trame__title = ARGS.title
state.fields = scene.fields() if scene else []
state.times = scene.times if scene else []
state.field = scene.values["field"] if scene else ""
state.time_index = scene.values["time"] if scene else 0
state.startup_error = startup_error

page(server, ARGS.title, scene, reset_camera)  # (pvui.py)

if __name__ == "__main__":
    if ARGS.port is not None and not SECRET:
        sys.exit("nbviz: --port needs the session secret in NBVIZ_SECRET")
    server.start(
        host="127.0.0.1",
        port=ARGS.port or 0,
        open_browser=False,
        timeout=0,
        show_connection_info=False,
        disable_logging=True,
    )
