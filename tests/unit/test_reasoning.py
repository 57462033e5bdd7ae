"""Reasoning models: TTFT (first chunk of any kind, as `vllm bench serve`) vs TTFO (first answer token),
and the reasoning/answer token split, measured against a recorded vLLM reasoning stream served on
loopback, stored, shown, and priced per answer token."""

from __future__ import annotations

import json

import pytest

from data.store.database import Store
from data.store.recorder import RunRecorder
from engine.engines.host import EngineHost
from engine.engines.openai_engine import OpenAIEngine
from engine.measure.metrics import aggregate, request_metrics
from engine.types import GenerationRequest
from pricing.answer_cost import answer_costs
from tests.support.fake_openai import FIXTURES, ReplayServer, load_events
from tests.support.wait import wait_for
from tui.cli import main

STREAM = FIXTURES / "reasoning" / "vllm_reasoning_stream.sse"
# What the recording holds (see its usage): 15 reasoning tokens, 10 answer tokens, 24 chunks.
REASONING, ANSWER, CHUNKS = 15, 10, 24


def _run(server: ReplayServer, n: int = 1):
    host = EngineHost(OpenAIEngine(server.url))
    try:
        host.start().result(10)
        records = [host.submit(GenerationRequest(prompt="What is 2 + 2?", max_tokens=64)).result(10) for _ in range(n)]
    finally:
        host.shutdown()
    return records


def test_reasoning_stream_ttft_before_ttfo_and_exact_split():
    with ReplayServer(load_events(STREAM), delay_s=0.004) as server:
        (record,) = _run(server)
    assert record.success, record.error
    m = request_metrics(record)
    # TTFT is the role-only first chunk; the first answer token comes after all the reasoning.
    assert m.ttft_s is not None and m.ttfo_s is not None
    assert m.ttft_s < m.ttfo_s
    assert record.first_answer_ns == record.chunk_ns[1 + 14]  # role chunk + 14 reasoning chunks, then content
    assert (m.reasoning_tokens, m.answer_tokens, m.output_tokens) == (REASONING, ANSWER, REASONING + ANSWER)
    assert record.reasoning_method == "per-chunk usage"
    assert len(record.chunk_reasoning_tokens) == CHUNKS
    assert record.chunk_reasoning_tokens[10] == 2  # the two-token chunk ". That"
    assert record.text.startswith("\n\n2 + 2 = **4**")
    assert record.reasoning_text.startswith("Okay, the user asks")
    # The request asked for exact counts per chunk.
    assert server.received[0]["stream_options"]["continuous_usage_stats"] is True


def test_totals_only_server_gives_exact_totals_and_says_so():
    """An older server: `reasoning_content` deltas, no per-chunk usage, only the final usage totals."""

    def older(event: dict) -> dict | None:
        event = json.loads(json.dumps(event))
        if event["choices"]:
            event.pop("usage", None)
            delta = event["choices"][0]["delta"]
            if "reasoning" in delta:
                delta["reasoning_content"] = delta.pop("reasoning")
        return event

    with ReplayServer(load_events(STREAM), delay_s=0.002, transform=older) as server:
        (record,) = _run(server)
    m = request_metrics(record)
    assert m.ttft_s < m.ttfo_s
    assert (m.reasoning_tokens, m.answer_tokens) == (REASONING, ANSWER)
    assert record.reasoning_method == "final usage totals"


def test_reasoning_stored_aggregated_shown_and_priced(tmp_path, capsys):
    with ReplayServer(load_events(STREAM), delay_s=0.002) as server:
        records = _run(server, n=3)
    metrics = [request_metrics(r) for r in records]
    agg = aggregate(metrics, 1.0)
    assert agg["total_reasoning_tokens"] == 3 * REASONING
    assert agg["total_answer_tokens"] == 3 * ANSWER
    assert agg["mean_ttfo_ms"] > agg["mean_ttft_ms"]
    assert {"median_ttfo_ms", "p99_ttfo_ms"} <= agg.keys()

    db = tmp_path / "r.duckdb"
    with Store(db) as store:
        rec = RunRecorder(store)
        rec.start(kind="suite", engine_description={"engine": "openai", "model": "r1"}, environment={})
        for i, (r, m) in enumerate(zip(records, metrics)):
            rec.record(i, r, m)
        rec.finish("completed", duration_s=1.0, summary={"cases": {"q": agg}, "overall": agg})
        rows = store.get_requests(rec.run_id)
        chunks = store.get_chunks(rec.run_id, 0)
    assert [(r["reasoning_tokens"], r["answer_tokens"]) for r in rows] == [(REASONING, ANSWER)] * 3
    assert all(r["ttfo_ms"] > r["ttft_ms"] for r in rows)
    assert sum(c["reasoning_tokens"] for c in chunks) == REASONING
    assert sum(c["tokens"] for c in chunks) == REASONING + ANSWER

    assert main(["--db", str(db), "show", rec.run_id]) == 0
    out = capsys.readouterr().out
    assert f"reasoning: {3 * REASONING} reasoning + {3 * ANSWER} answer tokens" in out
    assert "TTFO" in out
    assert main(["--db", str(db), "show", rec.run_id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["overall"]["total_answer_tokens"] == 3 * ANSWER
    assert shown["requests"][0]["reasoning_tokens"] == REASONING

    # Priced per output token and per answer token: 25 output tokens buy 10 answer tokens.
    cost = answer_costs(3.6, 100.0, agg)
    assert cost.usd_per_million_output == pytest.approx(10.0)
    assert cost.usd_per_million_answer == pytest.approx(10.0 * (REASONING + ANSWER) / ANSWER)


def test_plain_stream_has_no_reasoning_and_ttfo_equals_ttft(tmp_path):
    from tests.support.fake_openai import plain_stream

    with ReplayServer(plain_stream(5), delay_s=0.0) as server:
        (record,) = _run(server)
    m = request_metrics(record)
    assert record.has_reasoning is False and m.ttfo_s is None and m.reasoning_tokens is None
    assert "total_reasoning_tokens" not in aggregate([m], 1.0)
    with Store(tmp_path / "p.duckdb") as store:
        rec = RunRecorder(store)
        rec.start(kind="interactive", engine_description={"engine": "openai"}, environment={})
        rec.record(0, record, m)
        rec.finish("completed", duration_s=m.e2el_s)
        (row,) = store.get_requests(rec.run_id)
    assert row["ttfo_ms"] == pytest.approx(row["ttft_ms"]) and row["reasoning_tokens"] is None


def test_in_process_split_uses_vllms_reasoning_parser():
    """The embedded engine with --engine-arg reasoning_parser=deepseek_r1: vLLM's own parser splits the
    engine's token ids (a tokenizer that knows the think tokens stands in for a reasoning model's)."""
    from vllm.reasoning import ReasoningParserManager

    from engine.engines.vllm_engine import split_reasoning_ids
    from engine.types import RequestRecord

    class ThinkVocab:
        def get_vocab(self):
            return {"<think>": 1, "</think>": 2}

        vocab = property(get_vocab)

    parser = ReasoningParserManager.get_reasoning_parser("deepseek_r1")(ThinkVocab())
    record = RequestRecord(request=GenerationRequest(prompt="q", max_tokens=7))
    record.st_ns, record.chunk_ns, record.chunk_tokens = 0, [10, 20, 30, 40], [2, 2, 2, 1]
    record.reported_output_tokens = 7
    # R1's template opens <think> in the prompt: the output is reasoning, </think>, then the answer.
    split_reasoning_ids(record, [[5, 6], [7, 2], [8, 9], [10]], parser)
    m = request_metrics(record.__class__(**{**record.__dict__, "success": True}))
    assert record.chunk_reasoning_tokens == [2, 2, 0, 0]
    assert (m.reasoning_tokens, m.answer_tokens) == (4, 3)
    assert m.ttft_s < m.ttfo_s == 30e-9
    assert record.reasoning_method == "engine token ids"

    plain = RequestRecord(request=GenerationRequest(prompt="q", max_tokens=2))
    plain.chunk_ns, plain.chunk_tokens = [10, 20], [1, 1]
    split_reasoning_ids(plain, [[5], [6]], parser)
    assert plain.has_reasoning is False


def test_compare_rows_of_a_reasoning_run_are_priced_per_answer_token():
    from data.analysis.compare import CostRow, price_answer_tokens

    row = CostRow(run_id="r", gpu_key="H100-SXM-80", provider="runpod", pricing_type="on-demand", detail="",
                  source="snapshot", tps=100.0, tps_basis="throughput under load", ttft_ms=None, usd_per_hour=3.6,
                  usd_per_million=10.0, approximate=False)
    plain = CostRow(**{**row.to_dict(), "run_id": "p"})
    price_answer_tokens([row], {"total_output_tokens": 250, "total_answer_tokens": 100})
    price_answer_tokens([plain], {"total_output_tokens": 250})
    assert row.usd_per_million_answer == pytest.approx(25.0)
    assert plain.usd_per_million_answer is None


async def test_compare_shows_a_reasoning_run_per_answer_token(tmp_path, capsys):
    """`tokentop compare` and the Compare screen price a reasoning run per output token and per answer
    token: 25 output tokens buy 10 answer tokens, so an answer token costs 2.5x."""
    from textual.app import App
    from textual.widgets import DataTable

    from tui.screens.compare import ANSWER_COLUMN, CompareScreen

    with ReplayServer(load_events(STREAM), delay_s=0.002) as server:
        records = _run(server, n=2)
    metrics = [request_metrics(r) for r in records]
    agg = aggregate(metrics, 1.0)
    db = tmp_path / "r.duckdb"
    environment = {"device": "NVIDIA H100 80GB HBM3", "gpus": [{"key": "H100-SXM-80", "name": "H100"}],
                   "location": {"provider": "runpod", "provider_source": "--provider", "price_per_hour_usd": 3.6}}
    with Store(db) as store:
        rec = RunRecorder(store)
        rec.start(kind="suite", engine_description={"engine": "openai", "model": "r1"}, environment=environment)
        for i, (r, m) in enumerate(zip(records, metrics)):
            rec.record(i, r, m)
        rec.finish("completed", duration_s=1.0, summary={"cases": {"q": agg}, "overall": agg})
        tps = sum(r["tps"] for r in store.get_requests(rec.run_id)) / 2
    per_output = 3.6 / (tps * 3600) * 1e6
    per_answer = per_output * (REASONING + ANSWER) / ANSWER

    assert main(["--db", str(db), "compare", rec.run_id]) == 0
    out = capsys.readouterr().out
    assert "$/1M answer" in out
    assert f"{per_output:.2f}" in out and f"{per_answer:.2f}" in out

    class Host(App):
        def on_mount(self) -> None:
            self.push_screen(CompareScreen(Store(db), [rec.run_id]))

    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.query_one("#compare-table", DataTable)
        await wait_for(pilot, lambda: table.row_count, 30, "the compare table's rows")
        labels = [label for label, _key in table.spec]
        paid = next(cells for _key, cells in table.data if str(cells[labels.index("type")]) == "paid")
        assert labels[labels.index("$/1M") + 1] == ANSWER_COLUMN
        assert str(paid[labels.index(ANSWER_COLUMN)]) == f"{per_answer:.2f}"


def test_live_gauges_show_ttfo_once_a_stream_reasons():
    from engine.measure.live import LiveMeter
    from engine.types import Chunk
    from tui.widgets.gauges import stats_table

    meter = LiveMeter()
    meter.begin(st_ns=0)
    meter.feed(Chunk(10_000_000, "", 0))
    meter.feed(Chunk(20_000_000, "", 3, reasoning="Let me think"))
    before = meter.snapshot(now_ns=25_000_000)
    meter.feed(Chunk(50_000_000, "Four.", 2))
    after = meter.snapshot(now_ns=60_000_000)
    assert before.reasoning and before.ttfo_s is None
    assert after.ttft_s == pytest.approx(0.010) and after.ttfo_s == pytest.approx(0.050)
    assert after.reasoning_tokens == 3
    labels = [str(row) for row in stats_table(after).columns[0]._cells]
    assert "TTFO (answer)" in labels
    plain = LiveMeter()
    plain.begin(st_ns=0)
    plain.feed(Chunk(10_000_000, "Hi", 1))
    assert "TTFO (answer)" not in [str(r) for r in stats_table(plain.snapshot(now_ns=20_000_000)).columns[0]._cells]
