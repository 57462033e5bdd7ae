"""Databases standing for rented boxes, built with the real Store and RunRecorder from the stored
fixtures in tests/fixtures/matrix/ (requests given as [TTFT ms, ITL ms, output tokens])."""

from __future__ import annotations

import json
from pathlib import Path

from data.jobs.load import LoadSpec, level_settings
from data.store.database import Store
from data.store.recorder import RunRecorder, gpu_key_for
from engine.load import LoadLevel, summarise_level
from engine.measure.metrics import json_safe, request_metrics
from engine.orchestrator import case_summary as summarise
from engine.types import GenerationRequest, RequestRecord
from tests.support.prompts import PromptSource

FIXTURES = Path(__file__).parent.parent / "fixtures" / "matrix"
MS = 1_000_000
T0 = 10**12


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def environment(box: dict) -> dict:
    gpus = [{"index": i, "name": box["device"], "memory_mb": box["memory_mb"], "driver": "550.54",
             "key": gpu_key_for(box["device"], box["memory_mb"])} for i in range(box["instance_gpus"])]
    return {"hostname": box["hostname"], "device": box["device"], "gpus": gpus,
            "gpus_used": [gpus[i] for i in box["gpus_used"]], "location": dict(box["location"])}


def record_for(request: GenerationRequest, spec, start_ns: int) -> RequestRecord:
    rec = RequestRecord(request=request, st_ns=start_ns, sent_wall=1_760_000_000.0)
    if isinstance(spec, dict):
        rec.success, rec.error = False, spec["error"]
        return rec
    ttft_ms, itl_ms, tokens = spec
    for i in range(tokens):
        rec.chunk_ns.append(start_ns + int((ttft_ms + i * itl_ms) * MS))
        rec.chunk_tokens.append(1)
    rec.text = "tok " * tokens
    rec.reported_output_tokens = tokens
    rec.finish_reason = "length"
    rec.success = True
    return rec


def build_box(path, name: str) -> Store:
    """A database holding one box's runs, as `tokentop bench` and `tokentop load` would have stored them."""
    box = fixture(name)
    store = Store(path)
    env = environment(box)
    desc = {"engine": "vllm", "model": box["model"], "dtype": "bfloat16", "engine_args": box["engine_args"]}
    for suite in box["suites"]:
        rec = RunRecorder(store)
        rec.start(kind="suite", engine_description=desc, environment=json.loads(json.dumps(env)), suite="seed", reps=1)
        requests, metrics, records = [], [], []
        for i, spec in enumerate(suite["requests"]):
            req = GenerationRequest(prompt="Write about GPUs.", max_tokens=spec[2], case_id="medium", rep=i)
            record = record_for(req, spec, T0 + i * 10**9)
            m = request_metrics(record)
            rec.record(i, record, m)
            requests.append(req), metrics.append(m), records.append(record)
        rec.finish("completed", duration_s=5.0, summary=summarise(requests, metrics, records))
    for sweep in box["sweeps"]:
        levels = [LoadLevel(max_concurrency=lv["max_concurrency"], num_prompts=len(lv["requests"])) for lv in sweep["levels"]]
        spec = LoadSpec(levels=levels, prompts=PromptSource(input_len=sweep["input_len"], output_len=sweep["output_len"]))
        for index, (level, data) in enumerate(zip(levels, sweep["levels"])):
            rec = RunRecorder(store)
            rec.start(kind="load", engine_description=desc, environment=json.loads(json.dumps(env)), suite="load",
                      suite_json=level_settings(spec, level, index), workload=spec.prompts.identity())
            rec.set_origin(T0)
            metrics = []
            for i, (req, req_spec) in enumerate(zip(spec.prompts.requests(len(data["requests"]), index), data["requests"])):
                record = record_for(req, req_spec, T0 + i * 10 * MS)
                m = request_metrics(record)
                rec.record(i, record, m)
                metrics.append(m)
            result = summarise_level(level, metrics, data["duration_s"], None).to_dict()
            rec.finish("completed", duration_s=data["duration_s"],
                       summary=json_safe({"cases": {level.label: result}, "overall": result, "load": result}))
    return store


def merge(into: Path, other: Path, origin: str) -> None:
    """What a pull does to the database: the other box's runs, requests and chunks become rows here."""
    with Store(into) as store, store.connection() as con:
        con.execute(f"ATTACH '{other}' AS other (READ_ONLY)")
        for table in ("runs", "requests", "chunks"):
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM other.{table}")
        con.execute("UPDATE runs SET origin = ?, imported_at = now() WHERE hostname = "
                    "(SELECT any_value(hostname) FROM other.runs)", [origin])
        con.execute("DETACH other")
