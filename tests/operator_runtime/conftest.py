"""Fixtures for the runtime tests: our own client on the real cluster, scratch namespaces.

These tests exercise the runtime against plain core objects (ConfigMaps, Leases), so they
need no CRDs and create namespaces with the operator's own client.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentic_operator._kube.client import KubeClient, api_path
from agentic_operator._kube.config import load_config
from agentic_operator._kube.errors import ApiError
from tests.conftest import TEST_LABEL, _ns_name


@pytest.fixture(scope="session")
def kube(kubeconfig: Path) -> Iterator[KubeClient]:
    client = KubeClient(load_config(kubeconfig=str(kubeconfig)), max_connections=8)
    yield client
    client.close()


def _make_ns(request: pytest.FixtureRequest, kube: KubeClient) -> Iterator[str]:
    name = _ns_name(request)
    kube.create(
        api_path(version="v1", plural="namespaces"),
        {"metadata": {"name": name, "labels": {TEST_LABEL: "true"}}},
    )
    try:
        yield name
    finally:
        if os.environ.get("TRIAGE_KEEP_TEST_NAMESPACES") != "1":
            try:
                kube.delete(api_path(version="v1", plural="namespaces", name=name))
            except ApiError as e:
                if not e.not_found:
                    raise


@pytest.fixture
def rt_ns(request: pytest.FixtureRequest, kube: KubeClient) -> Iterator[str]:
    yield from _make_ns(request, kube)


@pytest.fixture
def rt_ns2(request: pytest.FixtureRequest, kube: KubeClient) -> Iterator[str]:
    yield from _make_ns(request, kube)


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
    return api_path(version="v1", plural="configmaps", namespace=namespace, name=name)
