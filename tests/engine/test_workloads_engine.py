"""Workloads on the real embedded CPU engine (shared `session`): a prefix_repetition level reads the
prefix cache, a reset before the next level starts it cold; a trace goes out on its timestamps; a
conversation's next turn carries the reply it got; the stored run names its workload."""

from __future__ import annotations

import json

import pytest

from data.jobs.load import LoadSpec, run_load
from engine.load import LoadLevel, LoadRunner
from engine.workloads import WorkloadOptions, make_workload
from engine.workloads.synthetic import PrefixRepetitionWorkload, RandomWorkload

pytestmark = pytest.mark.engine


def _first_sent(records):
    return min(records, key=lambda r: r.st_ns)


def test_prefix_repetition_reads_the_cache_and_a_reset_starts_the_next_level_cold(session, store):
    # vLLM caches whole blocks (128 tokens on CPU): two 256-token prefixes, 3 prompts each.
    workload = PrefixRepetitionWorkload(prefix_len=256, suffix_len=32, num_prefixes=2, output_len=4)
    level = LoadLevel(max_concurrency=1, num_prompts=6)
    outcome = run_load(session, LoadSpec(levels=[level, level], prompts=workload))
    assert [r.outcome.status for r in outcome.levels] == ["completed", "completed"]
    for result in outcome.levels:
        overall = result.summary["overall"]
        assert overall["prefix_cache_reset"] is True
        # 6 prompts on 2 shared prefixes: 4 of them find their prefix cached (4 x 256 of 6 x 288 tokens).
        assert overall["prefix_cache_hit_rate"] == pytest.approx(4 * 256 / (6 * 288), abs=0.05), overall
        assert overall["input_len_mismatches"] == 0 and overall["total_input_tokens"] == 6 * 288
    # Both levels send the same prompts; after the reset the second level's first request is cold.
    second = outcome.levels[1].outcome.records
    assert _first_sent(second).cached_tokens == 0
    assert sum(r.cached_tokens for r in second) == 4 * 256
    rows = store.get_requests(outcome.levels[1].run_id)
    assert sum(r["cached_tokens"] for r in rows) == sum(r.cached_tokens for r in second)
    assert all(r["target_input_tokens"] == 288 and r["input_tokens"] == 288 for r in rows)
    run = store.get_run(outcome.levels[1].run_id)
    assert run["workload"]["kind"] == "prefix_repetition" and run["workload_key"] == workload.identity()["key"]
    assert run["workload_label"] == "prefix 256+32 ×2→4"
    # Without the reset the same level starts warm: its first request is served from the cache.
    warm = LoadRunner(session.host, workload, reset_prefix_cache=False).run_level(level)
    assert _first_sent(warm.records).cached_tokens == 256


def test_random_input_len_is_exact_and_warmups_are_not_measured(session, store):
    spec = LoadSpec(levels=[LoadLevel(max_concurrency=2, num_prompts=4)],
                    prompts=RandomWorkload(64, 8), num_warmups=2)
    outcome = run_load(session, spec)
    result = outcome.levels[0]
    overall = result.summary["overall"]
    assert overall["total_input_tokens"] == 4 * 64  # `vllm bench serve --random-input-len 64` sends 256 too
    assert overall["num_warmups"] == 2 and overall["warmups_failed"] == 0
    assert overall["completed"] == 4 and len(store.get_requests(result.run_id)) == 4


def test_multi_turn_requests_carry_the_history(session, store):
    workload = make_workload(WorkloadOptions(dataset_name="random", input_len=24, output_len=6, multi_turn=True,
                                             turns=3, turn_delay_ms=20))
    outcome = run_load(session, LoadSpec(levels=[LoadLevel(max_concurrency=2, num_prompts=2)], prompts=workload))
    result = outcome.levels[0]
    assert result.outcome.status == "completed"
    records = result.outcome.records
    assert len(records) == 6
    by = {(r.request.conversation_id, r.request.turn): r for r in records}
    for conv in (0, 1):
        for turn in (1, 2):
            before, now = by[(conv, turn - 1)], by[(conv, turn)]
            # the whole history: every earlier message, with the model's actual reply, then the new turn
            assert now.request.messages[:-1] == before.request.messages + (("assistant", before.text),)
            assert now.input_tokens > before.input_tokens + 24
            # sent after the reply came back, plus the think time
            assert now.st_ns >= before.chunk_ns[-1] + 20_000_000
    turns = result.summary["overall"]["ttft_by_turn"]
    assert sorted(turns) == ["0", "1", "2"] and all(turns[t]["n"] == 2 for t in turns)
    rows = store.get_requests(result.run_id)
    assert sorted((r["conversation_id"], r["turn_index"]) for r in rows) == sorted(by)


def test_mooncake_trace_goes_out_on_its_timestamps(session, store, tmp_path):
    path = tmp_path / "trace.jsonl"
    lines = [{"timestamp": 0, "input_length": 40, "output_length": 3, "hash_ids": [1]},
             {"timestamp": 300, "input_length": 40, "output_length": 3, "hash_ids": [1]},
             {"timestamp": 900, "input_length": 30, "output_length": 3, "hash_ids": [2]}]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    from data.jobs.load import load_spec

    spec = load_spec(workload=WorkloadOptions(dataset_name="mooncake_trace", dataset_path=str(path),
                                              timed_trace_chunk_hash_size=32))
    assert spec.pattern == "trace" and spec.levels[0].num_prompts == 3
    outcome = run_load(session, spec)
    result = outcome.levels[0]
    assert result.outcome.status == "completed"
    rows = sorted(store.get_requests(result.run_id), key=lambda r: r["request_index"])
    offsets = [r["send_offset_s"] for r in rows]
    assert offsets == pytest.approx([0.0, 0.3, 0.9], abs=0.06)
    assert [r["input_tokens"] for r in rows] == [40, 40, 30]
    assert result.summary["overall"]["max_schedule_lag_ms"] < 60
    assert all(r["send_lag_ms"] is not None for r in rows)
