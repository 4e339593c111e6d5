"""The Keras-compatible mini-batch kernel: exact batch gradients, dense Adam.

This reproduces what the 2016 Keras notebook's model computes, step for step:
the batch loss is the mean over the batch of the per-sample loss, its gradient
with respect to both embedding matrices accumulates every occurrence of a row
in the batch, and Keras's Adam then updates **every** row of both matrices
(rows outside the batch keep moving while their moments are non-zero):

    t += 1
    m = beta_1 * m + (1 - beta_1) * g
    v = beta_2 * v + (1 - beta_2) * g * g
    w -= lr * sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (sqrt(v) + epsilon)

Arithmetic is float32 like Keras's; ``x = u.p - u.n`` is two dot products
accumulated in float64, and each batch's gradient is accumulated in sample
order, so the NumPy twin in the tests agrees to rounding.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .losses import loss_and_grad


# Moments below this are set to 0. Rows outside the batches keep decaying
# (m by 0.9 a step), and within an epoch their moments would reach float32's
# subnormal range, where every operation costs ~100 cycles (measured: 20x
# slower epochs). A moment of 1e-30 moves a weight by under 1e-26, 17 orders
# below a float32 ulp of a 0.05 weight, so the results do not change.
_MOMENT_FLOOR = np.float32(1e-30)


@njit(cache=True, inline="always")
def _adam_row(params, grad, adam_m, adam_v, row, alpha, beta_1, beta_2,
              one_minus_b1, one_minus_b2, epsilon):
    """Keras's Adam step on one row (float32); modifies params, adam_m, adam_v."""
    for f in range(params.shape[1]):
        g = grad[row, f]
        m = beta_1 * adam_m[row, f] + one_minus_b1 * g
        v = beta_2 * adam_v[row, f] + one_minus_b2 * g * g
        if abs(m) < _MOMENT_FLOOR:
            m = np.float32(0.0)
        if v < _MOMENT_FLOOR:
            v = np.float32(0.0)
        adam_m[row, f] = m
        adam_v[row, f] = v
        params[row, f] -= alpha * m / (np.sqrt(v) + epsilon)


@njit(cache=True, parallel=True)
def dense_adam_batches(users, positives, negatives, batch_starts,
                        user_factors, item_factors,
                        user_grad, item_grad,
                        user_adam_m, user_adam_v, item_adam_m, item_adam_v,
                        step, loss_code, lr, reg, beta_1, beta_2, epsilon):
    """Run the mini-batches that start at ``batch_starts[:-1]``.

    Parameters
    ----------
    users, positives, negatives : ndarray of int64, shape (n_triplets,)
        Triplets in training order.
    batch_starts : ndarray of int64, shape (n_batches + 1,)
        Batch ``b`` is ``[batch_starts[b], batch_starts[b + 1])``.
    user_factors, item_factors : ndarray of float32, shape (n, f)
    user_grad, item_grad : ndarray of float32, shape (n, f)
        Scratch, all zeros on entry and on exit.
    user_adam_m, user_adam_v, item_adam_m, item_adam_v : ndarray of float32, shape (n, f)
    step : ndarray of int64, shape (1,)
        Adam steps taken so far (Keras's ``iterations``); advanced in place, so
        the count survives a Ctrl-C that arrives as the call returns.
    loss_code : int
    lr, reg, beta_1, beta_2, epsilon : float32
        ``reg`` adds ``reg * w`` to the gradient of each occurrence of a row
        (L2 of ``reg / 2`` per sample), averaged over the batch like the loss.

    Modifies
    --------
    The factors, the Adam moments and ``step``.

    Returns
    -------
    loss_sum : float
        Sum of the per-sample losses, at the weights of each sample's batch.
    """
    n_users = user_factors.shape[0]
    n_items = item_factors.shape[0]
    n_cols = user_factors.shape[1]
    one_minus_b1 = np.float32(1.0) - beta_1
    one_minus_b2 = np.float32(1.0) - beta_2
    loss_sum = 0.0
    for b in range(batch_starts.shape[0] - 1):
        start = batch_starts[b]
        end = batch_starts[b + 1]
        inv_size = 1.0 / (end - start)
        for s in range(start, end):
            u = users[s]
            i = positives[s]
            j = negatives[s]
            xp = 0.0
            xn = 0.0
            for f in range(n_cols):
                xp += np.float64(user_factors[u, f]) * np.float64(item_factors[i, f])
                xn += np.float64(user_factors[u, f]) * np.float64(item_factors[j, f])
            value, dx = loss_and_grad(loss_code, xp - xn)
            loss_sum += value
            g = np.float32(dx * inv_size)
            r = np.float32(reg * inv_size)
            for f in range(n_cols):
                uf = user_factors[u, f]
                user_grad[u, f] += g * item_factors[i, f]
                user_grad[u, f] -= g * item_factors[j, f]
                user_grad[u, f] += r * uf
                item_grad[i, f] += g * uf
                item_grad[i, f] += r * item_factors[i, f]
                item_grad[j, f] -= g * uf
                item_grad[j, f] += r * item_factors[j, f]
        step[0] += 1
        t = step[0]
        # In float64 from the float32 hyperparameters, rounded once (numba would
        # raise a float32 to an integer power in float32).
        alpha = np.float32(np.float64(lr) * math.sqrt(1.0 - np.float64(beta_2) ** t)
                           / (1.0 - np.float64(beta_1) ** t))
        for r in prange(n_users):
            _adam_row(user_factors, user_grad, user_adam_m, user_adam_v, r,
                      alpha, beta_1, beta_2, one_minus_b1, one_minus_b2, epsilon)
        for r in prange(n_items):
            _adam_row(item_factors, item_grad, item_adam_m, item_adam_v, r,
                      alpha, beta_1, beta_2, one_minus_b1, one_minus_b2, epsilon)
        for s in range(start, end):
            for f in range(n_cols):
                user_grad[users[s], f] = 0.0
                item_grad[positives[s], f] = 0.0
                item_grad[negatives[s], f] = 0.0
    return loss_sum
