"""Sticky assignment: which arm a member is served, as a pure function of public inputs.

The inputs are the experiment's salt (its name), the member id, the request time ``t`` and the experiment's
recent *activated* distribution versions. Nothing is stored per member and nothing is shared between
processes: every worker, replica and local client holding the same versions computes the same answer. No
numpy, no torch: the hot path is one or two keyed hashes and a bisection.

Hash streams
    ``U(msg)`` is the keyed BLAKE2b digest of ``msg`` under the experiment salt, its low 64 bits mapped to
    [0, 1) by their top 53 bits (``H(msg)`` is the second 64 bits, same mapping). Keyed hashes of distinct
    messages act as independent uniforms, and distinct salts make experiments independent of each other.

Enrolment
    The member is in the experiment iff ``U("e|" member) < traffic.experiment_share``. This ignores the epoch
    and the version, so the exploration slice is stable. Outside it, or whenever the experiment is not
    ``running``, the member gets the control arm with ``in_experiment=False`` and propensity 1 (the
    probability of control *given* that decision).

Version in force at ``t``
    The highest activated version whose ``valid_from <= t`` (the oldest held version if none is yet). A refit
    that publishes ahead of the hour with ``valid_from`` at the hour makes every replica switch at the same
    instant, whenever each heard of it.

Epoch mode (default)
    ``epoch = floor(t / stickiness_seconds)``; the arm is the inverse CDF of the in-force weights at
    ``U("a|" epoch "|" member)``. Same arm for the whole epoch (while the version stays), an independent draw
    each epoch. Cost: two hashes and a bisection over ``k`` arms, ``O(log k)``.

Coupled mode
    Keeps members on their arm across versions where the new weights allow it. Activated versions are numbered
    by activation index ``i``. Within a block of ``horizon`` consecutive activations starting at anchor
    ``b = i - i % horizon``, the arm at ``b`` is the inverse-CDF draw of ``p_b`` at ``U("b|" v_b "|" member)``;
    each later step ``j`` (``p = p_{j-1} -> q = p_j``) is the maximal coupling: with ``u1, u2`` the two halves
    of the digest of ``"c|" v_j "|" member``, keep arm ``a`` if ``u1 < min(1, q_a / p_a)``, else draw from the
    normalised residual ``(q - p)+`` at ``u2``. The marginal at every step is exactly ``q`` (so the propensity
    is still the arm's weight), and the share of members who change arm is ``TV(p, q) = sum (q - p)+``, the
    least possible. Block anchors are fresh, independent draws (a re-randomisation once per ``horizon``
    versions).

    State: none per member. It needs the versions of the current block, which the worker cache holds anyway
    (the last up to ``2 * horizon`` activations), and per step a precomputed stay table and residual CDF
    (``O(k)`` memory, built once per snapshot). Recomputation per request: ``i - b + 1 <= horizon`` hashes and
    table look-ups; with the default horizon of 24 (a day of hourly refits) at most 24 steps, half that on
    average, against one in epoch mode (docs/serving.md has the measured draw rates).

Glossary: ``k`` arms of a version, ``i`` activation index, ``b`` block anchor, ``p``/``q`` consecutive weights.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from bayesopt.distribution import ParameterDistribution
from serving.errors import IncompleteHistoryError, NoDistributionError, ServingConfigError

EPOCH_MODE = "epoch"
COUPLED_MODE = "coupled"
MODES = (EPOCH_MODE, COUPLED_MODE)
#: A day of hourly refits: long enough that members rarely switch for nothing, short enough to re-randomise
#: daily and to keep the per-request chain short.
DEFAULT_COUPLING_HORIZON = 24
#: Member ids appear in hash inputs and logs; longer ones are refused rather than silently truncated.
MAX_MEMBER_ID_LENGTH = 256
RUNNING = "running"
SNAPSHOT_SCHEMA_VERSION = 1

_MASK64 = (1 << 64) - 1
_UNIT = 2.0**-53
#: Residual mass below this means consecutive versions are equal up to rounding: everyone stays.
_RESIDUAL_EPSILON = 1e-12


def canonical_member_id(value: Any, *, max_length: int = MAX_MEMBER_ID_LENGTH) -> str:
    """The string form of a member id (integers become their decimal form); raises ``ValueError`` naming why."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"must be a string or an integer, got {type(value).__name__}")
    if not value:
        raise ValueError("must not be empty")
    if len(value) > max_length:
        raise ValueError(f"is {len(value)} characters long; the limit is {max_length}")
    return value


class Assignment(NamedTuple):
    """What one member is served: the arm, its parameter values, the version and the propensity."""

    experiment: str
    member_id: str
    version: int
    arm_id: str
    values: Mapping[str, float]
    propensity: float
    in_experiment: bool
    on_control: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment, "member_id": self.member_id, "version": self.version,
            "arm_id": self.arm_id, "values": dict(self.values), "propensity": self.propensity,
            "in_experiment": self.in_experiment, "on_control": self.on_control,
        }


class _Arms:
    """One version's arms prepared for drawing: a cumulative table over the arms of positive weight."""

    __slots__ = ("index", "version", "valid_from", "ids", "cum", "weight_of", "values", "control_id", "anchor_prefix")

    def __init__(self, index: int, dist: ParameterDistribution) -> None:
        self.index = index
        self.version = dist.version
        self.valid_from = float(dist.valid_from)
        total = math.fsum(a.weight for a in dist.arms)
        self.weight_of = {a.arm_id: a.weight / total for a in dist.arms}
        self.values = {a.arm_id: dict(a.values) for a in dist.arms}
        self.control_id = dist.control_arm_id
        self.ids, self.cum = _cdf([(a.arm_id, a.weight) for a in dist.arms])
        self.anchor_prefix = b"b|%d|" % dist.version

    def draw(self, u: float) -> str:
        return self.ids[bisect_right(self.cum, u)]


class _Step:
    """The maximal coupling of ``p`` (previous version) to ``q`` (this one): stay probabilities and residual CDF."""

    __slots__ = ("prefix", "stay", "resid_ids", "resid_cum")

    def __init__(self, p: _Arms, q: _Arms) -> None:
        self.prefix = b"c|%d|" % q.version
        residual = [(a, w - p.weight_of.get(a, 0.0)) for a, w in q.weight_of.items() if w > p.weight_of.get(a, 0.0)]
        if math.fsum(r for _, r in residual) <= _RESIDUAL_EPSILON:
            # p == q up to rounding: keep everyone whose arm survives; the rest (weight ~0) redraw from q.
            self.stay = {a: 1.0 for a, w in p.weight_of.items() if q.weight_of.get(a, 0.0) > 0}
            self.resid_ids, self.resid_cum = q.ids, q.cum
        else:
            self.stay = {a: min(1.0, q.weight_of.get(a, 0.0) / w) for a, w in p.weight_of.items() if w > 0}
            self.resid_ids, self.resid_cum = _cdf(residual)


def _cdf(pairs: Sequence[tuple[str, float]]) -> tuple[list[str], list[float]]:
    """Ids and normalised cumulative weights of the pairs with positive weight (the last is exactly 1)."""
    pairs = [(a, w) for a, w in pairs if w > 0]
    total = math.fsum(w for _, w in pairs)
    ids, cum, acc = [], [], 0.0
    for a, w in pairs:
        acc += w
        ids.append(a)
        cum.append(acc / total)
    cum[-1] = 1.0
    return ids, cum


class ServingSnapshot:
    """Everything needed to assign members of one experiment; immutable, shared by the server and local clients.

    Args:
        experiment: the experiment name, which is also the hash salt.
        state: the lifecycle state; members are only enrolled while it is ``running``.
        experiment_share: ``traffic.experiment_share`` of the spec.
        stickiness_seconds: the epoch length of the spec.
        versions: ``(activation index, distribution)`` for a contiguous run of the latest activations.
        mode: ``"epoch"`` or ``"coupled"``.
        horizon: activations per coupling block (coupled mode).
    """

    def __init__(
        self,
        *,
        experiment: str,
        state: str,
        experiment_share: float,
        stickiness_seconds: int,
        versions: Iterable[tuple[int, ParameterDistribution]],
        mode: str = EPOCH_MODE,
        horizon: int = DEFAULT_COUPLING_HORIZON,
    ) -> None:
        if mode not in MODES:
            raise ServingConfigError(f"mode: must be one of {MODES}, got {mode!r}")
        if not isinstance(horizon, int) or horizon < 1:
            raise ServingConfigError(f"horizon: must be a positive integer, got {horizon!r}")
        self.experiment = experiment
        self.state = state
        self.experiment_share = float(experiment_share)
        self.stickiness_seconds = int(stickiness_seconds)
        self.mode = mode
        self.horizon = horizon
        self.distributions = tuple(sorted(versions, key=lambda pair: pair[0]))
        self._tables = [_Arms(i, d) for i, d in self.distributions]
        self._by_index = {t.index: t for t in self._tables}
        self._running = state == RUNNING
        self._hasher = hashlib.blake2b(key=experiment.encode(), digest_size=16)
        self._chains = self._build_chains() if mode == COUPLED_MODE else {}

    # -- what it holds --------------------------------------------------------------------------------------
    @property
    def current_version(self) -> int | None:
        """The latest activated version held (which may not be in force yet)."""
        return self._tables[-1].version if self._tables else None

    def version_at(self, at: float) -> int:
        """The version in force at time ``at`` (epoch seconds)."""
        return self._in_force(at).version

    def _in_force(self, at: float) -> _Arms:
        tables = self._tables
        if not tables:
            raise NoDistributionError(f"experiment {self.experiment!r} has no activated distribution version yet")
        for table in reversed(tables):
            if table.valid_from <= at:
                return table
        return tables[0]

    # -- assignment -----------------------------------------------------------------------------------------
    def assign(self, member_id: str, at: float) -> Assignment:
        """The assignment of one (canonical) member id at time ``at``."""
        return self._assign(self._in_force(at), member_id, member_id.encode(), math.floor(at / self.stickiness_seconds))

    def assign_many(self, member_ids: Iterable[str], at: float) -> list[Assignment]:
        """Assignments of many members at one instant (one version in force for all)."""
        table = self._in_force(at)
        epoch = math.floor(at / self.stickiness_seconds)
        assign = self._assign
        return [assign(table, m, m.encode(), epoch) for m in member_ids]

    def _assign(self, table: _Arms, member_id: str, mb: bytes, epoch: int) -> Assignment:
        if not self._running or (self.experiment_share < 1.0 and self._u(b"e|" + mb) >= self.experiment_share):
            cid = table.control_id
            return Assignment(self.experiment, member_id, table.version, cid, table.values[cid], 1.0, False, True)
        if self.mode == EPOCH_MODE:
            arm = table.draw(self._u(b"a|%d|" % epoch + mb))
        else:
            arm = self._walk(table, mb)
        return Assignment(
            self.experiment, member_id, table.version, arm, table.values[arm], table.weight_of[arm], True,
            arm == table.control_id,
        )

    def _u(self, message: bytes) -> float:
        h = self._hasher.copy()
        h.update(message)
        return (int.from_bytes(h.digest()[:8], "little") >> 11) * _UNIT

    def _walk(self, table: _Arms, mb: bytes) -> str:
        chain = self._chains.get(table.index)
        if chain is None:
            raise IncompleteHistoryError(
                f"experiment {self.experiment!r}: the coupling chain of version {table.version} needs activations "
                f"from index {table.index - table.index % self.horizon}, which are not held"
            )
        anchor, steps = chain
        arm = anchor.draw(self._u(anchor.anchor_prefix + mb))
        hasher = self._hasher
        for step in steps:
            h = hasher.copy()
            h.update(step.prefix + mb)
            x = int.from_bytes(h.digest(), "little")
            if ((x & _MASK64) >> 11) * _UNIT >= step.stay.get(arm, 0.0):
                arm = step.resid_ids[bisect_right(step.resid_cum, (x >> 75) * _UNIT)]
        return arm

    def _build_chains(self) -> dict[int, tuple[_Arms, list[_Step]]]:
        """For each held index whose block anchor is also held: the anchor and the steps up to that index."""
        chains: dict[int, tuple[_Arms, list[_Step]]] = {}
        for table in self._tables:
            anchor = table.index - table.index % self.horizon
            if anchor == table.index:
                chains[table.index] = (table, [])
                continue
            previous = chains.get(table.index - 1)
            if previous is not None and table.index - 1 in self._by_index:
                base, steps = previous
                chains[table.index] = (base, [*steps, _Step(self._by_index[table.index - 1], table)])
        return chains

    # -- JSON -----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The document a local client reads back with :meth:`from_dict` (diagnostics left out)."""
        return {
            "schema_version": SNAPSHOT_SCHEMA_VERSION,
            "experiment": self.experiment,
            "state": self.state,
            "experiment_share": self.experiment_share,
            "stickiness_seconds": self.stickiness_seconds,
            "mode": self.mode,
            "horizon": self.horizon,
            "current_version": self.current_version,
            "versions": [
                {"index": i, "distribution": {**d.to_dict(), "diagnostics": {}}} for i, d in self.distributions
            ],
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ServingSnapshot:
        if doc.get("schema_version") != SNAPSHOT_SCHEMA_VERSION:
            raise ServingConfigError(f"schema_version: unsupported {doc.get('schema_version')!r}")
        return cls(
            experiment=doc["experiment"],
            state=doc["state"],
            experiment_share=doc["experiment_share"],
            stickiness_seconds=doc["stickiness_seconds"],
            mode=doc["mode"],
            horizon=doc["horizon"],
            versions=[(v["index"], ParameterDistribution.from_dict(v["distribution"])) for v in doc["versions"]],
        )


def total_variation(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """``TV(p, q) = 1/2 sum |p_a - q_a|`` over the union of arm ids: the least possible churn from p to q."""
    return 0.5 * math.fsum(abs(p.get(a, 0.0) - q.get(a, 0.0)) for a in set(p) | set(q))
