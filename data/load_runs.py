"""Load runs with telemetry: every level of a sweep is its own stored run (kind "load").

Used by `tokentop load` and the app's Load screen. Per level: a run row whose suite_json holds the
load settings (pattern, rate, burstiness, max concurrency, prompts, SLOs), every request with its
send offset from the level's start, the GPU (NVML) and server (/metrics or stat-logger) samples
taken during it, and a summary with vLLM-named aggregates, goodput and energy per output token.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from data.paths import assets_dir
from data.session import Session, wait_for
from engine.load import LevelOutcome, LiveLoad, LoadLevel, PromptSource
from engine.metrics import RequestMetrics
from engine.orchestrator import Job, JobStarted, RequestFinished, RunFinished, RunStarted
from engine.types import RequestRecord


@dataclass
class LoadSpec:
    levels: list[LoadLevel]
    prompts: PromptSource
    slo_ms: dict[str, float] = field(default_factory=dict)
    auto_stop: bool = False  # the automatic sweep: stop when throughput stops rising / TTFT SLO breaks
    pattern: str = "concurrency"  # concurrency | rate
    seed: int = 0


@dataclass
class LevelResult:
    run_id: str
    outcome: LevelOutcome
    summary: dict[str, Any]


@dataclass
class LoadOutcome:
    levels: list[LevelResult]
    stop_reason: str
    interrupted: bool
    gpu_note: str | None
    server_note: str | None


def level_settings(spec: LoadSpec, level: LoadLevel, index: int) -> dict[str, Any]:
    return {
        "kind": "load",
        "pattern": spec.pattern,
        "level_index": index,
        "levels": [lv.to_json() for lv in spec.levels],
        "auto_stop": spec.auto_stop,
        "load": level.to_json(),
        "label": level.label,
        "prompts": spec.prompts.to_json(),
        "slo_ms": dict(spec.slo_ms),
        "seed": spec.seed,
    }


def run_load(
    session: Session,
    spec: LoadSpec,
    *,
    on_level_start: Callable[[int, LoadLevel], Any] | None = None,
    on_level_done: Callable[[int, LevelResult], Any] | None = None,
    on_record: Callable[[int, RequestRecord, RequestMetrics], Any] | None = None,
    stop: threading.Event | None = None,
    live: LiveLoad | None = None,
    server_sampler: Any = None,
    note: Callable[[str], None] = lambda _m: None,
) -> LoadOutcome:
    """Blocking: run a load spec through the session's orchestrator and wait for it (the CLI).
    Ctrl-C stops it; every level that ran is stored (the stopped one as aborted)."""
    assert session.orchestrator is not None, "start_engine() first"
    orchestrator = session.orchestrator
    if not session.gpu.available and session.gpu.note:
        note(session.gpu.note)  # once per load run: no GPU / no NVML, carry on
    job_id: list[str] = []

    def sink(event: Any) -> None:
        if isinstance(event, JobStarted):
            if not job_id:
                job_id.append(event.job_id)
            return
        if not job_id or getattr(event, "job_id", getattr(getattr(event, "run", None), "job_id", None)) != job_id[0]:
            return
        if isinstance(event, RunStarted) and on_level_start and event.run.level is not None:
            on_level_start(event.run.level_index or 0, event.run.level)
        elif isinstance(event, RequestFinished) and on_record:
            on_record(event.index, event.record, event.metrics)
        elif isinstance(event, RunFinished) and on_level_done:
            on_level_done(event.run.level_index or 0, level_result(event))

    unsubscribe = orchestrator.subscribe(sink)
    try:
        job = start_load(session, spec, stop=stop, live=live, server_sampler=server_sampler)
        wait_for(job, orchestrator)
    finally:
        unsubscribe()
    return load_outcome(job, session)


def start_load(session: Session, spec: LoadSpec, *, stop: threading.Event | None = None,
               live: LiveLoad | None = None, server_sampler: Any = None) -> Job:
    """Start a load spec on the session's orchestrator (non-blocking: the app)."""
    assert session.orchestrator is not None, "start_engine() first"
    return session.orchestrator.start_load(
        spec.levels, spec.prompts, settings=lambda i, level: level_settings(spec, level, i),
        slo_ms=spec.slo_ms, auto_stop=spec.auto_stop, seed=spec.seed, server_sampler=server_sampler,
        stop_event=stop, live=live)


def level_result(event: RunFinished) -> LevelResult:
    return LevelResult(event.run.run_id, event.outcome, event.summary)


def load_outcome(job: Job, session: Session) -> LoadOutcome:
    result = job.result
    levels = [level_result(r) for r in result.runs] if result else []
    reason = (result.stop_reason or result.error or "") if result else "no run"
    gpu_note = session.gpu.note if not session.gpu.available else None
    return LoadOutcome(levels, reason, job.interrupted, gpu_note, result.server_note if result else None)


# -- roofline for the session's GPU and model ----------------------------------------------------


def gpu_specs_path():
    return assets_dir() / "gpu_specs.toml"


def roofline_for(environment: dict[str, Any], engine_description: dict[str, Any]) -> dict[str, Any] | None:
    """The batch-1 decode ceiling for the run's GPU(s) and model, or None (roofline_why_not says why)."""
    return _roofline(environment, engine_description)[0]


def roofline_why_not(environment: dict[str, Any], engine_description: dict[str, Any]) -> str | None:
    """A plain line on why there is no ceiling (not cached, no GPU, unknown GPU), or None when there is one."""
    return _roofline(environment, engine_description)[1]


def _roofline(environment: dict[str, Any],
              engine_description: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    from engine.roofline import decode_ceiling, load_gpu_specs, resolve_weights

    gpus = environment.get("gpus_used") or environment.get("gpus") or []
    key = gpus[0].get("key") if gpus else None
    if not gpus:
        return None, f"this run used no GPU ({environment.get('device') or 'CPU'})"
    if not key:
        return None, f"no bandwidth figure for {gpus[0].get('name') or 'this GPU'} in the GPU specs"
    spec = load_gpu_specs(gpu_specs_path()).get(key)
    if spec is None:
        return None, f"no bandwidth figure for {key} in the GPU specs"
    path = environment.get("model_path") or engine_description.get("model")
    weights, why = resolve_weights(path, dtype=engine_description.get("dtype"))
    if weights is None:
        return None, why
    args = engine_description.get("engine_args") or {}
    roof = decode_ceiling(spec, weights, tensor_parallel=int(args.get("tensor_parallel_size") or 1))
    out = roof.to_dict()
    out["weights_from"] = weights.how
    out["weights_notes"] = list(weights.notes)
    out["source"] = spec.source
    return out, None


def roofline_with_share(environment: dict[str, Any], engine_description: dict[str, Any],
                        summary: dict[str, Any]) -> dict[str, Any] | None:
    """The batch-1 ceiling plus each case's decode rate (1000/TPOT) as a share of it."""
    roof = roofline_for(environment, engine_description)
    if not roof:
        return None
    ceiling = roof.get("ceiling_tok_s") or 0
    roof["decode_pct_of_ceiling"] = {
        case: (100.0 * agg["mean_decode_rate"] / ceiling) if ceiling and agg.get("mean_decode_rate") else None
        for case, agg in (summary.get("cases") or {}).items()
    }
    return roof


def level_rows(results: Sequence[LevelResult]) -> list[dict[str, Any]]:
    """One flat dict per level, for tables, JSON and charts."""
    rows = []
    for r in results:
        res = r.summary.get("overall", {})
        rows.append({"run_id": r.run_id, "status": r.outcome.status, **res,
                     "gpu": r.summary.get("gpu"), "server": r.summary.get("server")})
    return rows
