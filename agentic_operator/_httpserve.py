"""The operator's HTTP listeners: Prometheus metrics and kubelet health probes.

controller-runtime serves these from the manager; here they are stdlib
ThreadingHTTPServers on daemon threads, so a stuck scrape can never block shutdown and no
web framework is imported. Addresses follow the upstream flags: ":8080" listens on all
interfaces (as upstream does for metrics and probes), "host:port" on one, "0" disables.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from agentic_operator._metrics import render

__all__ = ["HTTPServerHandle", "parse_addr", "serve", "serve_metrics", "serve_probes"]

log = logging.getLogger(__name__)

Route = Callable[[Mapping[str, list[str]]], tuple[int, str, bytes]]


def parse_addr(addr: str) -> tuple[str, int] | None:
    """':8080' -> ('', 8080); '127.0.0.1:8080'; '[::1]:8080'; '0' or '' -> None (disabled)."""
    addr = addr.strip()
    if addr in ("", "0"):
        return None
    host, sep, port_s = addr.rpartition(":")
    if not sep:
        raise ValueError(f"bind address {addr!r} must look like host:port or :port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_s)
    except ValueError as e:
        raise ValueError(f"bind address {addr!r} has a bad port") from e
    if not 0 <= port <= 65535:
        raise ValueError(f"bind address {addr!r} has a bad port")
    return host, port


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Several operator pods may share the host network in the local overlay.
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class HTTPServerHandle:
    """A running listener; `shutdown()` stops it and closes the socket."""

    def __init__(self, httpd: ThreadingHTTPServer, thread: threading.Thread, name: str) -> None:
        self._httpd = httpd
        self._thread = thread
        self.name = name

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    def shutdown(self, timeout: float = 2.0) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout)


def serve(addr: str, routes: Mapping[str, Route], *, name: str) -> HTTPServerHandle | None:
    """Serve GET `routes` (exact path, or prefix when the key ends with '/') on `addr`."""
    parsed = parse_addr(addr)
    if parsed is None:
        return None
    host, port = parsed

    class Handler(BaseHTTPRequestHandler):
        # A client that connects and sends nothing must not pin a thread forever.
        timeout = 10
        server_version = "agentic-operator"
        sys_version = ""

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            route = routes.get(url.path)
            if route is None:
                for prefix, fn in routes.items():
                    if prefix.endswith("/") and url.path.startswith(prefix):
                        route = fn
                        break
            if route is None:
                self._send(404, "text/plain; charset=utf-8", b"not found\n")
                return
            try:
                status, ctype, body = route(parse_qs(url.query))
            except Exception as e:
                log.exception("%s: %s failed", name, url.path)
                status, ctype, body = 500, "text/plain; charset=utf-8", f"{e}\n".encode()
            self._send(status, ctype, body)

        def _send(self, status: int, ctype: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s: " + format, name, *args)

    server_cls: type[_Server] = _Server
    if host and ":" in host:
        server_cls = _Server6
    try:
        httpd = server_cls((host, port), Handler)
    except OSError as e:
        raise OSError(e.errno, f"{name}: cannot listen on {addr}: {e.strerror}") from e
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name=name, daemon=True
    )
    thread.start()
    handle = HTTPServerHandle(httpd, thread, name)
    log.info("%s listening on %s:%d", name, *handle.address)
    return handle


def serve_metrics(addr: str, registry: CollectorRegistry) -> HTTPServerHandle | None:
    """GET /metrics in the Prometheus text format; None when `addr` is "0"."""

    def metrics(_q: Mapping[str, list[str]]) -> tuple[int, str, bytes]:
        return 200, CONTENT_TYPE_LATEST, render(registry)

    return serve(addr, {"/metrics": metrics}, name="metrics-server")


def serve_probes(
    addr: str, *, healthz: Callable[[], bool], readyz: Callable[[], bool]
) -> HTTPServerHandle | None:
    """GET /healthz and /readyz (200 "ok" or 500); None when `addr` is "0"."""

    def probe(check: Callable[[], bool]) -> Route:
        def route(_q: Mapping[str, list[str]]) -> tuple[int, str, bytes]:
            try:
                ok = bool(check())
            except Exception as e:
                log.warning("probe check failed: %s", e)
                ok = False
            if ok:
                return 200, "text/plain; charset=utf-8", b"ok"
            return 500, "text/plain; charset=utf-8", b"not ok"

        return route

    return serve(
        addr,
        {
            "/healthz": probe(healthz),
            "/healthz/": probe(healthz),
            "/readyz": probe(readyz),
            "/readyz/": probe(readyz),
        },
        name="health-probes",
    )


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'; an empty host means all interfaces."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
