"""End to end: the installed `tokentop` in tmux, driven as a person would, then the DuckDB file."""

from __future__ import annotations

import re
import shutil
import time
import uuid

import pytest

from tests.support.tmux import exited, new_session, tmux, wait_screen
from tests.support.wait import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")
def test_tokentop_in_tmux_stores_the_interactive_run(tokentop_cmd, cli_env, tmp_path, embedded_model_path):
    db = tmp_path / "e2e.duckdb"
    name = f"tokentop-e2e-{uuid.uuid4().hex[:8]}"
    env = dict(cli_env)
    env.setdefault("TERM", "xterm-256color")
    cmd = " ".join([*tokentop_cmd, "--db", str(db)]) + f"; echo EXIT=$? > {tmp_path / 'rc'}"
    new_session(name, cmd, env)
    try:
        # the first frame comes at once; the engine loads behind it with visible progress
        wait_screen(name, lambda s: "prompt" in s and "F1 Help" in s, 30, "the first frame")
        wait_screen(name, lambda s: "CPU" in s and "starting engine" not in s, 240, "the engine to be ready")
        tmux("send-keys", "-t", name, "-l", "Name three colours.")
        tmux("send-keys", "-t", name, "Enter")
        screen = wait_screen(name, lambda s: "stored run" in s, 120, "the answer, gauges and the stored run")
        assert "TTFT" in screen and "TPS (req)" in screen
        tmux("send-keys", "-t", name, "F10")  # quitting stores what finished (a `q` on Live goes to the prompt)
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
    new_session(name, " ".join([*tokentop_cmd, "--db", str(db)]), env)
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
    wait_until(lambda: not _alive(pids), 90, step=0.5, quiet=True)  # asserted below
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


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")
def test_the_first_hour_at_80x24(tokentop_cmd, cli_env, tmp_path, embedded_model_path):
    """A new user's first hour in an 80x24 terminal, keyboard only: the start-up steps, a prompt, a suite,
    a load started and stopped with Ctrl+X from a form field, History, Compare's SLO typed into its field,
    quit. No screen on the way shows a number cut to '…'; quitting takes seconds; the database holds each run."""
    from tests.support.first_hour_support import cut_numbers

    db = tmp_path / "first.duckdb"
    suite = tmp_path / "tiny.toml"
    suite.write_text('reps = 1\n[[cases]]\nid = "hi"\nprompt = "Say hi."\noutput_tokens = 8\n'
                     '[[cases]]\nid = "story"\nprompt = "Tell a story."\noutput_tokens = 24\n')
    name = f"tokentop-first-{uuid.uuid4().hex[:8]}"
    clock = tmp_path / "exit"
    env = dict(cli_env)
    env.setdefault("TERM", "xterm-256color")
    cmd = " ".join([*tokentop_cmd, "--db", str(db)]) + f"; echo $? $(date +%s.%N) > {clock}"
    new_session(name, cmd, env, 80, 24)
    seen: list[str] = []

    def look(predicate, timeout, what) -> str:
        screen = wait_screen(name, predicate, timeout, what)
        seen.append(screen)
        assert not cut_numbers(screen), (what, cut_numbers(screen), screen)
        return screen

    def flat(screen: str) -> str:  # wrapped lines joined: a value that wraps is still whole
        return " ".join(line.strip() for line in screen.splitlines())

    def keys(*k: str) -> None:
        tmux("send-keys", "-t", name, *k)

    try:
        look(lambda s: "prompt" in s and "F1 Help" in s, 30, "the first frame")
        # At 80 columns the top line names the start-up step and its seconds, not just "starting".
        first = look(lambda s: re.search(r"(importing vLLM|loading the model|warming up|preparing the model) \d+ s",
                                         s.splitlines()[0]), 240, "a start-up step on the top line")
        assert "starting" in first.splitlines()[0]
        look(lambda s: "CPU" in s.splitlines()[0] and "starting" not in s.splitlines()[0], 300, "the engine")

        tmux("send-keys", "-t", name, "-l", "Name three colours.")
        keys("Enter")
        look(lambda s: "stored run" in s, 120, "the answer and the stored run")

        keys("F3")
        look(lambda s: "seed:" in s, 20, "the Suite screen")
        # `s` puts the cursor in the suite field whatever has focus: counting Shift+Tabs from the table raced
        # the screen's auto-focus on a loaded machine (the keys came first and landed in the answer pane).
        keys("s")
        tmux("send-keys", "-t", name, "-l", str(suite))
        look(lambda s: "tiny: hi 8, story 24 tok" in s, 20, "the tiny suite in the suite field")
        keys("Enter")
        done = look(lambda s: "completed: 2/2 requests · run" in flat(s), 180, "the suite to finish")
        run_id = re.search(r"run (\d{8}-\d{6}-[0-9a-f]{6})", flat(done)).group(1)  # the whole id, not cut

        keys("F6")
        look(lambda s: "pattern" in s and "levels" in s, 20, "the Load screen")
        keys("Tab")  # the levels field
        tmux("send-keys", "-t", name, "-l", "1")
        keys("C-r")  # start from the field: 10 requests of 128 tokens at concurrency 1
        look(lambda s: re.search(r"done [2-9]", s) is not None, 180, "two finished load requests")
        keys("C-x")  # stop, the cursor still in the levels field
        stopped = look(lambda s: "stopped:" in s, 60, "the load to stop")
        assert re.search(r"failed 0\b", stopped), stopped  # unsent requests are not failures

        keys("F4")
        history = look(lambda s: run_id in s or "suite" in s, 30, "History")
        assert "b1 TPS" in history and "user tok/s" in history

        keys("F7")
        # loaded: the matrix's header row is there (the title says "Compare — your runs … loading…" only until then)
        look(lambda s: "Matrix  SLO  Frontier" in s and "GPU  provider" in s and "loading…" not in s, 30, "Compare")
        keys("o")
        look(lambda s: "SLO ms" in s, 30, "the SLO tab, the cursor in its field")
        tmux("send-keys", "-t", name, "-l", "ttft=4000,tpot=80")  # t, f, p, q would be shortcuts elsewhere
        keys("Enter")
        slo = look(lambda s: "TTFT ≤ 4000 ms" in s, 30, "the SLO typed into its field")
        assert "Compare" in slo

        t0 = time.time()
        keys("F10")
        wait_screen(name, lambda s: clock.exists() and clock.read_text().strip(), 60, "tokentop to exit")
        code, when = clock.read_text().split()
        assert code == "0"
        assert float(when) - t0 < 6, float(when) - t0  # ~2 s here (benchmarks/quit_time.py); was 8-10 s
    finally:
        tmux("kill-session", "-t", name, check=False)

    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        kinds = dict(con.execute("SELECT kind, status FROM runs").fetchall())
        load_requests = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE NOT q.success AND q.error <> 'aborted') FROM requests q "
            "JOIN runs USING (run_id) WHERE kind = 'load'").fetchone()
    finally:
        con.close()
    assert kinds == {"interactive": "completed", "suite": "completed", "load": "aborted"}, kinds
    assert load_requests[1] == 0 and load_requests[0] < 10  # no failures, no rows for requests never sent


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")
def test_run_summary_scrolls_to_its_last_line_and_a_burst_types_in_order_at_80x24(tokentop_cmd, cli_env, tmp_path):
    """Issue 24, in a real terminal at 80x24 (no vLLM: a scripted OpenAI server on loopback, a database
    seeded with tests/support/tui_support.py's runs). The run detail's Summary scrolls to its last line from the
    keyboard (End, PgDn; everything below `host` was out of reach), and keys tmux sends in one burst reach
    the Live prompt in the order typed (`hello`, Left, Left, `X` gave `helloX`)."""
    from tests.support.fake_openai import Reply, ScriptServer, completion, timed, usage_only
    from tests.support.tui_support import fixed_store

    db = tmp_path / "seeded.duckdb"
    fixed_store(db).close()  # the newest run (History's first row): an interactive run on a laptop CPU
    reply = Reply(timed([(5, completion("Red, green, blue.")), (10, usage_only(4))]))
    name = f"tokentop-scroll-{uuid.uuid4().hex[:8]}"
    env = dict(cli_env)
    env.setdefault("TERM", "xterm-256color")
    with ScriptServer([reply]) as server:
        cmd = " ".join([*tokentop_cmd, "--engine", "openai", "--endpoint", server.url, "--db", str(db)])
        cmd += f"; echo EXIT=$? > {tmp_path / 'rc'}"
        new_session(name, cmd, env, 80, 24)

        def keys(*k: str) -> None:
            tmux("send-keys", "-t", name, *k)

        try:
            wait_screen(name, lambda s: "prompt" in s and "F1 Help" in s, 60, "the first frame")
            # One send-keys: tmux writes the letters and the editing keys to the terminal in one go.
            keys("h", "e", "l", "l", "o", "Left", "Left", "X", "Home", "Z")
            wait_screen(name, lambda s: "ZhelXlo" in s, 20, "the burst typed in order in the prompt")
            keys("C-u", "Escape", "F4")
            wait_screen(name, lambda s: "runs 3/3" in s, 30, "History")
            keys("Enter")
            detail = wait_screen(name, lambda s: "Summary" in s and "host" in s, 30, "the run's Summary")
            assert "env vllm" not in detail  # at 80x24 the end of the Summary is below the screen
            keys("End")
            wait_screen(name, lambda s: "env vllm" in s, 20, "the Summary's last line after End")
            keys("Home")
            wait_screen(name, lambda s: "env vllm" not in s and "run " in s, 20, "the Summary's top after Home")
            keys("PageDown", "PageDown", "PageDown", "PageDown")
            wait_screen(name, lambda s: "env vllm" in s, 20, "the Summary's last line after PgDn")
            keys("F10")
            wait_screen(name, lambda s: exited(tmp_path / "rc"), 60, "tokentop to exit")
        finally:
            tmux("kill-session", "-t", name, check=False)
