"""`tokentop fleet` (issue 23, item 3): task files SkyPilot's own code accepts, a fleet file's mistakes as
one line, and launch / follow / pull / teardown with SkyPilot replaced at the fleet's one boundary by a
recording fake. Cells are simulated by recording runs into their own DuckDB (the store's own recorder)
and pushing them with the real push code to an S3 server (moto) on loopback, or by a real `tokentop
bench` process whose auto-push does it. SkyPilot writes ~/.sky on import: HOME is a temporary folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sky", reason="the fleet extra (skypilot) is not installed")

from data.fleet.launcher import FAILED, PROVISIONING, RUNNING, SETTING_UP, SUCCEEDED, Launched, Progress
from data.store.database import Store
from tests.support.fleet_support import FakeClock, RecordingSkyLauncher
from tests.support.loopback import fast_sse_server, moto_s3
from tests.support.transfer_support import record_run
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]

THREE_CELLS = """\
model = "llama-8b"
remote = "s3://fleet/team"
suite = "seed"
hours = 1.5

[[cell]]
gpu = "H100"
provider = "runpod"

[[cell]]
gpu = "A100-80GB"
provider = "lambda"

[[cell]]
gpu = "RTX4090"
provider = "vastai"
"""

# What each simulated cell measures on (the GPU name NVML gives, tokentop's key) and what the launcher
# "chose" for it (instance type, spot, the catalog's $/h).
BOXES = {
    1: ("runpod", "H100-SXM-80", "NVIDIA H100 80GB HBM3", Launched("1x_H100-SXM_SECURE", False, 3.99, "US")),
    2: ("lambda", "A100-SXM-80", "NVIDIA A100-SXM4-80GB", Launched("gpu_1x_a100_sxm4", False, 1.85, "us-east-1")),
    3: ("vastai", "RTX4090-24", "NVIDIA GeForce RTX 4090", Launched("1x-RTX_4090-16-64", True, 0.31, None)),
}


@pytest.fixture(scope="module", autouse=True)
def sky_home(tmp_path_factory):
    """SkyPilot creates ~/.sky when imported (and keeps the path): give it a HOME of its own."""
    home = tmp_path_factory.mktemp("home")
    old = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("HOME", None)
    else:
        os.environ["HOME"] = old


@pytest.fixture
def fleet_file(tmp_path) -> Path:
    p = tmp_path / "article.toml"
    p.write_text(THREE_CELLS)
    return p


@pytest.fixture
def s3(monkeypatch):
    """A real S3-compatible server (moto) on loopback with a bucket `fleet`; AWS variables point at it."""
    server = moto_s3(monkeypatch, secret="testing-secret-value")
    yield server.env
    server.stop()
    server.stop()


def run_cli(*argv: str, capsys) -> tuple[int, str, str]:
    from tui.cli import main

    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# -- plan --------------------------------------------------------------------------------------------
def test_plan_writes_a_task_per_cell_that_skypilots_own_code_accepts(tmp_path, fleet_file, capsys, monkeypatch):
    import sky
    import yaml
    from sky.utils import common_utils

    monkeypatch.setenv("TOKENTOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-write-me")
    monkeypatch.setenv("HF_TOKEN", "hf_do_not_write_me")
    out = tmp_path / "tasks"
    code, stdout, err = run_cli("fleet", "plan", str(fleet_file), "--out", str(out), "--json", capsys=capsys)
    assert code == 0, err
    plan = json.loads(stdout)
    files = sorted(out.glob("*.yaml"))
    assert len(files) == 3 and [Path(c["file"]) for c in plan["cells"]] == files
    want = {"runpod": "H100-SXM:1", "lambda": "A100-80GB:1", "vast": "RTX4090:1"}
    for path, cell in zip(files, plan["cells"]):
        text = path.read_text()
        assert "do-not-write-me" not in text and "hf_do_not_write_me" not in text
        config = yaml.safe_load(text)
        task = sky.Task.from_yaml_config(dict(config))  # SkyPilot's own parser and schema
        task.validate_name()
        task.validate_run()
        common_utils.check_cluster_name_is_valid(config["name"])
        infra = config["resources"]["infra"]
        assert config["resources"]["accelerators"] == want[infra]
        assert str(next(iter(task.resources)).cloud).lower() == infra
        assert all(value is None for value in config["secrets"].values())  # by name only
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HF_TOKEN"} <= set(config["secrets"])
        assert config["envs"]["TOKENTOP_REMOTE"] == f"s3://fleet/team/fleet/article/{config['name']}"
        assert config["workdir"] == str(ROOT) and config["setup"] == "bash scripts/setup.sh"
        run = config["run"]
        assert "tokentop bench --model llama-8b" in run and f"--provider {cell['provider']}" in run
        assert "--suite seed" in run and run.startswith("timeout --signal=INT")
    assert [c["provider"] for c in plan["cells"]] == ["runpod", "lambda", "vastai"]
    # tokentop's price (the bundled snapshot on a fresh database) and the cost of the 1.5 h cap
    for c in plan["cells"]:
        assert c["tokentop_usd_per_hour"] > 0 and c["tokentop_price_source"] == "snapshot"
        assert c["estimate_usd"] == pytest.approx(1.5 * c["tokentop_usd_per_hour"])
        assert c["skypilot_catalog_note"] == "catalog price: not available offline"
    assert plan["estimate_usd"] == pytest.approx(sum(c["estimate_usd"] for c in plan["cells"]))

    code, stdout, err = run_cli("fleet", "plan", str(fleet_file), "--out", str(out), capsys=capsys)
    assert code == 0, err
    assert max(len(line) for line in stdout.splitlines()) <= 80
    assert "catalog price: not available offline" in stdout and "estimated cost: $" in stdout


def test_plan_reads_skypilots_catalog_when_it_is_on_this_machine(tmp_path, fleet_file):
    """SkyPilot's Lambda catalog rows (skypilot-org/skypilot-catalog catalogs/v8/lambda/vms.csv, the
    columns and GpuInfo quoting as published; tests/fixtures/pricing/lambda_vms.csv) priced offline."""
    from data.fleet.plan import make_plan
    from data.fleet.spec import load_fleet

    root = tmp_path / "catalogs"
    (root / "lambda").mkdir(parents=True)
    (root / "lambda" / "vms.csv").write_text(
        "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,Region,GpuInfo,SpotPrice\n"
        "gpu_1x_a100_sxm4,A100-80GB,1.0,30.0,200.0,1.79,us-east-1,"
        "\"{'Gpus': [{'Name': 'A100-80GB', 'Manufacturer': 'NVIDIA', 'Count': 1.0, 'MemoryInfo': "
        "{'SizeInMiB': 81920}}], 'TotalGpuMemoryInMiB': 81920}\",\n"
        "gpu_8x_a100_80gb_sxm4,A100-80GB,8.0,240.0,1800.0,14.32,us-east-1,,\n"
        "gpu_1x_a100_sxm4,A100-80GB,1.0,30.0,200.0,not-a-number,us-west-1,,\n")
    plan = make_plan(load_fleet(fleet_file), workdir=ROOT, catalog_root=root, validate=False)
    lam = plan.cells[1]
    assert lam.catalog.usd_per_hour == 1.79 and lam.catalog.instance_type == "gpu_1x_a100_sxm4"
    assert lam.estimate_usd == pytest.approx(1.79 * 1.5)
    assert plan.cells[0].catalog.note == "catalog price: not available offline"


def test_a_load_table_plans_one_tokentop_load_command_with_its_dataset_copied(tmp_path, capsys, monkeypatch):
    import yaml

    monkeypatch.setenv("TOKENTOP_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "Name a colour.", "output_tokens": 5}\n' * 4)
    p = tmp_path / "sweep.toml"
    p.write_text('model = "m"\nremote = "s3://b/p"\n[load]\nconcurrency = [1, 2, 4]\nnum-prompts = 4\n'
                 'dataset-name = "custom"\ndataset-path = "prompts.jsonl"\ndisable-shuffle = true\n'
                 '[[cell]]\ngpu = "H100 PCIe"\nprovider = "lambda"\n')
    code, _, err = run_cli("fleet", "plan", str(p), "--out", str(tmp_path / "o"), capsys=capsys)
    assert code == 0, err
    (task_file,) = (tmp_path / "o").glob("*.yaml")
    task = yaml.safe_load(task_file.read_text())
    assert task["resources"]["accelerators"] == "H100:1"  # Lambda's name for its H100s
    assert task["file_mounts"] == {"~/tokentop-inputs/prompts.jsonl": str(tmp_path / "prompts.jsonl")}
    assert task["run"].endswith("tokentop load --model m --provider lambda --concurrency 1,2,4 --num-prompts 4 "
                                "--dataset-name custom --dataset-path ~/tokentop-inputs/prompts.jsonl "
                                "--disable-shuffle")
    # a bundled suite in [load] is a name, not a file to copy
    p.write_text(p.read_text().replace('dataset-name = "custom"\ndataset-path = "prompts.jsonl"\n', 'suite = "seed"\n'))
    code, _, err = run_cli("fleet", "plan", str(p), "--out", str(tmp_path / "o2"), capsys=capsys)
    assert code == 0, err
    (task_file,) = (tmp_path / "o2").glob("*.yaml")
    task = yaml.safe_load(task_file.read_text())
    assert "file_mounts" not in task and task["run"].endswith("--suite seed --disable-shuffle")


def test_the_real_launcher_fills_the_named_secrets_only_at_launch(tmp_path, fleet_file):
    """SkyLauncher's task: SkyPilot's from_yaml_config with secrets_overrides (what `sky launch --secret
    NAME` does) turns the null secrets into values on the sky.Task; the task config stays by name."""
    from data.fleet.launcher import sky_task
    from data.fleet.plan import make_plan
    from data.fleet.spec import load_fleet

    config = make_plan(load_fleet(fleet_file), workdir=ROOT).cells[0].task
    task = sky_task(config, {"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s", "HF_TOKEN": "hf_x"})
    assert {k: v.get_secret_value() for k, v in task.secrets.items()} == {
        "AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s", "HF_TOKEN": "hf_x"}
    assert set(config["secrets"].values()) == {None}
    assert task.envs["TOKENTOP_REMOTE"] == config["envs"]["TOKENTOP_REMOTE"]


def test_the_real_launcher_calls_skypilots_api_as_installed():
    """SkyLauncher's calls against the installed SkyPilot's own signatures and names (sky/client/sdk.py,
    sky/skylet/job_lib.py): a SkyPilot upgrade that renames one fails here, not on a rented box."""
    import inspect

    import sky
    from sky import exceptions
    from sky.skylet.job_lib import JobStatus

    launch = inspect.signature(sky.launch).parameters
    assert {"task", "cluster_name", "down", "idle_minutes_to_autostop"} <= set(launch)
    assert list(inspect.signature(sky.job_status).parameters)[:2] == ["cluster_name", "job_ids"]
    assert list(inspect.signature(sky.down).parameters)[0] == "cluster_name"
    assert list(inspect.signature(sky.api_status).parameters)[0] == "request_ids"
    assert callable(sky.get) and callable(sky.api_cancel) and callable(sky.status)
    assert issubclass(exceptions.ClusterDoesNotExist, Exception)
    # the job states SkyLauncher.poll maps (anything else is a failure)
    assert {"INIT", "PENDING", "SETTING_UP", "RUNNING", "SUCCEEDED"} <= {s.name for s in JobStatus}
    assert "seconds" in inspect.signature(sky.Resources.get_cost).parameters


# Rows of SkyPilot's published catalogs (github.com/skypilot-org/skypilot-catalog, catalogs/v8/<cloud>/
# vms.csv), copied as they are: each cloud orders its columns differently; Vast.ai names 40 and 80 GB
# A100s, 24 and 48 GB RTX 4090s and SXM and NVL H100s alike and writes SpotPrice 0.00 where there is
# none; RunPod writes GB in its 'MiB' fields.
VAST_V8_ROWS = """\
InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region
1x-H100_NVL-32-65536,H100,1,32,64.0,"{'Gpus': [{'Name': 'H100', 'Count': 1, 'MemoryInfo': {'SizeInMiB': 95830}}], \
'TotalGpuMemoryInMiB': 95830}",2.08,0.00,"Bulgaria, BG, EU"
1x-H100_SXM-32-65536,H100,1,32,64.0,"{'Gpus': [{'Name': 'H100', 'Count': 1, 'MemoryInfo': {'SizeInMiB': 81559}}], \
'TotalGpuMemoryInMiB': 81559}",1.87,0.00,"Texas, US, NA"
1x-RTX_4090-32-65536,RTX4090,1,32,64.0,"{'Gpus': [{'Name': 'RTX4090', 'Count': 1, 'MemoryInfo': {'SizeInMiB': 49140}}], \
'TotalGpuMemoryInMiB': 49140}",0.40,0.00,"Hong Kong, HK, AS"
2x-RTX_4090-32-65536,RTX4090,2,32,64.0,"{'Gpus': [{'Name': 'RTX4090', 'Count': 2, 'MemoryInfo': {'SizeInMiB': 49128}}], \
'TotalGpuMemoryInMiB': 49128}",0.79,0.00,"Finland, FI, EU"
1x-A100_SXM4-32-65536,A100,1,32,64.0,"{'Gpus': [{'Name': 'A100', 'Count': 1, 'MemoryInfo': {'SizeInMiB': 40960}}], \
'TotalGpuMemoryInMiB': 40960}",0.76,0.00,"Georgia, US, NA"
1x-A100_PCIE-32-65536,A100,1,32,64.0,"{'Gpus': [{'Name': 'A100', 'Count': 1, 'MemoryInfo': {'SizeInMiB': 81920}}], \
'TotalGpuMemoryInMiB': 81920}",0.87,0.00,"Oklahoma, US, NA"
"""  # (a backslash at a line end continues the row)
RUNPOD_V8_ROWS = """\
InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Region,SpotPrice,Price,AvailabilityZone,GpuInfo
1x_A100-80GB_SECURE,A100-80GB,1.0,8.0,117.0,IN,1.39,1.39,AP-IN-1,"{'Gpus': [{'Name': 'A100 PCIe', 'Manufacturer': \
'Nvidia', 'Count': 1, 'MemoryInfo': {'SizeInMiB': 80}}], 'TotalGpuMemoryInMiB': 80}"
2x_A100-80GB_SECURE,A100-80GB,2.0,16.0,234.0,IN,2.78,2.78,AP-IN-1,"{'Gpus': [{'Name': 'A100 PCIe', 'Manufacturer': \
'Nvidia', 'Count': 2, 'MemoryInfo': {'SizeInMiB': 80}}], 'TotalGpuMemoryInMiB': 160}"
"""  # (a backslash at a line end continues the row)


def test_skypilot_catalog_v8_vast_and_runpod_rows_priced_for_the_cells_card(tmp_path):
    from data.fleet.plan import make_plan
    from data.fleet.spec import load_fleet

    root = tmp_path / "catalogs"
    for cloud, rows in (("vast", VAST_V8_ROWS), ("runpod", RUNPOD_V8_ROWS)):
        (root / cloud).mkdir(parents=True)
        (root / cloud / "vms.csv").write_text(rows)
    p = tmp_path / "f.toml"
    p.write_text('model = "m"\nremote = "s3://b/p"\nsuite = "seed"\nhours = 2\n' + "".join(
        f'[[cell]]\ngpu = "{gpu}"\nprovider = "{provider}"\n' + (f"count = {n}\n" if n > 1 else "")
        for gpu, provider, n in (("A100-80GB", "vastai", 1), ("H100 NVL", "vastai", 1), ("H100", "vastai", 1),
                                 ("RTX4090", "vastai", 1), ("RTX4090", "vastai", 2), ("A100 PCIe 80GB", "runpod", 1))))
    plan = make_plan(load_fleet(p), workdir=ROOT, catalog_root=root, validate=False)
    got = [(c.catalog.usd_per_hour, c.catalog.spot_usd_per_hour, c.catalog.instance_type) for c in plan.cells]
    assert got == [(0.87, None, "1x-A100_PCIE-32-65536"),  # not the 40 GB card at 0.76
                   (2.08, None, "1x-H100_NVL-32-65536"),
                   (1.87, None, "1x-H100_SXM-32-65536"),
                   (None, None, None),  # the only 1x RTX4090 row is a 48 GB card
                   (0.79, None, "2x-RTX_4090-32-65536"),  # 49128 MiB for two: 24 GB each
                   (1.39, 1.39, "1x_A100-80GB_SECURE")]
    assert plan.cells[3].catalog.note == "catalog price: no RTX4090:1 in SkyPilot's vast catalog"
    assert plan.cells[0].estimate_usd == pytest.approx(0.87 * 2)


def test_vultr_is_refused_with_one_line(tmp_path, capsys):
    p = tmp_path / "f.toml"
    p.write_text(THREE_CELLS + '\n[[cell]]\ngpu = "A100"\nprovider = "vultr"\n')
    code, _, err = run_cli("fleet", "plan", str(p), "--out", str(tmp_path / "o"), capsys=capsys)
    assert code == 2
    line = error_line(err)
    assert "cell 4" in line and "SkyPilot has no Vultr" in line and "dstack" in line
    assert not (tmp_path / "o").exists()


BAD = {
    "not_toml": ("model = \n", "not valid TOML"),
    "no_model": (THREE_CELLS.replace('model = "llama-8b"\n', ""), "'model' is missing"),
    "remote_not_s3": (THREE_CELLS.replace("s3://fleet/team", "/mnt/share"), "remote must be s3://"),
    "unknown_key": (THREE_CELLS.replace("hours = 1.5", "hours = 1.5\nhourz = 2"), "unknown key 'hourz'"),
    "unknown_gpu": (THREE_CELLS.replace('"RTX4090"', '"GTX 9999"'), "GPU 'GTX 9999' unknown"),
    "gpu_not_on_provider": (THREE_CELLS.replace('gpu = "A100-80GB"', 'gpu = "RTX4090"'),
                            "SkyPilot does not rent RTX 4090 24GB on Lambda"),
    "unknown_provider": (THREE_CELLS.replace('"vastai"', '"azure"'), "provider 'azure' unknown"),
    "suite_and_load": (THREE_CELLS.replace('suite = "seed"', 'suite = "seed"\n[load]\nconcurrency = "1,2"'),
                       "not both"),
    "load_option_unknown": (THREE_CELLS.replace('suite = "seed"\nhours = 1.5', 'hours = 1.5\n[load]\nconcurency = "1"'),
                            "did you mean --concurrency"),
    "load_value_bad": (THREE_CELLS.replace('suite = "seed"\nhours = 1.5', 'hours = 1.5\n[load]\ninput-len = 0'),
                       "input-len"),
    "load_rules": (THREE_CELLS.replace('suite = "seed"\nhours = 1.5',
                                       'hours = 1.5\n[load]\nburstiness = 0.5'), "--burstiness needs --request-rate"),
    "no_cells": (THREE_CELLS.split("[[cell]]")[0], "no cells"),
    "hours_negative": (THREE_CELLS.replace("hours = 1.5", "hours = -1"), "hours must be a number above 0"),
    "repeated_cell": (THREE_CELLS + '\n[[cell]]\ngpu = "H100"\nprovider = "runpod"\n', "cell 4 repeats cell 1"),
    "missing_file": (None, "no fleet file"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_fleet_file_is_one_line_and_exit_2(tmp_path, capsys, case):
    text, said = BAD[case]
    p = tmp_path / "f.toml"
    if text is not None:
        p.write_text(text)
    code, out, err = run_cli("fleet", "plan", str(p), "--out", str(tmp_path / "o"), capsys=capsys)
    assert code == 2 and out == ""
    assert said in error_line(err)


# -- up: launch, follow, pull, teardown ------------------------------------------------------------------
def make_plan_for(fleet_file: Path, laptop: Store):
    from data.fleet.plan import make_plan
    from data.fleet.spec import load_fleet
    from data.store.prices import price_board

    return make_plan(load_fleet(fleet_file), workdir=ROOT, board=price_board(laptop))


def cell_pushes_runs(tmp_path: Path, index: int, n: int = 1):
    """What a cell does while RUNNING: runs recorded into the box's own DuckDB and pushed with the real
    push code to TOKENTOP_REMOTE from its task's envs. Returns a poll answer for the fake."""
    from data.travel.remote import push

    provider, key, device, _ = BOXES[index]

    def act(cluster: str, task: dict) -> Progress:
        with Store(tmp_path / f"box-{index}.duckdb") as box:
            ids = [record_run(box, host=cluster, provider=provider, gpu_key=key, device=device, price=None,
                              seed=index * 10 + k) for k in range(n)]
            result = push(box, ids, task["envs"]["TOKENTOP_REMOTE"])
            assert result.ok, result
        return Progress(RUNNING)

    return act


def test_up_pulls_every_cells_runs_with_the_price_paid_and_downs_every_cluster(tmp_path, fleet_file, s3):
    from data.analysis.matrix import build_matrix
    from data.fleet.runner import follow_fleet

    laptop = Store(tmp_path / "laptop.duckdb")
    plan = make_plan_for(fleet_file, laptop)
    scripts = {i: [Progress(PROVISIONING), Progress(SETTING_UP), cell_pushes_runs(tmp_path, i), Progress(SUCCEEDED)]
               for i in BOXES}
    fake = RecordingSkyLauncher(scripts, launched={i: b[3] for i, b in BOXES.items()})
    clock = FakeClock()
    states: list[tuple[int, str]] = []
    outcome = follow_fleet(plan, fake, laptop, secrets={"AWS_ACCESS_KEY_ID": "k"}, clock=clock, wait=clock.wait,
                           on_change=lambda cells: states.extend((c.plan.cell.index, c.state) for c in cells))
    clusters = [c.cell.cluster for c in plan.cells]
    assert sorted(fake.downed()) == sorted(clusters) and fake.up == []
    assert all(fake.idle_minutes[c] == 10 for c in clusters) and fake.secrets[clusters[0]] == {"AWS_ACCESS_KEY_ID": "k"}
    for i in BOXES:  # the table the user watched: every state in order, ending down
        seen = [s for j, s in states if j == i]
        order = [s for s in ("provisioning", "setting up", "running", "pushed", "down") if s in seen]
        assert order == ["provisioning", "setting up", "running", "pushed", "down"], seen
    assert not outcome.interrupted and not outcome.capped and all(c.ended == "done" for c in outcome.cells)
    assert len(outcome.run_ids) == 3
    with laptop.connection() as con:
        rows = con.execute("SELECT run_id, provider, gpu_key, price_per_hour_usd, instance_type, "
                           "environment->>'$.fleet.spot', environment->>'$.fleet.price_flagged', origin "
                           "FROM runs ORDER BY provider").fetchall()
    got = {r[1]: r[2:] for r in rows}
    assert got["runpod"][:3] == ("H100-SXM-80", 3.99, "1x_H100-SXM_SECURE")
    assert got["lambda"][:3] == ("A100-SXM-80", 1.85, "gpu_1x_a100_sxm4")
    assert got["vastai"][:4] == ("RTX4090-24", 0.31, "1x-RTX_4090-16-64", "true")
    # RunPod's launched $3.99 is 25 % over tokentop's $3.20 (snapshot): flagged; Lambda's $1.85 vs $1.80 not
    assert got["runpod"][4] == "true" and got["lambda"][4] == "false"
    assert all(r[-1].startswith("pull:s3://fleet/team/fleet/article/") for r in rows)
    # ... and the matrix costs those rows at the price paid
    matrix = build_matrix(laptop, model="llama-8b")
    priced = {(r.gpu_key, r.provider): r.price for r in matrix.rows if r.measured_here}
    assert priced[("H100-SXM-80", "runpod")].source == "paid"
    assert priced[("H100-SXM-80", "runpod")].usd_per_hour == pytest.approx(3.99)
    assert priced[("RTX4090-24", "vastai")].usd_per_hour == pytest.approx(0.31)
    laptop.close()


def test_a_failed_cell_is_torn_down_at_once_and_the_others_go_on(tmp_path, fleet_file, s3):
    from data.fleet.runner import follow_fleet

    laptop = Store(tmp_path / "laptop.duckdb")
    plan = make_plan_for(fleet_file, laptop)
    scripts = {1: [Progress(PROVISIONING), Progress(RUNNING), Progress(RUNNING), cell_pushes_runs(tmp_path, 1),
                   Progress(SUCCEEDED)],
               2: [Progress(PROVISIONING), Progress(FAILED, "job failed_setup")],
               3: [Progress(PROVISIONING), Progress(RUNNING), cell_pushes_runs(tmp_path, 3), Progress(SUCCEEDED)]}
    fake = RecordingSkyLauncher(scripts)
    clock = FakeClock()
    outcome = follow_fleet(plan, fake, laptop, secrets={}, clock=clock, wait=clock.wait)
    failed = plan.cells[1].cell.cluster
    downs = [i for i, call in enumerate(fake.calls) if call == ("down", failed)]
    later_polls = [i for i, (verb, c) in enumerate(fake.calls) if verb == "poll" and c != failed]
    assert len(downs) == 1 and downs[0] < max(later_polls)  # down at once, while the others still ran
    assert fake.up == [] and len(fake.downed()) == 3
    ended = {c.plan.cell.index: (c.ended, c.detail) for c in outcome.cells}
    assert ended[2] == ("failed", "job failed_setup") and ended[1][0] == ended[3][0] == "done"
    assert len(outcome.run_ids) == 2
    laptop.close()


def test_skypilot_errors_fail_the_cell_not_the_fleet_and_its_cluster_goes_down(tmp_path, fleet_file):
    """A launch SkyPilot refuses, and polls that keep failing (its API server gone), fail that cell only."""
    from data.fleet.runner import follow_fleet

    laptop = Store(tmp_path / "laptop.duckdb")
    plan = make_plan_for(fleet_file, laptop)
    api_down = ConnectionError("could not reach the SkyPilot API server")
    fake = RecordingSkyLauncher({1: [Progress(RUNNING), Progress(SUCCEEDED)],
                                 3: [Progress(RUNNING), api_down, api_down, api_down]},
                                refuse_launch={2: ValueError("Cloud Lambda is not enabled. Run sky check")})
    clock = FakeClock()
    notes: list[str] = []
    outcome = follow_fleet(plan, fake, laptop, secrets={}, clock=clock, wait=clock.wait, note=notes.append)
    ended = {c.plan.cell.index: (c.ended, c.detail) for c in outcome.cells}
    assert ended[1] == ("done", "")
    assert ended[2] == ("failed", "ValueError: Cloud Lambda is not enabled. Run sky check")
    assert ended[3] == ("failed", "3 polls failed: ConnectionError: could not reach the SkyPilot API server")
    assert fake.up == [] and sorted(fake.downed()) == sorted(c.cell.cluster for c in plan.cells)
    assert notes.count("cell 3: ConnectionError: could not reach the SkyPilot API server; asking again") == 2
    laptop.close()


def test_the_time_cap_downs_every_cluster_and_keeps_what_landed(tmp_path, fleet_file, s3):
    from data.fleet.runner import follow_fleet

    laptop = Store(tmp_path / "laptop.duckdb")
    plan = make_plan_for(fleet_file, laptop)
    # cell 1 pushes a run and keeps running; the others never get past provisioning
    scripts = {1: [Progress(PROVISIONING), cell_pushes_runs(tmp_path, 1), Progress(RUNNING)],
               2: [Progress(PROVISIONING)], 3: [Progress(PROVISIONING)]}
    fake = RecordingSkyLauncher(scripts, launched={1: BOXES[1][3]})
    clock = FakeClock()
    outcome = follow_fleet(plan, fake, laptop, secrets={}, clock=clock, wait=clock.wait, poll_s=60)
    assert outcome.capped and fake.up == [] and len(fake.downed()) == 3
    assert clock.now - 1000.0 == pytest.approx(1.5 * 3600)  # not a poll later than the cap
    assert {c.ended for c in outcome.cells} == {"time cap"}
    assert len(outcome.run_ids) == 1
    with laptop.connection() as con:
        assert con.execute("SELECT price_per_hour_usd FROM runs").fetchall() == [(3.99,)]
    laptop.close()


@pytest.mark.parametrize("when", ["while following", "while launching"])
def test_ctrl_c_downs_every_cluster_then_stops(tmp_path, fleet_file, when):
    from data.fleet.runner import follow_fleet

    laptop = Store(tmp_path / "laptop.duckdb")
    plan = make_plan_for(fleet_file, laptop)
    if when == "while following":
        fake = RecordingSkyLauncher({1: [Progress(RUNNING)], 2: [Progress(SETTING_UP), KeyboardInterrupt],
                                     3: [Progress(PROVISIONING)]})
    else:
        fake = RecordingSkyLauncher({}, interrupt_on_launch=2)
    clock = FakeClock()
    with pytest.raises(KeyboardInterrupt):
        follow_fleet(plan, fake, laptop, secrets={}, clock=clock, wait=clock.wait)
    launched = [c for verb, c in fake.calls if verb == "launch"]
    assert fake.up == [] and sorted(fake.downed()) == sorted({c.cell.cluster for c in plan.cells})
    assert len(launched) == (3 if when == "while following" else 2)
    laptop.close()


CHILD = """\
import json, sys
import tui.cli.commands.fleet as fleet_cmd
from data.fleet.launcher import Progress
from tests.support.fleet_support import RecordingSkyLauncher

fleet_file, marker, db, report = sys.argv[1:5]


class Following(RecordingSkyLauncher):
    def poll(self, cluster):
        progress = super().poll(cluster)
        with open(marker, "a") as f:
            f.write(cluster + "\\n")
        return progress


fake = Following({i: [Progress("running")] for i in (1, 2, 3)})
fleet_cmd.make_launcher = lambda: fake
from tui.cli import main
try:
    code = main(["fleet", "up", fleet_file, "--yes", "--db", db])
finally:
    with open(report, "w") as f:
        json.dump({"calls": fake.calls, "up": fake.up}, f)
sys.exit(code)
"""


def test_sigint_to_fleet_up_downs_every_cluster_and_exits_130(tmp_path, fleet_file, cli_env, sky_home):
    """The user's Ctrl-C as a real SIGINT to a `tokentop fleet up` process, while it waits between polls
    (its real wait, not the fake clock): every cluster down, exit 130."""
    import signal

    child = tmp_path / "child.py"
    child.write_text(CHILD)
    marker, report = tmp_path / "polled", tmp_path / "report.json"
    env = {**cli_env, "HOME": str(sky_home), "PYTHONPATH": str(ROOT), "AWS_ACCESS_KEY_ID": "k",
           "AWS_SECRET_ACCESS_KEY": "s"}
    proc = subprocess.Popen([sys.executable, str(child), str(fleet_file), str(marker), str(tmp_path / "l.duckdb"),
                             str(report)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    def followed_every_cell() -> bool:  # every cell followed once
        assert proc.poll() is None, proc.communicate()
        return marker.exists() and len(marker.read_text().split()) >= 3

    wait_until(followed_every_cell, 120, "the follower to poll every cell")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    calls = json.loads(report.read_text())
    assert calls["up"] == []
    assert sorted(c for verb, c in calls["calls"] if verb == "down") == sorted(
        f"tt-article-{i}-{p}" for i, p in ((1, "runpod-h100-sxm-80"), (2, "lambda-a100-sxm-80"),
                                            (3, "vastai-rtx4090-24")))
    assert "tokentop: interrupted: the fleet's 3 cluster(s) torn down" in err


# -- the command ---------------------------------------------------------------------------------------------
def test_fleet_up_yes_follows_cells_and_fleet_down_removes_what_is_left(tmp_path, fleet_file, s3, capsys,
                                                                        monkeypatch):
    import tui.cli.commands.fleet as fleet_cmd

    monkeypatch.setenv("TOKENTOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    scripts = {i: [Progress(PROVISIONING), cell_pushes_runs(tmp_path, i), Progress(SUCCEEDED)] for i in BOXES}
    scripts[3] = [Progress(PROVISIONING), Progress(FAILED, "launch failed: no RTX4090 offers")]
    fake = RecordingSkyLauncher(scripts, launched={i: b[3] for i, b in BOXES.items()})
    monkeypatch.setattr(fleet_cmd, "make_launcher", lambda: fake)
    code, out, err = run_cli("fleet", "up", str(fleet_file), "--yes", "--db", str(tmp_path / "laptop.duckdb"),
                             capsys=capsys)
    assert code == 1
    assert err.strip().splitlines()[-1] == ("tokentop: error: 1 cell(s) failed; cell 3: launch failed: no RTX4090 "
                                            "offers")
    assert "HF_TOKEN is not set" in err and "estimated cost" in err
    # the secrets went by value only to the launcher, from this environment
    first = next(iter(fake.secrets.values()))
    assert first["AWS_SECRET_ACCESS_KEY"] == "testing-secret-value" and first["HF_TOKEN"] == ""
    assert fake.up == [] and len(fake.downed()) == 3
    assert "tt-article-1-runpod-h100-sxm-80" in err and "down (done)" in err and "down (failed)" in err
    # the matrix, each measured row costed at the price the launcher chose (P: paid)
    assert re.search(r"^H100-SXM-80  RunPod\*\s.*\b3\.99 P\b", out, re.M), out
    assert re.search(r"^A100-SXM-80  Lambda\*\s.*\b1\.85 P\b", out, re.M), out
    assert "tokentop: cell 1 paid $3.99/h, 25% over tokentop's $3.20 (snapshot)" in err
    assert [line for line in (out + err).splitlines() if len(line) > 80] == []

    # a cluster left up (say the laptop died): fleet down removes the fleet's, not the user's own
    left = RecordingSkyLauncher({}, already_up=["tt-article-2-lambda-a100-sxm-80", "my-dev-box"])
    monkeypatch.setattr(fleet_cmd, "make_launcher", lambda: left)
    code, out, err = run_cli("fleet", "down", str(fleet_file), capsys=capsys)
    assert code == 0 and left.up == ["my-dev-box"] and "down: tt-article-2-lambda-a100-sxm-80" in err
    code, out, err = run_cli("fleet", "status", "--json", capsys=capsys)
    assert code == 0 and json.loads(out) == []  # my-dev-box is not tokentop's


def test_up_refuses_without_the_aws_keys_and_without_yes_off_a_terminal(tmp_path, fleet_file, capsys, monkeypatch):
    import tui.cli.commands.fleet as fleet_cmd

    monkeypatch.setenv("TOKENTOP_DATA_DIR", str(tmp_path / "data"))
    fake = RecordingSkyLauncher({})
    monkeypatch.setattr(fleet_cmd, "make_launcher", lambda: fake)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    code, _, err = run_cli("fleet", "up", str(fleet_file), "--yes", capsys=capsys)
    assert code == 2 and "set AWS_SECRET_ACCESS_KEY here" in error_line(err)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setattr(sys, "stdin", open(os.devnull))
    code, _, err = run_cli("fleet", "up", str(fleet_file), capsys=capsys)
    assert code == 2 and err.strip().splitlines()[-1] == "tokentop: error: not a terminal to ask on: add --yes to launch"
    assert fake.calls == []  # nothing launched


@pytest.fixture
def sse_server():
    """The repository's tiny OpenAI-compatible streaming server (no model) on loopback."""
    with fast_sse_server(token_delay_ms=1) as url:
        yield url


def test_a_cell_running_its_own_run_command_lands_on_the_laptop(tmp_path, s3, sse_server, tokentop_cmd, cli_env):
    """A simulated cell runs the task's own `run` line as a local process (tokentop bench, its auto-push
    to TOKENTOP_REMOTE from the task's envs, the secrets as the launcher passed them), pointed at a
    loopback server instead of a GPU's engine; the follower pulls its run and stores the price paid."""
    import shlex

    from data.fleet.launcher import SUCCEEDED
    from data.fleet.runner import follow_fleet

    suite = tmp_path / "tiny.toml"
    suite.write_text('name = "tiny"\nreps = 1\n[[cases]]\nid = "short"\nprompt = "Name a colour."\n'
                     'output_tokens = 5\n')
    p = tmp_path / "one.toml"
    p.write_text(f'model = "fast-sse"\nremote = "s3://fleet/team"\nsuite = "{suite.name}"\n'
                 '[[cell]]\ngpu = "H100"\nprovider = "runpod"\n')
    laptop = Store(tmp_path / "laptop.duckdb")
    plan = make_plan_for(p, laptop)
    assert plan.cells[0].task["file_mounts"] == {"~/tokentop-inputs/tiny.toml": str(suite)}

    def run_the_cell(cluster: str, task: dict) -> Progress:
        words = shlex.split(task["run"])
        words = words[words.index(".venv/bin/tokentop") + 1:]  # what `timeout` runs
        words = [str(suite) if w == "~/tokentop-inputs/tiny.toml" else w for w in words]
        env = {**cli_env, **s3, **task["envs"], **fake.secrets[cluster],
               "TOKENTOP_DATA_DIR": str(tmp_path / "box")}
        proc = subprocess.run([*tokentop_cmd, *words, "--engine", "openai", "--endpoint", sse_server, "--json"],
                              env=env, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr
        return Progress(SUCCEEDED)

    fake = RecordingSkyLauncher({1: [Progress(PROVISIONING), run_the_cell]}, launched={1: BOXES[1][3]})
    clock = FakeClock()
    outcome = follow_fleet(plan, fake, laptop, secrets={k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID",
                                                                                 "AWS_SECRET_ACCESS_KEY")},
                           clock=clock, wait=clock.wait)
    assert fake.up == [] and len(outcome.run_ids) == 1
    with laptop.connection() as con:
        row = con.execute("SELECT provider, model, price_per_hour_usd, instance_type FROM runs").fetchone()
    assert row == ("runpod", "fast-sse", 3.99, "1x_H100-SXM_SECURE")
    laptop.close()
