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
    """``(sigmoid(x), exp(-|x|))``: one exponential that never overflows."""
    e = math.exp(-abs(x))
    if x >= 0.0:
        return 1.0 / (1.0 + e), e
    return e / (1.0 + e), e


@njit(cache=True, inline="always")
def loss_and_grad(loss_code, x):
    """Return ``(loss, dloss/dx)`` in float64 for the score difference ``x``."""
    s, e = _sigmoid(x)
    if loss_code == LOSS_BPR:
        # -log sigmoid(x) = log1p(exp(-x)) = log1p(e) + max(-x, 0)
        return math.log1p(e) + max(-x, 0.0), s - 1.0
    return 1.0 - s, -s * (1.0 - s)


@njit(cache=True, inline="always")
def loss_parts(loss_code, x):
    """``(dloss/dx, a, b)`` with the loss ``a + log(b)``, ``1 <= b <= 2``, in float64.

    What the per-sample kernel uses: it sums the ``a`` and multiplies the
    ``b`` (taking the log of the product only when it nears float64's
    range), so the BPR loss costs no logarithm per sample. ``b`` is
    ``1 + exp(-|x|)`` for "bpr" (``a = max(-x, 0)``) and 1 for "sigmoid".
    """
    s, e = _sigmoid(x)
    if loss_code == LOSS_BPR:
        return s - 1.0, max(-x, 0.0), 1.0 + e
    return -s * (1.0 - s), 1.0 - s, 1.0
