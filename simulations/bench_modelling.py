"""Modelling benchmark: GP fits and Thompson sampling at production size, against BoTorch's exact sampler.

``python -m simulations.bench_modelling [--quick] [--out PATH]`` writes JSON (default
``bench-results/modelling.json``). At full size: 3 metrics (an objective, a relative floor, an absolute ceiling),
6 parameters, 1,000 observed arms, 4,096 candidates, 10,000 draws. It reports

1. ``fit``: three GP fits cold, and warm-started from the previous hour's ``model_state`` on the next hour's data;
2. ``sampling``: our pathwise constrained TS (:func:`bayesopt.thompson.thompson_sample`) against
   ``botorch.generation.sampling.ConstrainedMaxPosteriorSampling`` on the *same* fitted models and candidates,
   both producing the distribution of winners over ``draws`` draws. BoTorch's sampler draws
   ``posterior.rsample(sample_shape=[num_samples])`` and takes each sample's argmax (``replacement=True``), so
   one call with ``num_samples=c`` gives ``c`` independent draws; it is called in chunks of ``EXACT_CHUNK``. To
   compare like with like, its models are wrapped so that they return exactly what ours score: the joint
   posterior of ``delta(x) - delta(control)``, the objective signed, each guardrail as ``(limit - diff) / scale``
   (feasible at ``<= 0``, violations in the same units as ours). Two independent exact runs give the Monte Carlo
   floor of the total-variation (TV) distance;
3. ``scaling``: our sampling time against candidates, draws and observations (with fit time for the latter).

Peak memory is the process's resident high-water mark (``ru_maxrss``) after each phase, and on CUDA the torch
allocator's peak; phases run in increasing order of memory so each mark belongs to its phase.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from botorch.generation.sampling import ConstrainedMaxPosteriorSampling
from botorch.models import ModelListGP
from botorch.models.model import Model
from botorch.posteriors.gpytorch import GPyTorchPosterior
from gpytorch.distributions import MultivariateNormal
from linear_operator.operators import DenseLinearOperator
from scipy.stats import qmc

from bayesopt.candidates import build_candidates
from bayesopt.device import DTYPE, as_tensor, default_device, seeded
from bayesopt.distribution import CONTROL_ARM_ID
from bayesopt.gp import exact_linalg, fit_models, model_state
from bayesopt.lattice import lattice_arm, to_unit
from bayesopt.observation_table import observation_table
from bayesopt.pooling import pool
from bayesopt.spec import ExperimentSpec
from bayesopt.thompson import make_problem, metric_scale, thompson_sample

DEFAULT_OUT = "bench-results/modelling.json"
#: Draws per call of the exact sampler: 2,500 keeps its ``c x N`` samples under 100 MB per metric at N = 4,096
#: and amortises its per-call ``N x N`` Cholesky over many draws.
EXACT_CHUNK = 2500

FULL = {
    "main": {"arms": 1000, "candidates": 4096, "draws": 10_000},
    "scaling": {"candidates": [1024, 2048, 4096, 8192], "draws": [1000, 3000, 10_000], "arms": [250, 500, 1000, 2000]},
}
QUICK = {
    "main": {"arms": 100, "candidates": 256, "draws": 1000},
    "scaling": {"candidates": [128, 256], "draws": [250, 1000], "arms": [50, 100]},
}
PARAMS = 6
WINDOWS = 4
#: Members per arm and window; with outcome sd 1 the arms' pooled effects have standard error ~0.07, so the
#: winners spread over tens of candidates (a harder, more honest comparison than a near-deterministic one).
COUNT = 100


def bench_spec(*, candidates: int, draws: int) -> ExperimentSpec:
    """3 mean metrics over 6 parameters: maximise ``obj``; ``g1`` may drop at most 2%; ``g2`` stays under 1.4."""
    return ExperimentSpec.from_dict({
        "name": "bench_modelling",
        "parameters": [{"name": f"x{j}", "lower": 0.0, "upper": 1.0} for j in range(PARAMS)],
        "control": {f"x{j}": 0.5 for j in range(PARAMS)},
        "metrics": [{"name": "obj"}, {"name": "g1"}, {"name": "g2"}],
        "objectives": [{"metric": "obj"}],
        "guardrails": [{"metric": "g1", "lower": -0.02, "relative": True}, {"metric": "g2", "upper": 1.4}],
        "policy": {"num_candidates": candidates, "num_draws": draws, "max_arms": 16},
    })


def truths(u: np.ndarray) -> dict[str, np.ndarray]:
    """True levels of the three metrics at ``n x 6`` unit points."""
    center = np.array([0.7, 0.3, 0.6, 0.5, 0.4, 0.5])
    weights = np.array([1.0, 0.8, 0.6, 0.5, 0.4, 0.3])
    return {
        "obj": 2.0 - 0.5 * ((u - center) ** 2 * weights).sum(1),
        "g1": 5.0 + 0.5 * (0.5 - u[:, 0]) + 0.2 * np.sin(3 * u[:, 1]),
        "g2": 1.0 + 0.4 * u[:, 2] * u[:, 3],
    }


def make_table(spec: ExperimentSpec, arms: int, *, windows: int = WINDOWS, seed: int = 0) -> pd.DataFrame:
    """Observations of ``arms`` Sobol lattice arms, each served in every window to ``COUNT`` members (sd 1)."""
    rng = np.random.default_rng(seed)
    units = qmc.Sobol(PARAMS, seed=seed).random(1 << (arms - 1).bit_length())[:arms]
    values = {CONTROL_ARM_ID: dict(spec.control)}
    for u in units:
        arm, v = lattice_arm(spec, u)
        values.setdefault(arm, v)
    ids = list(values)
    levels = truths(np.array([to_unit(spec, values[a]) for a in ids]))
    rows = []
    for w in range(1, windows + 1):
        offset = 0.3 * np.sin(2 * np.pi * w / 24)  # a common hour-of-day effect
        for metric, level in levels.items():
            means = level + offset + rng.standard_normal(len(ids)) / np.sqrt(COUNT)
            sq = (COUNT - 1) * 1.0 + means**2 * COUNT  # sample variance 1 per outcome
            rows += [(w, a, metric, "online", float(COUNT), m * COUNT, s) for a, m, s in zip(ids, means, sq, strict=True)]
    stats = pd.DataFrame(rows, columns=["version", "arm_id", "metric", "source", "count", "sum", "sum_sq"])
    return observation_table(spec, stats, values)


class DiffModel(Model):
    """``a * (f(X) - f(control)) + b`` of a fitted single-output GP, as an exact joint Gaussian posterior."""

    def __init__(self, model: Model, control: torch.Tensor, a: float, b: float) -> None:
        super().__init__()
        self.model, self.control, self.a, self.b = model, control, a, b
        self.likelihood = model.likelihood  # ModelListGP insists on one; never used (no observation noise)

    @property
    def num_outputs(self) -> int:
        return 1

    def posterior(self, X: torch.Tensor, output_indices=None, observation_noise=False, posterior_transform=None, **kwargs):
        post = self.model.posterior(torch.cat([self.control, X], dim=-2))
        mean = post.mean.squeeze(-1)  # (N + 1)
        cov = post.covariance_matrix  # (N + 1) x (N + 1)
        d_mean = mean[1:] - mean[0]
        d_cov = cov[1:, 1:] - cov[1:, :1] - cov[:1, 1:] + cov[0, 0]
        # a linear operator: root decomposition at sampling time (exact Cholesky, with jitter for the zero row
        # of control itself), not a validating Cholesky here
        return GPyTorchPosterior(MultivariateNormal(self.a * d_mean + self.b, DenseLinearOperator(self.a**2 * d_cov)))


def exact_sampling(spec, models, data, X: np.ndarray, draws: int, *, seed: int) -> tuple[np.ndarray, float]:
    """Winner counts (``N``) of ``draws`` exact constrained-TS draws by BoTorch's sampler, and seconds taken."""
    metrics = list(models)
    problem = make_problem(spec, metrics, data, [metric_scale(models[m]) for m in metrics])
    Xt = as_tensor(X)
    control = Xt[:1]
    obj = problem.objective_index[0].item()
    objective = DiffModel(models[metrics[obj]], control, float(problem.objective_sign[0]), 0.0)
    constraints = []
    for g in range(len(problem.guard_index)):
        m = problem.guard_index[g].item()
        sign, thr, scale = float(problem.guard_sign[g]), float(problem.guard_threshold[g]), float(problem.scale[m])
        constraints.append(DiffModel(models[metrics[m]], control, -sign / scale, sign * thr / scale))
    sampler = ConstrainedMaxPosteriorSampling(objective, ModelListGP(*constraints) if len(constraints) > 1 else constraints[0])
    wins = np.zeros(len(X), dtype=np.int64)
    start = time.perf_counter()
    with seeded(seed), torch.no_grad(), exact_linalg():
        for done in range(0, draws, EXACT_CHUNK):
            chosen = sampler(Xt, num_samples=min(EXACT_CHUNK, draws - done))  # c x d
            idx = torch.cdist(chosen, Xt).argmin(dim=-1)
            wins += np.bincount(idx.cpu().numpy(), minlength=len(X))
    return wins, time.perf_counter() - start


def tv(p: np.ndarray, q: np.ndarray) -> float:
    """Total-variation distance between two count vectors, normalised."""
    return 0.5 * float(np.abs(p / p.sum() - q / q.sum()).sum())


def peak_memory() -> dict[str, float]:
    """Process resident high-water mark (MiB) and, on CUDA, the allocator's peak."""
    out = {"max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if default_device().type == "cuda":
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def setup(arms: int, candidates: int, draws: int, *, seed: int = 0):
    spec = bench_spec(candidates=candidates, draws=draws)
    table = make_table(spec, arms, seed=seed)
    return spec, table


def fit_phase(spec, table, *, arms: int) -> tuple[dict, dict, Any]:
    """Cold fit, then a warm-started fit on the next hour's data (one more window)."""
    pooled = pool(spec, table)
    t = time.perf_counter()
    with seeded(0):
        models = fit_models(pooled.metrics)
    cold = time.perf_counter() - t
    state = model_state(models)
    nxt = pool(spec, make_table(spec, arms, windows=WINDOWS + 1, seed=0))
    t = time.perf_counter()
    with seeded(0):
        fit_models(nxt.metrics)
    cold_next = time.perf_counter() - t
    t = time.perf_counter()
    with seeded(0):
        fit_models(nxt.metrics, state)
    warm_next = time.perf_counter() - t
    timing = {"cold_s": cold, "next_hour_cold_s": cold_next, "next_hour_warm_s": warm_next,
              "observations": len(table), "arms": len(pooled.metrics["obj"].arm_ids) - 1}
    return models, timing, pooled


def candidates_for(spec, pooled, seed: int = 0) -> np.ndarray:
    data = pooled.metrics["obj"]
    known = [(a, x) for a, x in zip(data.arm_ids[1:], data.X[1:], strict=True)]
    return build_candidates(spec, spec.policy.num_candidates - 1, known=known, seed=seed).X


def ours(spec, models, pooled, X, draws: int, seed: int, *, screening: bool = True) -> tuple[np.ndarray, float, dict]:
    t = time.perf_counter()
    with seeded(seed):
        result = thompson_sample(models, pooled.metrics, spec, X, draws, screening=screening)
    return result.wins, time.perf_counter() - t, {"sampled": result.sampled, "sampler": result.sampler}


def main_phase(cfg: dict, log) -> dict:
    spec, table = setup(cfg["arms"], cfg["candidates"], cfg["draws"])
    models, fit, pooled = fit_phase(spec, table, arms=cfg["arms"])
    log(f"fit: cold {fit['cold_s']:.1f}s, next hour cold {fit['next_hour_cold_s']:.1f}s / warm {fit['next_hour_warm_s']:.1f}s")
    mem_fit = peak_memory()
    X = candidates_for(spec, pooled)
    ours_wins, t_ours, info = ours(spec, models, pooled, X, cfg["draws"], seed=1)
    mem_ours = peak_memory()
    log(f"ours: {t_ours:.1f}s for {cfg['draws']} draws over {len(X)} candidates ({info})")
    path_wins, t_path, path_info = ours(spec, models, pooled, X, cfg["draws"], seed=4, screening=False)
    mem_path = peak_memory()
    log(f"ours without screening: {t_path:.1f}s ({path_info})")
    exact1, t_exact1 = exact_sampling(spec, models, pooled.metrics, X, cfg["draws"], seed=2)
    log(f"exact #1: {t_exact1:.1f}s")
    exact2, t_exact2 = exact_sampling(spec, models, pooled.metrics, X, cfg["draws"], seed=3)
    log(f"exact #2: {t_exact2:.1f}s")
    mem_exact = peak_memory()
    tv_floor = tv(exact1, exact2)
    tv_ours = [tv(ours_wins, exact1), tv(ours_wins, exact2)]
    tv_path = [tv(path_wins, exact1), tv(path_wins, exact2)]
    t_exact = float(np.mean([t_exact1, t_exact2]))
    return {
        "config": {**cfg, "metrics": 3, "parameters": PARAMS, "candidates_used": len(X)},
        "fit": fit,
        "sampling": {
            "ours_s": t_ours, "ours": info, "exact_s": [t_exact1, t_exact2], "speedup": t_exact / t_ours,
            "tv_ours_vs_exact": tv_ours, "tv_exact_vs_exact": tv_floor,
            "tv_excess": float(np.mean(tv_ours) - tv_floor),
            "pathwise_only": {"s": t_path, **path_info, "speedup": t_exact / t_path, "tv_vs_exact": tv_path,
                              "tv_excess": float(np.mean(tv_path) - tv_floor)},
            "distinct_winners": {"ours": int((ours_wins > 0).sum()), "pathwise_only": int((path_wins > 0).sum()),
                                 "exact": int((exact1 > 0).sum())},
            "top_share": {"ours": float(ours_wins.max() / ours_wins.sum()), "exact": float(exact1.max() / exact1.sum())},
        },
        "memory_mib": {"after_fit": mem_fit, "after_ours": mem_ours, "after_pathwise_only": mem_path,
                       "after_exact": mem_exact},
    }


def scaling_phase(cfg: dict, main_cfg: dict, log) -> dict:
    spec, table = setup(main_cfg["arms"], max(cfg["candidates"]), main_cfg["draws"])
    with seeded(0):
        pooled = pool(spec, table)
        models = fit_models(pooled.metrics)
    out: dict[str, list] = {"candidates": [], "draws": [], "observations": []}
    for n_cand in cfg["candidates"]:
        sub = bench_spec(candidates=n_cand, draws=main_cfg["draws"])
        X = candidates_for(sub, pooled)
        _, t, info = ours(sub, models, pooled, X, main_cfg["draws"], seed=1)
        out["candidates"].append({"candidates": len(X), "draws": main_cfg["draws"], "ours_s": t, **info})
        log(f"scaling N={len(X)}: {t:.2f}s")
    X = candidates_for(bench_spec(candidates=main_cfg["candidates"], draws=1), pooled)
    for draws in cfg["draws"]:
        _, t, info = ours(spec, models, pooled, X, draws, seed=1)
        out["draws"].append({"candidates": len(X), "draws": draws, "ours_s": t, **info})
        log(f"scaling s={draws}: {t:.2f}s")
    for arms in cfg["arms"]:
        sub = bench_spec(candidates=main_cfg["candidates"], draws=main_cfg["draws"])
        sub_table = make_table(sub, arms)
        sub_pooled = pool(sub, sub_table)
        t0 = time.perf_counter()
        with seeded(0):
            sub_models = fit_models(sub_pooled.metrics)
        t_fit = time.perf_counter() - t0
        X = candidates_for(sub, sub_pooled)
        _, t, info = ours(sub, sub_models, sub_pooled, X, main_cfg["draws"], seed=1)
        out["observations"].append({"arms": arms, "rows": len(sub_table), "fit_s": t_fit, "ours_s": t, **info})
        log(f"scaling arms={arms}: fit {t_fit:.1f}s, sample {t:.2f}s")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_modelling", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"JSON output path (default {DEFAULT_OUT})")
    parser.add_argument("--quick", action="store_true", help="a small version that finishes in under a minute")
    parser.add_argument("--skip-scaling", action="store_true", help="only the main comparison")
    parser.add_argument("--skip-main", action="store_true", help="only the scaling table")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL

    def log(msg: str) -> None:
        print(f"[bench_modelling] {msg}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    results: dict[str, Any] = {
        "quick": args.quick,
        "environment": {
            "device": str(default_device()), "dtype": str(DTYPE), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "python": platform.python_version(),
        },
    }
    if not args.skip_main:
        results["main"] = main_phase(cfg["main"], log)
    if not args.skip_scaling:
        results["scaling"] = scaling_phase(cfg["scaling"], cfg["main"], log)
    results["total_s"] = time.perf_counter() - started
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    if args.skip_main:
        log(f"wrote {out}")
        return 0
    s = results["main"]["sampling"]
    log(f"speed-up {s['speedup']:.1f}x; TV ours-exact {np.mean(s['tv_ours_vs_exact']):.3f} vs exact-exact "
        f"{s['tv_exact_vs_exact']:.3f} (excess {s['tv_excess']:+.3f}); pathwise only {s['pathwise_only']['speedup']:.1f}x, "
        f"excess {s['pathwise_only']['tv_excess']:+.3f}; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
