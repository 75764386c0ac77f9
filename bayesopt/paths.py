"""Joint posterior draws over a fixed candidate set by pathwise (Matheron) conditioning.

For a GP ``f`` with known noise ``Sigma`` (Wilson et al. 2020), a posterior draw at candidates ``X*`` is

    f*|y = mu + Phi* w + K*n (Knn + Sigma)^{-1} (y - mu - Phi_n w - eps),    w ~ N(0, I_F), eps ~ N(0, Sigma)

where ``Phi`` are ``F`` random Fourier features of the kernel (BoTorch's ``gen_kernel_features``). Per block
of ``c`` draws this costs ``c N (F + n)`` multiply-adds instead of the ``c N^2`` of an exact joint draw after an
``N x N`` Cholesky. ``K*n``, the Cholesky factor of ``Knn + Sigma`` and the posterior mean are computed once;
each block draws a fresh feature map, so the feature approximation's error averages out across blocks instead
of being shared by all ``s`` draws (random features are unbiased for the kernel, and the update is linear in
the prior draw, so the mixture over maps has exactly the posterior covariance).

BoTorch's own ``draw_matheron_paths`` computes the same thing but broadcasts the ``n x n`` factor over the
sample batch; written out as below it is an order of magnitude faster.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from botorch.models import SingleTaskGP
from botorch.sampling.pathwise.features import gen_kernel_features
from linear_operator.utils.cholesky import psd_safe_cholesky

from bayesopt.gp import exact_linalg

#: Random Fourier features per block (BoTorch's default); the prior part of a draw has error ~ 1/sqrt(F).
NUM_FEATURES = 1024
#: Bound on the memory of one block's ``c x N`` tensors, in bytes.
BLOCK_BYTES = 256 * 2**20
#: Draws that share one feature map. Random features are unbiased for the kernel, so a mixture over many maps
#: converges to the exact posterior covariance while one map alone misstates posterior variances by ~20% where
#: data are dense; a new map per 256 draws keeps that error near Monte Carlo noise for 10,000 draws at ~10%
#: extra cost.
DRAWS_PER_FEATURE_MAP = 256


class PathSampler:
    """Draws of one metric's posterior at ``N`` fixed candidates, in the model's original (delta) units."""

    def __init__(self, model: SingleTaskGP, X: torch.Tensor, *, num_features: int = NUM_FEATURES) -> None:
        """Precompute everything that does not depend on the draws.

        Args:
            model: a fitted single-output ``SingleTaskGP`` with fixed noise and ``Standardize``.
            X: ``N x d`` candidates, in the model's input space.
            num_features: random Fourier features per block of draws.
        """
        self.model, self.X, self.num_features = model, X, num_features
        with torch.no_grad(), exact_linalg():
            self.train_X = model.train_inputs[0]  # n x d
            y = model.train_targets  # n, standardised
            self.noise = model.likelihood.noise.detach().reshape(-1)  # n, standardised
            self.mu = model.mean_module.constant.detach().reshape(())
            kernel = model.covar_module
            knn = kernel(self.train_X).to_dense() + torch.diag(self.noise)
            self.chol = psd_safe_cholesky(knn)  # n x n
            self.k_cross = kernel(X, self.train_X).to_dense()  # N x n
            self.resid = y - self.mu  # n
        tf = model.outcome_transform
        self.scale = tf.stdvs.detach().reshape(())
        self.shift = tf.means.detach().reshape(())

    def draw(self, num: int) -> torch.Tensor:
        """``num x N`` joint posterior draws (original units), using the global torch generator."""
        with torch.no_grad():
            fmap = gen_kernel_features(self.model.covar_module, num_inputs=self.X.shape[-1], num_outputs=self.num_features)
            phi_star = fmap(self.X)  # N x F
            phi_n = fmap(self.train_X)  # n x F
            w = torch.randn(self.num_features, num, dtype=self.X.dtype, device=self.X.device)  # F x c
            eps = torch.randn(self.train_X.shape[0], num, dtype=self.X.dtype, device=self.X.device)
            eps = eps * self.noise.sqrt().unsqueeze(-1)  # n x c
            errors = self.resid.unsqueeze(-1) - phi_n @ w - eps  # n x c
            v = torch.cholesky_solve(errors, self.chol)  # n x c
            f = phi_star @ w + self.k_cross @ v  # N x c
            return (self.mu + f).T * self.scale + self.shift  # c x N


def block_size(num_candidates: int, num_metrics: int, num_draws: int) -> int:
    """Draws per block so that a block's ``c x N x m`` values and temporaries fit :data:`BLOCK_BYTES`."""
    per_draw = 8 * num_candidates * (num_metrics + 4)
    return max(1, min(num_draws, DRAWS_PER_FEATURE_MAP, BLOCK_BYTES // per_draw))


def joint_draws(
    samplers: Sequence[PathSampler], num_draws: int, *, block: int | None = None
) -> Iterator[torch.Tensor]:
    """Yield blocks of joint draws of all metrics: ``c x N x m`` tensors whose ``c`` sum to ``num_draws``.

    Metrics are modelled independently, so a joint draw is one draw of each metric's posterior.
    """
    if not samplers:
        return
    N = samplers[0].X.shape[0]
    block = block or block_size(N, len(samplers), num_draws)
    for start in range(0, num_draws, block):
        c = min(block, num_draws - start)
        yield torch.stack([s.draw(c) for s in samplers], dim=-1)
