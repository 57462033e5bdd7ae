"""How long runs take to travel: export, import (and re-import), push and pull for a database of
1,000 runs with 1M chunk timestamps in all (10 requests x 100 chunks per run, plus GPU/server samples).

    /work/bin/quiet-machine .venv/bin/python benchmarks/travel_bench.py [--runs 1000] [--s3]

The source database is filled with SQL (same schema, made by the real Store), not through the
recorder: this times the transfer, not the recording. --s3 also pushes to and pulls from a moto S3
server on loopback (slow: moto is a Python server; real S3 is not the bottleneck here).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data.store.database import Store  # noqa: E402
from data.travel.bundle import export_runs, import_bundle  # noqa: E402
from data.travel.remote import pull, push  # noqa: E402


def fill(store: Store, runs: int, requests: int, chunks: int) -> None:
    with store.connection() as con:
        con.execute(
            """INSERT INTO runs (run_id, kind, status, started_at, finished_at, duration_s, suite, engine, engine_args,
                   model, hostname, device, gpu_key, gpu_count, environment, summary, provider, price_per_hour_usd)
               SELECT printf('20260101-%06d-%06x', i, i), 'suite', 'completed',
                      now() - INTERVAL 1 DAY + i * INTERVAL 1 SECOND,
                      now(), 30.0, 'seed', 'vllm', '{"enforce_eager": true}', 'llama-8b', 'box-' || (i % 3),
                      'NVIDIA H100 80GB HBM3', 'H100-SXM-80', 1, '{"python": "3.11"}', '{"cases": {}}', 'runpod', 2.69
               FROM range(?) t(i)""",
            [runs],
        )
        con.execute(
            """INSERT INTO requests (run_id, request_index, case_id, rep, sent_at, send_offset_s, prompt, input_tokens,
                   output_tokens, target_tokens, ttft_ms, e2el_ms, tpot_ms, tps, success, finish_reason, output_text)
               SELECT printf('20260101-%06d-%06x', r, r), q, 'short', q, now(), q * 1.5, 'Write a haiku.', 20, ?, ?,
                      40 + random() * 10, 900 + random() * 100, 9.0, 110.0, true, 'length', 'word word word'
               FROM range(?) a(r), range(?) b(q)""",
            [chunks, chunks, runs, requests],
        )
        con.execute(
            """INSERT INTO chunks (run_id, request_index, chunk_index, t_ns, tokens)
               SELECT printf('20260101-%06d-%06x', r, r), q, c, 40000000 + c * 9000000 + (random() * 1000000)::BIGINT, 1
               FROM range(?) a(r), range(?) b(q), range(?) d(c)""",
            [runs, requests, chunks],
        )
        con.execute(
            """INSERT INTO gpu_samples (run_id, t_s, gpu_index, util_pct, power_w)
               SELECT printf('20260101-%06d-%06x', r, r), s * 0.5, 0, 95.0, 350.0 FROM range(?) a(r), range(60) b(s)""",
            [runs],
        )
        con.execute(
            """INSERT INTO prices (fetch_id, provider, gpu_key, gpu_raw_name, approximate, gpu_count, usd_per_hour,
                   usd_per_gpu_hour, pricing_type, source, fetched_at)
               VALUES ('0000000000f1', 'runpod', 'H100-SXM-80', 'H100 SXM', false, 1, 2.69, 2.69, 'on-demand', 'live',
                       now() - INTERVAL 2 DAY)"""
        )


def timed(label: str, fn, results: list[tuple[str, float, str]], note: str = ""):
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    results.append((label, dt, note))
    print(f"{label:<46} {dt:8.2f} s  {note}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=10)
    ap.add_argument("--chunks", type=int, default=100)
    ap.add_argument("--s3", action="store_true", help="also push/pull through a moto S3 server on loopback")
    args = ap.parse_args()
    results: list[tuple[str, float, str]] = []
    total_chunks = args.runs * args.requests * args.chunks
    with tempfile.TemporaryDirectory(prefix="travel-bench-") as tmp:
        tmp = Path(tmp)
        src = Store(tmp / "src.duckdb")
        timed("fill source (SQL)", lambda: fill(src, args.runs, args.requests, args.chunks), results)
        print(f"{args.runs} runs, {args.runs * args.requests} requests, {total_chunks} chunk timestamps")

        bundle = tmp / "bundle.duckdb"
        timed("export all runs to one bundle", lambda: export_runs(src, None, bundle), results,
              f"{bundle.stat().st_size / 1e6:.1f} MB" if bundle.exists() else "")
        results[-1] = (results[-1][0], results[-1][1], f"{bundle.stat().st_size / 1e6:.1f} MB")
        dst = Store(tmp / "dst.duckdb")
        r = timed("import the bundle into an empty database", lambda: import_bundle(dst, bundle), results)
        assert len(r.imported) == args.runs
        r = timed("import it again (adds nothing)", lambda: import_bundle(dst, bundle), results)
        assert not r.imported

        share = tmp / "share"
        share.mkdir()
        r = timed("push all runs to a directory remote", lambda: push(src, None, str(share)), results)
        assert len(r.pushed) == args.runs, r.failed
        stored = [p for p in share.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in stored)
        results[-1] = (results[-1][0], results[-1][1], f"{size / 1e6:.1f} MB in {len(stored)} files")
        dst2 = Store(tmp / "dst2.duckdb")
        r = timed("pull all runs from the directory remote", lambda: pull(dst2, str(share)), results)
        assert len(r.pulled) == args.runs
        r = timed("pull again (nothing missing)", lambda: pull(dst2, str(share)), results)
        assert not r.pulled

        if args.s3:
            from moto.server import ThreadedMotoServer

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            server.start()
            os.environ.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_REGION="us-east-1",
                              AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
            import boto3

            boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}").create_bucket(Bucket="fleet")
            r = timed("push all runs to moto S3 (loopback)", lambda: push(src, None, "s3://fleet/bench"), results)
            assert len(r.pushed) == args.runs, r.failed
            dst3 = Store(tmp / "dst3.duckdb")
            r = timed("pull all runs from moto S3 (loopback)", lambda: pull(dst3, "s3://fleet/bench"), results)
            assert len(r.pulled) == args.runs
            server.stop()

    print("\n| step | seconds | note |\n|---|---:|---|")
    for label, dt, note in results:
        print(f"| {label} | {dt:.2f} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
