"""The article's GPU x provider table, filled from the user's own runs on every machine in the database.

One row per model x workload x GPU (x GPUs used) x provider: runs on different workloads (data.analysis.workload_labels:
a ShareGPT file, random 128→128, the article's suite...) are never averaged together, and each row names
its workload. Runs imported or pulled from other boxes are just rows
of the same `runs` table, so a fleet's runs land side by side. Every provider that rents a GPU you
measured gets a row; a row whose figures come from runs measured on that very provider (runs.provider)
is marked `measured_here` and uses only those runs; the other providers' rows use every run of that GPU.

Speeds (mean, sample standard deviation and run count over runs):
  * batch-1 TPS: per run, the mean over successful requests of output tokens / E2EL, from suite runs
    and from load levels that ran one request at a time (concurrency 1);
  * throughput under load: per load sweep (the levels one `tokentop load` or one Load-screen start
    stored), its highest level's output throughput (sum of output tokens / the level's duration).
Per-request TPS under load is per-user speed and never a cost basis.

$/h for the GPUs a run used (runs.gpus_used, else runs.gpu_count): the price paid
(runs.price_per_hour_usd, the instance's price, shared out over the instance's GPUs) where known, else
the provider's live (or catalog) price, else the bundled dated snapshot; each row says which.
cost per 1M output tokens = $/h / (tokens/s x 3600) x 1e6 (pricing.cost), per basis, cheapest marked.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Iterable

from data.analysis.compare import gpus_for_cost
from data.analysis.run_figures import stored_json
from data.analysis.workload_labels import run_workload, workload_labels
from data.store.prices import PriceBoard, article_reference, price_board
from pricing.cost import TpsBasis, share_of_instance, usd_per_million_tokens
from pricing.gpus import gpu_label
from pricing.models import ON_DEMAND, PROVIDERS, provider_label

PAID = "paid"  # the price the user gave for the instance the run measured on
COST_BASES = (TpsBasis.BATCH1, TpsBasis.THROUGHPUT)  # never PER_REQUEST: that is per-user speed


# -- what a stored run says about itself ---------------------------------------------------------------
@dataclass
class RunFacts:
    """One completed run, reduced to what the matrix, the SLO search and the frontier need."""

    run_id: str
    kind: str
    model: str
    gpu_key: str | None
    gpus_used: int  # GPUs the engine was given (TP x PP, CUDA_VISIBLE_DEVICES): what is paid for
    instance_gpus: int  # GPUs on the box: the price paid is for all of them
    provider: str | None
    price_paid: float | None  # $/h of the whole instance, as the user gave it
    hostname: str | None
    pid: int | None
    started_at: Any
    duration_s: float | None
    settings: dict[str, Any]  # suite_json: a load level's settings (levels, level_index, load ...)
    summary: dict[str, Any]
    completed: int = 0
    failed: int = 0
    output_tokens: int = 0
    mean_tps: float | None = None  # output tokens / E2EL, mean over successful requests
    mean_ttft_ms: float | None = None
    workload_key: str = ""  # data.analysis.workload_labels.run_workload: runs with different keys are never averaged
    workload_label: str = ""

    @property
    def paid_for_used(self) -> float | None:
        """The price paid for the GPUs this run used: the instance's price x used / instance GPUs."""
        if self.price_paid is None:
            return None
        return share_of_instance(self.price_paid, self.gpus_used, self.instance_gpus)

    @property
    def load(self) -> dict[str, Any]:
        return self.settings.get("load") or {}

    @property
    def single_stream(self) -> bool:
        """A load level that ran one request at a time: its per-request TPS is batch-1 TPS."""
        load = self.load or (self.summary.get("overall") or {})
        return load.get("max_concurrency") == 1 and str(load.get("request_rate", "inf")) == "inf"

    @property
    def output_throughput(self) -> float | None:
        """Output tokens/s of a load level, from its stored requests and duration (as vLLM computes it)."""
        if self.duration_s and self.duration_s > 0 and self.output_tokens:
            return self.output_tokens / self.duration_s
        overall = self.summary.get("overall") or {}
        value = overall.get("output_throughput")
        return float(value) if isinstance(value, (int, float)) and value > 0 else None

    @property
    def concurrency(self) -> float | None:
        """Users in flight: max concurrency of a level, else its request rate (vLLM's plot_pareto)."""
        load = self.load or (self.summary.get("overall") or {})
        if load.get("max_concurrency"):
            return float(load["max_concurrency"])
        rate = load.get("request_rate")
        return float(rate) if isinstance(rate, (int, float)) and rate > 0 else None

    @property
    def level_label(self) -> str:
        return str(self.settings.get("label") or (self.summary.get("overall") or {}).get("label") or self.run_id)


def _gpus_used(run: dict[str, Any]) -> tuple[int, int]:
    """(GPUs the run used, GPUs of its instance): data.analysis.compare's rule, so per-run costs and the matrix
    agree."""
    used, instance, _how = gpus_for_cost(run)
    return max(1, used), max(used, instance or used)


def load_facts(store, *, kinds: Iterable[str] | None = None, model: str | None = None) -> list[RunFacts]:
    """Every completed run (optionally of some kinds / one model) with its per-request aggregates."""
    sql = """
        SELECT r.run_id, r.kind, r.model, r.gpu_key, r.gpu_count, r.gpus_used, r.environment, r.engine_args, r.provider,
               r.price_per_hour_usd, r.hostname, r.pid, r.started_at, r.duration_s, r.suite_json, r.summary,
               r.suite, r.workload_key, r.workload_label,
               count(q.request_index) FILTER (WHERE q.success) AS completed,
               count(q.request_index) FILTER (WHERE NOT q.success) AS failed,
               coalesce(sum(q.output_tokens) FILTER (WHERE q.success), 0) AS output_tokens,
               avg(q.tps) FILTER (WHERE q.success) AS mean_tps,
               avg(q.ttft_ms) FILTER (WHERE q.success) AS mean_ttft_ms
        FROM runs r LEFT JOIN requests q USING (run_id)
        WHERE r.status = 'completed'"""
    params: list[Any] = []
    kinds = list(kinds or [])
    if kinds:
        sql += f" AND r.kind IN ({', '.join('?' * len(kinds))})"
        params += kinds
    if model:
        sql += " AND r.model = ?"
        params.append(model)
    sql += " GROUP BY ALL ORDER BY r.started_at, r.run_id"
    out = []
    labels = workload_labels(store)  # one label per workload, whichever runs this view reads
    for row in store.query(sql, params):
        used, box = _gpus_used(row)
        wkey, wlabel = run_workload(row)
        wlabel = labels.get(wkey, wlabel)
        out.append(RunFacts(
            run_id=row["run_id"], kind=row["kind"], model=row.get("model") or "?", gpu_key=row.get("gpu_key"),
            gpus_used=used, instance_gpus=box, provider=row.get("provider") or None,
            price_paid=row.get("price_per_hour_usd"), hostname=row.get("hostname"), pid=row.get("pid"),
            started_at=row.get("started_at"), duration_s=row.get("duration_s"),
            settings=stored_json(row.get("suite_json")) or {}, summary=stored_json(row.get("summary")) or {},
            completed=int(row.get("completed") or 0), failed=int(row.get("failed") or 0),
            output_tokens=int(row.get("output_tokens") or 0), mean_tps=row.get("mean_tps"),
            mean_ttft_ms=row.get("mean_ttft_ms"), workload_key=wkey, workload_label=wlabel,
        ))
    return out


def sweeps(load_runs: Iterable[RunFacts]) -> list[list[RunFacts]]:
    """Load levels grouped into the sweeps that stored them: the same process, model and level plan, with
    level_index rising; a level_index that does not rise starts a new sweep (the app can run several)."""
    groups: dict[tuple, list[list[RunFacts]]] = defaultdict(list)
    for run in sorted(load_runs, key=lambda r: (str(r.started_at), r.run_id)):
        key = (run.hostname, run.pid, run.model, run.gpu_key, run.workload_key,
               json.dumps(run.settings.get("levels"), sort_keys=True))
        chains = groups[key]
        index = run.settings.get("level_index")
        previous = chains[-1][-1].settings.get("level_index") if chains else None
        if isinstance(index, int) and isinstance(previous, int) and index > previous:
            chains[-1].append(run)
        else:
            chains.append([run])
    return [chain for chains in groups.values() for chain in chains]


# -- prices -----------------------------------------------------------------------------------------
@dataclass
class Price:
    usd_per_hour: float  # for the GPUs used
    source: str  # paid | live | catalog | snapshot
    detail: str = ""
    pricing_type: str = ON_DEMAND


def board_price(board: PriceBoard, provider: str, gpu_key: str, gpus_used: int) -> Price | None:
    """The provider's cheapest on-demand price for this GPU (spot only when it lists no on-demand one),
    for the GPUs used."""
    rows = [r for r in board.for_gpu(gpu_key) if r.provider == provider]
    if not rows:
        return None
    on_demand = [r for r in rows if r.pricing_type == ON_DEMAND]
    row = min(on_demand or rows, key=lambda r: r.usd_per_gpu_hour)
    price = row.usd_per_hour if row.gpu_count == gpus_used else row.usd_per_gpu_hour * gpus_used
    detail = " ".join(x for x in (f"{row.stat} of {row.offers}" if row.stat else None, row.note,
                                  row.instance_type if row.provider in ("lambda", "vultr") else None) if x)
    return Price(price, row.source, detail, row.pricing_type)


def paid_price(runs: Iterable[RunFacts], provider: str) -> Price | None:
    """The mean price paid (for the GPUs used) over this provider's runs that recorded one."""
    paid = [r.paid_for_used for r in runs if r.provider == provider and r.paid_for_used is not None]
    if not paid:
        return None
    return Price(sum(paid) / len(paid), PAID, f"price paid, {len(paid)} run(s)")


def providers_for(board: PriceBoard, gpu_key: str, runs: Iterable[RunFacts]) -> list[str]:
    """Every provider that rents this GPU, then any other provider a run was measured on."""
    listed = {r.provider for r in board.for_gpu(gpu_key)}
    names = [p for p in PROVIDERS if p in listed]
    names += sorted({r.provider for r in runs if r.provider and r.provider not in names})
    return names


def price_for(board: PriceBoard, provider: str, gpu_key: str, gpus_used: int, runs: Iterable[RunFacts]) -> Price | None:
    """Paid where known, else live/catalog, else snapshot."""
    return paid_price(runs, provider) or board_price(board, provider, gpu_key, gpus_used)


# -- the table ----------------------------------------------------------------------------------------
@dataclass
class Stat:
    mean: float
    std: float  # sample standard deviation over runs (0 for one run)
    n: int  # runs (sweeps for throughput under load)

    @classmethod
    def of(cls, values: list[float]) -> "Stat | None":
        values = [v for v in values if v is not None and v > 0]
        if not values:
            return None
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
        return cls(mean, math.sqrt(var), len(values))


@dataclass
class MatrixRow:
    model: str
    workload: str  # the label of the workload every figure of the row was measured on
    gpu_key: str
    gpu: str
    gpus_used: int
    provider: str
    measured_here: bool  # these figures come from runs measured on this provider
    run_ids: list[str]
    hosts: list[str]  # the machines these runs were measured on
    batch1_tps: Stat | None
    load_throughput: Stat | None
    ttft_ms: Stat | None
    price: Price | None
    costs: dict[str, float] = field(default_factory=dict)  # basis label -> $/1M output tokens
    cheapest: list[str] = field(default_factory=list)  # bases on which this row is the cheapest of its model x workload
    reference: dict[str, Any] | None = None  # the article's 2024 row for this GPU and provider
    workload_key: str = ""

    @property
    def provider_name(self) -> str:
        return provider_label(self.provider)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["provider_name"] = self.provider_name
        d["usd_per_hour"] = self.price.usd_per_hour if self.price else None
        d["price_source"] = self.price.source if self.price else None
        return d


@dataclass
class Matrix:
    rows: list[MatrixRow]
    now: datetime
    notes: list[str] = field(default_factory=list)
    reference: dict[str, Any] = field(default_factory=dict)

    def models(self) -> list[str]:
        return list(dict.fromkeys(r.model for r in self.rows))

    def groups(self) -> list[tuple[str, str]]:
        """(model, workload label) in table order: each is one table, never mixed with another."""
        return list(dict.fromkeys((r.model, r.workload) for r in self.rows))

    def to_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "formula": "usd_per_million = usd_per_hour / (tokens_per_s * 3600) * 1e6",
            "bases": [b.label for b in COST_BASES],
            "price_sources": [PAID, "live", "catalog", "snapshot"],
            "rows": [r.to_dict() for r in self.rows],
            "notes": self.notes,
            "reference": self.reference,
        }


def _reference_index() -> tuple[dict[tuple[str, str], dict[str, Any]], dict[str, Any]]:
    ref = article_reference()
    index = {}
    for r in ref["rows"]:
        index[(r["gpu_key"], r["provider"])] = {
            "gpu": r["gpu"], "tps": r["tps"], "usd_per_hour": r["usd_per_hour"],
            "usd_per_million": usd_per_million_tokens(r["usd_per_hour"], r["tps"]),
        }
    meta = {k: ref.get(k) for k in ("label", "model", "tps_basis", "workload")}
    return index, meta


def _batch1_runs(runs: list[RunFacts]) -> list[RunFacts]:
    """Suite runs and single-stream load levels. Interactive prompts are left out: ad-hoc lengths and
    one request each would swamp the suite's measured figure."""
    return [r for r in runs if r.mean_tps and (r.kind == "suite" or (r.kind == "load" and r.single_stream))]


def _sweep_peaks(runs: list[RunFacts]) -> list[float]:
    peaks = []
    for chain in sweeps(r for r in runs if r.kind == "load"):
        found = [r.output_throughput for r in chain if r.output_throughput]
        if found:
            peaks.append(max(found))
    return peaks


def build_matrix(store, *, board: PriceBoard | None = None, now: datetime | None = None,
                 model: str | None = None) -> Matrix:
    board = board or price_board(store, now=now)
    ref_index, ref_meta = _reference_index()
    facts = load_facts(store, model=model)
    gpu_runs = [r for r in facts if r.gpu_key]
    matrix = Matrix(rows=[], now=board.now, reference=ref_meta)
    cpu = len(facts) - len(gpu_runs)
    if cpu:
        matrix.notes.append(f"{cpu} run(s) on a device no provider rents (CPU or an unknown GPU) are left out.")
    if not gpu_runs:
        matrix.notes.append("No GPU runs in this database yet: the article's 2024 figures are shown for reference.")
    groups: dict[tuple[str, str, str, str, int], list[RunFacts]] = defaultdict(list)
    for r in gpu_runs:
        if r.kind == "interactive":
            continue  # ad-hoc prompts are no basis (see _batch1_runs): not a workload of the table
        groups[(r.model, r.workload_label, r.workload_key, r.gpu_key, r.gpus_used)].append(r)
    for (model_name, workload, wkey, gpu_key, used), runs in sorted(groups.items()):
        for provider in providers_for(board, gpu_key, runs):
            own = [r for r in runs if r.provider == provider]
            basis_runs = own or runs
            b1 = _batch1_runs(basis_runs)
            row = MatrixRow(
                model=model_name, workload=workload, workload_key=wkey, gpu_key=gpu_key, gpu=gpu_label(gpu_key),
                gpus_used=used, provider=provider,
                measured_here=bool(own), run_ids=[r.run_id for r in basis_runs],
                hosts=sorted({r.hostname or "?" for r in basis_runs}),
                batch1_tps=Stat.of([r.mean_tps for r in b1]),
                load_throughput=Stat.of(_sweep_peaks(basis_runs)),
                ttft_ms=Stat.of([r.mean_ttft_ms for r in b1]),
                price=price_for(board, provider, gpu_key, used, own),
                reference=ref_index.get((gpu_key, provider)) if used == 1 else None,
            )
            if row.price is not None:
                for basis, stat in ((TpsBasis.BATCH1, row.batch1_tps), (TpsBasis.THROUGHPUT, row.load_throughput)):
                    if stat is not None:
                        row.costs[basis.label] = usd_per_million_tokens(row.price.usd_per_hour, stat.mean)
            matrix.rows.append(row)
    for model_name, wkey in dict.fromkeys((r.model, r.workload_key) for r in matrix.rows):
        rows = [r for r in matrix.rows if r.model == model_name and r.workload_key == wkey]
        for basis in COST_BASES:
            priced = [r for r in rows if basis.label in r.costs]
            if priced:
                min(priced, key=lambda r: r.costs[basis.label]).cheapest.append(basis.label)
    return matrix


def reference_matrix() -> list[dict[str, Any]]:
    """The article's own table (for a database with no GPU runs)."""
    index, _ = _reference_index()
    return [{"gpu_key": k[0], "provider": k[1], **v} for k, v in index.items()]
