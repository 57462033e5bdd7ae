"""A second process recording runs into a database through the real Store and RunRecorder, as a
headless bench or another app would. Used by tests/e2e/test_store_concurrency.py and
benchmarks/db_concurrency.py.

    python -m tests.support.concurrent_writer DB [--runs N | --until STOPFILE] [--requests M] [--chunks K]

Prints one JSON line at the end: {"run_ids": [...], "errors": [...]}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from data.store.database import Store, StoreError
from data.store.recorder import RunRecorder
from engine.measure.metrics import request_metrics
from engine.types import GenerationRequest, RequestRecord


def synthetic(index: int, chunks: int) -> RequestRecord:
    st = time.perf_counter_ns()
    rec = RequestRecord(request=GenerationRequest(prompt=f"p{index}", max_tokens=chunks, case_id="c", rep=index), st_ns=st)
    rec.chunk_ns = [st + 40_000_000 + i * 10_000_000 for i in range(chunks)]
    rec.chunk_tokens = [1] * chunks
    rec.reported_output_tokens = chunks
    rec.input_tokens = 5
    rec.success = True
    rec.finish_reason = "length"
    rec.text = "tok " * chunks
    rec.sent_wall = time.time()
    return rec


def record_run(store: Store, requests: int, chunks: int, label: str) -> str:
    rec = RunRecorder(store)
    run_id = rec.start(kind="suite", engine_description={"engine": "test", "model": "writer"},
                       environment={"device": "CPU", "gpus": []}, suite="concurrent", reps=requests, label=label)
    for i in range(requests):
        r = synthetic(i, chunks)
        rec.record(i, r, request_metrics(r))
    rec.finish("completed", duration_s=0.1, summary={"cases": {}})
    return run_id


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("db")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--until", help="keep recording runs until this file exists")
    p.add_argument("--requests", type=int, default=5)
    p.add_argument("--chunks", type=int, default=50)
    p.add_argument("--label", default=f"writer-{os.getpid()}")
    a = p.parse_args()
    run_ids, errors = [], []
    store = Store(a.db)
    print("ready", flush=True)
    while True:
        if a.until:
            if os.path.exists(a.until):
                break
        elif len(run_ids) >= a.runs:
            break
        try:
            run_ids.append(record_run(store, a.requests, a.chunks, a.label))
        except StoreError as exc:
            errors.append(str(exc))
    store.close()
    print(json.dumps({"run_ids": run_ids, "errors": errors}), flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
