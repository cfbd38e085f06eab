"""Cluster configuration resolution (kubeconfig, in-cluster) and token-file rotation."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from agentic_operator.kube import ClusterConfig, ConfigError, load_config
from agentic_operator.kube import config as kcfg
from agentic_operator.kube.auth import Auth as _Auth
from agentic_operator.kube.config import load_incluster_config

pytestmark = pytest.mark.unit


def _write_kubeconfig(path: Path, *, user: dict[str, object], current: str = "one") -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": current,
        "clusters": [
            {
                "name": "c1",
                "cluster": {"server": "https://10.0.0.1:6443/", "certificate-authority": "ca.crt"},
            },
            {
                "name": "c2",
                "cluster": {
                    "server": "https://10.0.0.2:6443",
                    "certificate-authority-data": base64.b64encode(b"PEM").decode(),
                    "insecure-skip-tls-verify": True,
                },
            },
        ],
        "users": [{"name": "u", "user": user}],
        "contexts": [
            {"name": "one", "context": {"cluster": "c1", "user": "u", "namespace": "ns1"}},
            {"name": "two", "context": {"cluster": "c2", "user": "u"}},
            {"name": "broken", "context": {"cluster": "missing", "user": "u"}},
        ],
    }
    path.write_text(yaml.safe_dump(doc))


def test_kubeconfig_relative_paths_and_contexts(tmp_path: Path) -> None:
    kc = tmp_path / "sub" / "config"
    kc.parent.mkdir()
    _write_kubeconfig(kc, user={"client-certificate": "c.crt", "client-key": "/abs/c.key"})
    cfg = load_config(kubeconfig=str(kc))
    assert cfg.server == "https://10.0.0.1:6443"
    assert cfg.ca_file == str(tmp_path / "sub" / "ca.crt")
    assert cfg.cert_file == str(tmp_path / "sub" / "c.crt")
    assert cfg.key_file == "/abs/c.key"
    assert cfg.context_name == "one"
    assert cfg.namespace == "ns1"
    assert cfg.auth_kind == "client-cert"
    two = load_config(kubeconfig=str(kc), context="two")
    assert two.ca_data == b"PEM"
    assert two.insecure is True
    with pytest.raises(ConfigError, match="unknown cluster"):
        load_config(kubeconfig=str(kc), context="broken")
    with pytest.raises(ConfigError, match="not found"):
        load_config(kubeconfig=str(kc), context="nope")


def test_secrets_never_in_repr(tmp_path: Path) -> None:
    kc = tmp_path / "config"
    _write_kubeconfig(kc, user={"token": "s3cr3t-token"})
    cfg = load_config(kubeconfig=str(kc))
    assert cfg.token == "s3cr3t-token"
    assert "s3cr3t" not in repr(cfg)
    assert "s3cr3t" not in str(cfg)


def test_exec_plugins_are_refused_clearly(tmp_path: Path) -> None:
    kc = tmp_path / "config"
    _write_kubeconfig(kc, user={"exec": {"command": "aws"}})
    with pytest.raises(ConfigError, match="exec"):
        load_config(kubeconfig=str(kc))


def test_missing_and_malformed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(kubeconfig=str(tmp_path / "absent"))
    bad = tmp_path / "bad"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="not a mapping"):
        load_config(kubeconfig=str(bad))


def _sa_dir(tmp_path: Path) -> Path:
    d = tmp_path / "sa"
    d.mkdir()
    (d / "token").write_text("tok-1\n")
    (d / "ca.crt").write_text("PEM")
    (d / "namespace").write_text("ambient-code")
    return d


def test_incluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _sa_dir(tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "16443")
    cfg = load_incluster_config(sa_dir=str(d))
    assert cfg.server == "https://127.0.0.1:16443"
    assert cfg.token_file == str(d / "token")
    assert cfg.ca_file == str(d / "ca.crt")
    assert cfg.namespace == "ambient-code"
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    assert load_incluster_config(sa_dir=str(d)).server == "https://[fd00::1]:16443"


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _sa_dir(tmp_path)
    kc = tmp_path / "explicit"
    _write_kubeconfig(kc, user={"token": "t"})
    env_kc = tmp_path / "env"
    _write_kubeconfig(env_kc, user={"token": "t"}, current="two")
    monkeypatch.setattr(kcfg, "SERVICE_ACCOUNT_DIR", str(d))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "16443")
    monkeypatch.setenv("KUBECONFIG", str(env_kc))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert load_config(kubeconfig=str(kc)).context_name == "one"  # explicit first
    assert load_config().context_name == "in-cluster"  # then in-cluster
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    assert load_config().context_name == "two"  # then $KUBECONFIG
    monkeypatch.delenv("KUBECONFIG")
    with pytest.raises(ConfigError, match="no cluster configuration"):
        load_config()
    home_kc = tmp_path / "home" / ".kube" / "config"
    home_kc.parent.mkdir(parents=True)
    _write_kubeconfig(home_kc, user={"token": "t"})
    assert load_config().context_name == "one"  # then ~/.kube/config


def test_token_file_reread_when_rotated(tmp_path: Path) -> None:
    tok = tmp_path / "token"
    tok.write_text("first\n")
    auth = _Auth(ClusterConfig(server="https://x", token_file=str(tok)))
    assert auth.header() == "Bearer first"
    time.sleep(0.01)
    tok.write_text("second-longer\n")
    os.utime(tok, (time.time() + 5, time.time() + 5))
    assert auth.header() == "Bearer second-longer"
    # The kubelet swaps the file via a symlink; a moment without it keeps the last token.
    tok.unlink()
    assert auth.header() == "Bearer second-longer"


def test_incluster_import_does_not_load_yaml(tmp_path: Path) -> None:
    d = _sa_dir(tmp_path)
    code = (
        "import sys\n"
        "from agentic_operator.kube import config, client\n"
        f"config.SERVICE_ACCOUNT_DIR = {str(d)!r}\n"
        "cfg = config.load_config()\n"
        "assert cfg.context_name == 'in-cluster', cfg\n"
        "assert 'yaml' not in sys.modules\n"
        "assert 'kubernetes' not in sys.modules\n"
    )
    env = {**os.environ, "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
