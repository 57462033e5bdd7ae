"""The article's GPU x provider table from two machines' runs, cost at an SLO and the priced frontier.

Two databases stand for two rented boxes (an H100 on RunPod, an 8-GPU A100 node on Lambda running TP=2),
built with the real Store and RunRecorder from tests/fixtures/matrix/, then merged as a pull would."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pytest

from data.analysis.frontier import pareto_front
from tests.support.matrix_support import build_box, merge
from tui.cli import main

B1, LOAD, PER_REQUEST = "batch-1 TPS", "throughput under load", "per-request TPS under load"


@pytest.fixture(scope="module")
def fleet_db(tmp_path_factory) -> Path:
    """Read-only for the tests that use it: built once."""
    tmp_path = tmp_path_factory.mktemp("fleet")
    laptop = tmp_path / "laptop.duckdb"
    other = tmp_path / "lambda-box.duckdb"
    build_box(laptop, "box_h100_runpod").close()
    build_box(other, "box_a100_lambda").close()
    merge(laptop, other, origin="pull:s3://fleet/runs")
    return laptop


def cli_json(capsys, db: Path, *args: str) -> dict:
    capsys.readouterr()
    assert main(["--db", str(db), "compare", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def stored(db: Path, sql: str, params=()) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


SUITE, RANDOM = "suite seed", "random 128→100"  # the boxes' two workloads: the suite, and the sweeps' prompts


def test_two_machines_merged_give_both_rows_with_costs_from_the_formula(capsys, fleet_db):
    out = cli_json(capsys, fleet_db, "--matrix")
    rows = {(r["workload"], r["gpu_key"], r["provider"]): r for r in out["rows"]}
    # One table per workload: the suite's rows and the sweeps' rows are never averaged together.
    assert {r["workload"] for r in out["rows"]} == {SUITE, RANDOM}
    h100, a100 = rows[(SUITE, "H100-SXM-80", "runpod")], rows[(SUITE, "A100-SXM-80", "lambda")]
    h100_load, a100_load = rows[(RANDOM, "H100-SXM-80", "runpod")], rows[(RANDOM, "A100-SXM-80", "lambda")]
    # Both machines' rows, each marked as measured on its own provider; other providers renting those GPUs
    # get a row too, estimated from the same runs.
    assert h100["measured_here"] and a100["measured_here"]
    assert h100["hosts"] == ["runpod-h100-7f3a"] and a100["hosts"] == ["lambda-a100-node"]
    assert not rows[(SUITE, "H100-SXM-80", "vastai")]["measured_here"]
    assert {p for w, g, p in rows if g == "A100-SXM-80"} >= {"runpod", "vastai", "lambda", "vultr", "coreweave"}

    # Batch-1 TPS by hand from the stored requests: per run, mean of output tokens / E2EL; then over the runs
    # of one workload (the suite runs; the sweep's level that ran one request at a time).
    def per_run(where: str) -> list[float]:
        return [tps for (tps,) in stored(fleet_db, f"""
            SELECT avg(q.output_tokens / (q.e2el_ms / 1000)) FROM requests q JOIN runs r USING (run_id)
            WHERE {where} AND r.gpu_key = 'H100-SXM-80' AND q.success GROUP BY run_id""")]

    suites = per_run("r.kind = 'suite'")
    level1 = per_run("json_extract(r.suite_json, '$.load.max_concurrency')::INT = 1")
    assert len(suites) == 2 and h100["batch1_tps"]["n"] == 2
    assert h100["batch1_tps"]["mean"] == pytest.approx(np.mean(suites))
    assert h100["batch1_tps"]["std"] == pytest.approx(np.std(suites, ddof=1))
    assert len(level1) == 1 and h100_load["batch1_tps"]["n"] == 1
    assert h100_load["batch1_tps"]["mean"] == pytest.approx(level1[0])
    # Throughput under load: the sweep's best level, output tokens of successful requests / duration.
    ((peak,),) = stored(fleet_db, """
        SELECT max(t) FROM (SELECT sum(q.output_tokens) FILTER (WHERE q.success) / any_value(r.duration_s) AS t
        FROM runs r JOIN requests q USING (run_id) WHERE r.kind = 'load' AND r.gpu_key = 'A100-SXM-80' GROUP BY run_id)""")
    assert a100_load["load_throughput"]["mean"] == pytest.approx(peak)
    assert a100["load_throughput"] is None  # the suite ran no load

    # $/h: the price paid where known, for the GPUs the run used (TP=2 on an 8-GPU node: 2/8 of it).
    assert h100["usd_per_hour"] == pytest.approx(2.69) and h100["price_source"] == "paid"
    assert a100["gpus_used"] == 2 and a100["usd_per_hour"] == pytest.approx(14.32 * 2 / 8)
    assert a100["price_source"] == "paid"
    vast = rows[(SUITE, "A100-SXM-80", "vastai")]  # no price paid there: the snapshot's per-GPU price x 2 GPUs
    assert vast["price_source"] == "snapshot" and vast["usd_per_hour"] == pytest.approx(1.40 * 2)

    for r in out["rows"]:
        # cost = $/h / (TPS x 3600) x 1e6, on batch-1 TPS and throughput under load only
        assert set(r["costs"]) <= {B1, LOAD} and PER_REQUEST not in r["costs"]
        for basis, stat in ((B1, r["batch1_tps"]), (LOAD, r["load_throughput"])):
            if basis in r["costs"]:
                assert r["costs"][basis] == pytest.approx(r["usd_per_hour"] / (stat["mean"] * 3600) * 1e6)
    # The cheapest per basis is marked once per workload, and is that workload's lowest.
    for workload in (SUITE, RANDOM):
        mine = [r for r in out["rows"] if r["workload"] == workload]
        for basis in (B1, LOAD):
            priced = [r for r in mine if basis in r["costs"]]
            marked = [r for r in mine if basis in r["cheapest"]]
            assert len(marked) == (1 if priced else 0)
            if priced:
                assert marked[0]["costs"][basis] == min(r["costs"][basis] for r in priced)
    # The article's 2024 figures beside a one-GPU row, none beside a two-GPU one.
    assert h100["reference"]["tps"] == 230 and h100["reference"]["usd_per_million"] == pytest.approx(3.2 / (230 * 3600) * 1e6)
    assert a100["reference"] is None

    capsys.readouterr()
    assert main(["--db", str(fleet_db), "compare", "--matrix"]) == 0
    text = capsys.readouterr().out
    assert "RunPod*" in text and "Lambda*" in text and "A100-SXM-80 ×2" in text
    assert f"workload {SUITE}" in text and f"workload {RANDOM}" in text
    assert all(len(line) <= 80 for line in text.splitlines())


def _by_hand(db: Path, gpu_key: str, ttft_slo: float, tpot_slo: float, p: float = 99) -> tuple[str, float] | None:
    """The passing level with the highest output throughput, from the stored requests."""
    best = None
    for run_id, duration in stored(db, "SELECT run_id, duration_s FROM runs WHERE kind = 'load' AND gpu_key = ?", [gpu_key]):
        reqs = stored(db, "SELECT success, ttft_ms, e2el_ms, output_tokens FROM requests WHERE run_id = ?", [run_id])
        ok = [r for r in reqs if r[0]]
        ttft = np.percentile([r[1] for r in ok], p)
        tpot = np.percentile([(r[2] - r[1]) / (r[3] - 1) for r in ok if r[3] > 1], p)
        if len(ok) < len(reqs) or ttft > ttft_slo or tpot > tpot_slo:
            continue
        throughput = sum(r[3] for r in ok) / duration
        if best is None or throughput > best[1]:
            best = (run_id, throughput)
    return best


def test_cost_at_an_slo_matches_a_hand_computation(capsys, fleet_db):
    out = cli_json(capsys, fleet_db, "--slo", "ttft=500,tpot=50")
    assert out["percentile"] == 99 and out["slo_ms"] == {"ttft": 500.0, "tpot": 50.0}
    answers = {a["gpu_key"]: a for a in out["answers"]}
    run_id, throughput = _by_hand(fleet_db, "H100-SXM-80", 500, 50)
    h100 = answers["H100-SXM-80"]
    assert h100["meets_slo"] and h100["best"]["run_id"] == run_id
    assert h100["best"]["output_throughput"] == pytest.approx(throughput)
    assert h100["best"]["label"] == "concurrency 2"  # concurrency 4 is faster but its p99 TTFT is ~700 ms
    runpod = next(c for c in h100["costs"] if c["provider"] == "runpod")
    assert runpod["usd_per_million"] == pytest.approx(2.69 / (throughput * 3600) * 1e6)
    assert h100["costs"][0]["cheapest"] and h100["cheapest_overall"]
    # The A100's concurrency-4 level had a failed request: it does not meet the SLO.
    a100 = answers["A100-SXM-80"]
    run_id, throughput = _by_hand(fleet_db, "A100-SXM-80", 500, 50)
    assert a100["best"]["run_id"] == run_id and a100["best"]["label"] == "concurrency 1"
    failed = next(lv for lv in a100["levels"] if lv["label"] == "concurrency 4")
    assert failed["meets"] is False and "1 request(s) failed" in failed["why_not"]
    # goodput as vLLM defines it: requests meeting every SLO / duration
    lv = next(lv for lv in h100["levels"] if lv["label"] == "concurrency 4")
    assert lv["good_requests"] == 6 and lv["goodput"] == pytest.approx(6 / 2.0)


def test_at_p50_the_faster_level_meets_the_slo(capsys, fleet_db):
    out = cli_json(capsys, fleet_db, "--slo", "ttft=500", "--percentile", "50")
    h100 = next(a for a in out["answers"] if a["gpu_key"] == "H100-SXM-80")
    run_id, _ = _by_hand(fleet_db, "H100-SXM-80", 500, float("inf"), p=50)
    assert h100["best"]["run_id"] == run_id and h100["best"]["label"] == "concurrency 4"


def test_no_level_meets_the_slo(capsys, fleet_db):
    out = cli_json(capsys, fleet_db, "--slo", "ttft=10")
    assert out["answers"] and all(not a["meets_slo"] and a["best"] is None and not a["costs"] for a in out["answers"])
    capsys.readouterr()
    assert main(["--db", str(fleet_db), "compare", "--slo", "ttft=10"]) == 0
    assert "no level meets the SLO" in capsys.readouterr().out


@pytest.mark.parametrize("args", [["--slo", "ttft=fast"], ["--slo", "latency=5"], ["--slo", "ttft=500", "--percentile", "120"],
                                  ["--matrix", "some-run"]])
def test_bad_slo_input_is_one_line_and_exit_2(capsys, fleet_db, args):
    assert main(["--db", str(fleet_db), "compare", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tokentop: error:") and len(err.strip().splitlines()) == 1


def test_pareto_marking_on_hand_made_points():
    # (per-user tok/s, tok/s per GPU): higher is better on both axes
    points = [(100, 200), (80, 400), (60, 380), (40, 600), (40, 500), (20, 600), (90, 150)]
    assert pareto_front(points) == [True, True, False, True, False, False, False]
    # (TTFT ms, tok/s per GPU): a lower TTFT is better
    ttft = [(30, 200), (90, 350), (700, 400), (100, 300), (900, 390)]
    assert pareto_front(ttft, x_higher_is_better=False) == [True, True, True, False, False]
    assert pareto_front([]) == []


def test_frontier_points_are_priced_and_marked(capsys, fleet_db):
    out = cli_json(capsys, fleet_db, "--frontier")
    points = out["points"]
    assert len(points) == 5
    for p in points:
        assert p["per_gpu_throughput"] == pytest.approx(p["output_throughput"] / p["gpus_used"])
        assert p["cheapest_usd_per_million"] == pytest.approx(min(p["costs"].values()))
    h100 = [p for p in points if p["gpu_key"] == "H100-SXM-80"]
    assert all(p["pareto_user"] and p["pareto_ttft"] for p in h100)  # each level trades speed for throughput
    a100 = [p for p in points if p["gpu_key"] == "A100-SXM-80"]
    assert not any(p["pareto_user"] for p in a100)  # dominated by the H100's levels


def test_levels_group_into_the_sweeps_that_stored_them():
    from data.analysis.matrix import RunFacts, sweeps

    def level(run_id, index, host="box", pid=1):
        return RunFacts(run_id=run_id, kind="load", model="m", gpu_key="H100-SXM-80", gpus_used=1, instance_gpus=1,
                        provider=None, price_paid=None, hostname=host, pid=pid, started_at=run_id, duration_s=1.0,
                        settings={"levels": [1, 2], "level_index": index}, summary={})

    runs = [level("a1", 0), level("a2", 1), level("b1", 0), level("c1", 0), level("c2", 1), level("d1", 0, host="other")]
    assert [[r.run_id for r in chain] for chain in sweeps(runs)] == [["a1", "a2"], ["b1"], ["c1", "c2"], ["d1"]]


def test_an_empty_database_says_so_and_shows_the_article(capsys, tmp_path):
    from data.store.database import Store

    db = tmp_path / "empty.duckdb"
    Store(db).close()
    out = cli_json(capsys, db, "--matrix")
    assert out["rows"] == [] and any("No GPU runs" in n for n in out["notes"])
    assert main(["--db", str(db), "compare", "--matrix"]) == 0
    text = capsys.readouterr().out
    assert "article, 2024" in text and "H100-SXM-80" in text
    assert main(["--db", str(db), "compare", "--slo", "ttft=500"]) == 0
    assert "No load levels stored yet" in capsys.readouterr().out
    assert cli_json(capsys, db, "--frontier")["points"] == []
