"""The client checks itself: a run whose engine loop is starved on purpose says so — in the stored
run, in `tokentop show`, and in `--json` — and the self-check's figures mean what they say."""

from __future__ import annotations

import json
import time

from data.jobs.load import LoadSpec, run_load
from data.jobs.session import Session
from data.store.database import Store
from engine.load import LoadLevel
from engine.measure.client_health import assess, lag_threshold_ms
from engine.types import GenerationRequest, RequestRecord
from tests.support.fake_openai import ReplayServer, plain_stream
from tests.support.prompts import PromptSource
from tui.cli import main


class Starver:
    """Blocks the engine loop for `block_s` every `every_s`, as a slow callback on that loop would."""

    def __init__(self, loop, block_s: float = 0.03, every_s: float = 0.02):
        self.loop, self.block_s, self.every_s = loop, block_s, every_s
        self.running = True

    def start(self) -> None:
        self.loop.call_soon_threadsafe(self._tick)

    def _tick(self) -> None:
        if self.running:
            time.sleep(self.block_s)  # on purpose: the engine loop can do nothing else meanwhile
            self.loop.call_later(self.every_s, self._tick)

    def stop(self) -> None:
        self.running = False


def _load(server: ReplayServer, db, starve: bool):
    store = Store(db)
    session = Session(store, dict(engine="openai", endpoint=server.url))
    session.start_engine()
    starver = Starver(session.host.loop)
    try:
        if starve:
            starver.start()
        spec = LoadSpec(levels=[LoadLevel(max_concurrency=2, num_prompts=6)],
                        prompts=PromptSource(input_len=8, output_len=20))
        outcome = run_load(session, spec)
    finally:
        starver.stop()
        session.shutdown()
    return store, outcome.levels[0]


def test_starved_engine_loop_is_warned_stored_and_shown(tmp_path, capsys):
    with ReplayServer(plain_stream(20), delay_s=0.003) as server:
        store, level = _load(server, tmp_path / "h.duckdb", starve=True)
    health = level.summary["client_health"]
    assert health["loop_lag_ms"]["mean"] > health["lag_threshold_ms"]
    assert any("event loop lagged" in w for w in health["warnings"])
    # every request carries its send lag and its wait on the concurrency limit
    rows = store.get_requests(level.run_id)
    assert all(r["send_lag_ms"] is not None and r["queue_wait_ms"] is not None for r in rows)
    assert sum(1 for r in rows if r["queue_wait_ms"] > 0) >= 4  # 6 requests, 2 users: 4 had to wait
    stored = store.query("SELECT client_health FROM runs WHERE run_id = ?", [level.run_id])[0]["client_health"]
    assert "event loop lagged" in json.dumps(json.loads(stored) if isinstance(stored, str) else stored)
    store.close()

    db = str(tmp_path / "h.duckdb")
    assert main(["--db", db, "show", level.run_id]) == 0
    assert "warning: client event loop lagged" in capsys.readouterr().out
    assert main(["--db", db, "show", level.run_id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert any("event loop lagged" in w for w in shown["warnings"])
    assert shown["client_health"]["loop_lag_ms"]["mean"] > shown["client_health"]["lag_threshold_ms"]


def _record(st_ns: int, chunk_tokens: list[int], *, scheduled_ns=None, queue_wait_ns=None) -> RequestRecord:
    r = RequestRecord(request=GenerationRequest(prompt="p", max_tokens=len(chunk_tokens)))
    r.st_ns = st_ns
    r.chunk_ns = [st_ns + 100_000_000 + i * 10_000_000 for i in range(len(chunk_tokens))]
    r.chunk_tokens = chunk_tokens
    r.success = True
    r.scheduled_ns, r.queue_wait_ns = scheduled_ns, queue_wait_ns
    return r


def test_several_tokens_per_chunk_warns_that_itl_is_per_chunk():
    health = assess([_record(0, [0, 4, 4, 4]), _record(10**9, [0, 4, 4])], loop_lags_s=[0.0001] * 50)
    assert health["tokens_per_chunk"] == 4.0
    assert any("tokens per chunk" in w for w in health["warnings"])
    assert not any("event loop" in w for w in health["warnings"])


def test_send_lag_excludes_the_intended_wait_on_the_concurrency_limit():
    # scheduled at 0; waited 500 ms on the limit; sent at 501 ms: 1 ms late, not 501.
    late = _record(501_000_000, [1, 1], scheduled_ns=0, queue_wait_ns=500_000_000)
    on_time = _record(0, [1, 1], scheduled_ns=0, queue_wait_ns=0)
    health = assess([late, on_time], loop_lags_s=[])
    assert health["send_lag_ms"]["max"] == 1.0
    assert health["queue_wait_ms"]["max"] == 500.0
    assert not health["warnings"]
    assert any("concurrency limit" in n for n in health["notes"])


def test_lag_threshold_is_five_percent_of_ttft_with_a_floor():
    assert lag_threshold_ms(400.0) == 20.0
    assert lag_threshold_ms(10.0) == 2.0
    assert lag_threshold_ms(None) == 2.0


class Burner(Starver):
    """Keeps the engine loop's thread on a CPU (a busy loop, not a sleep): the client itself is the limit."""

    def _tick(self) -> None:
        if self.running:
            end = time.perf_counter() + self.block_s
            while time.perf_counter() < end:  # on purpose: CPU work on the loop thread
                pass
            self.loop.call_later(self.every_s, self._tick)


def _level_with(server, db, loop_hog=None, **spec_kw):
    store = Store(db)
    session = Session(store, dict(engine="openai", endpoint=server.url))
    session.start_engine()
    hog = loop_hog(session.host.loop) if loop_hog else None
    try:
        if hog:
            hog.start()
        spec = LoadSpec(levels=[LoadLevel(max_concurrency=2, num_prompts=6)],
                        prompts=PromptSource(input_len=8, output_len=20), **spec_kw)
        outcome = run_load(session, spec)
    finally:
        if hog:
            hog.stop()
        session.shutdown()
    return store, outcome.levels[0]


def test_a_level_the_client_itself_limited_is_flagged_with_its_cpu(tmp_path, capsys):
    """The engine loop kept busy on a CPU for the whole level: its CPU figures say so, the level is marked
    client-bound with one warning (stored, shown); the same level without the hog is not."""
    hog = lambda loop: Burner(loop, block_s=0.05, every_s=0.0005)  # noqa: E731
    with ReplayServer(plain_stream(20), delay_s=0.003) as server:
        store, level = _level_with(server, tmp_path / "bound.duckdb", hog)
        _, calm = _level_with(server, tmp_path / "calm.duckdb")
    health = level.summary["client_health"]
    (cpu,) = health["client_cpu"]
    # running or waiting for a CPU nearly all the level (this busy box lends it a core only part of the time)
    assert cpu["loop_runnable"] >= 0.9 and cpu["loop_busy"] > 0.2 and cpu["process_cores"] > 0.2
    assert health["client_bound"] is True
    bound = [w for w in health["warnings"] if "the client was the bottleneck" in w]
    assert len(bound) == 1 and "--client-processes" in bound[0]
    calm_health = calm.summary["client_health"]
    assert calm_health["client_bound"] is False
    assert not any("the client was the bottleneck" in w for w in calm_health["warnings"])
    assert calm_health["client_cpu"][0]["loop_runnable"] < 0.9
    store.close()
    db = str(tmp_path / "bound.duckdb")
    assert main(["--db", db, "show", level.run_id]) == 0
    out = capsys.readouterr().out
    assert "warning: the client was the bottleneck" in out and "loop busy" in out


def test_each_client_process_joins_the_self_check(tmp_path):
    """With 2 client processes the level's self-check holds each worker's CPU use (its own pid) and the
    parent's, and the worker loops' lags."""
    with ReplayServer(plain_stream(20), delay_s=0.003) as server:
        store, level = _level_with(server, tmp_path / "two.duckdb", client_processes=2)
    health = level.summary["client_health"]
    cpu = health["client_cpu"]
    assert [c["worker"] for c in cpu] == [1, 2] and len({c["pid"] for c in cpu}) == 2
    assert all(c["process_cores"] > 0 and 0 < c["loop_runnable"] <= 1 for c in cpu)
    assert health["client_processes"] == 2 and health["parent_process_cores"] is not None
    assert health["loop_lag_ms"]["n"] > 0
    store.close()


def test_the_busiest_worker_is_named_in_the_warning():
    cpu = [{"worker": 1, "loop_runnable": 0.4, "loop_busy": 0.4, "loop_waiting": 0.0, "process_cores": 0.4},
           {"worker": 2, "loop_runnable": 0.97, "loop_busy": 0.9, "loop_waiting": 0.07, "process_cores": 1.0}]
    health = assess([_record(0, [1, 1])], loop_lags_s=[], cpu=cpu)
    (warning,) = [w for w in health["warnings"] if "bottleneck" in w]
    assert "worker 2's event loop (1 of 2 workers)" in warning and "97%" in warning
    assert health["client_bound"] is True
    assert assess([_record(0, [1, 1])], loop_lags_s=[])["client_bound"] is None
