"""An ASGI app (Starlette, served by uvicorn) that builds its URLs from ASGI's ``root_path``, as
FastAPI and Starlette apps do behind a proxy that strips a prefix (``uvicorn --root-path``).

``/`` shows the root path, the path the app routed and a link built with ``url_for``;
``/go`` redirects to the other page's full URL (``url_for``), ``/go-path`` to its path (which
carries the root path); ``/ws`` echoes websocket messages.
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket


async def index(request: Request) -> Response:
    link = request.url_for("other").path
    return HTMLResponse(
        f'<p id="root">{request.scope.get("root_path")}</p>'
        f'<p id="routed">{request.scope["path"]}</p><a id="other" href="{link}">other</a>'
    )


async def other(_request: Request) -> Response:
    return PlainTextResponse("the other page")


async def go(request: Request) -> Response:
    return RedirectResponse(request.url_for("other"))  # a full URL, as FastAPI apps redirect


async def go_path(request: Request) -> Response:
    return RedirectResponse(request.url_for("other").path)


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for message in websocket.iter_text():
        await websocket.send_text(message)


app = Starlette(
    routes=[
        Route("/", index),
        Route("/other", other, name="other"),
        Route("/go", go),
        Route("/go-path", go_path),
        WebSocketRoute("/ws", echo),
    ]
)
