"""`tokentop load`: throughput under load (vLLM bench's patterns), every level stored as a run."""

from __future__ import annotations

import argparse
import json
import math
import threading

from engine.measure.metrics import failure_note, json_safe, steady_state_lines
from engine.measure.progress import workload_lengths
from engine.measure.server_timing import SPLIT_NOTE, split_lines
from engine.terminal_text import safe_display
from engine.workloads.options import to_argparse, workloads_epilog
from tui.cli.common import (
    add_db_option,
    add_engine_options,
    engine_kwargs,
    fail,
    open_store,
    start_engine_or_exit_code,
)

EPILOG = """\
patterns (vLLM bench serve's names):
  --concurrency 1,2,4       N users, each sending its next request when the last one finished
  --concurrency sweep       1, 2, 4, ... until output throughput rises by less than 10 %,
                            p99 TTFT breaks the TTFT SLO, a request fails, or --max-level
  --request-rate R          Poisson arrivals at R requests/s (several: 1,2,4); --burstiness B
                            draws gamma inter-arrival times (B<1 burstier, B>1 more regular);
                            --max-concurrency N caps requests in flight
goodput counts requests meeting every --slo (ms), e.g. --slo ttft=500,tpot=50.
Without --num-prompts each level sends max(10, 3 x concurrency) requests (10 per rate level).

workloads (vLLM bench serve's --dataset-name; nothing is downloaded):
{workloads}before every level: --num-warmups requests (not measured), then the prefix cache is reset.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "load",
        help="throughput under load: concurrency sweeps, Poisson/gamma request rates, goodput",
        description="Run load levels against the engine, store each level as a run.",
        epilog=EPILOG.replace("{workloads}", workloads_epilog()),  # each family's line, from its module
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    to_argparse(p)  # every load and workload option, declared once (engine.workloads.options)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_db_option(p)
    add_engine_options(p, suppress=True)
    p.set_defaults(func=run)


def build_spec(args: argparse.Namespace):
    """Validate everything before the engine starts (bad input: BadRequestError, exit 2). The rules
    live in the domain (data.jobs.load.load_spec) so the app's Load form applies the same ones."""
    from data.jobs.load import load_spec

    spec = load_spec(concurrency=args.concurrency, request_rate=args.request_rate, burstiness=args.burstiness,
                     max_concurrency=args.max_concurrency, max_level=args.max_level, input_len=args.input_len,
                     output_len=args.output_len, suite=args.suite, num_prompts=args.num_prompts, slo=args.slo,
                     seed=args.seed, workload=workload_options(args), num_warmups=args.num_warmups)
    spec.client_processes = client_processes(args)
    return spec


def client_processes(args: argparse.Namespace) -> int:
    """--client-processes, or its default: one per 2 idle cores with --engine openai
    (engine.load.pool.default_client_processes), 1 with the in-process engine, which cannot be shared."""
    from engine.load.pool import default_client_processes
    from engine.types import BadRequestError

    asked = getattr(args, "client_processes", None)
    openai = getattr(args, "engine", "vllm") == "openai"
    if asked is None:
        return default_client_processes() if openai else 1
    if asked > 1 and not openai:
        raise BadRequestError(f"--client-processes {asked} needs --engine openai: the in-process vLLM engine "
                              "runs inside this process only (drop --client-processes)")
    return asked


def workload_options(args: argparse.Namespace):
    """The workload options of the command line (engine.workloads.WorkloadOptions, vLLM's names)."""
    from engine.workloads.options import options_from_namespace

    return options_from_namespace(args)


def run(args: argparse.Namespace) -> int:
    from data.analysis.roofline import roofline_for, roofline_why_not
    from data.jobs.load import LevelRow, level_rows, run_load
    from data.jobs.session import Session
    from engine.engines.runtime import QuietNativeOutput
    from tui.cli.progress import LevelProgress, notes_to
    from tui.cli.signals import sigterm_as_interrupt, stop_on_signals

    spec = build_spec(args)
    store = open_store(args)
    options = engine_kwargs(args)
    sigterm_as_interrupt()
    with QuietNativeOutput() as term:
        err = term.stderr
        note = notes_to(err)  # `tokentop: ...` lines wrapped to the terminal
        session = Session(store, options, log=note)
        try:
            code = start_engine_or_exit_code(session, note, term)
            if code is not None:
                return code
            desc = session.describe()
            if spec.client_processes > 1:
                note(f"{spec.client_processes} client processes share every level's requests")

            progress = LevelProgress(err)

            def level_start(i, level):
                lengths = workload_lengths(spec.prompts, level.num_prompts)  # every turn, as sent
                conv = getattr(spec.prompts, "multi_turn", False) or getattr(spec.prompts, "turns", 1) > 1
                what = (f"{level.num_prompts} conversations, {len(lengths)} requests" if conv
                        else f"{len(lengths)} requests")
                note(f"level {i + 1}/{len(spec.levels)}: {level.label}, {what}")
                for line in spec.prompts.level_notes(level.num_prompts):
                    note(line)
                progress.begin(f"level {i + 1}/{len(spec.levels)}", lengths)

            reset_said: list[str] = []

            def level_done(i, result):
                progress.end()
                row = LevelRow.of(result.run_id, result.outcome.status, result.summary)
                note(_level_line(row))
                s = row.summary
                if s is not None and s.prefix_cache_reset is False and not reset_said:
                    reset_said.append("said")  # once: the same server, the same answer
                    note(f"prefix cache not reset before the level: {s.prefix_cache_reset_note}")
                for warning in (result.summary.get("client_health") or {}).get("warnings") or []:
                    note(f"warning: {warning}")

            stop = threading.Event()
            interrupted = stop_on_signals(stop)  # Ctrl-C, SIGTERM, SIGHUP: stop, store what ran
            try:
                outcome = run_load(session, spec, on_level_start=level_start, on_level_done=level_done, note=note,
                                   stop=stop, on_record=progress.on_record)
            except KeyboardInterrupt:
                print("tokentop: interrupted: finished levels are stored", file=err)
                return 130
            outcome.interrupted = outcome.interrupted or interrupted.is_set()
            env = dict(session.environment)
            env["model_path"] = (session.choice.engine.describe().get("model") if session.choice else None)
            roof = roofline_for(env, desc)
            roof_note = None if roof else roofline_why_not(env, desc)
        finally:
            session.shutdown()
        rows = level_rows(outcome.levels)
        if args.json:
            obj = {"pattern": spec.pattern, "stop_reason": outcome.stop_reason, "slo_ms": spec.slo_ms,
                   "prompts": spec.prompts.to_json(), "workload": spec.prompts.to_json(),
                   "workload_report": spec.prompts.report(), "num_warmups": spec.num_warmups,
                   "engine": desc.get("engine"), "model": desc.get("model_label"),
                   "engine_args": desc.get("engine_args"), "device": session.device,
                   "gpu_note": outcome.gpu_note, "server_note": outcome.server_note,
                   "roofline": roof, "roofline_note": roof_note,
                   "levels": [r.to_dict() for r in rows],
                   # levels where requests failed, each with its failure rate and kinds (also in `levels`)
                   "levels_with_failures": [{"label": s.label, "run_id": r.run_id, "failed": s.failed,
                                             "failure_rate": s.failure_rate,
                                             "failures_by_kind": dict(s.failures_by_kind),
                                             "note": failure_note(s)}
                                            for r in rows for s in [r.summary] if s is not None and s.failed],
                   "client_health": [r.summary.get("client_health") for r in outcome.levels],
                   "warnings": [w for r in outcome.levels
                                for w in (r.summary.get("client_health") or {}).get("warnings") or []]}
            print(json.dumps(json_safe(obj), default=str), file=term.stdout)
        else:
            _print_table(safe_display(rows), spec, outcome, roof, term.stdout, roof_note)
        store.close()
        if outcome.interrupted:
            print(f"tokentop: interrupted: {len(rows)} level(s) stored", file=err)
            return 130
        bad = [r for r in outcome.levels if r.outcome.status != "completed"]
        if bad:
            r = bad[0]
            why = r.outcome.error or "see tokentop show " + r.run_id
            return fail(f"run {r.run_id} {r.outcome.status}: {why}", 1, err)
        return 0


def _f(value, fmt: str = "{:.1f}", none: str = "-") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return none
    return fmt.format(value)


def _level_line(row) -> str:
    """The line `tokentop load` prints when a level ends (row: data.jobs.load.LevelRow)."""
    res = row.summary
    failed = int(res.failed or 0) if res is not None else 0
    rate = f" ({100 * res.failure_rate:.0f} %)" if res is not None and failed and res.failure_rate else ""
    counts = f"{res.completed if res is not None else 0} ok / {failed} failed{rate}"
    if res is not None and res.aborted:
        counts += f" / {res.aborted} stopped mid-stream"
    if res is not None and res.not_sent:
        counts += f" ({res.not_sent} not sent)"
    line = (f"  {row.label}: {row.status}, {counts}, "
            f"{_f(res.request_throughput if res else None, '{:.2f}')} req/s, "
            f"{_f(res.output_throughput if res else None)} tok/s, "
            f"TTFT p50 {_f(res.p50_ttft_ms if res else None, '{:.0f}')} ms "
            f"p99 {_f(res.p99_ttft_ms if res else None, '{:.0f}')} ms")
    if res is not None and res.request_goodput is not None:
        line += f", goodput {_f(res.request_goodput, '{:.2f}')} req/s"
    if row.beside("prefix_cache_hit_rate") is not None:
        line += f", prefix cache hits {100 * row.beside('prefix_cache_hit_rate'):.0f} %"
    if row.beside("prefix_cache_external_hit_rate") is not None:  # a KV connector's tier, of the local misses
        line += f", external tier hits {100 * row.beside('prefix_cache_external_hit_rate'):.0f} % of the misses"
    return line


def load_table(rows, slo_ms) -> tuple[list, list[list]]:
    """The load levels as a table: the columns tui.cells.load_columns shows for these rows (the Load screen's
    too): vLLM's headline figures first (duration, token totals, throughputs), then mean/median/p99 TTFT, TPOT
    and ITL, the speeds, goodput, energy and the stored run. A level with failures is flagged with "!".
    rows: data.jobs.load.LevelRow, or the rows' JSON (LevelRow.to_dict's keys)."""
    from data.jobs.load import LevelRow
    from tui.cells import load_cell, load_columns
    from tui.tables import Col

    rows = [r.to_dict(beside=False) if isinstance(r, LevelRow) else r for r in rows]
    columns = load_columns(rows, slo_ms)
    cols = [Col(c.header, c.align, wrap=True, min_width=10) if c.field == "label" else Col(c.header, c.align)
            for c in columns]
    table = []
    for r in rows:
        line = [load_cell(r, c, none="-") for c in columns]
        if int(r.get("failed") or 0) and r.get("failure_rate"):  # a level with failures is flagged in its row
            line = [f"{text} !" if c.field == "failed" else text for c, text in zip(columns, line)]
        table.append(line)
    return cols, table


def _print_table(rows, spec, outcome, roof, out, roof_note: str | None = None) -> None:
    from rich.text import Text

    from data.analysis.roofline import roofline_text
    from tui.cells import token_source_line
    from tui.tables import _console, print_table

    console = _console(out)
    console.print(Text(f"workload: {spec.prompts.label()}"))
    cols, table = load_table(rows, spec.slo_ms)
    print_table(console, cols, table, layout="pages", fixed=1)
    say = lambda text, style="": console.print(Text(text), style=style)  # noqa: E731
    say("latencies in ms; names as in `vllm bench serve` (duration, total input/output tokens, request, output and "
        "total token throughput); b1 TPS = output tokens / E2EL at concurrency 1 (the article's batch-1 TPS); "
        "user tok/s = the same with other requests beside it (per-user speed); stopped = requests cut short "
        "by a stop (requests never sent are not counted)", "dim")
    levels = [r.summary for r in rows if r.summary is not None]  # the levels that stored figures
    for s in levels:  # a level with failures is flagged, with how its requests failed
        note = failure_note(s)
        if note:
            say(f"! {s.label}: {note}")
    for s in levels:
        if s.stopped_early:
            say(f"! {s.label}: {s.stopped_early} request(s) stopped early (fewer tokens than enforced)")
    s2f = [s for s in levels if s.schedule_to_finish is not None and s.schedule_to_finish.percentile_ms(99.0)
           is not None]
    if s2f:
        say("schedule-to-finish (scheduled send to last token, the client's queue included):")
        for s in s2f:
            p = s.schedule_to_finish.percentile_ms  # type: ignore[union-attr]  # s2f: set
            say(f"  {s.label}: p50 {_f(p(50.0), '{:.0f}')} / p90 {_f(p(90.0), '{:.0f}')} / p99 "
                f"{_f(p(99.0), '{:.0f}')} ms (E2EL p99 {_f(s.e2el.percentile_ms(99.0), '{:.0f}')} ms)")
    steady = [s for s in levels if steady_state_lines(s)]
    if steady:  # the plateau's figures beside the table's whole-run ones (engine.measure.metrics.steady_state)
        say("steady state (>= 95 % of the level's concurrency in flight, as vllm-bench):")
        for s in steady:
            say(f"  {s.label}:")
            for text in steady_state_lines(s):
                say(f"    {text}")
    for s in levels:
        line = token_source_line({"token_count_sources": s.token_count_sources})
        if line:
            say(f"{s.label}: {line}")
    say(f"sweep: {outcome.stop_reason}")
    for line in workload_lines(levels, spec):
        say(line)
    split = [line for s in levels for line in split_lines(s)]  # the server's own timing, where it sent it
    if split:
        say(SPLIT_NOTE, "dim")
        for line in split:
            say(line)
    if spec.slo_ms:
        say("goodput = requests/s meeting every SLO (" + ", ".join(f"{k} <= {v:g} ms" for k, v in spec.slo_ms.items())
            + ")")
    if outcome.gpu_note:
        say(outcome.gpu_note)
    first = rows[0].summary if rows else None
    if (roof and first is not None and first.level is not None and first.level.max_concurrency == 1
            and first.mean_decode_rate):
        roof = {**roof, "decode_pct_of_ceiling": {
            "concurrency 1": 100 * first.mean_decode_rate / roof["ceiling_tok_s"]}}
    if roof or roof_note:
        lines = roofline_text(roof, why=roof_note)
        say("roofline: " + lines[0])
        for line in lines[1:]:
            say("  " + line)


def workload_lines(levels, spec) -> list[str]:
    """What the table leaves out about the workload: warm-ups, the cache reset, prompt lengths against their
    targets, a trace's schedule lag, TTFT per turn of conversations, and what sampling skipped.
    levels: the levels' figures (engine.load.results.LevelSummary), in order."""
    lines = []
    first = levels[0] if levels else None
    if spec.num_warmups:
        failed = sum(int(s.warmups_failed or 0) for s in levels)
        lines.append(f"warm-up: {spec.num_warmups} request(s) before every level, not measured"
                     + (f" ({failed} failed)" if failed else ""))
    if first is not None and first.prefix_cache_reset is not None:
        not_reset = [s for s in levels if s.prefix_cache_reset is False]
        lines.append("prefix cache reset before every level" if not not_reset else
                     f"prefix cache NOT reset before {len(not_reset)} level(s): "
                     f"{not_reset[0].prefix_cache_reset_note}")
    for s in levels:
        if s.input_len_checked:
            bad = s.input_len_mismatches or 0
            lines.append(f"{s.label}: prompt tokens {s.total_input} "
                         f"(target {s.total_target_input_tokens}): "
                         + ("every prompt exact" if not bad else
                            f"{bad} of {s.input_len_checked} differ, by up to {s.max_input_len_error}"))
        if s.mean_schedule_lag_ms is not None and spec.pattern == "trace":
            lines.append(f"{s.label}: schedule lag (actual - scheduled send) mean "
                         f"{s.mean_schedule_lag_ms:.1f} ms, p99 {s.p99_schedule_lag_ms:.1f} ms, "
                         f"max {s.max_schedule_lag_ms:.1f} ms")
        turns = s.ttft_by_turn or {}
        if turns:
            lines.append(f"{s.label}: TTFT by turn (p50 ms, mean prompt tokens): " + ", ".join(
                f"{int(t) + 1}: {v['p50_ms']:.0f} ({v['mean_input_tokens'] or 0:.0f} tok)" for t, v in turns.items()))
    lines.extend(spec.prompts.notes)
    return lines
