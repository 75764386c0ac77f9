"""Every Redis key and channel name of the store, built in one place.

All keys of an experiment share the hash tag ``{name}`` so that they land in one slot on Redis Cluster, which
lets the publish script and transactions touch several of them at once. ``namespace`` isolates deployments
(and tests) sharing one server.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Field separator inside the observation hash; names never contain it (see ``bayesopt.spec.NAME_PATTERN``).
FIELD_SEP = "|"
STAT_SUFFIXES = ("n", "s", "q")  # count, sum, sum of squares
#: The key prefix of a deployment that names none (``BAYESOPT_NAMESPACE`` unset).
DEFAULT_NAMESPACE = "bo"


@dataclass(frozen=True)
class Keys:
    """Key builder for one namespace."""

    namespace: str = DEFAULT_NAMESPACE

    def _k(self, name: str, *parts: str | int) -> str:
        return ":".join([self.namespace, "{" + name + "}", *map(str, parts)])

    def pattern(self, name: str) -> str:
        """A SCAN pattern matching every key of one experiment (names hold no glob characters)."""
        return self._k(name, "*")

    @property
    def experiments(self) -> str:
        """Set of experiment names (the only key without a hash tag)."""
        return f"{self.namespace}:experiments"

    def spec(self, name: str) -> str:
        return self._k(name, "spec")

    def state(self, name: str) -> str:
        return self._k(name, "state")

    def version_seq(self, name: str) -> str:
        """Counter that hands out version numbers."""
        return self._k(name, "version_seq")

    def version(self, name: str, version: int) -> str:
        return self._k(name, "dist", version)

    def arm_values(self, name: str) -> str:
        """Hash: arm id -> the newest version that served it and its values (``param_store.arm_index``)."""
        return self._k(name, "arm_values")

    def current(self, name: str) -> str:
        return self._k(name, "current")

    def history(self, name: str) -> str:
        """Sorted set: activated versions scored by activation time."""
        return self._k(name, "history")

    def observations(self, name: str) -> str:
        """Hash of observation statistics (``param_store.observation_codec``); every batch is added here."""
        return self._k(name, "obs")

    def observation_archive(self, name: str) -> str:
        """Hash of the statistics of rolled-up windows, moved out of :meth:`observations` (same fields)."""
        return self._k(name, "obs_archive")

    def observation_rollup(self, name: str) -> str:
        """JSON roll-up of the windows in :meth:`observation_archive` (``bayesopt.rollup``)."""
        return self._k(name, "obs_rollup")

    def batch(self, name: str, batch_id: str) -> str:
        """Marker of an observation batch already stored (its idempotency key); expires."""
        return self._k(name, "batch", batch_id)

    def simulator_observations(self, name: str) -> str:
        """Hash of simulator statistics per (run, parameter values, metric); see ``param_store.simulator_codec``."""
        return self._k(name, "simobs")

    def runs(self, name: str) -> str:
        return self._k(name, "runs")

    def lock(self, name: str, purpose: str) -> str:
        return self._k(name, "lock", purpose)

    def refit_done(self, name: str, period: int) -> str:
        """Marker that the refit of one period (its start, epoch seconds) has finished; holds a JSON summary."""
        return self._k(name, "refit_done", period)

    def model_state(self, name: str) -> str:
        """JSON warm-start state of the latest published fit (never pickle)."""
        return self._k(name, "model_state")

    def frozen(self, name: str) -> str:
        """Set while an analyst holds the current version (refits skip)."""
        return self._k(name, "frozen")

    def shipped(self, name: str) -> str:
        """The ship decision: the arm, the version serving it, the reason and the report behind it."""
        return self._k(name, "shipped")

    def channel(self, name: str) -> str:
        """Pub/sub channel announcing each newly activated version."""
        return self._k(name, "published")

    @property
    def channel_pattern(self) -> str:
        return f"{self.namespace}:*:published"

    def experiment_of_channel(self, channel: str) -> str:
        """Inverse of :meth:`channel`."""
        start, end = channel.index("{"), channel.rindex("}")
        return channel[start + 1 : end]

    @staticmethod
    def stat_field(version: int, arm_id: str, metric: str, source: str, suffix: str) -> str:
        return Keys.stat_prefix(version, arm_id, metric, source) + suffix

    @staticmethod
    def stat_prefix(version: int, arm_id: str, metric: str, source: str) -> str:
        """The fields of one statistic are this prefix plus each of ``STAT_SUFFIXES``."""
        return FIELD_SEP.join((str(version), arm_id, metric, source, ""))
