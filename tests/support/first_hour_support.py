"""What the first-hour tests share: a detector for numbers cut to '…', the text of a screen as the user
sees it, and stored runs of the kinds a new user makes (a load sweep with big figures, a stopped
generation), written with the real Store and RunRecorder."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timezone

from data.jobs.load import LoadSpec, level_settings
from data.store.database import Store
from data.store.recorder import RunRecorder
from engine.load import LoadLevel, summarise_level
from engine.measure.metrics import json_safe, request_metrics
from engine.orchestrator import run_summary
from engine.types import GenerationRequest, RequestRecord
from tests.support.prompts import PromptSource

MS = 1_000_000
T0 = 10**12

# A number that lost its end to an ellipsis ("119…", "48.…", "1,2…"), or a cell that is nothing but
# one ("… │ …"). Words that end in "…" on purpose ("stopping…", "Loading…") are not numbers.
_CUT = re.compile(r"\d[\d.,:]*…|(?<![^\s│|┃])…(?=[\s│|┃]|$)")


def cut_numbers(text: str) -> list[str]:
    """Every place in `text` where a number (or a whole cell) was cut to '…', with its line."""
    found = []
    for line in text.splitlines():
        for m in _CUT.finditer(line):
            found.append(f"{m.group(0)!r} in {line.strip()!r}")
    return found


def screen_text(app) -> str:
    """The screen as the terminal shows it (every layer composed), one line per row."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def _record(request: GenerationRequest, start_ns: int, ttft_ms: float, itl_ms: float, tokens: int,
            input_tokens: int = 128) -> RequestRecord:
    rec = RequestRecord(request=request, st_ns=start_ns, sent_wall=1_760_000_000.0)
    for i in range(tokens):
        rec.chunk_ns.append(start_ns + int((ttft_ms + i * itl_ms) * MS))
        rec.chunk_tokens.append(1)
    rec.text = "tok " * tokens
    rec.reported_output_tokens = tokens
    rec.input_tokens = input_tokens
    rec.finish_reason = "length"
    rec.success = True
    return rec


def add_load_sweep(store: Store, *, concurrencies=(1, 8), ttft_ms=(81.0, 3735.4), itl_ms=(31.0, 48.7),
                   tokens: int = 128, prompts: int = 12, started: datetime | None = None,
                   device: str = "CPU") -> list[str]:
    """A concurrency sweep as `tokentop load` stores it: one run per level, with figures whose digits a
    cut would lose (TTFT 3735.4 ms, thousands of tokens)."""
    desc = {"engine": "vllm", "model": "SmolLM2-135M-Instruct", "dtype": "bfloat16", "engine_args": {}}
    env = {"hostname": "laptop", "device": device, "gpus": []}
    levels = [LoadLevel(max_concurrency=c, num_prompts=prompts) for c in concurrencies]
    spec = LoadSpec(levels=levels, prompts=PromptSource(input_len=128, output_len=tokens))
    run_ids = []
    for index, (level, ttft, itl) in enumerate(zip(levels, ttft_ms, itl_ms)):
        rec = RunRecorder(store)
        run_id = rec.start(kind="load", engine_description=desc, environment=dict(env), suite="load",
                           suite_json=level_settings(spec, level, index))
        rec.set_origin(T0)
        metrics, records = [], []
        for i, req in enumerate(spec.prompts.requests(prompts, index)):
            record = _record(req, T0 + (i // level.max_concurrency) * int((ttft + itl * tokens) * MS), ttft, itl, tokens)
            m = request_metrics(record)
            rec.record(i, record, m)
            metrics.append(m)
            records.append(record)
        duration = (max(r.chunk_ns[-1] for r in records) - T0) / 1e9
        result = replace(summarise_level(level, metrics, duration, None), aborted=0, not_sent=0).to_dict()
        rec.finish("completed", duration_s=duration,
                   summary=json_safe(run_summary([], [], [], level_result=result, gpu_note="no GPU")))
        if started is not None:  # one level after the other, as a sweep runs them
            from datetime import timedelta

            with store.connection() as con:
                con.execute("UPDATE runs SET started_at = ?, pid = NULL WHERE run_id = ?",
                            [started + timedelta(minutes=index), run_id])
        run_ids.append(run_id)
    return run_ids


def add_stopped_generation(store: Store, *, tokens: int = 12, ttft_ms: float = 120.0, itl_ms: float = 33.0) -> str:
    """An interactive run stopped with Esc mid-stream, stored as the app stores it (engine.orchestrator:
    the request is kept as aborted; the run's summary counts what it streamed)."""
    from dataclasses import replace

    desc = {"engine": "vllm", "model": "SmolLM2-135M-Instruct", "dtype": "bfloat16", "engine_args": {}}
    rec = RunRecorder(store)
    run_id = rec.start(kind="interactive", engine_description=desc, environment={"hostname": "laptop", "device": "CPU"},
                       suite="interactive")
    req = GenerationRequest(prompt="Tell me a long story.", max_tokens=256, case_id="interactive")
    record = _record(req, T0, ttft_ms, itl_ms, tokens)
    record.success, record.aborted, record.error, record.finish_reason = False, True, "aborted", None
    m = request_metrics(record)
    rec.record(0, record, m)
    summary = run_summary([req], [replace(m, success=True)], [record], gpu_note="no GPU")
    summary["partial"] = True
    rec.finish("aborted", duration_s=m.e2el_s, summary=json_safe(summary))
    with store.connection() as con:
        con.execute("UPDATE runs SET started_at = ?, pid = NULL WHERE run_id = ?",
                    [datetime(2025, 3, 4, 8, 0, tzinfo=timezone.utc), run_id])
    return run_id


def linger_with_a_child(pid_file: str) -> None:
    """A stand-in for vLLM's engine process: it starts a worker of its own (a grandchild of the test)
    and never exits by itself. Writes the worker's pid to `pid_file`."""
    import subprocess
    import time as _time

    worker = subprocess.Popen(["sleep", "300"])
    with open(pid_file, "w") as f:
        f.write(str(worker.pid))
    _time.sleep(300)  # deliberate: it lingers until it is killed
