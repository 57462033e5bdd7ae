"""Each fetcher with real httpx against a loopback server serving recorded provider responses,
and every fault: timeout, HTTP 500, 401 without a key, HTML, truncated JSON, missing or mistyped
fields, an empty list, a response of tens of MB. One provider failing never stops the others."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest
from werkzeug import Response

from pricing.fetch import fetch_live
from pricing.models import CATALOG, LIVE, ON_DEMAND, SPOT
from tests.support.pricing_support import (  # noqa: F401  (price_server is a fixture)
    env_for,
    fixture_json,
    price_server,
    serve_all,
    serve_lambda,
    serve_runpod,
    serve_vastai,
    serve_vultr,
)

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)


async def fetch(server, providers, timeout=5.0, **env):
    return await fetch_live(providers, env=env_for(server, **env), now=NOW, timeout=timeout)


def by(rows, **want):
    return [r for r in rows if all(getattr(r, k) == v for k, v in want.items())]


# -- parsing the recorded responses -----------------------------------------------------------------
async def test_runpod_rows_are_per_gpu_hour_with_canonical_keys(price_server):
    serve_runpod(price_server)
    res = (await fetch(price_server, ["runpod"]))["runpod"]
    assert res.ok and res.source == LIVE
    sxm = by(res.rows, gpu_key="H100-SXM-80")
    assert {(r.pricing_type, r.note, r.usd_per_hour) for r in sxm} == {
        (ON_DEMAND, "secure cloud", 2.69),
        (SPOT, "lowest bid", 1.75),
    }
    assert all(r.gpu_count == 1 and r.usd_per_gpu_hour == r.usd_per_hour for r in res.rows)
    pcie = by(res.rows, gpu_key="H100-PCIE-80", pricing_type=ON_DEMAND)
    assert sorted(r.usd_per_hour for r in pcie) == [1.99, 2.39]
    assert by(res.rows, gpu_key="RTX4090-24", note="community cloud")[0].usd_per_hour == 0.34
    assert by(res.rows, gpu_key="H100-NVL-94")  # memoryInGb 94
    assert by(res.rows, gpu_raw_name="MI300X")[0].gpu_key == "MI300X-192"
    assert not by(res.rows, gpu_raw_name="unknown")  # priced at 0: no row


async def test_vastai_min_and_median_per_model_and_count(price_server):
    serve_vastai(price_server)
    res = (await fetch(price_server, ["vastai"]))["vastai"]
    assert res.ok, res.reason
    one = by(res.rows, gpu_key="RTX4090-24", gpu_count=1, pricing_type=ON_DEMAND)
    assert {r.stat: r.usd_per_hour for r in one} == {"min": 0.32, "median": 0.35}
    assert {r.offers for r in one} == {3}
    two = by(res.rows, gpu_key="RTX4090-24", gpu_count=2, stat="min")[0]
    assert two.usd_per_hour == 0.70 and two.usd_per_gpu_hour == 0.35
    eight = by(res.rows, gpu_key="H100-SXM-80", gpu_count=8, stat="min")[0]
    assert eight.usd_per_gpu_hour == pytest.approx(2.2)
    # gpu_ram is MB: 40960 MB -> the 40 GB A100
    assert by(res.rows, gpu_raw_name="A100 PCIE")[0].gpu_key == "A100-PCIE-40"
    spot = by(res.rows, gpu_key="H100-SXM-80", gpu_count=1, pricing_type=SPOT, stat="min")[0]
    assert spot.usd_per_hour == 1.40
    unmatched = by(res.rows, gpu_raw_name="Q RTX 8000")
    assert unmatched and unmatched[0].gpu_key is None  # kept, not dropped


async def test_vultr_counts_gpus_from_total_vram_and_skips_fractional_plans(price_server):
    serve_vultr(price_server)
    res = (await fetch(price_server, ["vultr"]))["vultr"]
    assert res.ok, res.reason
    a100 = {r.instance_type: r for r in res.rows if r.gpu_raw_name == "NVIDIA_A100"}
    # The 4 GB and 40 GB plans are slices of the 80 GB card (half its vCPUs and memory for the 40).
    assert set(a100) == {"vcg-a100-12c-120g-80vram", "vcg-a100-24c-240g-160vram"}
    assert a100["vcg-a100-12c-120g-80vram"].gpu_count == 1
    two = a100["vcg-a100-24c-240g-160vram"]
    assert (two.gpu_key, two.gpu_count, two.usd_per_gpu_hour) == ("A100-SXM-80", 2, pytest.approx(2.397))
    assert all(r.approximate for r in a100.values())  # Vultr does not say SXM or PCIe
    assert not [r for r in res.rows if r.gpu_raw_name == "NVIDIA_A16"]  # 2 GB slice of a card
    assert by(res.rows, gpu_raw_name="NVIDIA_GX1")[0].gpu_key is None


def _vultr_plan(plan_id: str, gpu_type: str, vram: int, hourly: float) -> dict:
    """A plan as Vultr's /v2/plans?type=vcg lists it (vCPUs and memory as its id says)."""
    import re

    cpu, ram = re.search(r"(\d+)c-(\d+)g-", plan_id).groups()
    return {"id": plan_id, "vcpu_count": int(cpu), "ram": int(ram) * 1024, "disk": 50, "disk_count": 1,
            "bandwidth": 1024, "monthly_cost": round(hourly * 730, 2), "hourly_cost": hourly, "type": "vcg",
            "locations": ["ewr"], "gpu_vram_gb": vram, "gpu_type": gpu_type}


async def test_vultr_a100_slices_are_fractional_never_a_smaller_whole_gpu(price_server):
    """Issue 17 case 12: Vultr's A100 plans are an 80 GB card, two of them, and 4-40 GB slices of the
    card. The 40 GB slice (6 vCPU, 60 GB: half the card's plan) used to be priced as a whole A100-40."""
    body = {"plans": [
        _vultr_plan("vcg-a100-1c-6g-4vram", "NVIDIA_A100", 4, 0.123),
        _vultr_plan("vcg-a100-2c-15g-10vram", "NVIDIA_A100", 10, 0.308),
        _vultr_plan("vcg-a100-3c-30g-20vram", "NVIDIA_A100", 20, 0.616),
        _vultr_plan("vcg-a100-6c-60g-40vram", "NVIDIA_A100", 40, 1.397),
        _vultr_plan("vcg-a100-12c-120g-80vram", "NVIDIA_A100", 80, 2.397),
        _vultr_plan("vcg-a100-24c-240g-160vram", "NVIDIA_A100", 160, 4.794),
        _vultr_plan("vcg-a16-2c-8g-2vram", "NVIDIA_A16", 2, 0.059),
        _vultr_plan("vcg-a16-6c-64g-16vram", "NVIDIA_A16", 16, 0.47),
        _vultr_plan("vcg-l40s-16c-180g-48vram", "NVIDIA_L40S", 48, 1.671),
    ], "meta": {"total": 9, "links": {"next": "", "prev": ""}}}
    price_server.expect_request("/v2/plans").respond_with_json(body)
    res = (await fetch(price_server, ["vultr"]))["vultr"]
    assert res.ok, res.reason
    rows = {r.instance_type: r for r in res.rows}
    assert not [r for r in res.rows if r.gpu_key in ("A100-SXM-40", "A100-PCIE-40")]  # no slice as a whole A100-40
    assert set(rows) == {"vcg-a100-12c-120g-80vram", "vcg-a100-24c-240g-160vram", "vcg-a16-6c-64g-16vram",
                         "vcg-l40s-16c-180g-48vram"}
    one, two = rows["vcg-a100-12c-120g-80vram"], rows["vcg-a100-24c-240g-160vram"]
    assert (one.gpu_key, one.gpu_count, one.usd_per_gpu_hour) == ("A100-SXM-80", 1, pytest.approx(2.397))
    assert (two.gpu_key, two.gpu_count, two.usd_per_gpu_hour) == ("A100-SXM-80", 2, pytest.approx(2.397))
    assert (rows["vcg-a16-6c-64g-16vram"].gpu_key, rows["vcg-a16-6c-64g-16vram"].gpu_count) == ("A16-16", 1)
    # The slices are counted in the provider's note.
    assert "5 fractional-GPU plan(s) skipped" in res.reason and "vcg-a100-1c-6g-4vram" in res.reason


async def test_vultr_smaller_whole_card_only_when_not_a_share_of_the_full_card(price_server):
    """A plan whose vCPUs or memory exceed the full card's plan is not a slice of that card: its VRAM,
    a whole smaller card of the family, keys it as that card (approximate)."""
    body = {"plans": [
        _vultr_plan("vcg-a100-12c-120g-80vram", "NVIDIA_A100", 80, 2.397),
        _vultr_plan("vcg-a100-16c-128g-40vram", "NVIDIA_A100", 40, 1.5),  # more than the 80 GB plan's share
        _vultr_plan("vcg-a100-6c-60g-40vram", "NVIDIA_A100", 40, 1.397),  # half the 80 GB plan: a slice
    ]}
    price_server.expect_request("/v2/plans").respond_with_json(body)
    res = (await fetch(price_server, ["vultr"]))["vultr"]
    rows = {r.instance_type: r for r in res.rows}
    assert set(rows) == {"vcg-a100-12c-120g-80vram", "vcg-a100-16c-128g-40vram"}
    assert rows["vcg-a100-16c-128g-40vram"].gpu_key == "A100-SXM-40" and rows["vcg-a100-16c-128g-40vram"].approximate
    assert "1 fractional-GPU plan(s) skipped" in res.reason


async def test_lambda_with_key_converts_cents_to_dollars(price_server):
    serve_lambda(price_server)
    res = (await fetch(price_server, ["lambda"], lambda_key="secret-test-key"))["lambda"]
    assert res.ok and res.source == LIVE
    rows = {r.instance_type: r for r in res.rows}
    assert rows["gpu_1x_h100_pcie"].usd_per_hour == 2.49
    assert rows["gpu_1x_h100_pcie"].gpu_key == "H100-PCIE-80"
    assert rows["gpu_8x_h100_sxm5"].usd_per_hour == pytest.approx(23.92)
    assert rows["gpu_8x_h100_sxm5"].usd_per_gpu_hour == pytest.approx(2.99)
    assert rows["gpu_1x_a100_sxm4"].gpu_key == "A100-SXM-40"
    assert "cpu_4x_general" not in rows
    # The key travelled in the header only.
    request = [r for r, _ in price_server.log if r.path == "/api/v1/instance-types"][0]
    assert request.headers["Authorization"] == "Bearer secret-test-key"
    assert "secret-test-key" not in json.dumps([r.to_dict() for r in res.rows]) + res.reason


async def test_lambda_without_key_reads_the_public_catalog(price_server):
    serve_lambda(price_server)
    res = (await fetch(price_server, ["lambda"]))["lambda"]
    assert res.ok and res.source == CATALOG
    assert "no LAMBDA_API_KEY" in res.reason
    rows = {r.instance_type: r for r in res.rows}
    assert rows["gpu_1x_h100_pcie"].usd_per_hour == 2.49 and rows["gpu_1x_h100_pcie"].region == "3 regions"
    assert rows["gpu_1x_a100_sxm4"].gpu_key == "A100-SXM-40"
    assert all(r.source == CATALOG for r in res.rows)
    assert not [r for r, _ in price_server.log if r.path == "/api/v1/instance-types"]


async def test_all_providers_concurrently(price_server):
    serve_all(price_server)
    results = await fetch(price_server, None)
    assert list(results) == ["runpod", "vastai", "lambda", "vultr"]
    assert all(r.ok for r in results.values()), {p: r.reason for p, r in results.items()}


# -- faults ----------------------------------------------------------------------------------------
def _slow(request):
    time.sleep(4.0)  # deliberate: a provider slower than the fetch's timeout is the fault under test
    return Response(json.dumps(fixture_json("runpod_gpu_types.json")), content_type="application/json")


FAULTS = {
    "timeout": (lambda req: req.respond_with_handler(_slow), "timed out"),
    "http 500": (lambda req: req.respond_with_data("oops", status=500), "HTTP 500"),
    "401 without key": (lambda req: req.respond_with_json({"error": "unauthorized"}, status=401),
                        "HTTP 401: the API wants a key (set RUNPOD_API_KEY)"),
    "html": (lambda req: req.respond_with_data("<!doctype html><html><body>Login</body></html>",
                                               content_type="text/html"), "not JSON"),
    "truncated json": (lambda req: req.respond_with_data(
        json.dumps(fixture_json("runpod_gpu_types.json"))[:300], content_type="application/json"), "invalid JSON"),
    "missing field": (lambda req: req.respond_with_json({"data": {}}), "field 'data.gpuTypes' missing"),
    "wrong type": (lambda req: req.respond_with_json({"data": {"gpuTypes": "H100"}}),
                   "field 'data.gpuTypes' is str, expected list"),
    "empty list": (lambda req: req.respond_with_json({"data": {"gpuTypes": []}}), "no GPU types"),
    "tens of MB": (lambda req: req.respond_with_data(
        b'{"data": {"gpuTypes": [' + b'{"id": "x"},' * 3_000_000 + b'{}]}}', content_type="application/json"),
        "too large"),
    "graphql error": (lambda req: req.respond_with_json({"errors": [{"message": "Something\nbroke"}]}),
                      "GraphQL error: Something broke"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_faulty_provider_fails_alone_with_a_one_line_reason(price_server, fault):
    make, expected = FAULTS[fault]
    make(serve_runpod(price_server, respond=False))
    serve_vastai(price_server)
    serve_vultr(price_server)
    serve_lambda(price_server)
    started = time.monotonic()
    # 1.5 s: the healthy loopback providers answer well within it even on a busy machine; RunPod's 4 s stall does not.
    results = await fetch(price_server, None, timeout=1.5)
    runpod = results["runpod"]
    assert not runpod.ok and runpod.rows == []
    assert expected in runpod.reason
    assert "\n" not in runpod.reason and len(runpod.reason) <= 140
    for other in ("vastai", "vultr", "lambda"):
        assert results[other].ok and results[other].rows, (other, results[other].reason)
    assert time.monotonic() - started < 10


async def test_one_bad_entry_is_skipped_and_reported(price_server):
    data = fixture_json("vultr_plans_vcg.json")
    data["plans"][2]["hourly_cost"] = "2.397"  # a string where a number belongs
    del data["plans"][1]["gpu_type"]
    price_server.expect_request("/v2/plans").respond_with_json(data)
    res = (await fetch(price_server, ["vultr"]))["vultr"]
    assert res.ok
    assert res.reason.startswith("2 of 9 entries skipped")
    assert "vcg-a100-12c-120g-80vram" not in {r.instance_type for r in res.rows}


async def test_vast_keeps_on_demand_when_the_interruptible_search_fails(price_server):
    from pricing.providers import vastai

    price_server.expect_request("/api/v0/bundles/", json=vastai.search_body("on-demand")).respond_with_json(
        fixture_json("vastai_ondemand.json"))
    price_server.expect_request("/api/v0/bundles/", json=vastai.search_body("bid")).respond_with_data(
        "bad gateway", status=502)
    res = (await fetch(price_server, ["vastai"]))["vastai"]
    assert res.ok and "interruptible search failed: HTTP 502" in res.reason
    assert not by(res.rows, pricing_type=SPOT)


async def test_lambda_key_rejected(price_server):
    price_server.expect_request("/api/v1/instance-types").respond_with_json({"error": {"code": "x"}}, status=401)
    res = (await fetch(price_server, ["lambda"], lambda_key="bad-key-123"))["lambda"]
    assert not res.ok and res.reason == "HTTP 401: the API key was rejected"
    assert "bad-key-123" not in res.reason


async def test_unreachable_server_fails_fast():
    env = {"TOKENTOP_VULTR_URL": "http://127.0.0.1:9"}
    res = (await fetch_live(["vultr"], env=env, now=NOW, timeout=2))["vultr"]
    assert not res.ok and res.reason.startswith("cannot connect")
