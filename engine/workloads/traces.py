"""Timed traces: requests replayed on their timestamps, with prefixes shared as the trace says.

`--dataset-name timed_trace` is vLLM 0.32's TimedTrace reader with its options: one JSON object per
line with a timestamp, an input length, an output length and a list of hash ids, field names set by
`--timed-trace-label-{timestamp,input-length,output-length,hash-ids}`; each hash id stands for a block of
`--timed-trace-chunk-hash-size` tokens (default 16); send time = timestamp × `--timed-trace-sec-multiplier`
(default 1: timestamps in seconds). `--dataset-name mooncake_trace` is the same reader preset for the
Mooncake trace format (FAST'25) that AIPerf and GuideLLM replay: `timestamp` in milliseconds
(multiplier 0.001), `input_length`, `output_length`, `hash_ids` of 512-token blocks.

A prompt is its hash blocks in order, the last one cut to the input length, as vLLM builds it: every
request that lists a hash id gets the very same tokens for it, so requests share prefixes exactly as
the trace says. Where tokentop differs on purpose:
  * a block's tokens come from a stable hash of its id (BLAKE2b seeding numpy), not Python's `hash()`
    of a string (which vLLM uses, and which changes from process to process), so two replays of one
    trace send the same tokens; a cut block is the first tokens of the full block, so it shares them;
  * when the hash ids run out before the input length, the rest is filled with tokens unique to the
    request (vLLM sends a shorter prompt), so input lengths are those of the trace;
  * the trace is replayed in time order, whatever its line order: lines sorted by timestamp (a stable
    sort: equal timestamps keep the file's order), send times counted from the earliest timestamp, and
    `--num-prompts N` takes the N earliest. That is AIPerf's fixed schedule (`timing/strategies/
    fixed_schedule.py`: `schedule.sort(key=timestamp_ms)`, zero at the first with auto-offset) and
    LMBench's trace replayer (`3-workloads/trace-replayer/trace-replayer-qa.py` sorts, then counts from
    the earliest). vLLM 0.32 (`TimedTraceDataset`, `serve.get_request`) keeps the file's order and waits
    each line's `float(timestamp) * multiplier` from 0, so a trace stored newest first (LMBench's
    `gmi_trace.jsonl`) goes out as one burst after waiting for the newest line. A trace not in time order
    is said in the run (a note, and `out_of_order` in the workload report).
Timestamps are JSON numbers or numeric strings ("1753780607550317897": nanoseconds since 1970, as LMBench
stores them), read exactly (decimal, not a double); the unit is the multiplier's business. A level whose
schedule would last more than MAX_SPAN_S is refused before the engine starts, naming the unit the
timestamps look like (a nanosecond trace read as seconds would run for centuries).
Requests go out on that fixed schedule (a --max-concurrency cap may hold them back); each request's
schedule lag (actual send - scheduled) is stored and summarised per level. Prompts are token ids (the
in-process engine takes them as they are; the openai engine sends them as ids on the completions API,
as vLLM does), with generation to the trace's output length (ignore_eos).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np

from engine.types import BadRequestError
from engine.workloads.base import LevelSource, Planned
from engine.workloads.datasets import FileWorkload
from engine.workloads.files import DatasetFileError, plain, trace_rows
from engine.workloads.tokens import block_tokens, stable_int

PRESETS = {
    "timed_trace": {"chunk_hash_size": 16, "sec_multiplier": 1.0},
    "mooncake_trace": {"chunk_hash_size": 512, "sec_multiplier": 0.001},
}
DEFAULT_LABELS = {"timestamp": "timestamp", "input_length": "input_length", "output_length": "output_length",
                  "hash_ids": "hash_ids"}
MAX_SPAN_S = 86400.0  # a level's schedule longer than a day is a unit mistake, not a benchmark
# (the smallest timestamp magnitude, the unit it suggests, the multiplier that reads it as seconds)
UNIT_HINTS = ((1e17, "nanoseconds since 1970 (as LMBench's gmi_trace)", "1e-9"),
              (1e14, "microseconds since 1970", "1e-6"),
              (1e11, "milliseconds since 1970", "0.001"))
TRACE_WHAT = {
    "timed_trace": "a timed trace (one {timestamp, input_length, output_length, hash_ids} per line)",
    "mooncake_trace": ('a Mooncake trace (one {"timestamp": ms, "input_length": N, "output_length": N, '
                       '"hash_ids": [...]} per line)'),
}


class TraceWorkload(FileWorkload):
    """A timed trace (see the module docstring). `kind` is timed_trace or mooncake_trace (the preset)."""

    self_timed = True
    needs_tokenizer = True

    def __init__(self, path: str, kind: str = "timed_trace", *, chunk_hash_size: int | None = None,
                 sec_multiplier: float | None = None, labels: dict[str, str] | None = None,
                 output_len: int | None = None, **kw: Any):
        super().__init__(path, output_len=output_len, disable_shuffle=True, **kw)
        if kind not in PRESETS:
            raise BadRequestError(f"unknown trace kind {kind!r}: timed_trace or mooncake_trace")
        self.kind = kind
        preset = PRESETS[kind]
        self.chunk = int(chunk_hash_size if chunk_hash_size is not None else preset["chunk_hash_size"])
        self.multiplier = float(sec_multiplier if sec_multiplier is not None else preset["sec_multiplier"])
        self.labels = {**DEFAULT_LABELS, **{k: v for k, v in (labels or {}).items() if v}}
        # The trace in time order (check): (line, send offset s, input_length, output_length, hash ids)
        self.entries: list[tuple[int, float, int, int, list[int]]] = []
        self._prompts: list[tuple[tuple[int, ...], float, int, int]] = []  # ids, at_s, output_len, line
        self._texts: dict[int, str] = {}  # decoded prompts (stored with each request, and the chat API's)
        self.padded = 0
        self.shared_blocks = 0
        self.out_of_order = 0  # lines with a timestamp earlier than a line above them
        self.ties = 0  # lines with the same timestamp as the one before them, in time order
        self._magnitude = 0.0  # the largest |timestamp| (what unit they look like)

    @property
    def what(self) -> str:
        return TRACE_WHAT[self.kind]

    def check(self) -> None:
        """The options and the whole file, before the engine starts: every line's timestamp (a number or a
        numeric string), input and output length; then the trace in time order (`entries`) and, when
        the file was not, a note saying so. DatasetFileError naming the line otherwise."""
        if self.chunk < 1:
            raise BadRequestError(f"--timed-trace-chunk-hash-size must be 1 or more (got {self.chunk})")
        if not self.multiplier > 0 or self.multiplier == float("inf"):
            raise BadRequestError(f"--timed-trace-sec-multiplier must be above 0 (got {self.multiplier:g})")
        self._open()
        if self.entries:
            return
        self.total_rows, rows = trace_rows(self.path, self.labels, None, self.what)
        read: list[tuple[Decimal, int, int, int, list[int]]] = []
        latest: Decimal | None = None
        for line, ts_text, n_in, n_out, hashes in rows:
            ts = self._timestamp(int(line), ts_text)
            if n_in is None or n_in < 1:
                raise self._bad(line, f"{self.labels['input_length']} must be a whole number >= 1 (got {n_in})")
            if self.output_len is None and (n_out is None or n_out < 1):
                raise self._bad(line, f"{self.labels['output_length']} must be a whole number >= 1 (got {n_out})")
            if latest is not None and ts < latest:
                self.out_of_order += 1
            latest = ts if latest is None or ts > latest else latest
            read.append((ts, int(line), int(n_in), int(n_out or 0), list(hashes or [])))
        order = sorted(range(len(read)), key=lambda i: read[i][0])  # stable: ties keep the file's order
        t0 = read[order[0]][0]
        self._magnitude = float(max(abs(read[order[0]][0]), abs(read[order[-1]][0])))
        previous = None
        for i in order:
            ts, line, n_in, n_out, hashes = read[i]
            self.ties += previous is not None and ts == previous
            previous = ts
            self.entries.append((line, float(ts - t0) * self.multiplier, n_in, n_out, hashes))
        if self.out_of_order:
            newest_first = self.out_of_order == len(read) - 1
            self.notes.append(f"{self.out_of_order} of {len(read)} trace lines out of order"
                              f"{', newest first' if newest_first else ''}: sent by timestamp")

    def _timestamp(self, line: int, text: Any) -> Decimal:
        """A line's timestamp, exactly: a JSON number or a numeric string (LMBench writes nanoseconds since
        1970 as strings); DatasetFileError naming the line when it is missing or not a finite number."""
        label = self.labels["timestamp"]
        if text is None or not str(text).strip():
            raise self._bad(line, f"has no {label}")
        try:
            value = Decimal(str(text).strip())
        except InvalidOperation:
            value = None
        if value is None or not value.is_finite():
            raise self._bad(line, f"{label} {str(text)[:40]!r} is not a number")
        return value

    def default_num_prompts(self) -> int | None:
        return self.total_rows or None

    def check_num_prompts(self, num_prompts: int) -> None:
        """A level of the `num_prompts` earliest requests, before the engine starts: no more than the
        trace holds, and a schedule no longer than MAX_SPAN_S (BadRequestError: one line)."""
        self.check()
        name = plain(self.path.name, 80)
        if num_prompts > len(self.entries):
            raise BadRequestError(f"--num-prompts {num_prompts} is more than the {len(self.entries)} requests of "
                                  f"{name}: give at most {len(self.entries)} (the default: all)")
        span = self.entries[num_prompts - 1][1] if num_prompts > 0 else 0.0
        if span > MAX_SPAN_S:
            unit = next(((what, m) for floor, what, m in UNIT_HINTS if self._magnitude >= floor), None)
            if unit and self.multiplier > float(unit[1]) * 1.5:
                hint = f"its timestamps look like {unit[0]}: add --timed-trace-sec-multiplier {unit[1]}"
            elif unit:
                hint = "a smaller --timed-trace-sec-multiplier compresses it, or take fewer --num-prompts"
            else:
                hint = "set --timed-trace-sec-multiplier to its timestamps' unit (0.001 ms, 1e-6 us, 1e-9 ns)"
            raise BadRequestError(f"{name}: {num_prompts} requests would take {_duration(span)} at "
                                  f"--timed-trace-sec-multiplier {self.multiplier:g}; {hint}")

    def _prepare(self, tokens, max_prompts: int | None) -> None:
        self.check()
        entries = self.entries[:max_prompts] if max_prompts is not None else self.entries
        self.read = len(entries)
        allowed = tokens.allowed()
        cache: dict[int, list[int]] = {}
        uses: dict[int, int] = {}
        for line, at, n_in, n_out, hashes in entries:
            ids: list[int] = []
            remaining = n_in
            for h in hashes:  # vLLM's TimedTrace._expand_prompt, block by block
                size = self.chunk if remaining >= self.chunk else remaining
                block = cache.get(h)
                if block is None:
                    block = cache[h] = block_tokens(h, self.chunk, allowed)
                ids += block[:size]
                uses[h] = uses.get(h, 0) + 1
                remaining -= size
                if remaining <= 0:
                    break
            if remaining > 0:  # the trace's hash ids ran out: the rest is this request's own
                self.padded += 1
                rng = np.random.default_rng(stable_int("tokentop-trace-tail", self.seed, line))
                ids += [int(x) for x in allowed[rng.integers(0, len(allowed), size=remaining)]]
            self._prompts.append((tuple(ids), at, self.output_len or n_out, line))
        self.shared_blocks = sum(1 for n in uses.values() if n > 1)
        if self.padded:
            self.notes.append(f"{self.padded} request(s) had fewer hash ids than input tokens: the rest of their "
                              "prompts is tokens of their own (vLLM sends them shorter)")

    def _bad(self, line: int, what: str) -> DatasetFileError:
        return DatasetFileError(f"dataset {self.path.name}: line {line} {plain(what, 120)}; expected {self.what}")

    def level(self, num_prompts: int, level_index: int = 0) -> LevelSource:
        """The `num_prompts` earliest requests, in time order, each with its send offset (`at_s`)."""
        self.check_num_prompts(num_prompts)
        if num_prompts > len(self._prompts):
            raise BadRequestError(f"--num-prompts {num_prompts}: the trace was prepared for "
                                  f"{len(self._prompts)} requests")
        tokens = self.tokens
        out = []
        for i, (ids, at, n_out, _line) in enumerate(self._prompts[:num_prompts]):
            text = self._texts.get(i)
            if text is None:
                text = self._texts[i] = tokens.decode(ids) if tokens is not None else ""
            out.append(Planned(self.request(text, n_out, i, input_len=len(ids), prompt_token_ids=ids, send_ids=True),
                               at_s=at))
        return LevelSource(out)

    def send_times(self, num_prompts: int | None = None) -> list[float]:
        """Scheduled send offsets (s after the earliest timestamp, ascending) of the num_prompts earliest
        requests (all by default); known once checked, before the engine starts."""
        self.check()
        return [e[1] for e in self.entries[:num_prompts]]

    def params(self) -> dict[str, Any]:
        return {"chunk_hash_size": self.chunk, "sec_multiplier": self.multiplier, "labels": dict(self.labels),
                "output_len": self.output_len, "temperature": self.temperature, "ignore_eos": self.enforce_length}

    def _label_extra(self) -> str:
        preset = PRESETS[self.kind]["sec_multiplier"]
        return (f" ×{self.multiplier:g}" if self.multiplier != preset else "") + super()._label_extra()

    def report(self) -> dict[str, Any]:
        out = super().report()
        out.update(padded=self.padded, shared_blocks=self.shared_blocks,
                   span_s=self._prompts[-1][1] if self._prompts else 0.0,
                   out_of_order=self.out_of_order, timestamp_ties=self.ties)
        return out


def _duration(seconds: float) -> str:
    """A long span in words: '41.7 days', '12,263 years'."""
    days = seconds / 86400.0
    return f"{days:.3g} days" if days < 365 else f"{days / 365.25:,.0f} years"


# The trace options, declared once (engine.workloads.options; vLLM's names). The form's placeholders are
# the chosen preset's (PRESETS), set by the screen when a trace is chosen.
from engine.workloads.options import Field, Option, number, whole  # noqa: E402
from engine.workloads.registry import Family  # noqa: E402

_TRACES = ("timed_trace", "mooncake_trace")
OPTIONS = [
    Option("--timed-trace-chunk-hash-size", "tokens per hash id (timed_trace 16, mooncake_trace 512)", whole(1),
           metavar="N", workloads=_TRACES, section="workload", workload=True,
           field=Field("block", "load-block", "preset", group="opts-trace", slot=51)),
    Option("--timed-trace-sec-multiplier", "send time = timestamp x X seconds (timed_trace 1, mooncake_trace "
           "0.001); smaller compresses the trace", number(above_zero=True), metavar="X", workloads=_TRACES,
           section="workload", workload=True,
           field=Field("time ×", "load-time-scale", "file's", "text", group="opts-trace", slot=50)),
] + [
    Option(f"--timed-trace-label-{key}", f"the trace's field for the {key.replace('-', ' ')} (default {default})",
           metavar="FIELD", workloads=_TRACES, section="workload", workload=True)
    for key, default in (("timestamp", "timestamp"), ("input-length", "input_length"),
                         ("output-length", "output_length"), ("hash-ids", "hash_ids"))
]


def build_trace(opts: Any, path: str | None, common: dict[str, Any]) -> TraceWorkload:
    """--dataset-name timed_trace or mooncake_trace FILE from WorkloadOptions (the name picks the preset)."""
    labels = {"timestamp": opts.timed_trace_label_timestamp, "input_length": opts.timed_trace_label_input_length,
              "output_length": opts.timed_trace_label_output_length, "hash_ids": opts.timed_trace_label_hash_ids}
    return TraceWorkload(str(path), opts.dataset_name, chunk_hash_size=opts.timed_trace_chunk_hash_size,
                         sec_multiplier=opts.timed_trace_sec_multiplier, labels=labels, output_len=opts.output_len,
                         **common)


FAMILIES = [
    Family("timed_trace", build_trace, reads_file=True, slot=50,
           about="a trace replayed on its timestamps (--timed-trace-* options)"),
    Family("mooncake_trace", build_trace, reads_file=True, slot=60,
           about="the Mooncake format: timestamp ms, input/output_length, 512-token hash_ids"),
]
