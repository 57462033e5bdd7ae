"""The DuckDB store: versioned migrations, runs written as they progress, crash recovery."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import duckdb
import pytest

from data.store.database import Store, StoreError
from data.store.recorder import RunRecorder
from engine.measure.metrics import request_metrics
from engine.types import GenerationRequest, RequestRecord
from tests.support.wait import wait_until


def _record(case="short", tokens=3, st=1_000_000_000) -> RequestRecord:
    rec = RequestRecord(request=GenerationRequest(prompt="hi", max_tokens=tokens, case_id=case), st_ns=st)
    rec.chunk_ns = [st + 50_000_000 + i * 20_000_000 for i in range(tokens)]
    rec.chunk_tokens = [1] * tokens
    rec.reported_output_tokens = tokens
    rec.input_tokens = 7
    rec.success = True
    rec.text = "a b c"
    rec.sent_wall = 1_700_000_000.0
    return rec


def test_migrations_are_versioned_and_idempotent(db_path):
    with Store(db_path) as s:
        v = s.schema_version()
        assert v >= 1
    with Store(db_path) as s:  # reopening applies nothing twice
        assert s.schema_version() == v
        names = [r["name"] for r in s.query("SELECT name FROM schema_version ORDER BY version")]
        assert names[0] == "001_runs.sql"


def test_run_is_readable_while_in_progress_and_chunks_are_kept(store):
    rec = RunRecorder(store)
    run_id = rec.start(kind="suite", engine_description={"engine": "vllm", "model": "m"},
                       environment={"hostname": "h", "device": "CPU", "gpus": []}, suite="seed", reps=1)
    r = _record()
    rec.record(0, r, request_metrics(r))  # queued for the background writer
    rec.flush()  # written: readable by anyone while the run goes on
    run = store.get_run(run_id)
    assert run["status"] == "running"
    rows = store.get_requests(run_id)
    assert len(rows) == 1 and rows[0]["output_tokens"] == 3 and rows[0]["ttft_ms"] == pytest.approx(50.0)
    chunks = store.get_chunks(run_id, 0)
    assert [c["t_ns"] for c in chunks] == [50_000_000, 70_000_000, 90_000_000]
    rec.finish("completed", duration_s=1.0, summary={"cases": {}})
    # A unique prefix finds the run (users type the first characters of an id).
    assert store.get_run(run_id[:8])["run_id"] == run_id
    assert store.get_run("no-such-run") is None
    assert store.get_run(run_id)["status"] == "completed"


def test_request_writes_are_batched_yet_reach_the_file_without_a_flush(store, monkeypatch):
    """The writer gathers the writes of a moment into one transaction (each opens the file, which
    costs CPU that the server on the same machine would feel); they still reach the file by
    themselves, and flush() writes at once."""
    import data.store.recorder as recorder

    monkeypatch.setattr(recorder, "COALESCE_S", 30.0)
    rec = RunRecorder(store)
    run_id = rec.start(kind="suite", engine_description={"engine": "vllm", "model": "m"},
                       environment={"hostname": "h", "device": "CPU", "gpus": []}, suite="seed", reps=1)
    # well before the 30 s: a run's start is written at once
    wait_until(lambda: store.get_run(run_id) is not None, 10, "the started run to reach the file")
    for i in range(5):
        r = _record()
        rec.record(i, r, request_metrics(r))
    batches = rec.writer.batches
    rec.flush()  # well before the 30 s: written now, in one transaction
    assert rec.writer.batches == batches + 1
    assert len(store.get_requests(run_id)) == 5

    monkeypatch.setattr(recorder, "COALESCE_S", 0.2)
    r = _record()
    rec.record(5, r, request_metrics(r))  # no flush: the writer gets there on its own
    wait_until(lambda: len(store.get_requests(run_id)) >= 6, 30, "the queued request to reach the file")
    rec.finish("completed", duration_s=1.0, summary={"cases": {}})


def test_crashed_process_leaves_an_aborted_run_with_its_requests(db_path):
    # A child process starts a run, stores one request and dies without finishing it.
    code = textwrap.dedent(f"""
        import os
        from data.store.database import Store
        from data.store.recorder import RunRecorder
        from engine.measure.metrics import request_metrics
        from tests.unit.test_store import _record
        s = Store({str(db_path)!r})
        rec = RunRecorder(s)
        run_id = rec.start(kind="suite", engine_description={{"engine": "vllm"}},
                           environment={{"device": "CPU", "gpus": []}})
        r = _record()
        rec.record(0, r, request_metrics(r))
        rec.flush()  # what the writer has flushed survives the crash
        print(run_id, flush=True)
        os._exit(9)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.getcwd())
    run_id = out.stdout.strip()
    assert run_id, out.stderr
    with Store(db_path) as s:
        run = s.get_run(run_id)
        assert run["status"] == "aborted"
        assert len(s.get_requests(run_id)) == 1


def test_unwritable_db_is_a_clear_error(tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.geteuid() == 0:
            target = "/proc/tokentop.duckdb"  # root ignores permissions; /proc refuses files
        else:
            target = str(locked / "x.duckdb")
        with pytest.raises(StoreError) as err:
            Store(target)
        assert "--db" in str(err.value) and "\n" not in str(err.value)
    finally:
        locked.chmod(stat.S_IRWXU)


def test_file_is_plain_duckdb(db_path, store):
    store.close()
    con = duckdb.connect(str(db_path))
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"runs", "requests", "chunks", "schema_version"} <= tables
