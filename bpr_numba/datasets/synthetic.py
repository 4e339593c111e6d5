"""Seeded synthetic implicit feedback: popular items and a planted low-rank structure."""

from __future__ import annotations

import numpy as np

from .._runtime import as_generator
from .._sparse import ones_csr
from .._validation import check_float, check_positive_int

__all__ = ["make_synthetic"]

_TOPIC_CONCENTRATION = 0.1  # Dirichlet alpha of the users' topic mixtures (small: few topics each)
_ITEM_AFFINITY = 2.0  # spread of log item weights within a topic (0 = topics identical)
_ACTIVITY_SIGMA = 1.0  # log-normal spread of user activity
_DRAWS_PER_BLOCK = 1 << 20  # item draws per block of users (bounds temporary memory)
_DENSE_CELLS = 1 << 22  # users x items cells per block of the exact fallback
_ROUNDS = 6  # rounds of bulk draws before the exact fallback


def make_synthetic(
    n_users, n_items, n_interactions, factors=16, popularity=1.0, random_state=None, return_factors=False
):
    """Seeded implicit feedback with popular items and a planted low-rank preference structure.

    Generative model (a topic model, so it can be sampled exactly without a
    dense users x items matrix):

    * Item popularity: ``pop[i] = rank[i] ** -popularity`` with ``rank`` a
      random permutation of 1..n_items (Zipf-like; ``popularity=0`` is uniform).
    * ``factors`` topics. Topic ``k`` is a distribution over items,
      ``phi[i, k] ∝ pop[i] * exp(2 * w[i, k])`` with ``w ~ N(0, 1)``.
    * User ``u`` has a topic mixture ``theta[u] ~ Dirichlet(0.1)`` (most users
      care about one to three topics) and a count ``n[u]``: a log-normal
      activity (sigma 1) sets multinomial shares of ``n_interactions``; every
      user gets at least one interaction when ``n_interactions >= n_users`` and
      none more than ``n_items`` (the overflow goes to other users).
    * User ``u`` picks ``n[u]`` distinct items: draws ``topic ~ theta[u]``, then
      ``item ~ phi[:, topic]``, skipping items already picked. This is sampling
      without replacement from ``P(i | u) = theta[u] @ phi[i]``, a rank-``factors``
      matrix: ``theta @ phi.T`` are the true preference scores.

    Parameters
    ----------
    n_users, n_items : int >= 1
    n_interactions : int, 1 <= n_interactions <= n_users * n_items
        The number of positives, matched exactly.
    factors : int >= 1
        Number of topics (rank of the planted structure).
    popularity : float >= 0
        Zipf exponent of item popularity.
    random_state : None, int, numpy SeedSequence, Generator or RandomState
        Seed; the same seed gives the same matrix.
    return_factors : bool
        Also return the true factors.

    Returns
    -------
    X : scipy.sparse.csr_matrix, shape (n_users, n_items)
        float32 ones; sorted ``indices`` without duplicates; ``indices`` and ``indptr``
        are int32 (int64 past 2**31 - 1 positives).
    user_factors : ndarray of float32, shape (n_users, factors)
        ``theta``, only with ``return_factors=True``.
    item_factors : ndarray of float32, shape (n_items, factors)
        ``phi``, only with ``return_factors=True``.

    Notes
    -----
    Draws are made in bulk, by blocks of users of about a million draws; users
    with near-full rows, or still short of items after six rounds, get their
    remaining items by the Gumbel top-k trick on their dense row, which is the
    same distribution. 10 million interactions (200,000 x 50,000) take about
    3.5 s on 2 cores, with a peak of about 195 MB (77 MB of it the result).
    """
    n_users = check_positive_int(n_users, "n_users")
    n_items = check_positive_int(n_items, "n_items")
    n_interactions = check_positive_int(n_interactions, "n_interactions")
    factors = check_positive_int(factors, "factors")
    popularity = check_float(popularity, "popularity", low=0.0)
    if n_interactions > n_users * n_items:
        raise ValueError(
            f"n_interactions must be <= n_users * n_items = {n_users * n_items} (each user has each "
            f"item at most once); got {n_interactions}."
        )
    if not isinstance(return_factors, (bool, np.bool_)):
        raise TypeError(f"return_factors must be True or False; got {return_factors!r}.")
    rng = as_generator(random_state)

    log_pop = -popularity * np.log(rng.permutation(n_items) + 1.0)
    log_phi = log_pop[:, None] + _ITEM_AFFINITY * rng.standard_normal((n_items, factors))
    phi = np.exp(log_phi - log_phi.max(axis=0))
    phi /= phi.sum(axis=0)
    theta = rng.dirichlet(np.full(factors, _TOPIC_CONCENTRATION), size=n_users)
    counts = _user_counts(rng, n_users, n_items, n_interactions)

    item_table = _inverse_cdf_table(phi.T)  # one row per topic

    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = np.empty(n_interactions, dtype=np.int32)
    targets = np.arange(1, n_interactions // _DRAWS_PER_BLOCK + 1) * _DRAWS_PER_BLOCK
    bounds = np.unique(np.r_[0, np.searchsorted(indptr[1:], targets), n_users])
    for start, stop in zip(bounds[:-1], bounds[1:]):
        keys = _sample_block(rng, theta[start:stop], phi, item_table, counts[start:stop])
        indices[indptr[start]:indptr[stop]] = keys % n_items
    X = ones_csr(indptr, indices, (n_users, n_items))
    if return_factors:
        return X, theta.astype(np.float32), phi.astype(np.float32)
    return X


def _user_counts(rng, n_users, n_items, n_interactions):
    """Skewed per-user counts summing to ``n_interactions``, each in [min, n_items]."""
    floor = 1 if n_interactions >= n_users else 0
    activity = rng.lognormal(0.0, _ACTIVITY_SIGMA, n_users)
    counts = floor + rng.multinomial(n_interactions - floor * n_users, activity / activity.sum())
    excess = int(np.maximum(counts - n_items, 0).sum())
    if excess:  # hand the overflow to other users, in random order, up to their room
        np.minimum(counts, n_items, out=counts)
        order = rng.permutation(n_users)
        room = n_items - counts[order]
        counts[order] += np.clip(excess - (np.cumsum(room) - room), 0, room)
    return counts


def _sample_block(rng, theta, phi, item_table, counts):
    """Sample ``counts[u]`` distinct items for each user of a block.

    Returns the sorted keys ``u * n_items + item`` (``u`` local to the block).
    Each round draws about 1.25 x the missing items per user (topic, then item,
    by inverse CDF), keeps the first new distinct items in draw order (what
    sequential sampling without replacement picks) and leaves the rest for the
    next round. Users who would need ``n_items`` draws or more in a round, or
    are still short after the last round, finish on their dense row.
    """
    n_block, factors = theta.shape
    n_items = phi.shape[0]
    topic_table = _inverse_cdf_table(theta)
    need = counts.astype(np.int64)
    draws_per_item = np.full(n_block, 1.25)  # draws per new item, re-estimated each round
    held = [np.empty(0, dtype=np.int64)]
    for _ in range(_ROUNDS):
        n_draws = np.ceil(need * draws_per_item).astype(np.int64) + 2
        n_draws[(need == 0) | (n_draws >= n_items)] = 0  # done, or cheaper as a dense row
        active = np.flatnonzero(n_draws)
        if active.size == 0:
            break
        n_draws = n_draws[active]
        users = np.repeat(active, n_draws)
        topics = _draw(topic_table, users, rng.random(users.size))
        items = _draw(item_table, topics, rng.random(users.size))
        keys = users * n_items + items
        held_keys = np.concatenate(held)
        held_keys = held_keys[need[held_keys // n_items] > 0]  # only active users' items can repeat
        # Positions of new distinct pairs in draw order (grouped by user, as users is sorted).
        first = _first_occurrences(np.concatenate([held_keys, keys]), n_block * n_items)
        first = first[first >= held_keys.size] - held_keys.size
        owner = users[first]
        n_new = np.bincount(owner, minlength=n_block)
        rank = np.arange(first.size) - (np.cumsum(n_new) - n_new)[owner]
        take = rank < need[owner]
        held.append(keys[first[take]])
        need -= np.bincount(owner[take], minlength=n_block)
        # Users still short found fewer new items than drawn: draw 1.5 x their observed ratio
        # (at most 64 draws per item; the exact fallback below finishes the hardest rows).
        draws_per_item[active] = np.minimum(1.5 * n_draws / np.maximum(n_new[active], 1), 64.0)
    short = np.flatnonzero(need)
    if short.size:
        held.append(_gumbel_top_k(rng, theta, phi, short, need[short], np.concatenate(held)))
    return np.sort(np.concatenate(held))


def _first_occurrences(values, n_values):
    """Sorted positions of the first occurrence of each distinct value in ``values``.

    ``values`` are ints in ``[0, n_values)``. Packing value and position in one
    int64 lets a plain (fast, unstable) sort do what a stable argsort would.
    """
    n = values.size
    if n_values * n < 2**63:
        packed = np.sort(values * n + np.arange(n))
        value = packed // n
        first = packed[np.r_[True, value[1:] != value[:-1]]] % n
    else:
        first = np.unique(values, return_index=True)[1]
    is_first = np.zeros(n, dtype=bool)
    is_first[first] = True
    return np.flatnonzero(is_first)


def _inverse_cdf_table(weights):
    """Inverse-CDF tables for drawing a column of each row of ``weights`` (rows sum to 1).

    Returns ``(cdf, guide, n_columns)``: the row-wise cumulative sums, flattened, and a
    guide table (Chen 1974): ``guide[row, c]`` indexes the first entry of the
    row whose cumulative weight exceeds ``c / n_columns``. A uniform ``r``
    then needs only a search between ``guide[row, c]`` and ``guide[row, c + 1]``
    for ``c = floor(r * n_columns)``: about one step on average.
    """
    n_rows, n_columns = weights.shape
    cdf = np.cumsum(weights, axis=1)
    cdf[:, -1] = 1.0
    cells = np.arange(n_columns + 1) / n_columns
    if n_rows < n_columns:  # few long rows (topics x items)
        guide = np.stack([np.searchsorted(row, cells, side="right") for row in cdf])
    else:  # many short rows (users x topics)
        guide = np.stack([np.count_nonzero(cdf <= c, axis=1) for c in cells], axis=1)
    np.minimum(guide, n_columns - 1, out=guide)
    guide += np.arange(n_rows)[:, None] * n_columns
    return cdf.ravel(), guide.ravel(), n_columns


def _draw(table, rows, r):
    """Column drawn for each of ``rows`` by inverse CDF, from uniforms ``r`` in [0, 1)."""
    cdf, guide, n_columns = table
    cell = rows * (n_columns + 1) + np.minimum((r * n_columns).astype(np.int64), n_columns - 1)
    return _bisect(cdf, guide[cell], guide[cell + 1], r) - rows * n_columns


def _bisect(cdf, lo, hi, r):
    """For each draw, the first index in ``[lo, hi]`` with ``r < cdf[index]`` (``hi`` if none).

    A vectorised binary search; each draw has its own bounds (modifies ``lo``).
    """
    hi = hi.copy()
    todo = np.flatnonzero(lo < hi)
    while todo.size:
        mid = (lo[todo] + hi[todo]) >> 1
        right = cdf[mid] <= r[todo]
        lo[todo[right]] = mid[right] + 1
        hi[todo[~right]] = mid[~right]
        todo = todo[lo[todo] < hi[todo]]
    return lo


def _gumbel_top_k(rng, theta, phi, users, need, held):
    """Draw ``need[k]`` more distinct items for ``users[k]`` not already in ``held`` (keys).

    Adding Gumbel noise to ``log P(i | u)`` and keeping the top items is
    sequential sampling without replacement, restricted here to unheld items.
    """
    n_items = phi.shape[0]
    out = []
    step = max(1, _DENSE_CELLS // n_items)
    for lo in range(0, users.size, step):
        rows, k = users[lo:lo + step], need[lo:lo + step]
        # Items of zero weight (underflow) stay eligible, last, unlike held ones at -inf.
        scores = np.log(np.maximum(theta[rows] @ phi.T, 1e-300)) + rng.gumbel(size=(rows.size, n_items))
        mine = held[np.isin(held // n_items, rows)]
        scores[np.searchsorted(rows, mine // n_items), mine % n_items] = -np.inf
        top = np.argpartition(-scores, k.max() - 1, axis=1)[:, :k.max()]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1), axis=1)
        pick = np.arange(top.shape[1])[None, :] < k[:, None]
        out.append(np.repeat(rows, k) * n_items + top[pick])
    return np.concatenate(out)
