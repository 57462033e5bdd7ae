"""A run's requests are written when it ends, not while it runs (issue 21): opening, writing and closing
the database file mid-level stamped tokens late (data/store/run_sink.py). A long run still reaches the
file every HOLD_MAX_S."""

from __future__ import annotations

import data.store.run_sink as run_sink
from data.store.recorder import writer_for
from data.store.run_sink import RecorderSink
from engine.measure.metrics import request_metrics
from engine.orchestrator import RequestFinished, RunFinished, RunInfo, RunStarted
from engine.types import GenerationRequest, RequestRecord


def finished_request(run_id: str, index: int) -> RequestFinished:
    record = RequestRecord(request=GenerationRequest("hello", max_tokens=3), st_ns=1_000_000 * (index + 1),
                           chunk_ns=[1_000_000 * (index + 1) + k * 2_000_000 for k in range(1, 4)],
                           chunk_tokens=[1, 1, 1])
    record.success = True
    record.reported_output_tokens = 3
    return RequestFinished(run_id, "job-1", index, record, request_metrics(record), origin_ns=1_000_000)


def level(store):
    sink = RecorderSink(store, lambda: {"engine": "openai", "model": "m"}, lambda: {"hostname": "h"})
    info = RunInfo("run-held", "job-1", "load", "load", total=3, level_index=0)
    sink(RunStarted(info))
    return sink, info


def test_a_level_s_requests_reach_the_file_when_it_ends(store):
    sink, info = level(store)
    for i in range(3):
        sink(finished_request(info.run_id, i))
    writer_for(store).flush()  # whatever was queued is written now
    assert store.get_run(info.run_id)["status"] == "running"  # the run is listed from its start
    assert store.get_requests(info.run_id) == []  # its requests are not written while it runs
    sink(RunFinished(info, "completed", 1.0, {}))
    rows = store.get_requests(info.run_id)
    assert [r["request_index"] for r in rows] == [0, 1, 2]
    assert [round(r["send_offset_s"], 3) for r in rows] == [0.0, 0.001, 0.002]  # from the level's start
    assert store.get_run(info.run_id)["status"] == "completed"
    assert sink.errors == []


def test_a_long_run_writes_what_it_held_after_hold_max_s(store, monkeypatch):
    monkeypatch.setattr(run_sink, "HOLD_MAX_S", 0.0)
    sink, info = level(store)
    sink(finished_request(info.run_id, 0))
    sink(finished_request(info.run_id, 1))
    writer_for(store).flush()
    assert [r["request_index"] for r in store.get_requests(info.run_id)] == [0, 1]
    sink(RunFinished(info, "aborted", 1.0, {}))
    assert len(store.get_requests(info.run_id)) == 2 and store.get_run(info.run_id)["status"] == "aborted"
