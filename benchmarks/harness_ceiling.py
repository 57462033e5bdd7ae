"""How much load can tokentop's client drive? Requests/s and streamed tokens/s against a fast local
OpenAI-compatible source (benchmarks/fast_sse_server.py, no model), side by side with `vllm bench serve`
against the same source in the same run, rounds interleaved.

    .venv/bin/python benchmarks/harness_ceiling.py [--concurrency 32,128] [--num-prompts 600]
        [--output-len 64] [--rounds 5] [--client-processes 1,2] [--trees main=/work/main] [--json out.json]

Every client runs in a process of its own, started once and kept for all rounds (so no client shares an
interpreter with another): one per tokentop variant — this tree with each --client-processes N, and each
other tree named by --trees (e.g. main's code, for before/after) with one process — and one for
`vllm bench serve` (in-process, `openai-chat`, random dataset, --ignore-eos). tokentop goes through its
whole path: the openai engine on its engine thread (or N client processes), the load runner, per-request
metrics, every request and chunk stored in DuckDB, telemetry samplers (the source's /metrics) on.

Each round runs every client once per level, the order rotated round by round. Printed: medians of
req/s, tok/s and mean TTFT; the median of per-round paired ratios to `vllm bench serve` (each round's
runs are neighbours in time, so they share the machine's load); tokentop's client CPU per process (cores,
from its self-check) and the requests/s one client core carries.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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


# -- the clients, each in its own process ---------------------------------------------------------
def run_tokentop(session, concurrency: int, num_prompts: int, output_len: int, client_processes: int = 1) -> dict:
    from data.jobs.load import LoadSpec, run_load
    from engine.load import LoadLevel
    from engine.workloads.base import DEFAULT_TEMPERATURE
    from engine.workloads.synthetic import RandomWorkload

    spec = LoadSpec(levels=[LoadLevel(max_concurrency=concurrency, num_prompts=num_prompts)],
                    prompts=RandomWorkload(16, output_len or 128, temperature=DEFAULT_TEMPERATURE, seed=0))
    if client_processes > 1:
        spec.client_processes = client_processes
    outcome = run_load(session, spec)
    level = outcome.levels[0]
    res = level.summary["overall"]
    health = level.summary.get("client_health") or {}
    cpu = health.get("client_cpu") or []
    return {"req_s": res["request_throughput"], "tok_s": res["output_throughput"], "completed": res["completed"],
            "failed": res["failed"], "mean_ttft_ms": res["mean_ttft_ms"],
            "client_cores": [round(c.get("process_cores") or 0.0, 3) for c in cpu],
            "loop_runnable": [round(c.get("loop_runnable") or 0.0, 3) for c in cpu],
            "parent_cores": health.get("parent_process_cores"), "client_bound": health.get("client_bound")}


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


def child(kind: str, base: str, client_processes: int) -> None:
    """A client's process: set up, say "ready", then run one level per stdin line ("C N LEN")."""
    out = sys.stdout
    sys.stdout = sys.stderr  # only our JSON lines on stdout
    if kind == "vllm":
        from engine.engines.embedded_model import embedded_model_dir
        from engine.engines.runtime import prepare_vllm_env

        prepare_vllm_env()
        tokenizer = str(embedded_model_dir())
        run = lambda c, n, length: run_vllm_bench(base, tokenizer, c, n, length)  # noqa: E731
        run(8, 50, 8)  # warm: imports, connections
        session = store = None
    else:
        from data.jobs.session import Session
        from data.store.database import Store

        store = Store(Path(tempfile.mkdtemp(prefix="tokentop-ceiling-")) / "ceiling.duckdb")
        session = Session(store, dict(engine="openai", endpoint=base, model="fast-sse"))
        session.start_engine()
        run = lambda c, n, length: run_tokentop(session, c, n, length, client_processes)  # noqa: E731
        run(8, 50, 8)
    print("ready", file=out, flush=True)
    try:
        for line in sys.stdin:
            c, n, length = (int(x) for x in line.split())
            print(json.dumps(run(c, n, length)), file=out, flush=True)
    finally:
        if session is not None:
            session.shutdown()
            store.close()


class Client:
    def __init__(self, name: str, argv: list[str], env: dict[str, str]):
        self.name = name
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"{name} did not start")

    def run(self, c: int, n: int, length: int) -> dict:
        self.proc.stdin.write(f"{c} {n} {length}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"{self.name} stopped")
        return json.loads(line)

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(60)
        except Exception:
            self.proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", default="32,128")
    ap.add_argument("--num-prompts", type=int, default=600)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--client-processes", default="1", help="tokentop variants of this tree, e.g. 1,2")
    ap.add_argument("--trees", default="",
                    help="other trees to run with one process, NAME=PATH,... (e.g. main=/work/main)")
    ap.add_argument("--json", default=None, help="write every round's figures here")
    ap.add_argument("--child", choices=["tokentop", "vllm"], help=argparse.SUPPRESS)
    ap.add_argument("--base", help=argparse.SUPPRESS)
    ap.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        sys.path.insert(0, os.environ.get("PYTHONPATH", str(ROOT)).split(os.pathsep)[0])
        child(a.child, a.base, a.processes)
        return

    port = free_port()
    source = start_source(port)
    base = f"http://127.0.0.1:{port}"
    me = [sys.executable, str(Path(__file__).resolve())]
    variants: list[tuple[str, list[str], str]] = []
    for n in [int(x) for x in a.client_processes.split(",")]:
        name = "tokentop" if n == 1 else f"tokentop x{n} processes"
        variants.append((name, [*me, "--child", "tokentop", "--base", base, "--processes", str(n)], str(ROOT)))
    for item in filter(None, a.trees.split(",")):
        name, path = item.split("=", 1)
        variants.append((f"tokentop ({name})", [*me, "--child", "tokentop", "--base", base], path))
    variants.append(("vllm bench serve", [*me, "--child", "vllm", "--base", base], str(ROOT)))
    clients: list[Client] = []
    levels = [int(x) for x in a.concurrency.split(",")]
    runs: dict[tuple[str, int], list[dict]] = {}
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load_before = os.getloadavg()
    try:
        for name, argv, tree in variants:
            env = dict(os.environ, PYTHONPATH=tree)
            clients.append(Client(name, argv, env))
        for c in levels:
            for r in range(a.rounds):
                order = clients[r % len(clients):] + clients[:r % len(clients)]
                for client in order:
                    res = client.run(c, a.num_prompts, a.output_len)
                    res["round"] = r
                    runs.setdefault((client.name, c), []).append(res)
                    print(f"  c={c} round {r + 1} {client.name}: {res['req_s']:.1f} req/s", file=sys.stderr, flush=True)
    finally:
        for client in clients:
            client.close()
        source.terminate()
        source.wait(10)
    load_after = os.getloadavg()
    print(f"source: benchmarks/fast_sse_server.py (no model), {a.num_prompts} requests x {a.output_len} tokens per "
          f"run, medians of {a.rounds} interleaved rounds, {os.cpu_count()} CPU cores; started {started}, load "
          f"average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print(f"{'client':26} {'conc':>4} {'req/s':>7} {'tok/s':>7} {'TTFT ms':>7} {'x vLLM':>6} {'paired':>6} "
          f"{'cores':>10} {'req/s/core':>10}  rounds req/s")
    table = []
    for c in levels:
        ref = runs[("vllm bench serve", c)]
        for client in clients:
            rs = runs[(client.name, c)]
            med = statistics.median(x["req_s"] for x in rs)
            paired = statistics.median(x["req_s"] / y["req_s"] for x, y in zip(rs, ref))
            ratio = med / statistics.median(y["req_s"] for y in ref)
            cores = [sum(x["client_cores"]) for x in rs if x.get("client_cores")]
            core_txt = f"{statistics.median(cores):.2f}" if cores else "-"
            per_core = statistics.median(x["req_s"] / sum(x["client_cores"]) for x in rs if x.get("client_cores")
                                         and sum(x["client_cores"]) > 0) if cores else None
            row = {"client": client.name, "concurrency": c, "req_s": med,
                   "tok_s": statistics.median(x["tok_s"] for x in rs),
                   "mean_ttft_ms": statistics.median(x["mean_ttft_ms"] for x in rs), "ratio": ratio,
                   "paired_ratio": paired, "client_cores": statistics.median(cores) if cores else None,
                   "req_s_per_core": per_core, "failed": sum(x["failed"] for x in rs),
                   "rounds": [round(x["req_s"], 1) for x in rs], "runs": rs}
            table.append(row)
            print(f"{client.name:26} {c:>4} {med:>7.1f} {row['tok_s']:>7.0f} {row['mean_ttft_ms']:>7.1f} "
                  f"{ratio:>6.3f} {paired:>6.3f} {core_txt:>10} "
                  f"{(f'{per_core:.0f}' if per_core else '-'):>10}  {row['rounds']}")
    if a.json:
        Path(a.json).write_text(json.dumps({"started": started, "load_before": load_before, "load_after": load_after,
                                            "args": vars(a), "rows": table}, indent=1))


if __name__ == "__main__":
    main()
