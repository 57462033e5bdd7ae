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
  * send times count from the first request's timestamp (vLLM waits from 0).
Requests go out on that fixed schedule (a --max-concurrency cap may hold them back); each request's
schedule lag (actual send - scheduled) is stored and summarised per level. Prompts are token ids (the
in-process engine takes them as they are; the openai engine sends them as ids on the completions API,
as vLLM does), with generation to the trace's output length (ignore_eos).
"""

from __future__ import annotations

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
        self.entries: list[tuple[int, float, int, int, list[int] | None]] = []
        self._prompts: list[tuple[tuple[int, ...], float, int, int]] = []  # ids, at_s, output_len, line
        self._texts: dict[int, str] = {}  # decoded prompts (stored with each request, and the chat API's)
        self.padded = 0
        self.shared_blocks = 0

    @property
    def what(self) -> str:
        return TRACE_WHAT[self.kind]

    def check(self) -> None:
        if self.chunk < 1:
            raise BadRequestError(f"--timed-trace-chunk-hash-size must be 1 or more (got {self.chunk})")
        if not self.multiplier > 0 or self.multiplier == float("inf"):
            raise BadRequestError(f"--timed-trace-sec-multiplier must be above 0 (got {self.multiplier:g})")
        self._open()
        if not self.total_rows:
            self.total_rows, _ = trace_rows(self.path, self.labels, 1, self.what)

    def default_num_prompts(self) -> int | None:
        return self.total_rows or None

    def _prepare(self, tokens, max_prompts: int | None) -> None:
        self.check()
        _, rows = trace_rows(self.path, self.labels, max_prompts, self.what)
        for line, ts, n_in, n_out, hashes in rows:
            if ts is None:
                raise self._bad(line, f"has no {self.labels['timestamp']}")
            if n_in is None or n_in < 1:
                raise self._bad(line, f"{self.labels['input_length']} must be a whole number >= 1 (got {n_in})")
            if self.output_len is None and (n_out is None or n_out < 1):
                raise self._bad(line, f"{self.labels['output_length']} must be a whole number >= 1 (got {n_out})")
            self.entries.append((int(line), float(ts), int(n_in), int(n_out or 0), list(hashes or [])))
        self.read = len(self.entries)
        allowed = tokens.allowed()
        cache: dict[int, list[int]] = {}
        t0 = self.entries[0][1] if self.entries else 0.0
        uses: dict[int, int] = {}
        for line, ts, n_in, n_out, hashes in self.entries:
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
            at = max(0.0, (ts - t0) * self.multiplier)
            self._prompts.append((tuple(ids), at, self.output_len or n_out, line))
        self.shared_blocks = sum(1 for n in uses.values() if n > 1)
        if self.padded:
            self.notes.append(f"{self.padded} request(s) had fewer hash ids than input tokens: the rest of their "
                              "prompts is tokens of their own (vLLM sends them shorter)")

    def _bad(self, line: int, what: str) -> DatasetFileError:
        return DatasetFileError(f"dataset {self.path.name}: line {line} {plain(what, 120)}; expected {self.what}")

    def level(self, num_prompts: int, level_index: int = 0) -> LevelSource:
        if num_prompts > len(self._prompts):
            raise BadRequestError(f"--num-prompts {num_prompts} is more than the {len(self._prompts)} requests "
                                  f"of {self.file_identity()['name']}")
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
        """Scheduled send offsets (s) of the first num_prompts requests."""
        return [p[1] for p in self._prompts[:num_prompts]]

    def params(self) -> dict[str, Any]:
        return {"chunk_hash_size": self.chunk, "sec_multiplier": self.multiplier, "labels": dict(self.labels),
                "output_len": self.output_len, "temperature": self.temperature, "ignore_eos": self.enforce_length}

    def _label_extra(self) -> str:
        preset = PRESETS[self.kind]["sec_multiplier"]
        return (f" ×{self.multiplier:g}" if self.multiplier != preset else "") + super()._label_extra()

    def report(self) -> dict[str, Any]:
        out = super().report()
        out.update(padded=self.padded, shared_blocks=self.shared_blocks,
                   span_s=self._prompts[-1][1] if self._prompts else 0.0)
        return out
