"""One database, many processes: what opening the file per transaction costs, and what recording a
request costs the measuring thread (a script that prints figures, not a test).

(a) connect+close of a small DuckDB file (read-write and read-only), and of the tokentop store after
    N runs;
(b) per-request recording: time spent in the caller's thread and the writer's throughput, for
      - before this change: Store.add_request on a connection kept open for the process's life
        (what every record() did, in the measuring thread),
      - now: RunRecorder.record() handing the row to the background writer,
    alone, with a second process recording runs into the same file at the same time, and with a
    second process holding the file's lock for 2 s in the middle (rows wait in memory);
(c) a read (Store.list_runs) alone and while a second process writes.

Run: .venv/bin/python benchmarks/db_concurrency.py [--requests 400] [--chunks 200]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from data.store.database import RequestRow, Store, insert_request  # noqa: E402
from data.store.recorder import RunRecorder  # noqa: E402
from engine.measure.metrics import request_metrics  # noqa: E402
from tests.support.concurrent_writer import record_run, synthetic  # noqa: E402

HOLD_2S = """
import duckdb, sys, time
while True:
    try:
        con = duckdb.connect(sys.argv[1])
        break
    except duckdb.IOException:
        time.sleep(0.005)
con.execute('BEGIN')
print('held', flush=True)
time.sleep(2.0)
"""


def ms(values: list[float]) -> str:
    values = sorted(values)
    return f"median {statistics.median(values) * 1e3:.3f} ms, p99 {values[int(len(values) * 0.99) - 1] * 1e3:.3f} ms"


def us(values: list[float]) -> str:
    values = sorted(values)
    return f"median {statistics.median(values) * 1e6:.1f} µs, p99 {values[int(len(values) * 0.99) - 1] * 1e6:.1f} µs"


def connect_close(path: Path, read_only: bool, n: int = 200) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        duckdb.connect(str(path), read_only=read_only).close()
        out.append(time.perf_counter() - t)
    return out


def old_path(db: Path, requests: int, chunks: int) -> tuple[list[float], float]:
    """What record() cost before: a synchronous transaction on a connection open for the process's life."""
    store = Store(db)
    run_id = store.start_run(kind="suite", engine="bench", model="m", environment={"device": "CPU"})
    con = duckdb.connect(str(db))  # the old Store kept this open
    times = []
    t0 = time.perf_counter()
    for i in range(requests):
        r = synthetic(i, chunks)
        m = request_metrics(r)
        t = time.perf_counter()
        row = RequestRow(i, "c", i, None, 0.0, "p", 5, m.output_tokens, chunks, None, None, None, m.tps, True,
                         "length", None, r.text, chunk_t_ns=[x - r.st_ns for x in r.chunk_ns],
                         chunk_tokens=list(r.chunk_tokens))
        con.execute("BEGIN")
        insert_request(con, run_id, row)
        con.execute("COMMIT")
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    con.close()
    return times, requests / total


def new_path(db: Path, requests: int, chunks: int, during=None) -> tuple[list[float], float, dict]:
    store = Store(db)
    rec = RunRecorder(store)
    run_id = rec.start(kind="suite", engine_description={"engine": "bench"}, environment={"device": "CPU"})
    records = [synthetic(i, chunks) for i in range(requests)]
    metrics = [request_metrics(r) for r in records]
    times = []
    t0 = time.perf_counter()
    for i, (r, m) in enumerate(zip(records, metrics)):
        if during and i == requests // 4:
            during()
        t = time.perf_counter()
        rec.record(i, r, m)
        times.append(time.perf_counter() - t)
    rec.finish("completed", duration_s=1.0)
    total = time.perf_counter() - t0
    stored = len(store.get_requests(run_id))
    writer = rec.writer
    info = {"stored": stored, "batches": writer.batches, "written": writer.written}
    store.close()
    return times, requests / total, info


def with_second_writer(db: Path, fn):
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.concurrent_writer", str(db),
                             "--until", str(db) + ".stop", "--requests", "10", "--chunks", "200"],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    try:
        return fn()
    finally:
        Path(str(db) + ".stop").touch()
        out = proc.communicate(timeout=120)[0]
        print(f"    (second process: {out.strip()[:60]}…)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--chunks", type=int, default=200)
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tokentop-dbbench-"))

    print("(a) connect+close")
    small = tmp / "small.duckdb"
    c = duckdb.connect(str(small))
    c.execute("CREATE TABLE t AS SELECT range AS x FROM range(100)")
    c.close()
    print("  small file, read-write:", ms(connect_close(small, False)))
    print("  small file, read-only: ", ms(connect_close(small, True)))
    print("  :memory: (no file)     ", ms([_t(lambda: duckdb.connect(':memory:').close()) for _ in range(200)]))
    full = tmp / "store.duckdb"
    s = Store(full)
    for _ in range(50):
        record_run(s, 10, 200, "fill")
    s.close()
    print("  tokentop store, 50 runs / 500 requests / 100k chunks, read-only:", ms(connect_close(full, True)))

    print(f"(b) recording {a.requests} requests of {a.chunks} chunks each")
    times, rate = old_path(tmp / "old.duckdb", a.requests, a.chunks)
    print(f"  before (sync add_request, connection kept open): caller {ms(times)}; {rate:.0f} req/s")
    times, rate, info = new_path(tmp / "new.duckdb", a.requests, a.chunks)
    print(f"  now, alone:                       caller {us(times)}; first record→all stored: {rate:.0f} req/s; {info}")
    times, rate, info = with_second_writer(tmp / "busy.duckdb",
                                           lambda: new_path(tmp / "busy.duckdb", a.requests, a.chunks))
    print(f"  now, second process writing:      caller {us(times)}; first record→all stored: {rate:.0f} req/s; {info}")

    holder: list[subprocess.Popen] = []

    def hold() -> None:
        proc = subprocess.Popen([sys.executable, "-c", HOLD_2S, str(tmp / "held.duckdb")], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "held"
        holder.append(proc)

    Store(tmp / "held.duckdb").close()
    times, rate, info = new_path(tmp / "held.duckdb", a.requests, a.chunks, during=hold)
    holder[0].wait()
    print(f"  now, lock held 2 s by another:    caller {us(times)}; first record→all stored: {rate:.0f} req/s; {info}")

    print("(c) a read: Store.list_runs() on the 50-run store")
    s = Store(full)
    print("  alone:                  ", ms([_t(s.list_runs) for _ in range(50)]))
    print("  second process writing: ", with_second_writer(full, lambda: ms([_t(s.list_runs) for _ in range(50)])))


def _t(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
