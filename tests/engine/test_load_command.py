"""`tokentop load` end to end (against the loopback vLLM server) and its input errors."""

from __future__ import annotations

import json
import subprocess

import pytest

from tui.cli import main


@pytest.mark.parametrize("argv, message", [
    (["--concurrency", "1,x"], "is not a whole number"),
    (["--concurrency", "0"], "must be 1 or more"),
    (["--request-rate", "abc"], "is not a number"),
    (["--request-rate", "2", "--burstiness", "0"], "must be above 0"),
    (["--slo", "ttft=fast"], "number of milliseconds"),
    (["--slo", "itl=5"], "not one of ttft, tpot, e2el"),
    (["--burstiness", "2"], "needs --request-rate"),
    (["--max-concurrency", "2"], "goes with --request-rate"),
    (["--concurrency", "2", "--request-rate", "1"], "not allowed with"),
    (["--suite", "missing.toml"], "does not exist"),
    (["--suite", "seed", "--input-len", "5"], "--input-len is for synthetic prompts"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    code = main(["load", "--db", str(tmp_path / "x.duckdb"), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("tokentop: error:") and message in err[0]


def test_load_cli_json_against_server(vllm_server, tokentop_cmd, cli_env, db_path):
    cmd = [*tokentop_cmd, "load", "--engine", "openai", "--endpoint", vllm_server.base_url, "--model", "smollm2",
           "--concurrency", "1,2", "--input-len", "16", "--output-len", "8", "--num-prompts", "2",
           "--slo", "ttft=60000,tpot=60000", "--db", str(db_path), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert [lv["max_concurrency"] for lv in obj["levels"]] == [1, 2]
    assert all(lv["completed"] == 2 and lv["good_requests"] == 2 for lv in obj["levels"])
    assert all(lv["server"]["source"] == "metrics" for lv in obj["levels"])
    assert obj["slo_ms"] == {"ttft": 60000.0, "tpot": 60000.0}
    assert "level 1/2" in proc.stderr
    from data.store.database import Store

    with Store(db_path) as store:
        runs = [r for r in store.list_runs() if r["kind"] == "load"]
        assert len(runs) == 2 and all(r["status"] == "completed" for r in runs)


def test_load_cli_with_two_client_processes_against_server(vllm_server, tokentop_cmd, cli_env, db_path):
    """--client-processes 2 against a real vLLM server: every request of every level completes, the
    server counts them all, and each level's self-check holds both processes' CPU use."""
    cmd = [*tokentop_cmd, "load", "--engine", "openai", "--endpoint", vllm_server.base_url, "--model", "smollm2",
           "--client-processes", "2", "--concurrency", "1,3", "--input-len", "16", "--output-len", "8",
           "--num-prompts", "4", "--db", str(db_path), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "2 client processes share every level's requests" in proc.stderr
    obj = json.loads(proc.stdout)
    assert [lv["completed"] for lv in obj["levels"]] == [4, 4]
    assert all(lv["total_output_tokens"] == 32 for lv in obj["levels"])
    # concurrency 1: one user, so one process sat it out; concurrency 3: users 2 + 1
    assert [len(h["client_cpu"]) for h in obj["client_health"]] == [1, 2]
    assert [h["client_processes"] for h in obj["client_health"]] == [1, 2]
