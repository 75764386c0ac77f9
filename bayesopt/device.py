"""The one place that picks the torch device and dtype for every model tensor.

Every module of the model core asks :func:`default_device` and :data:`DTYPE` instead of calling ``torch.device``
itself, so the whole pipeline moves to CUDA when one is present (or when ``BAYESOPT_DEVICE`` says so in tests)
by changing nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

#: GP fits and Cholesky factors need double precision; float32 Choleskys of 1,000 noisy points fail often.
DTYPE = torch.float64
#: The ``c x N`` products of posterior draws (``L z``, ``Phi w``, ``K v``) run in single precision: they add
#: rounding of ~1e-7 of a posterior standard deviation, far below Monte Carlo error, at about half the time.
#: Fits, Cholesky factors, solves, means and comparisons stay in :data:`DTYPE`.
SAMPLE_DTYPE = torch.float32
#: Optional override (``cpu``, ``cuda``, ``cuda:1``), read once per call at the edge of the model core.
DEVICE_ENV = "BAYESOPT_DEVICE"


def default_device() -> torch.device:
    """CUDA when available (or the device named by ``BAYESOPT_DEVICE``), else the CPU."""
    name = os.environ.get(DEVICE_ENV)
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def tkwargs() -> dict:
    """``{"device": ..., "dtype": ...}`` for tensor constructors."""
    return {"device": default_device(), "dtype": DTYPE}


def as_tensor(array: np.ndarray | list | float) -> torch.Tensor:
    """A numpy array (any shape) as a tensor on the model device in :data:`DTYPE`."""
    return torch.as_tensor(np.asarray(array, dtype=np.float64), **tkwargs())


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A tensor (any shape, any device) as a float64 numpy array."""
    return tensor.detach().to("cpu", torch.float64).numpy()


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's global generators seeded by ``seed``, restoring them afterwards.

    BoTorch and GPyTorch draw from the global generator (random Fourier features, fit restarts), so this is how
    a refit stays a pure function of its seed without disturbing the caller's random state.
    """
    device = default_device()
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
