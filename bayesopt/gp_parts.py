"""What the samplers, the diagnostics and the guard read from a fitted model, for either kind of model.

A metric is modelled by a single-task :class:`~botorch.models.SingleTaskGP` (online arms only) or by the online
task of a :class:`~bayesopt.multitask.TargetTaskModel` (a ``MultiTaskGP`` that also saw simulator points). Both
are exact GPs with known noise, so both reduce to :class:`GPParts`: a kernel over the model's inputs, ``n``
training inputs with their standardised targets, prior means and noise, and the target's output scale. Code
that conditions by hand (:mod:`bayesopt.posterior_draws`, the cross-validation of :mod:`bayesopt.guard`) reads
these parts, never a model's attributes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from botorch.models import SingleTaskGP
from gpytorch.kernels import Kernel

from bayesopt.multitask import TARGET_TASK, TargetTaskModel
from bayesopt.multitask import model_inputs as multitask_inputs

#: A metric's fitted model: online-only, or the online task of a multi-task model.
MetricModel = SingleTaskGP | TargetTaskModel


@dataclass(frozen=True)
class GPParts:
    """A fitted exact GP in standardised units.

    Attributes:
        kernel: the prior covariance over the model's ``d'`` inputs (``d``, or ``d + 2`` for a multi-task model).
        train_X: ``n x d'`` training inputs.
        targets: ``n`` standardised training targets; ``prior_mean``: their ``n`` prior means.
        noise: ``n`` known noise variances, standardised.
        noise_root: ``n x r`` factor of the noise the training points share (standardised; None: independent):
            the noise covariance is ``diag(noise) + noise_root noise_root^T`` (:func:`bayesopt.gp.fit_noise`).
        target_mean: the prior mean of the target (online) function at any input, standardised.
        scale, shift: the target's standardisation (original = standardised * scale + shift).
        task_column: candidates need the multi-task model's columns appended (:func:`model_inputs`).
        target_rows: ``n`` booleans, True for the online training points.
    """

    kernel: Kernel
    train_X: torch.Tensor
    targets: torch.Tensor
    prior_mean: torch.Tensor
    noise: torch.Tensor
    target_mean: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor
    task_column: bool
    target_rows: torch.Tensor
    noise_root: torch.Tensor | None = None

    def noise_matrix(self) -> torch.Tensor:
        """The ``n x n`` noise covariance of the training points."""
        out = torch.diag(self.noise)
        return out if self.noise_root is None else out + self.noise_root @ self.noise_root.T


def gp_parts(model: MetricModel) -> GPParts:
    """The :class:`GPParts` of a fitted model in eval mode."""
    if isinstance(model, TargetTaskModel):
        return _multitask_parts(model)
    with torch.no_grad():
        train_X = model.train_inputs[0]  # n x d
        mu = model.mean_module.constant.detach().reshape(())
        n = train_X.shape[0]
        tf = model.outcome_transform
        return GPParts(
            kernel=model.covar_module, train_X=train_X, targets=model.train_targets.detach(),
            prior_mean=mu.expand(n), noise=model.likelihood.noise.detach().reshape(-1), target_mean=mu,
            scale=tf.stdvs.detach().reshape(()), shift=tf.means.detach().reshape(()), task_column=False,
            target_rows=torch.ones(n, dtype=torch.bool, device=train_X.device),
            noise_root=getattr(model.likelihood, "noise_root", None),
        )


def _multitask_parts(target: TargetTaskModel) -> GPParts:
    model = target.model
    with torch.no_grad():
        train_X = model.train_inputs[0]  # n x (d + 1), task last
        task = train_X[:, -1].long()  # n
        means = torch.stack([m.constant.detach().reshape(()) for m in model.mean_module.base_means])  # tasks
        tf = model.outcome_transform
        return GPParts(
            kernel=model.covar_module, train_X=train_X, targets=model.train_targets.detach(), prior_mean=means[task],
            noise=model.likelihood.noise.detach().reshape(-1), target_mean=means[TARGET_TASK],
            scale=tf.stdvs.detach()[TARGET_TASK].reshape(()), shift=tf.means.detach()[TARGET_TASK].reshape(()),
            task_column=True, target_rows=task == TARGET_TASK,
        )


def model_inputs(parts: GPParts, X: torch.Tensor) -> torch.Tensor:
    """``N x d`` candidates as the model's ``N x d'`` inputs (the online task's columns appended if needed)."""
    return multitask_inputs(X, TARGET_TASK) if parts.task_column else X


def lengthscales(model: MetricModel) -> list[float]:
    """The fitted ``d`` lengthscales of the model's spatial kernel (unit-cube units), for diagnostics."""
    kernel = model.spatial_kernel() if isinstance(model, TargetTaskModel) else model.covar_module.base_kernel
    ls = kernel.lengthscale.detach().flatten().cpu().tolist()
    return [float(v) if math.isfinite(v) else float("nan") for v in ls]
