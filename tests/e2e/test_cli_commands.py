"""The first hour at the command line, in an 80-column terminal (COLUMNS=80): every table fits without a
number cut to '…', batch-1 TPS and per-user speed are separate columns, a stopped generation reads the
same everywhere, prices agree with each other, and mistakes get one clear line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from tests.support.first_hour_support import add_load_sweep, add_stopped_generation, cut_numbers
from tests.support.tui_support import fixed_store
from tui.cli import main

SUITE_RUN, CPU_RUN = "20250301-120000-aaaaaa", "20250303-180000-cccccc"


@pytest.fixture
def first_hour_db(tmp_path, utc):
    """What a new user has after an hour: two suites, an interactive run, a stopped generation, a sweep."""
    path = tmp_path / "first.duckdb"
    store = fixed_store(path)
    levels = add_load_sweep(store, started=datetime(2025, 3, 5, 9, 0, tzinfo=timezone.utc))
    stopped = add_stopped_generation(store)
    store.close()
    return str(path), levels, stopped


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_fits(text: str, width: int = 80) -> None:
    wide = [line for line in text.splitlines() if len(line) > width]
    assert not wide, "lines wider than the terminal:\n" + "\n".join(wide)
    assert not cut_numbers(text), cut_numbers(text)


def test_cut_number_detector():
    assert cut_numbers("│ 119… │ 48.… │ 20…") == ["'119…' in '│ 119… │ 48.… │ 20…'", "'48.…' in '│ 119… │ 48.… │ 20…'",
                                              "'20…' in '│ 119… │ 48.… │ 20…'"]
    assert cut_numbers("a │ … │ b")
    assert not cut_numbers("stopping…, storing run 20250301-120000-aaaaaa  Loading… filter: date… (f)")


def test_every_table_fits_80_columns_and_keeps_every_digit(first_hour_db, capsys, monkeypatch):
    db, (c1, c8), stopped = first_hour_db
    monkeypatch.setenv("COLUMNS", "80")
    for argv in (["runs"], ["show", SUITE_RUN], ["show", c8], ["show", stopped], ["compare", SUITE_RUN],
                 ["compare", CPU_RUN], ["prices"], ["compare", "--matrix"], ["compare", "--slo", "ttft=500"],
                 ["compare", "--frontier"]):
        code, out, err = run_cli(capsys, "--db", db, *argv)
        assert code == 0, (argv, err)
        assert_fits(out)
    # The figures a cut used to eat are there whole: the level's vLLM headline and its TTFT of 3.7 s.
    code, out, _ = run_cli(capsys, "--db", db, "show", c8)
    for header in ("duration s", "in tok", "out tok", "total tok/s", "TTFT mean", "TTFT med", "TPOT mean",
                   "TPOT med", "ITL mean", "ITL med", "user tok/s"):
        assert header in out, header
    assert "3735.4" in out and "1536" in out  # mean TTFT (ms), total output tokens (12 x 128)


def test_runs_table_at_80_columns_names_what_it_leaves_out(first_hour_db, capsys, monkeypatch):
    db, (c1, c8), stopped = first_hour_db
    monkeypatch.setenv("COLUMNS", "80")
    _, out, _ = run_cli(capsys, "--db", db, "runs")
    assert_fits(out)
    rows = {line.split()[0]: line for line in out.splitlines() if line[:8].isdigit()}
    assert set(rows) >= {SUITE_RUN, CPU_RUN, c1, c8, stopped}  # every run id whole, to paste into `show`
    assert "not shown at 80 columns:" in out and "model" in out.split("not shown at 80 columns:")[1]
    # Wide enough, nothing is left out.
    monkeypatch.setenv("COLUMNS", "240")  # wide enough for every column, the workload too
    _, wide, _ = run_cli(capsys, "--db", db, "runs")
    assert "not shown" not in wide and "SmolLM2-135M-Instruct" in wide


def test_json_output_does_not_depend_on_the_width(first_hour_db, capsys, monkeypatch):
    db, (c1, c8), _ = first_hour_db
    outputs = []
    for width in ("80", "200"):
        monkeypatch.setenv("COLUMNS", width)
        outputs.append([run_cli(capsys, "--db", db, *argv)[1] for argv in (["runs", "--json"], ["show", c8, "--json"])])
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0][1])["overall"]["mean_ttft_ms"] == pytest.approx(3735.4)


def test_batch1_tps_and_per_user_speed_are_separate_columns(first_hour_db, capsys, monkeypatch):
    db, (c1, c8), _ = first_hour_db
    monkeypatch.setenv("COLUMNS", "80")
    _, out, _ = run_cli(capsys, "--db", db, "runs")
    header = next(line for line in out.splitlines() if line.startswith("run "))
    b1_at, user_at = header.index("b1 TPS"), header.index("user tok/s")
    rows = {line.split()[0]: line for line in out.splitlines() if line[:8].isdigit()}

    def cell(line: str, end: int) -> str:  # right-aligned figures end where their header ends
        return line[:end].split()[-1]

    b1_end, user_end = b1_at + len("b1 TPS"), user_at + len("user tok/s")
    assert "load c=8" in rows[c8] and "load c=1" in rows[c1] and "suite seed" in rows[SUITE_RUN]
    assert cell(rows[c8], user_end) != "–" and cell(rows[c8], b1_end) == "–"  # under load: per-user speed
    assert cell(rows[c1], b1_end) != "–" and cell(rows[c1], user_end) == "–"  # concurrency 1: batch-1 TPS
    assert cell(rows[SUITE_RUN], b1_end) == "106.2" and cell(rows[SUITE_RUN], user_end) == "–"


def test_a_stopped_generation_shows_the_same_figures_in_runs_and_show(first_hour_db, capsys, monkeypatch):
    db, _levels, stopped = first_hour_db
    monkeypatch.setenv("COLUMNS", "200")
    _, shown, _ = run_cli(capsys, "--db", db, "show", stopped, "--json")
    overall = json.loads(shown)["overall"]
    _, listed, _ = run_cli(capsys, "--db", db, "runs", "--json")
    row = next(r for r in json.loads(listed) if r["run_id"] == stopped)
    assert row["mean_ttft_ms"] == pytest.approx(overall["mean_ttft_ms"]) == pytest.approx(120.0)
    assert row["mean_tps"] == pytest.approx(overall["mean_tps"])
    _, text, _ = run_cli(capsys, "--db", db, "runs")
    line = next(line for line in text.splitlines() if line.startswith(stopped))
    assert "aborted" in line and "120.0" in line and f"{overall['mean_tps']:.1f}" in line


def test_compare_on_a_cpu_run_says_nothing_about_gpus(first_hour_db, capsys, monkeypatch):
    db, _levels, _stopped = first_hour_db
    monkeypatch.setenv("COLUMNS", "80")
    _, out, _ = run_cli(capsys, "--db", db, "compare", CPU_RUN)
    assert "GPU(s)" not in out and "×1" not in out.splitlines()[0]
    assert "No provider rents this device (CPU)" in out


def test_one_price_type_and_one_status_rule_everywhere(first_hour_db, capsys, monkeypatch):
    db, _levels, _stopped = first_hour_db
    monkeypatch.setenv("COLUMNS", "200")
    _, prices, _ = run_cli(capsys, "--db", db, "prices", "--json")
    board = json.loads(prices)
    vast_types = {p["pricing_type"] for p in board["prices"] if p["provider"] == "vastai"}
    assert vast_types == {"spot"}
    # Every provider's prices here come from 2024: stale everywhere, CoreWeave's dated table too.
    assert {p["provider"]: p["state"] for p in board["providers"]} == dict.fromkeys(
        ("runpod", "vastai", "lambda", "vultr", "coreweave"), "stale")
    _, costs, _ = run_cli(capsys, "--db", db, "compare", CPU_RUN, "--json")
    ref = json.loads(costs)["runs"][0]["reference"]
    assert {r["pricing_type"] for r in ref if r["provider"] == "vastai"} == {"spot"}
    assert {r["pricing_type"] for r in ref if r["provider"] == "runpod"} == {"on-demand"}


def test_an_offline_refresh_says_it_failed(first_hour_db, capsys, monkeypatch):
    db, _levels, _stopped = first_hour_db
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens, every fetch fails at once
    for var in ("TOKENTOP_RUNPOD_URL", "TOKENTOP_VASTAI_URL", "TOKENTOP_VULTR_URL", "TOKENTOP_LAMBDA_URL",
                "TOKENTOP_LAMBDA_CATALOG_URL"):
        monkeypatch.setenv(var, closed)
    monkeypatch.delenv("LAMBDA_API_KEY", raising=False)
    code, _out, err = run_cli(capsys, "--db", db, "prices", "--refresh")
    assert code == 0
    assert "refresh failed: 4 of 4 live fetches failed" in err, err


def test_compare_on_an_empty_database_is_a_usage_error(tmp_path, capsys):
    code, _out, err = run_cli(capsys, "--db", str(tmp_path / "empty.duckdb"), "compare")
    assert code == 2 and err.startswith("tokentop: error: no completed run") and len(err.splitlines()) == 1


@pytest.mark.parametrize("argv, suggestion", [
    (["load", "--concurency", "2"], "did you mean --concurrency?"),
    (["runs", "--limt", "3"], "did you mean --limit?"),
    (["lod"], "did you mean load?"),
])
def test_a_misspelt_option_or_command_gets_did_you_mean(tmp_path, capsys, argv, suggestion):
    code, _out, err = run_cli(capsys, "--db", str(tmp_path / "x.duckdb"), *argv)
    assert code == 2 and suggestion in err and len(err.splitlines()) == 1


def test_a_hub_id_not_in_the_local_cache_is_refused_at_once(tmp_path, cli_env, tokentop_cmd):
    # Offline (HF_HUB_OFFLINE=1): online, an uncached hub id is downloaded (tests/e2e/test_hub_download.py).
    env = dict(cli_env, HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(tmp_path / "hf" / "hub"), HF_HUB_OFFLINE="1")
    t0 = time.monotonic()
    out = subprocess.run([*tokentop_cmd, "--db", str(tmp_path / "h.duckdb"), "bench", "--model",
                          "meta-llama/Meta-Llama-3-8B-Instruct"], capture_output=True, text=True, env=env, timeout=120)
    took = time.monotonic() - t0
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "not in the local Hugging Face cache" in out.stderr
    assert str(tmp_path / "hf" / "hub") in out.stderr and "Traceback" not in out.stderr
    assert took < 20  # no hub retries (they took 35 s)


def test_runs_in_a_real_80_column_process(first_hour_db, cli_env, tokentop_cmd):
    """The same through the installed command, COLUMNS=80 in its environment, output to a pipe."""
    db, _levels, _stopped = first_hour_db
    out = subprocess.run([*tokentop_cmd, "--db", db, "runs"], capture_output=True, text=True,
                         env=dict(cli_env, COLUMNS="80", TZ="UTC"), timeout=120)
    assert out.returncode == 0, out.stderr
    assert_fits(out.stdout)
    assert sys.executable  # the command ran through the shared venv's interpreter
