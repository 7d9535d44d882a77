"""nbviz's ParaView app: its command line, and what all its parts share (Fail, log).

Runs *inside pvpython* (a part of ``pvapp.py``, imported relatively); imports nothing of the
nbviz package.
"""

from __future__ import annotations

import argparse
import sys

# ParaView parses sys.argv on import: parse ours first, then hide them.
parser = argparse.ArgumentParser()
where = parser.add_mutually_exclusive_group(required=True)
where.add_argument("--socket", help="serve the page on this Unix socket (nbviz's route)")
where.add_argument("--port", type=int, help="serve on 127.0.0.1:PORT; needs NBVIZ_SECRET")
parser.add_argument("--control", required=True)
parser.add_argument("--data", nargs="+", required=True)
parser.add_argument("--title", default="ParaView")
parser.add_argument("--width", type=int, default=1280)
parser.add_argument("--height", type=int, default=800)
parser.add_argument("--spacing", type=float, nargs=3, default=(1.0, 1.0, 1.0))
parser.add_argument("--origin", type=float, nargs=3, default=(0.0, 0.0, 0.0))
parser.add_argument("--array-name", default="values")
parser.add_argument("--ranks", type=int, default=0, help="run the data on an MPI pvserver")
parser.add_argument("--connect-id", type=int, default=0)
parser.add_argument("--pvserver", default="pvserver")
parser.add_argument("--launcher", default="mpiexec -n {ranks}", help="starts the ranks")
parser.add_argument("--case-type", default="auto", choices=["auto", "reconstructed", "decomposed"])
parser.add_argument("--regions", nargs="+", help="the parts of an OpenFOAM case to show")
parser.add_argument("--follow", action="store_true", help="pick up time steps as they are written")
parser.add_argument("--follow-interval", type=float, default=1.0, help="seconds between looks")
parser.add_argument("--settle", type=float, default=0.5, help="a new file's quiet time")
parser.add_argument("--glob", help="the pattern the --data files matched (new matches are steps)")
parser.add_argument("--interactive-quality", type=int, default=60, help="reduced frames: JPEG")
parser.add_argument("--interactive-ratio", type=float, default=0.5, help="reduced frames' scale")
ARGS = parser.parse_args()
sys.argv = sys.argv[:1]


class Fail(Exception):
    """An error the kernel shows to the user as it is."""


def log(*parts: object) -> None:
    print("nbviz-paraview:", *parts, flush=True)
