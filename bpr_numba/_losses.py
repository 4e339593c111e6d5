"""Per-sample losses of the score difference ``x = u.p - u.n`` and their derivatives.

Codes (frozen at compile time, used by the epoch kernels):

- ``LOSS_BPR`` (0): ``-log sigmoid(x)``, Rendle et al. (2009).
- ``LOSS_SIGMOID`` (1): ``1 - sigmoid(x)``, the 2016 Keras notebook's loss.
"""

from __future__ import annotations

import math

from numba import njit

LOSS_BPR = 0
LOSS_SIGMOID = 1
LOSSES = {"bpr": LOSS_BPR, "sigmoid": LOSS_SIGMOID}


@njit(cache=True, inline="always")
def _sigmoid(x):
    """Numerically stable logistic function of a float64."""
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@njit(cache=True, inline="always")
def _loss_and_grad(loss_code, x):
    """Return ``(loss, dloss/dx)`` in float64 for the score difference ``x``."""
    s = _sigmoid(x)
    if loss_code == LOSS_BPR:
        # -log sigmoid(x) = log1p(exp(-x)), written to avoid overflow for x << 0.
        if x >= 0.0:
            value = math.log1p(math.exp(-x))
        else:
            value = -x + math.log1p(math.exp(x))
        return value, s - 1.0
    return 1.0 - s, -s * (1.0 - s)
