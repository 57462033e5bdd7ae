"""Where a run ran and what it cost (issues 8 and 10): the provider and instance from the provider's own
variables and files, --provider / --price-per-hour, the GPUs a run used (TP x PP, CUDA_VISIBLE_DEVICES)
on a test-double NVML node, and costs for that share of the machine."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from data.analysis.compare import compare_runs
from data.store.database import RequestRow
from data.store.prices import PriceBoard
from data.store.recorder import RunRecorder
from engine.telemetry import environment
from engine.telemetry.environment import LocationError, location
from pricing.cost import TpsBasis
from pricing.models import PriceRow
from tests.support.fake_pynvml import FakeNvml
from tests.support.loopback import fast_sse_server
from tui.cli import main

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)
H100 = {"name": "NVIDIA H100 80GB HBM3", "mem_total": 80 * 1024**3}
A100 = {"name": "NVIDIA A100-SXM4-80GB", "mem_total": 80 * 1024**3}
NO_PROVIDER = {"root": "/nonexistent", "fqdn": ""}  # nothing on disk, no hostname hint: detection finds nothing


def eight_gpu_node(gpus=None):
    return FakeNvml(gpus=gpus or [dict(H100) for _ in range(8)]).module()


def vllm_desc(tp=1, pp=1):
    return {"engine": "vllm", "model": "m", "device_kind": "gpu",
            "engine_args": {"tensor_parallel_size": tp, "pipeline_parallel_size": pp}}


def collect(desc, env=None, nvml=None, where=None):
    return environment.collect(desc, env=env or {}, nvml=nvml or eight_gpu_node(), where=where)


@pytest.fixture(autouse=True)
def _no_machine_detection(monkeypatch):
    """collect() detects from the real machine; tests point it at nothing unless they say otherwise."""
    real = environment.location

    def quiet(**kw):
        kw.setdefault("root", "/nonexistent")
        kw.setdefault("fqdn", "")
        return real(**kw)

    monkeypatch.setattr(environment, "location", quiet)


def record(store, env, desc, tps=100.0, n=2, kind="suite", summary=None):
    rec = RunRecorder(store)
    rid = rec.start(kind=kind, engine_description=desc, environment=env)
    rec.flush()  # the run row is in the file before the requests written directly below
    for i in range(n):
        store.add_request(rid, RequestRow(i, "medium", i, T0, 0.0, "p", 10, 200, 200, 40.0, 200 / tps * 1000, 4.0,
                                          tps, True, "length", None, "x"))
    store.finish_run(rid, "completed", duration_s=1.0, summary=summary or {})
    return rid


def one_gpu_board(usd_per_gpu_hour=2.0, gpu_count=1, key="H100-SXM-80"):
    row = PriceRow(provider="runpod", gpu_key=key, gpu_raw_name="H100 SXM", approximate=False,
                   gpu_count=gpu_count, usd_per_hour=usd_per_gpu_hour * gpu_count, pricing_type="on-demand",
                   source="snapshot", fetched_at=T0)
    return PriceBoard(rows=[row], statuses={}, now=T0)


# -- GPUs used, and costs for them ------------------------------------------------------------------


@pytest.mark.parametrize("tp,pp,expected", [(1, 1, 1), (2, 1, 2), (2, 2, 4)])
def test_a_run_on_an_8_gpu_node_is_costed_for_tp_x_pp_gpus(store, tp, pp, expected):
    env = collect(vllm_desc(tp, pp))
    assert len(env["gpus"]) == 8 and [g["index"] for g in env["gpus_used"]] == list(range(expected))
    rid = record(store, env, vllm_desc(tp, pp), tps=100.0)
    run = store.get_run(rid)
    assert run["gpu_count"] == expected and run["gpu_key"] == "H100-SXM-80"
    assert [g["key"] for g in run["gpus_used"]] == ["H100-SXM-80"] * expected
    [rc] = compare_runs(store, [rid], board=one_gpu_board(2.0))
    [cost] = rc.costs
    # $2.00 per GPU-hour at 100 tok/s: $5.56/1M per GPU used, never the node's 8 GPUs ($44.44).
    assert cost.usd_per_hour == pytest.approx(2.0 * expected)
    assert cost.usd_per_million == pytest.approx(5.5556 * expected, rel=1e-4)
    assert rc.gpu_count == expected and rc.instance_gpus == 8


def test_the_issue_check_tp1_on_8_gpus_costs_5_56_not_44_44(store):
    rid = record(store, collect(vllm_desc(1)), vllm_desc(1), tps=100.0)
    # An 8-GPU offer of the same GPU: the run pays for 1/8 of it.
    [rc] = compare_runs(store, [rid], board=one_gpu_board(2.0, gpu_count=8))
    assert f"{rc.costs[0].usd_per_million:.2f}" == "5.56"
    assert "1/8 of the instance" in rc.costs[0].detail


def test_runs_stored_before_gpus_used_are_costed_for_tp_x_pp_not_every_gpu(store):
    # An old run: gpu_count counted all 8 GPUs NVML saw, gpus_used is unknown.
    env = {"device": "NVIDIA H100 80GB HBM3", "gpus": [{"name": H100["name"], "key": "H100-SXM-80"}] * 8}
    rid = store.start_run(kind="suite", engine="vllm", model="m", environment=env,
                          engine_args={"tensor_parallel_size": 2})
    store.add_request(rid, RequestRow(0, "c", 0, T0, 0.0, "p", 10, 200, 200, 40.0, 2000.0, 4.0, 100.0, True,
                                      "length", None, "x"))
    store.finish_run(rid, "completed", duration_s=1.0, summary={})
    assert store.get_run(rid)["gpu_count"] == 8
    [rc] = compare_runs(store, [rid], board=one_gpu_board(2.0))
    assert rc.gpu_count == 2 and rc.costs[0].usd_per_hour == pytest.approx(4.0)


def test_cuda_visible_devices_picks_the_gpus_and_the_key_by_index_and_uuid(store):
    node = [dict(H100) for _ in range(4)] + [dict(A100) for _ in range(4)]
    env = collect(vllm_desc(1), env={"CUDA_VISIBLE_DEVICES": "5"}, nvml=eight_gpu_node(node))
    assert [g["index"] for g in env["gpus_used"]] == [5]
    assert env["device"] == "NVIDIA A100-SXM4-80GB"  # the selected GPU, not GPU 0 (an H100)
    rid = record(store, env, vllm_desc(1))
    run = store.get_run(rid)
    assert (run["gpu_key"], run["gpu_count"], run["device"]) == ("A100-SXM-80", 1, "NVIDIA A100-SXM4-80GB")
    assert "CUDA_VISIBLE_DEVICES=5" in run["environment"]["gpus_used_note"]

    # UUIDs (or a unique prefix of one), in CUDA's order, TP 2 takes the first two visible.
    uuids = [g["uuid"] for g in environment.nvml_gpus(eight_gpu_node(node))[0]]
    env = collect(vllm_desc(2), env={"CUDA_VISIBLE_DEVICES": f"{uuids[6]},{uuids[1][:14]},3"},
                  nvml=eight_gpu_node(node))
    assert [g["index"] for g in env["gpus_used"]] == [6, 1]
    assert env["device"] == "NVIDIA A100-SXM4-80GB"

    # CUDA's rule: the list stops at the first entry that is no GPU; empty means none.
    assert [g["index"] for g in environment.visible_gpus(env["gpus"], "2,9,3")[0]] == [2]
    assert environment.visible_gpus(env["gpus"], "")[0] == []


def test_openai_server_gpus_are_assumed_on_loopback_and_unknown_elsewhere():
    desc = {"engine": "openai", "device_kind": "remote", "engine_args": {"endpoint": "http://127.0.0.1:8000"}}
    env = collect(desc, env={"CUDA_VISIBLE_DEVICES": "3"})
    assert [g["index"] for g in env["gpus_used"]] == [3] and env["gpus_used_note"].startswith("assumed:")
    desc["engine_args"]["endpoint"] = "http://10.1.2.3:8000"
    env = collect(desc)
    assert env["gpus_used"] == [] and env["gpus_used_note"].startswith("unknown:")
    assert env["device"] == "remote (http://10.1.2.3:8000)"


def test_the_price_paid_is_costed_for_the_share_of_the_instance(store):
    env = collect(vllm_desc(2), where={"provider": "lambda", "price_per_hour": 24.0})
    assert env["location"]["price_per_hour_usd"] == 24.0 and env["location"]["instance_gpus"] == 8
    rid = record(store, env, vllm_desc(2), tps=100.0)
    [rc] = compare_runs(store, [rid], board=one_gpu_board(2.0))
    [paid] = [c for c in rc.costs if c.pricing_type == "paid"]
    assert paid.provider == "lambda" and paid.usd_per_hour == pytest.approx(24.0 * 2 / 8)
    assert paid.usd_per_million == pytest.approx(6.0 / (100.0 * 3600) * 1e6)
    assert "2/8 GPUs of $24.00/h paid" == paid.detail


def test_per_request_tps_is_no_cost_basis():
    assert {b.label for b in TpsBasis} == {"batch-1 TPS", "throughput under load"}


# -- provider detection ---------------------------------------------------------------------------


def test_runpod_from_its_pod_variables():
    env = {"RUNPOD_POD_ID": "abc123xyz", "RUNPOD_DC_ID": "EU-RO-1", "RUNPOD_GPU_COUNT": "2"}
    loc = location(env=env, **NO_PROVIDER)
    assert (loc["provider"], loc["instance_id"], loc["region"], loc["instance_gpus"]) == (
        "runpod", "abc123xyz", "EU-RO-1", 2)
    assert loc["provider_source"] == "env RUNPOD_POD_ID"


def test_vastai_from_its_variables_or_etc_environment(tmp_path):
    env = {"VAST_CONTAINERLABEL": "C.1234567", "CONTAINER_ID": "1234567", "GPU_COUNT": "1"}
    loc = location(env=env, **NO_PROVIDER)
    assert (loc["provider"], loc["instance_id"], loc["instance_gpus"]) == ("vastai", "1234567", 1)
    # In an SSH session the container's variables are only in /etc/environment.
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/environment").write_text('PATH="/usr/bin"\nVAST_CONTAINERLABEL="C.7654321"\n'
                                              "CONTAINER_ID=7654321\nGPU_COUNT=4\n")
    loc = location(env={}, root=str(tmp_path), fqdn="")
    assert (loc["provider"], loc["instance_id"], loc["instance_gpus"]) == ("vastai", "7654321", 4)
    assert loc["provider_source"] == "/etc/environment VAST_CONTAINERLABEL"


def test_lambda_from_its_instance_hostname():
    loc = location(env={}, root="/nonexistent", fqdn="10-0-8-196.cloud.lambdalabs.com")
    assert loc["provider"] == "lambda" and "cloud.lambdalabs.com" in loc["provider_source"]
    assert location(env={}, root="/nonexistent", fqdn="gpu-box.example.com")["provider"] is None


@pytest.fixture
def vultr_metadata():
    """Vultr's metadata service (vultr.com/metadata), played on loopback: GET /v1.json."""
    body = json.dumps({"hostname": "vultr-guest", "instanceid": "a747bfz6385e",
                       "instance-v2-id": "36e9cf60-5d93-4e31-8ebf-613b3d2874fb",
                       "region": {"regioncode": "EWR", "countrycode": "US"}}).encode()
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append((self.path, self.headers.get("Metadata-Token")))
            self.send_response(200 if self.path == "/v1.json" else 404)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1.json", seen
    server.shutdown()


def test_vultr_from_dmi_then_its_metadata_service(tmp_path, vultr_metadata):
    url, seen = vultr_metadata
    (tmp_path / "sys/class/dmi/id").mkdir(parents=True)
    (tmp_path / "sys/class/dmi/id/sys_vendor").write_text("Vultr\n")
    loc = location(env={}, root=str(tmp_path), fqdn="", vultr_metadata_url=url)
    assert (loc["provider"], loc["instance_id"], loc["region"]) == (
        "vultr", "36e9cf60-5d93-4e31-8ebf-613b3d2874fb", "EWR")
    assert seen == [("/v1.json", "vultr")]
    # No metadata service answering: still Vultr, from DMI alone.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/v1.json"
    loc = location(env={}, root=str(tmp_path), fqdn="", vultr_metadata_url=closed)
    assert (loc["provider"], loc["provider_source"], loc["instance_id"]) == ("vultr", "DMI sys_vendor Vultr", None)
    # Not Vultr: the metadata service is never asked.
    seen.clear()
    assert location(env={}, root=str(tmp_path / "other"), fqdn="", vultr_metadata_url=url)["provider"] is None
    assert seen == []


def test_coreweave_by_name_with_its_pod_name():
    env = {"TOKENTOP_PROVIDER": "CoreWeave", "KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOSTNAME": "bench-7d9f-x2"}
    loc = location(env=env, **NO_PROVIDER)
    assert (loc["provider"], loc["provider_source"], loc["instance_id"]) == (
        "coreweave", "TOKENTOP_PROVIDER", "bench-7d9f-x2")


def test_provider_option_beats_variable_beats_detection_and_prices_are_checked():
    env = {"RUNPOD_POD_ID": "pod1", "TOKENTOP_PROVIDER": "vast.ai", "TOKENTOP_PRICE_PER_HOUR": "1.5"}
    loc = location(env=env, **NO_PROVIDER)
    assert (loc["provider"], loc["provider_source"], loc["instance_id"]) == ("vastai", "TOKENTOP_PROVIDER", None)
    assert (loc["price_per_hour_usd"], loc["price_source"]) == (1.5, "TOKENTOP_PRICE_PER_HOUR")
    loc = location(env=env, provider="RunPod", price_per_hour="$2.49", **NO_PROVIDER)
    assert (loc["provider"], loc["provider_source"], loc["instance_id"]) == ("runpod", "--provider", "pod1")
    assert loc["price_per_hour_usd"] == 2.49
    for bad in ("abc", "0", "-1", "inf", "nan"):
        with pytest.raises(LocationError):
            location(env={}, price_per_hour=bad, **NO_PROVIDER)


@pytest.mark.parametrize("argv,env,message", [
    (["--price-per-hour", "abc"], {}, "--price-per-hour must be a number"),
    (["--price-per-hour", "-2"], {}, "--price-per-hour must be more than 0"),
    ([], {"TOKENTOP_PRICE_PER_HOUR": "free"}, "TOKENTOP_PRICE_PER_HOUR must be a number"),
])
def test_bad_prices_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch, argv, env, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(["--db", str(tmp_path / "t.duckdb"), "bench", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tokentop: error: {message}") and err.count("\n") == 1


# -- end to end: bench against an OpenAI-compatible server on loopback -----------------------------


@pytest.fixture
def sse_server():
    with fast_sse_server() as url:
        yield url


def test_provider_and_price_are_stored_with_the_run_and_shown(tmp_path, sse_server, tokentop_cmd, cli_env, capsys,
                                                              monkeypatch):
    db = str(tmp_path / "where.duckdb")
    suite = tmp_path / "tiny.toml"
    suite.write_text('name = "tiny"\nreps = 1\n[[cases]]\nid = "short"\nprompt = "Hi"\noutput_tokens = 8\n')
    cli_env.pop("TOKENTOP_PROVIDER", None)
    out = subprocess.run([*tokentop_cmd, "--db", db, "bench", "--engine", "openai", "--endpoint", sse_server,
                          "--suite", str(suite), "--provider", "RunPod", "--price-per-hour", "2.49", "--json"],
                         capture_output=True, text=True, env=cli_env, timeout=120)
    assert out.returncode == 0, out.stderr
    rid = json.loads(out.stdout)["run_id"]
    assert main(["--db", db, "show", "--json", rid]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["location"]["provider"] == "runpod" and shown["location"]["provider_source"] == "--provider"
    assert shown["location"]["price_per_hour_usd"] == 2.49
    assert main(["--db", db, "runs", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["provider"], listed["price_per_hour_usd"]) == ("runpod", 2.49)
    assert main(["--db", db, "show", rid]) == 0
    assert "RunPod · $2.49/h paid" in capsys.readouterr().out
    monkeypatch.setenv("COLUMNS", "200")  # "where" is one of the columns an 80-column table leaves out (and names)
    assert main(["--db", db, "runs"]) == 0
    assert "RunPod" in capsys.readouterr().out


# -- History and run detail show where a run ran ----------------------------------------------------


async def test_history_and_run_detail_show_provider_instance_and_price(tmp_path):
    from tests.support.tui_support import fixed_store
    from tui.app import TokentopApp

    store = fixed_store(tmp_path / "fixed.duckdb")
    try:
        with store.connection() as con:
            con.execute(
                "UPDATE runs SET provider = 'runpod', provider_source = 'env RUNPOD_POD_ID', instance_id = 'pod-42', "
                "region = 'EU-RO-1', price_per_hour_usd = 2.49 WHERE run_id = '20250301-120000-aaaaaa'")
        app = TokentopApp(store=store, autostart=False, db_label="fixed.duckdb", mode="history")
        async with app.run_test(size=(80, 24)) as pilot:
            history = app.screen
            await pilot.press("f", *"runpod", "escape")  # the provider is searchable
            assert [r["run_id"] for r in history.shown] == ["20250301-120000-aaaaaa"]
            await pilot.pause()
            info = str(history.query_one("#history-info").render())
            assert "ran on RunPod · $2.49/h paid · EU-RO-1" in info
            await pilot.press("enter")
            await pilot.pause()
            from rich.console import Console

            console = Console(width=200, record=True, file=open(os.devnull, "w"))
            console.print(app.screen.query_one("#detail-env").content)  # the run's facts, as a rich grid
            detail = console.export_text()
            assert "RunPod · $2.49/h paid · from env RUNPOD_POD_ID · instance pod-42 · region EU-RO-1" in " ".join(
                detail.split())
    finally:
        store.close()


def test_gpu_energy_counts_only_the_gpus_the_run_used(store):
    from data.store.telemetry_rows import add_gpu_samples
    from engine.orchestrator import Orchestrator, run_summary
    from engine.telemetry.gpu import GpuSampler

    env = collect(vllm_desc(2), env={"CUDA_VISIBLE_DEVICES": "4,5"})
    gpu = GpuSampler(nvml=FakeNvml(gpus=[dict(H100) for _ in range(8)], power_w=300.0).module())
    gpu.open()
    gpu.sample_once()
    # the run orchestrator's GPU window for a run (what every run kind stores and summarises)
    samples, _note = Orchestrator(None, gpu=gpu, environment=lambda: env)._gpu_window(0.0)
    summary = run_summary([], [], [], gpu_samples=samples)
    rid = record(store, env, vllm_desc(2))
    add_gpu_samples(store, rid, list(samples), 0.0)
    assert summary["gpu"]["gpus"] == 2  # GPUs 4 and 5, not all 8
    stored = store.query("SELECT DISTINCT gpu_index FROM gpu_samples WHERE run_id = ? ORDER BY 1", [rid])
    assert [r["gpu_index"] for r in stored] == [4, 5]
