"""`tokentop prices` and `tokentop compare`, in-process through tui.cli.main, against a loopback server."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from data.store.database import RequestRow, Store
from tests.support.pricing_support import env_for, price_server, serve_all  # noqa: F401
from tui.cli import main


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "cli.duckdb")


@pytest.fixture
def offline_env(monkeypatch, price_server):
    """Point every provider at the loopback server; no key in the environment."""
    for name, value in env_for(price_server).items():
        monkeypatch.setenv(name, value)
    for key in ("LAMBDA_API_KEY", "RUNPOD_API_KEY", "VASTAI_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    return price_server


def add_run(db, device, key, tps):
    with Store(db) as s:
        env = {"device": device, "gpus": [{"key": key}] if key else []}
        rid = s.start_run(kind="suite", engine="vllm", model="m", environment=env)
        for i, t in enumerate(tps):
            s.add_request(rid, RequestRow(i, "medium", i, datetime.now(timezone.utc), 0.0, "p", 10, 200, 200, 40.0,
                                          200 / t * 1000, 4.0, t, True, "length", None, "x"))
        s.finish_run(rid, "completed", duration_s=1.0, summary={})
        return rid


def test_prices_refresh_json_uses_the_local_server(db, offline_env, capsys):
    serve_all(offline_env)
    assert main(["--db", db, "prices", "--refresh", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    states = {p["provider"]: (p["state"], p["source"]) for p in out["providers"]}
    assert states["runpod"] == ("ok", "live") and states["vastai"] == ("ok", "live")
    assert states["lambda"] == ("ok", "catalog")  # no key: the public catalog
    assert states["coreweave"] == ("stale", "snapshot")  # a 2024 dated table: stale, like every old price
    assert len(offline_env.log) >= 5  # every request went to the loopback server


def test_prices_gpu_filter_accepts_a_name_and_prints_source_and_age(db, offline_env, capsys):
    serve_all(offline_env)
    assert main(["--db", db, "prices", "--refresh", "--gpu", "NVIDIA H100 PCIe"]) == 0
    out = capsys.readouterr().out
    assert "H100 PCIe 80GB" in out and "H100 SXM 80GB" not in out
    assert "live, 0 s ago" in out or "live, 1 s ago" in out


def test_prices_without_refresh_shows_the_snapshot_offline(db, capsys):
    assert main(["--db", db, "prices", "--json", "--gpu", "RTX4090-24"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {p["provider"] for p in out["prices"]} == {"runpod", "vastai", "vultr"}
    assert {p["source"] for p in out["prices"]} == {"snapshot"}


def test_prices_unknown_gpu_is_a_usage_error(db, capsys):
    assert main(["--db", db, "prices", "--gpu", "Voodoo 5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tokentop: error: unknown GPU 'Voodoo 5'") and err.count("\n") == 1


def test_prices_refresh_with_a_provider_down_still_answers(db, offline_env, capsys):
    offline_env.expect_request("/graphql").respond_with_data("x", status=500)
    assert main(["--db", db, "prices", "--refresh", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    runpod = [p for p in out["providers"] if p["provider"] == "runpod"][0]
    assert runpod["state"] == "stale" and runpod["reason"].startswith("HTTP 500")
    assert runpod["source"] == "snapshot"


def test_compare_json_on_a_gpu_run(db, offline_env, capsys):
    serve_all(offline_env)
    assert main(["--db", db, "prices", "--refresh", "--json"]) == 0
    capsys.readouterr()
    rid = add_run(db, "NVIDIA H100 80GB HBM3", "H100-SXM-80", [230.0])
    assert main(["--db", db, "compare", "--json"]) == 0  # default: the latest completed run
    out = json.loads(capsys.readouterr().out)
    [run] = out["runs"]
    assert run["run_id"] == rid and run["tps_basis"] == "batch-1 TPS"
    providers = {c["provider"] for c in run["costs"]}
    assert providers == {"runpod", "vastai", "lambda", "vultr", "coreweave"}
    assert all(c["usd_per_million"] == pytest.approx(c["usd_per_hour"] / (230 * 3600) * 1e6) for c in run["costs"])
    assert [r["provider"] for r in run["reference"]] == ["runpod", "vastai", "lambda", "coreweave"]


def test_compare_cpu_run_says_so_and_shows_the_article_rows(db, capsys):
    add_run(db, "CPU", None, [30.0])
    assert main(["--db", db, "compare"]) == 0
    out = capsys.readouterr().out
    assert "No provider rents this device (CPU)" in out
    assert "article, 2024" in out and "3.86" in out  # H100 RunPod reference row, costed


def test_compare_json_on_a_cpu_run_says_no_provider_rents_it(db, capsys):
    rid = add_run(db, "CPU", None, [30.0, 34.0])
    with Store(db) as s:
        run = s.get_run(rid)
    assert run["device"] == "CPU" and run["gpu_key"] is None
    assert main(["--db", db, "compare", "--json", rid]) == 0
    out = json.loads(capsys.readouterr().out)
    [run] = out["runs"]
    assert run["run_id"] == rid and run["gpu_key"] is None and run["gpu"] == "CPU"
    assert run["costs"] == []
    assert run["note"].startswith("No provider rents this device (CPU)")
    assert run["tps"] == pytest.approx(32.0) and run["tps_basis"] == "batch-1 TPS"
    ref = run["reference"]
    assert len(ref) == 12 and {r["label"] for r in ref} == {"article, 2024"}
    assert {r["gpu_key"] for r in ref} >= {"H100-SXM-80", "A100-SXM-80", "RTX4090-24"}
    assert all(r["usd_per_million"] == pytest.approx(r["usd_per_hour"] / (r["tps"] * 3600) * 1e6) for r in ref)
    assert {p["provider"] for p in out["providers"]} == {"runpod", "vastai", "lambda", "vultr", "coreweave"}


def test_compare_on_a_load_run_costs_throughput_and_shows_per_user_speed_apart(db, capsys):
    with Store(db) as s:
        rid = s.start_run(kind="load", engine="vllm", model="m",
                          environment={"device": "NVIDIA H100 80GB HBM3", "gpus": [{"key": "H100-SXM-80"}]})
        for i in range(2):
            s.add_request(rid, RequestRow(i, "load", i, datetime.now(timezone.utc), 0.0, "p", 10, 200, 200, 40.0,
                                          5000.0, 4.0, 40.0, True, "length", None, "x"))
        s.finish_run(rid, "completed", duration_s=1.0, summary={"overall": {"output_throughput": 1800.0}})
    assert main(["--db", db, "compare", "--json", rid]) == 0
    [run] = json.loads(capsys.readouterr().out)["runs"]
    assert [s["tps_basis"] for s in run["speeds"]] == ["throughput under load"]
    assert {c["tps_basis"] for c in run["costs"]} == {"throughput under load"}
    assert run["per_user_tps"] == 40.0 and run["per_user_label"] == "tok/s per user"
    assert main(["--db", db, "compare", rid]) == 0
    text = " ".join(capsys.readouterr().out.split())  # the header may wrap
    assert "1800.0 tok/s (throughput under load)" in text
    assert "per-user speed 40.0 tok/s per user" in text and "not a cost basis" in text
    assert "per-request TPS under load" not in text.split("not a cost basis")[-1]


def test_compare_errors_are_one_line(db, capsys):
    assert main(["--db", db, "compare"]) == 2  # nothing to compare: a usage error, like the others
    assert capsys.readouterr().err.startswith("tokentop: error: no completed run")
    add_run(db, "CPU", None, [30.0])
    assert main(["--db", db, "compare", "nope"]) == 2
    assert capsys.readouterr().err.startswith("tokentop: error: no run 'nope'")


def test_bad_db_path_is_exit_2(tmp_path, capsys):
    bad = tmp_path / "file"
    bad.write_text("not a directory")
    assert main(["--db", str(bad / "x.duckdb"), "prices"]) == 2
    assert capsys.readouterr().err.startswith("tokentop: error: cannot open database")
