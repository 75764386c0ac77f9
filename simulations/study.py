"""Many closed-loop runs in a process pool, each on its own embedded Redis and server, and what they show.

Two studies share one runner (:func:`run_configs`):

- :func:`run_study` (``bayesopt simulate``): policies x seeds (x streams) on one world, the multi-seed table of
  :func:`simulations.report.write_study_report`.
- :func:`run_variant_study` (``bayesopt simulate --study``, issue 12): for every world variant of
  :data:`simulations.world.WORLD_VARIANTS`, policies x world seeds x sampler streams; every policy compared
  *paired* with the reference policy (the default ``gp``) on the same world seeds, each difference of
  cumulative regret given with a 95% t interval; the spread across streams reported as a result; the issue's
  goals evaluated as pass/fail rows; a reliability table of the policies' ``p_feasible``.

Every finished run is written at once to ``<out>/runs/[<variant>/]<policy>-seed<seed>[-stream<stream>].json``
(its summary included), and a run whose file is already there is loaded instead of run again (after checking
that it was run with the same config), so a long study can be run in pieces, or resumed after an interruption.

Pairing. A world seed fixes the world, its traffic and the outcome draws; a stream fixes the policy's own
draws (``spec.policy.seed = seed * 1000 + stream``). When a policy ran the same streams as the reference on
every common world seed, the pairs are the (world seed, stream) runs; when it ran fewer streams (a baseline far
behind), each side's runs are averaged per world seed and the pairs are the world seeds: the table says which.
The by-world-seed interval is also given for every policy: with one world per seed, its streams share that
world, so the seed-level interval is the one that speaks for other worlds.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from simulations.loop import POLICY_NAMES, LoopConfig

#: Rough relative cost of an hour per policy, so the slow runs start first and the pool ends evenly.
COST = {"ax": 4.0, "gp": 3.0, "gp_loose": 3.0, "utility": 3.0, "arm_ts": 0.3, "uniform": 0.2, "ab_grid": 0.2}
#: Relative cost of an hour per world variant (more weights: bigger lattices, slower fits).
VARIANT_COST = {"d4": 1.5, "d6": 2.0, "scarce": 0.8}
#: The policy every other is compared with.
REFERENCE = "gp"
#: Edges of the reliability table's bins of ``p_feasible``: [0, .5), [.5, .8), [.8, .9), [.9, .95), [.95, 1].
RELIABILITY_EDGES = (0.0, 0.5, 0.8, 0.9, 0.95, 1.0)
CONFIDENCE = 0.95
#: Goals of issue 12: the floor ratio at ``base`` and the hours to recover after the ``shift``.
FLOOR_RATIO_GOAL = 1.5
RECOVERY_HOURS_GOAL = 12.0


class StudyMismatchError(ValueError):
    """A run file in the study folder was made with another config than the one asked for now."""


def run_path(out_dir: str | Path, policy: str, seed: int, stream: int = 0, variant: str | None = None) -> Path:
    """Where a run's JSON goes: ``runs/<policy>-seed<seed>[-stream<stream>].json``, under ``runs/<variant>/``
    (always with the stream) for a variant."""
    out = Path(out_dir) / "runs"
    if variant is not None:
        return out / variant / f"{policy}-seed{seed}-stream{stream}.json"
    return out / (f"{policy}-seed{seed}" + (f"-stream{stream}" if stream else "") + ".json")


def config_path(out_dir: str | Path, config: LoopConfig) -> Path:
    return run_path(out_dir, config.policy, config.seed, config.stream, config.variant)


#: How often a pool worker checks that the study that started it is still alive.
PARENT_POLL_S = 1.0


def _exit_with_parent(parent: int) -> None:
    """Exit this worker once ``parent`` is gone. A study killed hard (SIGKILL, or SIGTERM past the executor's
    clean-up) would otherwise leave its workers running their loops and writing run files into the study folder,
    where the next study in that folder loads them as finished runs."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def _worker_init(threads: int, parent: int | None = None) -> None:
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent,), name="exit-with-parent", daemon=True).start()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def _run_one(config: LoopConfig, path: str, ticks: Any) -> str:
    """Run one loop in a pool worker, write its JSON (with its summary) to ``path``; ``ticks`` hears of hours."""
    from simulations.loop import run_closed_loop
    from simulations.report import summarize

    def tick(record: Any) -> None:
        if ticks is not None:
            ticks.put((config.policy, config.seed, record.step))

    result = run_closed_loop(config, progress=tick)
    doc = result.to_dict()
    doc["summary"] = summarize(doc)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(_jsonable(doc)))
    tmp.replace(target)
    return path


def _jsonable(value: Any) -> Any:
    from simulations.report import _plain

    return _plain(value)


def _load_cached(path: Path, config: LoopConfig) -> dict[str, Any] | None:
    """The run at ``path`` if it exists; a :class:`StudyMismatchError` if it was run with another config.

    A field missing from the stored config (the run predates it) matches when the wanted value is the field's
    default, which by the loop's convention keeps the earlier behaviour.
    """
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    want = json.loads(json.dumps(_jsonable(config.to_dict())))
    defaults = json.loads(json.dumps(_jsonable(LoopConfig(policy=config.policy).to_dict())))
    have = doc.get("config", {})
    differ = sorted(k for k in set(want) | set(have)
                    if want.get(k) != have.get(k) and not (k not in have and want.get(k) == defaults.get(k)))
    if differ:
        raise StudyMismatchError(
            f"{path} was run with another config ({', '.join(f'{k}: {have.get(k)!r} there, {want.get(k)!r} now' for k in differ)}); "
            "use another --out, or remove the file to run it again")
    return doc


def run_configs(
    configs: Sequence[LoopConfig],
    out_dir: str | Path,
    *,
    workers: int = 1,
    threads_per_worker: int | None = None,
    progress: bool = True,
    on_run: Callable[[Mapping[str, Any]], None] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run every config not yet in ``out_dir`` (in a spawn process pool), return all runs' docs and failures.

    Docs come back in the order of ``configs`` (failed runs left out); each has its ``summary``. Failures are
    also written to ``out_dir/failures.txt``.
    """
    out = Path(out_dir)
    paths = [config_path(out, c) for c in configs]
    if len(set(paths)) != len(paths):
        raise ValueError("two runs of the study would write the same file: policies, seeds and streams must not repeat")
    todo = [(c, p) for c, p in zip(configs, paths, strict=True) if _load_cached(p, c) is None]
    todo.sort(key=lambda cp: -COST.get(cp[0].policy, 1.0) * VARIANT_COST.get(cp[0].variant or "", 1.0))
    failures: list[str] = []
    bar = None
    if progress:
        from tqdm import tqdm

        total = sum(c.hours for c in configs)
        bar = tqdm(total=total, initial=total - sum(c.hours for c, _ in todo), unit="h",
                   desc=f"{len(configs)} runs", file=sys.stderr, dynamic_ncols=True)
    if todo:
        threads = threads_per_worker or max(1, (os.cpu_count() or 1) // max(1, workers))
        ctx = mp.get_context("spawn")  # torch and fork do not mix
        with ctx.Manager() as manager:
            ticks = manager.Queue() if bar is not None else None
            with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=ctx, initializer=_worker_init,
                                     initargs=(threads, os.getpid())) as pool:
                pending: dict[Future[str], LoopConfig] = {pool.submit(_run_one, c, str(p), ticks): c for c, p in todo}
                while pending:
                    done, _ = wait(list(pending), timeout=0.5, return_when=FIRST_COMPLETED)
                    _drain(ticks, bar)
                    for future in done:
                        config = pending.pop(future)
                        try:
                            path = future.result()
                        except Exception as exc:  # one failing run must not lose the others
                            label = _label(config)
                            failures.append(f"{label}: {type(exc).__name__}: {exc}")
                            if bar is not None:
                                bar.write(f"run {label} failed: {exc}")
                            continue
                        if on_run is not None:
                            on_run(json.loads(Path(path).read_text()))
                _drain(ticks, bar)
    if bar is not None:
        bar.close()
    if failures:
        (out / "failures.txt").write_text("\n".join(failures) + "\n")
    elif (out / "failures.txt").exists():  # an earlier piece's failures, run again now
        (out / "failures.txt").unlink()
    docs = []
    for p in paths:
        if p.exists():
            doc = json.loads(p.read_text())
            if "summary" not in doc:
                from simulations.report import summarize

                doc["summary"] = summarize(doc)
            docs.append(doc)
    return docs, failures


def _label(config: LoopConfig) -> str:
    variant = f"{config.variant} " if config.variant else ""
    return f"{variant}{config.policy} seed {config.seed} stream {config.stream}"


def _check_policies(policies: Sequence[str]) -> None:
    unknown = [p for p in policies if p not in POLICY_NAMES]
    if unknown:
        raise ValueError(f"unknown policies {unknown} (known: {', '.join(POLICY_NAMES)})")


def run_study(
    base: LoopConfig,
    policies: Sequence[str],
    seeds: Sequence[int],
    out_dir: str | Path,
    *,
    streams: Sequence[int] = (0,),
    workers: int = 1,
    threads_per_worker: int | None = None,
    command: str = "",
    progress: bool = True,
    on_run: Callable[[Mapping[str, Any]], None] | None = None,
) -> dict[str, Path]:
    """Run ``policies x seeds x streams`` closed loops like ``base`` and write the study report into ``out_dir``."""
    from simulations.report import write_study_report

    _check_policies(policies)
    out = Path(out_dir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    configs = [replace(base, policy=p, seed=int(s), stream=int(r)) for p in policies for s in seeds for r in streams]
    (out / "study_config.json").write_text(json.dumps({
        "command": command, "base": _jsonable(base.to_dict()), "policies": list(policies), "seeds": list(seeds),
        "streams": list(streams), "workers": workers, "threads_per_worker": threads_per_worker,
    }, indent=2))
    started = time.perf_counter()
    docs, _ = run_configs(configs, out, workers=workers, threads_per_worker=threads_per_worker, progress=progress,
                          on_run=on_run)
    if not docs:
        raise RuntimeError(f"no run of the study finished; see {out / 'failures.txt'}")
    paths = write_study_report(docs, out, command=command)
    paths["wall_s"] = time.perf_counter() - started  # type: ignore[assignment]
    return paths


# -- issue 12's study ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StudyDesign:
    """Which runs a variant study makes.

    Attributes:
        variants: names of :data:`simulations.world.WORLD_VARIANTS`.
        policies: names of :data:`simulations.loop.POLICY_NAMES`; the reference is added when missing.
        seeds: world seeds.
        streams: sampler streams of the reference policy (every world seed runs each).
        baseline_streams: sampler streams of every other policy (default: ``streams``); fewer make a baseline
            cheaper and its comparison paired on world seeds.
        policy_streams: streams of named policies, overriding both (``{"ax": (0,)}``: Ax far behind and slow).
        hours: simulated hours per run.
        members_per_hour: None: each variant's own traffic; a number overrides every variant's (smoke runs).
        policy_overrides, baseline_options: as in :class:`~simulations.loop.LoopConfig`.
        reference: the policy every other is compared with.
    """

    variants: tuple[str, ...] = ("base",)
    policies: tuple[str, ...] = POLICY_NAMES
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    streams: tuple[int, ...] = (0, 1)
    baseline_streams: tuple[int, ...] | None = None
    policy_streams: Mapping[str, tuple[int, ...]] | None = None
    hours: int = 48
    members_per_hour: float | None = None
    policy_overrides: Mapping[str, Any] | None = None
    baseline_options: Mapping[str, Mapping[str, Any]] | None = None
    reference: str = REFERENCE

    def __post_init__(self) -> None:
        from simulations.world import world_variant

        for v in self.variants:
            world_variant(v)
        _check_policies([*self.policies, self.reference])
        if not self.seeds or not self.streams:
            raise ValueError("a study needs at least one world seed and one stream")
        if any(not v for v in (self.policy_streams or {}).values()):
            raise ValueError("policy_streams: every policy named needs at least one stream")
        _check_policies(list(self.policy_streams or {}))
        if self.reference not in self.policies:
            object.__setattr__(self, "policies", (self.reference, *self.policies))

    def streams_of(self, policy: str) -> tuple[int, ...]:
        if policy in (self.policy_streams or {}):
            return tuple(self.policy_streams[policy])  # type: ignore[index]
        if policy == self.reference or self.baseline_streams is None:
            return tuple(self.streams)
        return tuple(self.baseline_streams)

    def configs(self) -> list[LoopConfig]:
        """Every run, variant by variant."""
        extra: dict[str, Any] = {"hours": self.hours, "policy_overrides": dict(self.policy_overrides or {}),
                                 "baseline_options": {k: dict(v) for k, v in (self.baseline_options or {}).items()}}
        if self.members_per_hour is not None:
            extra["members_per_hour"] = float(self.members_per_hour)
        return [LoopConfig.for_variant(v, policy=p, seed=int(s), stream=int(r), **extra)
                for v in self.variants for p in self.policies for s in self.seeds for r in self.streams_of(p)]

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


def run_variant_study(
    design: StudyDesign,
    out_dir: str | Path,
    *,
    workers: int = 1,
    threads_per_worker: int | None = 1,
    command: str = "",
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) ``design`` into ``out_dir``; write ``study.json``, ``study.md`` and a plot per variant.

    Returns ``{"study": path, "table_md": path, "analysis": the study.json document, "wall_s": seconds,
    "failures": [...]}``.
    """
    from simulations.report import plot_study

    out = Path(out_dir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    docs, failures = run_configs(design.configs(), out, workers=workers, threads_per_worker=threads_per_worker,
                                 progress=progress)
    if not docs:
        raise RuntimeError(f"no run of the study finished; see {out / 'failures.txt'}")
    analysis: dict[str, Any] = {"command": command, "design": design.to_dict(), "variants": {}, "goals": [],
                                "failures": failures}
    plots = {}
    for variant in design.variants:
        vdocs = [d for d in docs if d["config"].get("variant") == variant]
        if not vdocs:
            continue
        result = analyse_variant([d["summary"] for d in vdocs], reference=design.reference)
        result["wall_s_per_run"] = {p: float(np.mean([d["wall_s"] for d in vdocs if d["config"]["policy"] == p]))
                                    for p in result["policies"]}
        analysis["variants"][variant] = result
        analysis["goals"].extend(result["goals"])
        plots[variant] = plot_study(vdocs, out / f"study-{variant}.png", title=f"variant {variant}")
    analysis["wall_s"] = time.perf_counter() - started
    paths = {"study": out / "study.json", "table_md": out / "study.md"}
    paths["study"].write_text(json.dumps(_jsonable(analysis), indent=2) + "\n")
    paths["table_md"].write_text(study_markdown(analysis))
    return {**paths, "plots": plots, "analysis": analysis, "wall_s": analysis["wall_s"], "failures": failures}


# -- statistics --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A mean difference over ``n`` pairs with its two-sided t interval (``sd`` of the differences)."""

    n: int
    mean: float
    sd: float
    lower: float
    upper: float

    @property
    def excludes_zero(self) -> bool:
        return self.lower > 0 or self.upper < 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "excludes_zero": self.excludes_zero}


def paired_difference(a: Sequence[float], b: Sequence[float], *, confidence: float = CONFIDENCE) -> Interval:
    """Mean of ``a - b`` over pairs with its t interval (``scipy.stats.t``, ``n - 1`` degrees of freedom).

    Identical inputs give a zero-width interval at 0; one pair gives an unbounded interval.
    """
    from scipy import stats

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.ndim != 1 or len(d) == 0:
        raise ValueError(f"paired_difference needs two equally long non-empty sequences, got {len(a)} and {len(b)}")
    n, mean = len(d), float(d.mean())
    if n == 1:
        return Interval(1, mean, float("nan"), -math.inf, math.inf)
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(n, mean, sd, mean - half, mean + half)


def _by_key(runs: Iterable[Mapping[str, Any]], value: str) -> dict[tuple[int, int], float]:
    return {(int(r["seed"]), int(r.get("stream", 0))): float(r[value]) for r in runs}


def _seed_means(values: Mapping[tuple[int, int], float]) -> dict[int, float]:
    seeds: dict[int, list[float]] = {}
    for (seed, _), v in values.items():
        seeds.setdefault(seed, []).append(v)
    return {s: float(np.mean(v)) for s, v in seeds.items()}


def compare(runs: Sequence[Mapping[str, Any]], reference: Sequence[Mapping[str, Any]], *,
            value: str = "cumulative_regret_pct_h") -> dict[str, Any]:
    """``value`` of ``runs`` minus the reference's, paired (see the module docstring).

    Returns ``{"unit": "run" | "world seed", "pairs": n, ...Interval, "by_seed": Interval over world seeds}``.
    """
    a, b = _by_key(runs, value), _by_key(reference, value)
    seeds = sorted({s for s, _ in a} & {s for s, _ in b})
    if not seeds:
        raise ValueError("no world seed in common with the reference")
    streams_a = {s: sorted(r for t, r in a if t == s) for s in seeds}
    streams_b = {s: sorted(r for t, r in b if t == s) for s in seeds}
    ma, mb = _seed_means(a), _seed_means(b)
    by_seed = paired_difference([ma[s] for s in seeds], [mb[s] for s in seeds])
    if all(streams_a[s] == streams_b[s] for s in seeds):
        keys = [(s, r) for s in seeds for r in streams_a[s]]
        main, unit = paired_difference([a[k] for k in keys], [b[k] for k in keys]), "run"
    else:
        main, unit = by_seed, "world seed"
    return {"unit": unit, **main.to_dict(), "by_seed": by_seed.to_dict()}


def stream_spread(runs: Sequence[Mapping[str, Any]], value: str = "cumulative_regret_pct_h") -> float | None:
    """The sd of ``value`` across streams within a world seed, averaged over the seeds with two or more."""
    by_seed: dict[int, list[float]] = {}
    for r in runs:
        by_seed.setdefault(int(r["seed"]), []).append(float(r[value]))
    sds = [float(np.std(v, ddof=1)) for v in by_seed.values() if len(v) > 1]
    return float(np.mean(sds)) if sds else None


def reliability_table(pairs: Iterable[Sequence[float]], edges: Sequence[float] = RELIABILITY_EDGES) -> list[dict[str, Any]]:
    """Per bin of predicted ``p_feasible``: arm-hours, mean prediction, share truly feasible, traffic share.

    ``pairs`` are ``(p_feasible, truly feasible)`` with optional weight (and more, ignored) per arm-hour; bins are
    ``[edges[i], edges[i+1])``, the last one closed. A calibrated model's observed share lies near its mean
    prediction in every bin.
    """
    P = np.array([[float(p[0]), float(p[1]), float(p[2]) if len(p) > 2 else 1.0] for p in pairs]).reshape(-1, 3)
    rows = []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        last = i == len(edges) - 2
        inside = (P[:, 0] >= lo) & ((P[:, 0] <= hi) if last else (P[:, 0] < hi))
        n = int(inside.sum())
        w = P[inside, 2]
        rows.append({
            "bin": f"[{lo:g}, {hi:g}{']' if last else ')'}", "lower": float(lo), "upper": float(hi), "count": n,
            "mean_predicted": float(P[inside, 0].mean()) if n else None,
            "observed_feasible": float(P[inside, 1].mean()) if n else None,
            "weight_observed_feasible": float((P[inside, 1] * w).sum() / w.sum()) if n and w.sum() > 0 else None,
        })
    return rows


# -- one variant ---------------------------------------------------------------------------------------------------
def _finite(values: Iterable[Any]) -> np.ndarray:
    x = np.array([float(v) if v is not None else np.nan for v in values], dtype=float)
    return x[np.isfinite(x)]


def _mean(values: Iterable[Any]) -> float | None:
    x = _finite(values)
    return float(x.mean()) if len(x) else None


def _max(values: Iterable[Any]) -> float | None:
    """The largest value, ``inf`` included; None when there are only missing values."""
    x = np.array([float(v) for v in values if v is not None], dtype=float)
    x = x[~np.isnan(x)]
    return float(x.max()) if len(x) else None


def _policy_order(policies: Iterable[str], reference: str) -> list[str]:
    from simulations.report import POLICY_ORDER

    present = set(policies)
    head = [reference] if reference in present else []
    return head + [p for p in POLICY_ORDER if p in present and p != reference] + sorted(present - set(POLICY_ORDER) - {reference})


def analyse_variant(summaries: Sequence[Mapping[str, Any]], *, reference: str = REFERENCE) -> dict[str, Any]:
    """Per policy: runs, means, spread across streams, the paired comparison with ``reference``, reliability;
    and the goals of issue 12 for ``reference`` (see :func:`evaluate_goals`)."""
    variant = summaries[0].get("variant")
    by_policy: dict[str, list[Mapping[str, Any]]] = {}
    for s in summaries:
        by_policy.setdefault(s["policy"], []).append(s)
    rows = []
    for policy in _policy_order(by_policy, reference):
        runs = by_policy[policy]
        regret = _finite(r["cumulative_regret_pct_h"] for r in runs)
        recovery = [r.get("hours_to_recover_1pct") for r in runs]
        row: dict[str, Any] = {
            "policy": policy,
            "runs": len(runs),
            "seeds": sorted({int(r["seed"]) for r in runs}),
            "streams": sorted({int(r.get("stream", 0)) for r in runs}),
            "regret_mean": float(regret.mean()),
            "regret_sd": float(regret.std(ddof=1)) if len(regret) > 1 else None,
            "stream_sd": stream_spread(runs),
            "floor_mean": _mean(r["regret_floor_pct_h"] for r in runs),
            "regret_over_floor_mean": _mean(r["regret_over_floor"] for r in runs),
            "final_lift_mean": _mean(r["final_lift_pct"] for r in runs),
            "final_best_lift_mean": _mean(r["final_best_lift_pct"] for r in runs),
            "unsafe_mean": _mean(r["unsafe_pct"] for r in runs),
            "unsafe_after_launch_mean": _mean(r["unsafe_after_launch_pct"] for r in runs),
            "worst_hour_mean": _mean(r["worst_hour_unsafe_pct"] for r in runs),
            "worst_hour_max": _max(r["worst_hour_unsafe_pct"] for r in runs),
            "hours_to_1pct_mean": _mean(r["hours_to_1pct"] for r in runs),
            "reached_1pct": int(len(_finite(r["hours_to_1pct"] for r in runs))),
            "recovery": None if all(v is None for v in recovery) else {
                "mean": _mean(recovery), "max": _max(recovery),
                "reached": int(len(_finite(recovery))), "runs": int(sum(v is not None for v in recovery)),
            },
            "budget_use_mean": _mean(r.get("risk_expected_unsafe_mean") for r in runs),
            "budget_use_max": _max(r.get("risk_expected_unsafe_max") for r in runs),
            "max_unsafe_share_pct": float(runs[0]["max_unsafe_share_bound_pct"]),
        }
        if policy != reference and reference in by_policy:
            row["vs_reference"] = compare(runs, by_policy[reference])
        pairs = [p for r in runs for p in (r.get("calibration") or [])]
        # a policy's own claims: the launch design's prior (hour 0) alone makes no table
        row["reliability"] = reliability_table(pairs) if any(len(p) < 4 or p[3] >= 1 for p in pairs) else None
        rows.append(row)
    goals = evaluate_goals(variant, rows, reference=reference)
    return {"variant": variant, "reference": reference, "policies": [r["policy"] for r in rows], "rows": rows,
            "goals": goals}


def evaluate_goals(variant: str | None, rows: Sequence[Mapping[str, Any]], *, reference: str = REFERENCE) -> list[dict[str, Any]]:
    """Issue 12's goals for ``reference`` on one variant, as rows ``{variant, goal, value, target, passed}``.

    ``passed`` is None where a goal cannot be judged (no other policy, no shift inside the run).
    """
    ref = next((r for r in rows if r["policy"] == reference), None)
    if ref is None:
        return []
    out = []

    def goal(name: str, value: str, target: str, passed: bool | None) -> None:
        out.append({"variant": variant, "goal": name, "value": value, "target": target, "passed": passed})

    others = [r for r in rows if r["policy"] != reference and "vs_reference" in r]
    if others:
        worst = min(others, key=lambda r: r["vs_reference"]["mean"])  # the closest competitor on mean regret
        c = worst["vs_reference"]
        goal(f"{reference} has the lowest mean cumulative regret",
             f"closest: {worst['policy']} {c['mean']:+.1f} %·h [{_bound(c['lower'])}, {_bound(c['upper'])}] (per {c['unit']})",
             "every other policy's paired 95% interval above 0", all(r["vs_reference"]["lower"] > 0 for r in others))
    else:
        goal(f"{reference} has the lowest mean cumulative regret", "no other policy ran", "", None)
    bound = ref["max_unsafe_share_pct"]
    unsafe = ref["unsafe_mean"]
    goal("mean guardrail-breaking traffic (true metrics, all hours)", f"{unsafe:.2f}%", f"<= {bound:g}%",
         bool(unsafe <= bound + 1e-9))
    worst_hour = ref["worst_hour_max"]
    goal("worst single hour after launch (over all runs)", _fmt(worst_hour, suffix="%"), f"<= {2 * bound:g}%",
         None if worst_hour is None else bool(worst_hour <= 2 * bound + 1e-9))
    if variant == "base":
        ratio = ref["regret_mean"] / ref["floor_mean"] if ref["floor_mean"] else math.nan
        goal("cumulative regret within 1.5x the control-share floor",
             f"{ref['regret_mean']:.1f} / {ref['floor_mean']:.1f} = {ratio:.2f}x", f"<= {FLOOR_RATIO_GOAL:g}x",
             bool(ratio <= FLOOR_RATIO_GOAL) if math.isfinite(ratio) else None)
    if variant == "shift":
        rec = ref["recovery"]
        if rec is None:
            goal("back within 1% of the new best after the shift", "the runs end before the shift", "<= 12 h", None)
        else:
            worst_rec = "never" if not math.isfinite(rec["max"]) else f"{rec['max']:.0f} h"
            goal("back within 1% of the new best after the shift (every run)",
                 f"slowest {worst_rec}, {rec['reached']}/{rec['runs']} runs got back",
                 f"<= {RECOVERY_HOURS_GOAL:g} h", bool(rec["max"] <= RECOVERY_HOURS_GOAL))
    return out


# -- markdown ------------------------------------------------------------------------------------------------------
def _fmt(value: Any, decimals: int = 1, *, suffix: str = "") -> str:
    if value is None:
        return "–"
    value = float(value)
    if math.isnan(value):
        return "–"
    if math.isinf(value):
        return "never" if value > 0 else "-inf"
    return f"{value:.{decimals}f}{suffix}"


def _bound(value: Any) -> str:
    """One end of an interval: a number, or +-inf when a single pair leaves it open."""
    if value is None or math.isnan(float(value)):
        return "–"
    return f"{float(value):+.1f}" if math.isfinite(float(value)) else ("+inf" if float(value) > 0 else "-inf")


def _ranges(values: Sequence[int]) -> str:
    values = sorted(values)
    if values and values == list(range(values[0], values[-1] + 1)) and len(values) > 2:
        return f"{values[0]}-{values[-1]}"
    return ",".join(map(str, values))


def variant_markdown(result: Mapping[str, Any], *, describe: str = "") -> str:
    """The tables of one variant: policies (paired with the reference), reliability, goals."""
    from simulations.report import POLICY_LABELS

    ref = result["reference"]
    rows = result["rows"]
    shift = any(r["recovery"] is not None for r in rows)
    lines = [f"### variant `{result['variant']}`" + (f": {describe}" if describe else ""), ""]
    headers = ["policy", "runs (seeds × streams)", "cumulative regret (%·h)", f"Δ vs {ref} (%·h) [95% CI]",
               "Δ by world seed [95% CI]", "spread across streams (sd, %·h)", "regret / floor", "final lift (%)",
               "guardrail-breaking traffic (%)", "worst hour after launch (%)", "hours to within 1%"]
    if shift:
        headers.append("hours to recover after shift")
    headers.append("reported budget use (%)")
    lines += ["| " + " | ".join(headers) + " |", "| " + " | ".join(["---"] + ["---:"] * (len(headers) - 1)) + " |"]
    notes = []
    for r in rows:
        c = r.get("vs_reference")
        if c is None:
            delta = by_seed = "(reference)"
        else:
            delta = f"{c['mean']:+.1f} [{_bound(c['lower'])}, {_bound(c['upper'])}]" + (" *" if c["unit"] == "world seed" else "")
            b = c["by_seed"]
            by_seed = f"{b['mean']:+.1f} [{_bound(b['lower'])}, {_bound(b['upper'])}]"
            if c["unit"] == "world seed":
                notes.append(r["policy"])
        spread = r["stream_sd"]
        spread_text = "–" if spread is None else f"{spread:.1f} ({100 * spread / r['regret_mean']:.0f}% of mean)" if r["regret_mean"] else f"{spread:.1f}"
        reached = f" ({r['reached_1pct']}/{r['runs']})" if r["reached_1pct"] < r["runs"] else ""
        cells = [
            POLICY_LABELS.get(r["policy"], r["policy"]),
            f"{r['runs']} ({len(r['seeds'])} × {len(r['streams'])})",
            f"{r['regret_mean']:.1f}" + (f" ± {r['regret_sd']:.1f}" if r["regret_sd"] is not None else ""),
            delta, by_seed, spread_text,
            _fmt(r["regret_over_floor_mean"], 2),
            f"{_fmt(r['final_lift_mean'], 2)} of {_fmt(r['final_best_lift_mean'], 2)}",
            _fmt(r["unsafe_mean"]),
            f"{_fmt(r['worst_hour_mean'])} (max {_fmt(r['worst_hour_max'])})",
            ("never" if r["reached_1pct"] == 0 else _fmt(r["hours_to_1pct_mean"])) + reached,
        ]
        if shift:
            rec = r["recovery"]
            cells.append("–" if rec is None else ("never" if rec["reached"] == 0 else
                         f"{_fmt(rec['mean'])} (max {_fmt(rec['max'], 0)}, {rec['reached']}/{rec['runs']})"))
        cells.append("–" if r["budget_use_mean"] is None else
                     f"{100 * r['budget_use_mean']:.1f} (max {100 * r['budget_use_max']:.1f})")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Δ: policy minus {ref}, paired on the same (world seed, stream) runs; positive means {ref} lost less. "
                 "The by-world-seed interval averages each side's streams per world seed first.")
    if notes:
        lines.append(f"\\* {', '.join(notes)} ran fewer streams than {ref}: paired on world seeds (stream means).")
    lines.append("Regret / floor: cumulative regret over what the control share alone costs (control at its share, "
                 "the best feasible arm elsewhere). Guardrail-breaking traffic: members-weighted over every hour, "
                 "by the true metrics. Final lift: the last hour's served mix against control, of the best feasible "
                 "arm's. Reported budget use: the policy's own `diagnostics.risk.expected_unsafe_share`, mean over the "
                 "hours after launch (– : the policy reports none).")
    rel = [r for r in rows if r["reliability"]]
    for r in rel:
        lines += ["", f"Reliability of `p_feasible` ({r['policy']}; non-control arm-hours of every served version, "
                  "the launch design's included):", "",
                  "| p_feasible | arm-hours | mean predicted | truly feasible | truly feasible (traffic-weighted) |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for b in r["reliability"]:
            lines.append(f"| {b['bin']} | {b['count']} | {_fmt(b['mean_predicted'], 3)} | {_fmt(b['observed_feasible'], 3)} "
                         f"| {_fmt(b['weight_observed_feasible'], 3)} |")
    if result["goals"]:
        lines += ["", f"Goals ({ref}):", "", "| goal | value | target | result |", "| --- | --- | --- | --- |"]
        for g in result["goals"]:
            verdict = "n/a" if g["passed"] is None else ("PASS" if g["passed"] else "FAIL")
            lines.append(f"| {g['goal']} | {g['value']} | {g['target']} | {verdict} |")
    return "\n".join(lines) + "\n"


def study_markdown(analysis: Mapping[str, Any]) -> str:
    """``study.md``: the design, then every variant's tables, then all goals in one table."""
    from simulations.world import WORLD_VARIANTS

    design = analysis["design"]
    ref = design["reference"]
    streams, base_streams = design["streams"], design["baseline_streams"]
    lines = ["# Closed-loop study", ""]
    if analysis.get("command"):
        lines += [f"Command: `{analysis['command']}`", ""]
    members = "each variant's own traffic" if design["members_per_hour"] is None else f"~{design['members_per_hour']:g} members an hour"
    own = design.get("policy_streams") or {}
    lines.append(f"{design['hours']} simulated hours per run, {members}; world seeds {_ranges(design['seeds'])}; "
                 f"sampler streams {_ranges(streams)} for {ref}"
                 + (f", {_ranges(base_streams)} for every other policy" if base_streams is not None else "")
                 + "".join(f", {_ranges(v)} for {p}" for p, v in own.items())
                 + ". A world seed fixes the world, its traffic and outcome draws; a stream fixes the policy's own "
                 "draws (`spec.policy.seed = seed * 1000 + stream`).")
    if analysis.get("failures"):
        lines += ["", f"**{len(analysis['failures'])} runs failed** (see failures.txt): they are left out."]
    for name, result in analysis["variants"].items():
        v = WORLD_VARIANTS.get(name)
        lines += ["", variant_markdown(result, describe=v.description if v else "")]
    if analysis["goals"]:
        lines += ["## Goals", "", "| variant | goal | value | target | result |", "| --- | --- | --- | --- | --- |"]
        for g in analysis["goals"]:
            verdict = "n/a" if g["passed"] is None else ("PASS" if g["passed"] else "FAIL")
            lines.append(f"| {g['variant']} | {g['goal']} | {g['value']} | {g['target']} | {verdict} |")
    return "\n".join(lines) + "\n"


def _drain(ticks: Any, bar: Any) -> None:
    if ticks is None or bar is None:
        return
    n = 0
    while True:
        try:
            ticks.get_nowait()
        except queue.Empty:
            break
        except (EOFError, OSError):  # the manager went away at shutdown
            break
        n += 1
    if n:
        bar.update(n)
