"""Load runs with telemetry: every level of a sweep is its own stored run (kind "load").

Used by `tokentop load` and the app's Load screen. Per level: a run row whose suite_json holds the
load settings (pattern, rate, burstiness, max concurrency, prompts, SLOs), every request with its
send offset from the level's start, the GPU (NVML) and server (/metrics or stat-logger) samples
taken during it, and a summary with vLLM-named aggregates, goodput and energy per output token.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from data.paths import assets_dir
from data.session import Session
from data.telemetry import add_gpu_samples, add_server_samples
from engine.load import LevelOutcome, LiveLoad, LoadLevel, LoadRunner, PromptSource
from engine.metrics import RequestMetrics, json_safe
from engine.server_metrics import sampler_for_engine, summarise_server
from engine.environment import used_gpu_samples
from engine.telemetry import GpuSampler, summarise_gpu
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


class _SuiteLike:
    """What Session.new_recorder needs from a suite: a name and the settings to store as suite_json."""

    def __init__(self, name: str, data: dict[str, Any]):
        self.name = name
        self._data = data

    def to_json(self) -> dict[str, Any]:
        return self._data


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
    gpu_sampler: GpuSampler | None = None,
    server_sampler: Any = None,
    note: Callable[[str], None] = lambda _m: None,
) -> LoadOutcome:
    """Blocking: run from the main thread (CLI) or a worker thread (app)."""
    assert session.host is not None, "start_engine() first"
    own_gpu = gpu_sampler is None
    gpu = gpu_sampler or GpuSampler()
    if own_gpu:
        gpu.start()
    if gpu.note:
        note(gpu.note)  # once per load run: no GPU / no NVML, carry on
    own_server = server_sampler is None
    server, server_note = (server_sampler, None) if server_sampler is not None else sampler_for_engine(session.host.engine)
    if server is not None and own_server:
        server.start()
    results: list[LevelResult] = []
    runner = LoadRunner(session.host, spec.prompts, slo_ms=spec.slo_ms, seed=spec.seed, stop=stop, live=live)

    def level_runner(index: int, level: LoadLevel) -> LevelOutcome:
        recorder = session.new_recorder("load", _SuiteLike("load", level_settings(spec, level, index)))

        def _record(i: int, record: RequestRecord, metrics: RequestMetrics) -> None:
            recorder.record(i, record, metrics)  # stored before anyone is told
            if on_record:
                on_record(i, record, metrics)

        def _begin(start_ns: int) -> None:
            # Send offsets are from the level's start, not from the first request to finish.
            recorder.set_origin(start_ns)

        runner.on_record = _record
        _bracket(gpu, server)  # a sample just before the level: the baseline for its counters
        t_begin = time.perf_counter()
        try:
            outcome = runner.run_level(level, index, on_begin=_begin)
        except BaseException as exc:
            recorder.finish("failed", error=f"{type(exc).__name__}: {exc}"[:300])
            raise
        _bracket(gpu, server)  # and one just after it
        t0 = outcome.start_ns / 1e9 if outcome.start_ns else t_begin
        t1 = t0 + outcome.duration_s
        summary = json_safe(_summary(outcome, gpu, server, t0, t1, session.environment))
        run_id = recorder.run_id or ""
        gpu_rows = used_gpu_samples(gpu.snapshot(since=t_begin, until=time.perf_counter()), session.environment)
        server_rows = server.snapshot(since=t_begin - 0.1, until=time.perf_counter()) if server is not None else []
        add_gpu_samples(session.store, run_id, gpu_rows, t0)
        add_server_samples(session.store, run_id, server_rows, t0)
        recorder.finish(outcome.status, duration_s=outcome.duration_s, summary=summary, error=outcome.error)
        results.append(LevelResult(run_id, outcome, summary))
        if on_level_done:
            on_level_done(index, results[-1])
        return outcome

    try:
        _, reason = runner.run_levels(spec.levels, auto_stop=spec.auto_stop, on_level_start=on_level_start,
                                      level_runner=level_runner)
    finally:
        if own_gpu:
            gpu.stop()
        if server is not None and own_server:
            server.stop()
    srv_note = server_note or (server.note if server is not None else None)
    return LoadOutcome(results, reason, runner.interrupted, gpu.note, srv_note)


def _bracket(gpu: GpuSampler, server: Any) -> None:
    if gpu.available:
        gpu.sample_once()
    if server is not None:
        server.sample_once()


def _summary(outcome: LevelOutcome, gpu: GpuSampler, server: Any, t0: float, t1: float,
             environment: dict[str, Any] | None = None) -> dict[str, Any]:
    result = dict(outcome.result)
    summary: dict[str, Any] = {"cases": {result.get("label", "load"): result}, "overall": result, "load": result}
    samples = used_gpu_samples(gpu.snapshot(since=t0, until=t1), environment or {})
    gpu_summary = summarise_gpu(samples, int(result.get("total_output_tokens") or 0))
    summary["gpu"] = gpu_summary or {"note": gpu.note}
    if gpu_summary.get("j_per_output_token") is not None:
        result["j_per_output_token"] = gpu_summary["j_per_output_token"]
    if server is not None:
        # The last sample before the level and the first after it bracket the level's counters.
        samples = server.snapshot()
        before = [s for s in samples if s.t_s <= t0]
        during = [s for s in samples if t0 < s.t_s <= t1]
        after = [s for s in samples if s.t_s > t1]
        window = before[-1:] + during + after[-1:]  # the last one: taken after the level ended
        summary["server"] = summarise_server(window) if window else {"note": server.note}
    return summary


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
