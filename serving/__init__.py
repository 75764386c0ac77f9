"""Serving: the Flask app, sticky assignment, the per-worker distribution cache, and a client for rankers.

Importing this package never loads torch. The assignment code is light (hashlib and bisect); the app and
client load Flask and requests only when first used::

    from serving import ServingConfig, create_app          # the server
    from serving import ServingClient                      # rankers: HTTP, or .local(...) for in-process draws
"""

from __future__ import annotations

import importlib
from typing import Any

from serving.assignment import (
    COUPLED_MODE,
    EPOCH_MODE,
    MODES,
    Assignment,
    ServingSnapshot,
    canonical_member_id,
    total_variation,
)
from serving.config import ServingConfig
from serving.errors import (
    BadRequestError,
    BatchTooLargeError,
    NoDistributionError,
    ServingClientError,
    ServingConfigError,
    ServingError,
    ServingHTTPError,
    ServingUnavailableClientError,
)

_LAZY = {
    "create_app": "serving.app",
    "ServingClient": "serving.client",
    "LocalAssigner": "serving.client",
    "RetryPolicy": "serving.client",
}

__all__ = [
    "COUPLED_MODE", "EPOCH_MODE", "MODES", "Assignment", "BadRequestError", "BatchTooLargeError", "LocalAssigner",
    "NoDistributionError", "RetryPolicy", "ServingClient", "ServingClientError", "ServingConfig",
    "ServingConfigError", "ServingError", "ServingHTTPError", "ServingSnapshot", "ServingUnavailableClientError",
    "canonical_member_id", "create_app", "total_variation",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'serving' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
