"""Top-N kernel: a size-N heap of the best (score, item) pairs per score row.

The caller (``bpr_numba._scoring``) computes each block of scores with BLAS
and runs the kernel on disjoint row ranges of it in several threads (the
kernel releases the GIL). Order: score descending, ties broken by
item id ascending; rows with fewer than N eligible items are padded with id
-1 and score -inf. Scores are assumed finite (NaN scores are not ordered).
"""

from __future__ import annotations

import numpy as np
from numba import njit


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


@njit(cache=True, nogil=True)
def topk_block(scores, col_items, exclude_indptr, exclude_indices, out_ids, out_scores):
    """Top-N eligible columns of each score row.

    Parameters
    ----------
    scores : ndarray of float32, shape (n_rows, n_cols), C-contiguous
        ``scores[r, c]`` is the score of item ``col_items[c]`` for row r.
    col_items : ndarray of int64, shape (n_cols,)
        Item id of each column, strictly ascending.
    exclude_indptr : ndarray of int64, shape (n_rows + 1,)
    exclude_indices : ndarray of int32
        CSR rows of item ids excluded per row, ascending within each row
        (repeats allowed).
    out_ids : ndarray of int32, shape (n_rows, N)
    out_scores : ndarray of float32, shape (n_rows, N)
        Modified: best items first, padded with (-1, -inf).

    Returns
    -------
    None. Modifies ``out_ids`` and ``out_scores``, writing only its own rows.
    """
    n_rows, n_cols = scores.shape
    N = out_ids.shape[1]
    assert col_items.shape[0] == n_cols
    assert exclude_indptr.shape[0] == n_rows + 1
    assert out_ids.shape[0] == n_rows and out_scores.shape[0] == n_rows
    assert out_scores.shape[1] == N
    for r in range(n_rows):
        row = scores[r]
        excluded = exclude_indices[exclude_indptr[r]:exclude_indptr[r + 1]]
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
