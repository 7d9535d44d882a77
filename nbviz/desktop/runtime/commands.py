"""The command lines of the desktop's programs: Xvfb (under Xpra), ``xpra start-desktop``,
TigerVNC's Xvnc (pure: arguments in, argv out; the launcher starts them).
"""

from __future__ import annotations

from pathlib import Path

from .shared import MIN_FRAMEBUFFER

XPRA_QUIET = [
    "--daemon=no",
    "--systemd-run=no",
    "--pulseaudio=no",
    "--notifications=no",
    "--mdns=no",
    "--webcam=no",
    "--printing=no",
    "--speaker=disabled",  # "off" still loads and probes the sound subsystem
    "--microphone=disabled",
    "--av-sync=no",
    "--mmap=no",  # the HTML5 client cannot use it
    "--opengl=noprobe",  # the probe (for client info only) took 0.5 s of every start
    # No video encoders (x264, vpx, ffmpeg): 40 MB less and no slower here (see
    # benchmarks/RESULTS.md); jpeg, png, webp and rgb remain.
    "--video-encoders=none",
    "--csc-modules=none",
    "--video-decoders=none",
    "--dbus-launch=",
    "--dbus-proxy=no",
    "--dbus-control=no",
    "--file-transfer=no",
    "--clipboard=no",  # else Xpra owns the X clipboard and stalls readers with no client
    "--open-files=no",
    "--resize-display=no",
]


def gl_arguments(gl: bool) -> list[str]:
    """X server arguments for OpenGL (GLX) on the desktop, or none.

    GLX loads Mesa's software renderer and LLVM into the X server: about 50 MB of its RSS
    (Xvfb 69 MB with GLX, 15 MB without). Programs that need OpenGL (ParaView's GUI) fail
    on a display without it ("GLX" missing)."""
    return ["+extension", "GLX"] if gl else ["-extension", "GLX"]


def xvfb_argv(
    xvfb: str,
    write_fd: int,
    number: int | None,
    size: tuple[int, int],
    gl: bool,
    env: dict[str, str],
) -> list[str]:
    """Xvfb on display ``:number`` (None: it picks a free one and writes it to ``write_fd``),
    its framebuffer at least :data:`MIN_FRAMEBUFFER` so the screen can grow to the frame."""
    width, height = size
    fb_w, fb_h = max(width, MIN_FRAMEBUFFER[0]), max(height, MIN_FRAMEBUFFER[1])
    where = [f":{number}"] if number is not None else []
    return [
        xvfb,
        *where,
        "-displayfd",
        str(write_fd),
        "+extension",
        "Composite",
        "+extension",
        "RANDR",
        *gl_arguments(gl),
        "-screen",
        "0",
        f"{fb_w}x{fb_h}x24+32",
        "-dpi",
        "96",
        "-nolisten",
        "tcp",
        "-noreset",
        "-auth",
        env["XAUTHORITY"],
    ]


def xpra_argv(
    xpra: str,
    display: str,
    xpra_socket: str,
    web_root: Path,
    state: Path,
    encryption: str | None,
    keyfile: Path | None,
) -> list[str]:
    """``xpra start-desktop`` on the launcher's X server (``--use-display``; Xpra waits for the
    display to answer), its websocket on ``xpra_socket``; with ``encryption``, the AES key in
    ``keyfile``."""
    argv = [
        xpra,
        "start-desktop",
        display,
        "--use-display=yes",
        f"--bind={xpra_socket}",
        f"--html={web_root}",
        "--sharing=yes",  # a page reloaded or shown in a second cell attaches alongside
        f"--socket-dirs={state}",
        *XPRA_QUIET,
    ]
    if encryption and keyfile is not None:
        # Xpra 3.1 applies the "tcp" encryption options to every websocket, also those on
        # the Unix socket; a client without the key is refused ("missing encryption tokens").
        argv += [
            f"--tcp-encryption={encryption}",
            f"--tcp-encryption-keyfile={keyfile}",
        ]
    return argv


def xvnc_argv(
    xvnc: str,
    write_fd: int,
    display: int | None,
    size: tuple[int, int],
    gl: bool,
    env: dict[str, str],
    *,
    rfb: Path,
    passwd: Path,
) -> list[str]:
    """TigerVNC's Xvnc on display ``:display`` (None: it picks one and writes it to
    ``write_fd``), its RFB on the private Unix socket ``rfb`` (0600), VncAuth with the
    password file ``passwd``, no TCP."""
    width, height = size
    where = [f":{display}"] if display is not None else []
    return [
        xvnc,
        *where,
        "-displayfd",
        str(write_fd),
        "-geometry",
        f"{width}x{height}",
        "-depth",
        "24",
        "-rfbport",
        "-1",
        "-rfbunixpath",
        str(rfb),
        "-rfbunixmode",
        "0600",
        "-SecurityTypes",
        "VncAuth",
        "-PasswordFile",
        str(passwd),
        "-nolisten",
        "tcp",
        "-noreset",  # a reset when the last client leaves races the next client's auth
        "-auth",
        env["XAUTHORITY"],
        "-desktop",
        "nbviz",
        *gl_arguments(gl),
    ]
