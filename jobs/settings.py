"""The jobs' and the CLI's view of the service's settings, read from the environment once, at the edge.

The variables themselves are parsed by :class:`serving.config.Environment`, the one reader shared with
``serving.wsgi`` and ``bayesopt serve`` (it lives in ``serving`` so that the gunicorn entry need not import
``jobs``). The CLI's ``main`` builds one :class:`Settings` and passes it to every command.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from serving.config import Environment


@dataclass(frozen=True)
class Settings:
    """Where the store lives, plus everything else the environment said (for ``bayesopt serve``).

    Attributes:
        environment: the parsed environment; ``Settings()`` is the defaults (embedded Redis, default namespace).
    """

    environment: Environment = field(default_factory=Environment)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the environment (default ``os.environ``) with :meth:`serving.config.Environment.read`."""
        return cls(Environment.read(env))

    @property
    def redis_url(self) -> str | None:
        """``REDIS_URL``; None means the embedded server under :attr:`state_dir`."""
        return self.environment.redis_url

    @property
    def state_dir(self) -> Path:
        """``BAYESOPT_HOME``: the embedded server's socket and data (see :attr:`persist`) live in ``redis/``."""
        return self.environment.home

    @property
    def namespace(self) -> str:
        """``BAYESOPT_NAMESPACE``: the store's key namespace."""
        return self.environment.namespace

    @property
    def persist(self) -> bool:
        """The embedded server keeps its data on disk (append-only file) unless ``BAYESOPT_PERSIST=0``."""
        return self.environment.persist

    def store_url(self) -> str:
        """The Redis URL to use, starting the embedded server if there is no ``REDIS_URL``."""
        from param_store import resolve_url

        return resolve_url(self.redis_url, state_dir=self.state_dir / "redis", persist=self.persist)

    def open_store(self):  # -> param_store.ParamStore
        """A store client on :meth:`store_url` in :attr:`namespace`."""
        from param_store import ParamStore, make_client

        return ParamStore(make_client(self.store_url()), namespace=self.namespace)
