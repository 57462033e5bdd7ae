"""Runs built with the real Store and RunRecorder (synthetic timings, no engine) for transfer tests."""

from __future__ import annotations

import random
import subprocess
from datetime import datetime, timedelta, timezone

from data.store.database import Store, new_fetch_id
from data.store.recorder import RunRecorder
from data.store.telemetry_rows import add_gpu_samples, add_server_samples
from engine.measure.metrics import request_metrics
from engine.telemetry.gpu import GpuSample
from engine.telemetry.server import ServerSample
from engine.types import GenerationRequest, RequestRecord

MS = 1_000_000


def record_run(store: Store, *, host: str = "box-a", provider: str = "runpod", gpu_key: str = "H100-SXM-80",
               device: str = "NVIDIA H100 80GB HBM3", price: float = 2.69, requests: int = 3,
               tokens: int = 20, seed: int = 1, status: str = "completed") -> str:
    """A finished run through RunRecorder: requests with chunk timestamps, GPU and server samples."""
    rng = random.Random(seed)
    env = {
        "hostname": host, "device": device,
        "gpus": [{"name": device, "memory_mb": 81559, "key": gpu_key}],
        "location": {"provider": provider, "provider_source": "--provider", "instance_id": f"i-{seed}",
                     "instance_type": "gpu_1x", "region": "eu", "price_per_hour_usd": price},
    }
    rec = RunRecorder(store)
    rec.start(kind="suite", engine_description={"engine": "vllm", "model": "llama-8b", "dtype": "bfloat16",
                                                "engine_args": {"enforce_eager": True, "max_num_seqs": 8}},
              environment=env, suite="seed", reps=1)
    for i in range(requests):
        req = GenerationRequest(prompt=f"prompt {i}", max_tokens=tokens, case_id="short", rep=i)
        r = RequestRecord(request=req, st_ns=10**12 + i * 10**9, sent_wall=1_700_000_000.0 + i)
        t = r.st_ns + int((40 + 20 * rng.random()) * MS)
        for _ in range(tokens):
            r.chunk_ns.append(t)
            r.chunk_tokens.append(1)
            t += int((8 + 4 * rng.random()) * MS)
        r.text, r.reported_output_tokens, r.finish_reason, r.success = "word " * tokens, tokens, "length", True
        rec.record(i, r, request_metrics(r))
    add_gpu_samples(store, rec.run_id, [GpuSample(t_s=100.0 + k, gpu_index=0, util_pct=90.0 + k, power_w=300.0)
                                        for k in range(3)], t0_s=100.0)
    add_server_samples(store, rec.run_id, [ServerSample(t_s=100.5 + k, source="stat_logger", running=1.0,
                                                        ttft_buckets={"0.1": k}) for k in range(2)], t0_s=100.0)
    rec.finish(status, duration_s=3.5, summary={"cases": {}, "overall": {"requests": requests}})
    return rec.run_id


def save_prices(store: Store, *, provider: str = "runpod", at: datetime | None = None, usd: float = 2.5) -> None:
    at = at or datetime.now(timezone.utc) - timedelta(hours=1)
    fetch_id = new_fetch_id()  # the shape the store makes (imports refuse any other)
    with store.connection() as con:
        con.execute(
            """INSERT INTO prices (fetch_id, provider, gpu_key, gpu_raw_name, approximate, gpu_count, usd_per_hour,
                   usd_per_gpu_hour, pricing_type, source, fetched_at)
               VALUES (?, ?, 'H100-SXM-80', 'H100 SXM', false, 1, ?, ?, 'on-demand', 'live', ?)""",
            [fetch_id, provider, usd, usd, at],
        )


def tokentop(cmd: list[str], env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=180)
    if check and proc.returncode != 0:
        raise AssertionError(f"tokentop {' '.join(args)} -> {proc.returncode}: {proc.stderr}")
    return proc


def one_error_line(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    """The one `tokentop: error: ...` line a refused command printed (asserting exit `code`, one stderr
    line, no traceback)."""
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tokentop: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]
