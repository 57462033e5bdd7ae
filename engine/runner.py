"""Suite summaries (kept for callers of `summarise`): suites now run through engine/orchestrator.py."""

from __future__ import annotations

from engine.metrics import RequestMetrics
from engine.orchestrator import SuiteOutcome, _case_summary, span_s
from engine.types import GenerationRequest, RequestRecord

__all__ = ["SuiteOutcome", "summarise", "span_s"]


def summarise(requests: list[GenerationRequest], metrics: list[RequestMetrics], records: list[RequestRecord]) -> dict:
    """Per-case aggregates (vLLM names) plus the overall figures (the orchestrator's own)."""
    return _case_summary(requests, metrics, records)
