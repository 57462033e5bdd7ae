"""Workloads on small files the tests write (no engine): the right prompts, lengths and skips, as vLLM's
own samplers draw them; trace send times and shared hash blocks; multi-turn requests carrying their
history; bad files as one line."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time

import pytest

from engine.engines.base import Engine
from engine.engines.host import EngineHost
from engine.load import LoadLevel, LoadRunner
from engine.types import BadRequestError, Chunk
from engine.workloads import WorkloadOptions, make_workload
from engine.workloads.files import DatasetFileError
from engine.workloads.tokens import Tokens, block_tokens
from tests.support.wait import wait_until


@pytest.fixture(scope="module")
def tokens(embedded_model_path):
    from transformers import AutoTokenizer

    return Tokens(AutoTokenizer.from_pretrained(embedded_model_path), source="test")


@pytest.fixture(scope="module")
def vllm_tokenizer(embedded_model_path):
    from vllm.tokenizers import get_tokenizer

    return get_tokenizer(embedded_model_path)


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(["gpu", "token", "cache", "serve", "batch", "prefix", "model"]) for _ in range(n))


def turn(i: int, text: str) -> dict:
    return {"from": "human" if i % 2 == 0 else "gpt", "value": text}


@pytest.fixture
def sharegpt(tmp_path):
    """Entries a sampler must keep and entries it must skip, in a known order."""
    rng = random.Random(1)
    entries = [
        {"id": "keep-1", "conversations": [turn(0, "Explain the KV cache " + words(rng, 8)), turn(1, words(rng, 30))]},
        {"id": "one-turn", "conversations": [turn(0, words(rng, 20))]},
        {"id": "short-prompt", "conversations": [turn(0, "Hi"), turn(1, words(rng, 30))]},
        {"id": "short-reply", "conversations": [turn(0, words(rng, 20)), turn(1, "Ok")]},
        {"id": "long-prompt", "conversations": [turn(0, words(rng, 1100)), turn(1, words(rng, 20))]},
        {"id": "long-total", "conversations": [turn(0, words(rng, 400)), turn(1, words(rng, 1500))]},
        {"id": "multi", "conversations": [turn(0, "First question " + words(rng, 10)), turn(1, words(rng, 12)),
                                          turn(2, "Second question " + words(rng, 10)), turn(3, words(rng, 9)),
                                          turn(4, "Third question " + words(rng, 10)), turn(5, words(rng, 7))]},
        {"id": "no-text", "conversations": [turn(0, None), turn(1, words(rng, 9))]},
    ]
    entries += [{"id": f"fill-{i}", "conversations": [turn(0, words(rng, 6 + i)), turn(1, words(rng, 5 + i))]}
                for i in range(30)]
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(entries))
    return path, entries


def sharegpt_workload(path, **kw):
    return make_workload(WorkloadOptions(dataset_name="sharegpt", dataset_path=str(path), **kw))


def test_sharegpt_takes_prompts_and_lengths_and_skips_as_vllm_does(sharegpt, tokens):
    path, entries = sharegpt
    w = sharegpt_workload(path, disable_shuffle=True)
    w.prepare(tokens, 4)
    requests = w.requests(4)
    # File order: keep-1, then (skipping one-turn, short-prompt, short-reply, long-prompt, long-total)
    # multi's first turn, then (skipping no-text) fill-0 and fill-1.
    assert [r.prompt for r in requests] == [entries[i]["conversations"][0]["value"] for i in (0, 6, 8, 9)]
    # output length: the reply's token count; the prompt's count is kept as its target length
    assert [r.max_tokens for r in requests] == [tokens.count(entries[i]["conversations"][1]["value"])
                                               for i in (0, 6, 8, 9)]
    assert [r.input_len for r in requests] == [tokens.count(r.prompt) for r in requests]
    assert all(r.enforce_length and r.case_id == "sharegpt" for r in requests)
    skipped = w.report()["skipped_by_reason"]
    assert skipped == {"fewer than 2 turns": 1, "prompt < 4 tokens": 1, "output < 4 tokens": 1,
                       "prompt > 1024 tokens": 1, "prompt + output > 2048 tokens": 1, "a turn without text": 1}
    assert "skipped 6" in w.notes[0] and "prompt > 1024 tokens" in w.notes[0]
    # --output-len replaces the reply's length, and lifts vLLM's minimum-output rule
    w2 = sharegpt_workload(path, disable_shuffle=True, output_len=7)
    w2.prepare(tokens, 4)
    assert [r.max_tokens for r in w2.requests(4)] == [7] * 4
    assert "output < 4 tokens" not in w2.report()["skipped_by_reason"]


@pytest.mark.parametrize("n", [5, 60])  # 60: more than the file's valid entries, so vLLM oversamples
def test_sharegpt_shuffle_and_oversampling_equal_vllms_sample(sharegpt, tokens, vllm_tokenizer, n):
    from vllm.benchmarks.datasets import ShareGPTDataset

    path, entries = sharegpt
    path = path.with_name("no-nulls.json")  # vLLM's reader fails on a turn without text; ours skips it
    path.write_text(json.dumps([e for e in entries if e["id"] != "no-text"]))
    theirs = ShareGPTDataset(random_seed=3, dataset_path=str(path)).sample(vllm_tokenizer, n)
    w = sharegpt_workload(path, seed=3)
    w.prepare(tokens, n)
    ours = w.requests(n)
    assert [r.prompt for r in ours] == [s.prompt for s in theirs]
    assert [r.max_tokens for r in ours] == [s.expected_output_len for s in theirs]
    assert [r.input_len for r in ours] == [s.prompt_len for s in theirs]
    assert len(ours) == n


def test_sharegpt_multi_turn_gives_conversations(sharegpt, tokens):
    path, entries = sharegpt
    w = sharegpt_workload(path, disable_shuffle=True, multi_turn=True, turn_delay_ms=250)
    w.prepare(tokens, 2)
    source = w.level(2)
    convs = list(source.conversations.values())
    assert [len(c.turns) for c in convs] == [1, 3]  # keep-1 has one exchange, multi has three
    multi = entries[6]["conversations"]
    assert [t.text for t in convs[1].turns] == [multi[0]["value"], multi[2]["value"], multi[4]["value"]]
    assert [t.output_len for t in convs[1].turns] == [tokens.count(multi[k]["value"]) for k in (1, 3, 5)]
    assert source.total == 4
    first = [p.request for p in source.initial()]
    assert [r.turn for r in first] == [0, 0] and [r.conversation_id for r in first] == [0, 1]
    assert first[1].messages == (("user", multi[0]["value"]),)


def test_custom_jsonl_prompts_and_output_tokens(tmp_path, vllm_tokenizer):
    from vllm.benchmarks.datasets import CustomDataset

    path = tmp_path / "prompts.jsonl"
    rows = [{"prompt": f"Question {i}: what is a token?", **({"output_tokens": 10 + i} if i % 2 else {})}
            for i in range(12)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    w = make_workload(WorkloadOptions(dataset_name="custom", dataset_path=str(path)))
    w.prepare(None, 12)
    got = {r.prompt: r.max_tokens for r in w.requests(12)}
    # every row once; output_tokens where given, else 256 (vLLM's --custom-output-len default)
    assert got == {r["prompt"]: r.get("output_tokens", 256) for r in rows}
    # vLLM's order for the same seed (its shuffle of the loaded rows), and --output-len overrides
    theirs = CustomDataset(dataset_path=str(path), random_seed=0).sample(vllm_tokenizer, 5, output_len=9,
                                                                         skip_chat_template=True)
    w = make_workload(WorkloadOptions(dataset_name="custom", dataset_path=str(path), output_len=9))
    assert [(r.prompt, r.max_tokens) for r in w.requests(5)] == [(s.prompt, 9) for s in theirs]


def test_custom_bad_output_tokens_names_the_row(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "a", "output_tokens": "many"}) + "\n")
    w = make_workload(WorkloadOptions(dataset_name="custom", dataset_path=str(path)))
    with pytest.raises(DatasetFileError, match=r"bad\.jsonl: row 1: output_tokens must be a whole number"):
        w.prepare(None, 1)


@pytest.fixture
def mooncake(tmp_path):
    lines = [
        {"timestamp": 1000, "input_length": 1100, "output_length": 5, "hash_ids": [10, 11, 12]},
        {"timestamp": 1250, "input_length": 1100, "output_length": 6, "hash_ids": [10, 11, 13]},
        {"timestamp": 1900, "input_length": 700, "output_length": 7, "hash_ids": [10, 14]},
        {"timestamp": 2400, "input_length": 600, "output_length": 8, "hash_ids": [20]},  # fewer ids than tokens
    ]
    path = tmp_path / "mooncake.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_mooncake_trace_shares_hash_blocks_and_keeps_its_timestamps(mooncake, tokens):
    w = make_workload(WorkloadOptions(dataset_name="mooncake_trace", dataset_path=str(mooncake)))
    assert w.self_timed and w.default_num_prompts() == 4
    w.prepare(tokens, 4)
    planned = w.level(4).initial()
    # send times: the timestamps in ms, from the first one
    assert [p.at_s for p in planned] == pytest.approx([0.0, 0.25, 0.9, 1.4])
    ids = [p.request.prompt_token_ids for p in planned]
    assert [len(x) for x in ids] == [1100, 1100, 700, 600]
    assert [p.request.max_tokens for p in planned] == [5, 6, 7, 8]
    assert all(p.request.send_ids and p.request.input_len == len(p.request.prompt_token_ids) for p in planned)
    # hash ids 10 and 11 (512 tokens each) are the very same tokens in the first two requests...
    assert ids[0][:1024] == ids[1][:1024]
    # ...and then their own blocks 12 and 13 differ
    assert ids[0][1024:] != ids[1][1024:]
    # the third shares block 10 only; its block 14 is cut to 188 tokens: the start of the full block 14
    assert ids[2][:512] == ids[0][:512] and ids[2][512:600] != ids[0][512:600]
    assert list(ids[2][512:]) == block_tokens(14, 512, tokens.allowed())[:188]
    # the fourth lists one 512-token block for 600 tokens: 88 tokens of its own follow
    assert list(ids[3][:512]) == block_tokens(20, 512, tokens.allowed())
    assert w.report()["padded"] == 1 and w.report()["shared_blocks"] == 2
    ident = w.identity()
    assert ident["kind"] == "mooncake_trace" and ident["file"]["name"] == "mooncake.jsonl"
    assert ident["params"]["chunk_hash_size"] == 512 and ident["params"]["sec_multiplier"] == 0.001


def test_block_tokens_are_the_same_in_another_process(tokens):
    """vLLM seeds blocks with Python's hash() of a string, which differs between processes; ours do not."""
    code = ("import numpy as np; from engine.workloads.tokens import block_tokens; "
            f"print(block_tokens(123456789, 16, np.arange({tokens.vocab_size})))")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                           env={"PYTHONHASHSEED": str(seed), "PATH": "/usr/bin:/bin",
                                "PYTHONPATH": ":".join(sys.path)}).stdout for seed in (1, 2)]
    import numpy as np

    assert runs[0] == runs[1] == str(block_tokens(123456789, 16, np.arange(tokens.vocab_size))) + "\n"


def test_timed_trace_options_name_fields_and_stretch_time(tmp_path, tokens):
    path = tmp_path / "trace.jsonl"
    path.write_text("".join(json.dumps({"t": t, "isl": 20, "osl": 4, "blocks": [1, 2]}) + "\n" for t in (5, 6, 8)))
    w = make_workload(WorkloadOptions(
        dataset_name="timed_trace", dataset_path=str(path), timed_trace_sec_multiplier=0.5,
        timed_trace_chunk_hash_size=16, timed_trace_label_timestamp="t", timed_trace_label_input_length="isl",
        timed_trace_label_output_length="osl", timed_trace_label_hash_ids="blocks"))
    w.prepare(tokens, 3)
    planned = w.level(3).initial()
    assert [p.at_s for p in planned] == pytest.approx([0.0, 0.5, 1.5])
    assert all(p.request.prompt_token_ids == planned[0].request.prompt_token_ids for p in planned)
    assert len(planned[0].request.prompt_token_ids) == 20  # block 1 whole, block 2 cut to 4 tokens


def test_random_prompts_are_vllms_with_exact_lengths(tokens, vllm_tokenizer):
    from vllm.benchmarks.datasets import RandomDataset

    for opts in (dict(input_len=64, output_len=16), dict(input_len=100, output_len=20, range_ratio=0.25, prefix_len=8)):
        theirs = RandomDataset(random_seed=0).sample(
            vllm_tokenizer, 8, input_len=opts["input_len"], output_len=opts["output_len"],
            range_ratio=opts.get("range_ratio", 0.0), prefix_len=opts.get("prefix_len", 0))
        w = make_workload(WorkloadOptions(input_len=opts["input_len"], output_len=opts["output_len"],
                                          random_range_ratio=opts.get("range_ratio"),
                                          random_prefix_len=opts.get("prefix_len")))
        w.prepare(tokens, 8)
        ours = w.requests(8)
        assert [r.prompt for r in ours] == [s.prompt for s in theirs]
        assert [r.max_tokens for r in ours] == [s.expected_output_len for s in theirs]
        # the ids the in-process engine is fed are the text's tokens, exactly the length asked for
        assert [len(r.prompt_token_ids) for r in ours] == [s.prompt_len for s in theirs] == [r.input_len for r in ours]
        if "prefix_len" in opts:
            assert len({r.prompt_token_ids[:8] for r in ours}) == 1
            lo, hi = 100 * 0.75, 100 * 1.25
            assert all(lo <= len(r.prompt_token_ids) - 8 <= hi for r in ours)


def test_prefix_repetition_is_vllms_with_shared_prefixes(tokens, vllm_tokenizer):
    from vllm.benchmarks.datasets import PrefixRepetitionRandomDataset

    theirs = PrefixRepetitionRandomDataset(random_seed=0).sample(vllm_tokenizer, 10, prefix_len=32, suffix_len=16,
                                                                 num_prefixes=2, output_len=8)
    w = make_workload(WorkloadOptions(dataset_name="prefix_repetition", prefix_repetition_prefix_len=32,
                                      prefix_repetition_suffix_len=16, prefix_repetition_num_prefixes=2,
                                      prefix_repetition_output_len=8))
    w.prepare(tokens, 10)
    ours = w.requests(10)
    assert [r.prompt for r in ours] == [s.prompt for s in theirs]
    assert {len(r.prompt_token_ids) for r in ours} == {48}
    assert len({r.prompt_token_ids[:32] for r in ours}) == 2  # two prefixes, five prompts each


@pytest.mark.parametrize("opts, message", [
    (dict(dataset_name="sharegpt"), "add --dataset-path FILE"),
    (dict(dataset_name="random", dataset_path="x.json"), "cannot use the 'random' dataset with --dataset-path"),
    (dict(dataset_name="sharegpt", dataset_path="x.json", random_range_ratio=0.5), "--random-range-ratio is for"),
    (dict(dataset_name="custom", dataset_path="x.jsonl", input_len=5), "--input-len is for --dataset-name random"),
    (dict(dataset_name="custom", dataset_path="x.jsonl", multi_turn=True), "--multi-turn works with"),
    (dict(turn_delay_ms=5), "--turn-delay-ms needs --multi-turn"),
    (dict(random_range_ratio="1.5"), "must be in [0, 1)"),
    (dict(dataset_name="mooncake_trace", dataset_path="x.jsonl", prefix_repetition_prefix_len=3), "is for --dataset-name prefix_repetition"),
])
def test_option_mistakes_are_one_line(opts, message):
    import re

    with pytest.raises(BadRequestError, match=re.escape(message)):
        make_workload(WorkloadOptions(**opts))


@pytest.mark.parametrize("kind, content, message", [
    ("sharegpt", "[{\"conversations\": [", "cannot read it as ShareGPT"),
    ("sharegpt", json.dumps([{"conversations": 5}]), "no entry has a 'conversations' list"),
    ("sharegpt", json.dumps([{"messages": []}]), "no entry has a 'conversations' list"),
    ("sharegpt", json.dumps([{"conversations": [turn(0, "only one")]}]), "no entry has two or more turns"),
    ("custom", json.dumps({"text": "a"}) + "\n", "no line has a 'prompt'"),
    ("mooncake_trace", json.dumps({"timestamp": 0, "input_length": 5}) + "\n", "no 'output_length' field"),
    ("mooncake_trace", "not json\n", "cannot read it as a Mooncake trace"),
])
def test_bad_dataset_files_are_one_line_naming_the_file(tmp_path, kind, content, message):
    path = tmp_path / "data.jsonl"
    path.write_text(content)
    with pytest.raises(DatasetFileError) as err:
        make_workload(WorkloadOptions(dataset_name=kind, dataset_path=str(path)))
    text = str(err.value)
    assert "\n" not in text and "data.jsonl" in text and message in text, text


def test_missing_file_and_escape_sequences_in_a_name(tmp_path):
    with pytest.raises(DatasetFileError, match="does not exist"):
        make_workload(WorkloadOptions(dataset_name="custom", dataset_path=str(tmp_path / "nope.jsonl")))
    with pytest.raises(DatasetFileError, match="is not a file"):
        make_workload(WorkloadOptions(dataset_name="custom", dataset_path=str(tmp_path)))
    with pytest.raises(DatasetFileError) as err:
        make_workload(WorkloadOptions(dataset_name="custom", dataset_path=str(tmp_path / "\x1b[31mred.jsonl")))
    assert "\x1b" not in str(err.value)


# -- the load runner on a scripted engine: follow-ups, fixed schedules ---------------------------------------
class EchoEngine(Engine):
    """Replies `reply-<n>` in one token per 5 ms after a 10 ms TTFT; counts the prompt's messages."""

    name = "echo"

    def __init__(self):
        self.seen = []

    async def start(self, progress) -> None:
        progress("ready")

    async def _generate(self, request, record, on_chunk) -> None:
        self.seen.append(request)
        await asyncio.sleep(0.01)  # deliberate: the echo engine's pace (its TTFT, then a token per 5 ms)
        for _i in range(request.max_tokens):
            t = time.perf_counter_ns()
            record.chunk_ns.append(t)
            record.chunk_tokens.append(1)
            on_chunk(Chunk(t, "x", 1))
            await asyncio.sleep(0.005)  # deliberate, as above
        record.text = f"reply-{len(self.seen)}"
        record.reported_output_tokens = request.max_tokens
        record.input_tokens = sum(len(c.split()) for _r, c in (request.messages or (("user", request.prompt),)))
        record.finish_reason = "length"

    async def close(self) -> None:
        pass

    def describe(self):
        return {"engine": "echo", "model": "echo"}


@pytest.fixture
def echo_host():
    host = EngineHost(EchoEngine())
    host.start().result(5)
    yield host
    host.shutdown()


def test_conversations_send_each_next_turn_with_the_history_after_the_think_time(echo_host, sharegpt, tokens):
    path, _ = sharegpt
    w = sharegpt_workload(path, disable_shuffle=True, multi_turn=True, turn_delay_ms=80)
    w.prepare(tokens, 2)
    outcome = LoadRunner(echo_host, w).run_level(LoadLevel(max_concurrency=2, num_prompts=2))
    assert outcome.status == "completed" and outcome.planned == 4
    by = {(r.request.conversation_id, r.request.turn): r for r in outcome.records}
    assert sorted(by) == [(0, 0), (1, 0), (1, 1), (1, 2)]
    for t in (1, 2):
        before, now = by[(1, t - 1)], by[(1, t)]
        assert now.request.messages[:-1] == before.request.messages + (("assistant", before.text),)
        assert now.st_ns - before.chunk_ns[-1] >= 80_000_000  # the think time, after the reply
    assert len(by[(1, 2)].request.messages) == 5
    turns = outcome.result.ttft_by_turn
    assert [turns[k]["n"] for k in ("0", "1", "2")] == [2, 1, 1]
    assert outcome.result.conversations == 2


def test_a_stop_during_the_think_time_sends_nothing_more(echo_host, sharegpt, tokens):
    path, _ = sharegpt
    w = sharegpt_workload(path, disable_shuffle=True, multi_turn=True, turn_delay_ms=5000)
    w.prepare(tokens, 2)
    runner = LoadRunner(echo_host, w)
    import threading

    def stop_in_the_think_time() -> None:  # both first turns answered: the follow-up waits 5 s
        wait_until(lambda: runner.live.completed >= 2, 30, "the first turns")
        runner.stop()

    threading.Thread(target=stop_in_the_think_time, daemon=True).start()
    outcome = runner.run_level(LoadLevel(max_concurrency=2, num_prompts=2))
    assert outcome.status == "aborted"
    assert len(outcome.records) == 2 and all(r.success for r in outcome.records)  # the waiting turn: no record


def test_trace_requests_go_out_on_their_timestamps(echo_host, mooncake, tokens):
    w = make_workload(WorkloadOptions(dataset_name="mooncake_trace", dataset_path=str(mooncake),
                                      timed_trace_sec_multiplier=0.0005))  # twice as fast as recorded
    w.prepare(tokens, 4)
    outcome = LoadRunner(echo_host, w).run_level(LoadLevel(num_prompts=4, self_timed=True))
    assert outcome.status == "completed"
    sent = sorted((r.st_ns - outcome.start_ns) / 1e9 for r in outcome.records)
    assert sent == pytest.approx([0.0, 0.125, 0.45, 0.7], abs=0.04)
    assert outcome.result.max_schedule_lag_ms < 40
    assert outcome.result.label == "trace"


def test_a_server_that_cannot_reset_its_prefix_cache_is_said_and_stored(tmp_path):
    """A server outside vLLM's dev mode has no POST /reset_prefix_cache: the level runs, and says so."""
    from data.jobs.load import LoadSpec, run_load
    from data.jobs.session import Session
    from data.store.database import Store
    from engine.load import LoadLevel
    from tests.support.fake_openai import ReplayServer, plain_stream
    from tests.support.prompts import PromptSource

    with ReplayServer(plain_stream(5)) as server, Store(tmp_path / "r.duckdb") as store:
        session = Session(store, dict(engine="openai", endpoint=server.url))
        session.start_engine()
        workload = PromptSource(input_len=8, output_len=5)
        try:
            outcome = run_load(session, LoadSpec(levels=[LoadLevel(max_concurrency=1, num_prompts=2)],
                                                 prompts=workload))
        finally:
            session.shutdown()
        overall = outcome.levels[0].summary["overall"]
        assert outcome.levels[0].outcome.status == "completed"
        assert overall["prefix_cache_reset"] is False
        assert "VLLM_SERVER_DEV_MODE=1" in overall["prefix_cache_reset_note"]
        stored = store.get_run(outcome.levels[0].run_id)["summary"]["overall"]
        assert stored["prefix_cache_reset"] is False
        # no tokenizer for this server's model: the random prompts say their lengths are approximate
        assert any("approximate" in n for n in workload.notes)
