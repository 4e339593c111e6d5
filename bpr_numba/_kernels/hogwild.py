"""The per-sample (Hogwild) training kernel.

What an epoch is: one pass over all training positives, each paired with a
fresh negative. The order is cache-friendly: users are visited in a
freshly shuffled order, and each user's positives in a freshly shuffled order,
so the user's row stays in cache while its samples are processed. The pass is
cut into ``n_chunks`` chunks of about equal sample counts at user boundaries;
chunk ``c`` owns random state ``states[c]``, so the random streams depend on
the seed and the chunk, never on the thread: a one-thread run is bit-for-bit
reproducible.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .build import NoAliasCompiler, specialise
from .losses import loss_parts
from .memory import prefetch_row, prefetch_row_for_write
from .optim import (OPT_ADAGRAD, OPT_ADAGRAD_ROWWISE, OPT_ADAM, OPT_SGD, ROW_UPDATES,
                    diff_dot, dot, sgd_triplet, sum_sq3)
from .rng import next_below
from .sampling import (NEG_UNIFORM, any_marked, draw_negative, draw_popular_unseen, is_marked,
                       mark_row)

# Bits of ``update_mask``: which rows of a triplet (u, i, j) a sample updates.
# Full training updates all three; fold-in of users updates only u against
# fixed items, fold-in of items only the positive i against fixed users.
UPDATE_USER = 1
UPDATE_POSITIVE = 2
UPDATE_NEGATIVE = 4
UPDATE_ALL = UPDATE_USER | UPDATE_POSITIVE | UPDATE_NEGATIVE

# The product of loss_parts' b (each in [1, 2]) is folded into the loss sum
# before it could overflow float64 (about 1.8e308).
_PRODUCT_LIMIT = 1e300


def _train_chunks(indptr, indices, weights, user_order, chunk_bounds, first, end, alias_prob,
                 alias_items, user_factors, item_factors, user_sum_sq, item_sum_sq, user_adam_m,
                 user_adam_v, user_adam_t, item_adam_m, item_adam_v, item_adam_t, states,
                 adam_alpha, loss_code, neg_code, n_user_cols, n_candidates, user_candidates,
                 run_length, do_user,
                 do_pos, do_neg, weighted,
                 grad_u, grad_i, grad_j, scratch, order, seen, pool_items, pool_scores,
                 cand, cand_next, lr, reg, beta_1, beta_2, epsilon,
                 loss_sum, n_trained, n_skipped, n_refused):
    """Train chunks ``first`` to ``end - 1`` of ``n_epochs`` epochs, chunk ``c`` of epoch
    ``e`` being the users ``user_order[e, chunk_bounds[e, c]:chunk_bounds[e, c + 1]]``.

    The template of :data:`TRAIN_CHUNKS`: ``row_update`` is one optimiser's
    row update (``optim.ROW_UPDATES``). It releases the GIL, so the caller
    runs disjoint chunks on several threads at once, without locks: two
    threads may update the same item row at once, and one of the updates may
    be partly lost (Hogwild, Niu et al. 2011); with one thread there is no
    race and the result is reproducible. Each call covers a range of chunks
    (``_training.train_epoch_chunks`` hands each thread one range on a small
    epoch, up to four on a large one), so the
    Python dispatch of its ~45 arguments (about 30 us) is paid a few times
    per epoch rather than once per chunk: that dispatch was most of an epoch
    on small data (MovieLens 100k: 256 calls, 10 ms of a 17 ms epoch). Small
    epochs go further: several are stacked in one call (epoch after epoch
    over the same range of chunks, each chunk's stream carried on), which
    saves each epoch's hand-off to the threads (about 1 ms of a 5 ms
    MovieLens 100k epoch on 2 threads). A range stops after an epoch in which
    it refused a step (the run is diverging): its totals of the later epochs
    are left as they were.

    Under ``WINDOW`` a positive's ``n_candidates`` candidates are runs of at
    most ``run_length`` consecutive rows of ``item_factors``, each from a
    random start (wrapping around; rows of the user's positives skipped
    unless the policy is uniform): the caller lays the item rows out in an
    order it shuffles every epoch, so a run is a random set of distinct
    items, read as one contiguous block instead of ``run_length`` random
    rows (``_training.ItemLayout``). The renumbered ``indices`` are then no
    longer sorted within a row: this path never calls ``draw_negative``,
    whose fallback relies on sorted rows.

    It is compiled without reference counting (``_nrt=False``: numba's
    atomic incref/decref around every inlined helper's array arguments made
    the sample loop 2-4x slower), so it allocates nothing: the scratch rows
    come from the caller.

    Parameters
    ----------
    indptr : ndarray of int64, shape (n_users + 1,)
    indices : ndarray of int32, shape (nnz,)
        Positives, sorted within each row (except under ``WINDOW``, see above).
    weights : ndarray of float32, shape (nnz,) or (0,)
        Weight of each positive: it scales the loss and the data gradient of
        the positive's samples (the L2 term is not scaled). Empty: all 1.
    user_order : ndarray of int64, shape (n_epochs, n_order)
        Users in the order of each epoch.
    chunk_bounds : ndarray of int64, shape (n_epochs, n_chunks + 1)
    first, end : int
        The chunks to train, ``first <= c < end``.
    alias_prob, alias_items : ndarray of float64 / int64, shape (n_items,) or (0,)
        Alias table of the popularity policy (``sampling.alias_table``).
    user_factors, item_factors : ndarray of float32, shape (n, f)
    user_sum_sq, item_sum_sq : ndarray of float32
        Adagrad sums of squares (same shapes as the factors, or (0, 0)).
    user_adam_m, user_adam_v, item_adam_m, item_adam_v : ndarray of float32
        Adam moments (same shapes as the factors, or (0, 0)).
    user_adam_t, item_adam_t : ndarray of int64, shape (n,) or (0,)
        Adam step count per row.
    states : ndarray of uint64, shape (n_chunks,)
        One random state per chunk.
    adam_alpha : ndarray of float32, shape (n_steps,)
        Adam's bias correction ``sqrt(1 - beta_2**t) / (1 - beta_1**t)`` by
        step ``t`` (1 past the table), see ``adam_bias_correction``.
    loss_code, neg_code : int
    n_user_cols : int
        Columns of a user row that are trained (``f - 1`` when the last column
        is the constant 1 that pairs with an item bias).
    n_candidates : int
        Negatives drawn per positive; the highest scoring one is trained on.
    user_candidates : ndarray of int64, shape (n_users,) or (0,)
        Per user, its candidates per positive instead of ``n_candidates``
        (each >= 1; the scratch ``cand`` rows as long as the largest).
        Empty: ``n_candidates`` for every user.
    run_length : int
        Under ``WINDOW``: the longest run of consecutive candidate rows.
    pool_size : int
        0: the candidates are fresh draws by the policy. Otherwise each user
        first draws ``pool_size`` negatives and scores them once, and each
        positive's candidates are ``n_candidates`` entries of that pool
        (drawn with replacement): one dot product per pool entry and user
        instead of one per candidate and positive. The chosen entry's pool
        score is refreshed after its step (one more dot product), so a
        negative just pushed down is not picked again on its stale score.
    lr, reg, beta_1, beta_2, epsilon : float32

    loss_sum : ndarray of float64, shape (n_epochs, n_chunks)
    n_trained : ndarray of int64, shape (n_epochs, n_chunks)
    n_skipped : ndarray of int64, shape (n_epochs, n_chunks)
        Samples without any negative (the user has every item).
    n_refused : ndarray of int64, shape (n_epochs, n_chunks)
        Samples with a non-finite score difference (not trained) or a row
        step refused because it would have made a factor non-finite
        (divergence): the factors stay finite.
        Outputs: per-epoch, per-chunk totals, written in place.

    Modifies
    --------
    The factors, the optimiser state, ``states`` and the four totals.
    do_user, do_pos, do_neg : bool
        The rows a sample moves (from ``update_mask``: fold-in moves one side).
    weighted : bool
        Whether ``weights`` is used.
    grad_u, grad_i, grad_j : ndarray of float32, shape (f,)
    scratch : ndarray of float32, shape (3, f)
    order : ndarray of int64, shape (>= longest row,)
    seen : ndarray of uint64, shape (ceil(n_items / 64),), or (0,) under "uniform"
    pool_items, pool_scores : ndarray of int64 / float32, shape (pool_size,)
    cand, cand_next : ndarray of int64, shape (>= any user's candidates,)
        Scratch, overwritten.
    """
    n_items = item_factors.shape[0]
    n_cols = item_factors.shape[1]
    for e in range(user_order.shape[0]):
        epoch_refused = 0
        for c in range(first, end):
            state = states[c]
            chunk_loss = 0.0
            chunk_trained = 0
            chunk_skipped = 0
            chunk_refused = 0
            loss_product = 1.0  # of the loss_parts b: the sum of their logs, taken rarely
            for k in range(chunk_bounds[e, c], chunk_bounds[e, c + 1]):
                u = user_order[e, k]
                start = indptr[u]
                n_pos = indptr[u + 1] - start
                nc = user_candidates[u] if user_candidates.shape[0] > 0 else n_candidates
                if neg_code != NEG_UNIFORM:
                    mark_row(seen, indices, start, start + n_pos, True)
                for a in range(n_pos):
                    order[a] = start + a
                for a in range(n_pos - 1, 0, -1):  # Fisher-Yates
                    state, b = next_below(state, a + 1)
                    tmp = order[a]
                    order[a] = order[b]
                    order[b] = tmp
                n_pool = 0
                if WITH_POOL:  # noqa: F821 (bound by specialise)
                    # The user's candidate pool, drawn and scored once for all its positives.
                    n_pool = pool_items.shape[0]
                    for q in range(pool_items.shape[0]):
                        if POPULARITY:  # noqa: F821 (bound by specialise)
                            state, jq = draw_popular_unseen(state, indptr, indices, seen, u,
                                                            n_items, alias_prob, alias_items)
                        else:
                            state, jq = draw_negative(state, indptr, indices, seen, u, n_items,
                                                      neg_code)
                        if jq < 0:
                            n_pool = 0
                            break
                        pool_items[q] = jq
                        pool_scores[q] = dot(user_factors, u, item_factors, jq)
                n_next = 0
                n_cur = 0
                # Step s trains positive s - 1. Without a pool, each positive's
                # candidates are drawn one step ahead (the same draws in the same
                # order: draws never depend on the factors) and their rows
                # prefetched, so those reads overlap the previous sample's arithmetic.
                for step in range(n_pos + 1):
                    a = step - 1
                    if not WITH_POOL:  # noqa: F821
                        n_cur = n_next
                        for t in range(n_cur):
                            cand[t] = cand_next[t]
                        if step < n_pos:
                            if WINDOW:  # noqa: F821
                                # The starts of the runs; their rows are scored at the step.
                                n_next = 0
                                if neg_code == NEG_UNIFORM or n_pos < n_items:
                                    n_next = (nc + run_length - 1) // run_length
                                for t in range(n_next):
                                    state, cand_next[t] = next_below(state, n_items)
                            elif POPULARITY:  # noqa: F821
                                state, n_next = _draw_popular_candidates(
                                    state, indptr, indices, seen, u, n_items, alias_prob,
                                    alias_items, nc, cand_next)
                            else:
                                state, n_next = _draw_candidates(state, indptr, indices, seen, u,
                                                                 n_items, neg_code, nc, cand_next)
                            # Rows the step will write are asked for with write intent.
                            if do_pos:
                                prefetch_row_for_write(item_factors, indices[order[step]])
                                _prefetch_state(item_sum_sq, item_adam_m, item_adam_v,
                                                indices[order[step]])
                            else:
                                prefetch_row(item_factors, indices[order[step]])
                            if WINDOW:  # noqa: F821
                                for t in range(n_next):  # a run's first row; the rest streams
                                    prefetch_row(item_factors, cand_next[t])
                            elif n_next == 1 and do_neg:
                                prefetch_row_for_write(item_factors, cand_next[0])
                                _prefetch_state(item_sum_sq, item_adam_m, item_adam_v,
                                                cand_next[0])
                            else:
                                for t in range(n_next):
                                    prefetch_row(item_factors, cand_next[t])
                    if a < 0:
                        continue
                    i = indices[order[a]]
                    w = weights[order[a]] if weighted else np.float32(1.0)
                    if WITH_POOL:  # noqa: F821
                        if n_pool == 0:
                            chunk_skipped += 1
                            continue
                        # The best scored of the user's nc pool entries (scores from the
                        # pool's draw), then the chosen negative's current score.
                        state, q = next_below(state, n_pool)
                        for _c in range(nc - 1):
                            state, q2 = next_below(state, n_pool)
                            if pool_scores[q2] > pool_scores[q]:
                                q = q2
                        j = pool_items[q]
                        x = dot(user_factors, u, item_factors, i) - \
                            dot(user_factors, u, item_factors, j)
                        sq = np.float32(-1.0)
                    else:
                        if n_cur == 0:
                            chunk_skipped += 1
                            continue
                        j = cand[0]
                        if WINDOW:  # noqa: F821
                            j, best = _best_of_run(user_factors, u, item_factors, seen,
                                                   neg_code != NEG_UNIFORM, cand[0],
                                                   min(run_length, nc))
                            for t in range(1, n_cur):
                                jt, st = _best_of_run(
                                    user_factors, u, item_factors, seen, neg_code != NEG_UNIFORM,
                                    cand[t], min(run_length, nc - t * run_length))
                                if st > best:
                                    best = st
                                    j = jt
                            x = dot(user_factors, u, item_factors, i) - best
                            sq = np.float32(-1.0)
                        elif n_cur == 1:
                            # One pass over the three rows: the score difference and the
                            # squares the fused SGD step bounds its result with.
                            x, sq = diff_dot(user_factors, u, item_factors, i, j)
                        else:
                            best = dot(user_factors, u, item_factors, j)
                            for t in range(1, n_cur):
                                s2 = dot(user_factors, u, item_factors, cand[t])
                                if s2 > best:
                                    best = s2
                                    j = cand[t]
                            x = dot(user_factors, u, item_factors, i) - best
                            sq = np.float32(-1.0)
                    if do_neg and (WITH_POOL or WINDOW or n_cur > 1):  # noqa: F821
                        # The chosen negative's state is a random row that the step
                        # updates after the user's and the positive's: ask for it now.
                        _prefetch_state(item_sum_sq, item_adam_m, item_adam_v, j)
                    if not np.isfinite(x):
                        chunk_refused += 1  # a score overflowed: the run diverges
                        continue
                    dx, loss_a, loss_b = loss_parts(loss_code, np.float64(x))
                    if weighted:
                        chunk_loss += w * (loss_a + math.log(loss_b))
                    else:
                        chunk_loss += loss_a
                        loss_product *= loss_b
                        if loss_product > _PRODUCT_LIMIT:
                            chunk_loss += math.log(loss_product)
                            loss_product = 1.0
                    chunk_trained += 1
                    if i == j:
                        continue  # x is 0 and the data gradients cancel: nothing to learn
                    g = np.float32(dx) * w
                    stepped = False
                    if FUSED_SGD and do_user and do_pos and do_neg:  # noqa: F821
                        # Plain SGD of the whole triplet in one pass over its rows,
                        # when no new value can leave float32's range (else the
                        # checked row updates below, which refuse such a step).
                        if sq < 0:
                            sq = sum_sq3(user_factors, u, item_factors, i, j)
                        stepped = sgd_triplet(user_factors, u, item_factors, i, j, n_user_cols, g,
                                              lr, reg, sq)
                    if not stepped:
                        for f in range(n_cols):
                            uf = user_factors[u, f]
                            grad_u[f] = g * (item_factors[i, f] - item_factors[j, f]) + reg * uf
                            grad_i[f] = g * uf + reg * item_factors[i, f]
                            grad_j[f] = reg * item_factors[j, f] - g * uf
                        ok = True
                        if do_user:
                            ok &= row_update(user_factors, u, grad_u, n_user_cols,  # noqa: F821
                                             user_sum_sq, user_adam_m, user_adam_v, user_adam_t,
                                             adam_alpha, lr, beta_1, beta_2, epsilon, scratch)
                        if do_pos:
                            ok &= row_update(item_factors, i, grad_i, n_cols,  # noqa: F821
                                             item_sum_sq, item_adam_m, item_adam_v, item_adam_t,
                                             adam_alpha, lr, beta_1, beta_2, epsilon, scratch)
                        if do_neg:
                            ok &= row_update(item_factors, j, grad_j, n_cols,  # noqa: F821
                                             item_sum_sq, item_adam_m, item_adam_v, item_adam_t,
                                             adam_alpha, lr, beta_1, beta_2, epsilon, scratch)
                        if not ok:
                            chunk_refused += 1
                    if WITH_POOL:  # noqa: F821
                        # The chosen entry's score after its step: a stale high score
                        # would make it chosen again for the user's next positives.
                        pool_scores[q] = dot(user_factors, u, item_factors, j)
                if neg_code != NEG_UNIFORM:
                    mark_row(seen, indices, start, start + n_pos, False)
            states[c] = state
            loss_sum[e, c] = chunk_loss + math.log(loss_product)
            n_trained[e, c] = chunk_trained
            n_skipped[e, c] = chunk_skipped
            n_refused[e, c] = chunk_refused
            epoch_refused += chunk_refused
        if epoch_refused:
            break  # diverging: this range of chunks trains no later epoch


@njit(cache=True, inline="always")
def _prefetch_state(sum_sq, adam_m, adam_v, row):
    """Prefetch, for writing, row ``row`` of the optimiser state arrays in use (Adagrad's
    sums of squares or Adam's moments; the unused ones are (0, 0) placeholders).

    A step reads and writes the state rows of its item rows; they live in
    arrays as large as the factors, so an unannounced state row is another
    cache miss on the sample's critical path. Announcing the positive's one
    step ahead and the chosen negative's before the user's and the
    positive's steps made the quality preset's Gowalla epoch (per-element
    Adagrad, 65 floats of state a row, 50 candidates in runs) 1.24x and
    1.38x as fast in two runs of ``python bench/ab_epochs.py --base
    184f7e5``; row-wise Adagrad's one float a row gained nothing measurable.
    """
    if sum_sq.shape[0] > 0:
        prefetch_row_for_write(sum_sq, row)
    if adam_m.shape[0] > 0:
        prefetch_row_for_write(adam_m, row)
        prefetch_row_for_write(adam_v, row)


@njit(cache=True, inline="always")
def _draw_candidates(state, indptr, indices, seen, u, n_items, neg_code, n_candidates, out):
    """Draw ``n_candidates`` negatives for user ``u`` into ``out``; returns (state, count).

    The count is 0 (and nothing more is drawn) when the user has no negative.
    """
    for t in range(n_candidates):
        state, j = draw_negative(state, indptr, indices, seen, u, n_items, neg_code)
        if j < 0:  # only ever at t = 0: whether a user has a negative does not change
            return state, 0
        out[t] = j
    return state, n_candidates


@njit(cache=True, inline="always")
def _best_of_run(user_factors, u, item_factors, seen, skip_seen, r, n_candidates):
    """The best scored of the ``n_candidates`` rows from row ``r`` on; returns (row, score).

    Rows follow each other from ``r``, wrapping around after the last one;
    with ``skip_seen`` the rows marked in ``seen`` (the user's positives) are
    passed over and not counted. The caller makes sure one row is left
    (not every item is a positive of the user) and ``n_candidates >= 1``.
    """
    n_items = item_factors.shape[0]
    end = r + n_candidates
    if end <= n_items and not (skip_seen and any_marked(seen, r, end)):
        # The common case, as the loop below would score it: no wrap-around and
        # no positive of the user in the run, so no row is checked one by one
        # (the quality preset's Gowalla epoch 1.26x to 1.30x as fast in two
        # runs of ``python bench/ab_epochs.py --base 8c807fa``).
        j = r
        best = dot(user_factors, u, item_factors, r)
        for q in range(r + 1, end):
            s = dot(user_factors, u, item_factors, q)
            if s > best:
                best = s
                j = q
        return j, best
    best = np.float32(0.0)
    j = -1
    n = 0
    for _ in range(n_items):
        if not (skip_seen and is_marked(seen, r)):
            s = dot(user_factors, u, item_factors, r)
            if j < 0 or s > best:
                best = s
                j = r
            n += 1
            if n == n_candidates:
                break
        r += 1
        if r == n_items:
            r = 0
    return j, best


@njit(cache=True, inline="always")
def _draw_popular_candidates(state, indptr, indices, seen, u, n_items, alias_prob, alias_items,
                             n_candidates, out):
    """:func:`_draw_candidates` of the popularity policy (``sampling.draw_popular_unseen``)."""
    for t in range(n_candidates):
        state, j = draw_popular_unseen(state, indptr, indices, seen, u, n_items, alias_prob,
                                       alias_items)
        if j < 0:
            return state, 0
        out[t] = j
    return state, n_candidates


#: How a kernel draws a positive's candidates: fresh draws by the policy, a
#: per-user pool, the popularity policy's draws (fresh or pooled), or a run
#: of consecutive rows.
DRAWS = ("fresh", "pool", "popularity", "popularity_pool", "window")


def _compiled(name, row_update, draw):
    return njit(cache=True, nogil=True, error_model="numpy", _nrt=False,
                pipeline_class=NoAliasCompiler)(
        specialise(_train_chunks, name, row_update=row_update, WITH_POOL=draw.endswith("pool"),
                   FUSED_SGD=row_update is ROW_UPDATES[OPT_SGD],
                   POPULARITY=draw.startswith("popularity"), WINDOW=draw == "window"))


#: The per-sample kernel of each optimiser code and way of drawing the
#: candidates (``DRAWS``; each way's code is compiled only into its kernels).
#: Each is compiled (and cached) on its first call only, so a run compiles
#: the one it uses.
TRAIN_CHUNKS = {(code, draw): _compiled(
                    "train_chunks_" + name + ("" if draw == "fresh" else "_" + draw),
                    ROW_UPDATES[code], draw)
                for code, name in ((OPT_SGD, "sgd"), (OPT_ADAGRAD, "adagrad"),
                                   (OPT_ADAGRAD_ROWWISE, "rowwise_adagrad"),
                                   (OPT_ADAM, "adam"))
                for draw in DRAWS}
