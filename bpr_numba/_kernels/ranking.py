"""Evaluation kernel: every per-user ranking metric in one pass over the users.

The Python driver (``evaluate_factors`` in ``bpr_numba._scoring``) walks over
chunks of users. For each chunk it computes the score block ``U[chunk] @ V.T``
with BLAS (float32, in Python), then runs the kernel :func:`evaluate_block` on
disjoint row ranges of the block in several threads (it releases the GIL); the
kernel computes all requested metrics of its users at once from the score rows
and the CSR test/train rows.

Per user, with ``T`` the test items, ``R`` the train items (empty when no
train matrix is given) and ``n_items`` the catalogue size:

* ``full_auc`` (the 2016 Keras notebook's metric): positives ``T``,
  negatives every other item, train positives included.
* every other metric: positives ``P = T \\ R``, candidates every item not in
  ``R`` (LightFM semantics), negatives ``candidates \\ P``.

Ranking order: score descending, ties broken by item id ascending. AUC counts
a tied (positive, negative) pair as one half (scikit-learn's
``roc_auc_score``). A user takes part in a metric only when it has at least
one positive and one negative for that metric; otherwise its value is NaN.

A user's row is processed in one of two ways, chosen per user (both give
identical results; no sort of the catalogue, O(n_pos) extra memory):

1. The positives' scores are sorted once (descending, ties by id ascending:
   a stable sort of the ascending test row). The scores of the user's test
   and train items are then overwritten with NaN in the score block (scratch
   space), so the row's non-NaN entries are exactly the negatives ``N``.
2. "pass" strategy, when the user has at most ``MAX_PASSES`` positives to
   count (the common case): for each positive ``p`` one vectorised pass over
   the row counts ``gt`` (negatives scoring above p) and ``eq`` (tied with
   p). AUC half-pairs: ``2 * (n_neg - gt - eq) + eq``. The rank of the t-th
   positive (0-based, in sorted order) is ``t + 1 + gt + ties``, where
   ``ties`` counts tied negatives with a smaller id (a pass over ``row[:p]``,
   only when ``eq > 0``). Cost O(n_items * n_pos) at about one cycle per
   (item, positive) pair.
3. "search" strategy, for users with many positives: one sweep over the
   negatives; for each negative ``j`` a count in the sorted positive scores
   (a vectorised linear count up to 64 positives, binary searches beyond)
   gives ``gt`` and ``ge`` (positives scoring above / at least as high as
   j): ``gt + ge`` half-pairs. A search by id inside the tie group gives
   ``q``, the number of positives ranked ahead of ``j``; the sweep counts
   ``cnt[q] += 1``, and positive ``t`` has rank ``t + 1 + sum(cnt[:t + 1])``.
   Cost O(n_items log n_pos).

Precision, recall, NDCG, MAP at any k and MRR follow from the positives'
ranks. For ``full_auc`` with a train matrix, the user's train items (not in
test) are added back as negatives by one count each in the sorted test
scores.

Scores must be finite: NaN marks excluded items inside the kernel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Metric codes understood by the kernel (module constants are frozen at
# compile time: treat them as literals).
FULL_AUC = 0
AUC = 1
PRECISION = 2
RECALL = 3
NDCG = 4
MAP = 5
MRR = 6

#: Metric names (without "@k") -> (code, takes k).
METRIC_CODES = {
    "full_auc": (FULL_AUC, False),
    "auc": (AUC, False),
    "precision": (PRECISION, True),
    "recall": (RECALL, True),
    "ndcg": (NDCG, True),
    "map": (MAP, True),
    "mrr": (MRR, False),
}

# Users with at most this many positives to count use the "pass" strategy
# (one vectorised pass over the row per positive, ~0.3 ns per item and
# positive on this machine's AVX-512 cores); beyond it the "search" strategy
# (~10-50 ns per item) is cheaper.
MAX_PASSES = 128
# Up to this many positives, a branch-free linear count (which LLVM
# vectorises) beats a binary search, whose branches the CPU cannot predict.
LINEAR_COUNT_MAX = 64
# Sorted positive scores are padded with -inf to a multiple of this length,
# so the linear count runs over whole vectors without a remainder loop.
_PAD = 16


@njit(cache=True, _nrt=False)
def _stable_argsort(keys, n, order, buffer):
    """Write into ``order[:n]`` the indices that sort ``keys[:n]`` ascending, ties in index order.

    A merge sort written out rather than ``np.argsort(kind="mergesort")``,
    whose generic implementation takes numba seconds to compile; O(n log n).
    ``buffer`` (int64, >= n) is scratch; nothing is allocated.
    """
    for k in range(n):
        order[k] = k
    src = order
    dst = buffer
    in_order = True  # whether src is ``order``
    width = 1
    while width < n:
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            a = lo
            b = mid
            for k in range(lo, hi):
                # Take from the left run unless the right one is strictly smaller: stable.
                if a < mid and (b >= hi or keys[src[a]] <= keys[src[b]]):
                    dst[k] = src[a]
                    a += 1
                else:
                    dst[k] = src[b]
                    b += 1
        src, dst = dst, src
        in_order = not in_order
        width *= 2
    if not in_order:
        for k in range(n):
            order[k] = src[k]


@njit(cache=True, _nrt=False)
def _sort_positives(row, indices, start, stop, raw, order, buffer, scores, ids):
    """Sort the positives ``indices[start:stop]`` by score descending, ties by id ascending.

    Parameters
    ----------
    row : ndarray of float32, shape (n_items,)
        Scores of one user.
    indices : ndarray of int32
        Item ids, ascending within ``[start, stop)``.
    raw : ndarray of float32; order, buffer : ndarray of int64
        Scratch of length >= ``stop - start``.
    scores : ndarray of float32, shape (>= n rounded up to a multiple of ``_PAD``,)
        Written: the ``n = stop - start`` sorted scores, then -inf up to a
        multiple of ``_PAD`` (for the vectorised count in :func:`_count_above`).
    ids : ndarray of int64, shape (>= n,)
        Written: the sorted ids.
    """
    n = stop - start
    for a in range(n):
        raw[a] = -row[indices[start + a]]
    # Stable sort of an id-ascending list by -score: ties keep id order.
    _stable_argsort(raw, n, order, buffer)
    for a in range(n, (n + _PAD - 1) // _PAD * _PAD):
        scores[a] = -np.inf
    for a in range(n):
        b = order[a]
        scores[a] = -raw[b]
        ids[a] = indices[start + b]


@njit(cache=True)
def _count_above(desc, n, s):
    """Return ``(gt, ge)``: how many of ``desc[:n]`` are > s and >= s.

    ``desc`` is sorted in descending order and padded with -inf beyond ``n``
    up to a multiple of ``_PAD`` (entries past that pad are ignored); ``s``
    is finite.
    """
    if n == 0 or s < desc[n - 1]:
        return n, n
    if n <= LINEAR_COUNT_MAX:
        gt = 0
        for t in range((n + _PAD - 1) // _PAD * _PAD):  # whole vectors: the pad is -inf
            gt += desc[t] > s
        ge = gt
        while ge < n and desc[ge] == s:
            ge += 1
        return gt, ge
    if s > desc[0]:
        return 0, 0
    lo = 0
    hi = n
    while lo < hi:  # first index with desc[i] <= s
        mid = (lo + hi) >> 1
        if desc[mid] > s:
            lo = mid + 1
        else:
            hi = mid
    gt = lo
    hi = n
    while lo < hi:  # first index with desc[i] < s
        mid = (lo + hi) >> 1
        if desc[mid] >= s:
            lo = mid + 1
        else:
            hi = mid
    return gt, lo


@njit(cache=True)
def _ahead_in_ties(ids, gt, ge, j):
    """Positives of the tie group ``ids[gt:ge]`` (ascending) with id < j, plus ``gt``."""
    lo = gt
    hi = ge
    while lo < hi:
        mid = (lo + hi) >> 1
        if ids[mid] < j:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _count_row(row, s):
    """Return ``(gt, eq)``: entries of ``row`` > s and == s (NaN counts in neither).

    A branch-free pass that LLVM vectorises.
    """
    gt = 0
    eq = 0
    for j in range(row.shape[0]):
        v = row[j]
        gt += v > s
        eq += v == s
    return gt, eq


@njit(cache=True)
def _count_equal_before(row, s, p):
    """Entries of ``row[:p]`` equal to ``s`` (ties ranked ahead of item p)."""
    eq = 0
    for j in range(p):
        eq += row[j] == s
    return eq


def scratch_for(max_test, max_train):
    """Scratch arrays of one :func:`evaluate_block` call (one per thread).

    ``max_test`` and ``max_train`` bound the test and train row lengths of the
    block's users. A plain function: the kernel allocates nothing (it is
    compiled without reference counting), so its caller makes these once.
    """
    t = max(int(max_test), 1)
    padded = (t + _PAD - 1) // _PAD * _PAD
    r = max(int(max_train), 1)
    return (np.empty(t, np.int32), np.empty(r, np.int64),              # p_items, x_items
            np.empty(padded, np.float32), np.empty(t, np.int64),       # pos_s, pos_id
            np.empty(padded, np.float32), np.empty(t, np.int64),       # full_s, full_id
            np.empty(r, np.float32), np.empty(t, np.int64),            # extra_s, ranks
            np.empty(t + 1, np.int64), np.empty(t, np.float32),        # cnt, raw
            np.empty(t, np.int64), np.empty(t, np.int64))              # order, buffer


@njit(cache=True, nogil=True, _nrt=False)
def evaluate_block(scores, user_ids, test_indptr, test_indices, train_indptr,
                   train_indices, metric_codes, metric_ks, max_passes, out, scratch):
    """Per-user metrics for one chunk of users.

    Parameters
    ----------
    scores : ndarray of float32, shape (n_rows, n_items), C-contiguous
        ``scores[r]`` holds the (finite) scores of user ``user_ids[r]``.
        Modified: the scores of each user's test and train items are
        overwritten with NaN (the block is scratch space).
    user_ids : ndarray of int64, shape (n_rows,)
    test_indptr : ndarray of int64, shape (n_users + 1,)
    test_indices : ndarray of int32, shape (nnz_test,)
        CSR test positives, sorted and without duplicates within each row.
    train_indptr : ndarray of int64, shape (n_users + 1,)
    train_indices : ndarray of int32, shape (nnz_train,)
        CSR train positives excluded from the candidates (all rows empty
        when no train matrix is given), sorted, no duplicates.
    metric_codes : ndarray of int64, shape (n_metrics,)
        One of FULL_AUC, AUC, PRECISION, RECALL, NDCG, MAP, MRR each.
    metric_ks : ndarray of int64, shape (n_metrics,)
        Cut-off of each metric (>= 1; ignored by AUC and MRR).
    max_passes : int
        A user whose positives need at most this many passes over its row
        takes the "pass" strategy (one vectorised count over the row per
        positive, O(n_items * n_pos) but about 20x cheaper per step); other
        users take the "search" strategy (one count in the sorted positive
        scores per item, O(n_items log n_pos)). Both give identical results;
        tests force each with 0 and a huge value.
    out : ndarray of float64, shape (n_rows, n_metrics)
        Modified: per-user values, NaN for users excluded from a metric.
    scratch : tuple of ndarray
        From :func:`scratch_for` with bounds of the users' row lengths;
        overwritten. Compiled without reference counting, the kernel
        allocates nothing (fewer seconds of first-call compile).

    Returns
    -------
    None. Writes only its own rows of ``out`` and ``scores``, so disjoint row
    ranges may run in several threads at once.
    """
    n_rows, n_items = scores.shape
    n_metrics = metric_codes.shape[0]
    assert user_ids.shape[0] == n_rows
    assert out.shape[0] == n_rows and out.shape[1] == n_metrics
    assert metric_ks.shape[0] == n_metrics
    (p_items, x_items, pos_s, pos_id, full_s, full_id, extra_s, ranks, cnt, raw, order,
     buffer) = scratch
    need_full = False
    need_main = False
    for m in range(n_metrics):
        if metric_codes[m] == FULL_AUC:
            need_full = True
        else:
            need_main = True

    for r in range(n_rows):
        u = user_ids[r]
        row = scores[r]
        t0 = test_indptr[u]
        t1 = test_indptr[u + 1]
        r0 = train_indptr[u]
        r1 = train_indptr[u + 1]
        n_test = t1 - t0

        # One merge of the ascending rows: P = T \ R (main positives) and
        # X = R \ T (train items: negatives for full_auc only).
        # (p_items is int32 like test_indices: one signature of _sort_positives.)
        n_pos = 0
        n_extra = 0
        a = t0
        b = r0
        while a < t1 or b < r1:
            if b == r1 or (a < t1 and test_indices[a] < train_indices[b]):
                p_items[n_pos] = test_indices[a]
                n_pos += 1
                a += 1
            elif a == t1 or train_indices[b] < test_indices[a]:
                x_items[n_extra] = train_indices[b]
                n_extra += 1
                b += 1
            else:  # in both: neither a main positive nor a negative
                a += 1
                b += 1
        same = n_pos == n_test  # P == T
        n_neg_full = n_items - n_test  # N and X
        n_neg_main = n_neg_full - n_extra  # N: neither test nor train
        do_full = need_full and n_test >= 1 and n_neg_full >= 1
        do_main = need_main and n_pos >= 1 and n_neg_main >= 1

        if not (do_full or do_main):
            for m in range(n_metrics):
                out[r, m] = np.nan
            continue

        _sort_positives(row, p_items, np.int64(0), n_pos, raw, order, buffer, pos_s, pos_id)
        if do_full and not same:
            _sort_positives(row, test_indices, t0, t1, raw, order, buffer, full_s, full_id)
            test_s = full_s
        else:
            test_s = pos_s  # (a new name: full_s stays the scratch for the next user)
        n_extra_s = n_extra if do_full else 0
        for c in range(n_extra_s):
            extra_s[c] = row[x_items[c]]
        # From here on the row's non-NaN entries are exactly the negatives N.
        for c in range(t0, t1):
            row[test_indices[c]] = np.nan
        for c in range(r0, r1):
            row[train_indices[c]] = np.nan

        main_num = 0  # half-pairs: 2 per (positive > negative), 1 per tie
        full_num = 0
        # ranks[:n_pos]: 1-based, ascending
        shared = do_full and same  # one count per positive serves both
        n_passes = (n_pos if (do_main or shared) else 0) + (n_test if (do_full and not same) else 0)
        if n_passes <= max_passes:
            if do_main or shared:
                for t in range(n_pos):
                    s = pos_s[t]
                    gt, eq = _count_row(row, s)
                    half = 2 * (n_neg_main - gt - eq) + eq
                    main_num += half
                    if shared:
                        full_num += half
                    if do_main:
                        ties = _count_equal_before(row, s, pos_id[t]) if eq > 0 else 0
                        ranks[t] = t + 1 + gt + ties
            if do_full and not same:
                for t in range(n_test):
                    gt, eq = _count_row(row, test_s[t])
                    full_num += 2 * (n_neg_main - gt - eq) + eq
        else:
            for t in range(n_pos + 1):
                cnt[t] = 0
            for j in range(n_items):
                s = row[j]
                if s != s:  # a test or train item
                    continue
                if do_main:
                    gt, ge = _count_above(pos_s, n_pos, s)
                    main_num += gt + ge
                    if ge > gt:
                        cnt[_ahead_in_ties(pos_id, gt, ge, j)] += 1
                    else:
                        cnt[gt] += 1
                    if do_full:
                        if not same:
                            gt, ge = _count_above(test_s, n_test, s)
                        full_num += gt + ge
                else:
                    gt, ge = _count_above(test_s, n_test, s)
                    full_num += gt + ge
            # Positive t is preceded by t positives and the negatives with q <= t.
            ahead = 0
            for t in range(n_pos):
                ahead += cnt[t]
                ranks[t] = t + 1 + ahead
        # Train items are negatives for full_auc only.
        for c in range(n_extra_s):
            gt, ge = _count_above(test_s, n_test, extra_s[c])
            full_num += gt + ge

        for m in range(n_metrics):
            code = metric_codes[m]
            if code == FULL_AUC:
                if do_full:
                    out[r, m] = full_num / (2.0 * n_test * n_neg_full)
                else:
                    out[r, m] = np.nan
                continue
            if not do_main:
                out[r, m] = np.nan
                continue
            k = metric_ks[m]
            if code == AUC:
                out[r, m] = main_num / (2.0 * n_pos * n_neg_main)
            elif code == MRR:
                out[r, m] = 1.0 / ranks[0]
            elif code == PRECISION or code == RECALL:
                hits = 0
                for t in range(n_pos):
                    if ranks[t] > k:
                        break
                    hits += 1
                if code == PRECISION:
                    out[r, m] = hits / k
                else:
                    out[r, m] = hits / n_pos
            elif code == NDCG:
                dcg = 0.0
                for t in range(n_pos):
                    if ranks[t] > k:
                        break
                    dcg += 1.0 / np.log2(ranks[t] + 1.0)
                idcg = 0.0
                for t in range(min(k, n_pos)):
                    idcg += 1.0 / np.log2(t + 2.0)
                out[r, m] = dcg / idcg
            elif code == MAP:
                ap = 0.0
                for t in range(n_pos):
                    if ranks[t] > k:
                        break
                    ap += (t + 1.0) / ranks[t]
                out[r, m] = ap / min(k, n_pos)
            else:
                out[r, m] = np.nan
