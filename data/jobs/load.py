"""Load runs with telemetry: every level of a sweep is its own stored run (kind "load").

Used by `tokentop load` and the app's Load screen. Per level: a run row whose suite_json holds the
load settings (pattern, rate, burstiness, max concurrency, prompts, SLOs), every request with its
send offset from the level's start, the GPU (NVML) and server (/metrics or stat-logger) samples
taken during it, and a summary with vLLM-named aggregates, goodput and energy per output token.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from data.jobs.session import Session
from engine.load.driver import LevelOutcome, LiveLoad
from engine.load.patterns import LoadLevel, default_num_prompts, sweep_levels
from engine.load.results import LevelSummary
from engine.load.runner import engine_tokens
from engine.load.summary import parse_slo
from engine.measure.metrics import RequestMetrics
from engine.orchestrator import Job, RequestFinished, RunFinished, RunStarted
from engine.types import BadRequestError, RequestRecord
from engine.workloads import Workload, WorkloadOptions, make_workload


@dataclass
class LoadSpec:
    levels: list[LoadLevel]
    prompts: Workload  # where the requests come from (engine.workloads)
    slo_ms: dict[str, float] = field(default_factory=dict)
    auto_stop: bool = False  # the automatic sweep: stop when throughput stops rising / TTFT SLO breaks
    pattern: str = "concurrency"  # concurrency | rate | trace
    seed: int = 0
    num_warmups: int = 0  # per level, sent and not measured (vLLM's --num-warmups)
    client_processes: int = 1  # processes sharing every level's requests (engine.load.pool; openai engine only)

    @property
    def workload(self) -> Workload:
        return self.prompts


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
        "num_warmups": spec.num_warmups,
        "client_processes": spec.client_processes,
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

    def level_started(event: RunStarted) -> None:
        if on_level_start and event.run.level is not None:
            on_level_start(event.run.level_index or 0, event.run.level)

    def request_finished(event: RequestFinished) -> None:
        if on_record:
            on_record(event.index, event.record, event.metrics)

    def level_finished(event: RunFinished) -> None:
        if on_level_done:
            on_level_done(event.run.level_index or 0, level_result(event))

    prepare_workload(session, spec)  # a dataset this engine cannot run: BadRequestError (exit 2), no level
    for line in spec.prompts.notes:
        note(line)
    job = orchestrator.run_to_end(
        lambda: start_load(session, spec, stop=stop, live=live, server_sampler=server_sampler),
        {RunStarted: level_started, RequestFinished: request_finished, RunFinished: level_finished})
    return load_outcome(job, session)


def prepare_workload(session: Session, spec: LoadSpec) -> Workload:
    """Sample the workload with the engine's tokenizer, once (the orchestrator does it too when nobody
    did: the app's Load screen). BadRequestError when it cannot run with this engine."""
    assert session.host is not None, "start_engine() first"
    spec.prompts.prepare(engine_tokens(session.host.engine), max((lv.num_prompts for lv in spec.levels), default=None))
    return spec.prompts


def start_load(session: Session, spec: LoadSpec, *, stop: threading.Event | None = None,
               live: LiveLoad | None = None, server_sampler: Any = None) -> Job:
    """Start a load spec on the session's orchestrator (non-blocking: the app)."""
    assert session.orchestrator is not None, "start_engine() first"
    return session.orchestrator.start_load(
        spec.levels, spec.prompts, settings=lambda i, level: level_settings(spec, level, i),
        slo_ms=spec.slo_ms, auto_stop=spec.auto_stop, seed=spec.seed, server_sampler=server_sampler,
        stop_event=stop, live=live, num_warmups=spec.num_warmups, client_processes=spec.client_processes)


def level_result(event: RunFinished) -> LevelResult:
    return LevelResult(event.run.run_id, event.outcome, event.summary)


def load_outcome(job: Job, session: Session) -> LoadOutcome:
    result = job.result
    levels = [level_result(r) for r in result.runs] if result else []
    reason = (result.stop_reason or result.error or "") if result else "no run"
    gpu_note = session.gpu.note if not session.gpu.available else None
    return LoadOutcome(levels, reason, job.interrupted, gpu_note, result.server_note if result else None)


@dataclass(frozen=True)
class LevelRow:
    """One finished level as `tokentop load` and the Load screen show it: its stored run (run_id), the
    run's status, and its figures read once from the stored summary's "overall" (summary: an
    engine.load.results.LevelSummary; None when the level stored none, e.g. it ended before any figure,
    and then `unread` holds what "overall" had), with the stored summary's "gpu" and "server" beside."""

    run_id: str
    status: str
    summary: LevelSummary | None
    gpu: Mapping[str, Any] | None = None
    server: Mapping[str, Any] | None = None
    unread: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, run_id: str, status: str, stored: Mapping[str, Any]) -> "LevelRow":
        """A level's row from its stored run summary (orchestrator.run_summary's dict): the one place
        the stored dict is read."""
        overall = stored.get("overall") or {}
        try:
            summary: LevelSummary | None = LevelSummary.from_dict(overall)
        except KeyError:  # no figures stored (vLLM's keys missing)
            summary = None
        return cls(run_id, status, summary, stored.get("gpu"), stored.get("server"),
                   {} if summary is not None else dict(overall))

    @property
    def label(self) -> str | None:
        """The level's name (LevelSummary.label; without figures, the label stored beside, if any)."""
        return self.summary.label if self.summary is not None else self.unread.get("label")

    def beside(self, key: str) -> Any:
        """A figure stored beside the level's own (the server's prefix_cache_hit_rate,
        prefix_cache_external_hit_rate, J/token: LevelSummary.extra), or None."""
        return (self.summary.extra if self.summary is not None else self.unread).get(key)

    def to_dict(self, *, beside: bool = True) -> dict[str, Any]:
        """The JSON row (the command's --json "levels", tables keyed by stored names): run_id, status,
        the stored "overall" key for key, then "gpu" and "server" (beside=False: without those two)."""
        out = {"run_id": self.run_id, "status": self.status,
               **(self.summary.to_dict() if self.summary is not None else dict(self.unread))}
        if beside:
            out.update(gpu=self.gpu, server=self.server)
        return out


def level_rows(results: Sequence[LevelResult]) -> list[LevelRow]:
    """One typed row per level (LevelRow), for tables, JSON (LevelRow.to_dict) and charts."""
    return [LevelRow.of(r.run_id, r.outcome.status, r.summary) for r in results]


# -- settings -> spec (the `load` command and the app's Load form) -------------------------------


def _int_list(text: str, name: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise BadRequestError(f"{name} {text!r}: {part!r} is not a whole number (e.g. 1,2,4 or sweep)") from None
        if value < 1:
            raise BadRequestError(f"{name} levels must be 1 or more (got {value})")
        out.append(value)
    if not out:
        raise BadRequestError(f"{name} needs at least one level, e.g. 1,2,4")
    return out


def _rate_list(text: str) -> list[float]:
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        try:
            value = math.inf if part in ("inf", "infinity") else float(part)
        except ValueError:
            raise BadRequestError(f"--request-rate {text!r}: {part!r} is not a number of requests/s") from None
        if not value > 0:
            raise BadRequestError(f"--request-rate must be above 0 (got {part})")
        out.append(value)
    if not out:
        raise BadRequestError("--request-rate needs a rate, e.g. 2 or 1,2,4")
    return out


def load_spec(*, concurrency: str | None = None, request_rate: str | None = None, burstiness: float = 1.0,
              max_concurrency: int | None = None, max_level: int = 64, input_len: int | None = None,
              output_len: int | None = None, suite: str | None = None, num_prompts: int | None = None,
              slo: str | None = None, seed: int = 0, workload: WorkloadOptions | None = None,
              num_warmups: int = 0) -> LoadSpec:
    """A load run's levels and workload from the user's settings (the `load` command's options and the
    app's Load form alike); bad input raises BadRequestError with a one-line reason. `workload` holds the
    dataset options (vLLM's names); input_len/output_len/seed given here fill it where it leaves them unset.
    A suite file with a [dataset] table makes that dataset the workload."""
    from data.paths import resolve_suite

    slo_ms = parse_slo(slo)
    opts = workload or WorkloadOptions()
    if input_len is not None:
        opts.input_len = input_len
    if output_len is not None:
        opts.output_len = output_len
    if seed and not opts.seed:
        opts.seed = seed
    if num_warmups < 0:
        raise BadRequestError(f"--num-warmups must be 0 or more (got {num_warmups})")
    if request_rate is None and (burstiness != 1.0):
        raise BadRequestError("--burstiness needs --request-rate")
    chosen = resolve_suite(suite) if suite else None
    if chosen is not None and chosen.dataset is not None:
        if opts.dataset_name or opts.input_len is not None:
            raise BadRequestError(f"suite {chosen.name} names its dataset: drop --dataset-name/--input-len, "
                                  "or drop --suite")
        made = chosen.workload()
        if opts.output_len is not None:
            made.output_len = opts.output_len
    else:
        made = make_workload(opts, suite=chosen)
    if made.self_timed:
        if concurrency is not None or request_rate is not None:
            raise BadRequestError(f"a {made.kind} sets its own send times: drop --concurrency/--request-rate "
                                  "(--max-concurrency caps requests in flight, --timed-trace-sec-multiplier "
                                  "stretches time)")
        n = num_prompts or made.default_num_prompts() or 10
        made.check_num_prompts(n)  # a trace shorter than --num-prompts: exit 2 before the engine starts
        levels = [LoadLevel(max_concurrency=max_concurrency, num_prompts=n, self_timed=True)]
        return LoadSpec(levels=levels, prompts=made, slo_ms=slo_ms, pattern="trace", seed=opts.seed,
                        num_warmups=num_warmups)
    if request_rate is None and max_concurrency is not None:
        raise BadRequestError("--max-concurrency goes with --request-rate; for N users use --concurrency N")
    auto = False
    if request_rate is not None:
        pattern = "rate"
        levels = [LoadLevel(request_rate=r, burstiness=burstiness, max_concurrency=max_concurrency,
                            num_prompts=num_prompts or default_num_prompts(max_concurrency if math.isinf(r) else None))
                  for r in _rate_list(request_rate)]
    else:
        pattern = "concurrency"
        text = (concurrency or "1,2,4").strip().lower()
        if text in ("sweep", "auto"):
            counts, auto = sweep_levels(max_level), True
        else:
            counts = _int_list(text, "--concurrency")
        levels = [LoadLevel(max_concurrency=c, num_prompts=num_prompts or default_num_prompts(c)) for c in counts]
    return LoadSpec(levels=levels, prompts=made, slo_ms=slo_ms, auto_stop=auto, pattern=pattern, seed=opts.seed,
                    num_warmups=num_warmups)
