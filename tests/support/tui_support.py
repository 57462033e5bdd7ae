"""Fixed, deterministic runs in a temp DuckDB for the TUI's snapshot and history tests."""

from __future__ import annotations

import random
from datetime import datetime, timezone

from data.store.database import Store
from data.store.recorder import RunRecorder
from engine.measure.metrics import request_metrics
from engine.orchestrator import case_summary as summarise
from engine.types import GenerationRequest, RequestRecord
from tests.support.wait import wait_for, wait_steady

MS = 1_000_000

TINY_SUITE = """
name = "tiny"
description = "two short cases for tests"
reps = 1
temperature = 0.8
enforce_length = true

[[cases]]
id = "a"
prompt = "Say hello."
output_tokens = 8

[[cases]]
id = "b"
prompt = "Name a colour."
output_tokens = 12
"""


def synthetic_record(req: GenerationRequest, ttft_ms: float, itl_ms: float, rng: random.Random) -> RequestRecord:
    rec = RequestRecord(request=req, st_ns=10**12, sent_wall=1_700_000_000.0)
    t = rec.st_ns + int(ttft_ms * MS)
    for _i in range(req.max_tokens):
        rec.chunk_ns.append(t)
        rec.chunk_tokens.append(1)
        t += int(itl_ms * (0.8 + 0.4 * rng.random()) * MS)
    rec.text = "word " * req.max_tokens
    rec.reported_output_tokens = req.max_tokens
    rec.finish_reason = "length"
    rec.success = True
    return rec


def add_fixed_run(store: Store, run_id: str, *, started: datetime, host: str, device: str, gpu_key: str | None,
                  model: str, itl_ms: float, ttft_ms: float, kind: str = "suite", status: str = "completed",
                  seed: int = 1, cases=(("short", 50), ("medium", 200)), reps: int = 3) -> str:
    rng = random.Random(seed)
    env = {"hostname": host, "device": device, "vllm": "0.32.0", "python": "3.11.9",
           "gpus": [{"name": device, "memory_mb": 81559, "key": gpu_key}] if gpu_key else []}
    rec = RunRecorder(store)
    rec.run_id = store.start_run(kind=kind, engine="vllm", model=model, environment=env, suite="seed" if kind == "suite" else kind,
                                 reps=reps, engine_args={"enforce_eager": True}, dtype="bfloat16", run_id=run_id)
    requests, metrics, records = [], [], []
    for case_id, n in cases:
        for rep in range(reps):
            req = GenerationRequest(prompt=f"prompt {case_id}", max_tokens=n, case_id=case_id, rep=rep)
            r = synthetic_record(req, ttft_ms * (0.9 + 0.2 * rng.random()), itl_ms, rng)
            m = request_metrics(r)
            rec.record(len(records), r, m)
            requests.append(req)
            metrics.append(m)
            records.append(r)
    rec.finish(status, duration_s=12.5, summary=summarise(requests, metrics, records))
    with store.connection() as con:
        con.execute("UPDATE runs SET started_at = ?, finished_at = ?, pid = NULL WHERE run_id = ?",
                    [started, started, run_id])
    return run_id


def fixed_store(path) -> Store:
    store = Store(path)
    add_fixed_run(store, "20250301-120000-aaaaaa", started=datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc),
                  host="gpu-box-1", device="NVIDIA H100 80GB HBM3", gpu_key="H100-SXM-80",
                  model="meta-llama/Meta-Llama-3-8B-Instruct", itl_ms=9.0, ttft_ms=45.0, seed=1)
    add_fixed_run(store, "20250302-090000-bbbbbb", started=datetime(2025, 3, 2, 9, 0, tzinfo=timezone.utc),
                  host="gpu-box-2", device="NVIDIA A100-SXM4-80GB", gpu_key="A100-SXM-80",
                  model="meta-llama/Meta-Llama-3-8B-Instruct", itl_ms=14.0, ttft_ms=70.0, seed=2)
    add_fixed_run(store, "20250303-180000-cccccc", started=datetime(2025, 3, 3, 18, 0, tzinfo=timezone.utc),
                  host="laptop", device="CPU", gpu_key=None, model="SmolLM2-135M-Instruct",
                  itl_ms=31.0, ttft_ms=80.0, kind="interactive", cases=(("interactive", 40),), reps=1, seed=3)
    return store


async def settle(pilot, timeout: float = 30.0) -> None:
    """Wait until the screens' database workers (groups named '...-load') are done and the
    messages they posted are handled: screens read the store off the UI thread."""
    await pilot.pause()
    await wait_for(pilot, lambda: not any(w.group.endswith("-load") and not w.is_finished for w in pilot.app.workers),
                   timeout, "the screens to read the database", step=0.02)
    # the rows arrive after the first frame: let the tables lay out (column widths) again
    await pilot.pause()
    await wait_steady(pilot, timeout, frames=2)  # the same picture twice, 0.1 s apart
    await pilot.pause()


class FakeSession:
    """What the app's screens read from an engine session, without an engine: a CPU device, no GPU
    sampler, the store, an engine description (vllm, SmolLM2-135M-Instruct) and a shutdown that does
    nothing."""

    device = "CPU"
    gpu = None

    def __init__(self, store):
        self.store = store

    def describe(self):
        return {"engine": "vllm", "model_label": "SmolLM2-135M-Instruct"}

    def shutdown(self):
        pass
