"""Shared helpers for the pricing tests: a loopback HTTP server serving recorded provider responses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from pricing.providers import vastai

FIXTURES = Path(__file__).parent.parent / "fixtures" / "pricing"
PROVIDER_URL_ENVS = ("TOKENTOP_RUNPOD_URL", "TOKENTOP_VASTAI_URL", "TOKENTOP_VULTR_URL", "TOKENTOP_LAMBDA_URL")


def fixture_json(name: str):
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def price_server():
    server = HTTPServer(host="127.0.0.1", threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


def env_for(server: HTTPServer, *, lambda_key: str | None = None, **extra: str) -> dict[str, str]:
    base = server.url_for("").rstrip("/")
    env = {name: base for name in PROVIDER_URL_ENVS}
    env["TOKENTOP_LAMBDA_CATALOG_URL"] = base + "/catalogs/v8/lambda/vms.csv"
    if lambda_key:
        env["LAMBDA_API_KEY"] = lambda_key
    env.update(extra)
    return env


def serve_runpod(server, **respond):
    req = server.expect_request("/graphql", method="POST")
    if respond:
        return req
    req.respond_with_json(fixture_json("runpod_gpu_types.json"))


def serve_vastai(server):
    server.expect_request("/api/v0/bundles/", method="POST", json=vastai.search_body("on-demand")).respond_with_json(
        fixture_json("vastai_ondemand.json")
    )
    server.expect_request("/api/v0/bundles/", method="POST", json=vastai.search_body("bid")).respond_with_json(
        fixture_json("vastai_bid.json")
    )


def serve_vultr(server):
    server.expect_request("/v2/plans", method="GET", query_string={"type": "vcg", "per_page": "500"}).respond_with_json(
        fixture_json("vultr_plans_vcg.json")
    )


def serve_lambda(server):
    server.expect_request("/api/v1/instance-types", method="GET").respond_with_json(
        fixture_json("lambda_instance_types.json")
    )
    server.expect_request("/catalogs/v8/lambda/vms.csv").respond_with_data(
        (FIXTURES / "lambda_vms.csv").read_text(), content_type="text/csv"
    )


def serve_all(server):
    serve_runpod(server)
    serve_vastai(server)
    serve_vultr(server)
    serve_lambda(server)
