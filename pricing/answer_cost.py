"""Reasoning models: what an answer token costs, next to what an output token costs.

A reasoning model bills (and the GPU spends time on) every output token, but a user only reads the
answer. At the same speed, $/1M answer tokens = $/1M output tokens x output / answer tokens.
For use by the compare output: `answer_costs(usd_per_hour, output_tok_s, summary)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from pricing.cost import usd_per_million_tokens


@dataclass(frozen=True)
class AnswerCost:
    usd_per_million_output: float
    usd_per_million_answer: float | None  # None when no answer token was produced
    output_tokens: int
    answer_tokens: int
    reasoning_tokens: int

    @property
    def answer_share(self) -> float | None:
        return self.answer_tokens / self.output_tokens if self.output_tokens else None


def answer_cost(usd_per_hour: float, output_tokens_per_s: float, output_tokens: int, answer_tokens: int) -> AnswerCost:
    """Price per output token at `output_tokens_per_s`, and per answer token at the same time spent."""
    per_output = usd_per_million_tokens(usd_per_hour, output_tokens_per_s)
    per_answer = per_output * output_tokens / answer_tokens if answer_tokens > 0 else None
    return AnswerCost(per_output, per_answer, int(output_tokens), int(answer_tokens),
                      int(output_tokens) - int(answer_tokens))


def answer_costs(usd_per_hour: float, output_tokens_per_s: float, summary: Mapping[str, Any]) -> AnswerCost | None:
    """From a run's aggregate (engine.measure.metrics.aggregate: total_output_tokens, total_answer_tokens);
    None when the run carried no reasoning (then per output token is per answer token)."""
    if summary.get("total_answer_tokens") is None or not summary.get("total_output_tokens"):
        return None
    return answer_cost(usd_per_hour, output_tokens_per_s, int(summary["total_output_tokens"]),
                       int(summary["total_answer_tokens"]))
