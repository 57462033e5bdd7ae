"""Which workload a stored run ran: runs.workload_key / workload_label (schema 007), or, for a run stored
before workloads were recorded, derived from what it kept (suite_json).

The key decides what may be averaged or compared as one: the matrix, the SLO answer and the frontier
group runs by it, and side by side marks runs whose keys differ.
  * a suite run of that time kept its whole suite (cases, temperature): its key is the one a run of the
    same suite gets today, so old and new runs of the article's suite stay together;
  * a load run of that time kept only its lengths: its prompts were built another way (the openai engine
    sent input_len - 1 words), so it is its own workload, "random I→O (before workloads)";
  * an interactive prompt is "interactive".
"""

from __future__ import annotations

from typing import Any

from data.run_figures import stored_json
from engine.workloads.base import workload_key


def run_workload(run: dict[str, Any]) -> tuple[str, str]:
    """(workload key, label) of a stored run row (any of runs' columns; suite_json, kind and suite used
    for runs stored before schema 007)."""
    key, label = run.get("workload_key"), run.get("workload_label")
    if key:
        return str(key), str(label or key)
    kind = run.get("kind")
    settings = stored_json(run.get("suite_json")) or {}
    if kind == "interactive":
        return _named("interactive", "interactive", {})
    if kind == "suite":
        return _suite_identity(settings, run.get("suite") or settings.get("name") or "?")
    if kind == "load":
        prompts = settings.get("prompts") or {}
        if prompts.get("suite"):
            name = prompts["suite"]
            return _named("legacy-load-suite", f"suite {name} (before workloads)",
                          {"suite": name, "output_len": prompts.get("output_len")})
        i, o = prompts.get("input_len"), prompts.get("output_len")
        return _named("legacy-random", f"random {i}→{o} (before workloads)", {"input_len": i, "output_len": o})
    return _named(str(kind or "?"), str(kind or "?"), {})


def _named(kind: str, label: str, params: dict[str, Any]) -> tuple[str, str]:
    return workload_key({"kind": kind, "params": params}), label


def _suite_identity(settings: dict[str, Any], name: str) -> tuple[str, str]:
    """The key today's Suite.workload_identity() gives the suite kept in suite_json."""
    from engine.workloads.suites import parse_suite

    try:
        raw = {k: v for k, v in settings.items() if k in ("name", "cases", "reps", "temperature", "top_p",
                                                           "enforce_length", "description")}
        suite = parse_suite(raw, default_name=name)
        ident = suite.workload_identity()
        return ident["key"], ident["label"]
    except Exception:
        return _named("suite", f"suite {name}", {"suite": name})
