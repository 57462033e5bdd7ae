"""End to end: the installed `tokentop` in tmux, driven as a person would, then the DuckDB file."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


def tmux(*args: str, check: bool = True) -> str:
    out = subprocess.run(["tmux", *args], capture_output=True, text=True, check=check)
    return out.stdout


def capture(name: str) -> str:
    return tmux("capture-pane", "-p", "-t", name, check=False)


def exited(rc_file) -> bool:
    """The shell wrote its exit line (it creates the file before writing it)."""
    return rc_file.exists() and "EXIT=" in rc_file.read_text()


def wait_screen(name: str, predicate, timeout: float, what: str) -> str:
    end = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < end:
        screen = capture(name)
        if predicate(screen):
            return screen
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; screen was:\n{screen}")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")
def test_tokentop_in_tmux_stores_the_interactive_run(tokentop_cmd, cli_env, tmp_path, embedded_model_path):
    db = tmp_path / "e2e.duckdb"
    name = f"tokentop-e2e-{uuid.uuid4().hex[:8]}"
    env = dict(cli_env)
    env.setdefault("TERM", "xterm-256color")
    cmd = " ".join([*tokentop_cmd, "--db", str(db)]) + f"; echo EXIT=$? > {tmp_path / 'rc'}"
    tmux("new-session", "-d", "-s", name, "-x", "100", "-y", "30",
         *[a for k, v in env.items() if k in ("TOKENTOP_DATA_DIR", "TOKENTOP_CACHE_DIR", "PATH", "HOME", "TERM", "PYTHONPATH")
           for a in ("-e", f"{k}={v}")],
         cmd)
    try:
        # the first frame comes at once; the engine loads behind it with visible progress
        wait_screen(name, lambda s: "prompt" in s and "F1 Help" in s, 30, "the first frame")
        wait_screen(name, lambda s: "CPU" in s and "starting engine" not in s, 240, "the engine to be ready")
        tmux("send-keys", "-t", name, "-l", "Name three colours.")
        tmux("send-keys", "-t", name, "Enter")
        screen = wait_screen(name, lambda s: "stored run" in s, 120, "the answer, gauges and the stored run")
        assert "TTFT" in screen and "TPS (req)" in screen 
        tmux("send-keys", "-t", name, "q")  # quitting stores what finished
        wait_screen(name, lambda s: exited(tmp_path / "rc"), 60, "tokentop to exit")
        assert (tmp_path / "rc").read_text().strip() == "EXIT=0"
    finally:
        tmux("kill-session", "-t", name, check=False)

    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT r.run_id, r.kind, r.status, q.output_tokens, q.ttft_ms FROM runs r JOIN requests q USING (run_id)"
        ).fetchall()
    finally:
        con.close()
    assert len(rows) == 1, rows
    run_id, kind, status, tokens, ttft = rows[0]
    assert kind == "interactive" and status == "completed" and 0 < tokens <= 128 and ttft > 0


def _tree(pid: int) -> set[int]:
    import psutil

    try:
        proc = psutil.Process(pid)
        return {pid, *(c.pid for c in proc.children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()


def _alive(pids: set[int]) -> list[int]:
    import psutil

    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")
def test_killing_tmux_during_a_suite_stores_it_aborted_and_leaves_no_engine(tokentop_cmd, cli_env, tmp_path,
                                                                           embedded_model_path):
    """SIGHUP (tmux kill-session, an SSH drop): the suite stops, is stored as aborted with its finished
    requests, the engine shuts down and no process is left."""
    db = tmp_path / "hup.duckdb"
    name = f"tokentop-hup-{uuid.uuid4().hex[:8]}"
    env = dict(cli_env)
    env.setdefault("TERM", "xterm-256color")
    tmux("new-session", "-d", "-s", name, "-x", "100", "-y", "30",
         *[a for k, v in env.items() if k in ("TOKENTOP_DATA_DIR", "TOKENTOP_CACHE_DIR", "PATH", "HOME", "TERM", "PYTHONPATH")
           for a in ("-e", f"{k}={v}")],
         " ".join([*tokentop_cmd, "--db", str(db)]))
    pids: set[int] = set()
    try:
        pane_pid = int(tmux("display-message", "-p", "-t", name, "#{pane_pid}").strip())
        wait_screen(name, lambda s: "prompt" in s and "F1 Help" in s, 30, "the first frame")
        wait_screen(name, lambda s: "CPU" in s and "starting engine" not in s, 240, "the engine to be ready")
        # keyboard only, from the state the app opens in (the prompt has focus)
        tmux("send-keys", "-t", name, "F3")  # the F-keys work whatever has focus
        wait_screen(name, lambda s: "suite" in s and "short" in s, 20, "the Suite screen")
        tmux("send-keys", "-t", name, "r")
        two_done = re.compile(r"request ([3-9]|1[0-9])/30\b")  # the third request streams: two finished
        wait_screen(name, lambda s: two_done.search(s) is not None, 240, "two finished requests")
        pids = _tree(pane_pid)
        assert len(pids) >= 3, pids  # the shell, tokentop and the engine's process(es)
    finally:
        tmux("kill-session", "-t", name, check=False)
    end = time.monotonic() + 90
    while _alive(pids) and time.monotonic() < end:
        time.sleep(0.5)
    assert not _alive(pids), f"processes left after the hang-up: {_alive(pids)}"

    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        runs = con.execute("SELECT run_id, kind, status FROM runs").fetchall()
        (run_id, kind, status), = runs
        finished = con.execute("SELECT count(*) FROM requests WHERE run_id = ? AND success", [run_id]).fetchone()[0]
    finally:
        con.close()
    assert kind == "suite" and status == "aborted" and finished >= 2
