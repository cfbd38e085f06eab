"""A small JSON client for the Kubernetes API on top of one shared urllib3 PoolManager.

The upstream Go operator kept one HTTP client per use and read error bodies whole; the
official Python client costs ~20 MiB of imports and builds model objects for every item.
This client speaks raw JSON dicts, shares a single connection pool across all callers and
threads, reads every error body (and anything from a non-apiserver endpoint) through a
64 KiB cap, and hands out watch streams that another thread can abort promptly.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import socket
import ssl
import threading
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote, urlencode

import urllib3
from urllib3.connection import HTTPConnection
from urllib3.exceptions import HTTPError as _Urllib3Error
from urllib3.util import Retry, Timeout

from agentic_operator._kube.config import ClusterConfig
from agentic_operator._kube.errors import ApiError, ConfigError, KubeError, TransportError
from agentic_operator._kube.watch import WatchStream

__all__ = ["BODY_CAP", "BodyTooLargeError", "KubeClient", "api_path", "read_capped"]

log = logging.getLogger(__name__)

BODY_CAP = 64 * 1024

PATCH_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}

PatchType = Literal["merge", "json", "strategic", "apply"]


class BodyTooLargeError(KubeError):
    """A capped body (non-apiserver endpoint) was longer than the cap allows."""


def api_path(
    *,
    group: str = "",
    version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """Build a resource URL path: core group under /api, everything else under /apis."""
    parts = ["/api", version] if not group else ["/apis", group, version]
    if namespace is not None:
        parts += ["namespaces", quote(namespace, safe="")]
    parts.append(plural)
    if name is not None:
        parts.append(quote(name, safe=""))
    if subresource is not None:
        if name is None:
            raise ValueError("a subresource needs a name")
        parts.append(subresource)
    return "/".join(parts)


def read_capped(resp: urllib3.BaseHTTPResponse, limit: int = BODY_CAP) -> bytes:
    """Read at most `limit` bytes of `resp`; a longer body is cut and its connection dropped.

    An error page or a misbehaving endpoint must never make us buffer an unbounded body,
    which is one of the ways the upstream operator's memory grew.
    """
    chunks: list[bytes] = []
    got = 0
    truncated = False
    try:
        while got < limit:
            chunk = resp.read1(min(65536, limit - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        else:
            # Exactly at the cap: find out whether anything is left without reading it all.
            truncated = bool(resp.read1(1))
    except (_Urllib3Error, OSError) as e:
        raise TransportError(f"reading response body: {e}") from e
    finally:
        if truncated:
            resp.close()
        resp.release_conn()
    data = b"".join(chunks)
    if truncated:
        # Mark the cut so callers that log it do not mistake it for the whole body.
        setattr(resp, "_capped_truncated", True)  # noqa: B010
    return data


class _Auth:
    """Builds the Authorization header; re-reads a token file when the kubelet rotates it."""

    def __init__(self, config: ClusterConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._file_stamp: tuple[float, int] | None = None
        self._file_token: str | None = None

    def header(self, *, force_reload: bool = False) -> str | None:
        cfg = self._config
        if cfg.token_file is not None:
            return f"Bearer {self._read_token_file(force=force_reload)}"
        if cfg.token is not None:
            return f"Bearer {cfg.token}"
        if cfg.username is not None:
            raw = f"{cfg.username}:{cfg.password or ''}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        return None

    @property
    def reloadable(self) -> bool:
        return self._config.token_file is not None

    def _read_token_file(self, *, force: bool) -> str:
        path = self._config.token_file
        assert path is not None
        try:
            st = os.stat(path)
        except OSError as e:
            if self._file_token is not None:
                return self._file_token  # keep the last good token during a swap
            raise ConfigError(f"cannot stat token file {path}: {e}") from e
        stamp = (st.st_mtime, st.st_size)
        with self._lock:
            if force or stamp != self._file_stamp or self._file_token is None:
                try:
                    with open(path, encoding="utf-8") as f:
                        self._file_token = f.read().strip()
                except OSError as e:
                    if self._file_token is None:
                        raise ConfigError(f"cannot read token file {path}: {e}") from e
                self._file_stamp = stamp
            return self._file_token or ""


def _ssl_context(config: ClusterConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if config.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        try:
            if config.ca_file:
                ctx.load_verify_locations(cafile=config.ca_file)
            if config.ca_data:
                ctx.load_verify_locations(cadata=config.ca_data.decode("ascii"))
        except (OSError, ssl.SSLError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot load cluster CA: {e}") from e
    if config.cert_file or config.cert_data:
        _load_client_cert(ctx, config)
    return ctx


def _load_client_cert(ctx: ssl.SSLContext, config: ClusterConfig) -> None:
    # ssl only loads certificates from files, so inline data goes through private temp
    # files that exist just for the duration of the call.
    temps: list[str] = []
    try:
        cert = config.cert_file
        key = config.key_file
        if config.cert_data is not None:
            cert = _write_temp(config.cert_data, temps)
        if config.key_data is not None:
            key = _write_temp(config.key_data, temps)
        assert cert is not None
        ctx.load_cert_chain(certfile=cert, keyfile=key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"cannot load client certificate: {e}") from e
    finally:
        for t in temps:
            with contextlib.suppress(OSError):
                os.unlink(t)


def _write_temp(data: bytes, temps: list[str]) -> str:
    import tempfile

    fd, name = tempfile.mkstemp(prefix="agentic-op-", suffix=".pem")
    temps.append(name)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return name


def _socket_options() -> list[tuple[int, int, int]]:
    """TCP keepalive, so a watch on a silently dead connection fails in about a minute.

    Without it a half-open connection (peer gone without FIN/RST) blocks the watch read
    until the read timeout, minutes during which the cache silently goes stale.
    """
    opts = list(HTTPConnection.default_socket_options)
    opts.append((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            opts.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    return opts


def _decode_error(data: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


class KubeClient:
    """Thread-safe Kubernetes REST client; share one instance per process."""

    read_capped = staticmethod(read_capped)

    def __init__(
        self,
        config: ClusterConfig,
        *,
        max_connections: int = 16,
        user_agent: str = "agentic-operator",
    ) -> None:
        if not config.server.startswith(("https://", "http://")):
            raise ConfigError(f"server must be an http(s) URL, got {config.server!r}")
        self.config = config
        self._base = config.server.rstrip("/")
        self._auth = _Auth(config)
        self._user_agent = user_agent
        pool_kw: dict[str, Any] = {}
        if self._base.startswith("https://"):
            pool_kw["ssl_context"] = _ssl_context(config)
            if config.insecure:
                pool_kw["cert_reqs"] = "CERT_NONE"
                pool_kw["assert_hostname"] = False
                urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            if config.tls_server_name:
                pool_kw["server_hostname"] = config.tls_server_name
        # block=False: watches hold connections for minutes; extra requests must not queue
        # behind them, they get a short-lived connection beyond `maxsize` instead.
        self._pool = urllib3.PoolManager(
            num_pools=2,
            socket_options=_socket_options(),
            maxsize=max_connections,
            block=False,
            retries=Retry(
                total=2,
                connect=2,
                read=0,
                redirect=0,
                status=0,
                other=0,
                backoff_factor=0.05,
                raise_on_redirect=False,
                raise_on_status=False,
            ),
            **pool_kw,
        )

    # -- plumbing -------------------------------------------------------------------------

    def _url(self, path: str, params: Mapping[str, str] | None) -> str:
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        url = self._base + path
        if params:
            url += "?" + urlencode({k: v for k, v in params.items() if v is not None})
        return url

    def _headers(
        self, content_type: str | None, *, accept: str, force_reload: bool = False
    ) -> dict[str, str]:
        headers = {"Accept": accept, "User-Agent": self._user_agent}
        auth = self._auth.header(force_reload=force_reload)
        if auth is not None:
            headers["Authorization"] = auth
        if content_type is not None:
            headers["Content-Type"] = content_type
        return headers

    def open(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        patch_type: str | None = None,
        timeout: float | Timeout | None = 30.0,
        accept: str = "application/json",
        raw_body: bytes | None = None,
        content_type: str | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """Send a request and return the unread response (caller must read and release it).

        Non-2xx answers are turned into `ApiError` here, their body read through the cap.
        """
        url = self._url(path, params)
        data: bytes | None = raw_body
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
        if data is not None and content_type is None:
            if patch_type is not None:
                try:
                    content_type = PATCH_CONTENT_TYPES[patch_type]
                except KeyError as e:
                    raise ValueError(f"unknown patch type {patch_type!r}") from e
            else:
                content_type = "application/json"
        if isinstance(timeout, Timeout):
            tmo = timeout
        elif timeout is None:
            tmo = Timeout(connect=10.0, read=None)
        else:
            tmo = Timeout(connect=min(10.0, timeout), read=timeout)
        for attempt in (0, 1):
            headers = self._headers(content_type, accept=accept, force_reload=attempt == 1)
            try:
                resp = self._pool.request(
                    method,
                    url,
                    body=data,
                    headers=headers,
                    timeout=tmo,
                    preload_content=False,
                    redirect=False,
                )
            except _Urllib3Error as e:
                raise TransportError(f"{method} {path}: {e}") from e
            if resp.status == 401 and attempt == 0 and self._auth.reloadable:
                # The kubelet may have rotated the service-account token under us.
                read_capped(resp)
                continue
            break
        if resp.status >= 300:
            raise self._error(resp, method, path)
        return resp

    def _error(self, resp: urllib3.BaseHTTPResponse, method: str, path: str) -> ApiError:
        status = resp.status
        try:
            data = read_capped(resp)
        except TransportError:
            data = b""
        body = _decode_error(data)
        err = ApiError.from_status(status, body, method=method, path=path)
        if body is None and data:
            err.message = data[:512].decode("utf-8", "replace")
            err.args = (f"{status} {method} {path}: {err.message}",)
        return err

    # -- JSON API ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        patch_type: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """One JSON request; returns the decoded object ({} for an empty body)."""
        resp = self.open(
            method, path, params=params, body=body, patch_type=patch_type, timeout=timeout
        )
        try:
            data = resp.read()
        except (_Urllib3Error, OSError) as e:
            resp.close()
            raise TransportError(f"{method} {path}: reading body: {e}") from e
        finally:
            resp.release_conn()
        if not data:
            return {}
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise TransportError(f"{method} {path}: response is not JSON") from e
        if not isinstance(doc, dict):
            raise TransportError(f"{method} {path}: response is not a JSON object")
        return doc

    def get(self, path: str, *, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return self.request("GET", path, params=params)

    def list(self, path: str, *, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return self.request("GET", path, params=params)

    def create(
        self, path: str, body: Any, *, params: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        return self.request("POST", path, body=body, params=params)

    def replace(
        self, path: str, body: Any, *, params: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        return self.request("PUT", path, body=body, params=params)

    def patch(
        self,
        path: str,
        body: Any,
        *,
        patch_type: PatchType = "merge",
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        return self.request("PATCH", path, body=body, patch_type=patch_type, params=params)

    def delete(
        self, path: str, *, params: Mapping[str, str] | None = None, body: Any = None
    ) -> dict[str, Any] | None:
        doc = self.request("DELETE", path, params=params, body=body)
        return doc or None

    def request_raw(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        accept: str = "*/*",
        timeout: float = 30.0,
        limit: int = BODY_CAP,
    ) -> bytes:
        """A request to a non-apiserver endpoint (service/pod proxy, /healthz): body capped.

        Raises `BodyTooLargeError` instead of returning a silently cut body.
        """
        resp = self.open(
            method,
            path,
            params=params,
            raw_body=body,
            content_type=content_type,
            accept=accept,
            timeout=timeout,
        )
        data = read_capped(resp, limit)
        if getattr(resp, "_capped_truncated", False):
            raise BodyTooLargeError(f"{method} {path}: body exceeds {limit} bytes")
        return data

    def watch(
        self,
        path: str,
        *,
        params: Mapping[str, str],
        read_timeout: float | None = None,
    ) -> WatchStream:
        """Open a watch; iterate it for (type, object) events, `close()` it from anywhere.

        The read timeout defaults to the server-side `timeoutSeconds` plus a margin, so a
        silently dead connection is noticed instead of blocking forever.
        """
        q = dict(params)
        q["watch"] = "true"
        if read_timeout is None and "timeoutSeconds" in q:
            read_timeout = float(q["timeoutSeconds"]) + 60.0
        resp = self.open("GET", path, params=q, timeout=Timeout(connect=10.0, read=read_timeout))
        return WatchStream(resp, what=path)

    def close(self) -> None:
        self._pool.clear()

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
