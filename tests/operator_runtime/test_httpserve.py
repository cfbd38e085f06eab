"""The metrics and probe listeners (`_httpserve`): addresses, routes, status codes."""

from __future__ import annotations

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, Counter

from agentic_operator._httpserve import parse_addr, serve_metrics, serve_probes
from agentic_operator._metrics import new_registry
from tests.operator_runtime.conftest import http_get

pytestmark = pytest.mark.unit


def test_parse_addr() -> None:
    assert parse_addr(":8080") == ("", 8080)
    assert parse_addr("127.0.0.1:9") == ("127.0.0.1", 9)
    assert parse_addr("[::1]:6060") == ("::1", 6060)
    assert parse_addr("0") is None
    assert parse_addr("") is None
    for bad in ("8080", "host:x", ":70000"):
        with pytest.raises(ValueError):
            parse_addr(bad)


def test_metrics_server() -> None:
    reg = new_registry()
    Counter("hits_total", "Hits.", registry=reg).inc()
    srv = serve_metrics("127.0.0.1:0", reg)
    assert srv is not None
    try:
        status, ctype, body = http_get(f"http://127.0.0.1:{srv.port}/metrics")
        assert status == 200
        assert ctype == CONTENT_TYPE_LATEST
        assert b"hits_total 1.0" in body
        assert http_get(f"http://127.0.0.1:{srv.port}/nope")[0] == 404
    finally:
        srv.shutdown()
    assert serve_metrics("0", reg) is None


def test_probe_server() -> None:
    state = {"ready": False}

    def boom() -> bool:
        raise RuntimeError("x")

    srv = serve_probes("127.0.0.1:0", healthz=lambda: True, readyz=lambda: state["ready"])
    assert srv is not None
    try:
        base = f"http://127.0.0.1:{srv.port}"
        assert http_get(base + "/healthz")[::2] == (200, b"ok")
        assert http_get(base + "/readyz")[0] == 500
        state["ready"] = True
        assert http_get(base + "/readyz")[::2] == (200, b"ok")
        assert http_get(base + "/readyz/ping")[0] == 200
    finally:
        srv.shutdown()
    srv2 = serve_probes("127.0.0.1:0", healthz=boom, readyz=boom)
    assert srv2 is not None
    try:
        assert http_get(f"http://127.0.0.1:{srv2.port}/healthz")[0] == 500
    finally:
        srv2.shutdown()
