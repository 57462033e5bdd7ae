"""One database, many processes: writers in two processes at once, the CLI and a bench on the
database of an open app, and a lock held past the retry limit (exit 2, one line naming the holder)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from data.store.database import Store, StoreError
from data.store.recorder import RunRecorder
from engine.measure.metrics import request_metrics
from tests.support.concurrent_writer import record_run, synthetic
from tests.support.loopback import fast_sse_server
from tests.support.tmux import exited, new_session, tmux, wait_screen
from tests.support.tui_support import TINY_SUITE

ROOT = Path(__file__).resolve().parents[2]

# Holds the file the way a writing process does (an open read-write connection inside a transaction)
# until its stdin closes.
HOLDER = (
    "import duckdb, sys; con = duckdb.connect(sys.argv[1]); con.execute('BEGIN'); "
    "con.execute('SELECT count(*) FROM runs').fetchall(); print('held', flush=True); sys.stdin.read()"
)


def start_holder(db: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def release(holder: subprocess.Popen) -> None:
    holder.stdin.close()
    holder.wait(timeout=30)


def start_writer(db: Path, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.concurrent_writer", str(db), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def writer_result(proc: subprocess.Popen, timeout: float = 180) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_two_processes_record_into_one_database_at_once(db_path):
    Store(db_path).close()
    child = start_writer(db_path, "--runs", "12", "--requests", "8")
    store = Store(db_path)
    mine = []
    for _ in range(12):
        mine.append(record_run(store, 8, 50, "parent"))
        store.list_runs()  # and reads in between, as History does
    store.close()
    theirs = writer_result(child)
    assert theirs["errors"] == []
    with Store(db_path) as s:
        runs = {r["run_id"]: r for r in s.list_runs()}
        chunks = s.query("SELECT count(*) AS n FROM chunks")[0]["n"]
    assert len(runs) == 24
    for run_id in mine + theirs["run_ids"]:
        assert runs[run_id]["status"] == "completed" and runs[run_id]["requests"] == 8
    assert chunks == 24 * 8 * 50


def test_recording_goes_on_while_another_process_holds_the_database(db_path):
    store = Store(db_path)
    holder = start_holder(db_path)
    try:
        rec = RunRecorder(store)
        run_id = rec.start(kind="suite", engine_description={"engine": "test"}, environment={"device": "CPU"})
        for i in range(20):  # returns at once: the rows wait in memory, not the measurement
            r = synthetic(i, 30)
            rec.record(i, r, request_metrics(r))
        with pytest.raises(StoreError) as err:
            rec.flush(timeout=1.5)
        message = str(err.value)
        assert f"process {holder.pid}" in message and "20 request(s)" in message and "\n" not in message
    finally:
        release(holder)
    rec.finish("completed", duration_s=1.0)  # the buffered rows are written now
    run = store.get_run(run_id)
    assert run["status"] == "completed"
    assert len(store.get_requests(run_id)) == 20
    assert len(store.get_chunks(run_id)) == 20 * 30
    store.close()


def test_a_lock_held_past_the_limit_is_exit_2_naming_the_holder(db_path, tokentop_cmd, cli_env):
    Store(db_path).close()
    holder = start_holder(db_path)
    try:
        out = subprocess.run([*tokentop_cmd, "runs", "--db", str(db_path)], env=cli_env,
                             capture_output=True, text=True, timeout=60)
    finally:
        release(holder)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("tokentop: error: ") and f"process {holder.pid}" in lines[0] and "--db" in lines[0]
    assert "Traceback" not in out.stderr
    # once it is free the same command works
    again = subprocess.run([*tokentop_cmd, "runs", "--db", str(db_path)], env=cli_env,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr


# -- the app open on the database, a writer, the CLI and a bench ------------------------------------
@pytest.fixture
def sse_server():
    """A tiny OpenAI-compatible streaming server on loopback (benchmarks/fast_sse_server.py)."""
    with fast_sse_server(token_delay_ms=3) as url:
        yield url


@pytest.mark.e2e
@pytest.mark.engine
@pytest.mark.timeout(420)
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")
def test_commands_and_bench_work_on_the_database_of_an_open_app(engine_session, sse_server, tokentop_cmd,
                                                                 cli_env, tmp_path):
    from engine.workloads.suites import load_suite

    db = tmp_path / "shared.duckdb"
    suite_file = tmp_path / "tiny.toml"
    suite_file.write_text(TINY_SUITE)
    stop_file = tmp_path / "stop-writer"
    name = f"tokentop-db-{uuid.uuid4().hex[:8]}"
    env = dict(cli_env, TERM="xterm-256color")
    app_cmd = " ".join([*tokentop_cmd, "--db", str(db), "--engine", "openai", "--endpoint", sse_server])
    new_session(name, app_cmd + f"; echo EXIT=$? > {tmp_path / 'rc'}", env)
    writer = None
    try:
        wait_screen(name, lambda s: "openai ·" in s and "starting" not in s, 60, "the app to attach to the loopback server")
        tmux("send-keys", "-t", name, "-l", "hello")
        tmux("send-keys", "-t", name, "Enter")
        wait_screen(name, lambda s: "stored run" in s, 60, "the app to store its interactive run")

        # another process that keeps recording runs, as a headless bench would
        writer = start_writer(db, "--until", str(stop_file), "--requests", "4")

        def tokentop(*args: str) -> subprocess.CompletedProcess:
            out = subprocess.run([*tokentop_cmd, *args], env=cli_env, capture_output=True, text=True, timeout=180)
            assert out.returncode == 0, (args, out.stderr)
            return out

        listed = json.loads(tokentop("runs", "--db", str(db), "--json").stdout)
        assert any(r["kind"] == "interactive" for r in listed)
        shown = json.loads(tokentop("show", listed[-1]["run_id"], "--db", str(db), "--json").stdout)
        assert shown["run_id"] == listed[-1]["run_id"]
        prices = json.loads(tokentop("prices", "--db", str(db), "--json").stdout)
        assert prices["prices"]
        bench = json.loads(tokentop("bench", "--db", str(db), "--engine", "openai", "--endpoint", sse_server,
                                    "--suite", str(suite_file), "--reps", "2", "--json").stdout)
        assert bench["status"] == "completed"

        # the real embedded engine (the shared session) recording a suite into the same file
        shared = Store(db)
        suite_run_id, outcome, _ = engine_session.fork(shared).run_suite(load_suite(suite_file), 1)
        assert outcome.status == "completed"

        # the app's History reads the file while all that goes on
        tmux("send-keys", "-t", name, "F4")  # History, from the prompt box (F-keys work whatever has focus)
        def lists_them(screen: str) -> bool:
            shown = re.search(r"runs (\d+)/", screen)
            # the writer's runs are its suite "concurrent" (its model "writer" is on History's second column set)
            return "suite concurrent" in screen and shown is not None and int(shown.group(1)) >= 4

        wait_screen(name, lists_them, 30, "History to list the other processes' runs")
        tmux("send-keys", "-t", name, "F10")
        wait_screen(name, lambda s: exited(tmp_path / "rc"), 60, "the app to exit")
        assert (tmp_path / "rc").read_text().strip() == "EXIT=0"
    finally:
        stop_file.touch()
        tmux("kill-session", "-t", name, check=False)
    written = writer_result(writer)
    assert written["errors"] == [] and written["run_ids"]

    runs = {r["run_id"]: r for r in shared.list_runs()}
    for run_id in written["run_ids"]:
        assert runs[run_id]["status"] == "completed" and runs[run_id]["requests"] == 4
    assert runs[bench["run_id"]]["status"] == "completed" and runs[bench["run_id"]]["requests"] == 4
    assert runs[suite_run_id]["status"] == "completed" and runs[suite_run_id]["requests"] == 2
    interactive = [r for r in runs.values() if r["kind"] == "interactive"]
    assert len(interactive) == 1 and interactive[0]["status"] == "completed"
    assert len(runs) == len(written["run_ids"]) + 3
    shared.close()


def test_a_refused_row_is_reported_and_the_others_are_kept(store):
    rec = RunRecorder(store)
    run_id = rec.start(kind="suite", engine_description={"engine": "test"}, environment={"device": "CPU"})
    for i in (0, 1, 1, 2):  # index 1 twice: the database refuses the second one (primary key)
        r = synthetic(i, 5)
        rec.record(i, r, request_metrics(r))
    with pytest.raises(StoreError) as err:
        rec.finish("completed", duration_s=1.0)
    assert "refused" in str(err.value) and "\n" not in str(err.value)
    assert [q["request_index"] for q in store.get_requests(run_id)] == [0, 1, 2]
    assert store.get_run(run_id)["status"] == "completed"


def _lock_message(path: Path, holder: str) -> str:
    """DuckDB's error for a file whose lock another process holds (its wording, duckdb 1.x)."""
    return (f'IO Error: Could not set lock on file "{path}": Conflicting lock is held in {holder}. '
            "See also https://duckdb.org/docs/current/connect/concurrency")


def test_a_lock_named_only_as_pid_0_is_waited_out_not_refused(db_path, monkeypatch):
    """DuckDB names the holder "PID 0" when the lock was gone by the time it asked who held it (CI met this
    with the writer of the two-process test): that is a conflict to retry, not a file that cannot open.
    Held past the limit, the one line says another process holds it."""
    import duckdb

    import data.store.database as store_module
    from data.store.database import DatabaseLocked

    Store(db_path).close()
    real_connect, tries = duckdb.connect, []

    def busy_twice(path, read_only=False):
        tries.append(read_only)
        if len(tries) <= 2:
            raise duckdb.IOException(_lock_message(db_path, "PID 0"))
        return real_connect(path, read_only=read_only)

    monkeypatch.setattr(store_module.duckdb, "connect", busy_twice)
    store = Store(db_path)
    try:
        assert store.list_runs() == [] and len(tries) >= 3
    finally:
        store.close()

    monkeypatch.setattr(store_module.duckdb, "connect",
                        lambda path, read_only=False: (_ for _ in ()).throw(
                            duckdb.IOException(_lock_message(db_path, "PID 0"))))
    with pytest.raises(DatabaseLocked) as locked:
        Store(db_path, lock_wait_s=0.3)
    assert "locked by another process, still after 0.3 s" in str(locked.value) and locked.value.pid is None
