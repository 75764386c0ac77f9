"""Typed settings of the serving app, validated at construction; the environment is read only by ``from_env``."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from serving.assignment import DEFAULT_COUPLING_HORIZON, EPOCH_MODE, MAX_MEMBER_ID_LENGTH, MODES
from serving.errors import ServingConfigError

#: Matches ``param_store.notify``: how stale a worker's cache may get when pub/sub is silent.
DEFAULT_POLL_INTERVAL_S = 5.0
#: The issue's contract: one request carries at most this many member ids.
DEFAULT_MAX_BATCH = 10_000
#: 10,000 ids of 256 characters fit, as do 100,000 observation rows of ~150 bytes.
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
#: Versions kept per experiment in epoch mode: enough to serve a few future-dated publishes.
DEFAULT_HISTORY_DEPTH = 8
#: How long a worker remembers that a name is unknown, so a flood of bad names does not reach Redis.
DEFAULT_NEGATIVE_TTL_S = 1.0


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
        admin_token: if set, admin endpoints need ``Authorization: Bearer <token>``.
        metrics_multiprocess_dir: prometheus-client's multiprocess directory when workers share metrics.
        warm_on_start: load every experiment when the app starts (readiness waits for it).
    """

    redis_url: str
    namespace: str = "bo"
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    mode: str = EPOCH_MODE
    modes: Mapping[str, str] = field(default_factory=dict)
    coupling_horizon: int = DEFAULT_COUPLING_HORIZON
    history_depth: int = DEFAULT_HISTORY_DEPTH
    max_batch: int = DEFAULT_MAX_BATCH
    max_member_id_length: int = MAX_MEMBER_ID_LENGTH
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    negative_ttl_s: float = DEFAULT_NEGATIVE_TTL_S
    admin_token: str | None = None
    metrics_multiprocess_dir: str | None = None
    warm_on_start: bool = True

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.redis_url, str) or "://" not in self.redis_url:
            problems.append(f"redis_url: must be a redis://, rediss:// or unix:// URL, got {self.redis_url!r}")
        if not (isinstance(self.poll_interval_s, (int, float)) and math.isfinite(self.poll_interval_s) and self.poll_interval_s > 0):
            problems.append(f"poll_interval_s: must be a positive number of seconds, got {self.poll_interval_s!r}")
        for name, mode in [("mode", self.mode), *((f"modes.{k}", v) for k, v in self.modes.items())]:
            if mode not in MODES:
                problems.append(f"{name}: must be one of {', '.join(MODES)}, got {mode!r}")
        for name in ("coupling_horizon", "history_depth", "max_batch", "max_member_id_length", "max_body_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name}: must be a positive integer, got {value!r}")
        if not (isinstance(self.negative_ttl_s, (int, float)) and self.negative_ttl_s >= 0):
            problems.append(f"negative_ttl_s: must be a number of seconds >= 0, got {self.negative_ttl_s!r}")
        if problems:
            raise ServingConfigError("invalid serving config: " + "; ".join(problems), problems=problems)
        object.__setattr__(self, "modes", dict(self.modes))

    def mode_for(self, experiment: str) -> str:
        """The assignment mode of ``experiment``."""
        return self.modes.get(experiment, self.mode)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> ServingConfig:
        """Read ``REDIS_URL`` (required), ``BAYESOPT_NAMESPACE``, ``BAYESOPT_POLL_INTERVAL_S``,
        ``BAYESOPT_ASSIGNMENT_MODE``, ``BAYESOPT_COUPLED_EXPERIMENTS`` (comma-separated),
        ``BAYESOPT_ADMIN_TOKEN`` and ``PROMETHEUS_MULTIPROC_DIR``; ``overrides`` win.

        Only entry points call this (the gunicorn module ``serving.wsgi``); ``bayesopt serve`` resolves the
        embedded Redis itself and builds the config from its flags.
        """
        env = os.environ if env is None else env
        url = env.get("REDIS_URL")
        if not url and "redis_url" not in overrides:
            raise ServingConfigError("REDIS_URL: is not set; set it, or run 'bayesopt serve' to use the embedded Redis")
        coupled = [n.strip() for n in env.get("BAYESOPT_COUPLED_EXPERIMENTS", "").split(",") if n.strip()]
        values: dict[str, object] = {
            "redis_url": url,
            "namespace": env.get("BAYESOPT_NAMESPACE", "bo"),
            "poll_interval_s": float(env.get("BAYESOPT_POLL_INTERVAL_S", DEFAULT_POLL_INTERVAL_S)),
            "mode": env.get("BAYESOPT_ASSIGNMENT_MODE", EPOCH_MODE),
            "modes": {n: "coupled" for n in coupled},
            "admin_token": env.get("BAYESOPT_ADMIN_TOKEN") or None,
            "metrics_multiprocess_dir": env.get("PROMETHEUS_MULTIPROC_DIR") or None,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
