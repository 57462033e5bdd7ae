"""Which workload a stored run ran: runs.workload_key / workload_label (schema 007), or, for a run stored
before workloads were recorded, derived from what it kept (suite_json).

The key decides what may be averaged or compared as one: the matrix, the SLO answer and the frontier
group runs by it, and side by side marks runs whose keys differ.
  * a suite run of that time kept its whole suite (cases, temperature): its key is the one a run of the
    same suite gets today, so old and new runs of the article's suite stay together;
  * a load run of that time kept only its lengths: its prompts were built another way (the openai engine
    sent input_len - 1 words), so it is its own workload, "random I→O (before workloads)";
  * an interactive prompt is "interactive".

A label names a workload for people; two workloads may still share one (the same lengths at another
temperature, runs stored before a label said the think time): wherever labels are shown side by side
(History, `tokentop runs`, Compare), `workload_labels` appends the start of the key to each label that
several keys share ("random 128→128 3 turns #3fa2"), so one label is one workload.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable

from data.analysis.run_figures import stored_json
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


def distinct_labels(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """{workload key: label}, one label per key (the first given wins), unique: a label that several keys
    share gets ' #' and the shortest start of each key (4 hex digits or more) that tells them apart."""
    first: dict[str, str] = {}
    for key, label in pairs:
        if key and key not in first:
            first[str(key)] = str(label or key)
    keys_of: dict[str, list[str]] = defaultdict(list)
    for key, label in first.items():
        keys_of[label].append(key)
    out: dict[str, str] = {}
    for label, keys in keys_of.items():
        if len(keys) == 1:
            out[keys[0]] = label
            continue
        n = 4
        while len({k[:n] for k in keys}) < len(keys):
            n += 1
        out.update({k: f"{label} #{k[:n]}" for k in keys})
    return out


def workload_labels(store) -> dict[str, str]:
    """{workload key: label} of every workload in the database (data.store.database.Store), made unique with
    `distinct_labels`, the newest run's label first. Runs stored before workloads were recorded have no
    key in the table and derived labels of their own ("… (before workloads)"): not in the map."""
    rows = store.query("""SELECT workload_key AS key, workload_label AS label, max(started_at) AS newest
                          FROM runs WHERE workload_key IS NOT NULL
                          GROUP BY ALL ORDER BY newest DESC NULLS LAST, key""")
    return distinct_labels((r["key"], r["label"]) for r in rows)


def label_runs(store, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give each run row (Store.list_runs' dicts) its workload: `workload_key` and `workload_label` filled
    in, for old runs too (derived from what they stored), labels unique across the database. Returns the
    same list, changed in place."""
    labels = workload_labels(store)
    legacy = [r["run_id"] for r in runs if not r.get("workload_key") and "suite_json" not in r]
    kept: dict[str, Any] = {}
    if legacy:  # list_runs does not read suite_json: fetch it for the few runs that need it
        marks = ", ".join("?" * len(legacy))
        kept = {r["run_id"]: r["suite_json"] for r in
                store.query(f"SELECT run_id, suite_json FROM runs WHERE run_id IN ({marks})", legacy)}
    for run in runs:
        source = {**run, "suite_json": kept[run["run_id"]]} if run["run_id"] in kept else run
        key, label = run_workload(source)
        run["workload_key"], run["workload_label"] = key, labels.get(key, label)
    return runs

