"""The operator's own minimal Kubernetes client (urllib3 + json), see `client`.

Kept separate from the `kubernetes` package on purpose: importing that package alone costs
more than the operator's whole idle memory budget allows.
"""

from agentic_operator._kube.client import (
    BODY_CAP,
    BodyTooLargeError,
    KubeClient,
    api_path,
    read_capped,
)
from agentic_operator._kube.config import ClusterConfig, load_config
from agentic_operator._kube.errors import ApiError, ConfigError, KubeError, TransportError
from agentic_operator._kube.watch import WatchStream

__all__ = [
    "BODY_CAP",
    "ApiError",
    "BodyTooLargeError",
    "ClusterConfig",
    "ConfigError",
    "KubeClient",
    "KubeError",
    "TransportError",
    "WatchStream",
    "api_path",
    "load_config",
    "read_capped",
]
