"""Top-N items per user (recommend) and per item (similar items).

The Python driver gathers the eligible columns once (``candidates`` minus
``filter_items``), then walks over chunks of rows: BLAS computes the chunk's
float32 score block ``U[rows] @ V[cols].T`` (in Python, never inside
``prange``) and the single parallel kernel :func:`_topk_block` keeps, for each
row, a size-N heap of the best (score, item) pairs while skipping the row's
excluded items. Cost per row: O(n_cols log N), no sort of the catalogue.

Scores are always computed by BLAS, even for a short candidate list: the
gathered ``V[cols]`` is a small copy, a GEMM on it is at least as fast as dot
loops in the kernel, and one code path keeps one compiled kernel.

Order: score descending, ties broken by item id ascending. Rows with fewer
than N eligible items are padded with id -1 and score -inf. Scores are
assumed finite (NaN scores are not ordered).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._evaluate import chunk_rows
from ._runtime import threads
from bpr_numba._validation import (check_ids, check_interactions, check_nonneg_int,
                                  check_positive_int)


@njit(cache=True)
def _worse(s_a, i_a, s_b, i_b):
    """True when (s_a, i_a) ranks after (s_b, i_b): lower score, or tie and larger id."""
    return s_a < s_b or (s_a == s_b and i_a > i_b)


@njit(cache=True)
def _sift_down(heap_s, heap_i, size, pos):
    """Restore the min-heap (worst at the root) below ``pos``. Modifies both arrays."""
    s = heap_s[pos]
    i = heap_i[pos]
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and _worse(heap_s[child + 1], heap_i[child + 1], heap_s[child], heap_i[child]):
            child += 1
        if not _worse(heap_s[child], heap_i[child], s, i):
            break
        heap_s[pos] = heap_s[child]
        heap_i[pos] = heap_i[child]
        pos = child
    heap_s[pos] = s
    heap_i[pos] = i


@njit(cache=True, parallel=True)
def _topk_block(scores, col_items, exclude_indptr, exclude_indices, out_ids, out_scores):
    """Top-N eligible columns of each score row.

    Parameters
    ----------
    scores : ndarray of float32, shape (n_rows, n_cols), C-contiguous
        ``scores[r, c]`` is the score of item ``col_items[c]`` for row r.
    col_items : ndarray of int64, shape (n_cols,)
        Item id of each column, strictly ascending.
    exclude_indptr : ndarray of int64, shape (n_rows + 1,)
    exclude_indices : ndarray of int32
        CSR rows of item ids excluded per row (any order, may repeat).
    out_ids : ndarray of int32, shape (n_rows, N)
    out_scores : ndarray of float32, shape (n_rows, N)
        Modified: best items first, padded with (-1, -inf).

    Returns
    -------
    None. Modifies ``out_ids`` and ``out_scores``; each prange iteration
    writes its own row.
    """
    n_rows, n_cols = scores.shape
    N = out_ids.shape[1]
    assert col_items.shape[0] == n_cols
    assert exclude_indptr.shape[0] == n_rows + 1
    assert out_ids.shape[0] == n_rows and out_scores.shape[0] == n_rows
    assert out_scores.shape[1] == N
    for r in prange(n_rows):
        row = scores[r]
        excluded = np.sort(exclude_indices[exclude_indptr[r]:exclude_indptr[r + 1]])
        n_excluded = excluded.shape[0]
        heap_s = np.empty(N, np.float32)
        heap_i = np.empty(N, np.int64)
        size = 0
        e = 0
        for c in range(n_cols):
            item = col_items[c]
            while e < n_excluded and excluded[e] < item:
                e += 1
            if e < n_excluded and excluded[e] == item:
                continue
            s = row[c]
            if size < N:
                # Sift up the new leaf.
                pos = size
                size += 1
                while pos > 0:
                    parent = (pos - 1) >> 1
                    if not _worse(s, item, heap_s[parent], heap_i[parent]):
                        break
                    heap_s[pos] = heap_s[parent]
                    heap_i[pos] = heap_i[parent]
                    pos = parent
                heap_s[pos] = s
                heap_i[pos] = item
            elif _worse(heap_s[0], heap_i[0], s, item):
                heap_s[0] = s
                heap_i[0] = item
                _sift_down(heap_s, heap_i, size, 0)
        # Pop the worst into the last free slot: best first.
        for pos in range(N - 1, size - 1, -1):
            out_ids[r, pos] = -1
            out_scores[r, pos] = -np.inf
        for pos in range(size - 1, -1, -1):
            out_ids[r, pos] = heap_i[0]
            out_scores[r, pos] = heap_s[0]
            heap_s[0] = heap_s[pos]
            heap_i[0] = heap_i[pos]
            _sift_down(heap_s, heap_i, pos, 0)


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
        Numba threads for the call (0 = all); restored afterwards.

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
    user_factors = _as_factors(user_factors, "user_factors")
    item_factors = _as_factors(item_factors, "item_factors")
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
                       exclude_self=True, num_threads=0):
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
        Numba threads for the call (0 = all).

    Returns
    -------
    ids : ndarray of int32, shape (n, N)
        Best first (similarity descending, ties by id ascending), padded with -1.
    scores : ndarray of float32, shape (n, N)
        Cosine similarities, padded with -inf.
    """
    item_factors = _as_factors(item_factors, "item_factors")
    n_items = item_factors.shape[0]
    itemids, _ = check_ids(itemids, "itemids", n_items, "items")
    norms = np.sqrt(np.einsum("ij,ij->i", item_factors, item_factors, dtype=np.float32))
    norms[norms == 0] = 1.0
    normalised = np.ascontiguousarray(item_factors / norms[:, None], dtype=np.float32)
    if exclude_self:
        exclude_indptr = np.arange(itemids.size + 1, dtype=np.int64)
        exclude_indices = itemids.astype(np.int32)
    else:
        exclude_indptr = exclude_indices = None
    cols = _eligible_columns(n_items, filter_items, candidates)
    return _run(normalised, normalised, itemids, N, exclude_indptr,
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


# ---------------------------------------------------------------- helpers


def _as_factors(array, name):
    array = np.asarray(array)
    if array.ndim != 2 or array.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be a 2-D float array; got shape {array.shape} and dtype {array.dtype}.")
    return np.ascontiguousarray(array, dtype=np.float32)


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
        exclude_indices = exclude_indices.astype(np.int32)

    ids = np.full((n, N), -1, np.int32)
    scores = np.full((n, N), -np.inf, np.float32)
    if n == 0 or cols.size == 0:
        return ids, scores
    sub = item_factors if cols.size == n_items else item_factors[cols]
    sub_t = sub.T
    step = chunk_rows(cols.size)
    with threads(num_threads):
        for start in range(0, n, step):
            stop = min(start + step, n)
            # BLAS in Python, outside prange.
            block = np.ascontiguousarray(query_factors[rows[start:stop]] @ sub_t)
            _topk_block(block, cols, exclude_indptr[start:stop + 1], exclude_indices,
                        ids[start:stop], scores[start:stop])
    return ids, scores
