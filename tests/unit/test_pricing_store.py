"""Prices in DuckDB: every fetch kept, latest per provider, fallback to stored then snapshot, costs per run."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from data.analysis.compare import compare_runs
from data.store.database import RequestRow, Store
from data.store.prices import history, latest_stored, price_board, refresh_async
from pricing.models import FAILED, OK, SNAPSHOT, STALE
from tests.support.pricing_support import env_for, price_server, serve_all, serve_runpod, serve_vastai  # noqa: F401

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "prices.duckdb") as s:
        yield s


def add_run(store, device="NVIDIA H100 80GB HBM3", key="H100-SXM-80", tps=(230.0, 230.0), kind="suite", summary=None):
    env = {"device": device, "gpus": [{"key": key, "memory_mb": 81559}] if key else []}
    rid = store.start_run(kind=kind, engine="vllm", model="m", environment=env)
    for i, t in enumerate(tps):
        store.add_request(rid, RequestRow(i, "medium", i, T0, 0.0, "p", 10, 200, 200, 40.0, 200 / t * 1000, 4.0, t,
                                          True, "length", None, "x"))
    store.finish_run(rid, "completed", duration_s=1.0, summary=summary or {})
    return rid


async def test_refresh_stores_every_provider_and_board_reports_ok(store, price_server):
    serve_all(price_server)
    await refresh_async(store, env=env_for(price_server, lambda_key="k"), now=T0)
    board = price_board(store, now=T0 + timedelta(minutes=5))
    assert {p: s.state for p, s in board.statuses.items()} == {
        "runpod": OK, "vastai": OK, "lambda": OK, "vultr": OK, "coreweave": STALE}  # its table dates from 2024
    assert board.statuses["runpod"].source == "live"
    assert board.statuses["coreweave"].source == SNAPSHOT
    h100 = board.for_gpu("H100-SXM-80")
    assert {r.provider for r in h100} == {"runpod", "vastai", "lambda", "vultr", "coreweave"}


async def test_failed_fetch_falls_back_to_last_stored_prices(store, price_server):
    serve_all(price_server)
    env = env_for(price_server)
    await refresh_async(store, env=env, now=T0)
    before = latest_stored(store, "runpod")
    price_server.clear()
    price_server.expect_request("/graphql").respond_with_data("down", status=500)
    serve_vastai(price_server)
    await refresh_async(store, ["runpod", "vastai"], env=env, now=T0 + timedelta(hours=1))
    board = price_board(store, now=T0 + timedelta(hours=1))
    rp = board.statuses["runpod"]
    assert rp.state == STALE and rp.reason == "HTTP 500 INTERNAL SERVER ERROR"
    assert rp.source == "live" and rp.as_of == T0  # the prices shown are the ones fetched an hour ago
    assert sorted(r.usd_per_hour for r in board.rows if r.provider == "runpod") == sorted(
        r.usd_per_hour for r in before)
    assert board.statuses["vastai"].state == OK  # the others still load


async def test_failed_fetch_with_nothing_stored_falls_back_to_the_snapshot(store, price_server):
    price_server.expect_request("/graphql").respond_with_data("<html>login</html>", content_type="text/html")
    await refresh_async(store, ["runpod"], env=env_for(price_server), now=T0)
    board = price_board(store, now=T0)
    rp = board.statuses["runpod"]
    assert rp.state == STALE and rp.source == SNAPSHOT
    assert "not JSON" in rp.reason and "article, 2024" in rp.reason
    assert {r.gpu_key for r in board.rows if r.provider == "runpod"} == {"H100-SXM-80", "A100-SXM-80", "RTX4090-24"}


def test_a_provider_with_no_rows_anywhere_is_failed(store):
    board = price_board(store, providers=["nosuchprovider"])
    assert board.statuses["nosuchprovider"].state == FAILED


async def test_prices_older_than_a_day_are_stale(store, price_server):
    serve_runpod(price_server)
    await refresh_async(store, ["runpod"], env=env_for(price_server), now=T0)
    board = price_board(store, now=T0 + timedelta(days=3))
    assert board.statuses["runpod"].state == STALE
    assert "3 d old" in board.statuses["runpod"].reason


async def test_history_keeps_every_fetch(store, price_server):
    serve_runpod(price_server)
    for h in range(3):
        await refresh_async(store, ["runpod"], env=env_for(price_server), now=T0 + timedelta(hours=h))
    hist = [h for h in history(store, "H100-SXM-80") if h["pricing_type"] == "on-demand"]
    assert len(hist) == 3 and {h["usd_per_gpu_hour"] for h in hist} == {2.69}


async def test_compare_costs_every_provider_for_the_runs_gpu(store, price_server):
    serve_all(price_server)
    await refresh_async(store, env=env_for(price_server), now=T0)
    rid = add_run(store)
    [rc] = compare_runs(store, [rid], now=T0)
    assert rc.tps == 230.0 and rc.tps_basis == "batch-1 TPS"
    assert {c.provider for c in rc.costs} == {"runpod", "vastai", "lambda", "vultr", "coreweave"}
    secure = [c for c in rc.costs if c.provider == "runpod" and c.detail == "secure cloud"][0]
    assert secure.usd_per_million == pytest.approx(2.69 / (230 * 3600) * 1e6)
    assert [c.cheapest for c in rc.costs].count(True) == 1
    assert rc.costs[0].cheapest and rc.costs[0].usd_per_million == min(c.usd_per_million for c in rc.costs)
    # An 8-GPU offer is costed at the run's share: 1 of 8 GPUs.
    eight = [c for c in rc.costs if c.provider == "lambda" and "gpu_8x_h100_sxm5" in c.detail][0]
    assert eight.usd_per_hour == pytest.approx(2.99)
    assert {r.provider for r in rc.reference} == {"runpod", "vastai", "lambda", "coreweave"}


def test_compare_cpu_run_says_no_provider_rents_it(store):
    rid = add_run(store, device="CPU", key=None, tps=(30.0, 32.0))
    [rc] = compare_runs(store, [rid], now=T0)
    assert rc.costs == []
    assert "No provider rents this device (CPU)" in rc.note
    assert len(rc.reference) == 12


def test_load_runs_are_costed_on_throughput(store):
    rid = add_run(store, kind="load", summary={"cases": {"c8": {"output_throughput": 1800.0}}})
    [rc] = compare_runs(store, [rid], now=T0)
    assert rc.tps == 1800.0 and rc.tps_basis == "throughput under load"


def test_per_request_tps_under_load_is_per_user_speed_never_a_cost_basis(store):
    # Issue 10: per-request TPS at concurrency 8 prices the whole GPU at one stream's speed (about 8x too
    # dear). It leaves the cost bases and is reported as per-user speed.
    rid = add_run(store, kind="load", tps=(40.0, 40.0),
                  summary={"cases": {"load": {"output_throughput": 1500.0}},
                           "overall": {"output_throughput": 1800.0, "max_concurrency": 8, "request_rate": "inf"}})
    [rc] = compare_runs(store, [rid], now=T0)
    assert rc.tps == 1800.0 and rc.tps_basis == "throughput under load"  # overall wins over a case
    assert rc.speeds == [{"tps": 1800.0, "tps_basis": "throughput under load"}]
    assert rc.costs and {c.tps_basis for c in rc.costs} == {"throughput under load"}
    assert all(c.tps == 1800.0 for c in rc.costs)
    for c in rc.costs:
        assert c.usd_per_million == pytest.approx(c.usd_per_hour / (1800.0 * 3600) * 1e6)
    assert rc.per_user_tps == 40.0 and rc.per_user_label == "tok/s per user"
    assert sum(c.cheapest for c in rc.costs) == 1 and rc.costs[0].cheapest
    d = rc.to_dict()
    assert d["per_user_tps"] == 40.0
    assert "per-request" not in str([c["tps_basis"] for c in d["costs"]] + [s["tps_basis"] for s in d["speeds"]])


def test_load_level_at_concurrency_one_names_its_per_request_figure_batch_1(store):
    rid = add_run(store, kind="load", tps=(230.0,),
                  summary={"overall": {"output_throughput": 228.0, "max_concurrency": 1, "request_rate": "inf"}})
    [rc] = compare_runs(store, [rid], now=T0)
    assert [s["tps_basis"] for s in rc.speeds] == ["throughput under load", "batch-1 TPS"]


def test_load_run_cases_as_a_list_and_no_requests(store):
    rid = add_run(store, kind="load", tps=(),
                  summary={"cases": [{"output_throughput": 900.0}, {"output_throughput": 1200.0}]})
    [rc] = compare_runs(store, [rid], now=T0)
    assert rc.speeds == [{"tps": 1200.0, "tps_basis": "throughput under load"}]
    assert {c.tps_basis for c in rc.costs} == {"throughput under load"}
