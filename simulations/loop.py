"""The closed loop: the real store, the real serving app over HTTP and the real refit job, on a simulated clock.

One run (:func:`run_closed_loop`) does, for a world, a spec and a policy:

1. start a private embedded Redis (or use ``redis_url``), launch the world's spec into the store
   (:func:`param_store.launch.launch_experiment`, version 1 = the launch design) and start the Flask app in a werkzeug
   server thread on ``127.0.0.1:<free port>``;
2. for every simulated hour ``h`` (the clock starts at :data:`DEFAULT_START`, midnight UTC):

   - draw the hour's members: a Poisson number around ``world.traffic(hour)`` (it swings with the time of
     day), distinct ids out of a fixed population, so members recur across hours;
   - fetch their parameters through ``POST /v1/experiments/<name>/params/batch`` with ``at`` = the middle of
     the simulated hour (sticky per member within the hour, as in production);
   - simulate each member's session in the world with the parameters the server gave it;
   - post per-(version, arm, metric) aggregates (count, sum, sum of squares) through
     ``POST /v1/experiments/<name>/observations``;
   - judge the distribution that was served by the world's truth (:func:`simulations.metrics.served_metrics`);
   - run the real refit job (:func:`jobs.refit.refit_experiment`) with ``now`` = the end of the hour, fixed
     one-hour periods and no activation delay, so the new version is in force from the next hour on; then wait
     until the server's cache has it (publish announcement, or its poll).

Policies: ``gp`` (our constrained Thompson sampling) and ``utility`` (the LinkedIn-style utility) run the
refit job's own default policy, ``bayesopt.policy.GPPolicy``, with ``spec.policy.method`` set in the launched
spec; the other baselines of :data:`simulations.baselines.POLICIES` are :class:`bayesopt.proposal.RefitPolicy`
objects too, handed to the refit job as they are.

Seeds: ``config.seed`` is the *world* seed: it builds the world (population, ranker, best arm), draws each
hour's members and their outcomes; ``config.stream`` is the sampler stream: the policy's own random draws
(launch design, Thompson samples, a baseline's arms) come from ``spec.policy.seed = seed * 1000 + stream``
(:func:`policy_seed`), so two streams of one world seed face the same world and traffic and differ only in
the policy's luck. ``config.variant`` names a world of :data:`simulations.world.WORLD_VARIANTS`.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from bayesopt.proposal import RefitPolicy
from bayesopt.spec import ExperimentSpec
from simulations.metrics import HourMetrics, served_metrics
from simulations.offline_simulator import SIMULATOR_PRESETS, OfflineSimulator, simulator_preset
from simulations.world import RankingWorld, make_world, world_variant

#: The simulated clock starts at 2024-01-01 00:00 UTC, so hour ``h`` of the run is hour ``h % 24`` of the day.
DEFAULT_START = 1_704_067_200.0
HOUR_S = 3600.0
#: Policies run through the refit job's own ``bayesopt.policy.GPPolicy`` (with ``spec.policy.method`` set).
GP_METHODS = {"gp": "constrained_ts", "utility": "utility_ts"}
#: Named variants of a policy: (the policy, ``spec.policy`` fields it sets). ``gp_loose`` is our policy with
#: ``feasibility_threshold`` 0.5: a wider safe region (arms at least 50% likely feasible centre its boxes).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {"gp_loose": ("gp", {"feasibility_threshold": 0.5})}
POLICY_NAMES = ("gp", "gp_loose", "utility", "uniform", "ab_grid", "arm_ts", "ax")
#: Sampler streams per world seed: ``policy_seed = seed * STREAMS_PER_SEED + stream`` is one-to-one below it.
STREAMS_PER_SEED = 1000
#: How long to wait for the serving cache to pick up a freshly published version.
CACHE_WAIT_S = 30.0


@dataclass(frozen=True, kw_only=True)
class LoopConfig:
    """One closed-loop run.

    Attributes:
        policy: a name of :data:`POLICY_NAMES`.
        seed: the world seed: the world (a different world per seed), the traffic and the outcome draws.
        stream: the sampler stream, ``0 <= stream < STREAMS_PER_SEED``: with ``seed`` it seeds the policy's own
            draws, ``spec.policy.seed = seed * 1000 + stream`` (:func:`policy_seed`); baselines get the same.
        variant: a world of :data:`simulations.world.WORLD_VARIANTS` (``base``, ``scarce``, ``d4``, ``d6``,
            ``shift``), or None for a world given by ``num_parameters`` and ``world_overrides`` alone. A variant
            fixes ``num_parameters`` (which must match) and adds its world fields (``shift``: the release at
            hour 24) under ``world_overrides``; build a variant's config with :meth:`for_variant`.
        hours: simulated hours.
        members_per_hour: mean members (one session each) per hour; the hour of day swings it by
            ``traffic_amplitude`` (+-50% by default).
        population: distinct member ids the hourly members are drawn from (default ``20 * members_per_hour``).
        num_parameters: tuned weights of the world (2: share and apply weights, the feed example).
        policy_overrides: fields of ``spec.policy`` (``num_draws``, ``num_candidates``, ``max_arms``, ...).
        baseline_options: per baseline name, keyword arguments of its factory (``make_policy(name, **options)``),
            e.g. ``{"ax": {"max_trials": 5}}``.
        world_overrides: fields of :class:`~simulations.world.WorldConfig`.
        name: the experiment name.
        start: epoch seconds of the first simulated hour.
        batch_size: member ids per batch request (the server allows 10,000).
        simulator: a preset of :data:`simulations.offline_simulator.SIMULATOR_PRESETS`, or None: before the first
            hour, ``simulator_points`` rows of that biased offline simulator are stored for every metric (one run),
            and the spec names every metric in ``simulator_metrics``.
        simulator_points: settings the simulator is run at (uniformly random, seeded by the world seed).
    """

    policy: str = "gp"
    seed: int = 0
    stream: int = 0
    variant: str | None = None
    hours: int = 24
    members_per_hour: float = 3000.0
    population: int | None = None
    num_parameters: int = 2
    policy_overrides: Mapping[str, Any] = field(default_factory=dict)
    baseline_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    world_overrides: Mapping[str, Any] = field(default_factory=dict)
    name: str = "sim_world"
    start: float = DEFAULT_START
    batch_size: int = 5000
    simulator: str | None = None
    simulator_points: int = 500

    def __post_init__(self) -> None:
        problems = []
        if self.simulator is not None and self.simulator not in SIMULATOR_PRESETS:
            problems.append(f"simulator must be one of {', '.join(SIMULATOR_PRESETS)}, got {self.simulator!r}")
        if self.simulator is not None and self.simulator_points < 1:
            problems.append(f"simulator_points must be at least 1, got {self.simulator_points}")
        if self.policy not in POLICY_NAMES:
            problems.append(f"policy must be one of {', '.join(POLICY_NAMES)}, got {self.policy!r}")
        if self.hours < 1:
            problems.append(f"hours must be at least 1, got {self.hours}")
        if not self.members_per_hour > 0:
            problems.append(f"members_per_hour must be positive, got {self.members_per_hour}")
        if not 0 <= self.stream < STREAMS_PER_SEED:
            problems.append(f"stream must be in [0, {STREAMS_PER_SEED}), got {self.stream}")
        if not 0 <= self.seed <= MAX_WORLD_SEED:
            problems.append(f"seed must be in [0, {MAX_WORLD_SEED}] (the policy seed seed * {STREAMS_PER_SEED} + "
                            f"stream must stay a valid spec seed), got {self.seed}")
        if self.variant is not None:
            try:
                v = world_variant(self.variant)
            except ValueError as exc:
                problems.append(str(exc))
            else:
                if self.num_parameters != v.num_parameters:
                    problems.append(f"variant {v.name!r} has {v.num_parameters} parameters, got num_parameters="
                                    f"{self.num_parameters}")
        if problems:
            raise ValueError("invalid LoopConfig: " + "; ".join(problems))

    @classmethod
    def for_variant(cls, variant: str, **fields: Any) -> LoopConfig:
        """A run of world ``variant``: its parameters and traffic, unless ``fields`` set ``members_per_hour``."""
        v = world_variant(variant)
        return cls(**{"members_per_hour": v.members_per_hour, **fields, "variant": v.name,
                      "num_parameters": v.num_parameters})

    @property
    def policy_seed(self) -> int:
        """``spec.policy.seed`` of the run: :func:`policy_seed` of ``(seed, stream)``."""
        return policy_seed(self.seed, self.stream)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["policy_overrides"] = dict(self.policy_overrides)
        doc["world_overrides"] = dict(self.world_overrides)
        doc["baseline_options"] = {k: dict(v) for k, v in self.baseline_options.items()}
        return doc


#: World seeds whose policy seed ``seed * STREAMS_PER_SEED + stream`` stays within ``PolicySettings.seed``'s range.
MAX_WORLD_SEED = (2**31 - 1) // STREAMS_PER_SEED - 1


def policy_seed(seed: int, stream: int = 0) -> int:
    """The seed of the policy's own draws for world seed ``seed`` and sampler stream ``stream``.

    ``seed * 1000 + stream``: one-to-one over ``stream < 1000``, so no two (world seed, stream) pairs share
    the policy's draws; the world never sees it.
    """
    return int(seed) * STREAMS_PER_SEED + int(stream)


def world_fields(config: LoopConfig) -> dict[str, Any]:
    """The :class:`~simulations.world.WorldConfig` fields of a run besides its seed: the variant's, then the
    run's ``world_overrides``."""
    variant = {} if config.variant is None else dict(world_variant(config.variant).overrides)
    return {"sessions_per_hour": float(config.members_per_hour), **variant, **dict(config.world_overrides)}


def build_world(config: LoopConfig) -> RankingWorld:
    """The world of a run: seeded by ``config.seed`` alone (never the stream), with the variant's fields and
    ``members_per_hour`` sessions an hour on average.

    Worlds are deterministic in their config, so the last few are kept: a report on a run reuses the run's
    world and the truth it cached (best feasible arm, metrics of the lattice) instead of recomputing them.
    """
    fields = world_fields(config)
    key = json.dumps([config.num_parameters, config.seed, sorted(fields.items())], default=str)
    world = _WORLDS.pop(key, None)
    if world is None:
        world = make_world(config.num_parameters, seed=config.seed, **fields)
    _WORLDS[key] = world
    while len(_WORLDS) > MAX_CACHED_WORLDS:
        _WORLDS.pop(next(iter(_WORLDS)))
    return world


MAX_CACHED_WORLDS = 4
_WORLDS: dict[str, RankingWorld] = {}


def build_spec(world: RankingWorld, config: LoopConfig) -> ExperimentSpec:
    """The world's spec with the run's policy seed (:func:`policy_seed` of seed and stream), overrides, policy
    variant fields and (``gp``/``utility``) method."""
    base, variant = VARIANTS.get(config.policy, (config.policy, {}))
    policy = {"seed": config.policy_seed, **dict(config.policy_overrides), **variant}
    if base in GP_METHODS:
        policy["method"] = GP_METHODS[base]
    spec = world.spec(config.name, policy=policy)
    return replace(spec, simulator_metrics=tuple(spec.metric_names)) if config.simulator else spec


# -- policies for the refit job ----------------------------------------------------------------------------------
def refit_policy(name: str, **options: Any) -> RefitPolicy | str:
    """The policy argument of ``refit_experiment`` for policy ``name`` (a variant runs its base policy).

    ``gp`` and ``utility`` are the refit job's own default policy (their method is in the launched spec); a
    baseline is one instance for the whole run, since it keeps state (fixed grids, arm sets) between hours.
    """
    base = VARIANTS.get(name, (name, {}))[0]
    if base in GP_METHODS:
        from jobs.propose import DEFAULT_POLICY

        return DEFAULT_POLICY
    from simulations.baselines import make_policy

    return make_policy(base, **options)


# -- the serving app in a thread -----------------------------------------------------------------------------------
@contextlib.contextmanager
def serving_app(redis_url: str, namespace: str, *, poll_interval_s: float = 0.5) -> Iterator[str]:
    """The real Flask app on werkzeug's threaded server at ``127.0.0.1:<free port>``; yields its base URL."""
    import logging

    from werkzeug.serving import make_server

    from serving import ServingConfig, create_app
    from serving.http import EXTENSION_KEY

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per request
    app = create_app(ServingConfig(redis_url=redis_url, namespace=namespace, poll_interval_s=poll_interval_s))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                              name="closed-loop-serving")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        app.extensions[EXTENSION_KEY].close()


@contextlib.contextmanager
def redis_url_for(redis_url: str | None) -> Iterator[str]:
    """``redis_url`` itself, or a private embedded Redis for the duration."""
    if redis_url:
        yield redis_url
        return
    from param_store import EmbeddedRedis

    with EmbeddedRedis() as server:
        yield server.url


# -- records -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HourRecord:
    """One simulated hour: what was served, what came back, what the refit did, what it was worth.

    ``metrics`` judges the distribution served during the hour against the world in force then; ``arms``
    lists its arms with weights, the members each actually got, whether each truly meets the guardrails, and
    the policy's ``p_feasible`` and ``p_best`` for it (None when its diagnostics have none); ``refit`` is the
    refit job's run record, summarised; ``world_hour`` is the middle of the hour on the world's clock (hours
    since midnight of the first day); ``risk`` and ``drift`` are the served version's ``diagnostics["risk"]`` and
    ``diagnostics["drift"]`` (None if absent); ``models`` names the model each of its metrics was drawn from
    (``online`` or ``multitask``: the guard's choice, ``diagnostics["models"][m]["simulator"]``; None when the
    version has no model diagnostics, as the launch design and the baselines).
    """

    step: int
    time: float
    hour_of_day: float
    version: int
    members: int
    rows_posted: int
    outcomes_posted: float
    arms: list[dict[str, Any]]
    metrics: HourMetrics
    cumulative_regret: float
    cumulative_relative_regret: float
    refit: dict[str, Any]
    seconds: dict[str, float]
    world_hour: float | None = None
    risk: dict[str, Any] | None = None
    drift: dict[str, Any] | None = None
    models: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        doc = {k: getattr(self, k) for k in (
            "step", "time", "hour_of_day", "world_hour", "version", "members", "rows_posted", "outcomes_posted",
            "arms", "cumulative_regret", "cumulative_relative_regret", "refit", "seconds", "risk", "drift", "models")}
        doc["metrics"] = self.metrics.to_dict()
        return doc


@dataclass
class LoopResult:
    """A whole run: its config, the truth it was judged by, and one :class:`HourRecord` per hour.

    ``optimum`` and ``control`` are the world's before any shift; ``shift`` (worlds with a ranker release
    only) has the release's world hour and the best feasible arm and control's metrics after it.
    """

    config: LoopConfig
    spec: ExperimentSpec
    optimum: dict[str, Any]
    control: dict[str, float]
    hours: list[HourRecord]
    wall_s: float = 0.0
    final_version: int | None = None
    shift: dict[str, Any] | None = None

    def frame(self) -> Any:
        """One row per hour: the :class:`HourRecord` scalars plus the flattened :class:`HourMetrics`."""
        import pandas as pd

        rows = []
        for r in self.hours:
            row = {k: v for k, v in r.to_dict().items() if not isinstance(v, (dict, list))}
            row.update(r.metrics.to_dict())
            row["refit_status"] = r.refit.get("status")
            row["refit_s"] = r.refit.get("seconds")
            rows.append(row)
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "spec": self.spec.to_dict(),
            "optimum": self.optimum,
            "control": self.control,
            "wall_s": self.wall_s,
            "final_version": self.final_version,
            "shift": self.shift,
            "hours": [r.to_dict() for r in self.hours],
        }


# -- the loop ------------------------------------------------------------------------------------------------------
def _aggregate(
    world: RankingWorld, assignments: list[Any], hour: float, rng: np.random.Generator
) -> tuple[list[dict[str, Any]], dict[tuple[int, str], dict[str, Any]]]:
    """Simulate every served member's session; per (version, arm, metric) rows and per-arm served counts."""
    groups: dict[tuple[int, str], list[Any]] = {}
    for a in assignments:
        if a.in_experiment:
            groups.setdefault((a.version, a.arm_id), []).append(a)
    rows: list[dict[str, Any]] = []
    served: dict[tuple[int, str], dict[str, Any]] = {}
    for (version, arm_id), members in sorted(groups.items()):
        values = members[0].values
        outcomes = world.sample_sessions(world.points(values), len(members), hour, rng)
        served[(version, arm_id)] = {"values": dict(values), "members": len(members)}
        for metric, y in outcomes.items():
            rows.append({"version": version, "arm_id": arm_id, "metric": metric, "source": "online",
                         "count": len(members), "sum": float(y.sum()), "sum_sq": float(y @ y)})
    return rows, served


def _wait_for_version(client: Any, name: str, version: int, timeout_s: float = CACHE_WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        current = int(client.distribution(name)["version"])
        if current >= version:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the serving cache still has version {current} of {name!r} {timeout_s} s after "
                               f"version {version} was published")
        time.sleep(0.02)


def _refit_summary(record: Any) -> dict[str, Any]:
    return {
        "status": str(record.status.value), "reason": None if record.reason is None else str(record.reason.value),
        "message": record.message, "version": record.version, "seconds": record.duration_s,
        "policy_s": record.timings.get("policy"),
        "fit_s": record.timings.get("policy.fit"), "sample_s": record.timings.get("policy.sample"), "problems": list(record.problems),
    }


def run_closed_loop(
    config: LoopConfig,
    *,
    redis_url: str | None = None,
    namespace: str | None = None,
    progress: bool | Callable[[HourRecord], None] = True,
    desc: str | None = None,
    position: int | None = None,
) -> LoopResult:
    """Run the closed loop of ``config`` (see the module docstring); returns every hour's record.

    ``redis_url`` None starts a private embedded Redis for the run; ``namespace`` defaults to a fresh one.
    ``progress`` True shows a tqdm bar on stderr; a callable is called with each :class:`HourRecord` instead.
    """
    import uuid

    from jobs.refit import RefitOptions, refit_experiment
    from param_store import ParamStore, make_client
    from param_store.launch import launch_experiment
    from serving import ServingClient

    started = time.perf_counter()
    world = build_world(config)
    spec = build_spec(world, config)
    truth = world.truth(spec)
    optimum = world.best_feasible(spec)
    namespace = namespace or f"sim{uuid.uuid4().hex[:10]}"
    # Traffic (members per hour, which members) and outcomes draw from the world seed alone, on two generators,
    # so the members of an hour are the same for every policy and stream of a world seed.
    rng = np.random.default_rng([config.seed, 7919])
    outcome_rng = np.random.default_rng([config.seed, 7919, 1])
    day_hour = ((config.start - DEFAULT_START) / HOUR_S) % 24.0  # the world's clock starts at that midnight
    population = int(config.population or max(1, round(20 * config.members_per_hour)))
    policy = refit_policy(config.policy, **dict(config.baseline_options.get(config.policy, {})))
    options = RefitOptions(period_seconds=int(HOUR_S), activation_delay_s=0.0, once_per_period=True)

    bar = None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=config.hours, desc=desc or f"{config.policy} seed {config.seed}", unit="h", file=sys.stderr,
                   position=position, leave=position is None, dynamic_ncols=True)
    records: list[HourRecord] = []
    with redis_url_for(redis_url) as url:
        store = ParamStore(make_client(url), namespace=namespace)
        try:
            launch_experiment(store, spec, now=config.start)
            if config.simulator is not None:
                simulator = OfflineSimulator(world, spec, simulator_preset(config.simulator), seed=config.seed)
                store.add_simulator_observations(spec.name, simulator.rows(config.simulator_points, run=f"{config.simulator}-replay",
                                                                           seed=config.seed))
            with serving_app(url, namespace) as base_url:
                client = ServingClient(base_url, timeout_s=(5.0, 120.0))
                cum, cum_rel = 0.0, 0.0
                for step in range(config.hours):
                    t_start = config.start + step * HOUR_S
                    at = t_start + HOUR_S / 2
                    world_hour = day_hour + (at - config.start) / HOUR_S
                    hour = world_hour % 24.0
                    t0 = time.perf_counter()
                    n = world.sample_traffic(world_hour, rng)
                    ids = rng.choice(population, size=min(n, population), replace=False) if n else np.zeros(0, int)
                    assignments: list[Any] = []
                    for i in range(0, len(ids), config.batch_size):
                        chunk = [f"m{int(m)}" for m in ids[i : i + config.batch_size]]
                        assignments.extend(client.params_batch(spec.name, chunk, at=at))
                    t1 = time.perf_counter()
                    versions = {a.version for a in assignments}
                    if len(versions) > 1:
                        raise RuntimeError(f"hour {step}: members were served versions {sorted(versions)} at one instant")
                    version = versions.pop() if versions else int(client.distribution(spec.name)["version"])
                    rows, served = _aggregate(world, assignments, world_hour, outcome_rng)
                    t2 = time.perf_counter()
                    accepted = client.post_observations(spec.name, rows) if rows else 0
                    t3 = time.perf_counter()
                    dist = store.load_version(spec.name, version)
                    metrics = served_metrics(world, spec, dist, world_hour)
                    traffic = float(len(assignments))
                    cum += metrics.regret * traffic
                    cum_rel += metrics.relative_regret
                    now_truth = world.truth(spec, world_hour)
                    feasible = now_truth.feasible(now_truth.metrics(np.array(
                        [[float(a.values[p]) for p in spec.parameter_names] for a in dist.arms])))
                    predicted = (dist.diagnostics or {}).get("arms") or {}
                    arms = [
                        {"arm_id": a.arm_id, "values": dict(a.values), "weight": a.weight,
                         "members": served.get((version, a.arm_id), {}).get("members", 0), "feasible": bool(ok),
                         "p_feasible": _probability(predicted.get(a.arm_id), "p_feasible"),
                         "p_best": _probability(predicted.get(a.arm_id), "p_best")}
                        for a, ok in zip(dist.arms, feasible, strict=True)
                    ]
                    risk = (dist.diagnostics or {}).get("risk")
                    drift = (dist.diagnostics or {}).get("drift")
                    models = served_models(dist.diagnostics)
                    t4 = time.perf_counter()
                    record = refit_experiment(store, namespace, spec.name, now=t_start + HOUR_S, policy=policy,
                                              options=options)
                    if record.status.value == "published" and record.version is not None:
                        _wait_for_version(client, spec.name, record.version)
                    t5 = time.perf_counter()
                    hour_record = HourRecord(
                        step=step, time=t_start, hour_of_day=hour, version=version, members=len(assignments),
                        rows_posted=int(accepted),
                        outcomes_posted=float(sum(r["count"] for r in rows if r["metric"] == world.metric_names[0])),
                        arms=arms, metrics=metrics, cumulative_regret=cum, cumulative_relative_regret=cum_rel,
                        refit=_refit_summary(record),
                        seconds={"serve": t1 - t0, "simulate": t2 - t1, "observe": t3 - t2, "judge": t4 - t3,
                                 "refit": t5 - t4},
                        world_hour=world_hour, risk=dict(risk) if isinstance(risk, Mapping) else None,
                        drift=dict(drift) if isinstance(drift, Mapping) else None, models=models,
                    )
                    records.append(hour_record)
                    if bar is not None:
                        bar.set_postfix_str(
                            f"v{version} regret {100 * metrics.relative_regret:5.2f}% unsafe {100 * metrics.unsafe_share:4.1f}% "
                            f"refit {record.status.value} {t5 - t4:.1f}s", refresh=False)
                        bar.update(1)
                    elif callable(progress):
                        progress(hour_record)
            final_version = store.current_version(spec.name)
        finally:
            if bar is not None:
                bar.close()
            store.close()
    control = dict(zip(world.metric_names, truth.control.tolist(), strict=True))
    shift = None
    if world.config.shift_hour is not None:
        after = world.config.shift_hour
        shift = {"world_hour": after, "optimum": _optimum_doc(world.best_feasible(spec, after)),
                 "control": dict(zip(world.metric_names, world.truth(spec, after).control.tolist(), strict=True))}
    return LoopResult(config=config, spec=spec, optimum=_optimum_doc(optimum), control=control, hours=records,
                      wall_s=time.perf_counter() - started, final_version=final_version, shift=shift)


def served_models(diagnostics: Mapping[str, Any] | None) -> dict[str, str] | None:
    """Per metric, the model a version's draws came from (``online`` unless the guard picked ``multitask``)."""
    models = (diagnostics or {}).get("models")
    if not isinstance(models, Mapping):
        return None
    return {m: str(((d or {}).get("simulator") or {}).get("model", "online")) for m, d in models.items()}


def _optimum_doc(optimum: Any) -> dict[str, Any]:
    return {"arm_id": optimum.arm_id, "values": dict(optimum.values), "objective": optimum.objective,
            "relative": dict(optimum.relative), "metrics": dict(optimum.metrics)}


def _probability(arm: Any, key: str) -> float | None:
    """``arm[key]`` of an arm's diagnostics as a float, or None when it is missing or not a number."""
    if not isinstance(arm, Mapping):
        return None
    value = arm.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def with_overrides(config: LoopConfig, **changes: Any) -> LoopConfig:
    """``dataclasses.replace`` for :class:`LoopConfig` (policy overrides merged, not replaced)."""
    if "policy_overrides" in changes:
        changes["policy_overrides"] = {**dict(config.policy_overrides), **dict(changes["policy_overrides"])}
    return replace(config, **changes)


def hours_label(hours: float) -> str:
    return "never" if not math.isfinite(hours) else f"{hours:.0f}"
