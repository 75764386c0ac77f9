"""Joint posterior draws of one metric over a fixed candidate set: exact, or pathwise when that is cheaper.

Both samplers share :class:`Conditioned`, the GP conditioned on its training data at ``N`` candidates
(``K*n``, the Cholesky factor of ``Knn + Sigma``, the residual), which also gives exact marginals for screening.

**Exact** (:class:`ExactSampler`): the ``N x N`` posterior covariance, its Cholesky factor, then ``mean + L z``;
``N^3 / 3`` once plus ``c N^2`` per block of ``c`` draws.

**Pathwise** (:class:`PathSampler`, Wilson et al. 2020): with ``F`` random Fourier features ``Phi`` of the kernel,

    f*|y = mu + Phi* w + K*n (Knn + Sigma)^{-1} (y - mu - Phi_n w - eps),    w ~ N(0, I_F), eps ~ N(0, Sigma)

at ``c N (F + n)`` per block. Each block draws a fresh feature map: random features are unbiased for the kernel
and the update is linear in the prior draw, so the mixture over maps has exactly the posterior covariance,
while one map alone misstates posterior variances by up to ~20% where data are dense. BoTorch's
``draw_matheron_paths`` computes the same thing but broadcasts the ``n x n`` factor over the sample batch, which
is much slower (docs/modelling.md has the measured comparison).

:func:`make_sampler` picks exact when ``N <= EXACT_COST_RATIO (F + n)``: it has no approximation, and per unit of
arithmetic it is the cheaper of the two (one large product per block instead of features and three smaller
products; the ratio was chosen from the modelling benchmark, see docs/modelling.md).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import torch
from botorch.sampling.pathwise.features import gen_kernel_features
from linear_operator.utils.cholesky import psd_safe_cholesky

from bayesopt.device import SAMPLE_DTYPE
from bayesopt.gp import exact_linalg
from bayesopt.gp_parts import MetricModel, gp_parts, model_inputs

#: Random Fourier features per map (BoTorch's default); one map's prior error is ~ 1/sqrt(F).
NUM_FEATURES = 1024
#: Bound on the memory of one block's ``c x N`` tensors, in bytes.
BLOCK_BYTES = 256 * 2**20
#: Exact draws are preferred up to this multiple of pathwise's per-draw arithmetic (see the module docstring).
EXACT_COST_RATIO = 2.0
#: Draws that share one feature map (see the module docstring); also the block size of exact draws. Fewer
#: draws per map make the mixture over maps converge faster to the exact covariance but recompute features
#: (``N x F`` sines and cosines) more often.
DRAWS_PER_FEATURE_MAP = 128


class Conditioned:
    """One metric's GP conditioned on its data, at ``N`` candidates ``X`` (``N x d``); original units out."""

    def __init__(self, model: MetricModel, X: torch.Tensor) -> None:
        parts = gp_parts(model)
        self.model, self.X = model, model_inputs(parts, X)  # N x d'
        self.pathwise_ok = not parts.task_column  # random features exist for the spatial kernels only
        with torch.no_grad(), exact_linalg():
            self.train_X = parts.train_X  # n x d'
            self.noise = parts.noise  # n, standardised
            self.noise_root = parts.noise_root  # n x r or None
            self.mu = parts.target_mean
            self.kernel = parts.kernel
            knn = self.kernel(self.train_X).to_dense() + parts.noise_matrix()
            self.chol = psd_safe_cholesky(knn)  # n x n
            self.k_cross = self.kernel(self.X, self.train_X).to_dense()  # N x n
            self.resid = parts.targets - parts.prior_mean  # n
            self.alpha = torch.cholesky_solve(self.resid.unsqueeze(-1), self.chol).squeeze(-1)  # n
        self.scale, self.shift = parts.scale, parts.shift

    def subset(self, index: torch.Tensor) -> Conditioned:
        """The same conditioning at candidates ``X[index]``."""
        out = copy.copy(self)
        out.X, out.k_cross = self.X[index], self.k_cross[index]
        return out

    def mean(self) -> torch.Tensor:
        """``N`` posterior means, standardised."""
        return self.mu + self.k_cross @ self.alpha

    def marginals(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Exact posterior means, variances and covariances with candidate 0, each ``N``, in original units."""
        with torch.no_grad():
            q = torch.linalg.solve_triangular(self.chol, self.k_cross.T, upper=False)  # n x N
            prior_var = self.kernel(self.X, diag=True)  # N
            prior_c0 = self.kernel(self.X, self.X[:1]).to_dense().squeeze(-1)  # N
            var = (prior_var - (q * q).sum(0)).clamp_min(0.0)
            cov0 = prior_c0 - q.T @ q[:, 0]
            s2 = self.scale**2
            return self.mean() * self.scale + self.shift, var * s2, cov0 * s2

    def covariance(self) -> torch.Tensor:
        """The exact ``N x N`` posterior covariance, standardised."""
        with torch.no_grad(), exact_linalg():
            q = torch.linalg.solve_triangular(self.chol, self.k_cross.T, upper=False)  # n x N
            return self.kernel(self.X).to_dense() - q.T @ q


class ExactSampler:
    """Exact joint draws from ``N x N`` posterior covariance."""

    def __init__(self, cond: Conditioned) -> None:
        self.cond = cond
        self.mean = cond.mean()  # N
        self.root = psd_safe_cholesky(cond.covariance()).to(SAMPLE_DTYPE)  # N x N, jitter added only if needed

    def draw(self, num: int) -> torch.Tensor:
        """``num x N`` joint posterior draws (original units), using the global torch generator."""
        with torch.no_grad():
            z = torch.randn(self.root.shape[-1], num, dtype=SAMPLE_DTYPE, device=self.mean.device)  # N x c
            f = self.mean.unsqueeze(-1) + (self.root @ z).to(self.mean.dtype)  # N x c
            return f.T * self.cond.scale + self.cond.shift


class PathSampler:
    """Pathwise joint draws with a fresh random-feature map per call (single-task models only)."""

    def __init__(self, cond: Conditioned, *, num_features: int = NUM_FEATURES) -> None:
        self.cond, self.num_features = cond, num_features
        self.k_cross = cond.k_cross.to(SAMPLE_DTYPE)  # N x n

    def draw(self, num: int) -> torch.Tensor:
        """``num x N`` joint posterior draws (original units), using the global torch generator."""
        c = self.cond
        with torch.no_grad():
            fmap = gen_kernel_features(c.kernel, num_inputs=c.X.shape[-1], num_outputs=self.num_features)
            phi_star = fmap(c.X)  # N x F
            phi_n = fmap(c.train_X)  # n x F
            w = torch.randn(self.num_features, num, dtype=c.X.dtype, device=c.X.device)  # F x c
            eps = torch.randn(c.train_X.shape[0], num, dtype=c.X.dtype, device=c.X.device)
            eps = eps * c.noise.sqrt().unsqueeze(-1)  # n x c
            if c.noise_root is not None:  # the noise the training points share
                eps = eps + c.noise_root @ torch.randn(c.noise_root.shape[-1], num, dtype=c.X.dtype, device=c.X.device)
            errors = c.resid.unsqueeze(-1) - phi_n @ w - eps  # n x c
            v = torch.cholesky_solve(errors, c.chol)  # n x c
            f = phi_star.to(SAMPLE_DTYPE) @ w.to(SAMPLE_DTYPE) + self.k_cross @ v.to(SAMPLE_DTYPE)  # N x c
            return (c.mu + f.to(c.X.dtype)).T * c.scale + c.shift  # c x N


def make_sampler(cond: Conditioned, *, num_features: int = NUM_FEATURES) -> ExactSampler | PathSampler:
    """Exact when ``N <= EXACT_COST_RATIO (F + n)`` (per draw ``N^2`` against ``N (F + n)``) or for a
    multi-task model (whose task kernel has no random features), pathwise otherwise."""
    N, n = cond.X.shape[0], cond.train_X.shape[0]
    if not cond.pathwise_ok or N <= EXACT_COST_RATIO * (num_features + n):
        return ExactSampler(cond)
    return PathSampler(cond, num_features=num_features)


def block_size(num_candidates: int, num_metrics: int, num_draws: int, *, pathwise: bool = True) -> int:
    """Draws per block: within :data:`BLOCK_BYTES` for the ``c x N x m`` values and temporaries, and at most
    :data:`DRAWS_PER_FEATURE_MAP` when sampling pathwise."""
    per_draw = 8 * num_candidates * (num_metrics + 4)
    cap = DRAWS_PER_FEATURE_MAP if pathwise else num_draws
    return max(1, min(num_draws, cap, BLOCK_BYTES // per_draw))


def joint_draws(samplers: Sequence[ExactSampler | PathSampler], num_draws: int, *, block: int | None = None) -> Iterator[torch.Tensor]:
    """Yield blocks of joint draws of all metrics: ``c x N x m`` tensors whose ``c`` sum to ``num_draws``.

    Metrics are modelled independently, so a joint draw is one draw of each metric's posterior.
    """
    if not samplers:
        return
    N = samplers[0].cond.X.shape[0]
    pathwise = any(isinstance(s, PathSampler) for s in samplers)
    block = block or block_size(N, len(samplers), num_draws, pathwise=pathwise)
    for start in range(0, num_draws, block):
        c = min(block, num_draws - start)
        yield torch.stack([s.draw(c) for s in samplers], dim=-1)
