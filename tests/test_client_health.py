"""The client checks itself: a run whose engine loop is starved on purpose says so — in the stored
run, in `tokentop show`, and in `--json` — and the self-check's figures mean what they say."""

from __future__ import annotations

import json
import time

from data.load_runs import LoadSpec, run_load
from data.session import Session
from data.store import Store
from engine.measure.client_health import assess, lag_threshold_ms
from engine.load import LoadLevel, PromptSource
from engine.types import GenerationRequest, RequestRecord
from tests.sse_replay import ReplayServer, plain_stream
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
