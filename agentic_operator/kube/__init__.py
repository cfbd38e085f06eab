"""One Kubernetes client for the operator and for triage: urllib3 + JSON, typed errors.

Public, like `agentic_operator.oomcount`, because both packages speak to the apiserver and
must not grow a client each. It stays free of the `kubernetes` package on purpose: importing
that alone costs more than the operator's whole idle memory budget. What the `kubernetes`
package is good at, resolving any kubeconfig a user really has (exec credential plugins,
OIDC, token files), triage uses to build a `ClusterConfig` (see `triage.cluster`); the
requests themselves all go through `KubeClient`.

- `KubeClient`: one shared connection pool, JSON verbs, capped error bodies, watches that
  another thread can abort, credentials renewed before they expire and after a 401.
- `Resource`: a resource type that builds its own URLs.
- Errors by type: `NotFoundError`, `ConflictError`, `AlreadyExistsError`, `GoneError`, ...
- `update_with_retry` / `retry_on_conflict`: client-go's RetryOnConflict.
"""

from agentic_operator.kube.client import BODY_CAP, BodyTooLargeError, KubeClient, read_capped
from agentic_operator.kube.config import ClusterConfig, load_config
from agentic_operator.kube.errors import (
    AlreadyExistsError,
    ApiError,
    ConfigError,
    ConflictError,
    ForbiddenError,
    GoneError,
    InvalidError,
    KubeError,
    NotFoundError,
    ServerError,
    TooManyRequestsError,
    TransportError,
    UnauthorizedError,
)
from agentic_operator.kube.retry import (
    DEFAULT_RETRY,
    Backoff,
    RetryExhaustedError,
    retry_on_conflict,
    update_with_retry,
)
from agentic_operator.kube.watch import WatchStream
from agentic_operator.resources import Resource, api_path

__all__ = [
    "BODY_CAP",
    "DEFAULT_RETRY",
    "AlreadyExistsError",
    "ApiError",
    "Backoff",
    "BodyTooLargeError",
    "ClusterConfig",
    "ConfigError",
    "ConflictError",
    "ForbiddenError",
    "GoneError",
    "InvalidError",
    "KubeClient",
    "KubeError",
    "NotFoundError",
    "Resource",
    "RetryExhaustedError",
    "ServerError",
    "TooManyRequestsError",
    "TransportError",
    "UnauthorizedError",
    "WatchStream",
    "api_path",
    "load_config",
    "read_capped",
    "retry_on_conflict",
    "update_with_retry",
]
