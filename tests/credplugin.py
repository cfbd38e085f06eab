"""An exec credential plugin that issues client certificates valid for about a minute.

Real clusters hand out short-lived credentials through exec plugins (cloud CLIs, Vault,
Teleport); a triage run lasts longer than one of them. This plugin is the same thing on the
local node: each call signs a fresh client certificate with the cluster's client CA
(cluster/up.sh), for the user named on the command line, and says when it expires. Every
call is appended to a log so a test can count how often the credential was renewed.

    python tests/credplugin.py --ca-cert C --ca-key K --user U --lifetime 60 --log FILE
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def issue(ca_cert: Path, ca_key: Path, user: str, group: str, lifetime: float) -> dict[str, str]:
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    # Backdated a little: the apiserver and this process read the same clock, but a
    # certificate that is "not yet valid" by a millisecond is refused.
    not_before = now - dt.timedelta(seconds=5)
    not_after = now + dt.timedelta(seconds=lifetime)
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, user)]
        + ([x509.NameAttribute(NameOID.ORGANIZATION_NAME, group)] if group else [])
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(signer, hashes.SHA256())  # type: ignore[arg-type]
    )
    return {
        "clientCertificateData": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "clientKeyData": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        "expirationTimestamp": not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ca-cert", type=Path, required=True)
    p.add_argument("--ca-key", type=Path, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--group", default="")
    p.add_argument("--lifetime", type=float, default=60.0)
    p.add_argument("--log", type=Path)
    a = p.parse_args(argv)
    status = issue(a.ca_cert, a.ca_key, a.user, a.group, a.lifetime)
    if a.log:
        with a.log.open("a") as f:
            f.write(
                json.dumps({"at": time.time(), "expires": status["expirationTimestamp"]}) + "\n"
            )
    json.dump(
        {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "kind": "ExecCredential",
            "status": status,
        },
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
