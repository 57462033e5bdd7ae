"""How long the Compare matrix, cost at an SLO and the frontier take on a fleet-sized database.

Builds a DuckDB file with the real schema holding BOXES machines (GPUs and providers cycled), each with
SUITES suite runs of 30 requests and SWEEPS sweeps of 6 concurrency levels of 32 requests (1,000 runs and
~31,000 requests by default), written in bulk with SQL (the recorder is not what is measured here), then
times data.analysis.matrix.build_matrix, data.analysis.frontier.cost_at_slo and
data.analysis.frontier.build_frontier (median of 5).

    .venv/bin/python benchmarks/matrix_scale.py [--boxes 20] [--suites 20] [--sweeps 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from data.analysis.frontier import build_frontier, cost_at_slo
from data.analysis.matrix import build_matrix
from data.store.database import Store

BOXES = [("H100-SXM-80", "runpod", 2.69), ("A100-SXM-80", "lambda", None), ("RTX4090-24", "vastai", 0.41),
         ("H100-SXM-80", "coreweave", None), ("A100-SXM-80", "vultr", 1.9)]
LEVELS = [1, 2, 4, 8, 16, 32]


def build(path: Path, boxes: int, suites: int, sweeps: int) -> tuple[int, int]:
    store = Store(path)
    runs, requests = [], []
    t = 0
    for b in range(boxes):
        gpu, provider, paid = BOXES[b % len(BOXES)]
        host = f"box-{b}"
        base = dict(engine="vllm", model="meta-llama/Meta-Llama-3-8B-Instruct", hostname=host, pid=1000 + b,
                    gpu_key=gpu, gpu_count=1, provider=provider, price_per_hour_usd=paid,
                    gpus_used=json.dumps([{"index": 0, "key": gpu}]))
        speed = 100 + 40 * (b % 5)
        for s in range(suites):
            run_id = f"{host}-suite-{s}"
            t += 1
            runs.append(dict(base, run_id=run_id, kind="suite", suite="seed", suite_json=None, duration_s=60.0,
                             started_at=t, summary="{}"))
            for i in range(30):
                e2el = 200 / (speed + (i % 7)) * 1000
                requests.append((run_id, i, True, 200, 40.0 + i % 5, e2el, 200 / e2el * 1000))
        for w in range(sweeps):
            for index, c in enumerate(LEVELS):
                run_id = f"{host}-sweep-{w}-{c}"
                t += 1
                settings = {"kind": "load", "levels": [{"max_concurrency": x} for x in LEVELS], "level_index": index,
                            "load": {"max_concurrency": c, "request_rate": "inf"}, "label": f"concurrency {c}"}
                runs.append(dict(base, run_id=run_id, kind="load", suite="load", suite_json=json.dumps(settings),
                                 duration_s=2.0 + c * 0.2, started_at=t, summary="{}"))
                for i in range(32):
                    ttft = 30.0 * c + i
                    e2el = ttft + 99 * (4.0 + c * 0.3)
                    requests.append((run_id, i, True, 100, ttft, e2el, 100 / e2el * 1000))
    with store.connection() as con:
        con.execute("BEGIN")
        for r in runs:
            con.execute(
                "INSERT INTO runs (run_id, kind, status, started_at, suite, suite_json, engine, model, hostname, pid, "
                "gpu_key, gpu_count, provider, price_per_hour_usd, gpus_used, duration_s, summary) "
                "VALUES (?, ?, 'completed', to_timestamp(?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [r["run_id"], r["kind"], 1_760_000_000 + r["started_at"], r["suite"], r["suite_json"], r["engine"],
                 r["model"], r["hostname"], r["pid"], r["gpu_key"], r["gpu_count"], r["provider"],
                 r["price_per_hour_usd"], r["gpus_used"], r["duration_s"], r["summary"]])
        con.executemany(
            "INSERT INTO requests (run_id, request_index, success, output_tokens, ttft_ms, e2el_ms, tps) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", requests)
        con.execute("COMMIT")
    store.close()
    return len(runs), len(requests)


def timed(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--boxes", type=int, default=20)
    ap.add_argument("--suites", type=int, default=20)
    ap.add_argument("--sweeps", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet.duckdb"
        n_runs, n_requests = build(path, args.boxes, args.suites, args.sweeps)
        with Store(path) as store:
            matrix = timed(lambda: build_matrix(store))
            slo = timed(lambda: cost_at_slo(store, {"ttft": 500, "tpot": 50}))
            frontier = timed(lambda: build_frontier(store))
            rows = len(build_matrix(store).rows)
            points = len(build_frontier(store).points)
    print(f"{n_runs} runs, {n_requests} requests, {args.boxes} machines: "
          f"matrix {matrix * 1000:.0f} ms ({rows} rows), cost at an SLO {slo * 1000:.0f} ms, "
          f"frontier {frontier * 1000:.0f} ms ({points} points) (median of 5)")


if __name__ == "__main__":
    main()
