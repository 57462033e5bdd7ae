"""One rule for the figures a stored run shows, so every view of it agrees: History, `tokentop runs`,
`tokentop show`, run detail (its table and charts), side by side and the costs.

* Which requests count. A run's figures (TTFT, TPS, TPOT, ITL) come from its successful requests, as
  `vllm bench serve` computes them; failed and stopped requests are left out. One exception: an
  interactive run is a single request, and one stopped mid-stream (Esc, quit) is summarised by what it
  streamed (its TTFT, tokens and partial TPS; engine.orchestrator does the same for the stored summary).
* Which speed a run's per-request TPS is. Output tokens / E2EL is the article's **batch-1 TPS** only when
  requests ran one at a time: suite and interactive runs, and load levels at concurrency 1. A load level
  that ran several requests beside each other measures **per-user speed** (tok/s one user sees): a
  different figure, shown in its own column and never sorted, averaged or costed with batch-1 TPS.
* Which span of a load level. Its throughputs and latencies are over its whole run (first send to last
  token, ramp-up and drain included), as `vllm bench serve` reports them, and so are the costs and the
  SLO answer (data.analysis.compare, data.analysis.frontier). The figures over its plateau (steady state, vllm-bench's
  rule: engine.measure.metrics.steady_state) are stored beside them and shown by `tokentop load` and
  `show`; nothing is costed on them yet.
"""

from __future__ import annotations

import json
import math
from typing import Any

BATCH1 = "batch1"
PER_USER = "per_user"
# Column headers, the same everywhere.
BATCH1_HEADER = "b1 TPS"
PER_USER_HEADER = "user tok/s"

# The figures costs and SLO answers use for a load level (module docstring), said wherever they are shown.
LOAD_FIGURES = "whole run"
LOAD_FIGURES_NOTE = "figures: each level's whole run, ramp-up and drain included (not its plateau)"

# The SQL form of counts() (the requests a run's figures count) is data.store.database.COUNTED_SQL:
# the store computes summaries with it.


def counts(run_kind: str | None, request: dict[str, Any]) -> bool:
    """Whether a stored request (a `requests` row) counts in its run's figures (COUNTED_SQL in Python)."""
    if request.get("success"):
        return True
    return run_kind == "interactive" and request.get("ttft_ms") is not None and request.get("e2el_ms") is not None


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value.lower() in ("inf", "infinity"):
            return math.inf
        try:
            return float(value)
        except ValueError:
            return None
    if isinstance(value, (int, float)):
        return float(value)
    return None


def stored_json(value: Any) -> Any:
    """A JSON column of a stored row (suite_json, workload, environment...): DuckDB hands JSON back as
    text, which is decoded; any other value is returned as it is; text that is not JSON gives None."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def load_setting(run: dict[str, Any]) -> dict[str, Any]:
    """A load level's settings ({request_rate, max_concurrency, ...}) from a run row or a list_runs row."""
    settings = stored_json(run.get("suite_json"))
    load = (settings or {}).get("load") if isinstance(settings, dict) else None
    if isinstance(load, dict):
        return load
    return {"request_rate": run.get("request_rate"), "max_concurrency": run.get("max_concurrency")}


def speed_kind(run: dict[str, Any]) -> str:
    """BATCH1 or PER_USER: what a run's mean per-request TPS (output tokens / E2EL) is (module docstring)."""
    if run.get("kind") != "load":
        return BATCH1
    load = load_setting(run)
    rate = _number(load.get("request_rate"))
    concurrency = _number(load.get("max_concurrency"))
    if (rate is None or math.isinf(rate)) and concurrency == 1:
        return BATCH1
    return PER_USER


def speed_header(run: dict[str, Any]) -> str:
    return BATCH1_HEADER if speed_kind(run) == BATCH1 else PER_USER_HEADER


def what_ran(run: dict[str, Any]) -> str:
    """A short 'what': 'suite seed', 'interactive', 'load c=4', 'load 2/s', 'load 2/s c≤8'."""
    kind = run.get("kind") or "?"
    if kind == "suite":
        return f"suite {run.get('suite') or ''}".strip()
    if kind != "load":
        return kind
    load = load_setting(run)
    rate = _number(load.get("request_rate"))
    concurrency = _number(load.get("max_concurrency"))
    if rate is None or math.isinf(rate):
        return f"load c={concurrency:g}" if concurrency else "load"
    text = f"load {rate:g}/s"
    return text + (f" c≤{concurrency:g}" if concurrency else "")


def split_speeds(run: dict[str, Any], mean_tps: float | None) -> tuple[float | None, float | None]:
    """(batch-1 TPS, per-user speed): the run's mean per-request TPS in the one column it belongs to."""
    if mean_tps is None:
        return None, None
    return (mean_tps, None) if speed_kind(run) == BATCH1 else (None, mean_tps)
