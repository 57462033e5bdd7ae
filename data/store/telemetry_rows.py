"""Storing and reading GPU and server telemetry samples (tables from migration 003)."""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

from data.store.database import Store
from engine.telemetry.gpu import GpuSample
from engine.telemetry.server import ServerSample

_GPU_COLS = ("util_pct", "mem_util_pct", "mem_used_mb", "mem_total_mb", "power_w", "power_limit_w", "temp_c",
             "sm_clock_mhz", "mem_clock_mhz", "energy_counter_j")
_SERVER_COLS = ("running", "waiting", "kv_cache_usage", "prefix_cache_queries", "prefix_cache_hits", "preemptions",
                "generation_tokens", "ttft_count", "ttft_sum_s")


def add_gpu_samples(store: Store, run_id: str, samples: Sequence[GpuSample], t0_s: float) -> int:
    """Samples' t_s are perf_counter seconds; stored relative to the run's start t0_s."""
    if not samples:
        return 0
    rows = [[run_id, s.t_s - t0_s, s.gpu_index, *[getattr(s, c) for c in _GPU_COLS]] for s in samples]
    placeholders = ", ".join(["?"] * (3 + len(_GPU_COLS)))
    with store.connection() as con:
        con.executemany(
            f"INSERT INTO gpu_samples (run_id, t_s, gpu_index, {', '.join(_GPU_COLS)}) VALUES ({placeholders})", rows
        )
    return len(rows)


def add_server_samples(store: Store, run_id: str, samples: Sequence[ServerSample], t0_s: float) -> int:
    if not samples:
        return 0
    rows = [[run_id, s.t_s - t0_s, s.source, *[getattr(s, c) for c in _SERVER_COLS], json.dumps(s.ttft_buckets)]
            for s in samples]
    placeholders = ", ".join(["?"] * (3 + len(_SERVER_COLS) + 1))
    with store.connection() as con:
        con.executemany(
            f"INSERT INTO server_samples (run_id, t_s, source, {', '.join(_SERVER_COLS)}, ttft_buckets) "
            f"VALUES ({placeholders})",
            rows,
        )
    return len(rows)


def _dicts(store: Store, sql: str, params: Iterable[Any]) -> list[dict[str, Any]]:
    return store.query(sql, params)


def get_gpu_samples(store: Store, run_id: str) -> list[dict[str, Any]]:
    return _dicts(store, "SELECT * FROM gpu_samples WHERE run_id = ? ORDER BY t_s, gpu_index", [run_id])


def get_server_samples(store: Store, run_id: str) -> list[dict[str, Any]]:
    rows = _dicts(store, "SELECT * FROM server_samples WHERE run_id = ? ORDER BY t_s", [run_id])
    for row in rows:
        if isinstance(row.get("ttft_buckets"), str):
            row["ttft_buckets"] = json.loads(row["ttft_buckets"])
    return rows
