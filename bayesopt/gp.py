"""One GP per metric on pooled effects, with the observed noise as known noise.

Inputs are the lattice's unit coordinates (log-scaled parameters already in log space), so no input transform
is needed; outputs are standardised by BoTorch's ``Standardize``, which also rescales the known variances.
The kernel is a Matern-5/2 with BoTorch's dimension-scaled lengthscale prior inside a ``ScaleKernel``: with known
noise and standardised outputs the signal variance must stay free, because most of a noisy metric's spread
across arms is noise. Fits run with exact Cholesky algebra (GPyTorch switches to randomised conjugate
gradients above 800 points, which is both approximate and not reproducible).

``model_state`` is a plain-JSON snapshot of each metric's raw hyperparameters; fits warm-start from it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import gpytorch
import numpy as np
import torch
from botorch.exceptions.warnings import OptimizationWarning
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from gpytorch.kernels import ScaleKernel
from gpytorch.likelihoods import FixedNoiseGaussianLikelihood
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import GammaPrior
from linear_operator.operators import RootLinearOperator

from bayesopt.device import as_tensor
from bayesopt.errors import ModelFitError
from bayesopt.pooling import MAX_SHARED_NOISE_SHARE, MetricData

STATE_VERSION = 1
#: Exact Cholesky up to this many points (GPyTorch's default switches to CG at 800).
MAX_CHOLESKY_SIZE = 20_000
#: Signal variance prior in standardised units: mean 1, but mass down to ~0.05 for metrics that are mostly noise.
OUTPUTSCALE_PRIOR = (2.0, 2.0)
#: Known noise is floored a little above GPyTorch's own floor (in standardised units), so it is never rounded.
MIN_NOISE_MARGIN = 1.01


@contextmanager
def exact_linalg() -> Iterator[None]:
    """Exact Cholesky solves and log-determinants for every GPyTorch call inside the block."""
    with (
        gpytorch.settings.max_cholesky_size(MAX_CHOLESKY_SIZE),
        gpytorch.settings.fast_computations(log_prob=False, covar_root_decomposition=False, solves=False),
    ):
        yield


def build_model(data: MetricData) -> SingleTaskGP:
    """An unfitted GP on ``data``: ``k x d`` inputs, ``k x 1`` pooled deltas and their :func:`fit_noise`."""
    own, root = fit_noise(data)
    X, Y, Yvar = as_tensor(data.X), as_tensor(data.delta).unsqueeze(-1), as_tensor(own).unsqueeze(-1)
    check_training_data(data.metric, X, Y, Yvar)
    Yvar = Yvar.clamp_min(min_known_noise(Y))
    d = X.shape[-1]
    covar = ScaleKernel(
        get_covar_module_with_dim_scaled_prior(ard_num_dims=d, use_rbf_kernel=False),
        outputscale_prior=GammaPrior(*OUTPUTSCALE_PRIOR),
    )
    if root is None:
        return SingleTaskGP(X, Y, train_Yvar=Yvar, covar_module=covar, outcome_transform=Standardize(m=1)).to(X)
    standardize = Standardize(m=1)
    standardize(Y)  # the scale SingleTaskGP's own transform will find on the same Y
    scale = standardize.stdvs.reshape(())
    likelihood = CorrelatedNoiseLikelihood((Yvar.squeeze(-1) / scale**2), as_tensor(root) / scale)
    return SingleTaskGP(X, Y, likelihood=likelihood, covar_module=covar, outcome_transform=Standardize(m=1)).to(X)


def fit_noise(data: MetricData) -> tuple[np.ndarray, np.ndarray | None]:
    """The fit's known noise: ``k`` own variances and the ``k x W`` factor of the control error the arms share.

    Every window's effect is an arm's mean minus that window's control mean, so arms served in the same window
    share its control error (:attr:`MetricData.control_root`). Taken as independent noise, it would average away
    across neighbouring arms, and a guardrail's limit between them would look far surer than it is: the control
    share is the smallest arm of most hours, so its error is most of each effect's variance. Without a factor
    (None) the variances are taken whole, as independent.
    """
    var = np.asarray(data.var, dtype=float)
    root = data.control_root
    if root is None or root.shape[1] == 0:
        return var, None
    own = var - (root**2).sum(axis=1)
    own[0] = var[0]
    return np.maximum(own, (1.0 - MAX_SHARED_NOISE_SHARE) * var), root


class CorrelatedNoiseLikelihood(FixedNoiseGaussianLikelihood):
    """Known noise ``diag(noise) + root root^T`` (standardised units) on the ``n`` training points; any other
    set of points (predictions) gets none of it, as with BoTorch's fixed-noise likelihood."""

    def __init__(self, noise: torch.Tensor, root: torch.Tensor) -> None:
        super().__init__(noise=noise, learn_additional_noise=False)
        self.register_buffer("noise_root", root)

    def marginal(self, function_dist: Any, *params: Any, **kwargs: Any) -> Any:
        out = super().marginal(function_dist, *params, **kwargs)
        if out.mean.shape[-1] != self.noise_root.shape[-2]:
            return out
        return out.__class__(out.mean, out.lazy_covariance_matrix + RootLinearOperator(self.noise_root))


def min_known_noise(Y: torch.Tensor) -> torch.Tensor:
    """The smallest known noise variance GPyTorch keeps after ``Standardize`` (it rounds smaller ones up, with
    a warning on every fit): the control anchor's near-exact variance hits it when traffic is rich."""
    scale = Y.std() if Y.shape[0] > 1 else torch.ones((), dtype=Y.dtype, device=Y.device)
    floor = gpytorch.settings.min_fixed_noise.value(Y.dtype)
    return MIN_NOISE_MARGIN * floor * torch.where(scale > 0, scale, torch.ones_like(scale)) ** 2


def check_training_data(metric: str, X: torch.Tensor, Y: torch.Tensor, Yvar: torch.Tensor) -> None:
    """Raise :class:`ModelFitError` naming ``metric`` if the inputs cannot give a sound model."""
    problems = []
    if X.shape[0] < 2:
        problems.append(f"needs control and at least one other arm, got {X.shape[0]} point(s)")
    for name, t in (("inputs", X), ("means", Y), ("variances", Yvar)):
        if not torch.isfinite(t).all():
            problems.append(f"non-finite {name} (rows {torch.nonzero(~torch.isfinite(t).all(-1)).flatten().tolist()[:5]})")
    if torch.isfinite(Yvar).all() and (Yvar <= 0).any():
        problems.append("non-positive noise variances")
    if problems:
        raise ModelFitError(f"metric {metric!r}: " + "; ".join(problems))


def fit_model(data: MetricData, warm: Mapping[str, Any] | None = None) -> SingleTaskGP:
    """Fit a GP to ``data`` by maximising the marginal likelihood (MAP under the priors).

    Args:
        data: pooled effects of one metric.
        warm: this metric's entry of a previous ``model_state`` (hyperparameters to start from), or None.

    Returns:
        The fitted model in eval mode.

    Raises:
        ModelFitError: the data are degenerate, the optimiser failed, or the fit left non-finite values.
    """
    return maximise_likelihood(build_model(data), data.metric, warm)


def maximise_likelihood(model: Any, metric: str, warm: Mapping[str, Any] | None = None, **fit_options: Any) -> Any:
    """Fit an exact GP ``model`` by MAP (``fit_gpytorch_mll`` with ``fit_options``), from ``warm`` if given.

    Returns the model in eval mode; raises :class:`ModelFitError` naming ``metric`` if the optimiser failed or
    left non-finite hyperparameters.
    """
    if warm:
        load_hyperparameters(model, warm)
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    try:
        with exact_linalg(), warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizationWarning)
            fit_gpytorch_mll(mll, **fit_options)
    except Exception as exc:  # the optimiser's failures come in many types; all mean "no sound model"
        raise ModelFitError(f"metric {metric!r}: GP fit failed: {exc}") from exc
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise ModelFitError(f"metric {metric!r}: fit left non-finite hyperparameters {bad}")
    return model.eval()


def hyperparameters(model: SingleTaskGP) -> dict[str, Any]:
    """Plain-JSON raw hyperparameters of ``model`` (``{"d": d, "parameters": {name: nested list}}``)."""
    params = {name: p.detach().cpu().tolist() for name, p in model.named_parameters()}
    return {"d": int(model.train_inputs[0].shape[-1]), "parameters": params}


def load_hyperparameters(model: SingleTaskGP, warm: Mapping[str, Any]) -> None:
    """Copy matching raw hyperparameters from ``warm`` into ``model``; mismatched shapes or names are skipped."""
    params = warm.get("parameters", {}) if isinstance(warm, Mapping) else {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            value = params.get(name)
            if value is None:
                continue
            t = torch.as_tensor(value, dtype=p.dtype, device=p.device)
            if t.shape == p.shape and torch.isfinite(t).all():
                p.copy_(t)


def model_state(models: Mapping[str, SingleTaskGP]) -> dict[str, Any]:
    """The JSON-serialisable ``model_state`` of a :class:`~bayesopt.policy.Proposal`."""
    return {"version": STATE_VERSION, "metrics": {m: hyperparameters(model) for m, model in models.items()}}


def warm_entry(warm_start: Mapping[str, Any] | None, metric: str) -> Mapping[str, Any] | None:
    """The ``metric`` entry of a previous ``model_state``, or None if absent or from another version."""
    if not isinstance(warm_start, Mapping) or warm_start.get("version") != STATE_VERSION:
        return None
    entry = warm_start.get("metrics", {}).get(metric)
    return entry if isinstance(entry, Mapping) else None


def fit_models(
    metrics: Mapping[str, MetricData], warm_start: Mapping[str, Any] | None = None
) -> dict[str, SingleTaskGP]:
    """Fit one GP per metric (``m`` fits), in the given order."""
    return {name: fit_model(data, warm_entry(warm_start, name)) for name, data in metrics.items()}


def lengthscales(model: SingleTaskGP) -> list[float]:
    """The fitted ``d`` lengthscales (unit-cube units), for diagnostics."""
    ls = model.covar_module.base_kernel.lengthscale.detach().flatten().cpu().tolist()
    return [float(v) if math.isfinite(v) else float("nan") for v in ls]
