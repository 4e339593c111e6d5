"""Row updates of the optimisers used by the per-sample (Hogwild) kernel.

State is lazy: only the rows a sample touches are read and written, so a
row's Adam moments and step count advance only when the row is in a sample
("lazy Adam", as in implicit's and TensorFlow's sparse Adam), and its Adagrad
sum of squares only grows with its own gradients. State arrays are named for
what they hold (``adagrad_sum_sq``, ``adam_m``, ``adam_v``, ``adam_t``);
an optimiser that does not use an array gets a (0, 0) placeholder.

Codes (frozen at compile time): ``OPT_SGD`` 0, ``OPT_ADAGRAD`` 1,
``OPT_ADAM`` 2, ``OPT_ADAGRAD_ROWWISE`` 4. ``OPT_DENSE_ADAM`` 3 is Keras's
dense Adam, run by the mini-batch kernel in ``dense_adam.py`` rather than here.
"""

from __future__ import annotations

import numpy as np
from numba import njit

OPT_SGD = 0
OPT_ADAGRAD = 1
OPT_ADAM = 2
OPT_DENSE_ADAM = 3
OPT_ADAGRAD_ROWWISE = 4
OPTIMIZERS = {"sgd": OPT_SGD, "adagrad": OPT_ADAGRAD, "adam": OPT_ADAM,
              "dense-adam": OPT_DENSE_ADAM, "rowwise-adagrad": OPT_ADAGRAD_ROWWISE}


_FLOAT32_MAX = np.float32(3.4028235e38)


# Every row update has one signature, so the per-sample kernel is specialised
# by binding ``row_update`` to one of them (see ``build.specialise``):
#
#     ok = row_update(params, row, grad, n_cols, adagrad_sum_sq, adam_m, adam_v,
#                     adam_t, adam_alpha, lr, beta_1, beta_2, epsilon, scratch)
#
# It applies one step to ``params[row, :n_cols]`` with gradient ``grad[:n_cols]``
# and modifies ``params`` and its optimiser's state arrays in place (float32,
# ``adam_t`` int64 per row; scalars float32). A step that would make any value
# non-finite is not applied: new values are computed into ``scratch`` (float32,
# shape (3, >= n_cols)), each checked as it is made (a NaN fails
# ``abs(x) <= max``), and written only when all are finite, so no Hogwild
# thread ever reads a non-finite value and the check costs no extra pass over
# the row. Returns False when the step was refused. (Plain SGD's one-pass
# triplet step, ``sgd_triplet``, bounds its values from the rows it read
# first: on one thread that is as safe, but with several threads another
# thread's write in between, in a run already near float32's maximum,
# could let it write an infinity; the next sample reading it is refused and
# the run reported as diverged.)


@njit(cache=True, inline="always")
def sgd_row(params, row, grad, n_cols, adagrad_sum_sq, adam_m, adam_v, adam_t, adam_alpha,
            lr, beta_1, beta_2, epsilon, scratch):
    """SGD: ``w -= lr * g``."""
    ok = True
    for f in range(n_cols):
        w = params[row, f] - lr * grad[f]
        scratch[0, f] = w
        ok &= abs(w) <= _FLOAT32_MAX
    if ok:
        for f in range(n_cols):
            params[row, f] = scratch[0, f]
    return ok


@njit(cache=True, inline="always")
def adagrad_row(params, row, grad, n_cols, adagrad_sum_sq, adam_m, adam_v, adam_t, adam_alpha,
                lr, beta_1, beta_2, epsilon, scratch):
    """Adagrad: ``G += g * g; w -= lr * g / (sqrt(G) + epsilon)``, per element."""
    ok = True
    for f in range(n_cols):
        g = grad[f]
        sq = adagrad_sum_sq[row, f] + g * g
        w = params[row, f] - lr * g / (np.sqrt(sq) + epsilon)
        scratch[0, f] = w
        scratch[1, f] = sq
        ok &= (abs(w) <= _FLOAT32_MAX) & (sq <= _FLOAT32_MAX)
    if ok:
        for f in range(n_cols):
            params[row, f] = scratch[0, f]
            adagrad_sum_sq[row, f] = scratch[1, f]
    return ok


@njit(cache=True, inline="always")
def rowwise_adagrad_row(params, row, grad, n_cols, adagrad_sum_sq, adam_m, adam_v, adam_t,
                        adam_alpha, lr, beta_1, beta_2, epsilon, scratch):
    """Row-wise Adagrad (FBGEMM's): one accumulator per row, the mean squared gradient.

    4 bytes of state per row instead of one float per element.
    """
    sq = adagrad_sum_sq[row, 0] + sum_sq(grad, n_cols) / np.float32(n_cols)
    scale = lr / (np.sqrt(sq) + epsilon)
    ok = sq <= _FLOAT32_MAX
    for f in range(n_cols):
        w = params[row, f] - scale * grad[f]
        scratch[0, f] = w
        ok &= abs(w) <= _FLOAT32_MAX
    if ok:
        adagrad_sum_sq[row, 0] = sq
        for f in range(n_cols):
            params[row, f] = scratch[0, f]
    return ok


@njit(cache=True, inline="always")
def adam_row(params, row, grad, n_cols, adagrad_sum_sq, adam_m, adam_v, adam_t, adam_alpha,
             lr, beta_1, beta_2, epsilon, scratch):
    """Lazy Adam: the row's own step count ``adam_t[row]`` drives its bias correction."""
    ok = True
    t = adam_t[row] + 1
    alpha = lr * adam_alpha[t] if t < adam_alpha.shape[0] else lr
    one_minus_b1 = np.float32(1.0) - beta_1
    one_minus_b2 = np.float32(1.0) - beta_2
    for f in range(n_cols):
        g = grad[f]
        m = beta_1 * adam_m[row, f] + one_minus_b1 * g
        v = beta_2 * adam_v[row, f] + one_minus_b2 * g * g
        w = params[row, f] - alpha * m / (np.sqrt(v) + epsilon)
        scratch[0, f] = w
        scratch[1, f] = m
        scratch[2, f] = v
        ok &= (abs(w) <= _FLOAT32_MAX) & (v <= _FLOAT32_MAX)
    if ok:
        adam_t[row] = t
        for f in range(n_cols):
            params[row, f] = scratch[0, f]
            adam_m[row, f] = scratch[1, f]
            adam_v[row, f] = scratch[2, f]
    return ok


# Largest bound on a fused step's new values that is still accepted: far enough
# below float32's maximum that the rounding of the step cannot reach it.
_FUSED_LIMIT = np.float32(1e37)


@njit(cache=True, inline="always")
def sgd_triplet(users, u, items, i, j, n_user_cols, g, lr, reg, sq):
    """Plain SGD of a whole triplet ``(u, i, j)`` in one pass; False if not applied.

    The three steps of :func:`sgd_row` (for the user's ``n_user_cols``
    trained columns and the full item rows), with the same arithmetic, so the
    same new values, given the data gradient ``g`` (of the loss by ``x = u.i -
    u.j``): ``u -= lr (g (i - j) + reg u)``, ``i -= lr (g u + reg i)``,
    ``j -= lr (-g u + reg j)``. Rather than checking every new value (a
    second pass), it bounds them first: with ``sq`` the sum of the squares of
    the three rows (``sum_sq3``/``diff_dot``; infinite or NaN when they are
    huge), no value of the three rows exceeds ``m = sqrt(sq)`` in magnitude and
    no new value exceeds ``m (1 + |lr| (2 |g| + |reg|))``. When that bound is
    not below ``_FUSED_LIMIT`` nothing is written and False is returned: the
    caller then takes the checked row updates, which refuse a step that would
    overflow.
    """
    bound = np.sqrt(sq) * (np.float32(1.0) + abs(lr) * (np.float32(2.0) * abs(g) + abs(reg)))
    if not bound < _FUSED_LIMIT:
        return False
    for f in range(n_user_cols):
        uf = users[u, f]
        pf = items[i, f]
        nf = items[j, f]
        users[u, f] = uf - lr * (g * (pf - nf) + reg * uf)
        items[i, f] = pf - lr * (g * uf + reg * pf)
        items[j, f] = nf - lr * (reg * nf - g * uf)
    for f in range(n_user_cols, items.shape[1]):  # the item bias against a constant 1
        uf = users[u, f]
        pf = items[i, f]
        nf = items[j, f]
        items[i, f] = pf - lr * (g * uf + reg * pf)
        items[j, f] = nf - lr * (reg * nf - g * uf)
    return True


#: Row update of each per-sample optimiser, by code.
ROW_UPDATES = {OPT_SGD: sgd_row, OPT_ADAGRAD: adagrad_row,
               OPT_ADAGRAD_ROWWISE: rowwise_adagrad_row, OPT_ADAM: adam_row}


@njit(cache=True, fastmath={"reassoc", "contract"})
def sum_sq(a, n):
    """Sum of ``a[:n] ** 2`` in float32 (any summation order; NaN and inf propagate)."""
    x = np.float32(0.0)
    for f in range(n):
        x += a[f] * a[f]
    return x


# Reassociation lets LLVM vectorise the sum; no nnan/ninf, so NaN and infinity
# still propagate to the result. Not inlined by numba, which would drop the
# flags: LLVM inlines it with its per-instruction flags intact.
@njit(cache=True, fastmath={"reassoc", "contract"})
def dot(a, r, b, q):
    """Dot product of rows ``a[r]`` and ``b[q]`` in float32 (any summation order)."""
    x = np.float32(0.0)
    for f in range(a.shape[1]):
        x += a[r, f] * b[q, f]
    return x


@njit(cache=True, fastmath={"reassoc", "contract"})
def diff_dot(a, r, b, p, q):
    """``(a[r].b[p] - a[r].b[q], |a[r]|^2 + |b[p]|^2 + |b[q]|^2)`` in one pass, float32."""
    x = np.float32(0.0)
    sq = np.float32(0.0)
    for f in range(a.shape[1]):
        af = a[r, f]
        bp = b[p, f]
        bq = b[q, f]
        x += af * (bp - bq)
        sq += af * af + bp * bp + bq * bq
    return x, sq


@njit(cache=True, fastmath={"reassoc", "contract"})
def sum_sq3(a, r, b, p, q):
    """``|a[r]|^2 + |b[p]|^2 + |b[q]|^2`` in float32 (NaN and inf propagate)."""
    sq = np.float32(0.0)
    for f in range(a.shape[1]):
        sq += a[r, f] * a[r, f] + b[p, f] * b[p, f] + b[q, f] * b[q, f]
    return sq
