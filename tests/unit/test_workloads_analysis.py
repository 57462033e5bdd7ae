"""Two workloads on one GPU stay apart: the GPU x provider matrix, the SLO answer and the frontier group
runs by workload and name it; `compare` and side by side mark runs that ran different workloads; the
workload travels with a run in bundles and through remotes."""

from __future__ import annotations

import json
import subprocess

import pytest

from data.jobs.load import LoadSpec, level_settings
from data.store.database import Store
from data.store.recorder import RunRecorder
from engine.load import LoadLevel, summarise_level
from engine.measure.metrics import json_safe, request_metrics
from engine.workloads import WorkloadOptions, make_workload
from tests.support.matrix_support import MS, T0, build_box, environment, fixture, record_for
from tests.support.wait import wait_for
from tui.cli import main


def add_sweep(store: Store, workload, levels: list[tuple[int, float, list]]) -> list[str]:
    """A sweep stored as `tokentop load` stores it: (max concurrency, duration s, [[TTFT ms, ITL ms, tokens]])."""
    box = fixture("box_h100_runpod")
    env = environment(box)
    desc = {"engine": "vllm", "model": box["model"], "dtype": "bfloat16", "engine_args": box["engine_args"]}
    spec = LoadSpec(levels=[LoadLevel(max_concurrency=c, num_prompts=len(r)) for c, _d, r in levels], prompts=workload)
    ids = []
    for index, (level, (_c, duration, reqs)) in enumerate(zip(spec.levels, levels)):
        rec = RunRecorder(store)
        rec.start(kind="load", engine_description=desc, environment=json.loads(json.dumps(env)), suite="load",
                  suite_json=level_settings(spec, level, index), workload=workload.identity())
        rec.set_origin(T0)
        metrics = []
        for i, (req, spec_) in enumerate(zip(workload.requests(len(reqs)), reqs)):
            record = record_for(req, spec_, T0 + i * 10 * MS)
            m = request_metrics(record)
            rec.record(i, record, m)
            metrics.append(m)
        result = summarise_level(level, metrics, duration, None).to_dict()
        rec.finish("completed", duration_s=duration,
                   summary=json_safe({"cases": {level.label: result}, "overall": result, "load": result}))
        ids.append(rec.run_id)
    return ids


@pytest.fixture
def two_workloads(tmp_path):
    """The H100 box's runs (the seed suite, a random 128→100 sweep), then a sweep of a user's JSONL prompts on
    the same GPU: much faster tokens (short prompts), which must not lift the random sweep's figures."""
    db = tmp_path / "h100.duckdb"
    store = build_box(db, "box_h100_runpod")
    prompts = tmp_path / "chat.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"hi {i}", "output_tokens": 50}) + "\n" for i in range(8)))
    custom = make_workload(WorkloadOptions(dataset_name="custom", dataset_path=str(prompts)))
    ids = add_sweep(store, custom, [(1, 0.6, [[10, 2.0, 50]] * 4), (4, 0.7, [[15, 2.5, 50]] * 8)])
    store.close()
    return db, custom.identity(), ids


def cli_json(capsys, db, *args):
    capsys.readouterr()
    assert main(["--db", str(db), "compare", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_matrix_never_averages_two_workloads(capsys, two_workloads):
    db, custom, _ = two_workloads
    out = cli_json(capsys, db, "--matrix")
    runpod = {r["workload"]: r for r in out["rows"] if r["gpu_key"] == "H100-SXM-80" and r["provider"] == "runpod"}
    label = custom["label"]
    assert set(runpod) == {"suite seed", "random 128→100", label}
    # each row's figures come from its own workload's runs only
    assert runpod[label]["load_throughput"]["n"] == 1 and runpod["random 128→100"]["load_throughput"]["n"] == 1
    assert runpod[label]["load_throughput"]["mean"] == pytest.approx(8 * 50 / 0.7)
    assert runpod["random 128→100"]["load_throughput"]["mean"] == pytest.approx(8 * 100 / 2.0)  # unchanged
    assert runpod[label]["batch1_tps"]["n"] == 1 and runpod["suite seed"]["batch1_tps"]["n"] == 2
    assert runpod[label]["workload_key"] == custom["key"]
    # the cheapest on each basis is marked within each workload
    assert sum(1 for r in out["rows"] if r["workload"] == label and "throughput under load" in r["cheapest"]) == 1
    assert sum(1 for r in out["rows"] if r["workload"] == "random 128→100"
               and "throughput under load" in r["cheapest"]) == 1
    capsys.readouterr()
    assert main(["--db", str(db), "compare", "--matrix"]) == 0
    text = capsys.readouterr().out
    assert f"workload {label}" in text and "workload random 128→100" in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_the_slo_answer_and_the_frontier_are_per_workload(capsys, two_workloads):
    db, custom, ids = two_workloads
    out = cli_json(capsys, db, "--slo", "ttft=500,tpot=50")
    answers = {a["workload"]: a for a in out["answers"] if a["gpu_key"] == "H100-SXM-80"}
    assert set(answers) == {"random 128→100", custom["label"]}
    assert answers[custom["label"]]["best"]["run_id"] == ids[1]
    assert answers["random 128→100"]["best"]["label"] == "concurrency 2"  # as before the other workload came
    assert all(lv["workload"] == a for a, ans in answers.items() for lv in ans["levels"])
    assert answers[custom["label"]]["cheapest_overall"] and answers["random 128→100"]["cheapest_overall"]

    frontier = cli_json(capsys, db, "--frontier")
    points = [p for p in frontier["points"] if p["gpu_key"] == "H100-SXM-80"]
    by = {}
    for p in points:
        by.setdefault(p["workload"], []).append(p)
    assert len(by["random 128→100"]) == 3 and len(by[custom["label"]]) == 2
    # the custom sweep's levels are faster on both axes, yet the random sweep keeps its own front
    assert all(p["pareto_user"] for p in by["random 128→100"])
    capsys.readouterr()
    assert main(["--db", str(db), "compare", "--frontier"]) == 0
    text = capsys.readouterr().out
    assert text.index("workload random 128→100") != text.index(f"workload {custom['label']}")


def test_compare_marks_runs_of_different_workloads(capsys, two_workloads):
    db, custom, ids = two_workloads
    with Store(db) as store:
        other = next(r["run_id"] for r in store.list_runs() if r["workload_label"] == "random 128→100")
    out = cli_json(capsys, db, ids[0], other)
    assert out["workloads_differ"] is True
    assert [r["workload"] for r in out["runs"]] == [custom["label"], "random 128→100"]
    capsys.readouterr()
    assert main(["--db", str(db), "compare", ids[0], other]) == 0
    assert "≠ these runs ran different workloads" in capsys.readouterr().out
    assert cli_json(capsys, db, ids[0], ids[1])["workloads_differ"] is False


async def test_side_by_side_marks_a_different_workload(two_workloads):
    from textual.app import App

    from tui.screens.side_by_side import SideBySideScreen

    db, custom, ids = two_workloads
    with Store(db) as store:
        other = next(r["run_id"] for r in store.list_runs() if r["workload_label"] == "random 128→100")

    class Host(App):
        def __init__(self):
            super().__init__()
            self.store = Store(db)

        def on_mount(self):
            self.push_screen(SideBySideScreen([ids[0], other]))

    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.screen.runs, 30, "the two runs")
        assert "workload" in app.screen.differences
    app.store.close()


def test_the_workload_travels_in_bundles_and_remotes(tmp_path, two_workloads, tokentop_cmd, cli_env):
    db, custom, ids = two_workloads

    def run(*args):
        proc = subprocess.run([*tokentop_cmd, *args], capture_output=True, text=True, env=cli_env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc

    def identities(path):
        with Store(path) as s:
            rows = s.query("SELECT run_id, workload, workload_key, workload_label FROM runs WHERE run_id IN (?, ?)",
                           ids)
            reqs = s.query("SELECT prompt_form, target_input_tokens FROM requests WHERE run_id = ? "
                           "ORDER BY request_index", [ids[0]])
        return sorted((r["run_id"], json.loads(r["workload"]) if isinstance(r["workload"], str) else r["workload"],
                       r["workload_key"], r["workload_label"]) for r in rows), reqs

    bundle = tmp_path / "b.duckdb"
    run("export", *ids, "-o", str(bundle), "--db", str(db))
    run("import", str(bundle), "--db", str(tmp_path / "imported.duckdb"))
    remote = tmp_path / "remote"
    run("push", *ids, "--remote", str(remote), "--db", str(db))
    run("pull", "--remote", str(remote), "--db", str(tmp_path / "pulled.duckdb"))
    here = identities(db)
    assert here[0][0][2] == custom["key"] and here[0][0][1]["file"]["sha256"] == custom["file"]["sha256"]
    assert identities(tmp_path / "imported.duckdb") == here
    assert identities(tmp_path / "pulled.duckdb") == here
