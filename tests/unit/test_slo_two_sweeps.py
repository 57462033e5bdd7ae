"""`tokentop compare --slo` on a store holding two sweeps of the same workload (issue 24's README walk:
"concurrency 1" twice, nothing to tell the runs apart): each level says which sweep it came from, and
every line still fits 80 cells. The store is built with the real Store and RunRecorder
(tests.support.matrix_support)."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from rich.cells import cell_len

import tests.support.matrix_support as matrix_support
from data.store.database import Store
from tui.cli import main


def build_two_sweeps(path) -> list[str]:
    """One H100 box that ran the same concurrency sweep (1, 2, 4 on random 128→100) twice: the load
    levels' run ids, in the order they started."""
    one = matrix_support.fixture

    def twice(name: str) -> dict:
        box = one(name)
        box["sweeps"] = box["sweeps"] * 2
        return box

    with mock.patch.object(matrix_support, "fixture", twice):
        matrix_support.build_box(path, "box_h100_runpod").close()
    with Store(path) as store:
        return [r["run_id"] for r in store.query("SELECT run_id FROM runs WHERE kind = 'load' ORDER BY started_at")]


@pytest.fixture
def two_sweeps(tmp_path):
    path = tmp_path / "two.duckdb"
    loads = build_two_sweeps(path)
    assert len(loads) == 6
    return str(path), loads


def level_lines(out: str) -> list[str]:
    return [line.rstrip() for line in out.splitlines() if "concurrency " in line and "tok/s at" not in line]


def test_two_sweeps_of_one_workload_are_told_apart_within_80_columns(two_sweeps, capsys, monkeypatch):
    path, loads = two_sweeps
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["--db", path, "compare", "--slo", "ttft=500,tpot=50"]) == 0
    out = capsys.readouterr().out
    assert [f"{cell_len(line)}: {line}" for line in out.splitlines() if cell_len(line) > 80] == []
    rows = level_lines(out)
    assert len(rows) == 6, out
    assert len(set(rows)) == 6, out  # no two rows read the same: "concurrency 1" twice was
    assert [r.split()[0] for r in rows] == ["#1"] * 3 + ["#2"] * 3, out
    # Each tag is named: the sweep's first level, a run id `tokentop show` takes.
    assert f"sweep #1: its first level is run {loads[0]}" in out and f"sweep #2: its first level is run {loads[3]}" in out


def test_two_sweeps_json_names_each_level_s_sweep(two_sweeps, capsys):
    path, loads = two_sweeps
    assert main(["--db", path, "compare", "--slo", "ttft=500", "--json"]) == 0
    (answer,) = json.loads(capsys.readouterr().out)["answers"]
    assert answer["sweeps"] == {loads[0]: "#1", loads[3]: "#2"}
    assert [lv["sweep_id"] for lv in answer["levels"]] == [loads[0]] * 3 + [loads[3]] * 3
