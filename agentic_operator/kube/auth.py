"""Credentials and TLS for one apiserver: the Authorization header and the connection pool.

Kept apart from the request path because this is the part that changes under a running
process: the kubelet rotates projected service-account tokens, exec plugins hand out
certificates valid for minutes. The client asks here for a header per request and for a new
pool when the config is renewed; nothing else needs to know how credentials are held.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import ssl
import threading
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection
from urllib3.util import Retry

from agentic_operator.kube.config import ClusterConfig
from agentic_operator.kube.errors import ConfigError

__all__ = ["Auth", "pool_for"]


class Auth:
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


def pool_for(config: ClusterConfig, *, maxsize: int, block: bool) -> urllib3.PoolManager:
    pool_kw: dict[str, Any] = {}
    if config.server.startswith("https://"):
        pool_kw["ssl_context"] = _ssl_context(config)
        if config.insecure:
            pool_kw["cert_reqs"] = "CERT_NONE"
            pool_kw["assert_hostname"] = False
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        if config.tls_server_name:
            pool_kw["server_hostname"] = config.tls_server_name
    retries = Retry(
        total=2,
        connect=2,
        read=0,
        redirect=0,
        status=0,
        other=0,
        backoff_factor=0.05,
        raise_on_redirect=False,
        raise_on_status=False,
    )
    common: dict[str, Any] = dict(
        num_pools=2,
        socket_options=_socket_options(),
        maxsize=maxsize,
        block=block,
        retries=retries,
        **pool_kw,
    )
    if config.proxy_url:
        return urllib3.ProxyManager(config.proxy_url, **common)
    return urllib3.PoolManager(**common)
