"""A run's summary: per-case aggregates and the overall figures (engine.orchestrator.case_summary).
One case holding every request shares its aggregate with the overall figures; two cases do not."""

from __future__ import annotations

from engine.measure.metrics import aggregate, request_metrics
from engine.orchestrator import case_summary, span_s
from engine.types import GenerationRequest, RequestRecord


def finished(case_id: str, st_ns: int, gap_ns: int, tokens: int) -> tuple[GenerationRequest, RequestRecord]:
    request = GenerationRequest("hi", max_tokens=tokens, case_id=case_id)
    record = RequestRecord(request=request, st_ns=st_ns,
                           chunk_ns=[st_ns + 5_000_000 + i * gap_ns for i in range(tokens)],
                           chunk_tokens=[1] * tokens)
    record.success = True
    record.reported_output_tokens = tokens
    return request, record


def summary_of(pairs):
    requests = [r for r, _ in pairs]
    records = [rec for _, rec in pairs]
    return case_summary(requests, [request_metrics(rec) for rec in records], records), records


def test_one_case_overall_is_that_case_s_figures_without_its_own_keys():
    pairs = [finished("short", 0, 2_000_000, 40), finished("short", 200_000_000, 3_000_000, 70)]
    summary, records = summary_of(pairs)
    case = dict(summary["cases"]["short"])
    assert (case.pop("target_tokens"), case.pop("requests")) == (40, 2)
    assert summary["overall"] == case == aggregate([request_metrics(r) for r in records], span_s(records))
    assert "target_tokens" not in summary["overall"]


def test_two_cases_keep_their_own_figures_and_the_overall_spans_both():
    pairs = [finished("short", 0, 2_000_000, 40), finished("long", 300_000_000, 9_000_000, 90)]
    summary, records = summary_of(pairs)
    assert summary["cases"]["short"]["total_output_tokens"] == 40
    assert summary["cases"]["long"]["total_output_tokens"] == 90
    assert summary["overall"]["total_output_tokens"] == 130
    assert summary["overall"]["completed"] == 2
    assert summary["overall"]["duration"] == span_s(records)
