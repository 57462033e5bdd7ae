"""Every line tokentop prints fits an 80-column terminal: every command and every `--help`, run at
COLUMNS=80 — tables, notes, help, errors and status lines — is no wider than 80 cells (wide characters
count 2: rich.cells.cell_len), wrapped with an indent, and never has a number cut to '…'.

The data commands read a temp DuckDB holding runs recorded without an engine (tests.support.tui_support,
tests.support.first_hour_support, tests.unit.test_workload_label); `bench`, `load` and `serve` drive the fast
OpenAI-compatible server in benchmarks/ on loopback."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from rich.cells import cell_len

from data.store.database import Store
from tests.support.first_hour_support import add_load_sweep, add_stopped_generation, cut_numbers
from tests.support.loopback import fast_sse_server
from tests.support.tui_support import fixed_store
from tests.unit.test_workload_label import SHAREGPT, add_sweep
from tui.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
WIDTH = 80
# Every command the tests below run (a command added without a run here, or a reason below, fails the test).
COMMANDS = {"bench", "runs", "show", "prices", "compare", "load", "export", "import", "push", "pull", "serve"}
NOT_RUN_HERE = {"fleet": "rents boxes through SkyPilot and a cloud account: its --help, every verb's, is checked"}


def too_wide(text: str, width: int = WIDTH) -> list[str]:
    """The lines of `text` wider than `width` terminal cells, with their widths; and every number cut."""
    wide = [f"{cell_len(line)}: {line}" for line in text.splitlines() if cell_len(line) > width]
    return wide + cut_numbers(text)


def test_the_checker_counts_cells_not_characters():
    assert too_wide("日" * 40) == [] and too_wide("日" * 41) == [f"82: {'日' * 41}"]
    assert too_wide("x " * 40) == [] and too_wide("ok 12.3… done")


@pytest.fixture
def db(tmp_path, utc):
    """Suites, an interactive run, a stopped generation, a sweep stored before workloads, and sweeps on
    two multi-turn ShareGPT workloads of one long-named file."""
    from engine.workloads import WorkloadOptions, make_workload

    path = tmp_path / "w.duckdb"
    store = fixed_store(path)
    add_load_sweep(store, started=datetime(2025, 3, 5, 9, 0, tzinfo=timezone.utc))
    add_stopped_generation(store)
    data = tmp_path / "ShareGPT_V3_unfiltered_cleaned_split_but_only_a_few_entries.json"
    data.write_text(json.dumps(SHAREGPT))
    for day, (turns, think) in enumerate(((2, None), (4, 250.0))):
        workload = make_workload(WorkloadOptions(dataset_name="sharegpt", dataset_path=str(data), multi_turn=True,
                                                 max_turns=turns, turn_delay_ms=think))
        add_sweep(store, workload.identity(), started=datetime(2025, 3, 6 + day, 9, 0, tzinfo=timezone.utc))
    store.close()
    return str(path)


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_every_help_fits_80_columns(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    def commands(parser, prefix: list[str]) -> list[list[str]]:  # every command and verb (fleet plan ...)
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found += [prefix + [name]] + commands(sub, prefix + [name])
        return found

    every = commands(build_parser(), [])
    names = {argv[0] for argv in every}
    assert COMMANDS <= names and names - COMMANDS <= set(NOT_RUN_HERE), names ^ COMMANDS
    for argv in [["--help"]] + [argv + ["--help"] for argv in every]:
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert out.startswith("usage:") and not too_wide(out), (argv, too_wide(out))
    # The epilog's patterns stay a list: a wrapped line continues under its description.
    with pytest.raises(SystemExit):
        main(["load", "--help"])
    out = capsys.readouterr().out
    assert "  --concurrency sweep       1, 2, 4, ... until output throughput rises by less\n" \
           "                            than 10 %" in out


def test_every_data_command_fits_80_columns(db, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    with Store(db) as store:
        run_ids = [r["run_id"] for r in store.list_runs()]
        load_id = next(r["run_id"] for r in store.list_runs() if r["kind"] == "load" and r.get("workload_key"))
    runs = [["runs"], ["runs", "--limit", "2"], ["prices"], ["compare"], ["compare", load_id], ["compare", "--matrix"],
            ["compare", "--slo", "ttft=500"], ["compare", "--slo", "ttft=500,tpot=50", "--percentile", "90"],
            ["compare", "--frontier"]]
    runs += [["show", run_id] for run_id in run_ids]
    share = tmp_path / "share"
    runs += [["export", "-o", str(tmp_path / "b.duckdb")], ["push", "--remote", str(share)]]
    for argv in runs:
        code, out = run_cli(capsys, "--db", db, *argv)
        assert code == 0, (argv, out)
        assert out.strip() and not too_wide(out), (argv, too_wide(out))
    # `runs` at 80 names the workload beside the speeds, a long dataset file name folded in its column.
    _, out = run_cli(capsys, "--db", db, "runs")
    header = " ".join(out.splitlines()[0].split())
    assert "what workload b1 TPS user tok/s" in header, out
    # A name in a table folds at spaces only: the interactive run's case is whole ('interacti' / 've' was).
    _, out = run_cli(capsys, "--db", db, "show", "20250303-180000-cccccc")
    assert [line.split()[0] for line in out.splitlines() if line.startswith("interactive ")] == ["interactive"] * 3
    assert not [line for line in out.splitlines() if line.strip() == "ve" or line.startswith("ve ")]
    # An explanation wraps at spaces with its further lines indented under its first.
    _, out = run_cli(capsys, "--db", db, "compare", "--slo", "ttft=500")
    said = out.splitlines()
    for i, line in enumerate(said[:-1]):
        if line.startswith("  ") and not line.startswith("    ") and said[i + 1].startswith("    "):
            break
    else:
        raise AssertionError(f"no wrapped explanation in:\n{out}")
    other = str(tmp_path / "other.duckdb")
    for argv in (["import", str(tmp_path / "b.duckdb")], ["pull", "--remote", str(share)]):
        code, out = run_cli(capsys, "--db", other, *argv)
        assert code == 0 and out.strip() and not too_wide(out), (argv, out)


@pytest.mark.parametrize("argv, said", [
    (["load", "--percentile", "90"], "unrecognized arguments: --percentile 90"),
    (["load", "--concurency", "2"], "did you mean --concurrency?"),
    (["show", "no-such-run-id-at-all"], "no run 'no-such-run-id-at-all'"),
    (["compare", "--slo", "ttft=500", "20250301"], "give no RUN_ID"),
    (["serve", "--host", "0.0.0.0"], "--allow-remote"),
])
def test_errors_fit_80_columns_and_hint_only_the_command_s_own_options(db, capsys, monkeypatch, argv, said):
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    code, out = run_cli(capsys, "--db", db, *argv)
    assert code == 2 and out.startswith("tokentop: error: ")
    assert said in " ".join(out.split()) and not too_wide(out), out
    assert all(line.startswith("  ") for line in out.splitlines()[1:])  # wrapped with an indent
    if "--percentile" in argv:  # load has no --percentile: compare's is not suggested
        assert "did you mean" not in out


# -- the commands that drive a server: bench, load, serve ------------------------------------------------
@pytest.fixture(scope="module")
def fast_server():
    with fast_sse_server() as url:
        yield url


def tokentop(argv: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui.cli", *argv], capture_output=True, text=True, cwd=ROOT,
                          env=dict(env, COLUMNS=str(WIDTH)), timeout=timeout)


def test_bench_and_load_status_lines_and_tables_fit_80_columns(tmp_path, fast_server, cli_env):
    suite = tmp_path / "a-suite-whose-case-names-are-long.toml"
    suite.write_text('name = "tiny"\nreps = 2\n[[cases]]\nid = "a_rather_long_case_name_for_a_table"\n'
                     'prompt = "Hi"\noutput_tokens = 8\n')
    db = str(tmp_path / "served.duckdb")
    engine = ["--engine", "openai", "--endpoint", fast_server, "--db", db]
    for argv in (["bench", "--suite", str(suite), *engine],
                 ["load", "--suite", str(suite), "--concurrency", "1,2", "--num-prompts", "4", "--slo",
                  "ttft=500,tpot=50", "--num-warmups", "1", *engine]):
        out = tokentop(argv, cli_env)
        assert out.returncode == 0, out.stderr
        text = out.stdout + out.stderr
        assert not too_wide(text), (argv[0], too_wide(text))
        # status lines that wrap keep their indent (the engine line names the whole database path)
        if argv[0] == "load":  # the level column is whole on every page of the table
            levels = [line.split("  ")[0] for line in out.stdout.splitlines() if line.startswith("concurrency")]
            assert levels and set(levels) == {"concurrency 1", "concurrency 2"}, out.stdout
        notes = out.stderr.splitlines()
        assert any(line.startswith("tokentop: engine openai") for line in notes)
        assert all(line.startswith(("tokentop:", "  ", "[")) for line in notes), notes


def test_serve_says_where_it_serves_within_80_columns(tmp_path, fast_server, cli_env):
    from tests.support.serve_support import ServerProcess

    server = ServerProcess([sys.executable, "-m", "tui.cli", "--db", str(tmp_path / "s.duckdb"), "serve", "--port", "0",
                            "--engine", "openai", "--endpoint", fast_server],
                           env=dict(cli_env, COLUMNS=str(WIDTH)), cwd=str(ROOT))
    try:
        server.wait_for_output(r"Ctrl\+C stops", timeout=60)
        url = server.url()
        assert "token=" in url
        assert server.stop(signal.SIGINT) == 0
        assert not too_wide(server.output), too_wide(server.output)
        assert url in server.output.split()  # the URL whole on its line, to copy
    finally:
        server.kill()
