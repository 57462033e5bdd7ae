"""Join stored runs with current prices: $/h and $/1M output tokens per provider for each run's GPU.

The tokens/s figure is named on every cost: batch-1 TPS (one request at a time, output tokens / E2EL,
the article's TPS) for suite and interactive runs, output throughput under load for load runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from data.prices import PriceBoard, article_reference, price_board, source_age
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

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("costs", "reference")}
        d["gpu"] = gpu_label(self.gpu_key) if self.gpu_key else self.device
        d["costs"] = [c.to_dict() for c in self.costs]
        d["reference"] = [r.to_dict() for r in self.reference]
        return d


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def run_speed(store, run: dict[str, Any]) -> tuple[float | None, TpsBasis, float | None]:
    """(tokens/s, which figure it is, mean TTFT ms) for a stored run."""
    requests = [r for r in store.get_requests(run["run_id"]) if r.get("success")]
    ttft = _mean([r.get("ttft_ms") for r in requests])
    if run.get("kind") == "load":
        summary = run.get("summary") or {}
        cases_obj = summary.get("cases", summary) if isinstance(summary, dict) else {}
        cases = cases_obj.values() if isinstance(cases_obj, dict) else []
        throughputs = [c.get("output_throughput") for c in cases if isinstance(c, dict)]
        if isinstance(summary, dict) and isinstance(summary.get("output_throughput"), (int, float)):
            throughputs.append(summary["output_throughput"])
        throughputs = [t for t in throughputs if isinstance(t, (int, float)) and t > 0]
        if throughputs:
            return max(throughputs), TpsBasis.THROUGHPUT, ttft
    return _mean([r.get("tps") for r in requests]), TpsBasis.BATCH1, ttft


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
    tps, basis, ttft = run_speed(store, run)
    gpu_key = run.get("gpu_key")
    count = int(run.get("gpu_count") or 1)
    rc = RunCosts(
        run_id=run["run_id"], model=run.get("model"), device=run.get("device"), gpu_key=gpu_key, gpu_count=count,
        status=run.get("status", ""), tps=tps, tps_basis=basis.label, ttft_ms=ttft,
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
    if not tps:
        rc.note = "This run has no successful requests: no tokens/s to cost."
        return rc
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
        rc.costs.append(
            CostRow(
                run_id=rc.run_id, gpu_key=gpu_key, provider=row.provider, pricing_type=row.pricing_type,
                detail=detail.strip(), source=source_age(row, board.now), tps=tps, tps_basis=basis.label,
                ttft_ms=ttft, usd_per_hour=price, usd_per_million=usd_per_million_tokens(price, tps),
                approximate=row.approximate,
            )
        )
    rc.costs.sort(key=lambda c: c.usd_per_million)
    if rc.costs:
        rc.costs[0].cheapest = True
    else:
        rc.note = f"No provider in the current price list rents a {gpu_label(gpu_key)}."
    return rc


def provider_name(provider: str) -> str:
    return provider_label(provider)
