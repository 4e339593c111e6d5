"""Train/test splits of your own data: seeded per-user holdouts and time cut-offs.

Three splits of ``Interactions``, all NumPy and vectorised (no Python loop
over users or interactions):

* :func:`random_split` -- per user, a seeded random share of the user's
  interactions goes to test;
* :func:`leave_k_out` -- per user, the ``k`` latest interactions (by
  timestamp) go to test;
* :func:`time_split` -- one global cut-off: everything at or after it goes
  to test.

Each takes an :class:`~bpr_numba.data.Interactions` (a plain scipy.sparse
matrix is wrapped in one) and returns ``(train, test)``, two ``Interactions``
of the input's shape on the input's id maps. Every stored interaction lands in
exactly one of them, with its value and timestamp, so ``train.matrix +
test.matrix`` rebuilds the input. The per-user splits keep a user with too few
interactions whole in train, so that no user is left without a training
positive.

:func:`holdout_split` is the plain-matrix holdout of the benchmarks: a
seeded random share of all positives (not per user), as CSR matrices of ones.

Note that MovieLens' ``ua.test`` holds the *first* 10 ratings of each user in
the file's order, not the last 10 by time, so ``leave_k_out(k=10)`` does not
reproduce it.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp

from ._runtime import as_generator
from ._sparse import ones_csr
from ._validation import check_float, check_interactions, check_positive_int, type_name
from .data import Interactions

__all__ = ["holdout_split", "leave_k_out", "random_split", "time_split"]


def random_split(interactions, test_fraction=0.2, random_state=None, min_train=1):
    """Per user, move a seeded random share of the interactions to test.

    User ``u`` with ``n_u`` stored interactions gets exactly

        ``n_test_u = min(floor(test_fraction * n_u + 0.5), max(n_u - min_train, 0))``

    test interactions, chosen uniformly at random among the user's
    interactions (all subsets of that size are equally likely). The share is
    rounded half up (``0.5 * 3`` gives 2, ``0.25 * 2`` gives 1), computed in
    float64. A user with ``min_train`` or fewer interactions stays whole in
    train, and every other user keeps at least ``min_train`` in train. Users
    with a small ``n_u`` may get no test interaction (``0.2 * 2`` rounds to 0).

    Parameters
    ----------
    interactions : Interactions or scipy.sparse matrix, shape (n_users, n_items)
        A sparse matrix is wrapped in ``Interactions(matrix)`` (default id maps,
        no timestamps), and the result is ``Interactions`` as well: take
        ``.matrix`` for the CSR matrices.
    test_fraction : float, 0 < test_fraction < 1
        Share of each user's interactions that goes to test (before rounding
        and the ``min_train`` cap).
    random_state : None, int, numpy SeedSequence, Generator or RandomState
        Seed; the same seed gives the same split. ``None`` draws fresh entropy.
        A Generator is used (and advanced) as is.
    min_train : int >= 1
        Interactions each user keeps in train at least; users with
        ``min_train`` or fewer interactions stay whole in train.

    Returns
    -------
    train, test : Interactions, shape of the input
        Disjoint, on the input's id maps; each stored value (and timestamp,
        when the input has them) goes with its interaction, in canonical CSR
        order.

    Raises
    ------
    TypeError
        ``interactions`` is neither ``Interactions`` nor a scipy.sparse matrix;
        ``test_fraction`` is not a number; ``min_train`` is not an int; an
        unsupported ``random_state``.
    ValueError
        ``test_fraction`` outside (0, 1); ``min_train < 1``.
    """
    interactions = _as_interactions(interactions, "random_split")
    test_fraction = _check_test_fraction(test_fraction)
    min_train = check_positive_int(min_train, "min_train")
    rng = as_generator(random_state)
    X = interactions.matrix
    counts = np.diff(X.indptr).astype(np.int64)
    n_test = np.floor(test_fraction * counts + 0.5).astype(np.int64)
    np.minimum(n_test, np.maximum(counts - min_train, 0), out=n_test)
    # A uniform random order within each user: shuffle all positions, then
    # stable-sort them by user (CSR rows are already grouped by user).
    perm = rng.permutation(X.nnz)
    users = _row_of_each_entry(X.indptr)
    order = perm[np.argsort(users[perm], kind="stable")]
    return _split_by_rank(interactions, order, users, n_test, from_end=False)


def leave_k_out(interactions, k=1, random_state=None):
    """Per user, move the ``k`` latest interactions (by timestamp) to test.

    A user with ``k`` or fewer interactions stays whole in train; every other
    user gets exactly ``k`` test interactions, those with the largest
    timestamps. Interactions with equal timestamps are ordered by item index
    (the higher index counts as later) when ``random_state`` is None, and in a
    seeded random order otherwise; either way the result is reproducible.

    This is not MovieLens' ``ua`` split, whose test set holds the first 10
    ratings of each user in the file's order.

    Parameters
    ----------
    interactions : Interactions, shape (n_users, n_items)
        Must carry timestamps (``Interactions.from_arrays(..., timestamps=...)``).
        A scipy.sparse matrix is accepted as input but has no timestamps, so
        it raises the ValueError below.
    k : int >= 1
        Test interactions per user.
    random_state : None, int, numpy SeedSequence, Generator or RandomState
        Only breaks ties between equal timestamps; ``None`` breaks them by item
        index. A Generator is used (and advanced) as is.

    Returns
    -------
    train, test : Interactions, shape of the input
        Disjoint, on the input's id maps; each stored value and timestamp goes
        with its interaction, in canonical CSR order.

    Raises
    ------
    TypeError
        ``interactions`` is neither ``Interactions`` nor a scipy.sparse matrix;
        ``k`` is not an int; timestamps are not numbers; an unsupported
        ``random_state``.
    ValueError
        No timestamps; NaN timestamps; ``k < 1``.
    """
    interactions = _as_interactions(interactions, "leave_k_out")
    k = check_positive_int(k, "k")
    timestamps = _check_timestamps(interactions, "leave_k_out")
    X = interactions.matrix
    counts = np.diff(X.indptr).astype(np.int64)
    n_test = np.where(counts > k, k, 0)
    users = _row_of_each_entry(X.indptr)
    if random_state is None:
        tie_break = np.arange(X.nnz)  # CSR order: ascending item index within a user
    else:
        tie_break = as_generator(random_state).permutation(X.nnz)
    # Last key is the primary one: by user, then timestamp, then the tie-break.
    order = np.lexsort((tie_break, timestamps, users))
    return _split_by_rank(interactions, order, users, n_test, from_end=True)


def time_split(interactions, cutoff=None, *, test_fraction=None):
    """Split at one global time: ``timestamp < cutoff`` is train, ``>= cutoff`` test.

    Give exactly one of ``cutoff`` and ``test_fraction``. With
    ``test_fraction`` the cut-off is placed at the timestamp that brings the
    test share closest to ``round(test_fraction * nnz)`` (rounded half up):
    the candidates are the distinct timestamps and "after the last one" (empty
    test). Interactions with equal timestamps stay together, so the share is
    only as exact as the ties allow; of two equally close candidates, the
    later cut-off (smaller test) wins.

    Unlike the per-user splits, this keeps no user whole: a user whose
    interactions all come after the cut-off appears only in test (cold
    start), and one whose interactions all come before it only in train.

    Parameters
    ----------
    interactions : Interactions, shape (n_users, n_items)
        Must carry numeric timestamps. A scipy.sparse matrix is accepted as
        input but has no timestamps, so it raises the ValueError below.
    cutoff : int or float, optional
        First time of the test period, in the timestamps' unit (Unix seconds
        for ``Interactions.from_pandas`` with a datetime column).
    test_fraction : float, 0 < test_fraction < 1, optional
        Place the cut-off so that about this share of all interactions is
        test (see above).

    Returns
    -------
    train, test : Interactions, shape of the input
        Disjoint, on the input's id maps; each stored value and timestamp goes
        with its interaction, in canonical CSR order.

    Raises
    ------
    TypeError
        ``interactions`` is neither ``Interactions`` nor a scipy.sparse matrix;
        ``cutoff`` or ``test_fraction`` is not a number; timestamps are not
        numbers.
    ValueError
        No timestamps; NaN timestamps; both or neither of ``cutoff`` and
        ``test_fraction``; ``cutoff`` is NaN or infinite; ``test_fraction``
        outside (0, 1).
    """
    interactions = _as_interactions(interactions, "time_split")
    if (cutoff is None) == (test_fraction is None):
        raise ValueError(
            "time_split needs exactly one of cutoff= (a time) and test_fraction= (a share of "
            f"interactions); got cutoff={cutoff!r} and test_fraction={test_fraction!r}."
        )
    if cutoff is not None:
        if isinstance(cutoff, numbers.Integral) and not isinstance(cutoff, (bool, np.bool_)):
            cutoff = int(cutoff)  # exact comparisons with int64 timestamps (no float rounding)
        else:
            cutoff = check_float(cutoff, "cutoff", low=None)
    else:
        test_fraction = _check_test_fraction(test_fraction)
    timestamps = _check_timestamps(interactions, "time_split")
    if cutoff is not None:
        is_test = timestamps >= cutoff
    else:
        is_test = _latest_share(timestamps, test_fraction)
    return _take(interactions, ~is_test), _take(interactions, is_test)


def holdout_split(X, test_fraction=0.2, random_state=None):
    """Split positives at random into train and test (per interaction, not per user).

    Parameters
    ----------
    X : scipy.sparse matrix, shape (n_users, n_items)
        Stored non-zeros are positives (COO, CSR or CSC).
    test_fraction : float, 0 < test_fraction < 1
        Share of positives moved to test: exactly ``round(test_fraction * nnz)``,
        chosen uniformly at random (a user may end up with no train or no
        test positive).
    random_state : None, int, numpy SeedSequence, Generator or RandomState

    Returns
    -------
    train, test : scipy.sparse.csr_matrix, shape of X
        Disjoint, summing to ``X``; float32 ones, sorted int32 ``indices`` and
        ``indptr`` (int64 past 2**31 - 1 positives).
    """
    X = check_interactions(X, "X")
    test_fraction = _check_test_fraction(test_fraction)
    rng = as_generator(random_state)
    is_test = np.zeros(X.nnz, dtype=bool)
    is_test[rng.choice(X.nnz, size=int(round(test_fraction * X.nnz)), replace=False)] = True
    return (ones_csr(_selected_indptr(X.indptr, ~is_test), X.indices[~is_test], X.shape),
            ones_csr(_selected_indptr(X.indptr, is_test), X.indices[is_test], X.shape))


# --------------------------------------------------------------------------- helpers

def _check_test_fraction(test_fraction):
    return check_float(test_fraction, "test_fraction", low=0.0, low_inclusive=False,
                       high=1.0, high_inclusive=False)


def _as_interactions(interactions, func):
    """``interactions`` as is, a sparse matrix wrapped in ``Interactions``, else TypeError."""
    if isinstance(interactions, Interactions):
        return interactions
    if sp.issparse(interactions):
        return Interactions(interactions)
    raise TypeError(
        f"{func}: interactions must be an Interactions or a scipy.sparse matrix of shape "
        f"(n_users, n_items); got {type_name(interactions)}. Build one with "
        "Interactions.from_arrays(users, items, ratings, timestamps)."
    )



def _check_timestamps(interactions, func):
    """The interactions' timestamps, checked to be present, numeric and not NaN."""
    timestamps = interactions.timestamps
    if timestamps is None:
        raise ValueError(
            f"{func} needs timestamps, but interactions has none (a plain sparse matrix, or "
            "Interactions built without timestamps=). Build it with "
            "Interactions.from_arrays(users, items, ratings, timestamps), or use "
            "random_split(interactions, test_fraction=...) for a random per-user holdout."
        )
    if timestamps.dtype.kind not in "iuf":
        raise TypeError(
            f"{func} needs numeric timestamps (int or float); got dtype {timestamps.dtype}. "
            "Convert datetimes to seconds, e.g. values.astype('datetime64[s]').astype('int64')."
        )
    if timestamps.dtype.kind == "f" and np.isnan(timestamps).any():
        raise ValueError(
            f"{func}: timestamps holds {int(np.isnan(timestamps).sum())} NaN value(s); "
            "expected a time for every interaction."
        )
    return timestamps


def _latest_share(timestamps, test_fraction):
    """Mask of ``timestamps >= t`` for the cut-off ``t`` closest to the requested share.

    Candidates are the distinct timestamps (test = all entries at or after
    one) and "after the last" (empty test); the latest of equally close ones
    wins.
    """
    target = np.floor(test_fraction * timestamps.size + 0.5)
    values, counts = np.unique(timestamps, return_counts=True)
    at_or_after = np.append(np.cumsum(counts[::-1])[::-1], 0)  # test size for each candidate
    gap = np.abs(at_or_after - target)
    best = gap.size - 1 - int(np.argmin(gap[::-1]))  # argmin returns the first: search reversed
    if best == values.size:
        return np.zeros(timestamps.size, dtype=bool)
    return timestamps >= values[best]


def _row_of_each_entry(indptr):
    """The row (user) index of each stored entry of a CSR matrix, int64."""
    counts = np.diff(indptr)
    return np.repeat(np.arange(counts.size, dtype=np.int64), counts)


def _split_by_rank(interactions, order, users, n_test, from_end):
    """Split by each entry's rank within its user in ``order``.

    ``order`` lists the entry positions grouped by user (users ascending). An
    entry goes to test when its rank within its user is below ``n_test`` of
    that user, ranks counted from the user's first entry in ``order``, or from
    the last one when ``from_end``.
    """
    indptr = interactions.matrix.indptr.astype(np.int64)
    position = np.arange(order.size, dtype=np.int64)
    user = users[order]
    if from_end:
        rank = indptr[user + 1] - 1 - position
    else:
        rank = position - indptr[user]
    is_test = np.zeros(order.size, dtype=bool)
    is_test[order] = rank < n_test[user]
    return _take(interactions, ~is_test), _take(interactions, is_test)


def _take(interactions, mask):
    """A new ``Interactions`` (same maps) of the entries where ``mask`` is True."""
    X = interactions.matrix
    indptr = _selected_indptr(X.indptr, mask).astype(X.indices.dtype)
    matrix = sp.csr_matrix((X.data[mask], X.indices[mask], indptr), shape=X.shape)
    matrix.has_canonical_format = True  # a subset of canonical rows stays canonical
    timestamps = None if interactions.timestamps is None else interactions.timestamps[mask]
    return interactions.with_matrix(matrix, timestamps)


def _selected_indptr(indptr, mask):
    """The int64 ``indptr`` of a CSR matrix's entries where ``mask`` (one bool per entry) is True."""
    before = np.zeros(mask.size + 1, dtype=np.int64)  # selected entries before each position
    np.cumsum(mask, out=before[1:])
    return before[indptr]
