"""What every benchmark script shares: a clean end on SIGTERM, and where its results go."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwind, so that the finally blocks stop what we started


def end_cleanly_on_sigterm() -> None:
    """SIGTERM (a timeout, a Ctrl-C'd make) unwinds like an exception: the benchmark's
    ``finally`` blocks stop the servers and backends it started."""
    signal.signal(signal.SIGTERM, _terminate)


def show(header: str, lines: list[str], left: list[str] | None = None) -> None:
    """Print the run's header and tables (and, when given, what was left running after it)."""
    print()
    print(header)
    print()
    print("\n".join(lines))
    if left is not None:
        print(f"\nleft running: {', '.join(left) if left else 'nothing'}")


def write_results(out: Path, report: dict[str, Any], markdown: str) -> Path:
    """The JSON report at ``out`` and the Markdown tables beside it (``.md``); the latter."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    tables = out.with_suffix(".md")
    tables.write_text(markdown.rstrip("\n") + "\n")
    return tables
