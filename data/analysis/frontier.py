"""Cost at an SLO, and the priced throughput–latency frontier, from stored load levels.

Every load level is its own stored run. For each level the figures are recomputed from its stored
requests exactly as `vllm bench serve` computes them: failed requests are left out of the latencies;
TPOT = (E2EL - TTFT) / (output tokens - 1) over requests with more than one token; percentiles are
numpy's linear ones; goodput = requests meeting every SLO (a 1-token request's TPOT counts as 0) /
the level's duration; output throughput = output tokens of successful requests / duration.

A level meets the SLOs when, at the chosen percentile (p99 by default), every named latency is within
its limit and no request failed (a request that never answered did not answer in time). Across the
load levels of one model on one GPU and one workload (every sweep, every machine), the answer is the
passing level with the highest output throughput, and its $/1M output tokens per provider: the cheapest
tokens that still answer in time — for that workload. Both use each level's whole-run figures
(data.analysis.run_figures.LOAD_FIGURES: ramp-up and drain included, as `vllm bench serve` reports
them), not its steady state, and say so ("figures" in --json, a line on screen). Levels of different
workloads (data.analysis.workload_labels) are never mixed: each workload gets its own answers, its own
cheapest, its own Pareto fronts.

The frontier: one point per level, throughput per GPU against per-user tok/s (the mean of output
tokens / E2EL over its requests: what one user sees) and against TTFT at the percentile, with $/1M at
each point; Pareto-optimal points (as `vllm bench sweep plot_pareto` finds them) are marked.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Iterable, Sequence

import numpy as np

from data.analysis.matrix import Price, RunFacts, load_facts, price_for, providers_for, sweeps
from data.analysis.run_figures import LOAD_FIGURES, LOAD_FIGURES_NOTE
from data.store.prices import PriceBoard, price_board
from engine.errors import TokentopError
from pricing.cost import usd_per_million_tokens
from pricing.gpus import gpu_label
from pricing.models import provider_label

SLO_KEYS = ("ttft", "tpot", "e2el")
DEFAULT_PERCENTILE = 99.0


class SloError(TokentopError, ValueError):
    """Bad --slo / --percentile input; the message is one line."""

    exit_code = 2  # bad input (engine.errors)


def parse_percentile(value: Any) -> float:
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise SloError(f"--percentile {value!r} must be a number between 0 and 100") from None
    if not 0 < p <= 100:
        raise SloError(f"--percentile {value!r} must be above 0 and at most 100")
    return p


# -- one level, from its stored requests ---------------------------------------------------------------
@dataclass
class LevelStats:
    run_id: str
    label: str
    model: str
    gpu_key: str
    gpus_used: int
    provider: str | None
    sweep: int  # index of the sweep the level belongs to (within its model x GPU group)
    concurrency: float | None
    completed: int
    failed: int
    duration_s: float
    output_throughput: float  # tok/s, all GPUs used
    per_gpu_throughput: float
    per_user_tps: float | None  # mean output tokens / E2EL: one user's speed
    ttft_ms: float  # at the percentile
    tpot_ms: float
    e2el_ms: float
    goodput: float | None = None  # requests meeting every SLO per second (vLLM's request_goodput)
    good_requests: int | None = None
    meets: bool | None = None
    why_not: str = ""
    workload: str = ""  # the label of the workload the level ran (data.analysis.workload_labels)
    workload_key: str = ""
    sweep_id: str = ""  # the run id of its sweep's first level: names the sweep (time-sortable, `show` takes it)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def level_stats(run: RunFacts, requests: Sequence[dict[str, Any]], percentile: float,
                slo_ms: dict[str, float] | None = None, sweep: int = 0, sweep_id: str = "") -> LevelStats:
    ok = [q for q in requests if q.get("success") and q.get("ttft_ms") is not None and q.get("e2el_ms") is not None]
    ttfts = [float(q["ttft_ms"]) for q in ok]
    e2els = [float(q["e2el_ms"]) for q in ok]
    tpots = []  # requests with > 1 token (vLLM's tpots)
    all_tpots = []  # 0 for a 1-token request (vLLM's all_tpots, for goodput)
    for q in ok:
        n = int(q.get("output_tokens") or 0)
        tpot = (float(q["e2el_ms"]) - float(q["ttft_ms"])) / (n - 1) if n > 1 else 0.0
        if n > 1:
            tpots.append(tpot)
        all_tpots.append(tpot)
    duration = float(run.duration_s or 0.0)
    tokens = sum(int(q.get("output_tokens") or 0) for q in ok)
    throughput = tokens / duration if duration > 0 else 0.0
    per_user = [int(q.get("output_tokens") or 0) / (float(q["e2el_ms"]) / 1000.0)
                for q in ok if float(q["e2el_ms"]) > 0]

    def pct(values: list[float]) -> float:
        return float(np.percentile(values or 0, percentile))  # `or 0` as vLLM: an empty list reads 0

    stats = LevelStats(
        run_id=run.run_id, label=run.level_label, model=run.model, gpu_key=run.gpu_key or "",
        gpus_used=run.gpus_used, provider=run.provider, sweep=sweep, concurrency=run.concurrency,
        completed=len(ok), failed=len(requests) - len(ok), duration_s=duration, output_throughput=throughput,
        per_gpu_throughput=throughput / run.gpus_used,
        per_user_tps=(sum(per_user) / len(per_user)) if per_user else None,
        ttft_ms=pct(ttfts), tpot_ms=pct(tpots), e2el_ms=pct(e2els),
        workload=run.workload_label, workload_key=run.workload_key, sweep_id=sweep_id or run.run_id,
    )
    if slo_ms:
        series = {"ttft": ttfts, "tpot": all_tpots, "e2el": e2els}
        columns = [(series[k], limit) for k, limit in slo_ms.items()]
        good = sum(1 for i in range(len(ok)) if all(limit >= values[i] for values, limit in columns))
        stats.good_requests = good
        stats.goodput = good / duration if duration > 0 else 0.0
        at = {"ttft": stats.ttft_ms, "tpot": stats.tpot_ms, "e2el": stats.e2el_ms}
        broken = [f"p{percentile:g} {k.upper()} {at[k]:.0f} ms > {limit:g} ms"
                  for k, limit in slo_ms.items() if at[k] > limit]
        if stats.failed:
            broken.insert(0, f"{stats.failed} request(s) failed")
        if not ok:
            broken.insert(0, "no request succeeded")
        stats.meets = not broken
        stats.why_not = "; ".join(broken)
    return stats


def _requests_by_run(store, run_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {r: [] for r in run_ids}
    if not run_ids:
        return out
    rows = store.query(
        f"SELECT run_id, request_index, success, output_tokens, ttft_ms, e2el_ms FROM requests "
        f"WHERE run_id IN ({', '.join('?' * len(run_ids))}) ORDER BY run_id, request_index", run_ids)
    for q in rows:
        out[q["run_id"]].append(q)
    return out


def load_levels(store, percentile: float = DEFAULT_PERCENTILE, slo_ms: dict[str, float] | None = None,
                *, run_ids: Iterable[str] | None = None, model: str | None = None) -> list[LevelStats]:
    """Every completed load level (or just those of `run_ids`'s sweeps), from its stored requests."""
    chains = sweeps(load_facts(store, kinds=["load"], model=model))
    if run_ids is not None:
        wanted = set(run_ids)
        chains = [c for c in chains if wanted & {r.run_id for r in c}]
    requests = _requests_by_run(store, [r.run_id for c in chains for r in c])
    out = []
    for i, chain in enumerate(chains):
        for run in chain:
            out.append(level_stats(run, requests[run.run_id], percentile, slo_ms, sweep=i, sweep_id=chain[0].run_id))
    return out


# -- cost at an SLO -------------------------------------------------------------------------------------
@dataclass
class ProviderCost:
    provider: str
    usd_per_hour: float
    price_source: str
    usd_per_million: float
    measured_here: bool
    cheapest: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["provider_name"] = provider_label(self.provider)
        return d


@dataclass
class SloAnswer:
    model: str
    workload: str  # the label of the workload every level of this answer ran
    gpu_key: str
    gpu: str
    gpus_used: int
    levels: list[LevelStats]
    best: LevelStats | None  # the passing level with the highest output throughput; None = none passes
    costs: list[ProviderCost] = field(default_factory=list)
    cheapest_overall: bool = False  # the model's cheapest tokens that still answer in time, on this workload
    workload_key: str = ""

    @property
    def message(self) -> str:
        if self.best is None:
            closest = min(self.levels, key=lambda s: s.ttft_ms) if self.levels else None
            hint = f" (closest: {closest.label}: {closest.why_not})" if closest else ""
            return f"no level meets the SLO{hint}"
        b = self.best
        text = f"{b.output_throughput:.1f} tok/s at {b.label} ({b.run_id})"
        return text if self.costs or self.gpu_key else text + "; no provider rents this device"

    def sweep_tags(self) -> dict[str, str]:
        """{sweep_id: "#1", ...}: the sweeps this answer's levels came from, numbered in the order the
        levels are listed (load_levels: each machine's sweeps in the order they started), when there are
        several (two sweeps of one workload both have a `concurrency 1`); {} for one sweep. The CLI and
        Compare's SLO tab put the tag beside each level."""
        ids = list(dict.fromkeys(s.sweep_id for s in self.levels))
        return {sid: f"#{i}" for i, sid in enumerate(ids, 1)} if len(ids) > 1 else {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "workload": self.workload, "workload_key": self.workload_key,
            "gpu_key": self.gpu_key, "gpu": self.gpu, "gpus_used": self.gpus_used,
            "meets_slo": self.best is not None, "message": self.message,
            "best": self.best.to_dict() if self.best else None,
            "costs": [c.to_dict() for c in self.costs], "cheapest_overall": self.cheapest_overall,
            "levels": [s.to_dict() for s in self.levels],
            "sweeps": self.sweep_tags(),
        }


@dataclass
class SloResult:
    slo_ms: dict[str, float]
    percentile: float
    answers: list[SloAnswer]
    now: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(), "slo_ms": self.slo_ms, "percentile": self.percentile,
            "rule": (f"a level meets the SLO when its p{self.percentile:g} of each named latency (from its stored "
                     "requests, vLLM's definitions) is within the limit and no request failed; the answer is the "
                     "passing level with the highest output throughput"),
            "formula": "usd_per_million = usd_per_hour / (output_throughput * 3600) * 1e6",
            "figures": LOAD_FIGURES, "figures_note": LOAD_FIGURES_NOTE,
            "answers": [a.to_dict() for a in self.answers],
        }


def _costs_at(board: PriceBoard, gpu_key: str, gpus_used: int, runs: list[RunFacts], throughput: float,
              measured_on: set[str | None]) -> list[ProviderCost]:
    costs = []
    for provider in providers_for(board, gpu_key, runs):
        price: Price | None = price_for(board, provider, gpu_key, gpus_used, runs)
        if price is None or throughput <= 0:
            continue
        costs.append(ProviderCost(provider, price.usd_per_hour, price.source,
                                  usd_per_million_tokens(price.usd_per_hour, throughput), provider in measured_on))
    costs.sort(key=lambda c: c.usd_per_million)
    if costs:
        costs[0].cheapest = True
    return costs


def cost_at_slo(store, slo_ms: dict[str, float], percentile: float = DEFAULT_PERCENTILE, *,
                board: PriceBoard | None = None, now: datetime | None = None, model: str | None = None) -> SloResult:
    if not slo_ms:
        raise SloError("--slo needs at least one limit, e.g. ttft=500,tpot=50")
    unknown = [k for k in slo_ms if k not in SLO_KEYS]
    if unknown:
        raise SloError(f"--slo {unknown[0]!r} is not one of ttft, tpot, e2el")
    board = board or price_board(store, now=now)
    facts = {r.run_id: r for r in load_facts(store, kinds=["load"], model=model)}
    levels = load_levels(store, percentile, slo_ms, model=model)
    groups: dict[tuple[str, str, str, str, int], list[LevelStats]] = defaultdict(list)
    for s in levels:
        groups[(s.model, s.workload, s.workload_key, s.gpu_key, s.gpus_used)].append(s)
    answers = []
    for (model_name, workload, wkey, gpu_key, used), stats in sorted(groups.items()):
        passing = [s for s in stats if s.meets]
        best = max(passing, key=lambda s: s.output_throughput) if passing else None
        answer = SloAnswer(model_name, workload, gpu_key, gpu_label(gpu_key) if gpu_key else "CPU", used, stats, best,
                           workload_key=wkey)
        if best is not None and gpu_key:
            runs = [facts[s.run_id] for s in stats]
            answer.costs = _costs_at(board, gpu_key, used, runs, best.output_throughput, {best.provider})
        answers.append(answer)
    for model_name, wkey in dict.fromkeys((a.model, a.workload_key) for a in answers):
        priced = [a for a in answers if a.model == model_name and a.workload_key == wkey and a.costs]
        if priced:
            min(priced, key=lambda a: a.costs[0].usd_per_million).cheapest_overall = True
    return SloResult(dict(slo_ms), percentile, answers, board.now)


# -- the frontier -----------------------------------------------------------------------------------------
def pareto_front(points: Sequence[tuple[float, float]], *, x_higher_is_better: bool = True,
                 epsilon: float = 1e-9) -> list[bool]:
    """Which points are Pareto-optimal when a higher y is better and x is better high (or low): no other
    point is at least as good on both axes and better on one. (`vllm bench sweep plot_pareto` also keeps a
    point that only ties the front's best y at a worse x; a point equal to another on both axes is kept.)"""
    sign = 1.0 if x_higher_is_better else -1.0
    pts = [(sign * x, y) for x, y in points]

    def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return (a[0] >= b[0] - epsilon and a[1] >= b[1] - epsilon
                and (a[0] > b[0] + epsilon or a[1] > b[1] + epsilon))

    return [not any(dominates(other, p) for other in pts) for p in pts]


@dataclass
class FrontierPoint:
    level: LevelStats
    costs: dict[str, float]  # provider -> $/1M output tokens at this point's throughput
    cheapest_provider: str | None
    cheapest_usd_per_million: float | None
    pareto_user: bool = False  # on the throughput/GPU vs per-user tok/s front
    pareto_ttft: bool = False  # on the throughput/GPU vs TTFT front

    @property
    def curve(self) -> str:
        lv = self.level
        where = f" {provider_label(lv.provider)}" if lv.provider else ""
        count = f"x{lv.gpus_used}" if lv.gpus_used > 1 else ""
        return f"{lv.gpu_key or 'CPU'}{count}{where} #{lv.sweep + 1}"

    def to_dict(self) -> dict[str, Any]:
        d = self.level.to_dict()
        d.update(curve=self.curve, costs=self.costs, cheapest_provider=self.cheapest_provider,
                 cheapest_usd_per_million=self.cheapest_usd_per_million, pareto_user=self.pareto_user,
                 pareto_ttft=self.pareto_ttft)
        return d


@dataclass
class Frontier:
    points: list[FrontierPoint]
    percentile: float
    now: datetime
    notes: list[str] = field(default_factory=list)

    def workloads(self) -> list[str]:
        """The workloads of the points, in order: each has its own fronts."""
        return list(dict.fromkeys(p.level.workload for p in self.points))

    def curves(self) -> dict[str, list[FrontierPoint]]:
        out: dict[str, list[FrontierPoint]] = defaultdict(list)
        for p in self.points:
            out[p.curve].append(p)
        return dict(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(), "percentile": self.percentile,
            "axes": {"x_user": "per-user tok/s (mean output tokens / E2EL)",
                     "x_ttft": f"p{self.percentile:g} TTFT ms", "y": "output tok/s per GPU"},
            "formula": "usd_per_million = usd_per_hour / (output_throughput * 3600) * 1e6",
            "figures": LOAD_FIGURES, "figures_note": LOAD_FIGURES_NOTE,
            "points": [p.to_dict() for p in self.points], "notes": self.notes,
        }


def build_frontier(store, percentile: float = DEFAULT_PERCENTILE, *, board: PriceBoard | None = None,
                   now: datetime | None = None, run_ids: Iterable[str] | None = None,
                   model: str | None = None) -> Frontier:
    """Points of every load level on a GPU (or of the sweeps of `run_ids`), priced, Pareto marked per model and
    workload (a level never competes with one that ran other requests)."""
    board = board or price_board(store, now=now)
    run_ids = list(run_ids) if run_ids is not None else None
    facts = {r.run_id: r for r in load_facts(store, kinds=["load"], model=model)}
    levels = load_levels(store, percentile, run_ids=run_ids, model=model)
    frontier = Frontier([], percentile, board.now)
    if not levels:
        frontier.notes.append("No load levels stored yet: run `tokentop load` (or the Load screen) first.")
    by_group: dict[tuple[str, int], list[RunFacts]] = defaultdict(list)
    for s in levels:
        by_group[(s.gpu_key, s.gpus_used)].append(facts[s.run_id])
    for s in levels:
        costs: dict[str, float] = {}
        if s.gpu_key and s.output_throughput > 0:
            runs = by_group[(s.gpu_key, s.gpus_used)]
            for provider in providers_for(board, s.gpu_key, runs):
                price = price_for(board, provider, s.gpu_key, s.gpus_used, runs)
                if price is not None:
                    costs[provider] = usd_per_million_tokens(price.usd_per_hour, s.output_throughput)
        cheapest = min(costs, key=costs.get) if costs else None
        frontier.points.append(FrontierPoint(s, costs, cheapest, costs.get(cheapest) if cheapest else None))
    for model_name, wkey in dict.fromkeys((p.level.model, p.level.workload_key) for p in frontier.points):
        pts = [p for p in frontier.points
               if p.level.model == model_name and p.level.workload_key == wkey and p.level.completed]
        users = [p for p in pts if p.level.per_user_tps is not None]
        for p, on in zip(users, pareto_front([(p.level.per_user_tps, p.level.per_gpu_throughput) for p in users])):
            p.pareto_user = on
        for p, on in zip(pts, pareto_front([(p.level.ttft_ms, p.level.per_gpu_throughput) for p in pts],
                                           x_higher_is_better=False)):
            p.pareto_ttft = on
    return frontier
