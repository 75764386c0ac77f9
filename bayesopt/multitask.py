"""The multi-task GP: online arms (the target task) and simulator points (an auxiliary task) in one model.

Glossary: ``k`` online arms (control first), ``p`` simulator points after summarising, ``d`` parameters.

The model is BoTorch's ``MultiTaskGP`` over ``(x, c, task)`` (task 0 online, task 1 simulator; ``c`` an online
arm's share of the control noise): a Matérn-5/2 ARD kernel on ``x`` times an index kernel on the task (a
``2 x 2`` task covariance whose off-diagonal, over the diagonal's geometric mean, is the learned
online-simulator correlation), plus the online task's own discrepancy kernel, its slope on the simulator's
fitted shape integrated out, and the control noise the online effects share (:class:`TaskCovariance`); known
noise on every point (``train_Yvar``), and outputs standardised **per task** (``StratifiedStandardize``), so
that a simulator that is shifted or scaled against online costs nothing: only the shape of its response is
shared. The online task models the same thing the single-task GP does, the pooled effect relative to control;
the simulator task models the simulated level (its offset is absorbed by its own standardisation).

Fitting is kept fast by three things (docs/modelling.md has the measurements):

- :func:`summarise` bins simulator points to at most :data:`MAX_SIMULATOR_POINTS` cells around a space-filling
  subset (greedy farthest points), pooling each cell by inverse variance: exact Cholesky stays cheap and
  GPyTorch never switches to its iterative solvers;
- the task-covariance prior is flat (BoTorch's default Beta prior pulls the correlation up, which a useless
  simulator must not get for free);
- hyperparameters warm-start from the previous refit's state (:func:`hyperparameters`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from botorch.exceptions import OptimizationWarning
from botorch.models import MultiTaskGP
from botorch.models.transforms.outcome import StratifiedStandardize
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from gpytorch.kernels import Kernel, ScaleKernel
from gpytorch.priors import GammaPrior
from linear_operator.utils.cholesky import psd_safe_cholesky

from bayesopt.device import as_tensor, to_numpy
from bayesopt.errors import ModelFitError
from bayesopt.gp import OUTPUTSCALE_PRIOR, exact_linalg, load_hyperparameters, maximise_likelihood, min_known_noise
from bayesopt.lattice import to_unit
from bayesopt.noise import row_variances
from bayesopt.observation_table import param_column
from bayesopt.pooling import MetricData
from bayesopt.spec import ExperimentSpec

TARGET_TASK, SIMULATOR_TASK = 0, 1
#: Simulator points kept after summarising: a few hundred lose nothing against thousands (docs/modelling.md),
#: and keep the ``(k + p)`` Cholesky of every fit step well inside exact linear algebra.
MAX_SIMULATOR_POINTS = 300
#: Gamma prior on the online discrepancy's variance (standardised units): mean 0.25, a quarter of the online
#: signal, with mass from ~0.01 up to 1, so the data decide how much of online the simulator explains.
DISCREPANCY_SCALE_PRIOR = (1.5, 6.0)
#: Simulator points the hyperparameters are fitted on (the model is then conditioned on all the summary's).
FIT_SIMULATOR_POINTS = 120
#: L-BFGS steps per fit; a warm start converges in a fraction of them.
MAX_FIT_STEPS = 150
#: Prior variance of the online task's slope on the simulator's fitted shape around the fitted slope
#: (standardised units; 1 is as large as the slope itself), so the online arms decide how sure it is.
SLOPE_PRIOR_VARIANCE = 1.0


@dataclass(frozen=True)
class SimulatorData:
    """One metric's simulator points: ``p x d`` unit inputs, ``p`` simulated levels and their variances."""

    metric: str
    X: np.ndarray
    y: np.ndarray
    var: np.ndarray
    num_rows: int
    runs: tuple[str, ...]


def simulator_data(spec: ExperimentSpec, table: pd.DataFrame) -> dict[str, SimulatorData]:
    """The ``source == "simulation"`` rows of ``table`` for the metrics of ``spec.simulator_metrics``.

    Rows at the same setting (several runs, or repeated batches) are pooled by inverse variance; each row's
    variance is floored like an online row's (:func:`bayesopt.noise.row_variances`).
    """
    sim = table[(table["source"] == "simulation") & table["metric"].isin(spec.simulator_metrics)].reset_index(drop=True)
    if sim.empty:
        return {}
    sim = sim.assign(precision=1.0 / row_variances(spec, sim))
    cols = [param_column(n) for n in spec.parameter_names]
    out = {}
    for metric, rows in sim.groupby("metric", sort=True):
        pooled = rows.assign(wy=rows["precision"] * rows["mean"]).groupby(cols, sort=True)[["wy", "precision"]].sum()
        values = pooled.index.to_frame(index=False)
        X = np.stack([to_unit(spec, dict(zip(spec.parameter_names, v, strict=True))) for v in values.to_numpy(float)])
        w = pooled["precision"].to_numpy(float)
        out[str(metric)] = SimulatorData(str(metric), X, pooled["wy"].to_numpy(float) / w, 1.0 / w, len(rows),
                                         tuple(sorted(set(rows["arm_id"]))))
    return out


def summarise(data: SimulatorData, max_points: int = MAX_SIMULATOR_POINTS) -> SimulatorData:
    """At most ``max_points`` simulator points: cells around greedy farthest-point centres, each pooled.

    Every point joins its nearest centre; a cell's input is the precision-weighted mean of its points', its
    level the precision-weighted mean level and its variance ``1 / sum(precision)``. Deterministic.
    """
    n = len(data.y)
    if n <= max_points:
        return data
    centres = farthest_points(data.X, max_points)
    d2 = ((data.X[:, None, :] - data.X[None, centres, :]) ** 2).sum(-1)  # n x c
    cell = np.argmin(d2, axis=1)
    w = 1.0 / data.var
    total = np.bincount(cell, weights=w, minlength=len(centres))
    X = np.stack([np.bincount(cell, weights=w * data.X[:, j], minlength=len(centres)) for j in range(data.X.shape[1])], axis=1)
    y = np.bincount(cell, weights=w * data.y, minlength=len(centres))
    keep = total > 0
    return SimulatorData(data.metric, X[keep] / total[keep, None], y[keep] / total[keep], 1.0 / total[keep],
                         data.num_rows, data.runs)


def farthest_points(X: np.ndarray, m: int) -> np.ndarray:
    """Indices of ``m`` rows of ``X`` (``n x d``) chosen greedily, each the farthest from those chosen before."""
    chosen = [int(np.argmin(((X - X.mean(0)) ** 2).sum(-1)))]
    dist = ((X - X[chosen[0]]) ** 2).sum(-1)
    for _ in range(1, m):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, ((X - X[nxt]) ** 2).sum(-1))
    return np.array(chosen)


class TaskCovariance(Kernel):
    """The multi-task prior plus the control noise the online arms share, over ``(d + 2)``-column inputs
    ``(x, c, task)``:

        k((x, c, i), (x', c', j)) = k_x(x, x') B_ij + k_delta(x, x') [i = j = online] + c c' / s^2

    ``B`` is the index kernel's ``2 x 2`` task covariance; ``k_delta`` is the online task's own discrepancy
    from the simulator, with its own lengthscales and scale, so that a simulator whose shape is partly wrong
    (or rougher than online) neither drags the shared lengthscales down nor makes the online task look
    fully explained. ``c`` is the standard deviation of the control-arm noise in an online arm's effect (every
    effect is an arm's mean minus the same control mean, so their errors share ``-e_control``); it is 0 for
    control's own anchor, simulator points and every point predicted, so the last term is noise of the
    observations (correlated across arms), never part of the function; ``s`` is the online task's
    standardisation scale. Without it the model takes the control's error for signal: once the simulator
    narrows the posterior below the control's standard error, that error shifts every prediction at once.
    Evaluated as dense matrices: GPyTorch's lazy product with an index kernel goes through sparse
    interpolation, about ten times slower per step at a few hundred points.
    """

    def __init__(self, spatial: Kernel, task: Kernel, discrepancy: Kernel, online_scale: torch.Tensor) -> None:
        super().__init__()
        self.spatial, self.task, self.discrepancy = spatial, task, discrepancy
        self.register_buffer("online_scale", online_scale.detach().clone())
        self.slope: SlopeTerm | None = None

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params: Any) -> torch.Tensor:
        t1, t2 = x1[..., -1].long(), x2[..., -1].long()  # n1, n2
        c1, c2 = x1[..., -2] / self.online_scale, x2[..., -2] / self.online_scale  # n1, n2
        B = self.task.covar_matrix  # 2 x 2
        on1, on2 = (t1 == TARGET_TASK).to(x1.dtype), (t2 == TARGET_TASK).to(x2.dtype)
        r1, r2 = (on1, on2) if self.slope is None else (self.slope.shape(self.spatial, x1) * on1, self.slope.shape(self.spatial, x2) * on2)
        v = 0.0 if self.slope is None else SLOPE_PRIOR_VARIANCE
        if diag:
            kx = self.spatial(x1, x2, diag=True)
            return kx * B[t1, t2] + self.discrepancy(x1, x2, diag=True) * on1 * on2 + c1 * c2 + v * r1 * r2
        kx = self.spatial(x1, x2).to_dense()  # n1 x n2
        kd = self.discrepancy(x1, x2).to_dense()
        return (kx * B[t1.unsqueeze(-1), t2.unsqueeze(-2)] + kd * (on1.unsqueeze(-1) * on2.unsqueeze(-2))
                + c1.unsqueeze(-1) * c2.unsqueeze(-2) + v * r1.unsqueeze(-1) * r2.unsqueeze(-2))


@dataclass(frozen=True)
class SlopeTerm:
    """The simulator task's fitted shape relative to control, ``r(x) = m(x) - m(control)`` (standardised), with
    ``m(x) = k_x(x, X) w`` its posterior mean up to a constant: ``n x (d + 2)`` training inputs ``X``, ``n``
    weights ``w = B[sim, task] * alpha`` and control's ``1 x (d + 2)`` input.

    :class:`TaskCovariance` adds ``SLOPE_PRIOR_VARIANCE r(x) r(x')`` between online points: the online effect is
    ``a r(x) + delta(x)`` with the slope ``a`` integrated out around its fitted value (Kennedy & O'Hagan's
    ``online = a sim + b + delta``), instead of taken as exact. Plugged in, a slope fitted on 20 noisy arms
    (about 10% uncertain) makes every effect far from control overconfident in proportion to its size.
    """

    train_X: torch.Tensor
    weights: torch.Tensor
    control: torch.Tensor

    def shape(self, spatial: Kernel, x: torch.Tensor) -> torch.Tensor:
        """``r`` at ``... x n`` inputs: ``... x n``."""
        k = spatial(torch.cat([x, self.control.expand(*x.shape[:-2], 1, -1)], dim=-2), self.train_X).to_dense()
        m = k @ self.weights  # ... x (n + 1)
        return m[..., :-1] - m[..., -1:]


def model_inputs(X: torch.Tensor, task: int = TARGET_TASK) -> torch.Tensor:
    """``N x d`` points as the multi-task model's ``N x (d + 2)`` inputs for predicting ``task`` (no shared noise)."""
    zeros = torch.zeros((*X.shape[:-1], 1), dtype=X.dtype, device=X.device)
    return torch.cat([X, zeros, zeros + float(task)], dim=-1)


def shared_control_sd(online: MetricData) -> np.ndarray:
    """``k`` standard deviations of the control noise in each online effect (0 for control's anchor), from
    :meth:`MetricData.shared_control_variance`."""
    return np.sqrt(online.shared_control_variance())


class TargetTaskModel:
    """The online task of a fitted ``MultiTaskGP``: what the refit reads of a metric's model.

    ``posterior(X)`` takes ``N x d`` unit points (no task column) and returns the online task's joint posterior,
    like a ``SingleTaskGP``'s; :func:`bayesopt.gp_parts.gp_parts` gives the samplers its parts.
    """

    def __init__(self, model: MultiTaskGP, simulator: SimulatorData) -> None:
        self.model, self.simulator = model, simulator

    def posterior(self, X: torch.Tensor, task: int = TARGET_TASK) -> Any:
        return self.model.posterior(model_inputs(X, task))

    def spatial_kernel(self) -> Kernel:
        return self.model.covar_module.spatial.base_kernel

    def correlation(self) -> float:
        """The learned prior correlation of the online and simulator functions at any one setting (the
        discrepancy kernel included): ``k01 / sqrt(k00 k11)``."""
        cov = self.model.covar_module
        with torch.no_grad():
            B = cov.task.covar_matrix.detach()  # 2 x 2
            shared = cov.spatial.outputscale.detach()
            own = cov.discrepancy.outputscale.detach()
            return float(shared * B[0, 1] / torch.sqrt((shared * B[0, 0] + own) * shared * B[1, 1]))


def build_multitask(online: MetricData, simulator: SimulatorData) -> MultiTaskGP:
    """An unfitted ``MultiTaskGP`` on ``k`` online effects (task 0) and ``p`` simulator levels (task 1); inputs
    ``(x, shared control noise sd, task)`` (:class:`TaskCovariance`)."""
    X_on, X_sim = as_tensor(online.X), as_tensor(simulator.X)
    d = X_on.shape[-1]
    shared = as_tensor(shared_control_sd(online))  # k
    X = torch.cat([torch.cat([X_on, shared.unsqueeze(-1), torch.zeros_like(X_on[:, :1])], -1),
                   model_inputs(X_sim, SIMULATOR_TASK)])  # (k + p) x (d + 2)
    Y_on, Y_sim = as_tensor(online.delta).unsqueeze(-1), as_tensor(simulator.y).unsqueeze(-1)
    own_var = as_tensor(online.var).unsqueeze(-1) - shared.unsqueeze(-1) ** 2
    Yvar = torch.cat([own_var.clamp_min(min_known_noise(Y_on)),
                      as_tensor(simulator.var).unsqueeze(-1).clamp_min(min_known_noise(Y_sim))])
    if not (torch.isfinite(X).all() and torch.isfinite(Y_sim).all() and torch.isfinite(Yvar).all()):
        raise ModelFitError(f"metric {online.metric!r}: non-finite simulator inputs, levels or variances")
    spatial_dims = list(range(d))
    covar = ScaleKernel(get_covar_module_with_dim_scaled_prior(ard_num_dims=d, use_rbf_kernel=False),
                        outputscale_prior=GammaPrior(*OUTPUTSCALE_PRIOR), active_dims=spatial_dims)
    tasks = torch.tensor([TARGET_TASK, SIMULATOR_TASK], device=X.device)
    model = MultiTaskGP(X, torch.cat([Y_on, Y_sim]), task_feature=d + 1, train_Yvar=Yvar, covar_module=covar,
                        task_covar_prior=None, output_tasks=[TARGET_TASK], all_tasks=tasks.tolist(),
                        outcome_transform=StratifiedStandardize(stratification_idx=d + 1, all_task_values=tasks, dtype=X.dtype))
    discrepancy = ScaleKernel(get_covar_module_with_dim_scaled_prior(ard_num_dims=d, use_rbf_kernel=False, active_dims=spatial_dims),
                              outputscale_prior=GammaPrior(*DISCREPANCY_SCALE_PRIOR))
    spatial, task = model.covar_module.kernels
    model.covar_module = TaskCovariance(spatial, task, discrepancy, model.outcome_transform.stdvs.reshape(-1)[TARGET_TASK])
    return model.to(X)


def fit_multitask(online: MetricData, simulator: SimulatorData, warm: Mapping[str, Any] | None = None) -> TargetTaskModel:
    """Fit the multi-task model (MAP under the priors), warm-started from ``warm`` (see :func:`hyperparameters`).

    The hyperparameters are fitted with the simulator summarised to :data:`FIT_SIMULATOR_POINTS` (each
    optimiser step costs ``O((k + p)^2 d)`` kernel work and a Cholesky), then the model is conditioned on all
    of ``simulator`` with them.

    Raises:
        ModelFitError: the optimiser failed or left non-finite values.
    """
    model = maximise_likelihood(build_multitask(online, summarise(simulator, FIT_SIMULATOR_POINTS)), online.metric, warm,
                                optimizer_kwargs={"options": {"maxiter": MAX_FIT_STEPS}}, warning_handler=_accept_step_limit)
    if len(simulator.y) > FIT_SIMULATOR_POINTS:
        fitted, model = model, build_multitask(online, simulator)
        load_hyperparameters(model, {"parameters": {n: p.detach() for n, p in fitted.named_parameters()}})
    model.covar_module.slope = simulator_shape(model, as_tensor(online.X[:1]))
    return TargetTaskModel(model.eval(), simulator)


def simulator_shape(model: MultiTaskGP, control: torch.Tensor) -> SlopeTerm:
    """The :class:`SlopeTerm` of a conditioned multi-task model (before its slope term is set); ``control``
    is ``1 x d``."""
    with torch.no_grad(), exact_linalg():
        X, y = model.train_inputs[0], model.train_targets  # n x (d + 2), n
        task = X[:, -1].long()
        means = torch.stack([m.constant.reshape(()) for m in model.mean_module.base_means])  # tasks
        K = model.covar_module(X).to_dense() + torch.diag(model.likelihood.noise.reshape(-1))
        alpha = torch.cholesky_solve((y - means[task]).unsqueeze(-1), psd_safe_cholesky(K)).squeeze(-1)  # n
        weights = model.covar_module.task.covar_matrix[SIMULATOR_TASK, task] * alpha
    return SlopeTerm(X.detach(), weights.detach(), model_inputs(control, SIMULATOR_TASK))


def _accept_step_limit(w: warnings.WarningMessage) -> bool:
    """Reaching :data:`MAX_FIT_STEPS` is an accepted end of a fit, not a failure to retry from random starts
    (BoTorch's default, which made one fit cost several)."""
    return issubclass(w.category, OptimizationWarning) and "ITERATIONS REACHED LIMIT" in str(w.message)


def hyperparameters(target: TargetTaskModel) -> dict[str, Any]:
    """Plain-JSON raw hyperparameters of the multi-task model (``{"d", "parameters"}``)."""
    params = {name: p.detach().cpu().tolist() for name, p in target.model.named_parameters()}
    return {"d": int(target.simulator.X.shape[-1]), "parameters": params}


def simulator_bias(target: TargetTaskModel, online: MetricData) -> dict[str, float]:
    """How the simulator's fitted levels relate to online at the ``k`` online arms.

    Returns ``offset`` (mean simulated level minus online level, in metric units) and ``effect_scale`` (the
    least-squares slope of the simulator's effects relative to control on the online effects: 1 is unbiased,
    2 means the simulator exaggerates effects twice over; NaN with fewer than two distinct online effects).
    """
    with torch.no_grad(), exact_linalg():
        sim = to_numpy(target.posterior(as_tensor(online.X), SIMULATOR_TASK).mean.squeeze(-1))  # k
    level = online.baseline + online.delta
    sim_effect, on_effect = sim - sim[0], online.delta
    denom = float(np.sum((on_effect - on_effect.mean()) ** 2))
    slope = float(np.sum((on_effect - on_effect.mean()) * (sim_effect - sim_effect.mean())) / denom) if denom > 0 else float("nan")
    return {"offset": float(np.mean(sim - level)), "effect_scale": slope}
