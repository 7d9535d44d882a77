"""``nbviz dashboard notebook.ipynb``: a notebook as a Voilà dashboard, with nbviz's route.

Standalone ``voila notebook.ipynb`` runs its own small web server, which serves neither nbviz's
route nor jupyter-server-proxy's: a frame there could only load a backend directly. This command
runs a Jupyter server instead, with Voilà's server extension (``{base}voila/render/<nb>``) and
nbviz's (``{base}nbviz/<session>/``) enabled, and makes the dashboard its default page: the
URL it prints (and opens) shows the notebook as a dashboard, backends included. The server is
protected by Jupyter's token like any Jupyter server.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from urllib.parse import quote

#: Server extensions the dashboard needs, whatever the installed config enables.
EXTENSIONS = ("voila.server_extension", "nbviz.serverext")
ROOT_DIR_OPTION = "--ServerApp.root_dir="


def server_argv(notebook: Path, args: argparse.Namespace) -> list[str]:
    """Command-line options of the Jupyter server that serves ``notebook`` as a dashboard."""
    given = [a for a in args.server_args if a.startswith(ROOT_DIR_OPTION)]  # the user's wins
    root_dir = given[-1][len(ROOT_DIR_OPTION) :] if given else args.root_dir
    root = Path(root_dir).resolve() if root_dir else notebook.parent
    try:
        relative = notebook.relative_to(root)
    except ValueError:
        raise SystemExit(f"nbviz: {notebook} is not inside the root dir {root}") from None
    argv = [
        *([] if given else [f"{ROOT_DIR_OPTION}{root}"]),
        f"--ServerApp.default_url=/voila/render/{quote(relative.as_posix())}",
        *(f"--ServerApp.jpserver_extensions={name}=True" for name in EXTENSIONS),
    ]
    if args.port is not None:
        argv.append(f"--ServerApp.port={args.port}")
    if args.ip:
        argv.append(f"--ServerApp.ip={args.ip}")
    if args.base_url:
        argv.append(f"--ServerApp.base_url={args.base_url}")
    if args.no_browser:
        argv.append("--ServerApp.open_browser=False")
    return [*argv, *args.server_args]


def dashboard(args: argparse.Namespace) -> int:
    notebook = Path(args.notebook).resolve()
    if not notebook.is_file():
        print(f"nbviz: notebook not found: {args.notebook}", file=sys.stderr)
        return 2
    missing = [m for m in ("voila", "jupyter_server") if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"nbviz: {' and '.join(missing)} not installed; run `pip install 'nbviz[voila]'`",
            file=sys.stderr,
        )
        return 2
    from jupyter_server.serverapp import ServerApp

    print(f"nbviz: serving {notebook.name} as a Voilà dashboard (stop with Control-C)")
    ServerApp.launch_instance(argv=server_argv(notebook, args))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "dashboard",
        help="serve a notebook as a Voilà dashboard, with nbviz's route",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("notebook", help="the notebook (.ipynb) to show as a dashboard")
    parser.add_argument("--port", type=int, help="port of the server (default: Jupyter's, 8888)")
    parser.add_argument("--ip", help="address to listen on (default: Jupyter's, localhost)")
    parser.add_argument("--base-url", help="base URL of the server (default /)")
    parser.add_argument(
        "--root-dir", help="directory the server serves (default: the notebook's directory)"
    )
    parser.add_argument("--no-browser", action="store_true", help="don't open a browser")
    parser.add_argument(
        "server_args",
        nargs="*",
        metavar="-- SERVER_OPTION",
        help="further Jupyter server options after --, e.g. -- --IdentityProvider.token=...",
    )
    parser.set_defaults(func=dashboard)
