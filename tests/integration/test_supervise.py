"""nbviz/_runtime/supervise.py: the supervisor of what nbviz runs outside the kernel, with real
child processes, in a launcher run by path as nbviz runs them (never in the test process: a
supervisor makes its process a subreaper)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil

from nbviz._runtime import supervise

# A launcher run by path, as the desktop's: its supervisor's children, then what it says.
LAUNCHER = """
import sys, subprocess
sys.path.insert(0, {runtime!r})
import supervise
sup = supervise.Supervisor(lambda line: print("launcher:", line, flush=True), gone="it is over")
def flaky():
    sup.spawn("flaky", [sys.executable, "-c", "raise SystemExit(3)"], essential=False,
              restart=flaky, restarts=2)
flaky()
sup.spawn("worker", [sys.executable, "-c", "import time; time.sleep(1.0); raise SystemExit(7)"],
          essential=True)
# a child that leaves a grandchild behind in a session of its own, then exits
sup.spawn("starter", [sys.executable, "-c",
          "import subprocess, sys; subprocess.Popen([sys.executable, '-c', "
          "'import time; time.sleep(60)'], start_new_session=True)"],
          essential=False)
code = sup.watch()
sup.end_all(grace=1)
print("watch returned", code, flush=True)
"""


def test_essential_restarts_and_leftovers(tmp_path: Path) -> None:
    runtime = str(Path(supervise.__file__).parent)
    script = tmp_path / "launcher.py"
    script.write_text(LAUNCHER.format(runtime=runtime))
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-S", str(script)], capture_output=True, text=True, timeout=60
    ).stdout
    lines = out.splitlines()
    # the non-essential child: logged, started again twice, then left ended
    assert lines.count("launcher: flaky exited (code 3)") == 3, out
    assert lines.count("launcher: starting the flaky again") == 2, out
    # the essential one ends the session, with the agreed last line
    assert "launcher: nbviz-exit: nbviz: worker exited (code 7); it is over" in lines, out
    assert lines[-1] == "watch returned 1"
    assert time.monotonic() - started < 30
    # the grandchild that moved to a session of its own was adopted and ended
    assert not [
        p
        for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"] and "time.sleep(60)" in " ".join(p.info["cmdline"])
    ], "a leftover of the launcher's children still runs"
