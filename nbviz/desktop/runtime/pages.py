"""The clients' web roots the launcher serves: Xpra's HTML5 client and noVNC, each as a
folder of symlinks to the installed files plus nbviz's own pages (``../web/``), and the
configuration and secrets files those programs read (standard library only).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .shared import NOVNC_DIR, say, write_private

XPRA_CONF_DIR = Path("/etc/xpra")
XPRA_WWW_DIR = Path("/usr/share/xpra/www")
#: Pages of Xpra's client that nbviz's web root has its own versions of.
OWN_PAGES = ("index.html", "connect.html")
#: Files of Xpra's client the launcher serves gzipped (from copies made once per user).
COMPRESSIBLE = (".js", ".css", ".html", ".json", ".svg", ".map", ".txt")

#: The clients' web additions, real .js and .html files (see each file's first lines).
WEB = Path(__file__).resolve().parents[1] / "web"


def asset(name: str) -> str:
    return (WEB / name).read_text(encoding="utf-8")


def xpra_page_script() -> str:
    """nbviz.js, which nbviz's copy of Xpra's ``index.html`` loads first: the focus guard (the
    page takes the keyboard only when asked, in a notebook's frame), then nbviz's additions."""
    return asset("focus-guard.js") + asset("xpra-page.js")


def novnc_page_script() -> str:
    """The ``<script>`` nbviz puts into its copy of noVNC's page: the focus guard, then the
    websocket path under the route (before noVNC's modules read their parameters)."""
    return "<script>\n" + asset("focus-guard.js") + asset("novnc-page.js") + "</script>\n"


def xpra_config(state: Path) -> Path:
    """A copy of the system Xpra config without the Xsession start command (it pops up an
    error window) and without the huge default virtual screen."""
    conf = state / "xpra-conf"
    shutil.copytree(XPRA_CONF_DIR, conf, ignore=shutil.ignore_patterns("*.pem"))
    for file in conf.rglob("*.conf"):
        lines = file.read_text().splitlines()
        kept = [
            line
            for line in lines
            if not line.strip().startswith(("start = /etc/X11/Xsession", "xvfb ="))
        ]
        if kept != lines:
            file.write_text("\n".join(kept) + "\n")
    return conf


def xpra_web_root(state: Path) -> Path:
    """Xpra's HTML5 client plus nbviz's page script, loaded first by ``index.html``.

    Every file is a symlink to Xpra's own except ``index.html``, a copy of Xpra's page with one
    ``<script>`` tag added (see :func:`xpra_page_script`), and ``connect.html``
    (``web/xpra-connect.html``). If the page has no ``<head>`` (an Xpra version nbviz
    does not know), Xpra's own directory is served unchanged. :func:`link_gzipped` adds
    gzipped copies next to the symlinks later.
    """
    page = (XPRA_WWW_DIR / "index.html").read_text()
    if "<head>" not in page:
        say(f"{XPRA_WWW_DIR / 'index.html'} has no <head>: serving Xpra's page unchanged")
        return XPRA_WWW_DIR
    web = state / "www"
    web.mkdir(mode=0o700)
    for folder, dirs, files in os.walk(XPRA_WWW_DIR, followlinks=True):
        here = web / Path(folder).relative_to(XPRA_WWW_DIR)
        for name in dirs:
            (here / name).mkdir()
        for name in files:
            if not (here == web and name.startswith(OWN_PAGES)):  # also not index.html.gz
                (here / name).symlink_to(Path(folder, name))
    (web / "nbviz.js").write_text(xpra_page_script())
    (web / "connect.html").write_text(asset("xpra-connect.html"))
    (web / "index.html").write_text(
        page.replace("<head>", '<head>\n<script src="nbviz.js"></script>', 1)
    )
    return web


def xpra_http_headers() -> dict[str, str]:
    """The headers Xpra sends with its files (``name=value`` lines in its http-headers
    directory: no caching)."""
    headers: dict[str, str] = {}
    folder = XPRA_WWW_DIR.parent / "http-headers"
    for file in sorted(folder.glob("*")) if folder.is_dir() else []:
        for line in file.read_text(errors="replace").splitlines():
            name, sep, value = line.strip().partition("=")
            if sep and not name.startswith("#"):
                headers[name.strip()] = value.strip()
    return headers


def gzipped_client() -> Path | None:
    """Gzipped copies of Xpra's client files (4 MB of JavaScript, 1.4 MB gzipped), made once
    per user and Xpra version in the user's cache directory.

    :class:`ClientHandler` sends ``file.gz`` to browsers that accept gzip. (Xpra's own server
    gzipped every file at level 9 on every request: about 0.2 s of its CPU per page load.)
    None when the cache cannot be written: the files then go uncompressed.
    """
    files = sorted(
        path
        for path in XPRA_WWW_DIR.rglob("*")
        if path.suffix in COMPRESSIBLE and path.is_file() and path.name not in OWN_PAGES
    )
    stamp = hashlib.sha256()
    for path in files:
        info = path.stat()
        stamp.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nbviz"
    done = cache / f"xpra-www-gz-{stamp.hexdigest()[:16]}"
    if done.is_dir():
        return done
    try:
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".xpra-www-gz-", dir=cache))
        for path in files:
            target = work / f"{path.relative_to(XPRA_WWW_DIR)}.gz"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(gzip.compress(path.read_bytes(), 9, mtime=0))
        try:
            os.rename(work, done)
        except OSError:  # another desktop made it meanwhile
            shutil.rmtree(work, ignore_errors=True)
    except OSError as exc:
        say(f"no gzipped copy of Xpra's client ({exc}); its files go uncompressed")
        return None
    return done


def link_gzipped(web: Path) -> None:
    """Link the gzipped copies of :func:`gzipped_client` into the web root ``web``, next to
    the files that are Xpra's own (symlinks; not nbviz's pages)."""
    gzipped = gzipped_client()
    if gzipped is None or web == XPRA_WWW_DIR:
        return
    for path in gzipped.rglob("*.gz"):
        link = web / path.relative_to(gzipped)
        if link.with_suffix("").is_symlink() and not link.exists():
            link.symlink_to(path)


def vnc_password_file(state: Path, password: str) -> Path:
    """TigerVNC's obfuscated password file, written by ``vncpasswd -f`` from stdin."""
    vncpasswd = shutil.which("vncpasswd")
    if vncpasswd is None:
        raise SystemExit("nbviz: vncpasswd not found; install it (apt-get install tigervnc-tools)")
    out = subprocess.run(
        [vncpasswd, "-f"], input=password.encode(), capture_output=True, check=True
    ).stdout
    path = state / "passwd"
    write_private(path, out)
    return path


def novnc_web_root(state: Path) -> Path:
    """noVNC's files plus nbviz's start page ``nbviz.html``: noVNC's ``vnc.html`` with
    :func:`novnc_page_script` (or, for a ``vnc.html`` nbviz does not know, a page that
    forwards to it)."""
    web = state / "web"
    web.mkdir(mode=0o700)
    for entry in NOVNC_DIR.iterdir():
        (web / entry.name).symlink_to(entry)
    page = (NOVNC_DIR / "vnc.html").read_text() if (NOVNC_DIR / "vnc.html").is_file() else ""
    if "<head>" in page:
        (web / "nbviz.html").write_text(page.replace("<head>", "<head>\n" + novnc_page_script(), 1))
    else:
        (web / "nbviz.html").write_text(asset("novnc-start.html"))
    return web
