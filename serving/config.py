"""Typed settings of the serving app, and the one reader of the service's environment variables.

:class:`Environment` is the only code that reads ``os.environ`` for the service's settings; the entry points
(``serving.wsgi``, the ``bayesopt`` CLI, which hands it to ``bayesopt serve`` and the jobs) call
:meth:`Environment.read` once and pass the record down. It lives here, not in ``jobs``, so that the gunicorn
entry does not import ``jobs``. Defaults of the namespace and the poll interval are ``param_store``'s, looked
up only when a config is built, so that ``import serving`` (a ranker's client) does not load Redis.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.assignment import DEFAULT_COUPLING_HORIZON, EPOCH_MODE, MAX_MEMBER_ID_LENGTH, MODES
from serving.errors import ServingConfigError
from serving.logs import LOG_FORMATS, LOG_LEVELS

#: The issue's contract: one request carries at most this many member ids.
DEFAULT_MAX_BATCH = 10_000
#: 10,000 ids of 256 characters fit, as do 100,000 observation rows of ~150 bytes.
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
#: Versions kept per experiment in epoch mode: enough to serve a few future-dated publishes.
DEFAULT_HISTORY_DEPTH = 8
#: How long a worker remembers that a name is unknown, so a flood of bad names does not reach Redis.
DEFAULT_NEGATIVE_TTL_S = 1.0
#: Unknown names a worker remembers at most, so a flood of distinct bad names cannot grow it.
DEFAULT_MAX_UNKNOWN_NAMES = 10_000
#: Serving's Redis reply timeout: short, so that a hung server is noticed (and the cache marked stale) in a second.
DEFAULT_REDIS_TIMEOUT_S = 1.0
DEFAULT_REDIS_CONNECT_TIMEOUT_S = 0.5
#: Where the embedded Redis keeps its socket and data (unless ``BAYESOPT_PERSIST=0``) when ``REDIS_URL`` is unset.
DEFAULT_HOME = ".bayesopt"


def default_namespace() -> str:
    """The store's default key namespace, ``param_store.DEFAULT_NAMESPACE`` (imported on first use)."""
    from param_store import DEFAULT_NAMESPACE

    return DEFAULT_NAMESPACE


def default_poll_interval_s() -> float:
    """The watcher's staleness bound, ``param_store.notify.DEFAULT_POLL_INTERVAL_S`` (imported on first use)."""
    from param_store.notify import DEFAULT_POLL_INTERVAL_S

    return DEFAULT_POLL_INTERVAL_S


@dataclass(frozen=True, kw_only=True)
class Environment:
    """The service's settings from environment variables, parsed once at an entry point.

    Attributes:
        redis_url: ``REDIS_URL``; None means the embedded server under ``home``.
        home: ``BAYESOPT_HOME``, the embedded server's directory (default ``./.bayesopt``).
        namespace: ``BAYESOPT_NAMESPACE``, the store's key namespace.
        persist: the embedded server keeps its data on disk (append-only file) unless ``BAYESOPT_PERSIST=0``.
        poll_interval_s: ``BAYESOPT_POLL_INTERVAL_S``, the serving cache's staleness bound.
        mode: ``BAYESOPT_ASSIGNMENT_MODE``, the default assignment mode (``epoch`` or ``coupled``).
        coupled: ``BAYESOPT_COUPLED_EXPERIMENTS`` (comma-separated), experiments served in coupled mode.
        admin_token: ``BAYESOPT_ADMIN_TOKEN``, the bearer token of the ``admin`` scope (see :mod:`serving.auth`).
        ingest_token: ``BAYESOPT_INGEST_TOKEN``, the bearer token of the ``ingest`` scope (observations).
        metrics_multiprocess_dir: ``PROMETHEUS_MULTIPROC_DIR``, shared metrics of gunicorn workers.
        log_level: ``BAYESOPT_LOG_LEVEL`` (debug, info, warning, error; default info).
        log_format: ``BAYESOPT_LOG_FORMAT``, ``text`` (default) or ``json`` lines (see :mod:`serving.logs`).
    """

    redis_url: str | None = field(default=None, repr=False)  # may hold a password: never printed
    home: Path = Path(DEFAULT_HOME)
    namespace: str = field(default_factory=default_namespace)
    persist: bool = True
    poll_interval_s: float = field(default_factory=default_poll_interval_s)
    mode: str = EPOCH_MODE
    coupled: tuple[str, ...] = ()
    admin_token: str | None = field(default=None, repr=False)
    ingest_token: str | None = field(default=None, repr=False)
    metrics_multiprocess_dir: str | None = None
    log_level: str = "info"
    log_format: str = "text"

    @classmethod
    def read(cls, env: Mapping[str, str] | None = None) -> Environment:
        """Parse ``env`` (default ``os.environ``); an unparsable value raises :class:`ServingConfigError`.

        Args:
            env: the variables to read; unset or empty ones take their defaults.

        Raises:
            ServingConfigError: a variable that is set cannot be parsed; the message names it.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if env.get("REDIS_URL"):
            values["redis_url"] = env["REDIS_URL"]
        if env.get("BAYESOPT_HOME"):
            values["home"] = Path(env["BAYESOPT_HOME"])
        if env.get("BAYESOPT_NAMESPACE"):
            values["namespace"] = env["BAYESOPT_NAMESPACE"]
        persist = env.get("BAYESOPT_PERSIST", "").strip()
        if persist not in ("", "0", "1"):
            raise ServingConfigError(f"BAYESOPT_PERSIST: must be 0 or 1, got {persist!r}")
        values["persist"] = persist != "0"
        if env.get("BAYESOPT_POLL_INTERVAL_S", "").strip():
            text = env["BAYESOPT_POLL_INTERVAL_S"]
            try:
                values["poll_interval_s"] = float(text)
            except ValueError:
                raise ServingConfigError(f"BAYESOPT_POLL_INTERVAL_S: must be a number of seconds, got {text!r}") from None
        if env.get("BAYESOPT_ASSIGNMENT_MODE", "").strip():
            values["mode"] = env["BAYESOPT_ASSIGNMENT_MODE"].strip()
        values["coupled"] = tuple(n.strip() for n in env.get("BAYESOPT_COUPLED_EXPERIMENTS", "").split(",") if n.strip())
        values["admin_token"] = env.get("BAYESOPT_ADMIN_TOKEN") or None
        values["ingest_token"] = env.get("BAYESOPT_INGEST_TOKEN") or None
        values["metrics_multiprocess_dir"] = env.get("PROMETHEUS_MULTIPROC_DIR") or None
        for variable, key, choices in (("BAYESOPT_LOG_LEVEL", "log_level", LOG_LEVELS),
                                       ("BAYESOPT_LOG_FORMAT", "log_format", LOG_FORMATS)):
            text = env.get(variable, "").strip().lower()
            if text and text not in choices:
                raise ServingConfigError(f"{variable}: must be one of {', '.join(choices)}, got {env[variable]!r}")
            if text:
                values[key] = text
        return cls(**values)

    def serving_config(self, **overrides: Any) -> ServingConfig:
        """The serving app's config from these settings; ``overrides`` (command-line flags) win.

        Raises:
            ServingConfigError: no Redis URL (neither ``REDIS_URL`` nor an override), or a value out of range.
        """
        values: dict[str, Any] = {
            "redis_url": self.redis_url,
            "namespace": self.namespace,
            "poll_interval_s": self.poll_interval_s,
            "mode": self.mode,
            "modes": {n: "coupled" for n in self.coupled},
            "admin_token": self.admin_token,
            "ingest_token": self.ingest_token,
            "metrics_multiprocess_dir": self.metrics_multiprocess_dir,
        }
        values.update(overrides)
        if not values["redis_url"]:
            raise ServingConfigError("REDIS_URL: is not set; set it, or run 'bayesopt serve' to use the embedded Redis")
        return ServingConfig(**values)


@dataclass(frozen=True, kw_only=True)
class ServingConfig:
    """Settings of one serving app (one per gunicorn worker).

    Attributes:
        redis_url: the store (``redis://``, ``rediss://`` or ``unix://``).
        namespace: the store's key namespace.
        poll_interval_s: bound on cache staleness when publish notifications are lost.
        mode: the default assignment mode, ``"epoch"`` or ``"coupled"``.
        modes: per-experiment overrides of ``mode``.
        coupling_horizon: activations per coupling block (coupled mode).
        history_depth: versions each worker caches per experiment (at least two coupling blocks in coupled mode).
        max_batch: member ids per batch request.
        max_member_id_length: characters per member id.
        max_body_bytes: request body limit (413 above it).
        negative_ttl_s: how long an unknown experiment name is remembered as unknown.
        max_unknown_names: unknown names remembered at most (the table is cleared when full).
        admin_token: the ``admin`` scope's bearer token (launch, lifecycle, rollback, delete).
        ingest_token: the ``ingest`` scope's bearer token (observations). With neither set, writes are open.
        redis_timeout_s: the longest wait for one Redis reply (the refresher's and the write routes').
        redis_connect_timeout_s: the longest wait for a Redis connection.
        metrics_multiprocess_dir: prometheus-client's multiprocess directory when workers share metrics.
        warm_on_start: load every experiment when the app starts (readiness waits for it).
    """

    redis_url: str = field(repr=False)  # may hold a password: never printed
    namespace: str = field(default_factory=default_namespace)
    poll_interval_s: float = field(default_factory=default_poll_interval_s)
    mode: str = EPOCH_MODE
    modes: Mapping[str, str] = field(default_factory=dict)
    coupling_horizon: int = DEFAULT_COUPLING_HORIZON
    history_depth: int = DEFAULT_HISTORY_DEPTH
    max_batch: int = DEFAULT_MAX_BATCH
    max_member_id_length: int = MAX_MEMBER_ID_LENGTH
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    negative_ttl_s: float = DEFAULT_NEGATIVE_TTL_S
    max_unknown_names: int = DEFAULT_MAX_UNKNOWN_NAMES
    admin_token: str | None = field(default=None, repr=False)
    ingest_token: str | None = field(default=None, repr=False)
    redis_timeout_s: float = DEFAULT_REDIS_TIMEOUT_S
    redis_connect_timeout_s: float = DEFAULT_REDIS_CONNECT_TIMEOUT_S
    metrics_multiprocess_dir: str | None = None
    warm_on_start: bool = True

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.redis_url, str) or "://" not in self.redis_url:
            problems.append("redis_url: must be a redis://, rediss:// or unix:// URL")
        if not (isinstance(self.poll_interval_s, (int, float)) and math.isfinite(self.poll_interval_s) and self.poll_interval_s > 0):
            problems.append(f"poll_interval_s: must be a positive number of seconds, got {self.poll_interval_s!r}")
        for name, mode in [("mode", self.mode), *((f"modes.{k}", v) for k, v in self.modes.items())]:
            if mode not in MODES:
                problems.append(f"{name}: must be one of {', '.join(MODES)}, got {mode!r}")
        for name in ("coupling_horizon", "history_depth", "max_batch", "max_member_id_length", "max_body_bytes",
                     "max_unknown_names"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name}: must be a positive integer, got {value!r}")
        for name in ("redis_timeout_s", "redis_connect_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                problems.append(f"{name}: must be a positive number of seconds, got {value!r}")
        for name in ("admin_token", "ingest_token"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                problems.append(f"{name}: must be a non-empty string, or None for no token")
        if self.admin_token is not None and self.admin_token == self.ingest_token:
            problems.append("ingest_token: must differ from admin_token (a token has one scope)")
        if not (isinstance(self.negative_ttl_s, (int, float)) and self.negative_ttl_s >= 0):
            problems.append(f"negative_ttl_s: must be a number of seconds >= 0, got {self.negative_ttl_s!r}")
        if problems:
            raise ServingConfigError("invalid serving config: " + "; ".join(problems), problems=problems)
        object.__setattr__(self, "modes", dict(self.modes))

    @property
    def tokens(self) -> dict[str, str]:
        """``{scope: token}`` of the scopes that have a token configured."""
        return {scope: token for scope, token in (("admin", self.admin_token), ("ingest", self.ingest_token)) if token}

    def mode_for(self, experiment: str) -> str:
        """The assignment mode of ``experiment``."""
        return self.modes.get(experiment, self.mode)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ServingConfig:
        """The config from the environment (see :class:`Environment`; ``REDIS_URL`` required); ``overrides`` win.

        Only entry points call this (the gunicorn module ``serving.wsgi``). ``bayesopt serve`` reads the same
        :class:`Environment` and also starts the embedded Redis when ``REDIS_URL`` is unset.
        """
        return Environment.read(env).serving_config(**overrides)
