#!/usr/bin/env python3
"""Builds single-layer OCI image tarballs without a container engine.

The local node has containerd but no Docker and no registry, so images are assembled here
(oci-layout, index.json, manifest, config, one layer) and imported with
`ctr -n k8s.io images import`. Stdlib only: it runs before the project's virtualenv exists.

Usage:
  oci_image.py --name NAME --out TAR [--file SRC:DEST[:MODE]]... [--dir DEST]...
               [--symlink DEST:TARGET]... [--entrypoint JSON] [--cmd JSON] [--env K=V]...
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import tarfile
import time
from pathlib import Path


def _add_dir(tar: tarfile.TarFile, path: str) -> None:
    info = tarfile.TarInfo(path.strip("/"))
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = 0
    tar.addfile(info)


def _layer(files: list[str], dirs: list[str], symlinks: list[str]) -> bytes:
    raw = io.BytesIO()
    seen: set[str] = set()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def parents(path: str) -> None:
            parts = path.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                p = "/".join(parts[:i])
                if p not in seen:
                    seen.add(p)
                    _add_dir(tar, p)

        for d in dirs:
            parents(d + "/x")
        for spec in symlinks:
            dest, target = spec.split(":", 1)
            parents(dest)
            info = tarfile.TarInfo(dest.strip("/"))
            info.type = tarfile.SYMTYPE
            info.linkname = target
            info.mtime = 0
            tar.addfile(info)
        for spec in files:
            src, dest, *mode = spec.split(":")
            parents(dest)
            data = Path(src).read_bytes()
            info = tarfile.TarInfo(dest.strip("/"))
            info.size = len(data)
            info.mode = int(mode[0], 8) if mode else 0o755
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def _blob(tar: tarfile.TarFile, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))
    return f"sha256:{digest}"


def build(args: argparse.Namespace) -> None:
    layer_tar = _layer(args.file, args.dir, args.symlink)
    diff_id = "sha256:" + hashlib.sha256(layer_tar).hexdigest()
    layer_gz = gzip.compress(layer_tar, compresslevel=1, mtime=0)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": json.loads(args.entrypoint) if args.entrypoint else None,
            "Cmd": json.loads(args.cmd) if args.cmd else None,
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *args.env],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "cluster/oci_image.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w") as tar:
        layer_digest = _blob(tar, layer_gz)
        config_digest = _blob(tar, config_bytes)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config_bytes),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest,
                    "size": len(layer_gz),
                }
            ],
        }
        manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
        manifest_digest = _blob(tar, manifest_bytes)
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest,
                    "size": len(manifest_bytes),
                    "annotations": {"io.containerd.image.name": args.name},
                }
            ],
        }
        for name, data in (
            ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
            ("index.json", json.dumps(index).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--name", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--file", action="append", default=[])
    p.add_argument("--dir", action="append", default=[])
    p.add_argument("--symlink", action="append", default=[])
    p.add_argument("--entrypoint")
    p.add_argument("--cmd")
    p.add_argument("--env", action="append", default=[])
    build(p.parse_args())


if __name__ == "__main__":
    main()
