"""`tokentop bench/runs/show` as a user runs them: real processes, real engine, real DuckDB file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import psutil
import pytest

from engine.engines.managed_server import free_port
from tests.support.serve_support import wait_until_gone

ENGINE_MARKERS = ("EngineCore", "VLLM::", "vllm.entrypoints")


def _run(cmd, env, *args, timeout=600):
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=timeout)


def _one_line_error(out: subprocess.CompletedProcess, needle: str) -> None:
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    lines = [line for line in out.stderr.splitlines() if line.startswith("tokentop: error:")]
    assert len(lines) == 1, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert needle in lines[0], lines[0]


@pytest.mark.engine
def test_bench_seed_suite_json_then_runs(tokentop_cmd, cli_env, tmp_path):
    db = str(tmp_path / "bench.duckdb")
    user_tmp = tmp_path / "user-tmp"
    user_tmp.mkdir()
    env = dict(cli_env, TMPDIR=str(user_tmp))
    out = _run(tokentop_cmd, env, "bench", "--suite", "seed", "--reps", "1", "--json", "--db", db)
    assert out.returncode == 0, out.stderr[-3000:]
    assert list(user_tmp.iterdir()) == []  # vLLM's temp files went to tokentop's cache dir, and were removed
    result = json.loads(out.stdout)  # exactly one JSON object on stdout
    assert result["status"] == "completed" and result["model"] == "SmolLM2-135M-Instruct"
    assert result["device"] == "CPU" and result["environment"]["versions"]["vllm"]
    assert set(result["cases"]) == {"short", "medium", "long"}
    for case_id, target in (("short", 50), ("medium", 200), ("long", 500)):
        agg = result["cases"][case_id]
        assert agg["target_tokens"] == target
        assert agg["total_output_tokens"] == target  # one rep, length enforced
        assert agg["mean_ttft_ms"] > 0 and agg["mean_decode_rate"] > 0 and agg["mean_tps"] > 0
    assert all(r["output_tokens"] == r["target_tokens"] for r in result["requests"])
    assert "[3/3]" in out.stderr and "embedded SmolLM2-135M-Instruct" in out.stderr

    runs = json.loads(_run(tokentop_cmd, cli_env, "runs", "--json", "--db", db).stdout)
    assert [r["run_id"] for r in runs] == [result["run_id"]]
    assert runs[0]["status"] == "completed" and runs[0]["completed"] == 3

    shown = _run(tokentop_cmd, cli_env, "show", result["run_id"][:17], "--db", db)
    assert shown.returncode == 0 and "medium" in shown.stdout and "TTFT" in shown.stdout


def test_reps_zero_is_bad_usage(tokentop_cmd, cli_env):
    _one_line_error(_run(tokentop_cmd, cli_env, "bench", "--reps", "0"), "--reps")


def test_suite_with_syntax_error(tokentop_cmd, cli_env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[cases]\nprompt = "x"\n')
    _one_line_error(_run(tokentop_cmd, cli_env, "bench", "--suite", str(bad), "--db", str(tmp_path / "d.duckdb")),
                    "not valid TOML")


def test_model_path_that_does_not_exist(tokentop_cmd, cli_env, tmp_path):
    _one_line_error(
        _run(tokentop_cmd, cli_env, "bench", "--model", "/nonexistent/model", "--db", str(tmp_path / "d.duckdb")),
        "does not exist",
    )


def test_unwritable_db(tokentop_cmd, cli_env):
    _one_line_error(_run(tokentop_cmd, cli_env, "bench", "--db", "/proc/nope/tokentop.duckdb"), "--db")


def test_endpoint_refusing_connections(tokentop_cmd, cli_env, tmp_path):
    _one_line_error(
        _run(tokentop_cmd, cli_env, "bench", "--engine", "openai", "--endpoint", f"http://127.0.0.1:{free_port()}",
             "--db", str(tmp_path / "d.duckdb")),
        "connection refused",
    )


@pytest.mark.engine
def test_endpoint_serving_another_model(tokentop_cmd, cli_env, tmp_path, vllm_server):
    _one_line_error(
        _run(tokentop_cmd, cli_env, "bench", "--engine", "openai", "--endpoint", vllm_server.base_url,
             "--model", "meta-llama/Meta-Llama-3-8B-Instruct", "--db", str(tmp_path / "d.duckdb")),
        "serves smollm2",
    )


@pytest.mark.engine
def test_bench_over_openai_engine_stores_the_run(tokentop_cmd, cli_env, tmp_path, vllm_server):
    suite = tmp_path / "s.toml"
    suite.write_text('reps = 2\n[[cases]]\nid = "q"\nprompt = "Hi there"\noutput_tokens = 12\n')
    db = str(tmp_path / "d.duckdb")
    out = _run(tokentop_cmd, cli_env, "bench", "--engine", "openai", "--endpoint", vllm_server.base_url,
               "--suite", str(suite), "--json", "--db", db)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["engine"] == "openai" and result["model"] == "smollm2"
    assert result["cases"]["q"]["total_output_tokens"] == 24


def test_show_unknown_run(tokentop_cmd, cli_env, tmp_path):
    _one_line_error(_run(tokentop_cmd, cli_env, "show", "nope", "--db", str(tmp_path / "d.duckdb")), "no run")


def _engine_children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.engine
@pytest.mark.parametrize(
    "signum",
    [
        pytest.param(signal.SIGINT, id="ctrl-c"),
        # The SSH session dropping sends SIGHUP to the whole process group.
        pytest.param(signal.SIGHUP, id="ssh-dropped"),
    ],
)
def test_stopping_bench_keeps_finished_requests_and_leaves_no_engine(tokentop_cmd, cli_env, tmp_path, signum):
    suite = tmp_path / "long.toml"
    suite.write_text('reps = 20\n[[cases]]\nid = "c"\nprompt = "Tell a story."\noutput_tokens = 24\n')
    db = str(tmp_path / "stopped.duckdb")
    # Its own session, like a shell: the signal goes to the whole foreground process group.
    proc = subprocess.Popen([*tokentop_cmd, "bench", "--suite", str(suite), "--db", db], env=cli_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        lines = []
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            children |= {c.pid for c in _engine_children(proc.pid)}
            if line.startswith("[2/20]"):
                break
        assert any(line.startswith("[2/20]") for line in lines), "".join(lines)[-2000:]
        children |= {c.pid for c in _engine_children(proc.pid)}
        t0 = time.monotonic()
        os.killpg(proc.pid, signum)
        rc = proc.wait(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    rest = proc.stderr.read()
    assert rc == 130, rest[-2000:]
    assert elapsed < 30, elapsed  # "within a few seconds"; generous: CI machines are shared
    assert "stored as aborted" in rest
    assert "Traceback" not in rest
    assert children, "expected the engine to have child processes"
    # The engine's processes are gone (reaped by their parent or re-parented and exiting).
    left = wait_until_gone(children, 10)
    assert not left, f"engine processes left: {left}"

    from data.store.database import Store

    with Store(db) as store:
        (run,) = store.list_runs()
        assert run["status"] == "aborted"
        finished = [r for r in store.get_requests(run["run_id"]) if r["success"]]
        assert 2 <= len(finished) < 20 and all(r["output_tokens"] == 24 for r in finished)
