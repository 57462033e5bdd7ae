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
    from data.jobs.load import level_rows, run_load
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
                overall = result.summary.get("overall", {})
                note(_level_line(overall, result.outcome.status))
                if overall.get("prefix_cache_reset") is False and not reset_said:
                    reset_said.append("said")  # once: the same server, the same answer
                    note(f"prefix cache not reset before the level: {overall.get('prefix_cache_reset_note')}")
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
                   "levels": rows,
                   # levels where requests failed, each with its failure rate and kinds (also in `levels`)
                   "levels_with_failures": [{"label": r.get("label"), "run_id": r.get("run_id"),
                                             "failed": r.get("failed"), "failure_rate": r.get("failure_rate"),
                                             "failures_by_kind": r.get("failures_by_kind"),
                                             "note": failure_note(r)} for r in rows if r.get("failed")],
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


def _level_line(res: dict, status: str) -> str:
    failed = int(res.get("failed") or 0)
    rate = f" ({100 * res['failure_rate']:.0f} %)" if failed and res.get("failure_rate") else ""
    counts = f"{res.get('completed', 0)} ok / {failed} failed{rate}"
    if res.get("aborted"):
        counts += f" / {res['aborted']} stopped mid-stream"
    if res.get("not_sent"):
        counts += f" ({res['not_sent']} not sent)"
    line = (f"  {res.get('label')}: {status}, {counts}, "
            f"{_f(res.get('request_throughput'), '{:.2f}')} req/s, {_f(res.get('output_throughput'))} tok/s, "
            f"TTFT p50 {_f(res.get('p50_ttft_ms'), '{:.0f}')} ms p99 {_f(res.get('p99_ttft_ms'), '{:.0f}')} ms")
    if res.get("request_goodput") is not None:
        line += f", goodput {_f(res.get('request_goodput'), '{:.2f}')} req/s"
    if res.get("prefix_cache_hit_rate") is not None:
        line += f", prefix cache hits {100 * res['prefix_cache_hit_rate']:.0f} %"
    if res.get("prefix_cache_external_hit_rate") is not None:  # a KV connector's tier, of the local misses
        line += f", external tier hits {100 * res['prefix_cache_external_hit_rate']:.0f} % of the misses"
    return line


def load_table(rows, slo_ms) -> tuple[list, list[list]]:
    """The load levels as a table: the columns tui.cells.load_columns shows for these rows (the Load screen's
    too): vLLM's headline figures first (duration, token totals, throughputs), then mean/median/p99 TTFT, TPOT
    and ITL, the speeds, goodput, energy and the stored run. A level with failures is flagged with "!"."""
    from tui.cells import load_cell, load_columns
    from tui.tables import Col

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
    for r in rows:  # a level with failures is flagged, with how its requests failed
        note = failure_note(r)
        if note:
            say(f"! {r.get('label')}: {note}")
    for r in rows:
        if r.get("stopped_early"):
            say(f"! {r.get('label')}: {r['stopped_early']} request(s) stopped early (fewer tokens than enforced)")
    s2f = [r for r in rows if r.get("p99_schedule_to_finish_ms") is not None]
    if s2f:
        say("schedule-to-finish (scheduled send to last token, the client's queue included):")
        for r in s2f:
            say(f"  {r.get('label')}: p50 {_f(r.get('p50_schedule_to_finish_ms'), '{:.0f}')} / p90 "
                f"{_f(r.get('p90_schedule_to_finish_ms'), '{:.0f}')} / p99 "
                f"{_f(r.get('p99_schedule_to_finish_ms'), '{:.0f}')} ms (E2EL p99 "
                f"{_f(r.get('p99_e2el_ms'), '{:.0f}')} ms)")
    steady = [r for r in rows if steady_state_lines(r)]
    if steady:  # the plateau's figures beside the table's whole-run ones (engine.measure.metrics.steady_state)
        say("steady state (>= 95 % of the level's concurrency in flight, as vllm-bench):")
        for r in steady:
            say(f"  {r.get('label')}:")
            for text in steady_state_lines(r):
                say(f"    {text}")
    for r in rows:
        line = token_source_line(r)
        if line:
            say(f"{r.get('label')}: {line}")
    say(f"sweep: {outcome.stop_reason}")
    for line in workload_lines(rows, spec):
        say(line)
    split = [line for r in rows for line in split_lines(r)]  # the server's own timing, where it sent it
    if split:
        say(SPLIT_NOTE, "dim")
        for line in split:
            say(line)
    if spec.slo_ms:
        say("goodput = requests/s meeting every SLO (" + ", ".join(f"{k} <= {v:g} ms" for k, v in spec.slo_ms.items())
            + ")")
    if outcome.gpu_note:
        say(outcome.gpu_note)
    first = rows[0] if rows else {}
    if roof and first.get("max_concurrency") == 1 and first.get("mean_decode_rate"):
        roof = {**roof, "decode_pct_of_ceiling": {
            "concurrency 1": 100 * first["mean_decode_rate"] / roof["ceiling_tok_s"]}}
    if roof or roof_note:
        lines = roofline_text(roof, why=roof_note)
        say("roofline: " + lines[0])
        for line in lines[1:]:
            say("  " + line)


def workload_lines(rows, spec) -> list[str]:
    """What the table leaves out about the workload: warm-ups, the cache reset, prompt lengths against their
    targets, a trace's schedule lag, TTFT per turn of conversations, and what sampling skipped."""
    lines = []
    first = rows[0] if rows else {}
    if spec.num_warmups:
        failed = sum(int(r.get("warmups_failed") or 0) for r in rows)
        lines.append(f"warm-up: {spec.num_warmups} request(s) before every level, not measured"
                     + (f" ({failed} failed)" if failed else ""))
    if first.get("prefix_cache_reset") is not None:
        not_reset = [r for r in rows if r.get("prefix_cache_reset") is False]
        lines.append("prefix cache reset before every level" if not not_reset else
                     f"prefix cache NOT reset before {len(not_reset)} level(s): "
                     f"{not_reset[0].get('prefix_cache_reset_note')}")
    for r in rows:
        if r.get("input_len_checked"):
            bad = r.get("input_len_mismatches") or 0
            lines.append(f"{r.get('label')}: prompt tokens {r.get('total_input_tokens')} "
                         f"(target {r.get('total_target_input_tokens')}): "
                         + ("every prompt exact" if not bad else
                            f"{bad} of {r['input_len_checked']} differ, by up to {r.get('max_input_len_error')}"))
        if r.get("mean_schedule_lag_ms") is not None and spec.pattern == "trace":
            lines.append(f"{r.get('label')}: schedule lag (actual - scheduled send) mean "
                         f"{r['mean_schedule_lag_ms']:.1f} ms, p99 {r['p99_schedule_lag_ms']:.1f} ms, "
                         f"max {r['max_schedule_lag_ms']:.1f} ms")
        turns = r.get("ttft_by_turn") or {}
        if turns:
            lines.append(f"{r.get('label')}: TTFT by turn (p50 ms, mean prompt tokens): " + ", ".join(
                f"{int(t) + 1}: {v['p50_ms']:.0f} ({v['mean_input_tokens'] or 0:.0f} tok)" for t, v in turns.items()))
    lines.extend(spec.prompts.notes)
    return lines
