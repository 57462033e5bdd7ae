"""Cost per million output tokens.

cost per 1M output tokens = ($/h of the instance) / (tokens/s of that instance x 3600) x 1e6

The tokens/s figure matters: a single request's decode speed (the article's batch-1 TPS) and the
throughput of a loaded server differ by an order of magnitude, so every cost says which it used.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class TpsBasis(str, Enum):
    """What a cost can be based on: how many tokens the GPUs turn out per second.

    Per-request TPS under load (one request's tokens / E2EL while others run beside it) is not here: it
    prices the whole GPU at one stream's speed and overstates cost about N-fold at concurrency N. It is a
    latency figure, reported as per-user speed (tok/s per user), never a cost basis."""

    BATCH1 = "batch-1 TPS"  # output tokens / E2EL of one request at a time (the article's TPS)
    THROUGHPUT = "throughput under load"  # sum of output tokens / duration with concurrent requests

    @property
    def label(self) -> str:
        return self.value

    @property
    def short(self) -> str:
        """A column-width label: "batch-1", "load"."""
        return {"batch-1 TPS": "batch-1", "throughput under load": "load"}[self.value]


PER_USER_SPEED = "tok/s per user"  # the name per-request TPS under load is shown under


def share_of_instance(usd_per_hour_instance: float, gpus_used: int, instance_gpus: int | None) -> float:
    """What the GPUs a run used cost of an instance: its price x used / total GPUs (all of it when the
    total is unknown or not more than the GPUs used)."""
    used = max(1, int(gpus_used or 1))
    total = int(instance_gpus or 0)
    if total <= used:
        return float(usd_per_hour_instance)
    return float(usd_per_hour_instance) * used / total


@dataclass(frozen=True)
class Cost:
    usd_per_million: float
    usd_per_hour: float
    tokens_per_s: float
    basis: TpsBasis

    def describe(self) -> str:
        return (
            f"${self.usd_per_million:.2f}/1M tokens "
            f"(${self.usd_per_hour:.2f}/h at {self.tokens_per_s:.1f} tok/s, {self.basis.label})"
        )


def usd_per_million_tokens(usd_per_hour: float, tokens_per_s: float) -> float:
    """$/h / (tok/s x 3600) x 1e6. Raises ValueError for a non-positive rate or a negative price."""
    if tokens_per_s is None or not tokens_per_s > 0:
        raise ValueError(f"tokens per second must be positive, got {tokens_per_s!r}")
    if usd_per_hour is None or usd_per_hour < 0:
        raise ValueError(f"price per hour must be zero or more, got {usd_per_hour!r}")
    return usd_per_hour / (tokens_per_s * 3600.0) * 1e6


def cost_per_million(usd_per_hour: float, tokens_per_s: float, basis: TpsBasis) -> Cost:
    return Cost(usd_per_million_tokens(usd_per_hour, tokens_per_s), usd_per_hour, tokens_per_s, TpsBasis(basis))
