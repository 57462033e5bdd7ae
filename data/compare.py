"""Join stored runs with current prices: $/h and $/1M output tokens per provider for each run's GPU.

The tokens/s figure is named on every cost: batch-1 TPS (one request at a time, output tokens / E2EL,
the article's TPS) for suite and interactive runs; a load run is costed twice, on its output throughput
under load and, beside it, on its per-request TPS (named batch-1 TPS when the level ran at concurrency 1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from data.prices import PriceBoard, article_reference, price_board, source_age
from pricing.answer_cost import answer_costs
from pricing.cost import TpsBasis, usd_per_million_tokens
from pricing.gpus import gpu_label
from pricing.models import provider_label


class CompareError(Exception):
    """A run cannot be compared; the message says why (one line)."""


@dataclass
class CostRow:
    run_id: str
    gpu_key: str
    provider: str
    pricing_type: str
    detail: str  # secure cloud / min of 12 offers / gpu_1x_h100_pcie ...
    source: str  # "live, 5 min ago" / "snapshot 2024-01-01"
    tps: float
    tps_basis: str
    ttft_ms: float | None
    usd_per_hour: float  # for the measured configuration (GPUs x per-GPU price)
    usd_per_million: float
    approximate: bool
    cheapest: bool = False
    # Reasoning models: $/1M answer tokens at the same speed (None when the run carried no reasoning).
    usd_per_million_answer: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ReferenceRow:
    label: str  # "article, 2024"
    gpu_key: str
    gpu: str
    provider: str
    tps: float
    tps_basis: str
    usd_per_hour: float
    usd_per_million: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunCosts:
    run_id: str
    model: str | None
    device: str | None
    gpu_key: str | None
    gpu_count: int
    status: str
    tps: float | None
    tps_basis: str
    ttft_ms: float | None
    costs: list[CostRow] = field(default_factory=list)
    reference: list[ReferenceRow] = field(default_factory=list)
    note: str = ""
    speeds: list[dict[str, Any]] = field(default_factory=list)  # [{"tps": 1800.0, "tps_basis": "..."}], headline first

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("costs", "reference")}
        d["gpu"] = gpu_label(self.gpu_key) if self.gpu_key else self.device
        d["costs"] = [c.to_dict() for c in self.costs]
        d["reference"] = [r.to_dict() for r in self.reference]
        return d


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _load_throughput(summary: Any) -> float | None:
    """Output tokens/s of a load run: summary["overall"], else the top level, else the best case."""
    if not isinstance(summary, dict):
        return None
    for d in (summary.get("overall"), summary):
        t = d.get("output_throughput") if isinstance(d, dict) else None
        if isinstance(t, (int, float)) and t > 0:
            return float(t)
    cases = summary.get("cases")
    cases = cases.values() if isinstance(cases, dict) else cases if isinstance(cases, list) else []
    found = [c.get("output_throughput") for c in cases if isinstance(c, dict)]
    found = [float(t) for t in found if isinstance(t, (int, float)) and t > 0]
    return max(found) if found else None


def _single_stream(summary: Any) -> bool:
    """True when a load level ran one request at a time (concurrency 1), so its per-request TPS is batch-1."""
    if not isinstance(summary, dict):
        return False
    for d in (summary.get("overall"), summary):
        if isinstance(d, dict) and d.get("max_concurrency") == 1 and str(d.get("request_rate", "inf")) == "inf":
            return True
    return False


def run_speeds(store, run: dict[str, Any]) -> tuple[list[tuple[float, TpsBasis]], float | None]:
    """Every tokens/s figure a stored run offers, each with its basis, and the mean TTFT (ms).

    A suite or interactive run: batch-1 TPS (mean over requests of output tokens / E2EL).
    A load run: its output throughput under load first, then the same per-request figure, named batch-1 TPS
    only when the level ran at concurrency 1 and "per-request TPS under load" otherwise."""
    requests = [r for r in store.get_requests(run["run_id"]) if r.get("success")]
    ttft = _mean([r.get("ttft_ms") for r in requests])
    per_request = _mean([r.get("tps") for r in requests])
    speeds: list[tuple[float, TpsBasis]] = []
    if run.get("kind") == "load":
        summary = run.get("summary")
        throughput = _load_throughput(summary)
        if throughput:
            speeds.append((throughput, TpsBasis.THROUGHPUT))
        if per_request and per_request > 0:
            speeds.append((per_request, TpsBasis.BATCH1 if _single_stream(summary) else TpsBasis.PER_REQUEST))
    elif per_request and per_request > 0:
        speeds.append((per_request, TpsBasis.BATCH1))
    return speeds, ttft


def run_speed(store, run: dict[str, Any]) -> tuple[float | None, TpsBasis, float | None]:
    """The run's headline (tokens/s, basis, mean TTFT ms): throughput for a load run, else batch-1 TPS."""
    speeds, ttft = run_speeds(store, run)
    if speeds:
        return speeds[0][0], speeds[0][1], ttft
    return None, (TpsBasis.THROUGHPUT if run.get("kind") == "load" else TpsBasis.BATCH1), ttft


def reference_rows(gpu_key: str | None = None) -> list[ReferenceRow]:
    ref = article_reference()
    rows = []
    for r in ref["rows"]:
        if gpu_key is not None and r["gpu_key"] != gpu_key:
            continue
        rows.append(
            ReferenceRow(
                label=ref["label"], gpu_key=r["gpu_key"], gpu=r["gpu"], provider=r["provider"], tps=r["tps"],
                tps_basis=ref["tps_basis"], usd_per_hour=r["usd_per_hour"],
                usd_per_million=usd_per_million_tokens(r["usd_per_hour"], r["tps"]),
            )
        )
    return rows


def latest_completed_run_id(store) -> str | None:
    for run in store.list_runs():
        if run.get("status") == "completed":
            return run["run_id"]
    return None


def compare_runs(store, run_ids: list[str], *, board: PriceBoard | None = None, now: datetime | None = None) -> list[RunCosts]:
    board = board or price_board(store, now=now)
    out = []
    for run_id in run_ids:
        run = store.get_run(run_id)
        if run is None:
            raise CompareError(f"no run {run_id!r} in this database (see `tokentop runs`)")
        out.append(run_costs(store, run, board))
    return out


def run_costs(store, run: dict[str, Any], board: PriceBoard) -> RunCosts:
    speeds, ttft = run_speeds(store, run)
    if speeds:
        tps, basis = speeds[0]
    else:
        tps, basis = None, TpsBasis.THROUGHPUT if run.get("kind") == "load" else TpsBasis.BATCH1
    gpu_key = run.get("gpu_key")
    count = int(run.get("gpu_count") or 1)
    rc = RunCosts(
        run_id=run["run_id"], model=run.get("model"), device=run.get("device"), gpu_key=gpu_key, gpu_count=count,
        status=run.get("status", ""), tps=tps, tps_basis=basis.label, ttft_ms=ttft,
        speeds=[{"tps": t, "tps_basis": b.label} for t, b in speeds],
    )
    if not gpu_key:
        device = run.get("device") or "CPU"
        rc.note = (
            f"No provider rents this device ({device}): there is no $/h to apply. "
            "The article's GPU rows are shown for reference."
        )
        rc.reference = reference_rows()
        return rc
    rc.reference = reference_rows(gpu_key)
    if not speeds:
        rc.note = "This run has no successful requests: no tokens/s to cost."
        return rc
    order = {b.label: i for i, (_, b) in enumerate(speeds)}
    for row in board.for_gpu(gpu_key):
        if row.gpu_count == count:
            price, share = row.usd_per_hour, ""
        else:
            price, share = row.usd_per_gpu_hour * count, f" ({count}/{row.gpu_count} of the instance)"
        detail = " ".join(
            x for x in (
                f"{row.stat} of {row.offers}" if row.stat else None,
                row.note,
                row.instance_type if row.provider in ("lambda", "vultr") else None,
            ) if x
        ) + share
        for speed, speed_basis in speeds:
            rc.costs.append(
                CostRow(
                    run_id=rc.run_id, gpu_key=gpu_key, provider=row.provider, pricing_type=row.pricing_type,
                    detail=detail.strip(), source=source_age(row, board.now), tps=speed, tps_basis=speed_basis.label,
                    ttft_ms=ttft, usd_per_hour=price, usd_per_million=usd_per_million_tokens(price, speed),
                    approximate=row.approximate,
                )
            )
    # Headline basis first, cheapest first within a basis; the cheapest of each basis is marked (a cost on
    # throughput under load and one on batch-1 TPS answer different questions, so they are not ranked together).
    rc.costs.sort(key=lambda c: (order[c.tps_basis], c.usd_per_million))
    seen: set[str] = set()
    for c in rc.costs:
        if c.tps_basis not in seen:
            c.cheapest = True
            seen.add(c.tps_basis)
    if not rc.costs:
        rc.note = f"No provider in the current price list rents a {gpu_label(gpu_key)}."
    price_answer_tokens(rc.costs, (run.get("summary") or {}).get("overall") or {})
    return rc


def price_answer_tokens(costs: list[CostRow], overall: dict[str, Any]) -> None:
    """A reasoning run's rows also get $/1M answer tokens (pricing.answer_cost)."""
    for c in costs:
        priced = answer_costs(c.usd_per_hour, c.tps, overall) if c.tps else None
        if priced is not None:
            c.usd_per_million_answer = priced.usd_per_million_answer


def provider_name(provider: str) -> str:
    return provider_label(provider)
