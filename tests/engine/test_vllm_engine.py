"""The real in-process vLLM engine on the embedded model (shared for the whole session)."""

from __future__ import annotations

import threading

import pytest

from engine.measure.metrics import request_metrics
from engine.types import GenerationRequest
from engine.workloads.suites import parse_suite
from tests.support.wait import wait_until

pytestmark = pytest.mark.engine


def test_stream_is_timestamped_and_counted_by_the_engine(engine_session):
    seen = []
    handle = engine_session.host.submit(
        GenerationRequest(prompt="Name three colours.", max_tokens=12, enforce_length=True, temperature=0.8),
        on_chunk=seen.append,
    )
    rec = handle.result(timeout=120)
    assert rec.success, rec.error
    assert rec.output_tokens == 12  # exact: min_tokens + ignore_eos
    assert sum(rec.chunk_tokens) == 12 and len(seen) == len(rec.chunk_ns)
    assert rec.chunk_ns == sorted(rec.chunk_ns) and rec.chunk_ns[0] > rec.st_ns
    assert rec.input_tokens and rec.input_tokens > 5  # the chat template wrapped the prompt
    assert rec.finish_reason == "length"
    m = request_metrics(rec)
    assert 0 < m.ttft_s < 10 and m.tpot_s > 0 and m.tps > 0
    assert "".join(c.text for c in seen) == rec.text


def test_cancel_keeps_the_partial_record(engine_session):
    got = threading.Event()
    handle = engine_session.host.submit(
        GenerationRequest(prompt="Count slowly.", max_tokens=400, enforce_length=True),
        on_chunk=lambda c: got.set(),
    )
    assert got.wait(60)
    handle.cancel()
    rec = handle.result(timeout=30)
    assert rec.aborted and not rec.success
    assert 0 < len(rec.chunk_ns) < 400


def test_a_request_the_engine_aborts_is_not_a_finished_request(engine_session):
    """Ctrl-C reaching the engine's process, or its shutdown, aborts requests inside vLLM: it then
    sends a last output (finish_reason "abort"). That request is kept as aborted, never counted as a
    finished one (it once was, with a 3 ms E2EL and no tokens)."""

    host = engine_session.host
    llm = host.engine.llm
    handle = host.submit(GenerationRequest(prompt="Write a very long story.", max_tokens=400))
    ids = wait_until(lambda: [i for i in llm.output_processor.external_req_ids if str(i).startswith("tokentop-")],
                     60, "the request to reach the engine", step=0.01)
    host.call(llm.abort(ids)).result(timeout=30)
    record = handle.result(timeout=60)
    assert record.finish_reason == "abort"
    assert not record.success and record.aborted
    assert "ended the request before it finished" in record.error
    assert not request_metrics(record).success


def test_suite_run_is_stored_with_exact_lengths(session, store):
    suite = parse_suite({
        "name": "mini", "reps": 2, "temperature": 0.8,
        "cases": [{"id": "a", "prompt": "Say hello.", "output_tokens": 6},
                  {"id": "b", "prompt": "Write a haiku.", "output_tokens": 10}],
    })
    run_id, outcome, _ = session.run_suite(suite, 2)
    assert outcome.status == "completed"
    run = store.get_run(run_id)
    assert run["status"] == "completed" and run["kind"] == "suite" and run["reps"] == 2
    assert run["device"] == "CPU" and run["model"] == "SmolLM2-135M-Instruct"
    env = run["environment"]
    assert env["versions"]["vllm"] and env["versions"]["torch"] and env["hostname"]
    assert run["engine_args"]["enforce_eager"] is True  # CPU default
    rows = store.get_requests(run_id)
    assert [(r["case_id"], r["output_tokens"]) for r in rows] == [("a", 6), ("a", 6), ("b", 10), ("b", 10)]
    cases = run["summary"]["cases"]
    assert cases["a"]["completed"] == 2 and cases["b"]["total_output_tokens"] == 20
    assert cases["b"]["mean_tpot_ms"] > 0 and cases["b"]["output_throughput"] > 0
    assert len(store.get_chunks(run_id, 3)) == sum(1 for _ in store.get_chunks(run_id, 3)) > 0


def test_stopping_a_suite_stores_it_as_aborted(session, store):
    suite = parse_suite({"cases": [{"id": "x", "prompt": "Go on.", "output_tokens": 300}], "reps": 3})
    stop = threading.Event()

    def on_record(index, record, metrics):
        stop.set()  # stop after the first finished request

    run_id, outcome, _ = session.run_suite(suite, 3, on_record=on_record, stop=stop)
    assert outcome.status == "aborted"
    run = store.get_run(run_id)
    assert run["status"] == "aborted"
    rows = store.get_requests(run_id)
    assert rows[0]["success"] and rows[0]["output_tokens"] == 300


def test_suite_runs_carry_gpu_telemetry(session, store):
    """NVML is sampled during every run and stored with it (NVML's API shape via a test double:
    CI has no GPU); without a GPU the run says so and carries on."""
    from data.store.telemetry_rows import get_gpu_samples
    from engine.telemetry.gpu import GpuSampler
    from tests.support.fake_pynvml import FakeNvml

    suite = parse_suite({"cases": [{"id": "g", "prompt": "Hi", "output_tokens": 16}], "reps": 1})

    run_id, _, _ = session.run_suite(suite, 1)  # the real machine: no GPU
    gpu = store.get_run(run_id)["summary"]["gpu"]
    assert "no GPU" in gpu["note"] or "NVML" in gpu["note"]

    session.gpu = GpuSampler(0.05, nvml=FakeNvml(power_w=250.0).module()).start()
    try:
        run_id, outcome, _ = session.run_suite(suite, 1)
    finally:
        session.gpu.stop()
    samples = get_gpu_samples(store, run_id)
    assert samples and all(s["power_w"] == 250.0 for s in samples)
    gpu = store.get_run(run_id)["summary"]["gpu"]
    assert gpu["j_per_output_token"] > 0 and gpu["max_power_w"] == 250.0
