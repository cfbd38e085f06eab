"""What every benchmark shares about the cluster it runs against: where its kubeconfig is.

The benchmarks run as scripts (`python bench/NAME.py`), so this directory is on sys.path
and they import this module by its bare name.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

#: The local cluster's kubeconfig (`make cluster-up` writes it), as the tests find it too.
DEFAULT_KUBECONFIG = os.environ.get(
    "TRIAGE_KUBECONFIG", str(Path.home() / ".kube" / "triage-local.yaml")
)


def add_kubeconfig_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", default=DEFAULT_KUBECONFIG)
