"""Slow NumPy twins of the training kernels, written to be obviously right.

They draw random numbers through the same SplitMix64 primitive as the kernels
(``next_below``), in the same order, so a one-thread kernel run and its twin
see the same samples and can be compared number for number.
"""

from __future__ import annotations

import math

import numpy as np

from bpr_numba._kernels.losses import LOSSES
from bpr_numba._kernels.losses import loss_and_grad as _jit_loss_and_grad
from bpr_numba._kernels.optim import dot
from bpr_numba._kernels.rng import next_below as _jit_next_below
from bpr_numba._kernels.rng import next_unit as _jit_next_unit
from bpr_numba._training import adam_bias_correction

F32 = np.float32


def optimizer_state(shape, opt, initial_accumulator=0.0):
    """Kernel state arrays of ``opt`` for factors of ``shape``, and a copy for the twin.

    Returns ``(kernel, ref)``: ``kernel`` has every key (``sum_sq``, ``m``, ``v``,
    ``t``), unused ones as empty placeholders; ``ref`` copies the ones in use.
    """
    empty2, empty1 = np.zeros((0, 0), F32), np.zeros(0, np.int64)
    n = shape[0]
    kernel = dict(sum_sq=empty2, m=empty2, v=empty2, t=empty1)
    if opt == "adagrad":
        kernel["sum_sq"] = np.full(shape, initial_accumulator, F32)
    elif opt == "rowwise-adagrad":
        kernel["sum_sq"] = np.full((n, 1), initial_accumulator, F32)
    elif opt == "adam":
        kernel.update(m=np.zeros(shape, F32), v=np.zeros(shape, F32), t=np.zeros(n, np.int64))
    return kernel, {k: a.copy() for k, a in kernel.items() if a.size}
_ADAM_TABLE = adam_bias_correction(0.9, 0.999)


def next_below(state, n):
    """The kernels' bounded draw, keeping the state a uint64 between calls."""
    state, value = _jit_next_below(np.uint64(state), n)
    return np.uint64(state), int(value)


def loss_and_grad(loss, x):
    """Per-sample loss of ``x = u.p - u.n`` and its derivative, from the textbook formulas."""
    s = 1.0 / (1.0 + math.exp(-x)) if x > -700 else 0.0
    if loss == "bpr":
        return -math.log(s) if s > 0 else -x, s - 1.0
    return 1.0 - s, -s * (1.0 - s)


def draw_negative(state, row, n_items, negatives, tries=8, alias=None):
    """The kernels' negative policies, spelled out with set operations.

    ``alias``: the ``(prob, alias)`` table of "popularity" (redrawn on a hit
    of ``row`` as "unseen" redraws uniform draws).
    """
    if negatives == "uniform":
        return next_below(state, n_items)
    if len(row) >= n_items:
        return state, -1
    for _ in range(tries):
        if negatives == "popularity":
            state, j = draw_alias(state, *alias)
        else:
            state, j = next_below(state, n_items)
        if j not in set(row.tolist()):
            return state, j
    complement = np.setdiff1d(np.arange(n_items), row)
    state, r = next_below(state, n_items - len(row))
    return state, int(complement[r])


def candidate_runs(state, row, n_items, negatives, n_candidates, run_length, item_order=None):
    """``candidate_sampling="window"``'s candidates: ``(state, items)``.

    ``ceil(n_candidates / run_length)`` random starts, then from each start
    the next items of ``item_order`` (wrapping around; under "unseen" the
    user's positives ``row`` left out) until the run has ``run_length``
    items (the last run the rest of ``n_candidates``).
    """
    order = np.arange(n_items) if item_order is None else np.asarray(item_order)
    positives = set(row.tolist())
    n_runs = -(-n_candidates // run_length)
    starts = []
    for _ in range(n_runs):
        state, start = next_below(state, n_items)
        starts.append(start)
    items = []
    for t, start in enumerate(starts):
        wanted = min(run_length, n_candidates - t * run_length)
        walk = [int(order[(start + k) % n_items]) for k in range(n_items)]
        if negatives != "uniform":
            walk = [item for item in walk if item not in positives]
        items += walk[:wanted]
    return state, items


def optimizer_step(opt, w, g, state, row, lr, reg_unused=None, beta_1=0.9, beta_2=0.999, eps=1e-8):
    """One textbook step of sgd / adagrad / row-wise adagrad / lazy adam on ``w[row]`` (in place, float32)."""
    lr, beta_1, beta_2, eps = F32(lr), F32(beta_1), F32(beta_2), F32(eps)
    if opt == "sgd":
        w[row] = w[row] - lr * g
    elif opt == "adagrad":
        state["sum_sq"][row] = state["sum_sq"][row] + g * g
        w[row] = w[row] - lr * g / (np.sqrt(state["sum_sq"][row]) + eps)
    elif opt == "rowwise-adagrad":
        # One accumulator per row: the mean squared gradient of the row.
        state["sum_sq"][row] = state["sum_sq"][row] + np.mean(g * g, dtype=F32)
        w[row] = w[row] - (lr / (np.sqrt(state["sum_sq"][row]) + eps)) * g
    else:
        state["t"][row] += 1
        t = state["t"][row]
        # The kernel looks the bias correction up in a float32 table (tested
        # against the formula on its own); Adam's normalised step turns a
        # rounding difference in a near-zero gradient into a visible one.
        alpha = lr * _ADAM_TABLE[t] if t < _ADAM_TABLE.size else lr
        state["m"][row] = beta_1 * state["m"][row] + (F32(1) - beta_1) * g
        state["v"][row] = beta_2 * state["v"][row] + (F32(1) - beta_2) * g * g
        w[row] = w[row] - alpha * state["m"][row] / (np.sqrt(state["v"][row]) + eps)


def hogwild_epoch(indptr, indices, user_order, chunk_bounds, U, V, user_state, item_state,
                  states, loss, opt, negatives, n_user_cols, n_candidates, lr, reg,
                  weights=None, update=("user", "positive", "negative"), pool_size=0,
                  alias=None, run_length=0, item_order=None):
    """Serial twin of ``train_epoch_chunks``; modifies U, V, the states; returns the loss sum.

    ``weights`` (one per positive, CSR order) scale each sample's loss and data
    gradient; ``update`` names the rows a sample moves; ``pool_size`` > 0 picks
    each positive's candidates from a per-user pool scored once, the chosen
    entry scored again after its step. ``run_length`` > 0: the candidates
    are runs of items consecutive in ``item_order`` (a permutation of the
    items; None: their ids), ``candidate_runs``. ``n_candidates``: one count
    for every user, or an array of each user's count.
    """
    n_items, k = V.shape
    reg = F32(reg)
    total = 0.0
    for c in range(len(chunk_bounds) - 1):
        state = states[c]
        for u in user_order[chunk_bounds[c]:chunk_bounds[c + 1]]:
            nc = int(n_candidates[u]) if np.ndim(n_candidates) else n_candidates
            row = indices[indptr[u]:indptr[u + 1]]
            order = list(range(len(row)))
            for a in range(len(row) - 1, 0, -1):
                state, b = next_below(state, a + 1)
                order[a], order[b] = order[b], order[a]
            pool = []
            for _ in range(pool_size):
                state, jq = draw_negative(state, row, n_items, negatives, alias=alias)
                if jq < 0:
                    pool = []
                    break
                pool.append((jq, dot(U, u, V, jq)))
            for a in order:
                i = row[a]
                w = F32(1) if weights is None else weights[indptr[u] + a]
                if pool_size:
                    if not pool:
                        continue
                    state, q = next_below(state, len(pool))
                    for _ in range(nc - 1):
                        state, q2 = next_below(state, len(pool))
                        if pool[q2][1] > pool[q][1]:
                            q = q2
                    j = pool[q][0]
                    best = dot(U, u, V, j)
                elif run_length:
                    if negatives != "uniform" and len(row) >= n_items:
                        continue  # no negative: nothing drawn
                    state, candidates = candidate_runs(state, row, n_items, negatives,
                                                       nc, run_length, item_order)
                    scores = [dot(U, u, V, c) for c in candidates]
                    j = candidates[int(np.argmax(scores))]  # the first of equal bests
                    best = scores[int(np.argmax(scores))]
                else:
                    state, j = draw_negative(state, row, n_items, negatives, alias=alias)
                    if j < 0:
                        continue
                    # The kernel's dot leaf (tested against np.dot on its own), so
                    # both sides pick the same candidate even on near-ties.
                    best = dot(U, u, V, j)
                    for _ in range(nc - 1):
                        state, j2 = draw_negative(state, row, n_items, negatives, alias=alias)
                        score = dot(U, u, V, j2)
                        if score > best:
                            best, j = score, j2
                x = dot(U, u, V, i) - best
                value, dx = loss_and_grad(loss, float(x))
                total += float(w) * value
                if i == j:
                    continue
                g = F32(dx) * w
                gu = g * (V[i] - V[j]) + reg * U[u]
                gi = g * U[u] + reg * V[i]
                gj = reg * V[j] - g * U[u]
                cols = slice(0, n_user_cols)
                u_row = U[u:u + 1, cols]  # a view: the step writes through
                if "user" in update:
                    optimizer_step(opt, u_row, gu[cols], _rows(user_state, u, cols), 0, lr)
                if "positive" in update:
                    optimizer_step(opt, V, gi, item_state, i, lr)
                if "negative" in update:
                    optimizer_step(opt, V, gj, item_state, j, lr)
                if pool_size:
                    # The chosen entry is scored again after its step.
                    pool[q] = (j, dot(U, u, V, j))
        states[c] = state
    return total


def _rows(state, row, cols):
    """Views of one row's optimiser state, restricted to ``cols``."""
    view = {}
    for key, value in state.items():
        if key == "t":
            view[key] = value[row:row + 1]
        else:
            view[key] = value[row:row + 1, cols]
    return view


def keras_epochs(U, V, users, positives, negatives, batch_size, epochs, lr=0.001, beta_1=0.9,
                 beta_2=0.999, eps=1e-7, loss="sigmoid", state=None):
    """Keras's training loop from the formulas: batch-mean loss, dense Adam on all rows.

    Returns the new ``(U, V, state)``; ``state`` holds m, v of both matrices and the step.
    """
    U = U.copy()
    V = V.copy()
    if state is None:
        state = {"mU": np.zeros_like(U), "vU": np.zeros_like(U),
                 "mV": np.zeros_like(V), "vV": np.zeros_like(V), "t": 0}
    lr, beta_1, beta_2, eps = F32(lr), F32(beta_1), F32(beta_2), F32(eps)
    n = len(users)
    for _ in range(epochs):
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            gU = np.zeros_like(U)
            gV = np.zeros_like(V)
            for s in range(start, stop):
                u, i, j = users[s], positives[s], negatives[s]
                # Two float64 dot products summed in index order, like the kernel:
                # with cancelling gradients the result is rounding noise, which
                # Adam then scales up, so the order has to be the same.
                xp = 0.0
                xn = 0.0
                for f in range(U.shape[1]):
                    xp += float(U[u, f]) * float(V[i, f])
                    xn += float(U[u, f]) * float(V[j, f])
                x = xp - xn
                # The kernel's loss leaf (tested against the textbook formulas and
                # finite differences on its own): when two samples' gradients
                # cancel, Adam scales their rounding noise up to a full step, so
                # both sides must round alike.
                _, dx = _jit_loss_and_grad(LOSSES[loss], x)
                g = F32(dx * (1.0 / (stop - start)))
                gU[u] += g * V[i]
                gU[u] -= g * V[j]
                gV[i] += g * U[u]
                gV[j] -= g * U[u]
            state["t"] += 1
            t = state["t"]
            # In float64 from the float32 hyperparameters, then rounded once.
            alpha = F32(float(lr) * math.sqrt(1.0 - float(beta_2) ** t) / (1.0 - float(beta_1) ** t))
            for W, G, m, v in ((U, gU, "mU", "vU"), (V, gV, "mV", "vV")):
                state[m] = beta_1 * state[m] + (F32(1) - beta_1) * G
                state[v] = beta_2 * state[v] + (F32(1) - beta_2) * G * G
                W -= alpha * state[m] / (np.sqrt(state[v]) + eps)
    return U, V, state


# ---------------------------------------------------------------- listwise twins
def draw_alias(state, prob, alias):
    """Walker's alias draw: a uniform column, kept with probability ``prob``, else its alias."""
    state, k = next_below(state, len(prob))
    state, x = _jit_next_unit(np.uint64(state))
    return np.uint64(state), int(k if x < prob[k] else alias[k])


def alias_distribution(prob, alias):
    """The distribution an alias table draws from: ``(prob[k] + sum of alias mass) / n``."""
    n = len(prob)
    p = np.asarray(prob, np.float64) / n
    np.add.at(p, np.asarray(alias), (1.0 - np.asarray(prob, np.float64)) / n)
    return p


def listwise_loss(loss, s_p, s_neg, log_q, temperature=1.0, margin=0.9, negative_weight=150.0,
                  first=0, n_items=None):
    """One positive's loss against the shared list, from the papers' formulas (float64).

    For "warp", ``first`` is where the scan of the list starts.
    """
    s_neg = np.asarray(s_neg, np.float64)
    if loss == "softmax":
        z_p = s_p / temperature
        z = s_neg / temperature - np.asarray(log_q, np.float64)
        return -(z_p - np.logaddexp(z_p, np.logaddexp.reduce(z)))
    if loss == "ccl":
        return (1.0 - s_p) + negative_weight / len(s_neg) * np.maximum(0.0, s_neg - margin).sum()
    n = len(s_neg)
    for tries in range(1, n + 1):
        s_j = s_neg[(first + tries - 1) % n]
        if s_j > s_p - 1.0:
            return math.log(max(1.0, math.floor((n_items - 1) / tries))) * (1.0 - s_p + s_j)
    return 0.0


def _numeric_score_gradients(loss, s_pos, s_neg, log_q, w, kw):
    """d(sum_p w_p loss_p)/d(s_p) and /d(s_j) by central differences (float64)."""
    h = 1e-6

    def total(sp, sn):
        return sum(w[a] * listwise_loss(loss, sp[a], sn, log_q, first=kw["firsts"][a],
                                        **kw["params"]) for a in range(len(sp)))

    g_pos = np.zeros(len(s_pos))
    g_neg = np.zeros(len(s_neg))
    for a in range(len(s_pos)):
        up, down = s_pos.copy(), s_pos.copy()
        up[a] += h
        down[a] -= h
        g_pos[a] = (total(up, s_neg) - total(down, s_neg)) / (2 * h)
    for t in range(len(s_neg)):
        up, down = s_neg.copy(), s_neg.copy()
        up[t] += h
        down[t] -= h
        g_neg[t] = (total(s_pos, up) - total(s_pos, down)) / (2 * h)
    return g_pos, g_neg


def listwise_epoch(indptr, indices, user_order, chunk_bounds, U, V, user_state, item_state,
                   states, loss, opt, negatives, n_user_cols, n_negatives, lr, reg,
                   temperature=1.0, margin=0.9, negative_weight=150.0, cosine=False,
                   alias=None, log_q=None, weights=None,
                   update=("user", "positive", "negative")):
    """Serial twin of the listwise kernel; modifies U, V, the states; returns the loss sum.

    Per user: draw the shared negatives (accidental hits dropped), score them
    and the positives with the rows as they are at the user's start, take the
    gradients of ``sum_p w_p loss_p`` with respect to the scores by central
    differences of :func:`listwise_loss` (WARP: the list's scan starts where
    the kernel's draw says), then step: each positive's row, the negatives'
    rows (one step each, summed over the positives), the user row.
    """
    n_items = V.shape[0]
    reg = F32(reg)
    total = 0.0
    params = dict(temperature=temperature, margin=margin, negative_weight=negative_weight,
                  n_items=n_items)
    for c in range(len(chunk_bounds) - 1):
        state = states[c]
        for u in user_order[chunk_bounds[c]:chunk_bounds[c + 1]]:
            row = indices[indptr[u]:indptr[u + 1]]
            if len(row) == 0:
                continue
            negs = []
            for _ in range(n_negatives):
                if negatives == "popularity":
                    state, j = draw_alias(state, *alias)
                else:
                    state, j = draw_negative(state, row, n_items, negatives)
                    if j < 0:
                        break
                if j not in set(row.tolist()):
                    negs.append(j)
            if not negs:
                continue
            lq = (np.zeros(len(negs)) if negatives != "popularity"
                  else np.asarray([log_q[j] for j in negs], np.float64))
            s_neg = np.array([dot(U, u, V, j) for j in negs], np.float64)
            s_pos = np.array([dot(U, u, V, i) for i in row], np.float64)
            w = (np.ones(len(row)) if weights is None
                 else np.asarray(weights[indptr[u]:indptr[u + 1]], np.float64))
            firsts = np.zeros(len(row), np.int64)
            if loss == "warp":
                for a in range(len(row)):
                    state, firsts[a] = next_below(state, len(negs))
            kw = dict(firsts=firsts, params={k: params[k] for k in params
                                              if loss == "warp" or k != "n_items"})
            total += sum(w[a] * listwise_loss(loss, s_pos[a], s_neg, lq, first=firsts[a],
                                              **kw["params"]) for a in range(len(row)))
            g_pos, g_neg = _numeric_score_gradients(loss, s_pos, s_neg, lq, w, kw)
            u0 = U[u].astype(np.float64)

            def d_own(g, own, other, score):
                # d(g * score)/d(own): g * other, on the sphere g * (other - score * own).
                return g * (other - score * own) if cosine else g * other

            gu = np.zeros_like(u0)
            for a, i in enumerate(row):
                gu += d_own(g_pos[a], u0, V[i].astype(np.float64), s_pos[a])
            for t, j in enumerate(negs):
                gu += d_own(g_neg[t], u0, V[j].astype(np.float64), s_neg[t])
            steps = []
            if "positive" in update:
                steps += [(i, g_pos[a], s_pos[a]) for a, i in enumerate(row) if g_pos[a] != 0]
            if "negative" in update:
                steps += [(j, g_neg[t], s_neg[t]) for t, j in enumerate(negs) if g_neg[t] != 0]
            for item, g, score in steps:
                gv = (d_own(g, V[item].astype(np.float64), u0, score) + reg * V[item]).astype(F32)
                optimizer_step(opt, V, gv, item_state, item, lr)
                if cosine:
                    V[item] /= np.linalg.norm(V[item])
            if "user" in update:
                cols = slice(0, n_user_cols)
                gu = (gu[cols] + reg * U[u, cols]).astype(F32)
                u_row = U[u:u + 1, cols]
                optimizer_step(opt, u_row, gu, _rows(user_state, u, cols), 0, lr)
                if cosine:
                    U[u, cols] /= np.linalg.norm(U[u, cols])
        states[c] = state
    return total
