"""Scoring drivers: BLAS score blocks in Python, then a kernel per block.

Top-N (``recommend``, ``similar_*``) and the ranking metrics share one shape:
the driver walks over chunks of rows, computes the chunk's float32 score block
``Q[rows] @ V[cols].T`` with BLAS (in Python, never inside ``prange``: two
cores would be oversubscribed) and hands it to one parallel kernel of
:mod:`bpr_numba._kernels` (``topk.topk_block`` or ``ranking.evaluate_block``).
Inputs arrive checked by the public entry points.

Top-N: the eligible columns (``candidates`` minus ``filter_items``) are
gathered once, then each row keeps a size-N heap of its best (score, item)
pairs while skipping its excluded items: O(n_cols log N) per row, no sort of
the catalogue. Scores are always computed by BLAS, even for a short candidate
list: the gathered ``V[cols]`` is a small copy, a GEMM on it is at least as
fast as dot loops in the kernel, and one code path keeps one compiled kernel.
Order: score descending, ties broken by item id ascending; rows with fewer
than N eligible items are padded with id -1 and score -inf.
"""

from __future__ import annotations

import re

import numpy as np

from ._kernels.ranking import MAX_PASSES, METRIC_CODES, evaluate_block, scratch_for
from ._kernels.topk import topk_block
from ._runtime import parallel_ranges
from ._validation import (as_factor_array, check_ids, check_interactions, check_nonneg_int,
                          check_positive_int)

# Largest score block (bytes) computed at once; 64 MB keeps a chunk in memory
# comfortably and is large enough for BLAS to run at full speed.
_BLOCK_BYTES = 64 * 2**20
_MAX_CHUNK_USERS = 4096

#: Metric names accepted by the ranking metrics (``k`` is a positive integer).
KNOWN_METRICS = ("full_auc", "auc", "precision@k", "recall@k", "ndcg@k", "map@k", "mrr")
_NAME_RE = re.compile(r"^([a-z_]+)(?:@(\d+))?$")


def topk_items(user_factors, item_factors, userids, N, exclude_indptr=None,
               exclude_indices=None, filter_items=None, candidates=None, num_threads=0):
    """Best ``N`` items for each of ``userids`` by ``user_factors @ item_factors.T``.

    Parameters
    ----------
    user_factors : ndarray of float, shape (n_users, f)
        Converted to float32 C-contiguous when it is not already.
    item_factors : ndarray of float, shape (n_items, f)
    userids : array-like of int, shape (n,)
        Rows of ``user_factors`` to rank for (repeats allowed).
    N : int
        Number of items per user (>= 1); may exceed the eligible items.
    exclude_indptr : ndarray of int, shape (n + 1,), optional
    exclude_indices : ndarray of int, optional
        CSR rows aligned with ``userids``: row ``r`` lists the items never
        returned for ``userids[r]`` (e.g. the user's liked items). Rows may be
        empty, unsorted or repeat ids. Both or neither must be given.
    filter_items : array-like of int, optional
        Items never returned for any user.
    candidates : array-like of int, optional
        Restrict the ranking to these items (repeats are merged); None means
        all items.
    num_threads : int
        Threads of the kernels for the call (0 = all cores).

    Returns
    -------
    ids : ndarray of int32, shape (n, N)
        Item ids, best first (score descending, ties by id ascending), padded
        with -1 when fewer than N items are eligible.
    scores : ndarray of float32, shape (n, N)
        Their scores, padded with -inf.

    Raises
    ------
    IndexError
        An id out of range in ``userids``, ``exclude_indices``,
        ``filter_items`` or ``candidates``.
    ValueError
        Mismatched shapes.
    """
    user_factors = as_factor_array(user_factors, "user_factors")
    item_factors = as_factor_array(item_factors, "item_factors")
    if user_factors.shape[1] != item_factors.shape[1]:
        raise ValueError(
            f"user_factors has {user_factors.shape[1]} columns but item_factors has "
            f"{item_factors.shape[1]}; both must have the same width."
        )
    n_items = item_factors.shape[0]
    userids, _ = check_ids(userids, "userids", user_factors.shape[0], "users")
    cols = _eligible_columns(n_items, filter_items, candidates)
    return _run(user_factors, item_factors, userids, N, exclude_indptr,
                exclude_indices, cols, num_threads)


def similar_items_topk(item_factors, itemids, N, filter_items=None, candidates=None,
                       exclude_self=True, num_threads=0, query_vectors=None):
    """Best ``N`` items by cosine similarity to each of ``itemids``.

    Rows are normalised in float32; an all-zero row keeps norm 1 (its
    similarities are 0) instead of dividing by zero.

    Parameters
    ----------
    item_factors : ndarray of float, shape (n_items, f)
    itemids : array-like of int, shape (n,)
    N : int
        Number of similar items per query (>= 1).
    filter_items : array-like of int, optional
        Items never returned.
    candidates : array-like of int, optional
        Restrict the answers to these items; None means all items.
    exclude_self : bool
        Never return the query item itself (default).
    num_threads : int
        Threads of the kernels for the call (0 = all cores).
    query_vectors : ndarray of float, shape (n, f), optional
        Query with these vectors instead of ``item_factors[itemids]`` (e.g.
        folded-in items); ``itemids`` still names the query items for
        ``exclude_self``.

    Returns
    -------
    ids : ndarray of int32, shape (n, N)
        Best first (similarity descending, ties by id ascending), padded with -1.
    scores : ndarray of float32, shape (n, N)
        Cosine similarities, padded with -inf.
    """
    item_factors = as_factor_array(item_factors, "item_factors")
    n_items = item_factors.shape[0]
    itemids, _ = check_ids(itemids, "itemids", n_items, "items")
    norms = np.sqrt(np.einsum("ij,ij->i", item_factors, item_factors, dtype=np.float32))
    norms[norms == 0] = 1.0
    normalised = np.ascontiguousarray(item_factors / norms[:, None], dtype=np.float32)
    queries, rows = normalised, itemids
    if query_vectors is not None:
        query_vectors = as_factor_array(query_vectors, "query_vectors")
        if query_vectors.shape != (itemids.size, item_factors.shape[1]):
            raise ValueError(
                f"query_vectors must have shape ({itemids.size}, {item_factors.shape[1]}); "
                f"got {query_vectors.shape}."
            )
        q_norms = np.sqrt(np.einsum("ij,ij->i", query_vectors, query_vectors, dtype=np.float32))
        q_norms[q_norms == 0] = 1.0
        queries = np.ascontiguousarray(query_vectors / q_norms[:, None], dtype=np.float32)
        rows = np.arange(itemids.size, dtype=np.int64)
    if exclude_self:
        exclude_indptr = np.arange(itemids.size + 1, dtype=np.int64)
        exclude_indices = itemids.astype(np.int32)
    else:
        exclude_indptr = exclude_indices = None
    cols = _eligible_columns(n_items, filter_items, candidates)
    return _run(queries, normalised, rows, N, exclude_indptr,
                exclude_indices, cols, num_threads)


def recommend_for(user_factors, item_factors, userid, user_items, N,
                  filter_already_liked_items, filter_items, items, num_threads=0):
    """The body of ``recommend`` shared by the models: checks, liked items, top-N.

    ``user_items`` is one row per given user (implicit's convention) or the
    whole users x items matrix. Returns 1-D ``(ids, scores)`` for a scalar
    ``userid`` (padding dropped), 2-D padded arrays otherwise.
    """
    n_users, n_items = user_factors.shape[0], item_factors.shape[0]
    users, scalar = check_ids(userid, "userid", n_users, "users")
    N = check_positive_int(N, "N")
    exclude_indptr = exclude_indices = None
    if filter_already_liked_items:
        if user_items is None:
            raise ValueError(
                "filter_already_liked_items=True needs user_items: pass the users x items "
                "matrix (or the rows of the given users), or set "
                "filter_already_liked_items=False."
            )
        liked = check_interactions(user_items, "user_items", allow_empty=True)
        if liked.shape[1] != n_items:
            raise ValueError(
                f"user_items has {liked.shape[1]} columns, but the model has {n_items} items."
            )
        if liked.shape[0] == users.size:
            rows = np.arange(users.size)
        elif liked.shape[0] == n_users:
            rows = users
        else:
            raise ValueError(
                f"user_items has {liked.shape[0]} rows; expected one row per given user "
                f"({users.size}) or the whole matrix ({n_users} rows)."
            )
        exclude_indptr, exclude_indices = gather_rows(liked, rows)
    ids, scores = topk_items(user_factors, item_factors, users, N, exclude_indptr,
                             exclude_indices, filter_items, items, num_threads=num_threads)
    if scalar:
        keep = ids[0] >= 0
        return ids[0][keep], scores[0][keep]
    return ids, scores


def gather_rows(X, rows):
    """CSR ``(indptr, indices)`` of the rows ``rows`` of ``X``, vectorised."""
    offsets, indptr = row_offsets(X, rows)
    return indptr, X.indices[offsets].astype(np.int32)


def row_offsets(X, rows):
    """Positions in ``X.indices``/``X.data`` of the rows ``rows``, and their indptr."""
    starts = X.indptr[rows]
    lengths = X.indptr[rows + 1] - starts
    indptr = np.zeros(rows.size + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    return np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1]), indptr


def chunk_rows(n_cols, max_rows=_MAX_CHUNK_USERS):
    """Rows per chunk so that a float32 block of ``n_cols`` columns stays < 64 MB."""
    return int(max(1, min(max_rows, _BLOCK_BYTES // (4 * max(1, n_cols)))))


def empty_csr_arrays(n_users):
    """``(indptr, indices)`` of an all-empty CSR matrix with ``n_users`` rows."""
    return np.zeros(n_users + 1, np.int64), np.zeros(0, np.int32)


def evaluate_scores(scores, user_ids, test_indptr, test_indices,
                    train_indptr, train_indices, metric_codes, metric_ks,
                    max_passes=MAX_PASSES):
    """Run the kernel on a copy of a given score block (no BLAS).

    Parameters
    ----------
    scores : ndarray of float, shape (n_rows, n_items)
        Finite scores; not modified (the kernel works on a float32 copy).
    user_ids : ndarray of int64, shape (n_rows,)
        The user of each row of ``scores`` (index into the CSR rows).
    test_indptr, train_indptr : ndarray of int64, shape (n_users + 1,)
    test_indices, train_indices : ndarray of int32
    metric_codes, metric_ks : ndarray of int64, shape (n_metrics,)
    max_passes : int
        Strategy threshold (see :func:`evaluate_block`): 0 forces the
        "search" strategy, a huge value the "pass" strategy.

    Returns
    -------
    ndarray of float64, shape (n_rows, n_metrics)
        NaN where a user is excluded from a metric.
    """
    scores = np.array(scores, dtype=np.float32, order="C", copy=True)
    out = np.empty((scores.shape[0], len(metric_codes)), np.float64)
    evaluate_block(
        scores,
        np.ascontiguousarray(user_ids, dtype=np.int64),
        np.ascontiguousarray(test_indptr, dtype=np.int64),
        np.ascontiguousarray(test_indices, dtype=np.int32),
        np.ascontiguousarray(train_indptr, dtype=np.int64),
        np.ascontiguousarray(train_indices, dtype=np.int32),
        np.ascontiguousarray(metric_codes, dtype=np.int64),
        np.ascontiguousarray(metric_ks, dtype=np.int64),
        int(max_passes),
        out,
        _ranking_scratch(test_indptr, train_indptr),
    )
    return out


def _ranking_scratch(test_indptr, train_indptr):
    """Scratch of one ``evaluate_block`` call, sized by the longest test and train rows."""
    return scratch_for(np.diff(test_indptr).max(initial=0), np.diff(train_indptr).max(initial=0))


def evaluate_factors(user_factors, item_factors, test_indptr, test_indices,
                     train_indptr, train_indices, metric_codes, metric_ks,
                     chunk_users=None, num_threads=0):
    """Per-user metrics of the factor model ``user_factors @ item_factors.T``.

    Only users with at least one test positive are scored. The caller has
    validated the inputs.

    Parameters
    ----------
    user_factors : ndarray of float32, shape (n_users, f), C-contiguous
    item_factors : ndarray of float32, shape (n_items, f), C-contiguous
    test_indptr, train_indptr : ndarray of int64, shape (n_users + 1,)
    test_indices, train_indices : ndarray of int32
        Sorted CSR rows without duplicates (train rows may all be empty).
    metric_codes, metric_ks : ndarray of int64, shape (n_metrics,)
    chunk_users : int, optional
        Users per score block; default keeps a block under 64 MB.
    num_threads : int
        Threads of the kernel (0: all cores).

    Returns
    -------
    ndarray of float64, shape (n_users, n_metrics)
        NaN for users excluded from a metric (no test positive, no negative).
    """
    n_users = user_factors.shape[0]
    n_items = item_factors.shape[0]
    out = np.full((n_users, len(metric_codes)), np.nan)
    users = np.flatnonzero(np.diff(test_indptr) > 0).astype(np.int64)
    if users.size == 0:
        return out
    step = chunk_rows(n_items) if chunk_users is None else int(chunk_users)
    bounds = (np.diff(test_indptr).max(), np.diff(train_indptr).max(initial=0))
    item_t = item_factors.T
    block_out = np.empty((min(step, users.size), len(metric_codes)), np.float64)
    for start in range(0, users.size, step):
        ids = users[start:start + step]
        # BLAS in Python, never inside a kernel: one float32 GEMM per chunk.
        block = np.ascontiguousarray(user_factors[ids] @ item_t)
        block_view = block_out[:ids.size]

        def rows(a, b, block=block, ids=ids, block_view=block_view):
            evaluate_block(block[a:b], ids[a:b], test_indptr, test_indices, train_indptr,
                           train_indices, metric_codes, metric_ks, MAX_PASSES, block_view[a:b],
                           scratch_for(*bounds))

        parallel_ranges(rows, ids.size, num_threads)
        out[ids] = block_view
    return out


def metric_codes(metrics):
    """Check metric names; return ``(names, codes, ks)`` for the ranking kernel.

    ``metrics`` is one name or a sequence of names among :data:`KNOWN_METRICS`
    (``k`` a positive integer); repeats are dropped. Raises ValueError for an
    unknown name (listing the known ones), TypeError for a non-sequence.
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    try:
        metrics = list(metrics)
    except TypeError:
        raise TypeError(
            f"metrics must be a metric name or a sequence of names; got {metrics!r}."
        ) from None
    if not metrics:
        raise ValueError(f"metrics is empty; expected names among {', '.join(KNOWN_METRICS)}.")
    names, codes, ks = [], [], []
    for name in metrics:
        match = _NAME_RE.match(name) if isinstance(name, str) else None
        entry = METRIC_CODES.get(match.group(1)) if match else None
        takes_k = entry is not None and entry[1]
        if entry is None or takes_k != (match.group(2) is not None) or (takes_k and int(match.group(2)) < 1):
            raise ValueError(
                f"unknown metric {name!r}; known metrics: {', '.join(KNOWN_METRICS)} "
                "(k a positive integer, e.g. 'ndcg@10')."
            )
        if name in names:
            continue
        names.append(name)
        codes.append(entry[0])
        ks.append(int(match.group(2)) if takes_k else 1)
    return names, np.array(codes, np.int64), np.array(ks, np.int64)


def mean_over_users(column, name, test, train_removed):
    """Mean of one metric's per-user values over the users that take part (non-NaN).

    Raises ValueError when no user takes part (no test positive with a
    negative candidate left), saying so with the test matrix's counts.
    """
    included = ~np.isnan(column)
    if not included.any():
        raise ValueError(
            f"the test matrix has no usable user for {name}: no user of the "
            f"{column.size} has a test positive and a negative candidate "
            f"({test.nnz} test positives"
            + (", after removing train positives" if train_removed and name != "full_auc"
               else "")
            + ")."
        )
    return float(column[included].mean())


# ---------------------------------------------------------------- helpers


def _sorted_within_rows(indptr, indices):
    """``indices`` with each CSR row ascending (the top-N kernel's input); no copy if it is."""
    row_of = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    unsorted = (np.diff(indices) < 0) & (row_of[1:] == row_of[:-1])
    if not unsorted.any():
        return indices
    return indices[np.lexsort((indices, row_of))]


def _eligible_columns(n_items, filter_items, candidates):
    """Sorted int64 item ids that may be returned: candidates minus filter_items."""
    if candidates is None:
        cols = np.arange(n_items, dtype=np.int64)
    else:
        cols, _ = check_ids(candidates, "candidates", n_items, "items")
        cols = np.unique(cols)
    if filter_items is not None:
        filter_items, _ = check_ids(filter_items, "filter_items", n_items, "items")
        if filter_items.size:
            cols = cols[~np.isin(cols, filter_items)]
    return cols


def _run(query_factors, item_factors, rows, N, exclude_indptr, exclude_indices, cols, num_threads):
    N = check_positive_int(N, "N")
    num_threads = check_nonneg_int(num_threads, "num_threads")
    n = rows.size
    n_items = item_factors.shape[0]
    if (exclude_indptr is None) != (exclude_indices is None):
        raise ValueError("exclude_indptr and exclude_indices must be given together (or neither).")
    if exclude_indptr is None:
        exclude_indptr = np.zeros(n + 1, np.int64)
        exclude_indices = np.zeros(0, np.int32)
    else:
        exclude_indptr = np.ascontiguousarray(exclude_indptr, dtype=np.int64)
        exclude_indices = np.asarray(exclude_indices)
        if exclude_indptr.shape != (n + 1,):
            raise ValueError(
                f"exclude_indptr must have one entry per user plus one, shape ({n + 1},); "
                f"got shape {exclude_indptr.shape}."
            )
        if exclude_indptr[0] != 0 or np.any(np.diff(exclude_indptr) < 0) or exclude_indptr[-1] > exclude_indices.size:
            raise ValueError(
                "exclude_indptr must start at 0, never decrease and end within exclude_indices "
                f"(size {exclude_indices.size}); got {exclude_indptr[0]}..{exclude_indptr[-1]}."
            )
        exclude_indices, _ = check_ids(exclude_indices, "exclude_indices", n_items, "items")
        exclude_indices = _sorted_within_rows(exclude_indptr, exclude_indices).astype(np.int32)

    ids = np.full((n, N), -1, np.int32)
    scores = np.full((n, N), -np.inf, np.float32)
    if n == 0 or cols.size == 0:
        return ids, scores
    sub = item_factors if cols.size == n_items else item_factors[cols]
    sub_t = sub.T
    step = chunk_rows(cols.size)
    for start in range(0, n, step):
        stop = min(start + step, n)
        # BLAS in Python, never inside a kernel.
        block = np.ascontiguousarray(query_factors[rows[start:stop]] @ sub_t)

        def block_rows(a, b, block=block, start=start):
            topk_block(block[a:b], cols, exclude_indptr[start + a:start + b + 1],
                       exclude_indices, ids[start + a:start + b], scores[start + a:start + b])

        parallel_ranges(block_rows, stop - start, num_threads)
    return ids, scores
