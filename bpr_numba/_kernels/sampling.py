"""Negative draws for a training positive ``(u, i)`` over a CSR of positives.

Policies (codes frozen at compile time):

- ``NEG_UNIFORM`` (0): any item, uniformly, as the Keras notebook does; it may
  draw one of the user's positives, even ``i`` itself.
- ``NEG_UNSEEN`` (1): an item the user has no positive for. A few rejection
  draws, then an exact draw by rank among the complement of the row, so a
  sample is never dropped unless the user has every item.
- ``NEG_POPULARITY`` (2): an item drawn with probability proportional to
  ``count ** exponent`` (its training positives; items without any count as
  1), from an alias table built once in Python (:func:`alias_table`) and
  drawn in O(1) by :func:`draw_alias`. The listwise kernel drops the draws
  that hit the user's positives; the per-sample kernel redraws them
  (:func:`draw_popular_unseen`), so its negatives follow the popularity
  distribution restricted to the user's unseen items, mixed with a uniform
  draw among them with probability ``h ** 8`` (``h``: the popularity mass of
  the user's positives; small but for users who have most popular items).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .rng import next_below, next_unit

NEG_UNIFORM = 0
NEG_UNSEEN = 1
NEG_POPULARITY = 2
NEGATIVES = {"uniform": NEG_UNIFORM, "unseen": NEG_UNSEEN, "popularity": NEG_POPULARITY}
_REJECTION_TRIES = 8


_ONE = np.uint64(1)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
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
def any_marked(seen, start, end):
    """Whether any of the bits ``start <= item < end`` is set in the bitset ``seen``.

    Needs ``start < end``; reads the one to few words that hold those bits.
    """
    first = start >> 6
    last = (end - 1) >> 6
    low = _ALL << np.uint64(start & _LOW6)  # bits from start on, in the first word
    high = _ALL >> np.uint64(_LOW6 - ((end - 1) & _LOW6))  # bits up to end - 1, in the last
    if first == last:
        return seen[first] & low & high != np.uint64(0)
    if seen[first] & low != np.uint64(0):
        return True
    for w in range(first + 1, last):
        if seen[w] != np.uint64(0):
            return True
    return seen[last] & high != np.uint64(0)


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
    return _draw_unseen_by_rank(state, indices, start, end, n_items)


@njit(cache=True, inline="always")
def _draw_unseen_by_rank(state, indices, start, end, n_items):
    """Exact draw: the r-th item of the complement of the sorted ``indices[start:end]``."""
    state, j = next_below(state, n_items - (end - start))
    for k in range(start, end):
        if indices[k] <= j:
            j += 1
        else:
            break
    return state, j


@njit(cache=True, inline="always")
def draw_popular_unseen(state, indptr, indices, seen, u, n_items, alias_prob, alias_items):
    """A popularity draw (:func:`draw_alias`) among the items user ``u`` has not seen.

    A draw that hits one of the user's positives (marked in ``seen``) is
    redrawn; after ``_REJECTION_TRIES`` hits in a row (a user who has most of
    the popular items) the negative is drawn uniformly among the unseen
    items, as "unseen" does. Returns ``(state, j)``, ``j = -1`` when the user
    has every item.
    """
    start = indptr[u]
    end = indptr[u + 1]
    if end - start >= n_items:
        return state, np.int64(-1)
    for _ in range(_REJECTION_TRIES):
        state, j = draw_alias(state, alias_prob, alias_items)
        if not is_marked(seen, j):
            return state, np.int64(j)
    return _draw_unseen_by_rank(state, indices, start, end, n_items)


def alias_table(weights):
    """Walker's alias table (Vose's construction) of the distribution ``weights / sum``.

    Plain NumPy and Python (run once per fit, not a kernel).

    Parameters
    ----------
    weights : ndarray of float, shape (n,)
        Non-negative, with a positive sum.

    Returns
    -------
    prob : ndarray of float64, shape (n,)
        Probability of keeping the drawn column.
    alias : ndarray of int64, shape (n,)
        The column's other item.
    """
    weights = np.asarray(weights, np.float64)
    n = weights.shape[0]
    scaled = weights * (n / weights.sum())
    prob = np.ones(n, np.float64)
    alias = np.arange(n, dtype=np.int64)
    small = [int(k) for k in np.flatnonzero(scaled < 1.0)]
    large = [int(k) for k in np.flatnonzero(scaled >= 1.0)]
    while small and large:
        s = small.pop()
        g = large.pop()
        prob[s] = scaled[s]
        alias[s] = g
        scaled[g] = (scaled[g] + scaled[s]) - 1.0
        (small if scaled[g] < 1.0 else large).append(g)
    # What remains is 1 up to rounding.
    return prob, alias


@njit(cache=True, inline="always")
def draw_alias(state, prob, alias):
    """Draw an item from the alias table ``(prob, alias)``; returns ``(state, item)``."""
    state, k = next_below(state, prob.shape[0])
    state, x = next_unit(state)
    if x < prob[k]:
        return state, k
    return state, alias[k]
