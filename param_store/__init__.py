"""The Redis parameter store. Knows nothing about GPs; importing it never loads torch."""

from param_store.connection import make_client, mask_url, resolve_url
from param_store.embedded import EmbeddedRedis, find_redis_server
from param_store.errors import (
    EmbeddedRedisError,
    ExperimentExistsError,
    ExperimentNotFoundError,
    InvalidTransitionError,
    ObservationRejectedError,
    StoreError,
    StoreUnavailableError,
    VersionConflictError,
    VersionNotFoundError,
)
from param_store.keys import DEFAULT_NAMESPACE, Keys
from param_store.lease import Lease
from param_store.notify import VersionWatcher
from param_store.state import ALLOWED_TRANSITIONS, ExperimentState
from param_store.store import ParamStore

__all__ = [
    "ALLOWED_TRANSITIONS", "DEFAULT_NAMESPACE", "EmbeddedRedis", "EmbeddedRedisError", "ExperimentExistsError",
    "ExperimentNotFoundError", "ExperimentState", "InvalidTransitionError", "Keys", "Lease",
    "ObservationRejectedError", "ParamStore", "StoreError", "StoreUnavailableError", "VersionConflictError",
    "VersionNotFoundError", "VersionWatcher", "find_redis_server", "make_client", "mask_url", "resolve_url",
]
