"""engine/measure/live.py: gauge maths on synthetic timestamps (the output sanitiser: test_outside_text.py)."""

from __future__ import annotations

import threading

import pytest

from engine.measure.live import LiveMeter
from engine.measure.metrics import request_metrics
from engine.types import Chunk, GenerationRequest, RequestRecord

MS = 1_000_000


def feed_steady(meter: LiveMeter, st: int, ttft_ms: int, itl_ms: int, n: int) -> list[int]:
    times = [st + ttft_ms * MS + i * itl_ms * MS for i in range(n)]
    for i, t in enumerate(times):
        meter.feed(Chunk(t, f"t{i} ", 1))
    return times


def test_empty_meter():
    m = LiveMeter()
    m.begin(st_ns=0)
    s = m.snapshot(now_ns=500 * MS)
    assert s.tokens == 0 and s.ttft_s is None and s.tps_now == 0 and s.tpot_s is None
    assert s.elapsed_s == pytest.approx(0.5)


def test_steady_stream_matches_vllm_definitions():
    m = LiveMeter(window_s=1.0, bucket_s=0.25)
    m.begin(st_ns=0)
    times = feed_steady(m, 0, ttft_ms=100, itl_ms=20, n=101)  # last chunk at 2100 ms
    s = m.snapshot(now_ns=times[-1])
    assert s.tokens == 101
    assert s.ttft_s == pytest.approx(0.1)
    assert s.itl_last_s == pytest.approx(0.02)
    assert s.itl_mean_s == pytest.approx(0.02)
    assert s.tpot_s == pytest.approx(0.02)
    assert s.decode_rate == pytest.approx(50.0)
    # 1 s window ending at the last chunk holds 50 chunks (t in (1100, 2100])
    assert s.tps_now == pytest.approx(50.0)
    assert s.tps_request == pytest.approx(101 / 2.1)
    assert "t0 t1" in s.text
    # compare with the stored-record maths
    rec = RequestRecord(request=GenerationRequest("x", 101), st_ns=0, chunk_ns=times, chunk_tokens=[1] * 101)
    rec.success = True
    rm = request_metrics(rec)
    m.finish(st_ns=0)
    f = m.snapshot(now_ns=10 * 1_000_000_000)  # clock frozen once finished
    assert f.done
    assert f.ttft_s == pytest.approx(rm.ttft_s)
    assert f.tpot_s == pytest.approx(rm.tpot_s)
    assert f.elapsed_s == pytest.approx(rm.e2el_s)
    assert f.tps_request == pytest.approx(rm.tps)
    assert f.text == ""  # text is handed out once
    assert f.tps_now == 0.0  # nothing streamed in the last window: "tok/s now" is back to 0


def test_tok_s_now_decays_to_zero_within_its_window_after_the_request():
    m = LiveMeter(window_s=1.0, bucket_s=0.25)
    m.begin(st_ns=0)
    times = feed_steady(m, 0, ttft_ms=100, itl_ms=20, n=51)  # last chunk at 1100 ms
    m.finish(st_ns=0)
    assert m.snapshot(now_ns=times[-1]).tps_now == pytest.approx(50.0)
    half = m.snapshot(now_ns=times[-1] + 500 * MS)
    assert 0 < half.tps_now < 50.0
    late = m.snapshot(now_ns=times[-1] + 1000 * MS)
    assert late.tps_now == 0.0 and late.elapsed_s == pytest.approx(1.1)  # E2EL stays frozen


def test_window_decays_after_a_stall_and_series_buckets():
    m = LiveMeter(window_s=1.0, bucket_s=0.5)
    m.begin(st_ns=0)
    feed_steady(m, 0, ttft_ms=0, itl_ms=10, n=100)  # 100 tokens in [0, 990] ms
    s = m.snapshot(now_ns=1000 * MS)
    assert s.tps_now == pytest.approx(99.0)  # t=0 falls out of the window (0, 1000]
    assert s.series == pytest.approx((100.0, 100.0))  # 50 tokens per 0.5 s bucket
    s = m.snapshot(now_ns=3000 * MS)
    assert s.tps_now == 0.0
    assert s.series == pytest.approx((100.0, 100.0, 0.0, 0.0, 0.0, 0.0))


def test_early_window_uses_elapsed_not_full_window():
    m = LiveMeter(window_s=1.0)
    m.begin(st_ns=0)
    feed_steady(m, 0, ttft_ms=50, itl_ms=50, n=4)  # 50..200 ms
    s = m.snapshot(now_ns=200 * MS)
    assert s.tps_now == pytest.approx(4 / 0.2)


def test_multi_token_chunks_and_empty_first_chunk():
    m = LiveMeter()
    m.begin(st_ns=0)
    m.feed(Chunk(80 * MS, "", 0))  # TTFT counts the first chunk even when empty
    m.feed(Chunk(100 * MS, "ab", 2))
    m.feed(Chunk(130 * MS, "cde", 3))
    s = m.snapshot(now_ns=130 * MS)
    assert s.ttft_s == pytest.approx(0.08)
    assert s.tokens == 5 and s.chunks == 3
    assert s.itl_mean_s == pytest.approx(0.025)
    assert s.tpot_s == pytest.approx(0.05 / 4)


def test_begin_resets_and_feed_is_thread_safe():
    m = LiveMeter()
    m.begin(st_ns=0)
    n_threads, per = 4, 5000

    def produce(k):
        for i in range(per):
            m.feed(Chunk(k * per + i + 1, "x", 1))

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    seen = 0
    while any(t.is_alive() for t in threads):
        seen += len(m.snapshot(now_ns=10**12).text)
    for t in threads:
        t.join()
    seen += len(m.snapshot(now_ns=10**12).text)
    assert seen == n_threads * per
    assert m.snapshot(now_ns=10**12).tokens == n_threads * per
    m.begin(st_ns=0)
    assert m.snapshot(now_ns=1).tokens == 0


def test_provisional_chunks_are_counted_by_the_tokenizer_and_flagged_estimated():
    """A server without per-event usage: the live meter counts each chunk's text with the tokenizer
    (on the thread that takes the snapshot) and says the count is an estimate."""
    m = LiveMeter(count=lambda text: len(text.split()))
    m.begin(st_ns=0)
    m.feed(Chunk(50 * MS, "one two", 1, exact=False))
    m.feed(Chunk(70 * MS, " three four", 1, exact=False))
    s = m.snapshot(now_ns=70 * MS)
    assert s.tokens == 4 and s.estimated
    assert s.tpot_s == pytest.approx(0.020 / 3)


def test_finish_takes_the_records_final_counts_so_the_gauges_equal_the_stored_figures():
    """Several tokens per event (case 5): the live meter saw 1 per event, the record settled 4 each."""
    m = LiveMeter(bucket_s=0.25)
    m.begin(st_ns=0)
    times = [120 * MS, 140 * MS, 160 * MS]
    for t in times:
        m.feed(Chunk(t, "w w w w", 1, exact=False))
    assert m.snapshot(now_ns=160 * MS).tokens == 3
    rec = RequestRecord(request=GenerationRequest("x", 12), st_ns=0, chunk_ns=times, chunk_tokens=[4, 4, 4])
    rec.success, rec.reported_output_tokens, rec.token_count_source = True, 12, "usage+spread"
    m.finish(record=rec)
    s, rm = m.snapshot(now_ns=10**10), request_metrics(rec)
    assert s.tokens == 12 and not s.estimated and s.token_source == "usage+spread"
    assert s.tpot_s == pytest.approx(rm.tpot_s) and s.tps_request == pytest.approx(rm.tps)
    assert s.series == pytest.approx((48.0,))  # 12 tokens in the first 0.25 s bucket


def test_finish_reports_a_request_that_stopped_early():
    m = LiveMeter()
    m.begin(st_ns=0)
    m.feed(Chunk(10 * MS, "Hi", 1))
    rec = RequestRecord(request=GenerationRequest("x", 20, enforce_length=True), st_ns=0, chunk_ns=[10 * MS],
                        chunk_tokens=[1])
    rec.success, rec.finish_reason = True, "eos_token"
    m.finish(record=rec)
    s = m.snapshot()
    assert s.stopped_early == (20, 1) and s.finish_reason == "eos_token" and s.tpot_s is None
