"""Where tokentop's client spends its CPU: a yappi profile (CPU clock, every thread) of one load level
against the fast local source (benchmarks/fast_sse_server.py), the whole path on (openai engine, load
runner, metrics, DuckDB store, telemetry).

    PYTHONPATH=TREE .venv/bin/python benchmarks/profile_client.py [--concurrency 32] [--num-prompts 400]
        [--output-len 64] [--top 25]

Run it once per tree (e.g. PYTHONPATH=/work/main for before, this tree for after): the code profiled is
the tree's. Prints the functions with the most own CPU time (tsub: time in the function itself, not in
what it calls), their share of the profiled CPU, and CPU seconds per thread. yappi slows Python code
down a few times, so read shares and call counts, not absolute speeds.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--num-prompts", type=int, default=400)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    tree = os.environ.get("PYTHONPATH", str(HERE.parent)).split(os.pathsep)[0]
    sys.path.insert(0, tree)
    sys.path.insert(1, str(HERE))
    import yappi
    from harness_ceiling import free_port, run_tokentop, start_source

    from data.jobs.session import Session
    from data.store.database import Store

    port = free_port()
    source = start_source(port)
    store = Store(Path(tempfile.mkdtemp(prefix="tokentop-prof-")) / "p.duckdb")
    session = Session(store, dict(engine="openai", endpoint=f"http://127.0.0.1:{port}", model="fast-sse"))
    session.start_engine()
    try:
        run_tokentop(session, 8, 50, 8)  # warm
        yappi.set_clock_type("cpu")
        yappi.start(builtins=True)
        t = time.perf_counter()
        result = run_tokentop(session, a.concurrency, a.num_prompts, a.output_len)
        wall = time.perf_counter() - t
        yappi.stop()
    finally:
        session.shutdown()
        store.close()
        source.terminate()
    stats = yappi.get_func_stats()
    total = sum(s.tsub for s in stats) or 1e-9
    print(f"tree {tree}: {a.num_prompts} requests x {a.output_len} tokens, {a.concurrency} users, "
          f"{result['req_s']:.0f} req/s under the profiler, {wall:.1f} s wall, {total:.2f} CPU s profiled")
    print(f"{'own CPU %':>9} {'own s':>7} {'calls':>9}  function")
    for s in sorted(stats, key=lambda s: s.tsub, reverse=True)[:a.top]:
        module = s.module.replace(tree, "").replace(str(Path(sys.prefix)), "")
        where = module.split("site-packages/")[-1] if "site-packages/" in module else module.lstrip("/")
        print(f"{100 * s.tsub / total:>8.1f}% {s.tsub:>7.3f} {s.ncall:>9}  {s.name} ({where}:{s.lineno})")
    print("CPU s per thread:", ", ".join(f"{t.name}={t.ttot:.2f}" for t in yappi.get_thread_stats()))


if __name__ == "__main__":
    main()
