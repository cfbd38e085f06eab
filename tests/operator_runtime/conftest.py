"""Fixtures for the runtime tests: our own client on the real cluster, scratch namespaces.

These tests exercise the runtime against plain core objects (ConfigMaps, Leases), so they
need no CRDs and create namespaces with the operator's own client.
"""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from agentic_operator.kube import KubeClient
from agentic_operator.resources import CONFIG_MAPS
from tests.conftest import make_namespace


@pytest.fixture
def rt_ns(request: pytest.FixtureRequest, kube: KubeClient) -> Iterator[str]:
    yield from make_namespace(request, kube)


@pytest.fixture
def rt_ns2(request: pytest.FixtureRequest, kube: KubeClient) -> Iterator[str]:
    yield from make_namespace(request, kube)


@pytest.fixture
def run_label() -> str:
    """A label value unique to this test, so cluster-wide watches only see our objects."""
    return uuid.uuid4().hex[:10]


def configmap(name: str, *, label: str, value: str = "v", **labels: str) -> dict[str, object]:
    return {
        "metadata": {"name": name, "labels": {"rt-test": label, **labels}},
        "data": {"value": value},
    }


def cm_path(namespace: str, name: str | None = None) -> str:
    return CONFIG_MAPS.path(namespace, name)


def http_get(url: str) -> tuple[int, str, bytes]:
    """Status, Content-Type and body of a GET, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()
