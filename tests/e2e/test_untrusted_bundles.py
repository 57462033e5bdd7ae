"""Bundles and remotes are someone else's files (issue 17, items 1 and 3; issue 15, defect 8): crafted
bundles and a crafted directory remote, made from real exports and pushes, against the real CLI and
real DuckDB files. A bundle with a view, a macro, another schema or a generated column, or with an id
tokentop never makes, is refused with one line (exit 2) and changes nothing; a pull refuses such runs
one by one and takes the rest; a bundle named as the database is refused before it is written to."""

from __future__ import annotations

import hashlib
import json
import re
import shutil

import duckdb
import pytest

from data.store.database import IdError, Store, check_ids, new_fetch_id, new_run_id
from tests.support.transfer_support import one_error_line, record_run, save_prices, tokentop

TABLES = ("runs", "requests", "chunks", "gpu_samples", "server_samples", "prices")


def snapshot(db) -> dict[str, list]:
    """Every row of every table a bundle touches, sorted: 'the database unchanged' means equal."""
    with Store(db) as s:
        with s.reading() as con:
            return {t: sorted(map(repr, con.execute(f"SELECT * FROM {t}").fetchall())) for t in TABLES}


@pytest.fixture
def exported(tmp_path, tokentop_cmd, cli_env):
    """A real bundle of two runs (with prices), a database that already holds one other run, and a
    secret file on "this machine"."""
    src = tmp_path / "box-a.duckdb"
    with Store(src) as s:
        save_prices(s)
        ids = [record_run(s, seed=1), record_run(s, seed=2, provider="vastai", requests=2)]
    bundle = tmp_path / "good.duckdb"
    tokentop(tokentop_cmd, cli_env, "export", "-o", str(bundle), "--db", str(src))
    dst = tmp_path / "laptop.duckdb"
    with Store(dst) as s:
        record_run(s, seed=9, host="laptop")
    secret = tmp_path / "secret.txt"
    secret.write_text("AWS_SECRET_ACCESS_KEY=do-not-leak\n")
    return {"bundle": bundle, "ids": ids, "dst": dst, "secret": secret, "src": src}


def crafted(exported, name: str, *sql: str) -> str:
    path = exported["bundle"].with_name(name)
    shutil.copy(exported["bundle"], path)
    with duckdb.connect(str(path)) as con:
        for statement in sql:
            con.execute(statement.format(secret=exported["secret"]))
    return str(path)


def test_a_view_reading_this_machines_files_is_refused_and_nothing_changes(exported, tokentop_cmd, cli_env):
    # The attack of issue 17: `runs` is a view over a real table hidden in another schema, and it puts
    # a local file's contents into runs.label (from where a push would send them to the remote).
    hidden = crafted(exported, "hidden.duckdb",
                     "CREATE SCHEMA x", "CREATE TABLE x.runs AS SELECT * FROM main.runs", "DROP TABLE main.runs",
                     "CREATE VIEW main.runs AS SELECT * REPLACE ((SELECT content FROM read_text('{secret}')) AS label) "
                     "FROM x.runs")
    # The same view without another schema: the real table under another name in main.
    plain_view = crafted(exported, "view.duckdb",
                         "ALTER TABLE runs RENAME TO runs_real",
                         "CREATE VIEW runs AS SELECT * REPLACE ((SELECT content FROM read_text('{secret}')) AS label) "
                         "FROM runs_real")
    macro = crafted(exported, "macro.duckdb",
                    "CREATE MACRO label_of(x) AS (SELECT content FROM read_text('{secret}'))")
    generated = crafted(exported, "generated.duckdb",
                        "CREATE TABLE notes (a VARCHAR, b VARCHAR GENERATED ALWAYS AS (current_setting('home_directory')))")
    sequence = crafted(exported, "sequence.duckdb", "CREATE SEQUENCE s")
    before = snapshot(exported["dst"])
    for path, what in [(hidden, "a schema"), (plain_view, "a view"), (macro, "a macro"),
                       (generated, "a generated column"), (sequence, "a sequence")]:
        proc = tokentop(tokentop_cmd, cli_env, "import", path, "--db", str(exported["dst"]), check=False)
        line = one_error_line(proc)
        assert what in line and "refused, nothing imported" in line, (path, line)
        assert snapshot(exported["dst"]) == before, path
    with Store(exported["dst"]) as s:
        assert not s.query("SELECT 1 FROM runs WHERE label LIKE '%do-not-leak%'")


def test_external_access_is_off_while_the_bundle_is_read(exported, monkeypatch):
    """Second line of defence: had the catalogue check missed the view, reading it could not reach a file."""
    from data.travel import bundle as bundle_mod
    path = crafted(exported, "view.duckdb", "ALTER TABLE runs RENAME TO runs_real",
                   "CREATE VIEW runs AS SELECT * REPLACE ((SELECT content FROM read_text('{secret}')) AS label) "
                   "FROM runs_real")
    monkeypatch.setattr(bundle_mod, "_refuse_objects", lambda *a: None)
    monkeypatch.setattr(bundle_mod, "_main_tables", lambda con, alias: {"tokentop_bundle", "runs", "requests"})
    before = snapshot(exported["dst"])
    with Store(exported["dst"]) as s, pytest.raises(bundle_mod.BundleError, match="files or the network"):
        bundle_mod.import_bundle(s, path)
    assert snapshot(exported["dst"]) == before


@pytest.mark.parametrize("bad_id", ["../../escaped-run", "20260101-000000-abcde/", "run\x1b[2J",
                                    "20260101-000000-ABCDEF", "20260101-000000-abcdef "])
def test_a_run_id_tokentop_never_makes_refuses_the_whole_bundle(exported, tokentop_cmd, cli_env, bad_id):
    good, renamed = exported["ids"]
    path = crafted(exported, "escaped.duckdb")
    with duckdb.connect(path) as con:
        for t in TABLES[:5]:
            con.execute(f"UPDATE {t} SET run_id = ? WHERE run_id = ?", [bad_id, renamed])
        con.execute("UPDATE tokentop_bundle SET run_ids = ?", [[good, bad_id]])
    before = snapshot(exported["dst"])
    proc = tokentop(tokentop_cmd, cli_env, "import", path, "--db", str(exported["dst"]), check=False)
    line = one_error_line(proc)
    assert "is not one tokentop makes (YYYYMMDD-HHMMSS-xxxxxx)" in line and "nothing imported" in line
    assert "\x1b" not in proc.stderr
    assert snapshot(exported["dst"]) == before  # not even the good run


def test_a_price_fetch_id_tokentop_never_makes_refuses_the_bundle(exported, tokentop_cmd, cli_env):
    path = crafted(exported, "fetch.duckdb", "UPDATE prices SET fetch_id = '../../prices'")
    before = snapshot(exported["dst"])
    proc = tokentop(tokentop_cmd, cli_env, "import", path, "--db", str(exported["dst"]), check=False)
    assert "price fetch id '../../prices' is not one tokentop makes" in one_error_line(proc)
    assert snapshot(exported["dst"]) == before


def test_a_clean_bundle_still_imports(exported, tokentop_cmd, cli_env):
    out = tokentop(tokentop_cmd, cli_env, "import", str(exported["bundle"]), "--json", "--db", str(exported["dst"]))
    assert sorted(json.loads(out.stdout)[0]["imported"]) == sorted(exported["ids"])


def test_one_id_check_for_the_shapes_the_store_makes():
    from engine.orchestrator import new_run_id as engine_run_id

    check_ids("run", [new_run_id(), engine_run_id()])  # both makers: the same shape
    check_ids("price fetch", [new_fetch_id()])
    for bad in ["", "../x", "20260101-000000-abcdef\n", "20260101-000000-abcdef/..", None, 7]:
        with pytest.raises(IdError):
            check_ids("run", [bad])


# -- a pulled run is untrusted too ------------------------------------------------------------------
def test_pull_refuses_misnamed_or_crafted_runs_and_takes_the_rest(exported, tokentop_cmd, cli_env, tmp_path):
    src, (first, second) = exported["src"], exported["ids"]
    remote = tmp_path / "share"
    tokentop(tokentop_cmd, cli_env, "push", "--remote", str(remote), "--db", str(src))
    runs = remote / "runs"
    # 1. A folder whose name is not a run id (it would become a local path), with a valid-looking run.
    shutil.copytree(runs / first, runs / "escaped-run")
    manifest = json.loads((runs / "escaped-run" / "manifest.json").read_text())
    (runs / "escaped-run" / "manifest.json").write_text(json.dumps({**manifest, "run_id": "escaped-run"}))
    # 2. A run whose manifest names files elsewhere on the remote and a version made of escapes.
    third = new_run_id()
    shutil.copytree(runs / second, runs / third)
    bad = json.loads((runs / third / "manifest.json").read_text())
    bad.update(run_id=third, schema_version="\x1b]0;pwned\x07", files={"runs": "../../../../etc/passwd"})
    (runs / third / "manifest.json").write_text(json.dumps(bad))
    # 3. A run whose files carry another run's rows (its own id on the folder and the manifest).
    fourth = new_run_id()
    while fourth == third:
        fourth = new_run_id()
    shutil.copytree(runs / second, runs / fourth)
    m4 = json.loads((runs / fourth / "manifest.json").read_text())
    (runs / fourth / "manifest.json").write_text(json.dumps({**m4, "run_id": fourth}))

    # 4. A sound run (its own rows) whose manifest names the files of another run: never read.
    fifth = new_run_id()
    while fifth in (third, fourth):
        fifth = new_run_id()
    (runs / fifth).mkdir()
    with duckdb.connect() as con:
        for f in (runs / second).glob("*.parquet"):
            con.execute(f"COPY (SELECT * REPLACE ('{fifth}' AS run_id) FROM read_parquet('{f}')) "
                        f"TO '{runs / fifth / f.name}' (FORMAT parquet)")
    m5 = json.loads((runs / second / "manifest.json").read_text())
    m5.update(run_id=fifth, files={table: f"../{first}/{name}" for table, name in m5["files"].items()})
    (runs / fifth / "manifest.json").write_text(json.dumps(m5))
    # 5. A run with a damaged file: refused alone (the other runs' files of that table still read).
    sixth = new_run_id()
    while sixth in (third, fourth, fifth):
        sixth = new_run_id()
    shutil.copytree(runs / fifth, runs / sixth)
    with duckdb.connect() as con:
        for f in (runs / fifth).glob("*.parquet"):
            con.execute(f"COPY (SELECT * REPLACE ('{sixth}' AS run_id) FROM read_parquet('{f}')) "
                        f"TO '{runs / sixth / f.name}' (FORMAT parquet)")
    data = (runs / sixth / "requests.parquet").read_bytes()
    (runs / sixth / "requests.parquet").write_bytes(data[: len(data) // 2])
    (runs / sixth / "manifest.json").write_text(json.dumps({**m5, "run_id": sixth}))

    dst = tmp_path / "pulled.duckdb"
    proc = tokentop(tokentop_cmd, cli_env, "pull", "--remote", str(remote), "--json", "--db", str(dst))
    out = json.loads(proc.stdout)
    assert sorted(out["pulled"]) == sorted([first, second, fifth])
    assert set(out["refused"]) == {"escaped-run", third, fourth, sixth}
    assert out["refused"][sixth].startswith("damaged requests.parquet")
    assert "not one tokentop makes" in out["refused"]["escaped-run"]
    assert "versions are not whole numbers" in out["refused"][third]
    assert "holds rows of another run" in out["refused"][fourth]
    warnings = proc.stderr.strip().splitlines()
    assert len(warnings) == 4 and all(w.startswith("tokentop: warning:") for w in warnings), proc.stderr
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr
    with Store(dst) as s:
        assert sorted(r["run_id"] for r in s.query("SELECT run_id FROM runs")) == sorted([first, second, fifth])
        # the fifth run's own files were read (2 requests, as the second run), not the first's (3)
        assert len(s.get_requests(fifth)) == 2 and len(s.get_requests(first)) == 3


def test_push_refuses_a_stored_run_whose_id_would_escape_the_remote(tmp_path, tokentop_cmd, cli_env):
    """A run stored before ids were checked (an old import): never sent, said once, never 'failed forever'."""
    db = tmp_path / "old.duckdb"
    with Store(db) as s:
        good = record_run(s, seed=1)
        bad = record_run(s, seed=2)
        with s.connection() as con:
            for t in TABLES[:5]:
                con.execute(f"UPDATE {t} SET run_id = '../../escaped-run' WHERE run_id = ?", [bad])
    remote = tmp_path / "share"
    proc = tokentop(tokentop_cmd, cli_env, "push", "--remote", str(remote), "--json", "--db", str(db))
    out = json.loads(proc.stdout)
    assert out["pushed"] == [good] and out["failed"] == {} and list(out["refused"]) == ["../../escaped-run"]
    assert proc.stderr.count("tokentop: warning: not pushed: run id '../../escaped-run'") == 1
    assert sorted(p.name for p in (remote / "runs").iterdir()) == [good]
    assert not (tmp_path / "escaped-run").exists()
    with Store(db) as s:
        assert s.query("SELECT run_id, status FROM remote_pushes") == [{"run_id": good, "status": "pushed"}]
    proc = tokentop(tokentop_cmd, cli_env, "export", "-o", str(tmp_path / "b.duckdb"), "--db", str(db), check=False)
    assert "run id '../../escaped-run' is not one tokentop makes" in one_error_line(proc)
    assert not (tmp_path / "b.duckdb").exists()


# -- issue 15, defect 8: a bundle is not a database ------------------------------------------------
def test_a_bundle_named_as_the_database_is_refused_and_never_written(exported, tokentop_cmd, cli_env):
    bundle = exported["bundle"]
    digest = hashlib.sha256(bundle.read_bytes()).hexdigest()
    for args, env in [(("runs", "--db", str(bundle)), cli_env),
                      (("show", exported["ids"][0], "--db", str(bundle)), cli_env),
                      (("import", str(bundle), "--db", str(bundle)), cli_env),
                      (("runs",), {**cli_env, "TOKENTOP_DB": str(bundle)}),
                      (("--db", str(bundle)), cli_env)]:  # the app: refused before it needs a terminal
        proc = tokentop(tokentop_cmd, env, *args, check=False)
        line = one_error_line(proc)
        assert re.search(r"is a bundle written by `tokentop export`, not a database: import it with "
                         r"`tokentop import .*`", line), (args, line)
        assert "CatalogException" not in proc.stderr
    assert hashlib.sha256(bundle.read_bytes()).hexdigest() == digest
    with duckdb.connect(str(bundle), read_only=True) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert "schema_version" not in tables and "tokentop_bundle" in tables
