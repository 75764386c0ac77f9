"""A synthetic ranking world for closed-loop runs: sessions, a miscalibrated ranker, members' true responses.

A session shows the top ``K`` of ``C`` candidate items, ranked by the formula

    score = p_click + sum_j x_j * p_j        (j over the tuned terms: share, apply, dwell, ...)

where ``p`` are the *ranker's* predicted probabilities. Members respond with their *true* probabilities ``q``
(the ranker is miscalibrated and noisy, so the best ``x`` is not what the ranker's own numbers suggest). An
impression at position ``k`` produces event ``t`` with probability ``decay_k * q_t``, independently across
positions and events, and only while the session is *active*: a session is active with probability
``activity * tod(hour)``, where ``tod`` is a +-``tod_amplitude`` sinusoid. So the time of day multiplies every
arm's every metric by the same factor, exactly, which is what makes within-window comparison against control
the right thing to do.

Per-session outcomes: a ``rate`` metric is 1 if the session had at least one such event (``engaged_sessions``:
any click); a ``mean`` metric counts the events of the session.

The world's population is a fixed pool of sessions drawn once from the seed. :meth:`RankingWorld.sample_sessions`
draws sessions from that pool (with replacement) and simulates fresh outcomes, and
:meth:`RankingWorld.expected_metrics` averages the exact per-session expectations over the whole pool: it is the
exact expectation of the sampled means (common random numbers), a deterministic function of ``x``, and
vectorised over thousands of points.

**A shift** (``shift_hour``, the ``shift`` variant): at that hour a ranker release recalibrates the ranker's
predictions, multiplying each term's predicted probability by its ``shift_factors`` entry. The same weights
``x`` then rank differently, so every metric's response to every weight changes: the best feasible arm and
the guardrail trade-offs move, and control's own metrics change too. Members' true responses stay. Hours
are on the world's clock (hours since midnight of the run's first day; the time of day is ``hour % 24``), so
:meth:`RankingWorld.regime` says which ranker is in force, and :meth:`RankingWorld.truth` and
:meth:`RankingWorld.best_feasible` take the hour and judge against the world in force then.

**Variants** (:data:`WORLD_VARIANTS`, ``bayesopt simulate --variant``): ``base`` (30,000 members an hour, 2
weights), ``scarce`` (5,000 an hour), ``d4`` and ``d6`` (4 and 6 weights at 30,000), ``shift`` (``base`` with a
ranker release at hour 24).

Glossary: ``S`` pool sessions, ``C`` candidates per session, ``K`` slots shown, ``T`` terms (click plus the
``d`` tuned terms), ``n`` points, ``m`` metrics (``m == T``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bayesopt.spec import ExperimentSpec
from simulations.oracle import Optimum, Truth, instant_regret


@dataclass(frozen=True)
class Term:
    """One term of the ranking formula and the metric it drives."""

    key: str
    metric: str
    parameter: str | None
    #: Mean true logit per item type (post, job, video).
    logit: tuple[float, float, float]
    #: Loading on the item's latent quality, shared by all terms (what makes the terms correlated).
    quality: float
    #: The ranker's calibration slope, bias and noise on the logit scale (1, 0, 0 would be perfect).
    slope: float
    bias: float
    noise: float


#: Item types and their shares of the candidate pool.
ITEM_TYPES = ("post", "job", "video")
ITEM_TYPE_SHARES = (0.65, 0.25, 0.1)

#: The click term is always there; the tuned terms follow in this order (the first ``d`` are used).
TERMS = (
    Term("click", "engaged_sessions", None, (-2.8, -4.6, -3.4), 0.9, 0.8, 0.2, 1.2),
    Term("share", "shares", "share_weight", (-4.4, -6.8, -3.2), 1.2, 0.7, -0.3, 0.5),
    Term("apply", "applies", "apply_weight", (-4.0, -2.5, -6.0), 0.3, 0.8, 0.0, 0.5),
    Term("dwell", "long_dwells", "dwell_weight", (-2.6, -3.5, -1.5), 0.5, 0.9, 0.1, 0.5),
    Term("comment", "comments", "comment_weight", (-4.0, -6.0, -4.5), 0.5, 0.7, 0.2, 0.5),
    Term("follow", "follows", "follow_weight", (-5.0, -4.0, -4.5), 0.3, 0.8, -0.2, 0.5),
    Term("save", "saves", "save_weight", (-4.5, -3.8, -5.0), 0.4, 0.8, 0.0, 0.5),
)
MIN_PARAMETERS, MAX_PARAMETERS = 2, len(TERMS) - 1

#: What a ranker release does to each term's predicted probability (click first, then the tuned terms in
#: :data:`TERMS` order): shares are predicted lower and applies higher, so the same weights push fewer shares
#: and more applies, control included (its engaged sessions fall ~6%, its applies rise ~22%). In the 2-weight
#: world, seeds 0-4, the best feasible arm moves from share_weight 2.4-3.3 to 3.5-3.6 (apply_weight 1.4), and
#: the old best arm, still feasible, falls 3-4% short of the new best: a team that does not notice keeps
#: paying for it (checked in tests/simulations/test_sim_world.py).
SHIFT_FACTORS = (1.0, 0.6, 1.6, 1.3, 0.7, 1.4, 0.8)

#: Default guardrails of :meth:`RankingWorld.spec`: relative floors against control, as in feed_example.yaml.
DEFAULT_GUARDRAILS = {"applies": -0.01, "shares": -0.02}
#: Points per chunk of :meth:`RankingWorld.expected_metrics`, sized so a chunk's ``n x S x C`` scores stay ~16M.
SCORES_PER_CHUNK = 16_000_000


@dataclass(frozen=True)
class WorldConfig:
    """Knobs of the world; the defaults give the feed example (2 weights, rates, +-30% time of day)."""

    num_parameters: int = 2
    seed: int = 0
    pool_sessions: int = 2048
    candidates: int = 24
    slots: int = 8
    #: Position ``k`` (0-based) is seen with weight ``(1 + k) ** -position_decay``.
    position_decay: float = 0.8
    #: Probability that a session is active at all, at the daily mean.
    activity: float = 0.7
    tod_amplitude: float = 0.3
    #: Hour of day (0..24) at which activity and traffic peak.
    peak_hour: float = 20.0
    #: Mean sessions per hour entering the experiment, and the +- amplitude of its daily swing.
    sessions_per_hour: float = 100_000.0
    traffic_amplitude: float = 0.5
    #: Multiplies every term's ranker noise (0: the ranker is only miscalibrated, not noisy).
    ranker_noise: float = 1.0
    #: Standard deviations of item idiosyncratic and per-session (member) logit offsets.
    item_noise: float = 0.6
    member_noise: float = 0.4
    #: Share of sessions from job seekers, whose apply logits are ``job_seeker_boost`` higher (unseen by the ranker).
    job_seeker_share: float = 0.15
    job_seeker_boost: float = 1.5
    #: Metrics reported as counts per session (kind ``mean``); the others are 0/1 per session (kind ``rate``).
    count_metrics: tuple[str, ...] = ()
    #: Bounds of every weight.
    bounds: tuple[float, float] = (0.0, 4.0)
    #: The world hour from which the released ranker is in force (None: no release, one regime).
    shift_hour: float | None = None
    #: Per term (:data:`TERMS` order, click first), the factor the release applies to its predictions.
    shift_factors: tuple[float, ...] = SHIFT_FACTORS

    def __post_init__(self) -> None:
        problems = []
        if not MIN_PARAMETERS <= self.num_parameters <= MAX_PARAMETERS:
            problems.append(f"num_parameters must be in [{MIN_PARAMETERS}, {MAX_PARAMETERS}], got {self.num_parameters}")
        if not 1 <= self.slots <= self.candidates:
            problems.append(f"slots must be in [1, candidates={self.candidates}], got {self.slots}")
        if self.pool_sessions < 1:
            problems.append(f"pool_sessions must be positive, got {self.pool_sessions}")
        if not 0 <= self.tod_amplitude < 1 or not 0 <= self.traffic_amplitude < 1:
            problems.append("tod_amplitude and traffic_amplitude must be in [0, 1)")
        if not 0 < self.activity * (1 + self.tod_amplitude) <= 1:
            problems.append(f"activity * (1 + tod_amplitude) must be in (0, 1], got {self.activity * (1 + self.tod_amplitude)}")
        metrics = {t.metric for t in TERMS[: self.num_parameters + 1]}
        unknown = sorted(set(self.count_metrics) - metrics)
        if unknown:
            problems.append(f"count_metrics {unknown} are not metrics of this world (known: {sorted(metrics)})")
        if not self.bounds[0] < self.bounds[1] or self.bounds[0] < 0:
            problems.append(f"bounds must be 0 <= lower < upper, got {self.bounds}")
        if self.shift_hour is not None and not (math.isfinite(self.shift_hour) and self.shift_hour >= 0):
            problems.append(f"shift_hour must be a non-negative hour or None, got {self.shift_hour}")
        if len(self.shift_factors) < self.num_parameters + 1 or not all(f > 0 for f in self.shift_factors):
            problems.append(f"shift_factors must give a positive factor for each of the {self.num_parameters + 1} "
                            f"terms, got {self.shift_factors}")
        if problems:
            raise ValueError("invalid WorldConfig: " + "; ".join(problems))


@dataclass(frozen=True)
class _Pool:
    """The fixed sessions: predicted and true per-item probabilities, ``S x C x T`` each (float32)."""

    predicted: np.ndarray
    true: np.ndarray


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass
class RankingWorld:
    """The synthetic world. Build it with ``RankingWorld(WorldConfig(...))`` or :func:`make_world`."""

    config: WorldConfig = field(default_factory=WorldConfig)

    def __post_init__(self) -> None:
        cfg = self.config
        self.terms: tuple[Term, ...] = TERMS[: cfg.num_parameters + 1]
        self.parameter_names: list[str] = [t.parameter for t in self.terms[1:]]  # type: ignore[misc]
        self.metric_names: list[str] = [t.metric for t in self.terms]
        self.metric_kinds: dict[str, str] = {
            m: ("mean" if m in cfg.count_metrics else "rate") for m in self.metric_names
        }
        self.decay = (1.0 + np.arange(cfg.slots)) ** -cfg.position_decay  # K
        self._is_count = np.array([self.metric_kinds[m] == "mean" for m in self.metric_names])  # T
        self.pool = self._draw_pool(np.random.default_rng(cfg.seed))
        # The ranker's per-term score scale in each regime: 1 before the release, its factors after.
        self._scales = [np.ones(len(self.terms))]
        if cfg.shift_hour is not None:
            self._scales.append(np.asarray(cfg.shift_factors[: len(self.terms)], dtype=float))
        self._truths: dict[tuple[str, int], Truth] = {}
        self._optima: dict[tuple[str, str, int], Optimum] = {}
        S, C, T = self.pool.true.shape
        # Event probability of each item at each slot, and its log-complement: (S * C) x K x T.
        slot_prob = self.pool.true[:, :, None, :] * self.decay[None, None, :, None].astype(np.float32)
        self._slot_prob = slot_prob.reshape(S * C, cfg.slots, T)
        self._slot_log = np.log1p(-self._slot_prob)

    # -- the population --------------------------------------------------------------------------------------
    def _draw_pool(self, rng: np.random.Generator) -> _Pool:
        cfg = self.config
        S, C, T = cfg.pool_sessions, cfg.candidates, len(self.terms)
        item_type = rng.choice(len(ITEM_TYPES), size=(S, C), p=ITEM_TYPE_SHARES)  # S x C
        means = np.array([t.logit for t in self.terms]).T  # types x T
        quality = rng.standard_normal((S, C, 1)) * np.array([t.quality for t in self.terms])  # S x C x T
        member = rng.standard_normal((S, 1, T)) * cfg.member_noise
        seeker = (rng.random((S, 1)) < cfg.job_seeker_share) * cfg.job_seeker_boost  # S x 1
        true_logit = means[item_type] + quality + member + rng.standard_normal((S, C, T)) * cfg.item_noise
        apply = [i for i, t in enumerate(self.terms) if t.key == "apply"]
        if apply:
            true_logit[:, :, apply[0]] += seeker
        slope = np.array([t.slope for t in self.terms])
        bias = np.array([t.bias for t in self.terms])
        # The ranker sees neither the member offsets nor job-seeking intent, and adds its own noise.
        seen = true_logit - member
        if apply:
            seen[:, :, apply[0]] -= seeker
        noise = np.array([t.noise for t in self.terms]) * cfg.ranker_noise
        pred_logit = slope * seen + bias + rng.standard_normal((S, C, T)) * noise
        return _Pool(predicted=_sigmoid(pred_logit).astype(np.float32), true=_sigmoid(true_logit).astype(np.float32))

    @property
    def seed(self) -> int:
        """The world's seed: its population, its ranker, and the oracle's search starts."""
        return int(self.config.seed)

    # -- regimes ---------------------------------------------------------------------------------------------
    @property
    def regimes(self) -> int:
        """How many regimes the world has: 1, or 2 with a ranker release at ``shift_hour``."""
        return len(self._scales)

    def regime(self, hour: float | None) -> int:
        """The regime in force at world hour ``hour``: 0 before the release (and for ``None``), 1 from it on."""
        shift = self.config.shift_hour
        return int(shift is not None and hour is not None and float(hour) >= shift)

    def _regime(self, hour: float | None, regime: int | None) -> int:
        r = self.regime(hour) if regime is None else int(regime)
        if not 0 <= r < self.regimes:
            raise ValueError(f"regime must be in [0, {self.regimes}) for this world, got {regime}")
        return r

    # -- time of day -----------------------------------------------------------------------------------------
    def tod_multiplier(self, hour: float | None) -> float:
        """The factor the hour applies to every arm's every metric; ``None`` gives its daily mean, 1."""
        if hour is None:
            return 1.0
        return 1.0 + self.config.tod_amplitude * math.cos(2 * math.pi * (float(hour) - self.config.peak_hour) / 24)

    def traffic(self, hour: float) -> float:
        """Expected sessions entering the experiment during ``hour`` (peaks at ``peak_hour``)."""
        cfg = self.config
        return cfg.sessions_per_hour * (1.0 + cfg.traffic_amplitude * math.cos(2 * math.pi * (float(hour) - cfg.peak_hour) / 24))

    def sample_traffic(self, hour: float, rng: np.random.Generator) -> int:
        """A Poisson draw of the sessions in ``hour``."""
        return int(rng.poisson(self.traffic(hour)))

    # -- ranking ---------------------------------------------------------------------------------------------
    def _top(self, X: np.ndarray, sessions: np.ndarray | slice, regime: int = 0) -> np.ndarray:
        """Rows of the slot tables for the items shown, best first: ``n x S' x K`` for ``X`` of ``n x d``.

        ``regime`` picks the ranker: after a release each term's prediction is scaled by its shift factor.
        """
        pred = self.pool.predicted[sessions]  # S' x C x T
        C, K = pred.shape[1], self.config.slots
        weights = (np.concatenate([np.ones((len(X), 1)), X], axis=1) * self._scales[regime]).astype(np.float32)  # n x T
        score = np.einsum("sct,nt->nsc", pred, weights)  # n x S' x C
        top = np.argpartition(score, C - K, axis=-1)[..., C - K :] if K < C else np.argsort(score, axis=-1)
        order = np.argsort(np.take_along_axis(score, top, axis=-1), axis=-1)[..., ::-1]
        top = np.take_along_axis(top, order, axis=-1)  # n x S' x K, best first
        first = np.arange(self.config.pool_sessions)[sessions] * C  # S'
        return top + first[None, :, None]

    def _session_expectations(self, X: np.ndarray, sessions: np.ndarray | slice, regime: int = 0) -> np.ndarray:
        """Per active session: P(at least one event) for rates, expected events for counts: ``n x S' x T``."""
        rows = self._top(X, sessions, regime)
        slots = np.arange(self.config.slots)
        out = -np.expm1(self._slot_log[rows, slots].sum(axis=-2))  # n x S' x T
        if self._is_count.any():
            out[..., self._is_count] = self._slot_prob[rows, slots][..., self._is_count].sum(axis=-2)
        return out

    def _as_points(self, X: Any) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=float))
        if X.shape[-1] != len(self.parameter_names):
            raise ValueError(f"X must have {len(self.parameter_names)} columns ({self.parameter_names}), got {X.shape}")
        return X

    def points(self, values: Mapping[str, float] | Sequence[Mapping[str, float]]) -> np.ndarray:
        """Parameter mappings (such as arm values) to an ``n x d`` array in :attr:`parameter_names` order."""
        rows = [values] if isinstance(values, Mapping) else list(values)
        return np.array([[float(r[p]) for p in self.parameter_names] for r in rows]).reshape(len(rows), -1)

    # -- truth -----------------------------------------------------------------------------------------------
    def expected_metrics(self, X: Any, hour: float | None = None, *, regime: int | None = None) -> np.ndarray:
        """True expected per-session metrics, ``n x m`` (columns :attr:`metric_names`) for ``X`` of ``n x d``.

        Deterministic in ``X`` (an average over the fixed pool); ``hour`` scales every entry by
        :meth:`tod_multiplier` (``None``: the daily mean) and picks the regime in force then, unless
        ``regime`` is given (``hour=None`` and no ``regime``: regime 0, the world before any release).
        """
        X = self._as_points(X)
        r = self._regime(hour, regime)
        S, C = self.config.pool_sessions, self.config.candidates
        chunk = max(1, SCORES_PER_CHUNK // (S * C))
        out = np.empty((len(X), len(self.terms)))
        for i in range(0, len(X), chunk):
            out[i : i + chunk] = self._session_expectations(X[i : i + chunk], slice(None), r).mean(axis=1, dtype=np.float64)
        return out * (self.config.activity * self.tod_multiplier(hour))

    def expected(self, values: Mapping[str, float], hour: float | None = None) -> dict[str, float]:
        """:meth:`expected_metrics` of one point given as a mapping, as ``{metric: value}``."""
        row = self.expected_metrics(self.points(values), hour)[0]
        return dict(zip(self.metric_names, row.tolist(), strict=True))

    # -- sampling --------------------------------------------------------------------------------------------
    def sample_sessions(self, x: Any, n: int, hour: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Outcomes of ``n`` sessions served ``x`` (shape ``d``) during ``hour``: ``{metric: n floats}``.

        Rate metrics are 0/1 per session, count metrics non-negative integers; their means converge to
        ``expected_metrics(x, hour)`` (the ranker of the regime in force at ``hour`` ranks the items).
        """
        x = self._as_points(x)[:1]
        if n <= 0:
            return {m: np.zeros(0) for m in self.metric_names}
        sessions = rng.integers(0, self.config.pool_sessions, size=n)
        active = rng.random(n) < self.config.activity * self.tod_multiplier(hour)  # n
        per_slot = self._slot_prob[self._top(x, sessions, self.regime(hour))[0], np.arange(self.config.slots)]  # n x K x T
        events = rng.random(per_slot.shape) < per_slot  # n x K x T
        counts = events.sum(axis=1) * active[:, None]  # n x T
        out = np.where(self._is_count, counts, counts > 0).astype(float)
        return {m: out[:, j] for j, m in enumerate(self.metric_names)}

    # -- the experiment ---------------------------------------------------------------------------------------
    def spec(
        self,
        name: str = "sim_world",
        *,
        guardrails: Mapping[str, float] | None = None,
        control: Mapping[str, float] | None = None,
        control_share: float = 0.2,
        policy: Mapping[str, Any] | None = None,
    ) -> ExperimentSpec:
        """An :class:`ExperimentSpec` matching this world: maximise ``engaged_sessions``, relative guardrails.

        ``guardrails`` maps metrics to relative floors against control (default :data:`DEFAULT_GUARDRAILS`,
        those present); ``control`` defaults to every weight at 1; ``policy`` overrides policy fields.
        """
        lo, hi = self.config.bounds
        rails = {m: v for m, v in (DEFAULT_GUARDRAILS if guardrails is None else guardrails).items()}
        unknown = sorted(set(rails) - set(self.metric_names))
        if unknown:
            raise ValueError(f"guardrails on unknown metrics {unknown} (this world has {self.metric_names})")
        doc = {
            "name": name,
            "description": f"Synthetic ranking world, {len(self.parameter_names)} weights, seed {self.config.seed}.",
            "parameters": [{"name": p, "type": "float", "lower": lo, "upper": hi} for p in self.parameter_names],
            "control": dict(control) if control is not None else {p: 1.0 for p in self.parameter_names},
            "metrics": [{"name": m, "kind": self.metric_kinds[m]} for m in self.metric_names],
            "objectives": [{"metric": self.metric_names[0], "direction": "maximize"}],
            "guardrails": [{"metric": m, "lower": v, "relative": True} for m, v in rails.items()],
            "traffic": {"experiment_share": 1.0, "control_share": control_share},
            "policy": self._policy(policy or {}),
        }
        return ExperimentSpec.from_dict(doc)

    @staticmethod
    def _policy(overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Policy fields as in feed_example.yaml; the launch design never holds more arms than ``max_arms``."""
        doc = {"max_arms": 12, "num_draws": 2000, "num_candidates": 512, **overrides}
        doc.setdefault("initial_arms", max(1, min(8, int(doc["max_arms"]) - 1)))
        return doc

    # -- ground truth for a spec (see simulations.oracle) ----------------------------------------------------
    def truth(self, spec: ExperimentSpec, hour: float | None = None) -> Truth:
        """Feasibility and objective of points under ``spec`` in the regime in force at world hour ``hour``.

        ``None``: the world before any release. Cached per (what the truth depends on in ``spec``, regime): the
        spec's policy section (its seed above all) does not matter, so every sampler stream of a world shares
        one truth.
        """
        key = (truth_key(spec), self.regime(hour))
        if key not in self._truths:
            self._truths[key] = Truth(self, spec, key[1])
        return self._truths[key]

    def best_feasible(self, spec: ExperimentSpec, hour: float | None = None) -> Optimum:
        """The best lattice arm of ``spec`` that meets every guardrail by true metrics at ``hour`` (cached)."""
        key = ("feasible", truth_key(spec), self.regime(hour))
        if key not in self._optima:
            self._optima[key] = self.truth(spec, hour).search(constrained=True)
        return self._optima[key]

    def best_objective(self, spec: ExperimentSpec, hour: float | None = None) -> Optimum:
        """The best lattice arm of ``spec`` for the objective alone at ``hour``, guardrails ignored (cached)."""
        key = ("objective", truth_key(spec), self.regime(hour))
        if key not in self._optima:
            self._optima[key] = self.truth(spec, hour).search(constrained=False)
        return self._optima[key]

    def regret(
        self, spec: ExperimentSpec, values: Sequence[Mapping[str, float]], weights: Sequence[float], *, hour: float | None = None
    ) -> float:
        """Instantaneous regret of serving ``weights`` over arms ``values`` at ``hour`` vs :meth:`best_feasible`."""
        truth = self.truth(spec, hour)
        V = np.array([[float(v[p]) for p in spec.parameter_names] for v in values])
        return instant_regret(truth, self.best_feasible(spec, hour), V, np.asarray(weights, dtype=float), hour=hour)


def truth_key(spec: ExperimentSpec) -> str:
    """What the ground truth of ``spec`` depends on, as a string: parameters, control, metrics, objectives,
    guardrails and the lattice (``policy.grid_levels``), not the policy's other knobs or seed."""
    doc = spec.to_dict()
    parts = {k: doc[k] for k in ("parameters", "control", "metrics", "objectives", "guardrails")}
    parts["grid_levels"] = doc["policy"]["grid_levels"]
    return json.dumps(parts, sort_keys=True)


def make_world(num_parameters: int = 2, *, seed: int = 0, **config: Any) -> RankingWorld:
    """Shorthand for ``RankingWorld(WorldConfig(num_parameters=..., seed=..., **config))``."""
    return RankingWorld(WorldConfig(num_parameters=num_parameters, seed=seed, **config))


# -- variants ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorldVariant:
    """A named world of the closed-loop study.

    ``num_parameters`` and ``overrides`` (fields of :class:`WorldConfig`) define the world; ``members_per_hour``
    is the variant's traffic, which a run may override (tests and smoke runs use less) and records.
    """

    name: str
    description: str
    num_parameters: int = 2
    members_per_hour: float = 30_000.0
    overrides: Mapping[str, Any] = field(default_factory=dict)


#: The study's worlds (issue 12): today's, scarce traffic, more weights, and a ranker release at hour 24.
WORLD_VARIANTS: dict[str, WorldVariant] = {v.name: v for v in (
    WorldVariant("base", "30,000 members an hour, 2 weights (the feed example)"),
    WorldVariant("scarce", "5,000 members an hour, 2 weights", members_per_hour=5_000.0),
    WorldVariant("d4", "30,000 members an hour, 4 weights", num_parameters=4),
    WorldVariant("d6", "30,000 members an hour, 6 weights", num_parameters=6),
    WorldVariant("shift", "30,000 members an hour, 2 weights, a ranker release at hour 24 moves every response",
                 overrides={"shift_hour": 24.0}),
)}


def world_variant(name: str) -> WorldVariant:
    """The variant called ``name``; a ``ValueError`` lists the known ones."""
    try:
        return WORLD_VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown world variant {name!r} (known: {', '.join(WORLD_VARIANTS)})") from None


def make_variant_world(name: str, *, seed: int = 0, **config: Any) -> RankingWorld:
    """The world of variant ``name`` with ``seed``; ``config`` overrides further :class:`WorldConfig` fields."""
    v = world_variant(name)
    return make_world(v.num_parameters, seed=seed, **{"sessions_per_hour": v.members_per_hour, **dict(v.overrides), **config})
