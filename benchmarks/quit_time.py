"""How long `tokentop` takes to quit at idle: from the quit key to the process's exit.

The app runs in tmux (a real terminal, as a user has it) on the embedded engine. Each round starts a
fresh app, waits until the engine is ready and the app has sat idle for a moment, presses the quit key
and times until the shell after it prints the clock. Prints every round and the median.

    .venv/bin/python benchmarks/quit_time.py [--rounds 5] [--key F10] [--idle 2]

Not a quiet-machine benchmark: the figure is seconds, and what it shows (waits on the engine's shutdown)
does not depend on the machine being otherwise idle. Needs tmux.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASS_ENV = ("TOKENTOP_DATA_DIR", "TOKENTOP_CACHE_DIR", "PATH", "HOME", "TERM", "PYTHONPATH", "HF_HOME",
            "HF_HUB_CACHE")


def tmux(*args: str, check: bool = True) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=check).stdout


def wait_for(predicate, timeout: float, what: str, name: str) -> str:
    end = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < end:
        screen = tmux("capture-pane", "-p", "-t", name, check=False)
        if predicate(screen):
            return screen
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}; screen:\n{screen}")


def one_round(tokentop: list[str], key: str, idle_s: float, workdir: Path) -> tuple[float, float]:
    """(seconds from the quit key to the process's exit, seconds the engine took to start)."""
    name = f"tokentop-quit-{uuid.uuid4().hex[:8]}"
    db = workdir / f"{name}.duckdb"
    clock = workdir / f"{name}.exit"
    env = dict(os.environ)
    env.setdefault("TERM", "xterm-256color")
    env.setdefault("TOKENTOP_DATA_DIR", str(workdir / "data"))
    cmd = " ".join([*tokentop, "--db", str(db)]) + f"; date +%s.%N > {clock}"
    tmux("new-session", "-d", "-s", name, "-x", "80", "-y", "24",
         *[a for k, v in env.items() if k in PASS_ENV for a in ("-e", f"{k}={v}")], cmd)
    try:
        t_start = time.time()
        wait_for(lambda s: "F1 Help" in s, 60, "the first frame", name)
        wait_for(lambda s: "CPU" in s.splitlines()[0] and "starting" not in s.splitlines()[0], 300,
                 "the engine to be ready", name)
        started = time.time() - t_start
        time.sleep(idle_s)  # idle: nothing runs
        t0 = time.time()
        tmux("send-keys", "-t", name, key)
        end = time.monotonic() + 120
        while not (clock.exists() and clock.read_text().strip()) and time.monotonic() < end:
            time.sleep(0.02)
        if not clock.exists():
            raise SystemExit("tokentop did not exit within 120 s of the quit key")
        return float(clock.read_text().strip()) - t0, started
    finally:
        tmux("kill-session", "-t", name, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--key", default="F10", help="the quit key as tmux names it (F10, q, C-q)")
    parser.add_argument("--idle", type=float, default=2.0, help="seconds of idle before quitting")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        print("needs tmux", file=sys.stderr)
        return 2
    exe = Path(sys.executable).parent / "tokentop"
    tokentop = [str(exe)] if exe.exists() else [sys.executable, "-m", "tui.cli"]
    quits = []
    with tempfile.TemporaryDirectory(prefix="tokentop-quit-") as tmp:
        for i in range(args.rounds):
            quit_s, start_s = one_round(tokentop, args.key, args.idle, Path(tmp))
            quits.append(quit_s)
            print(f"round {i + 1}: engine ready after {start_s:.1f} s; quit ({args.key}) -> exit {quit_s:.2f} s",
                  flush=True)
    print(f"median quit time at idle over {len(quits)} rounds: {statistics.median(quits):.2f} s "
          f"(min {min(quits):.2f}, max {max(quits):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
