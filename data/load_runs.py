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
from typing import Any, Callable, Sequence

from data.paths import assets_dir
from data.session import Session
from engine.load.driver import LevelOutcome, LiveLoad
from engine.load.patterns import LoadLevel, default_num_prompts, sweep_levels
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
    from engine.telemetry.roofline import decode_ceiling, load_gpu_specs, resolve_weights

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


def stored_run_roofline(run: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The roofline (with each case's share) of a stored run, from what the run row keeps, or None
    and why not."""
    env = run.get("environment") or {}
    desc = {"model": env.get("model_path") or run.get("model"), "dtype": run.get("dtype"),
            "engine_args": run.get("engine_args") or {}}
    try:
        roof = roofline_with_share(env, desc, run.get("summary") or {})
        return roof, None if roof else roofline_why_not(env, desc)
    except Exception as exc:  # a stored run from another machine may name a model that is not here
        return None, f"{type(exc).__name__}: {exc}"


def roofline_text(roof: dict[str, Any] | None, device: str | None = None, why: str | None = None) -> list[str]:
    """The roofline in words, the same for `bench`, `load`, `show` and the run-detail screen: the
    batch-1 decode ceiling, then each case's (or level's) decode rate as a share of it."""
    if not roof:
        why = why or f"no bandwidth figure or weights for {device or 'this device'}"
        return [f"no batch-1 ceiling: {why}"]
    lines = [f"batch-1 decode ceiling on {roof['gpu']} = {roof['ceiling_tok_s']:.0f} tok/s "
             f"({roof['bandwidth_tb_s']:.2f} TB/s / {roof['bytes_per_token_gb']:.2f} GB read per token"
             + (f", weights from {roof['weights_from']})" if roof.get("weights_from") else ")")]
    shares = ", ".join(f"{case} {pct:.0f} %" for case, pct in (roof.get("decode_pct_of_ceiling") or {}).items()
                       if pct is not None)
    if shares:
        lines.append(f"decode rate (1000/TPOT) as a share of it: {shares}")
    return lines


def level_rows(results: Sequence[LevelResult]) -> list[dict[str, Any]]:
    """One flat dict per level, for tables, JSON and charts."""
    rows = []
    for r in results:
        res = r.summary.get("overall", {})
        rows.append({"run_id": r.run_id, "status": r.outcome.status, **res,
                     "gpu": r.summary.get("gpu"), "server": r.summary.get("server")})
    return rows


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


# -- the app's Load form -> workload options ------------------------------------------------------------
FORM_WORKLOADS = ("random", "prefix_repetition", "sharegpt", "custom", "timed_trace", "mooncake_trace", "suite")


def _form_number(text: str, label: str, cast=int, minimum: float = 0):
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = cast(text)
    except ValueError:
        raise BadRequestError(f"{label}: {text!r} is not a {'whole number' if cast is int else 'number'}") from None
    if value < minimum or (isinstance(value, float) and math.isinf(value)):
        raise BadRequestError(f"{label} must be {minimum:g} or more (got {text})")
    return value


def parse_think_time(text: str) -> tuple[float | None, str | None]:
    """The form's think time: '500' (fixed, ms) or 'exp 500' / 'exp:500' (exponential with that mean)."""
    text = (text or "").strip().lower()
    if not text:
        return None, None
    dist = "fixed"
    for mark in ("exp:", "exp ", "exp"):
        if text.startswith(mark):
            dist, text = "exponential", text[len(mark):].strip()
            break
    return _form_number(text, "think ms", float), dist


def form_workload(kind: str, *, path: str = "", range_ratio: str = "", prefix_len: str = "", prefix: str = "",
                  suffix: str = "", prefixes: str = "", turns: str = "", think: str = "", multi_turn: bool = False,
                  time_scale: str = "", block: str = "", seed: int = 0,
                  skip_chat_template: bool = False) -> tuple[WorkloadOptions, str | None]:
    """The Load form's workload fields, as typed, to (WorkloadOptions, suite name or file) — the `load`
    command's options by another road; load_spec checks them the same way. Bad input: BadRequestError
    naming the field."""
    if kind not in FORM_WORKLOADS:
        raise BadRequestError(f"workload {kind!r} is not one of {', '.join(FORM_WORKLOADS)}")
    path = (path or "").strip()
    if kind == "suite":
        return WorkloadOptions(seed=seed), path or "seed"
    opts = WorkloadOptions(dataset_name=kind, seed=seed)
    if kind in ("sharegpt", "custom", "timed_trace", "mooncake_trace"):
        if not path:
            raise BadRequestError(f"the {kind} workload reads a file: type its path in the file field")
        opts.dataset_path = path
    if kind == "custom":
        opts.skip_chat_template = bool(skip_chat_template)  # vLLM's --skip-chat-template
    if kind == "random":
        if range_ratio.strip():
            opts.random_range_ratio = range_ratio.strip()
        opts.random_prefix_len = _form_number(prefix_len, "prefix len")
        n = _form_number(turns, "turns", minimum=1)
        if n is not None and n > 1:
            opts.multi_turn, opts.turns = True, n
    elif kind == "prefix_repetition":
        opts.prefix_repetition_prefix_len = _form_number(prefix, "prefix")
        opts.prefix_repetition_suffix_len = _form_number(suffix, "suffix")
        opts.prefix_repetition_num_prefixes = _form_number(prefixes, "prefixes", minimum=1)
    elif kind == "sharegpt":
        opts.multi_turn = bool(multi_turn)
        if multi_turn:
            opts.max_turns = _form_number(turns, "max turns", minimum=1)
    elif kind in ("timed_trace", "mooncake_trace"):
        opts.timed_trace_sec_multiplier = _form_number(time_scale, "time ×", float)
        if opts.timed_trace_sec_multiplier == 0:
            raise BadRequestError("time × must be above 0")
        opts.timed_trace_chunk_hash_size = _form_number(block, "block", minimum=1)
    if opts.multi_turn:
        opts.turn_delay_ms, opts.turn_delay_dist = parse_think_time(think)
    return opts, None
