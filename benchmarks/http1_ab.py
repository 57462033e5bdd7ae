"""The openai engine's HTTP/1.1 client alone, two (or more) versions side by side: requests/s and client
CPU per request against the fast local source (benchmarks/fast_sse_server.py, no model), rounds
interleaved.

    .venv/bin/python benchmarks/http1_ab.py --trees main=/tmp/tt-main,this=. [--concurrency 32,128]
        [--num-prompts 400] [--output-len 64] [--rounds 5] [--json out.json]

Each tree's `engine/engines/http1.py` is loaded by its path, in a process of its own (uvloop, as the
engine runs), kept for all rounds; the SSE parser is this tree's for all of them, so only the HTTP
client differs. Per request: a streaming chat POST, every read's body bytes to the SSE parser, every
event decoded with msgspec (what the engine does before its own bookkeeping), [DONE] ends it. No
metrics, no storage, no engine thread: the client's own cost. Each round runs every tree once per level,
the order rotated round by round; printed are medians and the median of per-round paired ratios to the
first tree (a round's runs are neighbours in time, so they share a busy machine's load).

Then the framing alone, without sockets or a server (steadier on a busy machine): each tree's connection
protocol is fed the same reads of a recorded-shape answer (head, 64 chunked events as the source writes
them, [DONE], the last chunk) by hand, with 1, 8 or 65 HTTP chunks per read; printed is the median
microseconds per answer (the exchange's own future and timer included) and the paired ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def child(tree: str) -> None:
    """A tree's process: load its http1.py, say "ready", then run one level per stdin line ("C N LEN")."""
    import msgspec

    sys.path.insert(0, str(ROOT))
    from engine.engines.sse import SSEParser

    spec = importlib.util.spec_from_file_location("http1_under_test", Path(tree) / "engine" / "engines" / "http1.py")
    http1 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(http1)
    decode = msgspec.json.Decoder().decode
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    base = os.environ["AB_BASE"]

    async def level(c: int, n: int, length: int) -> dict:
        client = http1.Client(base, limit=c)
        body = json.dumps({"model": "fast-sse", "messages": [{"role": "user", "content": "hi"}],
                           "max_tokens": length, "stream": True}).encode()
        events = 0
        failed = 0

        async def one() -> None:
            nonlocal events, failed
            parser = SSEParser()

            def on_body(raw: bytes, now: int) -> bool:
                nonlocal events
                for data in parser.feed(raw):
                    if data == b"[DONE]":
                        return True
                    decode(data)
                    events += 1
                return False

            resp = await client.post("/v1/chat/completions", body, on_body, read_timeout_s=60)
            failed += resp.status != 200

        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        await client.close()
        return {"req_s": n / wall, "cpu_ms_per_req": cpu * 1000 / n, "events": events, "failed": failed}

    class Transport:  # just enough for a connection fed by hand
        def write(self, data): pass
        def is_closing(self): return False
        def close(self): pass
        abort = close

    def answer_reads(per: int) -> list[bytes]:
        event = {"id": "cmpl-1764410000000000000", "object": "chat.completion.chunk", "created": 0, "model": "fast-sse",
                 "choices": [{"index": 0, "delta": {"content": " tok"}, "finish_reason": None}]}
        event = b"data: " + json.dumps(event).encode() + b"\n\n"
        chunks = [b"%x\r\n%s\r\n" % (len(event), event)] * 64 + [b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"]
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        return [head] + [b"".join(chunks[i:i + per]) for i in range(0, len(chunks), per)]

    async def framing(per: int, n: int) -> dict:
        conn = http1._Connection(http1.Client("http://127.0.0.1:9"))
        conn.connection_made(Transport())
        reads = answer_reads(per)
        sink = lambda data, now: False  # noqa: E731
        t0 = time.perf_counter()
        for _ in range(n):
            task = asyncio.ensure_future(conn.exchange(b"POST", sink, 10.0, 1.0))
            await asyncio.sleep(0)  # the exchange has sent its request
            for data in reads:
                conn.data_received(data)
            await task
        return {"us_per_answer": (time.perf_counter() - t0) / n * 1e6}

    loop = asyncio.new_event_loop()
    loop.run_until_complete(level(8, 50, 8))  # warm: imports, first connections
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if words[0] == "framing":
            print(json.dumps(loop.run_until_complete(framing(int(words[1]), int(words[2])))), flush=True)
            continue
        c, n, length = (int(x) for x in words)
        print(json.dumps(loop.run_until_complete(level(c, n, length))), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trees", default="", help="NAME=PATH,... (the first is the reference of the ratios)")
    ap.add_argument("--concurrency", default="32,128")
    ap.add_argument("--num-prompts", type=int, default=400)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child)
        return
    if not a.trees:
        ap.error("--trees NAME=PATH,... is needed")
    from harness_ceiling import free_port, start_source

    trees = [item.split("=", 1) for item in a.trees.split(",")]
    port = free_port()
    source = start_source(port)
    env = dict(os.environ, AB_BASE=f"http://127.0.0.1:{port}")
    procs: dict[str, subprocess.Popen] = {}
    runs: dict[tuple[str, int], list[dict]] = {}
    levels = [int(x) for x in a.concurrency.split(",")]
    started, load_before = time.strftime("%Y-%m-%d %H:%M:%S"), os.getloadavg()
    try:
        for name, path in trees:
            proc = subprocess.Popen([sys.executable, __file__, "--child", str(Path(path).resolve())], env=env,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit(f"{name} did not start")
            procs[name] = proc
        names = [name for name, _ in trees]
        for c in levels:
            for r in range(a.rounds):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    proc = procs[name]
                    proc.stdin.write(f"{c} {a.num_prompts} {a.output_len}\n")
                    proc.stdin.flush()
                    res = json.loads(proc.stdout.readline())
                    runs.setdefault((name, c), []).append(res)
                    print(f"  c={c} round {r + 1} {name}: {res['req_s']:.1f} req/s, "
                          f"{res['cpu_ms_per_req']:.3f} CPU ms/req", file=sys.stderr, flush=True)
        framing: dict[tuple[str, int], list[float]] = {}
        for per in (1, 8, 65):
            for r in range(a.rounds):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    proc = procs[name]
                    proc.stdin.write(f"framing {per} 2000\n")
                    proc.stdin.flush()
                    framing.setdefault((name, per), []).append(json.loads(proc.stdout.readline())["us_per_answer"])
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait(30)
        source.terminate()
        source.wait(10)
    load_after = os.getloadavg()
    print(f"{a.num_prompts} requests x {a.output_len} chunks per run, {a.rounds} interleaved rounds, "
          f"{os.cpu_count()} CPU cores; started {started}, load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after")
    ref = names[0]
    print(f"{'client':12} {'conc':>4} {'req/s':>7} {'paired':>6} {'CPU ms/req':>10} {'paired':>6}  "
          "rounds req/s | CPU ms/req")
    table = []
    for c in levels:
        for name in names:
            rs, base_rs = runs[(name, c)], runs[(ref, c)]
            row = {"client": name, "concurrency": c,
                   "req_s": statistics.median(x["req_s"] for x in rs),
                   "paired_req_s": statistics.median(x["req_s"] / y["req_s"] for x, y in zip(rs, base_rs)),
                   "cpu_ms_per_req": statistics.median(x["cpu_ms_per_req"] for x in rs),
                   "paired_cpu": statistics.median(x["cpu_ms_per_req"] / y["cpu_ms_per_req"]
                                                   for x, y in zip(rs, base_rs)),
                   "failed": sum(x["failed"] for x in rs), "events": [x["events"] for x in rs], "runs": rs}
            table.append(row)
            print(f"{name:12} {c:>4} {row['req_s']:>7.1f} {row['paired_req_s']:>6.3f} {row['cpu_ms_per_req']:>10.3f} "
                  f"{row['paired_cpu']:>6.3f}  {[round(x['req_s']) for x in rs]} | "
                  f"{[round(x['cpu_ms_per_req'], 3) for x in rs]}")
    print("framing alone (no socket), 2,000 answers of 64 chunked events per round:")
    print(f"{'client':12} {'chunks/read':>11} {'us/answer':>9} {'paired':>6}  rounds us/answer")
    for per in (1, 8, 65):
        for name in names:
            xs, ys = framing[(name, per)], framing[(ref, per)]
            ratio = statistics.median(x / y for x, y in zip(xs, ys))
            table.append({"client": name, "framing_chunks_per_read": per, "us_per_answer": statistics.median(xs),
                          "paired": ratio, "rounds": xs})
            print(f"{name:12} {per:>11} {statistics.median(xs):>9.1f} {ratio:>6.3f}  {[round(x) for x in xs]}")
    if a.json:
        Path(a.json).write_text(json.dumps({"started": started, "load_before": load_before, "load_after": load_after,
                                            "args": vars(a), "rows": table}, indent=1))


if __name__ == "__main__":
    main()
