"""Negative draws for a training positive ``(u, i)`` over a CSR of positives.

Policies (codes frozen at compile time):

- ``NEG_UNIFORM`` (0): any item, uniformly, as the Keras notebook does; it may
  draw one of the user's positives, even ``i`` itself.
- ``NEG_UNSEEN`` (1): an item the user has no positive for. A few rejection
  draws, then an exact draw by rank among the complement of the row, so a
  sample is never dropped unless the user has every item.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .rng import next_below

NEG_UNIFORM = 0
NEG_UNSEEN = 1
NEGATIVES = {"uniform": NEG_UNIFORM, "unseen": NEG_UNSEEN}
_REJECTION_TRIES = 8


_ONE = np.uint64(1)
_LOW6 = np.int64(63)


@njit(cache=True, inline="always")
def mark_row(seen, indices, start, end, value):
    """Set (``value`` True) or clear the bits of ``indices[start:end]`` in the bitset ``seen``."""
    for k in range(start, end):
        item = np.int64(indices[k])
        bit = _ONE << np.uint64(item & _LOW6)
        if value:
            seen[item >> 6] |= bit
        else:
            seen[item >> 6] &= ~bit


@njit(cache=True, inline="always")
def is_marked(seen, item):
    """Whether ``item``'s bit is set in the bitset ``seen``."""
    return (seen[item >> 6] >> np.uint64(item & _LOW6)) & _ONE != np.uint64(0)


@njit(cache=True, inline="always")
def draw_negative(state, indptr, indices, seen, u, n_items, neg_code):
    """Draw a negative item for user ``u``.

    Parameters
    ----------
    state : uint64
        Chunk random state.
    indptr : ndarray of int64, shape (n_users + 1,)
    indices : ndarray of int32, shape (nnz,)
        Sorted within each row.
    seen : ndarray of uint64, shape (ceil(n_items / 64),)
        Bitset of user ``u``'s positives (``mark_row``), for ``NEG_UNSEEN``:
        one bit test per rejection draw instead of a search of the row.
    u : int
    n_items : int
    neg_code : int
        ``NEG_UNIFORM`` or ``NEG_UNSEEN``.

    Returns
    -------
    state : uint64
    j : int64
        The negative, or -1 when the user has every item (``NEG_UNSEEN``).
    """
    if neg_code == NEG_UNIFORM:
        return next_below(state, n_items)
    start = indptr[u]
    end = indptr[u + 1]
    n_pos = end - start
    if n_pos >= n_items:
        return state, np.int64(-1)
    for _ in range(_REJECTION_TRIES):
        state, j = next_below(state, n_items)
        if not is_marked(seen, j):
            return state, j
    # Exact draw: the r-th item of the complement of the sorted row.
    state, j = next_below(state, n_items - n_pos)
    for k in range(start, end):
        if indices[k] <= j:
            j += 1
        else:
            break
    return state, j
