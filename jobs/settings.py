"""Settings read from the environment once, at the edge (CLI entry, app factory), then passed down."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STATE_DIR = ".bayesopt"
DEFAULT_NAMESPACE = "bo"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Where the store lives.

    ``redis_url`` None means the embedded server whose socket and data live in ``state_dir``.
    """

    redis_url: str | None = None
    state_dir: Path = Path(DEFAULT_STATE_DIR)
    namespace: str = DEFAULT_NAMESPACE
    persist: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """``REDIS_URL``, ``BAYESOPT_HOME``, ``BAYESOPT_NAMESPACE``, ``BAYESOPT_PERSIST`` (1 to keep data on disk)."""
        env = dict(os.environ) if env is None else env
        return cls(
            redis_url=env.get("REDIS_URL") or None,
            state_dir=Path(env.get("BAYESOPT_HOME", DEFAULT_STATE_DIR)),
            namespace=env.get("BAYESOPT_NAMESPACE", DEFAULT_NAMESPACE),
            persist=env.get("BAYESOPT_PERSIST", "0") == "1",
        )

    def store_url(self) -> str:
        """The Redis URL to use, starting the embedded server if there is no ``REDIS_URL``."""
        from param_store import resolve_url

        return resolve_url(self.redis_url, state_dir=self.state_dir / "redis", persist=self.persist)

    def open_store(self):  # -> param_store.ParamStore
        from param_store import ParamStore, make_client

        return ParamStore(make_client(self.store_url()), namespace=self.namespace)
