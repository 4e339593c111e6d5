"""The per-user listwise training kernel: many negatives per positive, shared by the user.

Each user of a chunk draws one list of ``n_negatives`` negatives (by the
policy: uniform, unseen or popularity-proportional through an alias table) and
scores it once (``n_negatives`` dot products of plain loops: no BLAS inside a
kernel). Every positive of the user is then scored against that shared list,
so a positive costs one dot product, not ``n_negatives``. Negatives that are
positives of the user ("accidental hits", as TensorFlow's
``remove_accidental_hits``) are dropped from the list.

One step per user: the gradients of the user row and of the shared negatives
are accumulated over the user's positives and applied once, after the
positives' own rows (each applied as it is met; the user row is not changed
until the end, so every gradient is taken at the same point).

Losses (the leaves bound by :func:`build.specialise`), with ``s`` the scores:

- ``LOSS_SOFTMAX``: sampled softmax with the log-Q correction,
  ``-log(e^{z_p} / (e^{z_p} + sum_j e^{z_j}))`` with ``z = s / temperature``
  and ``z_j = s_j / temperature - log_q[j]``; ``log_q[j]`` is the log of the
  item's sampling probability times ``n_items`` (0 for uniform draws).
- ``LOSS_CCL``: SimpleX's cosine contrastive loss (Mao et al. 2021),
  ``(1 - s_p) + negative_weight / N * sum_j max(0, s_j - margin)``.
- ``LOSS_WARP``: WARP as LightFM defines it: the negatives of the list are
  tried in turn (from a random start) until one violates ``s_j > s_p - 1``;
  after ``n`` tries the hinge ``1 - s_p + s_j`` is weighted by
  ``log(max(1, floor((n_items - 1) / n)))``; no violator: no loss.

With ``cosine`` the rows are kept on the unit sphere (the caller normalises
them once, the kernel after every step), so a dot product is the cosine; the
gradient is the cosine's (projected on the tangent plane of each row), then
the row is normalised again. L2 regularisation, added before the step, is
then mostly absorbed by the normalisation (its radial part is; with SGD or
row-wise Adagrad it lengthens the tangent step a little).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .build import NoAliasCompiler, specialise
from .optim import OPT_ADAGRAD, OPT_ADAGRAD_ROWWISE, OPT_ADAM, OPT_SGD, ROW_UPDATES, dot
from .rng import next_below
from .sampling import NEG_POPULARITY, draw_alias, draw_negative, is_marked, mark_row

LOSS_SOFTMAX = 2
LOSS_CCL = 3
LOSS_WARP = 4
LISTWISE_LOSSES = {"softmax": LOSS_SOFTMAX, "ccl": LOSS_CCL, "warp": LOSS_WARP}


# ------------------------------------------------------------------ loss leaves
# Each loss is three leaves of one signature each:
#
#   pre = loss_prepare(neg_scores, neg_logq, neg_coef, n_neg, inv_temperature, margin,
#                      negative_weight)
#       Per user, before its positives: zeroes ``neg_coef[:n_neg]`` and returns a
#       float64 constant of the shared list.
#   state, value, g_p, acc = loss_positive(state, s_p, w, pre, neg_scores, neg_coef, n_neg,
#                                          n_items, inv_temperature, margin, negative_weight)
#       One positive of score ``s_p`` and weight ``w``: its loss, dloss/ds_p, and
#       a scalar the loss accumulates over the positives (or it adds its
#       negatives' dloss/ds_j to ``neg_coef`` directly).
#   loss_finish(acc, pre, neg_scores, neg_logq, neg_coef, n_neg, inv_temperature, margin,
#               negative_weight)
#       After the positives: turns the accumulated scalar into ``neg_coef[j]``,
#       the summed dloss/ds_j of each negative.


@njit(cache=True, inline="always")
def softmax_prepare(neg_scores, neg_logq, neg_coef, n_neg, inv_temperature, margin,
                    negative_weight):
    """log sum_j e^{z_j} of the shared list (the positives' common denominator term)."""
    top = -np.inf
    for t in range(n_neg):
        neg_coef[t] = 0.0
        z = np.float64(neg_scores[t]) * inv_temperature - neg_logq[t]
        if z > top:
            top = z
    total = 0.0
    for t in range(n_neg):
        total += math.exp(np.float64(neg_scores[t]) * inv_temperature - neg_logq[t] - top)
    return top + math.log(total)


@njit(cache=True, inline="always")
def softmax_positive(state, s_p, w, pre, neg_scores, neg_coef, n_neg, n_items,
                     inv_temperature, margin, negative_weight):
    """``softplus(L - z_p)`` with ``L = log sum_j e^{z_j}``; negatives' share accumulated."""
    d = pre - s_p * inv_temperature
    e = math.exp(-abs(d))
    if d >= 0.0:
        sig = 1.0 / (1.0 + e)
    else:
        sig = e / (1.0 + e)
    value = math.log1p(e) + max(d, 0.0)
    return state, value, -sig * inv_temperature, w * sig


@njit(cache=True, inline="always")
def softmax_finish(acc, pre, neg_scores, neg_logq, neg_coef, n_neg, inv_temperature, margin,
                   negative_weight):
    """dloss/ds_j = sum_p w_p sigma_p * softmax_j / temperature."""
    scale = acc * inv_temperature
    for t in range(n_neg):
        neg_coef[t] = scale * math.exp(np.float64(neg_scores[t]) * inv_temperature
                                       - neg_logq[t] - pre)


@njit(cache=True, inline="always")
def ccl_prepare(neg_scores, neg_logq, neg_coef, n_neg, inv_temperature, margin,
                negative_weight):
    """``negative_weight / N * sum_j max(0, s_j - margin)`` of the shared list."""
    total = 0.0
    for t in range(n_neg):
        neg_coef[t] = 0.0
        total += max(np.float64(neg_scores[t]) - margin, 0.0)
    return negative_weight * total / n_neg


@njit(cache=True, inline="always")
def ccl_positive(state, s_p, w, pre, neg_scores, neg_coef, n_neg, n_items, inv_temperature,
                 margin, negative_weight):
    """``(1 - s_p) + pre``: the negatives' term is the same for every positive."""
    return state, 1.0 - s_p + pre, -1.0, w


@njit(cache=True, inline="always")
def ccl_finish(acc, pre, neg_scores, neg_logq, neg_coef, n_neg, inv_temperature, margin,
               negative_weight):
    """dloss/ds_j = sum_p w_p * negative_weight / N where s_j > margin."""
    scale = acc * negative_weight / n_neg
    for t in range(n_neg):
        neg_coef[t] = scale if np.float64(neg_scores[t]) > margin else 0.0


@njit(cache=True, inline="always")
def warp_prepare(neg_scores, neg_logq, neg_coef, n_neg, inv_temperature, margin,
                 negative_weight):
    """Nothing shared: zero the negatives' accumulators."""
    for t in range(n_neg):
        neg_coef[t] = 0.0
    return 0.0


@njit(cache=True, inline="always")
def warp_positive(state, s_p, w, pre, neg_scores, neg_coef, n_neg, n_items, inv_temperature,
                  margin, negative_weight):
    """Try the list from a random start until ``s_j > s_p - 1``; LightFM's rank weight."""
    state, first = next_below(state, n_neg)
    for n in range(1, n_neg + 1):
        t = first + n - 1
        if t >= n_neg:
            t -= n_neg
        s_j = np.float64(neg_scores[t])
        if s_j > s_p - 1.0:
            rank_weight = math.log(max(1.0, math.floor((n_items - 1) / n)))
            neg_coef[t] += w * rank_weight
            return state, rank_weight * (1.0 - s_p + s_j), -rank_weight, 0.0
    return state, 0.0, 0.0, 0.0


@njit(cache=True, inline="always")
def warp_finish(acc, pre, neg_scores, neg_logq, neg_coef, n_neg, inv_temperature, margin,
                negative_weight):
    """The coefficients were accumulated positive by positive."""


LOSS_LEAVES = {
    LOSS_SOFTMAX: (softmax_prepare, softmax_positive, softmax_finish),
    LOSS_CCL: (ccl_prepare, ccl_positive, ccl_finish),
    LOSS_WARP: (warp_prepare, warp_positive, warp_finish),
}


# ----------------------------------------------------------------- row helpers
@njit(cache=True, inline="always")
def normalise_row(params, row, n_cols):
    """Scale ``params[row, :n_cols]`` to unit L2 norm (a zero row is left alone)."""
    total = np.float32(0.0)
    for f in range(n_cols):
        total += params[row, f] * params[row, f]
    norm = np.sqrt(total)
    if norm > 0.0:
        inv = np.float32(1.0) / norm
        for f in range(n_cols):
            params[row, f] *= inv


@njit(cache=True, inline="always")
def _row_gradient(out, g, other, q, own, r, score, n_cols, cosine, reg):
    """``out = g * d(score)/d(own[r])`` (+ ``reg * own[r]``): ``g * other[q]``, projected for cosine."""
    gs = np.float32(g)
    if cosine:
        gc = np.float32(g * score)
        for f in range(n_cols):
            out[f] = gs * other[q, f] - gc * own[r, f] + reg * own[r, f]
    else:
        for f in range(n_cols):
            out[f] = gs * other[q, f] + reg * own[r, f]


# -------------------------------------------------------------------- template
def _train_users(indptr, indices, weights, user_order, chunk_bounds, first, end,
                 alias_prob, alias_items, log_q, user_factors, item_factors,
                 user_sum_sq, item_sum_sq, user_adam_m, user_adam_v, user_adam_t,
                 item_adam_m, item_adam_v, item_adam_t, adam_alpha, states,
                 neg_code, n_user_cols, n_negatives, cosine, do_user, do_pos, do_neg, weighted,
                 grad_u, grad_v, scratch, seen, neg_items, neg_scores, neg_logq, neg_coef,
                 pos_coef, pos_scores, lr, reg, beta_1, beta_2, epsilon, inv_temperature, margin, negative_weight,
                 loss_sum, n_trained, n_skipped, n_refused):
    """Train chunks ``first`` to ``end - 1`` of an epoch, one step per user.

    The template of :data:`TRAIN_USERS`: ``row_update`` is one optimiser's row
    update (``optim.ROW_UPDATES``) and ``loss_prepare``/``loss_positive``/
    ``loss_finish`` one loss's leaves. It releases the GIL; the caller runs
    disjoint chunk ranges on several threads at once without locks (Hogwild:
    two threads may update one item row at once); with one thread the result
    is reproducible bit for bit. Compiled without reference counting, so it
    allocates nothing: the scratch arrays come from the caller.

    Parameters
    ----------
    indptr : ndarray of int64, shape (n_users + 1,)
    indices : ndarray of int32, shape (nnz,)
        Positives, sorted within each row.
    weights : ndarray of float32, shape (nnz,) or (0,)
        Weight of each positive (scales its loss and data gradients).
    user_order : ndarray of int64
        Users in the order of this epoch.
    chunk_bounds : ndarray of int64, shape (n_chunks + 1,)
        Chunk ``c`` holds ``user_order[chunk_bounds[c]:chunk_bounds[c + 1]]``.
    first, end : int
        The chunks to train.
    alias_prob, alias_items : ndarray of float64 / int64, shape (n_items,) or (0,)
        Alias table of the popularity policy (``sampling.alias_table``).
    log_q : ndarray of float32, shape (n_items,) or (0,)
        ``log(n_items * q_j)`` of the popularity policy (the log-Q correction).
    user_factors, item_factors : ndarray of float32, shape (n, f)
    user_sum_sq ... item_adam_t, adam_alpha
        Optimiser state, as the per-sample kernel's.
    states : ndarray of uint64, shape (n_chunks,)
        Chunk ``c`` draws from ``states[c]`` only.
    neg_code : int
        ``NEG_UNIFORM``, ``NEG_UNSEEN`` or ``NEG_POPULARITY``.
    n_user_cols : int
        Trained columns of a user row (``f - 1`` with the item-bias column).
    n_negatives : int
        Negatives drawn per user (fewer remain when accidental hits are dropped).
    cosine, do_user, do_pos, do_neg, weighted : bool
        Cosine scores on unit rows; the rows a step moves; whether ``weights`` is used.
    grad_u, grad_v : ndarray of float32, shape (f,)
    scratch : ndarray of float32, shape (3, f)
    seen : ndarray of uint64, shape (ceil(n_items / 64),), all zero
    neg_items, neg_scores, neg_logq, neg_coef : ndarray of int64 / float32 / float64 / float64,
        shape (n_negatives,). Scratch, overwritten.
    pos_coef, pos_scores : ndarray of float64 / float32, shape (>= longest row,)
        Scratch, overwritten: each positive's loss gradient (unweighted) and
        score, kept for the item steps that follow the user's positives.
    lr, reg, beta_1, beta_2, epsilon : float32
    inv_temperature, margin, negative_weight : float64
    loss_sum, n_trained, n_skipped, n_refused : ndarray, shape (n_chunks,)
        Per-chunk totals (float64, int64 x 3), written in place: loss of the
        positives, positives trained, positives without a negative, and steps
        refused (non-finite loss, or a step that would make a row non-finite).

    Modifies
    --------
    The factors, the optimiser state, ``states[first:end]`` and the totals.
    """
    n_items = item_factors.shape[0]
    n_cols = item_factors.shape[1]
    for c in range(first, end):
        state = states[c]
        chunk_loss = 0.0
        chunk_trained = 0
        chunk_skipped = 0
        chunk_refused = 0
        for k in range(chunk_bounds[c], chunk_bounds[c + 1]):
            u = user_order[k]
            start = indptr[u]
            stop = indptr[u + 1]
            if stop == start:
                continue
            mark_row(seen, indices, start, stop, True)
            # The user's shared negatives, accidental hits dropped.
            n_neg = 0
            for _t in range(n_negatives):
                if neg_code == NEG_POPULARITY:
                    state, j = draw_alias(state, alias_prob, alias_items)
                else:
                    state, j = draw_negative(state, indptr, indices, seen, u, n_items, neg_code)
                    if j < 0:
                        break
                if is_marked(seen, j):
                    continue
                neg_items[n_neg] = j
                neg_scores[n_neg] = dot(user_factors, u, item_factors, j)
                neg_logq[n_neg] = log_q[j] if neg_code == NEG_POPULARITY else 0.0
                n_neg += 1
            if n_neg == 0:
                chunk_skipped += stop - start
                mark_row(seen, indices, start, stop, False)
                continue
            pre = loss_prepare(neg_scores, neg_logq, neg_coef, n_neg,  # noqa: F821
                               inv_temperature, margin, negative_weight)
            for f in range(n_cols):
                grad_u[f] = 0.0
            acc = 0.0
            ok = True
            for a in range(start, stop):
                i = indices[a]
                w = weights[a] if weighted else np.float32(1.0)
                s_p = dot(user_factors, u, item_factors, i)
                state, value, g_p, inc = loss_positive(  # noqa: F821
                    state, np.float64(s_p), np.float64(w), pre, neg_scores, neg_coef, n_neg,
                    n_items, inv_temperature, margin, negative_weight)
                acc += inc
                chunk_loss += w * value
                chunk_trained += 1
                if not np.isfinite(value):
                    ok = False
                pos_coef[a - start] = g_p
                pos_scores[a - start] = s_p
                if g_p == 0.0:
                    continue
                g = np.float32(g_p) * w
                # The user's share (from the positive's row before its step).
                if cosine:
                    for f in range(n_cols):
                        grad_u[f] += g * (item_factors[i, f] - s_p * user_factors[u, f])
                else:
                    for f in range(n_cols):
                        grad_u[f] += g * item_factors[i, f]
            loss_finish(acc, pre, neg_scores, neg_logq, neg_coef, n_neg,  # noqa: F821
                        inv_temperature, margin, negative_weight)
            # The negatives' share of the user's gradient, from their rows before their steps.
            for t in range(n_neg):
                gj = np.float32(neg_coef[t])
                if gj == 0.0:
                    continue
                j = neg_items[t]
                if cosine:
                    gc = gj * neg_scores[t]
                    for f in range(n_cols):
                        grad_u[f] += gj * item_factors[j, f] - gc * user_factors[u, f]
                else:
                    for f in range(n_cols):
                        grad_u[f] += gj * item_factors[j, f]
            # The item steps, positives then negatives, at one call site (every
            # inlined copy of a row update costs about a second of first-call
            # compile). A positive's gradient uses its row before its step, and
            # the positives are distinct rows that are never negatives (a CSR row
            # has no repeats, accidental hits were dropped), so their steps need
            # not happen inside their loop. A negative drawn twice is stepped
            # twice, in draw order, as its twin does.
            n_pos = stop - start
            for t in range(n_pos + n_neg):
                if t < n_pos:
                    if not do_pos:
                        continue
                    if pos_coef[t] == 0.0:
                        continue
                    row = np.int64(indices[start + t])
                    w = weights[start + t] if weighted else np.float32(1.0)
                    # float64 from here: the product of two float32 values is exact
                    # in float64, so _row_gradient rounds it as before.
                    gr = np.float64(np.float32(pos_coef[t]) * w)
                    score = pos_scores[t]
                else:
                    if not do_neg:
                        break
                    row = neg_items[t - n_pos]
                    gr = neg_coef[t - n_pos]
                    score = neg_scores[t - n_pos]
                if gr == 0.0:
                    continue
                _row_gradient(grad_v, gr, user_factors, u, item_factors, row, score, n_cols,
                              cosine, reg)
                ok &= row_update(item_factors, row, grad_v, n_cols,  # noqa: F821
                                 item_sum_sq, item_adam_m, item_adam_v, item_adam_t,
                                 adam_alpha, lr, beta_1, beta_2, epsilon, scratch)
                if cosine:
                    normalise_row(item_factors, row, n_cols)
            if do_user:
                for f in range(n_user_cols):
                    grad_u[f] += reg * user_factors[u, f]
                ok &= row_update(user_factors, u, grad_u, n_user_cols,  # noqa: F821
                                 user_sum_sq, user_adam_m, user_adam_v, user_adam_t,
                                 adam_alpha, lr, beta_1, beta_2, epsilon, scratch)
                if cosine:
                    normalise_row(user_factors, u, n_user_cols)
            if not ok:
                chunk_refused += 1
            mark_row(seen, indices, start, stop, False)
        states[c] = state
        loss_sum[c] = chunk_loss
        n_trained[c] = chunk_trained
        n_skipped[c] = chunk_skipped
        n_refused[c] = chunk_refused


def _compiled(name, row_update, leaves):
    prepare, positive, finish = leaves
    return njit(cache=True, nogil=True, error_model="numpy", _nrt=False,
                pipeline_class=NoAliasCompiler)(
        specialise(_train_users, name, row_update=row_update, loss_prepare=prepare,
                   loss_positive=positive, loss_finish=finish))


#: The listwise kernel of each (loss code, optimiser code). Each is compiled
#: (and cached) on its first call only, so a run compiles the one it uses.
TRAIN_USERS = {(loss, opt): _compiled(f"train_users_{loss_name}_{opt_name}", ROW_UPDATES[opt],
                                      LOSS_LEAVES[loss])
               for loss, loss_name in ((LOSS_SOFTMAX, "softmax"), (LOSS_CCL, "ccl"),
                                       (LOSS_WARP, "warp"))
               for opt, opt_name in ((OPT_SGD, "sgd"), (OPT_ADAGRAD, "adagrad"),
                                     (OPT_ADAGRAD_ROWWISE, "rowwise_adagrad"),
                                     (OPT_ADAM, "adam"))}
