"""How much load can one tokentop process drive? Requests/s and streamed tokens/s against a fast
local OpenAI-compatible source (benchmarks/fast_sse_server.py, no model), side by side with
`vllm bench serve` (run in-process) against the same source in the same run, interleaved.

    .venv/bin/python benchmarks/harness_ceiling.py [--concurrency 32,128] [--num-prompts 800]
                                                   [--output-len 64] [--rounds 2]

tokentop goes through its whole path: the OpenAI engine (httpx) on the engine thread, the load
runner, per-request metrics and every request + chunk stored in DuckDB, telemetry samplers on.
Figures are medians over rounds; both clients share the machine with the server.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_source(port: int) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "fast_sse_server.py"), "--port", str(port)])
    for _ in range(100):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the fast SSE source did not start")


def run_tokentop(session, concurrency: int, num_prompts: int, output_len: int) -> dict:
    from data.load_runs import LoadSpec, run_load
    from engine.load import LoadLevel, PromptSource

    spec = LoadSpec(levels=[LoadLevel(max_concurrency=concurrency, num_prompts=num_prompts)],
                    prompts=PromptSource(input_len=16, output_len=output_len))
    outcome = run_load(session, spec)
    res = outcome.levels[0].summary["overall"]
    return {"req_s": res["request_throughput"], "tok_s": res["output_throughput"], "completed": res["completed"],
            "failed": res["failed"], "mean_ttft_ms": res["mean_ttft_ms"]}


def run_vllm_bench(base_url: str, tokenizer: str, concurrency: int, num_prompts: int, output_len: int) -> dict:
    from vllm.benchmarks import serve
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    p = FlexibleArgumentParser()
    serve.add_cli_args(p)
    args = p.parse_args([
        "--backend", "openai-chat", "--base-url", base_url, "--endpoint", "/v1/chat/completions",
        "--model", "fast-sse", "--tokenizer", tokenizer, "--dataset-name", "random",
        "--random-input-len", "16", "--random-output-len", str(output_len), "--num-prompts", str(num_prompts),
        "--max-concurrency", str(concurrency), "--request-rate", "inf", "--ignore-eos", "--disable-tqdm",
        "--seed", "0",
    ])
    with contextlib.redirect_stdout(io.StringIO()):
        res = serve.main(args)
    return {"req_s": res["request_throughput"], "tok_s": res["output_throughput"], "completed": res["completed"],
            "failed": res.get("failed", 0), "mean_ttft_ms": res["mean_ttft_ms"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", default="32,128")
    ap.add_argument("--num-prompts", type=int, default=800)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()

    from data.session import Session
    from data.store import Store
    from engine.engines.embedded_model import embedded_model_dir
    from engine.engines.runtime import prepare_vllm_env

    prepare_vllm_env()
    port = free_port()
    source = start_source(port)
    base = f"http://127.0.0.1:{port}"
    tmp = tempfile.mkdtemp(prefix="tokentop-ceiling-")
    store = Store(Path(tmp) / "ceiling.duckdb")
    session = Session(store, dict(engine="openai", endpoint=base, model="fast-sse"))
    session.start_engine()
    rows = []
    try:
        # warm both clients (imports, connection pools)
        run_tokentop(session, 8, 50, 8)
        run_vllm_bench(base, str(embedded_model_dir()), 8, 50, 8)
        for c in [int(x) for x in a.concurrency.split(",")]:
            results = {"tokentop": [], "vllm bench serve": []}
            for r in range(a.rounds):
                results["tokentop"].append(run_tokentop(session, c, a.num_prompts, a.output_len))
                results["vllm bench serve"].append(
                    run_vllm_bench(base, str(embedded_model_dir()), c, a.num_prompts, a.output_len))
            for tool, runs in results.items():
                rows.append({"tool": tool, "concurrency": c,
                             "req_s": statistics.median(x["req_s"] for x in runs),
                             "tok_s": statistics.median(x["tok_s"] for x in runs),
                             "all_req_s": [round(x["req_s"], 1) for x in runs],
                             "failed": sum(x["failed"] for x in runs),
                             "mean_ttft_ms": statistics.median(x["mean_ttft_ms"] for x in runs)})
    finally:
        session.shutdown()
        store.close()
        source.terminate()
        source.wait(10)
    print(f"source: benchmarks/fast_sse_server.py (no model), {a.num_prompts} requests x {a.output_len} tokens "
          f"per run, medians of {a.rounds} interleaved rounds, {os.cpu_count()} CPU cores")
    print(f"{'tool':18} {'conc':>5} {'req/s':>8} {'tok/s':>9} {'TTFT ms':>8} {'failed':>6}  rounds req/s")
    for r in rows:
        print(f"{r['tool']:18} {r['concurrency']:>5} {r['req_s']:>8.1f} {r['tok_s']:>9.0f} {r['mean_ttft_ms']:>8.1f} "
              f"{r['failed']:>6}  {r['all_req_s']}")


if __name__ == "__main__":
    main()
