"""The control noise every effect shares: it must not average away across neighbouring arms.

Each arm's effect is its mean minus the *same* control mean, so the control mean's error ``e_c`` is in every
effect at once. A GP told the effects' noises are independent averages ``e_c`` away over a cluster of arms and
certifies a guardrail between them far too surely (the closed loop's worst hours: arms with ``p_feasible`` 0.99
that broke a limit by 0.8 points). :func:`bayesopt.gp.fit_noise` puts ``e_c`` on control's anchor instead.
"""

from __future__ import annotations

import numpy as np
import pytest

from bayesopt.diagnostics import level_posterior
from bayesopt.gp import fit_model, fit_noise
from bayesopt.lattice import to_unit
from bayesopt.pooling import pool
from tests.bayesopt.bo_worlds import lattice_arms, make_spec, simulate

#: Replications: the mean square of R standard normals (chi-square, R degrees of freedom, over R) lies in
#: [MIN_MEAN_SQUARE, MAX_MEAN_SQUARE] with probability 0.999.
REPLICATIONS = 50
MIN_MEAN_SQUARE, MAX_MEAN_SQUARE = 0.469, 1.791


def _truth(u: np.ndarray) -> np.ndarray:
    return 0.3 * np.sin(3.0 * u[:, 0]) + 0.2 * u[:, 1]


def _z_at_cluster(seed: int) -> float:
    """One world: eight arms clustered around (27/32, 27/32), a lattice point, one window, control to as many members as each arm.
    The z-score of the posterior difference from control at the cluster's centre against the truth."""
    rng = np.random.default_rng(seed)
    spec = make_spec(metrics=(("obj", "mean"),), guardrails=())
    offsets = np.array([[a, b] for a in (-0.0625, 0.0, 0.0625) for b in (-0.0625, 0.0, 0.0625) if (a, b) != (0, 0)])
    arms = lattice_arms(spec, 27 / 32 + offsets)
    table = simulate(spec, {"obj": _truth}, arms, windows=1, count=4000, rng=rng)
    data = pool(spec, table).metrics["obj"]
    model = fit_model(data)
    X = np.vstack([to_unit(spec, spec.control), [[27 / 32, 27 / 32]]])
    mean, sd = level_posterior(model, X)
    true = _truth(X[1:2])[0] - _truth(X[:1])[0]
    return float((mean[1] - true) / sd[1])


def test_the_shared_control_error_stays_in_every_difference() -> None:
    """Calibration at a point that eight arms inform: the z-scores' mean square (bias and spread together) is
    about 1 (1.25 here), where independent noise gives about 2.1 (the cluster's average has a ninth of each effect's own
    noise but all of ``e_c``)."""
    z = np.array([_z_at_cluster(seed) for seed in range(REPLICATIONS)])
    assert MIN_MEAN_SQUARE <= float(np.mean(z**2)) <= MAX_MEAN_SQUARE, (z.mean(), z.std())


def test_arms_of_one_window_share_exactly_its_control_error() -> None:
    """One window: every arm's effect holds all of that window's control error, the pooled control's own."""
    spec = make_spec(metrics=(("obj", "mean"),), guardrails=())
    arms = lattice_arms(spec, np.array([[0.1, 0.2], [0.8, 0.3], [0.4, 0.9]]))
    data = pool(spec, simulate(spec, {"obj": _truth}, arms, windows=1, count=200, rng=np.random.default_rng(0))).metrics["obj"]
    own, root = fit_noise(data)
    assert root.shape == (4, 1) and root[0, 0] == 0.0
    np.testing.assert_allclose(root[1:, 0], data.baseline_se, rtol=0.02)  # relative differences: up to the level's ratio
    np.testing.assert_allclose(own[1:], data.var[1:] - root[1:, 0] ** 2)
    assert own[0] == data.var[0] and (own > 0).all()


def test_an_arm_shares_only_the_windows_it_was_served_in() -> None:
    """Arm a in windows 1-3, arm b in window 3 only: their shared error is a's weight on window 3 times b's
    (all of it) times window 3's control variance, far below what a rank-one stand-in would give."""
    spec = make_spec(metrics=(("obj", "mean"),), guardrails=())
    arms = lattice_arms(spec, np.array([[0.1, 0.2], [0.8, 0.3]]))
    a, b = [x for x in arms if x != "control"]
    table = simulate(spec, {"obj": _truth}, arms, windows=3, count=300, schedule={1: [a], 2: [a], 3: [a, b]},
                     rng=np.random.default_rng(1))
    data = pool(spec, table).metrics["obj"]
    _, root = fit_noise(data)
    ia, ib = data.arm_ids.index(a), data.arm_ids.index(b)
    shared = float(root[ia] @ root[ib])
    assert root[ib, :2].tolist() == [0.0, 0.0] and root[ib, 2] > 0
    assert shared == pytest.approx(root[ia, 2] * root[ib, 2]) and 0 < shared < 0.5 * root[ib, 2] ** 2
