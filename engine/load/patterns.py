"""Arrival patterns: when a level's requests go out, timed exactly like `vllm bench serve`.

Patterns (vLLM's option names):
  * fixed concurrency N: every request is released at once (`--request-rate inf`) and a semaphore
    lets at most N be in flight (`--max-concurrency N`) — N users, each sending the next request as
    soon as its previous one finished;
  * request rate R with Poisson (burstiness 1) or gamma (burstiness B) inter-arrival times,
    optionally capped by --max-concurrency. Delays are drawn as vLLM's `get_request` draws them
    (gamma(shape=B, scale=1/(R*B)), cumulated, then rescaled so the last arrival is at N/R);
  * a timed trace: its requests carry their own send times (a fixed schedule, `LoadLevel.self_timed`);
  * a sweep over concurrency levels: explicit levels run in full; the automatic sweep doubles
    1, 2, 4, ... (`sweep_levels`) and stops by engine.load.runner.sweep_verdict.

`send_offsets` is the one place a level's send offsets (s after the level's start) are made; the
driver (engine.load.driver) sends on them, in one process or shared among client processes
(engine.load.pool).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from engine.types import BadRequestError

SWEEP_MAX_LEVEL = 256


@dataclass(frozen=True)
class LoadLevel:
    """One load level: what `vllm bench serve` calls request_rate / burstiness / max_concurrency."""

    request_rate: float = math.inf  # requests/s; inf = all at once
    burstiness: float = 1.0  # 1 = Poisson; <1 burstier; >1 more regular (gamma)
    max_concurrency: int | None = None
    num_prompts: int = 10
    self_timed: bool = False  # a trace: every request has its own send time (rate/burstiness unused)

    @property
    def label(self) -> str:
        if self.self_timed:
            return "trace" + (f" max-concurrency {self.max_concurrency}" if self.max_concurrency else "")
        if math.isinf(self.request_rate):
            return f"concurrency {self.max_concurrency}" if self.max_concurrency else "all at once"
        text = f"rate {self.request_rate:g}/s"
        if self.burstiness != 1.0:
            text += f" burstiness {self.burstiness:g}"
        if self.max_concurrency:
            text += f" max-concurrency {self.max_concurrency}"
        return text

    @property
    def concurrency(self) -> int | None:
        """The level's x-axis value in a concurrency sweep."""
        return self.max_concurrency if math.isinf(self.request_rate) and not self.self_timed else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["request_rate"] = "inf" if math.isinf(self.request_rate) else self.request_rate
        if not self.self_timed:
            data.pop("self_timed")  # the stored shape of levels before traces
        return data


def arrival_offsets(n: int, request_rate: float, burstiness: float = 1.0, seed: int = 0) -> list[float]:
    """Cumulative send offsets (s) as vLLM's get_request computes them (constant rate, no ramp-up)."""
    if burstiness <= 0:
        raise BadRequestError(f"burstiness must be above 0 (got {burstiness})")
    if request_rate <= 0:
        raise BadRequestError(f"request rate must be above 0 (got {request_rate})")
    if n <= 0:
        return []
    if math.isinf(request_rate):
        return [0.0] * n
    if math.isinf(burstiness):
        delays = np.full(n, 1.0 / request_rate)
    else:
        theta = 1.0 / (request_rate * burstiness)
        delays = np.random.RandomState(seed).gamma(shape=burstiness, scale=theta, size=n)
    cum = np.cumsum(delays)
    if cum[-1] != 0:
        cum = cum * ((n / request_rate) / cum[-1])  # vLLM rescales so all are sent in n/rate seconds
    return [float(x) for x in cum]


def send_offsets(level: LoadLevel, planned: Sequence, seed: int = 0) -> list[float]:
    """Each planned request's send offset (s after the level's start): a trace's own send times
    (engine.workloads.base.Planned.at_s, negative ones at 0), else `arrival_offsets` for the level's
    request rate and burstiness drawn with `seed`."""
    if level.self_timed:
        return [max(0.0, float(p.at_s or 0.0)) for p in planned]
    return arrival_offsets(len(planned), level.request_rate, level.burstiness, seed)


def sweep_levels(max_level: int = SWEEP_MAX_LEVEL) -> list[int]:
    out, c = [], 1
    while c <= max_level:
        out.append(c)
        c *= 2
    return out


def default_num_prompts(concurrency: int | None) -> int:
    """Per level when the user gives no --num-prompts: enough to keep every user busy a few times."""
    return max(10, 3 * (concurrency or 1))


def poisson_fit(offsets_s: Sequence[float], request_rate: float) -> dict[str, float]:
    """How well send times fit a Poisson process at `request_rate`: the mean inter-arrival with a
    95 % interval, and the Kolmogorov–Smirnov distance of the inter-arrivals to Exp(rate) with its
    asymptotic p-value (no scipy needed)."""
    t = np.sort(np.asarray(offsets_s, dtype=float))
    gaps = np.diff(np.concatenate([[0.0], t]))
    n = len(gaps)
    if n < 2:
        return {"n": n}
    mean = float(gaps.mean())
    half = 1.96 * float(gaps.std(ddof=1)) / math.sqrt(n)
    x = np.sort(gaps)
    cdf = 1.0 - np.exp(-request_rate * x)
    i = np.arange(1, n + 1)
    d = float(max(np.max(i / n - cdf), np.max(cdf - (i - 1) / n)))
    return {"n": n, "mean_gap_s": mean, "ci95_low_s": mean - half, "ci95_high_s": mean + half,
            "expected_gap_s": 1.0 / request_rate, "ks_d": d, "ks_p": _kolmogorov_p(d, n)}


def _kolmogorov_p(d: float, n: int) -> float:
    """P(D_n > d) by the Kolmogorov distribution with Stephens' small-sample correction."""
    en = math.sqrt(n)
    lam = (en + 0.12 + 0.11 / en) * d
    if lam < 1e-3:
        return 1.0
    total = 0.0
    for k in range(1, 101):
        term = 2 * (-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam)
        total += term
        if abs(term) < 1e-10:
            break
    return float(min(1.0, max(0.0, total)))
