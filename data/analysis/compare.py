"""Join stored runs with current prices: $/h and $/1M output tokens per provider for each run's GPU.

The tokens/s figure is named on every cost: batch-1 TPS (one request at a time, output tokens / E2EL,
the article's TPS) for suite and interactive runs; a load run is costed on its output throughput under
load (and on batch-1 TPS when the level ran at concurrency 1). Per-request TPS of a level that ran
several requests at once is no cost basis: it is shown as per-user speed (tok/s per user).

A run is costed for the GPUs it used (TP x PP of the visible GPUs, stored as gpus_used), not for every GPU
of the machine: per-GPU price x GPUs used, or the price paid for the instance x used / the instance's GPUs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from data.analysis.run_figures import LOAD_FIGURES, stored_json
from data.store.prices import PriceBoard, article_reference, price_board, source_age
from engine.errors import TokentopError
from pricing.answer_cost import answer_costs
from pricing.cost import PER_USER_SPEED, TpsBasis, share_of_instance, usd_per_million_tokens
from pricing.gpus import gpu_label
from pricing.models import provider_label


def run_workload(run: dict[str, Any]) -> tuple[str, str]:
    from data.analysis.workload_labels import run_workload as of

    return of(run)


def workloads_differ(results: list["RunCosts"]) -> bool:
    """Several runs compared on different workloads: their figures answer different questions."""
    return len({r.workload_key for r in results}) > 1


class CompareError(TokentopError):
    """A run cannot be compared; the message says why (one line)."""

    exit_code = 2  # bad input (engine.errors)


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
    pricing_type: str = "on-demand"  # as the bundled snapshot lists this provider's row (Vast.ai: spot)

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
    per_user_tps: float | None = None  # a load level's mean per-request TPS at concurrency > 1: latency, not cost
    per_user_label: str = PER_USER_SPEED
    instance_gpus: int | None = None  # GPUs of the instance the run ran on (the share's denominator)
    gpus_used_note: str = ""
    provider: str | None = None  # where the run ran (runs.provider), and what was paid there
    instance_type: str | None = None
    price_per_hour_usd: float | None = None
    # A load run's throughput under load is its whole run's (data.analysis.run_figures.LOAD_FIGURES); "" otherwise.
    throughput_figures: str = ""
    # what the run sent (data.analysis.workload_labels): costs of different workloads do not compare 1:1
    workload: str = ""
    workload_key: str = ""

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
    """Output tokens/s of a load run: summary["overall"], else the top level, else the best case. The
    whole-run figure (data.analysis.run_figures.LOAD_FIGURES), not the steady state stored beside it."""
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
    """Every tokens/s figure a stored run can be costed on, each with its basis, and the mean TTFT (ms).

    A suite or interactive run: batch-1 TPS (mean over requests of output tokens / E2EL).
    A load run: its output throughput under load, then batch-1 TPS only when the level ran at concurrency 1
    (per-request TPS with other requests beside it is per-user speed: see per_user_speed)."""
    speeds, ttft, _per_user = _speeds(store, run)
    return speeds, ttft


def per_user_speed(store, run: dict[str, Any]) -> float | None:
    """A load level's mean per-request TPS (tok/s per user) when requests ran concurrently, else None."""
    return _speeds(store, run)[2]


def _speeds(store, run: dict[str, Any]) -> tuple[list[tuple[float, TpsBasis]], float | None, float | None]:
    from data.analysis.run_figures import counts

    # The requests the run's figures count (data.analysis.run_figures): a stopped generation costs what it streamed.
    requests = [r for r in store.get_requests(run["run_id"]) if counts(run.get("kind"), r)]
    ttft = _mean([r.get("ttft_ms") for r in requests])
    per_request = _mean([r.get("tps") for r in requests])
    speeds: list[tuple[float, TpsBasis]] = []
    per_user = None
    if run.get("kind") == "load":
        summary = run.get("summary")
        throughput = _load_throughput(summary)
        if throughput:
            speeds.append((throughput, TpsBasis.THROUGHPUT))
        if per_request and per_request > 0:
            if _single_stream(summary):
                speeds.append((per_request, TpsBasis.BATCH1))
            else:
                per_user = per_request
    elif per_request and per_request > 0:
        speeds.append((per_request, TpsBasis.BATCH1))
    return speeds, ttft, per_user


def gpus_for_cost(run: dict[str, Any]) -> tuple[int, int | None, str]:
    """(GPUs the run used, GPUs of its instance or None, how that is known).

    Runs recorded with gpus_used say so directly. Older runs stored every GPU NVML saw as gpu_count: the
    engine used TP x PP of them, so that is what they are costed for."""
    env = stored_json(run.get("environment")) or {}
    loc = env.get("location") or {}
    instance = loc.get("instance_gpus") or (len(env.get("gpus") or []) or None)
    used = stored_json(run.get("gpus_used"))
    if used is None:
        used = env.get("gpus_used")
    if isinstance(used, list) and used:
        return len(used), instance, env.get("gpus_used_note") or "GPUs the engine was given"
    args = stored_json(run.get("engine_args")) or {}
    seen = int(run.get("gpu_count") or 1)
    parallel = int(args.get("tensor_parallel_size") or 1) * int(args.get("pipeline_parallel_size") or 1)
    return max(1, min(seen, parallel)), instance or seen, f"TP x PP = {parallel} of {seen} GPU(s) seen"


def run_speed(store, run: dict[str, Any]) -> tuple[float | None, TpsBasis, float | None]:
    """The run's headline (tokens/s, basis, mean TTFT ms): throughput for a load run, else batch-1 TPS."""
    speeds, ttft = run_speeds(store, run)
    if speeds:
        return speeds[0][0], speeds[0][1], ttft
    return None, (TpsBasis.THROUGHPUT if run.get("kind") == "load" else TpsBasis.BATCH1), ttft


def reference_rows(gpu_key: str | None = None) -> list[ReferenceRow]:
    """The article's rows (for this GPU), each with the price type the bundled snapshot gives the same
    provider and GPU, so a price is on-demand or spot the same way on every screen."""
    from data.store.prices import snapshot_rows

    types = {(r.provider, r.gpu_key): r.pricing_type for r in snapshot_rows()}
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
                pricing_type=types.get((r["provider"], r["gpu_key"]), "on-demand"),
            )
        )
    return rows


def latest_completed_run_id(store) -> str | None:
    for run in store.list_runs():
        if run.get("status") == "completed":
            return run["run_id"]
    return None


def compare_runs(store, run_ids: list[str], *, board: PriceBoard | None = None,
                 now: datetime | None = None) -> list[RunCosts]:
    board = board or price_board(store, now=now)
    out = []
    for run_id in run_ids:
        run = store.get_run(run_id)
        if run is None:
            raise CompareError(f"no run {run_id!r} in this database (see `tokentop runs`)")
        out.append(run_costs(store, run, board))
    return out


def run_costs(store, run: dict[str, Any], board: PriceBoard) -> RunCosts:
    speeds, ttft, per_user = _speeds(store, run)
    if speeds:
        tps, basis = speeds[0]
    else:
        tps, basis = None, TpsBasis.THROUGHPUT if run.get("kind") == "load" else TpsBasis.BATCH1
    gpu_key = run.get("gpu_key")
    count, instance_gpus, used_note = gpus_for_cost(run)
    rc = RunCosts(
        run_id=run["run_id"], model=run.get("model"), device=run.get("device"), gpu_key=gpu_key, gpu_count=count,
        status=run.get("status", ""), tps=tps, tps_basis=basis.label, ttft_ms=ttft,
        speeds=[{"tps": t, "tps_basis": b.label} for t, b in speeds], per_user_tps=per_user,
        instance_gpus=instance_gpus, gpus_used_note=used_note, provider=run.get("provider"),
        instance_type=run.get("instance_type"), price_per_hour_usd=run.get("price_per_hour_usd"),
    )
    rc.workload_key, rc.workload = run_workload(run)
    from data.analysis.workload_labels import workload_labels

    rc.workload = workload_labels(store).get(rc.workload_key, rc.workload)  # unique among the database's
    if any(b is TpsBasis.THROUGHPUT for _t, b in speeds):
        rc.throughput_figures = LOAD_FIGURES
    order = {b.label: i for i, (_, b) in enumerate(speeds)}
    paid = run.get("price_per_hour_usd")
    if paid and speeds:
        # What the user paid for the instance, the run's share of it: price x GPUs used / GPUs of the instance.
        price = share_of_instance(paid, count, instance_gpus)
        share = f"{count}/{instance_gpus} GPUs of " if instance_gpus and instance_gpus > count else ""
        for speed, speed_basis in speeds:
            rc.costs.append(CostRow(
                run_id=rc.run_id, gpu_key=gpu_key or "", provider=run.get("provider") or "(you)",
                pricing_type="paid", detail=f"{share}${paid:.2f}/h paid".strip(),
                source="price paid", tps=speed, tps_basis=speed_basis.label, ttft_ms=ttft, usd_per_hour=price,
                usd_per_million=usd_per_million_tokens(price, speed), approximate=False,
            ))
    if not gpu_key:
        device = run.get("device") or "CPU"
        if not (run.get("environment") or {}).get("gpus") and not run.get("gpus_used"):
            # No GPU at all: nothing was costed per GPU (a CPU box says so, not "1 of 1 GPU(s) seen").
            rc.instance_gpus, rc.gpus_used_note = None, f"no GPU: the run used the {device}"
        if not rc.costs:
            rc.note = (
                f"No provider rents this device ({device}): there is no $/h to apply. "
                "The article's GPU rows are shown for reference."
            )
        rc.reference = reference_rows()
        _mark_cheapest(rc, order)
        return rc
    rc.reference = reference_rows(gpu_key)
    if not speeds:
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
        for speed, speed_basis in speeds:
            rc.costs.append(
                CostRow(
                    run_id=rc.run_id, gpu_key=gpu_key, provider=row.provider, pricing_type=row.pricing_type,
                    detail=detail.strip(), source=source_age(row, board.now), tps=speed, tps_basis=speed_basis.label,
                    ttft_ms=ttft, usd_per_hour=price, usd_per_million=usd_per_million_tokens(price, speed),
                    approximate=row.approximate,
                )
            )
    _mark_cheapest(rc, order)
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
def _mark_cheapest(rc: RunCosts, order: dict[str, int]) -> None:
    # Headline basis first, cheapest first within a basis; the cheapest of each basis is marked (a cost on
    # throughput under load and one on batch-1 TPS answer different questions, so they are not ranked together).
    rc.costs.sort(key=lambda c: (order.get(c.tps_basis, 99), c.usd_per_million))
    seen: set[str] = set()
    for c in rc.costs:
        if c.tps_basis not in seen:
            c.cheapest = True
            seen.add(c.tps_basis)


def provider_name(provider: str) -> str:
    return provider_label(provider)
