"""Runs that travel: export/import bundles, push/pull to a directory and to a real S3 server (moto on
loopback), auto-push with TOKENTOP_REMOTE, and a remote that dies mid-push."""

from __future__ import annotations

import json

import duckdb
import pytest

from data.store.database import Store
from tests.support.loopback import fast_sse_server, moto_s3
from tests.support.transfer_support import one_error_line, record_run, save_prices, tokentop


def show(cmd, env, db, run_id) -> dict:
    return json.loads(tokentop(cmd, env, "show", run_id, "--json", "--db", str(db)).stdout)


def chunks(db, run_id) -> list[tuple]:
    with Store(db) as s:
        return [(c["request_index"], c["chunk_index"], c["t_ns"], c["tokens"]) for c in s.get_chunks(run_id)]


def counts(db) -> dict[str, int]:
    with Store(db) as s:
        return {t: s.query(f"SELECT count(*) AS n FROM {t}")[0]["n"]
                for t in ("runs", "requests", "chunks", "gpu_samples", "server_samples", "prices")}


@pytest.fixture
def two_runs(tmp_path):
    db = tmp_path / "box-a.duckdb"
    with Store(db) as s:
        save_prices(s, provider="runpod")
        ids = [record_run(s, seed=1), record_run(s, seed=2, provider="vastai", price=1.9, requests=2)]
    return db, ids


# -- export / import ------------------------------------------------------------------
def test_export_import_gives_the_same_runs_and_twice_adds_nothing(tmp_path, tokentop_cmd, cli_env, two_runs):
    src, ids = two_runs
    bundle = tmp_path / "fleet.duckdb"
    out = tokentop(tokentop_cmd, cli_env, "export", "-o", str(bundle), "--json", "--db", str(src))
    summary = json.loads(out.stdout)
    assert summary["runs"] == ids and summary["row_counts"]["chunks"] == 3 * 20 + 2 * 20

    dst = tmp_path / "laptop.duckdb"
    tokentop(tokentop_cmd, cli_env, "import", str(bundle), "--db", str(dst))
    for run_id in ids:
        a, b = show(tokentop_cmd, cli_env, src, run_id), show(tokentop_cmd, cli_env, dst, run_id)
        assert a["requests"] == b["requests"]  # token counts, TTFT, TPOT, E2EL, TPS per request
        assert [r["ttft_ms"] for r in b["requests"]] and all(r["e2el_ms"] for r in b["requests"])
        assert a == b
        assert chunks(src, run_id) == chunks(dst, run_id) and chunks(dst, run_id)
    with Store(dst) as s:
        run = s.query("SELECT * FROM runs WHERE run_id = ?", [ids[1]])[0]
        assert run["origin"] == "import:fleet.duckdb" and run["imported_at"] is not None
        assert (run["hostname"], run["provider"], run["price_per_hour_usd"]) == ("box-a", "vastai", 1.9)
        assert json.loads(run["engine_args"]) == {"enforce_eager": True, "max_num_seqs": 8}
        # The prices stored when it ran came along, in the history only (not as this box's current prices).
        assert s.query("SELECT count(*) AS n FROM prices")[0]["n"] == 1
        assert s.query("SELECT count(*) AS n FROM price_fetches")[0]["n"] == 0
    before = counts(dst)
    assert before == counts(src)

    again = tokentop(tokentop_cmd, cli_env, "import", str(bundle), "--json", "--db", str(dst))
    assert json.loads(again.stdout)[0]["imported"] == [] and counts(dst) == before


def test_bundle_is_plain_duckdb(tmp_path, two_runs):
    src, ids = two_runs
    from data.travel.bundle import export_runs

    with Store(src) as s:
        export_runs(s, [ids[0][:12]] if ids[0][:12] != ids[1][:12] else [ids[0]], tmp_path / "b.duckdb")
    con = duckdb.connect(str(tmp_path / "b.duckdb"), read_only=True)
    assert con.execute("SELECT format, run_ids FROM tokentop_bundle").fetchone() == ("tokentop-bundle", [ids[0]])
    assert con.execute("SELECT count(*) FROM chunks").fetchone()[0] == 60


def test_import_refuses_bad_bundles_with_one_line(tmp_path, tokentop_cmd, cli_env, two_runs):
    src, _ = two_runs
    good = tmp_path / "good.duckdb"
    tokentop(tokentop_cmd, cli_env, "export", "-o", str(good), "--db", str(src))
    data = good.read_bytes()

    truncated = tmp_path / "truncated.duckdb"
    truncated.write_bytes(data[: len(data) // 3])
    corrupt = tmp_path / "corrupt.duckdb"
    damaged = bytearray(data)
    for i in range(4096 * 3, len(damaged), 97):  # past the headers: the data blocks
        damaged[i] ^= 0x5A
    corrupt.write_bytes(bytes(damaged))
    text = tmp_path / "notes.txt"
    text.write_text("not a bundle at all\n" * 50)
    newer = tmp_path / "newer.duckdb"
    newer.write_bytes(data)
    with duckdb.connect(str(newer)) as con:
        con.execute("UPDATE tokentop_bundle SET schema_version = schema_version + 100")
    plain_db = src  # a tokentop database, but not a bundle

    dst = tmp_path / "laptop.duckdb"
    tokentop(tokentop_cmd, cli_env, "runs", "--db", str(dst))
    before = counts(dst)
    for path, words in [(truncated, "truncated"), (corrupt, "damaged"), (text, "not a tokentop bundle"),
                        (newer, "newer than this tokentop"), (plain_db, "not a tokentop bundle")]:
        proc = tokentop(tokentop_cmd, cli_env, "import", str(path), "--db", str(dst), check=False)
        assert words in one_error_line(proc), (path, proc.stderr)
        assert counts(dst) == before


def test_bundle_from_an_older_schema_imports_with_nulls(tmp_path, two_runs):
    src, ids = two_runs
    from data.travel.bundle import export_runs, import_bundle

    bundle = tmp_path / "old.duckdb"
    with Store(src) as s:
        export_runs(s, ids[:1], bundle)
    with duckdb.connect(str(bundle)) as con:  # as schema 003 wrote it: no provider, reasoning, origin columns
        con.execute("UPDATE tokentop_bundle SET schema_version = 3")
        for table, column in [("runs", "provider"), ("runs", "origin"), ("requests", "ttfo_ms"),
                              ("chunks", "reasoning_tokens")]:
            con.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    with Store(tmp_path / "new.duckdb") as dst:
        assert import_bundle(dst, bundle).imported == ids[:1]
        run = dst.get_run(ids[0])
        assert run["provider"] is None and run["hostname"] == "box-a"
        assert len(dst.get_chunks(ids[0])) == 60


# -- remotes --------------------------------------------------------------------------
def test_push_and_pull_through_a_directory(tmp_path, tokentop_cmd, cli_env, two_runs):
    src, ids = two_runs
    remote = tmp_path / "share"
    out = tokentop(tokentop_cmd, cli_env, "push", "--remote", str(remote), "--json", "--db", str(src))
    assert json.loads(out.stdout)["pushed"] == ids
    for run_id in ids:
        names = sorted(p.name for p in (remote / "runs" / run_id).iterdir())
        assert names == ["chunks.parquet", "gpu_samples.parquet", "manifest.json", "prices.parquet",
                         "requests.parquet", "run.parquet", "server_samples.parquet"]
    # The whole fleet, queried in place with plain DuckDB.
    n = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{remote}/runs/*/requests.parquet')").fetchone()[0]
    assert n == 5
    # Nothing new: a second push sends nothing.
    assert json.loads(tokentop(tokentop_cmd, cli_env, "push", "--remote", str(remote), "--json",
                               "--db", str(src)).stdout)["pushed"] == []

    dst = tmp_path / "laptop.duckdb"
    pulled = json.loads(tokentop(tokentop_cmd, cli_env, "pull", "--remote", f"file://{remote}", "--json",
                                 "--db", str(dst)).stdout)
    assert sorted(pulled["pulled"]) == sorted(ids)
    assert counts(dst) == counts(src)
    for run_id in ids:
        assert show(tokentop_cmd, cli_env, src, run_id) == show(tokentop_cmd, cli_env, dst, run_id)
        assert chunks(src, run_id) == chunks(dst, run_id)
    with Store(dst) as s:
        assert {r["origin"] for r in s.query("SELECT origin FROM runs")} == {f"pull:{remote}"}

    # A third run on the box: the next pull fetches only it.
    with Store(src) as s:
        third = record_run(s, seed=3)
    tokentop(tokentop_cmd, cli_env, "push", "--remote", str(remote), "--db", str(src))
    again = json.loads(tokentop(tokentop_cmd, cli_env, "pull", "--remote", str(remote), "--json",
                                "--db", str(dst)).stdout)
    assert again["pulled"] == [third] and again["already_here"] == 2


def test_missing_remote_directory_changes_nothing(tmp_path, tokentop_cmd, cli_env, two_runs):
    src, _ = two_runs
    before = counts(src)
    proc = tokentop(tokentop_cmd, cli_env, "pull", "--remote", str(tmp_path / "not" / "mounted"),
                    "--db", str(src), check=False)
    assert "no such directory" in one_error_line(proc, 1)
    proc = tokentop(tokentop_cmd, cli_env, "push", "--db", str(src), check=False)
    assert "TOKENTOP_REMOTE" in one_error_line(proc, 2)
    assert counts(src) == before


@pytest.fixture
def s3(monkeypatch):
    """A real S3-compatible server (moto) on loopback, with a bucket; the AWS variables point at it."""
    server = moto_s3(monkeypatch)
    yield server
    server.stop()


def test_push_and_pull_through_s3(tmp_path, tokentop_cmd, cli_env, two_runs, s3):
    src, ids = two_runs
    env = {**cli_env, **s3.env}
    url = "s3://fleet/team/runs-2026"
    assert json.loads(tokentop(tokentop_cmd, env, "push", "--remote", url, "--json",
                               "--db", str(src)).stdout)["pushed"] == ids
    dst = tmp_path / "laptop.duckdb"
    env_remote = {**env, "TOKENTOP_REMOTE": url}
    pulled = json.loads(tokentop(tokentop_cmd, env_remote, "pull", "--json", "--db", str(dst)).stdout)
    assert sorted(pulled["pulled"]) == sorted(ids)
    for run_id in ids:
        assert show(tokentop_cmd, env, src, run_id) == show(tokentop_cmd, env, dst, run_id)
        assert chunks(src, run_id) == chunks(dst, run_id)
    again = json.loads(tokentop(tokentop_cmd, env_remote, "pull", "--json", "--db", str(dst)).stdout)
    assert again["pulled"] == [] and again["already_here"] == 2


def test_a_remote_that_dies_loses_nothing_and_the_run_goes_later(tmp_path, tokentop_cmd, cli_env, s3):
    src = tmp_path / "box.duckdb"
    env = {**cli_env, **s3.env, "TOKENTOP_REMOTE": "s3://fleet/box"}
    with Store(src) as s:
        first = record_run(s, seed=1)
    tokentop(tokentop_cmd, env, "push", "--db", str(src))

    s3.stop()  # the store goes away between runs
    with Store(src) as s:
        second = record_run(s, seed=2)
    proc = tokentop(tokentop_cmd, env, "push", "--db", str(src), check=False)
    assert second in one_error_line(proc, 1)
    with Store(src) as s:
        assert len(s.get_requests(second)) == 3 and len(s.get_chunks(second)) == 60
        state = s.query("SELECT status, attempts, last_error FROM remote_pushes WHERE run_id = ?", [second])[0]
        assert state["status"] == "failed" and state["attempts"] == 1 and state["last_error"]

    s3.start()  # back up (same in-process moto state: the bucket and first run are still there)
    out = json.loads(tokentop(tokentop_cmd, env, "push", "--json", "--db", str(src)).stdout)
    assert out["pushed"] == [second]
    dst = tmp_path / "laptop.duckdb"
    pulled = json.loads(tokentop(tokentop_cmd, env, "pull", "--json", "--db", str(dst)).stdout)
    assert sorted(pulled["pulled"]) == sorted([first, second])


def test_auto_push_on_finish_retries_a_failed_push(tmp_path, monkeypatch, s3):
    """TOKENTOP_REMOTE: RunRecorder.finish queues the run; the push runs on a background thread; a push
    that fails while the store is down is kept as failed and goes with the next finished run."""
    from data.travel import remote as remote_mod
    url = "s3://fleet/auto"
    monkeypatch.setenv("TOKENTOP_REMOTE", url)
    monkeypatch.setattr(remote_mod, "_pushers", {})
    reports = []
    pusher = remote_mod.auto_pusher()
    pusher.listeners.append(lambda result, error: reports.append((result, error)))
    db = tmp_path / "box.duckdb"

    store = Store(db)
    first = record_run(store, seed=1)
    assert pusher.wait(60)
    assert reports[-1][0].pushed == [first]

    s3.stop()
    second = record_run(store, seed=2)
    assert pusher.wait(60)
    assert reports[-1][0].failed.keys() == {second}
    assert len(store.get_chunks(second)) == 60  # the local run is whole

    s3.start()
    third = record_run(store, seed=3)
    assert pusher.wait(60)
    assert reports[-1][0].pushed == [third, second]
    rows = store.query("SELECT run_id, status, attempts FROM remote_pushes ORDER BY run_id")
    assert {(r["run_id"], r["status"]) for r in rows} == {(first, "pushed"), (second, "pushed"), (third, "pushed")}
    store.close()
    assert set(remote_mod.open_remote(url).complete_runs()) == {first, second, third}


@pytest.mark.engine
def test_a_real_engine_run_travels(session, store, tmp_path, monkeypatch):
    """A suite on the real embedded engine is auto-pushed to a directory remote (TOKENTOP_REMOTE), and
    exported and imported elsewhere with identical requests and chunk timestamps."""
    from data.travel import remote as remote_mod
    from data.travel.bundle import export_runs, import_bundle
    from engine.workloads.suites import Case, Suite

    share = tmp_path / "share"
    share.mkdir()
    monkeypatch.setenv("TOKENTOP_REMOTE", str(share))
    monkeypatch.setattr(remote_mod, "_pushers", {})
    suite = Suite(name="tiny", cases=(Case("short", "Name a colour.", 8),), reps=2)
    run_id, outcome, _ = session.run_suite(suite)
    assert outcome.status == "completed"
    assert remote_mod.auto_pusher().wait(120)
    assert (share / "runs" / run_id / "manifest.json").is_file()

    export_runs(store, [run_id], tmp_path / "real.duckdb")
    with Store(tmp_path / "other.duckdb") as other:
        import_bundle(other, tmp_path / "real.duckdb")
        assert other.get_requests(run_id) == store.get_requests(run_id)
        assert other.get_chunks(run_id) == store.get_chunks(run_id)
    with Store(tmp_path / "pulled.duckdb") as pulled:
        assert remote_mod.pull(pulled, str(share)).pulled == [run_id]
        assert pulled.get_chunks(run_id) == store.get_chunks(run_id)


@pytest.fixture
def sse_server():
    """The repository's tiny OpenAI-compatible streaming server (no model) on loopback."""
    with fast_sse_server(token_delay_ms=1) as url:
        yield url


def test_headless_bench_with_tokentop_remote_pushes_its_run(tmp_path, tokentop_cmd, cli_env, sse_server):
    suite = tmp_path / "tiny.toml"
    suite.write_text('name = "tiny"\nreps = 1\n[[cases]]\nid = "short"\nprompt = "Name a colour."\noutput_tokens = 5\n')
    bench = ["bench", "--engine", "openai", "--endpoint", sse_server, "--model", "fast-sse", "--suite", str(suite),
             "--json"]
    share = tmp_path / "share"
    share.mkdir()
    db = tmp_path / "box.duckdb"
    out = tokentop(tokentop_cmd, {**cli_env, "TOKENTOP_REMOTE": str(share)}, *bench, "--db", str(db))
    run_id = json.loads(out.stdout)["run_id"]
    assert f"pushed run(s) {run_id}" in out.stderr
    assert (share / "runs" / run_id / "manifest.json").is_file()

    # The remote is not there (a share that is not mounted): the bench still succeeds and stores its run;
    # the push is kept as failed, and the next bench retries it at start.
    mount = tmp_path / "mnt"
    unmounted = {**cli_env, "TOKENTOP_REMOTE": str(mount / "share")}
    out = tokentop(tokentop_cmd, unmounted, *bench, "--db", str(db))
    second = json.loads(out.stdout)["run_id"]
    assert f"push of run {second} to {mount / 'share'} failed" in out.stderr
    with Store(db) as s:
        assert len(s.get_requests(second)) == 1
        assert s.query("SELECT status FROM remote_pushes WHERE run_id = ?", [second])[0]["status"] == "failed"
    mount.mkdir()
    out = tokentop(tokentop_cmd, unmounted, *bench, "--db", str(db))
    third = json.loads(out.stdout)["run_id"]
    assert f"pushed run(s) {second}" in out.stderr
    assert {p.name for p in (mount / "share" / "runs").iterdir()} == {second, third}


def test_pull_ignores_half_pushed_runs_and_refuses_newer_ones(tmp_path, tokentop_cmd, cli_env, two_runs):
    src, ids = two_runs
    remote = tmp_path / "share"
    tokentop(tokentop_cmd, cli_env, "push", ids[0], "--remote", str(remote), "--db", str(src))
    # A push cut short: data files but no manifest yet.
    half = remote / "runs" / "20260101-000000-abcdef"
    half.mkdir()
    (half / "run.parquet").write_bytes((remote / "runs" / ids[0] / "run.parquet").read_bytes())
    # A run pushed by a newer tokentop.
    newer = remote / "runs" / ids[1]
    tokentop(tokentop_cmd, cli_env, "push", ids[1], "--remote", str(remote), "--db", str(src))
    manifest = json.loads((newer / "manifest.json").read_text())
    manifest["schema_version"] += 100
    (newer / "manifest.json").write_text(json.dumps(manifest))

    dst = tmp_path / "laptop.duckdb"
    proc = tokentop(tokentop_cmd, cli_env, "pull", "--remote", str(remote), "--json", "--db", str(dst))
    out = json.loads(proc.stdout)
    assert out["pulled"] == [ids[0]] and list(out["refused"]) == [ids[1]]
    assert f"run {ids[1]} not pulled" in proc.stderr and "newer" in proc.stderr
    with Store(dst) as s:
        assert [r["run_id"] for r in s.query("SELECT run_id FROM runs")] == [ids[0]]
