"""KubeClient against the real apiserver: CRUD, patch types, typed errors, watch abort, caps."""

from __future__ import annotations

import base64
import contextlib
import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from agentic_operator.kube import (
    BODY_CAP,
    AlreadyExistsError,
    ApiError,
    BodyTooLargeError,
    ClusterConfig,
    ConflictError,
    ForbiddenError,
    GoneError,
    InvalidError,
    KubeClient,
    NotFoundError,
    ServerError,
    TransportError,
    UnauthorizedError,
    api_path,
)
from tests.conftest import wait_until
from tests.operator_runtime.conftest import cm_path, configmap


@pytest.mark.unit
def test_api_path() -> None:
    assert api_path(version="v1", plural="pods") == "/api/v1/pods"
    assert (
        api_path(group="vteam.ambient-code", version="v1alpha1", plural="agenticsessions",
                 namespace="ns", name="s", subresource="status")
        == "/apis/vteam.ambient-code/v1alpha1/namespaces/ns/agenticsessions/s/status"
    )  # fmt: skip
    with pytest.raises(ValueError):
        api_path(version="v1", plural="pods", subresource="log")


@pytest.mark.cluster
def test_crud_and_typed_errors(kube: KubeClient, rt_ns: str) -> None:
    created = kube.create(cm_path(rt_ns), configmap("a", label="x"))
    assert created["metadata"]["name"] == "a"
    assert created["metadata"]["resourceVersion"]

    with pytest.raises(AlreadyExistsError) as ei:
        kube.create(cm_path(rt_ns), configmap("a", label="x"))
    assert not isinstance(ei.value, ConflictError)
    assert ei.value.status == 409
    assert ei.value.body is not None and ei.value.body["kind"] == "Status"

    got = kube.get(cm_path(rt_ns, "a"))
    assert got["data"] == {"value": "v"}

    # Optimistic concurrency: replacing with a stale resourceVersion is a Conflict.
    got["data"]["value"] = "w"
    replaced = kube.replace(cm_path(rt_ns, "a"), got)
    assert replaced["data"]["value"] == "w"
    with pytest.raises(ConflictError) as ei:
        kube.replace(cm_path(rt_ns, "a"), got)
    assert not isinstance(ei.value, AlreadyExistsError) and ei.value.status == 409

    merged = kube.patch(cm_path(rt_ns, "a"), {"data": {"m": "1"}})
    assert merged["data"] == {"value": "w", "m": "1"}
    jsonp = kube.patch(
        cm_path(rt_ns, "a"), [{"op": "remove", "path": "/data/m"}], patch_type="json"
    )
    assert jsonp["data"] == {"value": "w"}
    strat = kube.patch(
        cm_path(rt_ns, "a"), {"metadata": {"labels": {"s": "1"}}}, patch_type="strategic"
    )
    assert strat["metadata"]["labels"]["s"] == "1"

    listed = kube.get(cm_path(rt_ns), params={"labelSelector": "rt-test=x"})
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a"]

    deleted = kube.delete(cm_path(rt_ns, "a"))
    assert deleted is not None
    with pytest.raises(NotFoundError) as ei:
        kube.get(cm_path(rt_ns, "a"))
    assert ei.value.status == 404
    assert "not found" in ei.value.message
    with pytest.raises(NotFoundError) as ei:
        kube.delete(cm_path(rt_ns, "a"))
    assert ei.value.status == 404

    with pytest.raises(InvalidError) as ei:
        kube.create(cm_path(rt_ns), {"metadata": {"name": "Bad_Name"}})
    assert ei.value.status == 422


@pytest.mark.cluster
def test_forbidden_and_unauthorized(kube: KubeClient, rt_ns: str) -> None:
    sa_path = api_path(version="v1", plural="serviceaccounts", namespace=rt_ns)
    kube.create(sa_path, {"metadata": {"name": "nobody"}})

    def token() -> str | None:
        sa = kube.get(sa_path + "/nobody")
        for ref in sa.get("secrets") or []:
            sec = kube.get(
                api_path(version="v1", plural="secrets", namespace=rt_ns, name=ref["name"])
            )
            tok = (sec.get("data") or {}).get("token")
            if tok:
                return base64.b64decode(tok).decode()
        return None

    def refused(bearer: str, error: type[ApiError], status: int) -> None:
        base = kube.config
        client = KubeClient(
            ClusterConfig(
                server=base.server, ca_file=base.ca_file, ca_data=base.ca_data, token=bearer
            )
        )
        try:
            with pytest.raises(error) as ei:
                client.get(cm_path("kube-system"))
            assert ei.value.status == status
        finally:
            client.close()

    refused(wait_until(token, timeout=30, what="service-account token"), ForbiddenError, 403)
    refused("bogus", UnauthorizedError, 401)


@pytest.mark.unit
def test_transport_error_when_nothing_listens() -> None:
    c = KubeClient(ClusterConfig(server="https://127.0.0.1:1", insecure=True))
    t0 = time.monotonic()
    with pytest.raises(TransportError) as ei:
        c.get("/version")
    assert isinstance(ei.value.__cause__, Exception)
    assert time.monotonic() - t0 < 5


@pytest.mark.cluster
def test_watch_events_and_abort_from_another_thread(kube: KubeClient, rt_ns: str) -> None:
    rv = kube.get(cm_path(rt_ns))["metadata"]["resourceVersion"]
    # kube-controller-manager adds kube-root-ca.crt to new namespaces: watch only ours.
    stream = kube.watch(
        cm_path(rt_ns),
        params={"resourceVersion": rv, "timeoutSeconds": "120", "labelSelector": "rt-test=x"},
    )
    kube.create(cm_path(rt_ns), configmap("w1", label="x"))
    it = iter(stream)
    etype, obj = next(it)
    assert (etype, obj["metadata"]["name"]) == ("ADDED", "w1")
    # Now block in a read with nothing to come, and abort from another thread.
    threading.Timer(0.3, stream.close).start()
    t0 = time.monotonic()
    rest = list(it)
    assert rest == []
    assert time.monotonic() - t0 < 1.5
    assert stream.closed
    # The pool still works afterwards.
    assert kube.get(cm_path(rt_ns, "w1"))["metadata"]["name"] == "w1"


@pytest.mark.cluster
def test_watch_too_old_rv_reports_410(kube: KubeClient, rt_ns: str) -> None:
    try:
        with kube.watch(
            cm_path(rt_ns), params={"resourceVersion": "1", "timeoutSeconds": "10"}
        ) as s:
            events = list(s)
    except GoneError:  # some apiservers answer with HTTP 410 instead of an ERROR event
        return
    assert events[0][0] == "ERROR"
    assert isinstance(ApiError.from_status(events[0][1]["code"], events[0][1]), GoneError)


@pytest.mark.cluster
def test_close_before_iteration_releases(kube: KubeClient, rt_ns: str) -> None:
    s = kube.watch(cm_path(rt_ns), params={"timeoutSeconds": "30"})
    s.close()
    assert list(s) == []


# -- capped bodies from a non-apiserver endpoint -------------------------------------------------


class _Big(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        # The client cuts the body off at its cap, as intended.
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            self._serve()

    def _serve(self) -> None:
        size = int(self.path.rsplit("/", 1)[1])
        status = 500 if self.path.startswith("/err/") else 200
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        if "chunked" in self.path:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            left = size
            while left:
                n = min(left, 10_000)
                self.wfile.write(f"{n:x}\r\n".encode() + b"x" * n + b"\r\n")
                left -= n
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(size))
        self.end_headers()
        self.wfile.write(b"x" * size)

    def log_message(self, *a: object) -> None:
        pass


@pytest.fixture
def big_server() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Big)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.mark.unit
def test_capped_bodies(big_server: str) -> None:
    c = KubeClient(ClusterConfig(server=big_server))
    try:
        assert len(c.request_raw("GET", "/ok/1000")) == 1000
        assert len(c.request_raw("GET", f"/ok/{BODY_CAP}")) == BODY_CAP
        with pytest.raises(BodyTooLargeError):
            c.request_raw("GET", f"/ok/{BODY_CAP + 1}")
        with pytest.raises(BodyTooLargeError):
            c.request_raw("GET", "/ok/chunked/5000000")
        with pytest.raises(ServerError) as ei:
            c.request_raw("GET", "/err/5000000")
        assert ei.value.status == 500
        assert ei.value.body is None
        assert len(ei.value.message) <= 512
        # After cut-off bodies the pool still serves requests correctly.
        assert c.request_raw("GET", "/ok/10") == b"x" * 10
    finally:
        c.close()
