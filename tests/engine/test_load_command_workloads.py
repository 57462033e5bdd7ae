"""`tokentop load` with every workload kind, end to end against the loopback vLLM server (in its dev mode,
so the prefix cache is reset before every level), stored with its workload; bad dataset input is one line."""

from __future__ import annotations

import json
import random
import subprocess

import pytest

from tui.cli import main


@pytest.mark.parametrize("argv, message", [
    (["--dataset-name", "sharegpt"], "add --dataset-path FILE"),
    (["--dataset-name", "sharegpt", "--dataset-path", "/nonexistent/sg.json"], "sg.json does not exist"),
    (["--dataset-name", "random", "--dataset-path", "x.json"], "cannot use the 'random' dataset"),
    (["--dataset-name", "bogus"], "invalid choice"),
    (["--random-range-ratio", "2"], "must be in [0, 1)"),
    (["--prefix-repetition-prefix-len", "8"], "is for --dataset-name prefix_repetition"),
    (["--turns", "2"], "--turns needs --multi-turn"),
    (["--num-warmups", "-1"], "must be 0 or more"),
    (["--turn-delay-ms", "x", "--multi-turn"], "is not a number"),
])
def test_bad_workload_options_are_one_line_and_exit_2(argv, message, capsys, tmp_path):
    code = main(["load", "--db", str(tmp_path / "x.duckdb"), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("tokentop: error:") and message in err[0], err


def test_a_bad_dataset_file_is_one_line_before_any_engine_starts(tmp_path, capsys):
    bad = tmp_path / "sg.json"
    bad.write_text('[{"conversations": [{"from": "human", "value": "hi"}')  # cut short
    code = main(["load", "--db", str(tmp_path / "x.duckdb"), "--dataset-name", "sharegpt",
                 "--dataset-path", str(bad), "--model", str(tmp_path / "no-model-here")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "dataset sg.json: cannot read it as ShareGPT" in err[0]


def _files(tmp_path):
    rng = random.Random(0)

    def text(n):
        return " ".join(rng.choice(["gpu", "token", "cache", "serve", "batch"]) for _ in range(n))

    sharegpt = tmp_path / "sg.json"
    sharegpt.write_text(json.dumps(
        [{"conversations": [{"from": "human" if k % 2 == 0 else "gpt", "value": text(8 + k)} for k in range(4)]}
         for _ in range(6)] + [{"conversations": [{"from": "human", "value": "too short"}]}]))
    custom = tmp_path / "prompts.jsonl"
    custom.write_text("".join(json.dumps({"prompt": text(12), "output_tokens": 4}) + "\n" for _ in range(4)))
    trace = tmp_path / "mooncake.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": 100 * i, "input_length": 40, "output_length": 3,
                                         "hash_ids": [7, 8 + i % 2]}) + "\n" for i in range(3)))
    timed = tmp_path / "timed.jsonl"
    timed.write_text("".join(json.dumps({"timestamp": 0.1 * i, "input_length": 20, "output_length": 3,
                                         "hash_ids": [1, 2]}) + "\n" for i in range(3)))
    return {"sharegpt": sharegpt, "custom": custom, "mooncake_trace": trace, "timed_trace": timed}


KINDS = {
    "random": ["--input-len", "64", "--output-len", "4", "--num-prompts", "8", "--concurrency", "8"],
    "prefix_repetition": ["--dataset-name", "prefix_repetition", "--prefix-repetition-prefix-len", "256",
                          "--prefix-repetition-suffix-len", "16", "--prefix-repetition-num-prefixes", "2",
                          "--prefix-repetition-output-len", "3", "--num-prompts", "4", "--concurrency", "1"],
    "sharegpt": ["--dataset-name", "sharegpt", "--output-len", "4", "--num-prompts", "3", "--concurrency", "2"],
    "sharegpt-multi-turn": ["--dataset-name", "sharegpt", "--multi-turn", "--output-len", "3", "--num-prompts", "2",
                            "--concurrency", "2", "--turn-delay-ms", "10"],
    "custom": ["--dataset-name", "custom", "--num-prompts", "4", "--concurrency", "2"],
    "timed_trace": ["--dataset-name", "timed_trace", "--timed-trace-chunk-hash-size", "16"],
    "mooncake_trace": ["--dataset-name", "mooncake_trace", "--timed-trace-chunk-hash-size", "32"],
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_workload_kind_through_load_json(kind, vllm_server, tokentop_cmd, cli_env, db_path, tmp_path):
    files = _files(tmp_path)
    name = kind.split("-")[0]
    argv = list(KINDS[kind])
    if name in files:
        argv += ["--dataset-path", str(files[name])]
    cmd = [*tokentop_cmd, "load", "--engine", "openai", "--endpoint", vllm_server.base_url, "--model", "smollm2",
           "--api", "completions", "--db", str(db_path), "--json", *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    obj = json.loads(proc.stdout)
    workload = obj["workload"]
    assert workload["kind"] == name and workload["key"] and workload["label"]
    levels = obj["levels"]
    assert levels and all(lv["failed"] == 0 and lv["completed"] > 0 for lv in levels)
    # the server was in dev mode: every level started with its prefix cache reset
    assert all(lv["prefix_cache_reset"] is True for lv in levels), [lv.get("prefix_cache_reset_note") for lv in levels]
    assert all(lv["prefix_cache_hit_rate"] is not None for lv in levels)
    if kind == "random":
        # `vllm bench serve --random-input-len 64` sends 512 prompt tokens for 8 requests: so does tokentop
        assert levels[0]["total_input_tokens"] == 512 and levels[0]["input_len_mismatches"] == 0
    if kind == "prefix_repetition":
        assert levels[0]["prefix_cache_hit_rate"] > 0.3
    if kind == "sharegpt-multi-turn":
        assert set(levels[0]["ttft_by_turn"]) == {"0", "1"} and levels[0]["completed"] == 4
    if name.endswith("trace"):
        assert obj["pattern"] == "trace" and levels[0]["label"] == "trace" and levels[0]["completed"] == 3
        assert levels[0]["max_schedule_lag_ms"] < 200
        assert levels[0]["input_len_mismatches"] == 0
    from data.store.database import Store

    with Store(db_path) as store:
        runs = [store.get_run(lv["run_id"]) for lv in levels]
        assert all(r["workload_key"] == workload["key"] and r["workload"]["kind"] == name for r in runs)
        if name in files:
            assert runs[0]["workload"]["file"]["name"] == files[name].name
            assert len(runs[0]["workload"]["file"]["sha256"]) == 64
        rows = store.get_requests(levels[0]["run_id"])
        assert all(r["input_tokens"] for r in rows)
        if kind == "sharegpt-multi-turn":
            assert sorted({r["turn_index"] for r in rows}) == [0, 1]


def test_load_text_output_names_the_workload_and_the_reset(vllm_server, tokentop_cmd, cli_env, db_path, tmp_path):
    cmd = [*tokentop_cmd, "load", "--engine", "openai", "--endpoint", vllm_server.base_url, "--model", "smollm2",
           "--api", "completions", "--db", str(db_path), "--input-len", "32", "--output-len", "3", "--num-prompts", "2",
           "--concurrency", "1", "--num-warmups", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "workload: random 32→3" in out
    assert "warm-up: 1 request(s) before every level, not measured" in out
    assert "prefix cache reset before every level" in out
    assert "prompt tokens 64 (target 64): every prompt exact" in out


def test_bench_runs_a_suite_of_dataset_prompts(vllm_server, tokentop_cmd, cli_env, db_path, tmp_path):
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps({"prompt": f"Say {w}."}) + "\n"
                                                    for w in ("yes", "no", "maybe")))
    suite = tmp_path / "mine.toml"
    suite.write_text('name = "mine"\nreps = 2\n[dataset]\nname = "custom"\npath = "prompts.jsonl"\n'
                     'num_prompts = 3\noutput_len = 4\n')
    cmd = [*tokentop_cmd, "bench", "--engine", "openai", "--endpoint", vllm_server.base_url, "--model", "smollm2",
           "--suite", str(suite), "--db", str(db_path), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from data.store.database import Store

    with Store(db_path) as store:
        run = store.get_run(json.loads(proc.stdout)["run_id"])
        rows = store.get_requests(run["run_id"])
    assert run["workload"]["kind"] == "custom" and run["workload"]["file"]["name"] == "prompts.jsonl"
    assert len(rows) == 6 and sorted({r["prompt"] for r in rows}) == ["Say maybe.", "Say no.", "Say yes."]
    assert all(r["output_tokens"] == 4 for r in rows)
