"""A small JSON client for the Kubernetes API on top of one shared urllib3 PoolManager.

The upstream Go operator kept one HTTP client per use and read error bodies whole; the
official Python client costs ~20 MiB of imports and builds model objects for every item.
This client speaks raw JSON dicts, shares a single connection pool across all callers and
threads, reads every error body (and anything from a non-apiserver endpoint) through a
64 KiB cap, and hands out watch streams that another thread can abort promptly.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlencode

import urllib3
from urllib3.exceptions import HTTPError as _Urllib3Error
from urllib3.util import Timeout

from agentic_operator.kube.auth import Auth, pool_for
from agentic_operator.kube.config import ClusterConfig
from agentic_operator.kube.errors import (
    AlreadyExistsError,
    ApiError,
    ConfigError,
    KubeError,
    NotFoundError,
    TransportError,
)
from agentic_operator.kube.watch import WatchStream

__all__ = ["BODY_CAP", "BodyTooLargeError", "KubeClient", "read_capped"]

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


def _decode_error(data: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


#: Renew credentials this long before they expire, so no request is sent with a dying one.
_RENEW_MARGIN = 10.0


def _read_all(resp: urllib3.BaseHTTPResponse, method: str, path: str) -> bytes:
    """The whole body of an answer the apiserver sized itself (JSON API objects and lists)."""
    try:
        return resp.read()
    except (_Urllib3Error, OSError) as e:
        resp.close()
        raise TransportError(f"{method} {path}: reading body: {e}") from e
    finally:
        resp.release_conn()


def _json_object(data: bytes, method: str, path: str) -> dict[str, Any]:
    """An API answer decoded; {} for an empty body (a DELETE may answer with none)."""
    if not data:
        return {}
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise TransportError(f"{method} {path}: response is not JSON") from e
    if not isinstance(doc, dict):
        raise TransportError(f"{method} {path}: response is not a JSON object")
    return doc


def _timeout(timeout: float | Timeout | None) -> Timeout:
    if isinstance(timeout, Timeout):
        return timeout
    if timeout is None:
        return Timeout(connect=10.0, read=None)
    return Timeout(connect=min(10.0, timeout), read=timeout)


def _tls_refused(e: Exception) -> bool:
    """A handshake the server ended: how an expired client certificate shows itself."""
    text = str(e)
    return "SSL" in text or "certificate" in text or "EOF occurred" in text


class KubeClient:
    """Thread-safe Kubernetes REST client; share one instance per process.

    Credentials that expire (an exec plugin's short-lived certificate or token, a projected
    service-account token) are renewed here, not by the caller: before a request when the
    config says they are about to expire, and once after a 401. A renewal that brings new
    TLS material swaps in a new connection pool; requests in flight finish on the old one.
    """

    read_capped = staticmethod(read_capped)

    def __init__(
        self,
        config: ClusterConfig,
        *,
        max_connections: int = 16,
        user_agent: str = "agentic-operator",
        block: bool = False,
    ) -> None:
        if not config.server.startswith(("https://", "http://")):
            raise ConfigError(f"server must be an http(s) URL, got {config.server!r}")
        self._user_agent = user_agent
        self._max_connections = max_connections
        # block=False: watches hold connections for minutes; extra requests must not queue
        # behind them, they get a short-lived connection beyond `maxsize` instead. A bulk
        # loader with a fixed number of threads asks for block=True: no connection churn.
        self._block = block
        self._lock = threading.Lock()
        self._install(config)

    def _install(self, config: ClusterConfig) -> None:
        pool = pool_for(config, maxsize=self._max_connections, block=self._block)
        with self._lock:
            old = getattr(self, "_pool", None)
            self.config = config
            self._base = config.server.rstrip("/")
            self._auth = Auth(config)
            self._pool = pool
        if old is not None:
            old.clear()

    @property
    def server(self) -> str:
        return self._base

    def resize_pool(self, max_connections: int, *, block: bool = True) -> None:
        """Size the pool for `max_connections` concurrent callers (a new pool)."""
        self._max_connections, self._block = max(max_connections, 1), block
        self._install(self.config)

    def refresh_credentials(self) -> bool:
        """Renew expiring credentials through the config's refresher; False if it has none."""
        refresh = self.config.refresh
        if refresh is None:
            return False
        try:
            fresh = refresh()
        except ConfigError:
            raise
        except Exception as e:  # a credential plugin is the user's program
            raise ConfigError(f"renewing credentials failed: {e}") from e
        self._install(fresh)
        log.info("credentials renewed for %s", self._base)
        return True

    def _renew_if_expiring(self) -> None:
        expires = self.config.expires_at
        if expires is not None and time.time() >= expires - _RENEW_MARGIN:
            self.refresh_credentials()

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
        data: bytes | None = None,
        content_type: str | None = None,
        accept: str = "application/json",
        timeout: float | Timeout | None = 30.0,
    ) -> urllib3.BaseHTTPResponse:
        """Send a request and return the unread response (caller must read and release it).

        A body without a content type is sent as JSON. Non-2xx answers are turned into
        `ApiError` here, their body read through the cap.
        """
        if data is not None and content_type is None:
            content_type = "application/json"
        resp = self._send(method, path, params, data, content_type, accept, _timeout(timeout))
        if resp.status >= 300:
            raise self._error(resp, method, path)
        return resp

    def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        data: bytes | None,
        content_type: str | None,
        accept: str,
        timeout: Timeout,
    ) -> urllib3.BaseHTTPResponse:
        self._renew_if_expiring()
        url = self._url(path, params)
        for attempt in (0, 1):
            headers = self._headers(content_type, accept=accept, force_reload=attempt == 1)
            try:
                resp = self._pool.request(
                    method,
                    url,
                    body=data,
                    headers=headers,
                    timeout=timeout,
                    preload_content=False,
                    redirect=False,
                )
            except _Urllib3Error as e:
                if attempt == 0 and _tls_refused(e) and self.refresh_credentials():
                    continue  # an expired client certificate fails the handshake, not with 401
                raise TransportError(f"{method} {path}: {e}") from e
            if resp.status == 401 and attempt == 0 and self._renewable():
                # A rotated service-account token, or an expired plugin credential.
                read_capped(resp)
                if self.config.refresh is not None:
                    self.refresh_credentials()
                continue
            return resp
        return resp

    def _renewable(self) -> bool:
        return self.config.token_file is not None or self.config.refresh is not None

    def send(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> tuple[int, bytes]:
        """One request whose error status is returned, not raised: the bulk-load fast path.

        Bulk creates branch on 201/409 per object and never parse what they do not read.
        """
        resp = self._send(
            method, path, None, body, content_type if body is not None else None,
            "application/json", _timeout(timeout),
        )  # fmt: skip
        return resp.status, _read_all(resp, method, path)

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
        data = content_type = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            if patch_type is not None:
                try:
                    content_type = PATCH_CONTENT_TYPES[patch_type]
                except KeyError as e:
                    raise ValueError(f"unknown patch type {patch_type!r}") from e
        resp = self.open(
            method, path, params=params, data=data, content_type=content_type, timeout=timeout
        )
        return _json_object(_read_all(resp, method, path), method, path)

    def get(self, path: str, *, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return self.request("GET", path, params=params)

    def get_sized(
        self, path: str, *, params: Mapping[str, str] | None = None
    ) -> tuple[dict[str, Any], int]:
        """GET, and how many bytes the response body had (to size the next LIST page)."""
        data = _read_all(self.open("GET", path, params=params), "GET", path)
        return _json_object(data, "GET", path), len(data)

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

    def get_or_none(
        self, path: str, *, params: Mapping[str, str] | None = None
    ) -> dict[str, Any] | None:
        """GET; None when the object does not exist."""
        try:
            return self.get(path, params=params)
        except NotFoundError:
            return None

    def create_or_exists(self, collection: str, body: Any) -> bool:
        """POST; True when created, False when an object of that name already existed.

        Objects named deterministically make a race between two workers a no-op this way.
        """
        try:
            self.create(collection, body)
        except AlreadyExistsError:
            return False
        return True

    def delete_if_present(
        self, path: str, *, grace_seconds: int | None = None, propagation: str = "Background"
    ) -> bool:
        """DELETE with `propagation`; True when something was deleted, False when absent."""
        params = {"propagationPolicy": propagation}
        if grace_seconds is not None:
            params["gracePeriodSeconds"] = str(grace_seconds)
        try:
            self.delete(path, params=params)
        except NotFoundError:
            return False
        return True

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
            data=body,
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
