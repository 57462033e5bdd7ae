"""Does tokentop's own database writing move TTFT? At concurrency 1 on one vLLM server, interleaved:
`vllm bench serve`, tokentop with the background writer writing each request at once
(COALESCE_S = 0, the old behaviour), and tokentop with writes batched (data.store.recorder.COALESCE_S).
Prints each run, the medians and the ratios to vLLM. Everything else is harness_vs_vllm_bench.py's.

    .venv/bin/python benchmarks/writer_vs_ttft.py --rounds 7 --workloads random,chat
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness_vs_vllm_bench import (  # noqa: E402
    METRICS,
    PROMPTS,
    num_prompts_for,
    run_tokentop,
    run_vllm_bench,
    vllm_args,
    vllm_samples,
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--workloads", default="random,chat")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--input-len", type=int, default=64)
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--json", default=None)
    opts = ap.parse_args()

    import data.store.recorder as recorder
    from engine.engines.embedded_model import prepare
    from engine.engines.managed_server import ManagedVllmServer
    from engine.telemetry.environment import nvml_gpus

    batched = recorder.COALESCE_S
    arms = {"vllm": None, "tokentop, write at once": 0.0, f"tokentop, batched {batched:g} s": batched}
    workloads = [w.strip() for w in opts.workloads.split(",") if w.strip()]
    c = opts.concurrency
    model = str(prepare())
    served = "bench-model"
    work = Path(tempfile.mkdtemp(prefix="tokentop-writer-"))
    dataset = work / "prompts.jsonl"
    dataset.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    rows: list[dict] = []
    with ManagedVllmServer(model, served_model_name=served, cpu=not nvml_gpus()[0],
                           env={"VLLM_SERVER_DEV_MODE": "1"}) as server:
        base = server.base_url
        n = num_prompts_for(c)

        def args(w, count, out_len):
            return vllm_args(w, base, model, served, dataset, count, c, opts.input_len, out_len, opts.temperature)

        prompts = {w: [s.prompt for s in vllm_samples(args(w, n, opts.output_len))] for w in workloads}
        for w in workloads:  # warm-up
            run_tokentop(w, base, served, prompts[w][:2], 1, 2, 4, opts.temperature, work / "warm.duckdb")
            run_vllm_bench(args(w, 2, 4))
        names = list(arms)
        print(f"{'round':>5} {'workload':<8} {'arm':<28} {'TTFT ms':>8} {'TPOT ms':>8} {'out tok/s':>9}", flush=True)
        for r in range(opts.rounds):
            for w in workloads:
                order = names[r % 3:] + names[: r % 3]  # each arm in each position in turn
                for arm in order:
                    if arms[arm] is None:
                        res = run_vllm_bench(args(w, n, opts.output_len))
                    else:
                        recorder.COALESCE_S = arms[arm]
                        try:
                            res = run_tokentop(w, base, served, prompts[w], c, n, opts.output_len, opts.temperature,
                                               work / f"r{r}-{w}-{time.monotonic_ns()}.duckdb")
                        finally:
                            recorder.COALESCE_S = batched
                    rows.append({"round": r + 1, "workload": w, "arm": arm, **res})
                    print(f"{r + 1:>5} {w:<8} {arm:<28} {res['mean_ttft_ms']:>8.1f} {res['mean_tpot_ms']:>8.2f} "
                          f"{res['output_throughput']:>9.2f}", flush=True)
    print(f"\nconcurrency {c}: medians over {opts.rounds} rounds, ratio to vllm bench serve in brackets")
    for w in workloads:
        med = {a: {k: statistics.median(x[k] for x in rows if x["workload"] == w and x["arm"] == a) for k in METRICS}
               for a in arms}
        for a in arms:
            cells = "  ".join(f"{k} {med[a][k]:8.2f} ({med[a][k] / med['vllm'][k]:.3f})" for k in METRICS)
            print(f"{w:<8} {a:<28} {cells}")
    if opts.json:
        Path(opts.json).write_text(json.dumps({"rows": rows, "options": vars(opts)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
