"""Tests of bpr_numba.split: random_split, leave_k_out, time_split, holdout_split."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from sparse_checks import assert_canonical_ones

from bpr_numba.data import Interactions
from bpr_numba.datasets import holdout_split as holdout_split_reexported
from bpr_numba.datasets import make_synthetic
from bpr_numba.split import holdout_split, leave_k_out, random_split, time_split

SEEDS = [None, 0, 7]


@st.composite
def interactions_with_time(draw, max_users=12, max_items=10, max_events=80, str_ids=None):
    """Small Interactions from events: ties in time, float or int timestamps, str or int ids.

    Some draws append empty users (rows without interactions) after the mapped ones.
    """
    n_events = draw(st.integers(0, max_events))
    user_pool = draw(st.integers(1, max_users))
    item_pool = draw(st.integers(1, max_items))
    time_span = draw(st.sampled_from([1, 3, 1000]))  # 1: every timestamp tied
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # Skewed users so that some have many interactions and some one or two.
    weights = rng.random(user_pool) ** 3 + 1e-3
    users = rng.choice(user_pool, size=n_events, p=weights / weights.sum())
    items = rng.integers(0, item_pool, n_events)
    ratings = rng.integers(1, 6, n_events).astype(np.float32) + rng.random(n_events).astype(
        np.float32)
    timestamps = rng.integers(0, time_span, n_events)
    if draw(st.booleans()):
        timestamps = timestamps * 0.5 + 1e9
    if str_ids if str_ids is not None else draw(st.booleans()):
        users = np.array([f"user{u}" for u in users], dtype=str)
        items = np.array([f"item{i}" for i in items], dtype=str)
    if n_events == 0:
        return Interactions(sp.csr_matrix((3, 4), dtype=np.float32),
                            timestamps=np.zeros(0, np.int64))
    inter = Interactions.from_arrays(users, items, ratings, timestamps)
    n_empty = draw(st.integers(0, 3))
    if n_empty and inter.user_ids.dtype.kind != "U":
        matrix = sp.vstack([inter.matrix, sp.csr_matrix((n_empty, inter.n_items))]).tocsr()
        ids = np.concatenate([inter.user_ids, inter.user_ids.max() + 1 + np.arange(n_empty)])
        inter = Interactions(matrix, ids, inter.item_map, inter.timestamps)
    return inter


def big_interactions(n_users=200, n_items=60, n_events=4000, time_span=50, seed=0):
    """A larger Interactions for determinism/difference checks (many timestamp ties)."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n_events)
    items = rng.integers(0, n_items, n_events)
    ratings = rng.random(n_events).astype(np.float32) + 1
    timestamps = rng.integers(0, time_span, n_events)
    return Interactions.from_arrays(users, items, ratings, timestamps)


# ------------------------------------------------------------------------- checks

def entries(inter):
    """(user, item, value, timestamp) of each stored entry, in CSR order."""
    coo = inter.matrix.tocoo()
    ts = inter.timestamps if inter.timestamps is not None else np.zeros(inter.nnz)
    return coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data, ts


def assert_partition(full, train, test):
    """Same shape and maps, canonical float32 CSR, disjoint, train + test == full."""
    for part in (train, test):
        assert isinstance(part, Interactions)
        assert part.shape == full.shape
        assert part.user_map == full.user_map and part.item_map == full.item_map
        assert part.matrix.format == "csr" and part.matrix.dtype == np.float32
        assert part.matrix.has_canonical_format
        assert (part.timestamps is None) == (full.timestamps is None)
        if part.timestamps is not None:
            assert part.timestamps.dtype == full.timestamps.dtype
    n_items = full.n_items
    keys = {}
    for name, part in (("train", train), ("test", test)):
        r, c, v, t = entries(part)
        keys[name] = (r * n_items + c, v, t)
    tr_keys, te_keys = keys["train"][0], keys["test"][0]
    assert np.intersect1d(tr_keys, te_keys).size == 0, "an interaction is in train and test"
    merged = [np.concatenate([keys["train"][j], keys["test"][j]]) for j in range(3)]
    order = np.argsort(merged[0], kind="stable")
    r, c, v, t = entries(full)
    np.testing.assert_array_equal(merged[0][order], r * n_items + c)
    np.testing.assert_array_equal(merged[1][order], v)
    np.testing.assert_array_equal(merged[2][order], t)
    np.testing.assert_array_equal((train.matrix + test.matrix).toarray(), full.matrix.toarray())


def counts(inter):
    return np.diff(inter.matrix.indptr)


def split_equal(a, b):
    (tr_a, te_a), (tr_b, te_b) = a, b
    return all(
        (x.matrix != y.matrix).nnz == 0 and x.nnz == y.nnz
        and np.array_equal(x.matrix.indices, y.matrix.indices)
        for x, y in ((tr_a, tr_b), (te_a, te_b))
    )


def user_rows(inter):
    """Per user: list of (timestamp, item) pairs, pure Python."""
    X = inter.matrix
    rows = []
    for u in range(inter.n_users):
        lo, hi = X.indptr[u], X.indptr[u + 1]
        rows.append([(inter.timestamps[p].item(), int(X.indices[p])) for p in range(lo, hi)])
    return rows


# --------------------------------------------------------------------- random_split

@given(inter=interactions_with_time(),
       test_fraction=st.floats(0.01, 0.99),
       min_train=st.integers(1, 3),
       seed=st.integers(0, 2**32 - 1))
def test_random_split_partition_and_counts(inter, test_fraction, min_train, seed):
    train, test = random_split(inter, test_fraction, random_state=seed, min_train=min_train)
    assert_partition(inter, train, test)
    for n_u, n_test in zip(counts(inter).tolist(), counts(test).tolist()):
        expected = math.floor(test_fraction * n_u + 0.5)  # round half up
        expected = max(0, min(expected, n_u - min_train))
        assert n_test == expected
        if n_u <= min_train:
            assert n_test == 0  # small users stay whole in train


@pytest.mark.parametrize(
    "test_fraction, n_u, expected",
    [(0.5, 1, 0), (0.5, 2, 1), (0.5, 3, 2), (0.5, 5, 3), (0.25, 2, 1), (0.2, 2, 0),
     (0.2, 10, 2), (0.9, 2, 1), (0.99, 10, 9)],
)
def test_random_split_rounding_by_hand(test_fraction, n_u, expected):
    X = sp.csr_matrix(np.ones((1, n_u), np.float32))
    train, test = random_split(X, test_fraction, random_state=0)
    assert test.nnz == expected and train.nnz == n_u - expected


def test_random_split_min_train_keeps_small_users_whole():
    X = sp.csr_matrix(np.tril(np.ones((6, 6), np.float32)))  # user u has u + 1 items
    train, test = random_split(X, 0.9, random_state=1, min_train=3)
    np.testing.assert_array_equal(counts(test), [0, 0, 0, 1, 2, 3])
    np.testing.assert_array_equal(counts(train), [1, 2, 3, 3, 3, 3])


def test_random_split_sparse_input_returns_interactions():
    X = sp.random(30, 20, density=0.3, format="coo", random_state=3, dtype=np.float64)
    train, test = random_split(X, 0.3, random_state=0)
    full = Interactions(X)
    assert_partition(full, train, test)
    assert train.timestamps is None and test.timestamps is None


def test_random_split_is_uniform_within_user():
    # Each of 10 items of one user is in test with probability 3/10.
    X = sp.csr_matrix(np.ones((1, 10), np.float32))
    hits = np.zeros(10)
    for seed in range(400):
        hits += random_split(X, 0.3, random_state=seed)[1].matrix.toarray()[0]
    share = hits / 400
    assert np.all((share > 0.2) & (share < 0.4)), share


@pytest.mark.parametrize("seed", [0, 12345])
def test_random_split_same_seed_same_split(seed):
    inter = big_interactions()
    a = random_split(inter, 0.3, random_state=seed)
    b = random_split(inter, 0.3, random_state=seed)
    assert split_equal(a, b)
    c = random_split(inter, 0.3, random_state=seed + 1)
    assert not split_equal(a, c)


def test_random_split_random_state_types():
    inter = big_interactions()
    ref = random_split(inter, 0.3, random_state=5)
    assert split_equal(ref, random_split(inter, 0.3, random_state=np.random.SeedSequence(5)))
    assert split_equal(ref, random_split(inter, 0.3, random_state=np.int64(5)))
    g = random_split(inter, 0.3, random_state=np.random.default_rng(5))
    assert split_equal(g, random_split(inter, 0.3, random_state=np.random.default_rng(5)))
    rs = random_split(inter, 0.3, random_state=np.random.RandomState(5))
    assert split_equal(rs, random_split(inter, 0.3, random_state=np.random.RandomState(5)))
    # One Generator advanced by two calls gives two different splits.
    gen = np.random.default_rng(5)
    assert not split_equal(random_split(inter, 0.3, random_state=gen),
                           random_split(inter, 0.3, random_state=gen))
    # None draws fresh entropy: two calls differ on a matrix this big.
    assert not split_equal(random_split(inter, 0.3), random_split(inter, 0.3))


# ---------------------------------------------------------------------- leave_k_out

@given(inter=interactions_with_time(), k=st.integers(1, 4),
       seed=st.one_of(st.none(), st.integers(0, 2**32 - 1)))
def test_leave_k_out_partition_and_latest(inter, k, seed):
    train, test = leave_k_out(inter, k, random_state=seed)
    assert_partition(inter, train, test)
    for rows, tr_rows, te_rows in zip(user_rows(inter), user_rows(train), user_rows(test)):
        if len(rows) <= k:
            assert te_rows == [] and sorted(tr_rows) == sorted(rows)  # whole in train
            continue
        assert len(te_rows) == k
        # The k largest timestamps, as a multiset; every test one >= every train one.
        assert sorted(t for t, _ in te_rows) == sorted(t for t, _ in rows)[-k:]
        assert min(t for t, _ in te_rows) >= max(t for t, _ in tr_rows)
        if seed is None:  # ties by item index: the last k of (timestamp, item) order
            assert sorted(te_rows) == sorted(rows)[-k:]


def test_leave_k_out_by_hand():
    inter = Interactions.from_arrays(
        ["a", "a", "a", "a", "b", "b", "c"], [0, 1, 2, 3, 0, 1, 2],
        [1, 2, 3, 4, 5, 6, 7], [40, 10, 30, 20, 5, 9, 1])
    train, test = leave_k_out(inter, k=2)
    np.testing.assert_array_equal(test.matrix.toarray(), [[1, 0, 3, 0], [0, 0, 0, 0], [0] * 4])
    np.testing.assert_array_equal(test.timestamps, [40, 30])
    np.testing.assert_array_equal(train.timestamps, [10, 20, 5, 9, 1])
    # k=1: user b (2 interactions) gives its latest; c (1 interaction) stays in train.
    train, test = leave_k_out(inter, k=1)
    np.testing.assert_array_equal(test.matrix.toarray(), [[1, 0, 0, 0], [0, 6, 0, 0], [0] * 4])


def test_leave_k_out_ties_by_item_index_or_seed():
    # One user, 20 items, all at the same time: without a seed the highest items go to test.
    n = 20
    inter = Interactions.from_arrays(np.zeros(n, int), np.arange(n), None, np.zeros(n, int))
    _, test = leave_k_out(inter, k=3)
    np.testing.assert_array_equal(test.matrix.indices, [17, 18, 19])
    seen = set()
    for seed in range(30):
        a = leave_k_out(inter, k=3, random_state=seed)[1].matrix.indices
        b = leave_k_out(inter, k=3, random_state=seed)[1].matrix.indices
        np.testing.assert_array_equal(a, b)
        seen.update(a.tolist())
    assert len(seen) > 10  # seeded ties reach many items, not just the highest


def test_leave_k_out_seed_changes_only_ties():
    inter = big_interactions(time_span=10**9)  # practically no ties
    ref = leave_k_out(inter, 2)
    assert split_equal(ref, leave_k_out(inter, 2, random_state=1))
    tied = big_interactions(time_span=5)
    a = leave_k_out(tied, 2, random_state=1)
    assert split_equal(a, leave_k_out(tied, 2, random_state=1))
    assert split_equal(a, leave_k_out(tied, 2, random_state=np.random.default_rng(1)))
    assert not split_equal(a, leave_k_out(tied, 2, random_state=2))
    assert not split_equal(a, leave_k_out(tied, 2))


def test_leave_k_out_needs_timestamps():
    X = sp.random(5, 5, density=0.5, format="csr", random_state=0)
    with pytest.raises(ValueError, match="needs timestamps.*random_split"):
        leave_k_out(X)
    with pytest.raises(ValueError, match="needs timestamps"):
        leave_k_out(Interactions(X))


# ----------------------------------------------------------------------- time_split

@given(inter=interactions_with_time(), cut=st.floats(-1, 1.1))
def test_time_split_cutoff(inter, cut):
    ts = inter.timestamps
    if ts.size:
        lo, hi = float(ts.min()), float(ts.max())
        cutoff = lo + cut * (hi - lo)
        if ts.dtype.kind == "i" and cut > 0.5:
            cutoff = int(round(cutoff))  # an int cut-off, possibly equal to a timestamp
    else:
        cutoff = 0
    train, test = time_split(inter, cutoff)
    assert_partition(inter, train, test)
    assert np.all(test.timestamps >= cutoff)
    assert np.all(train.timestamps < cutoff)
    assert test.nnz == int(np.sum(ts >= cutoff))


@given(inter=interactions_with_time(), test_fraction=st.floats(0.01, 0.99))
def test_time_split_test_fraction_closest(inter, test_fraction):
    train, test = time_split(inter, test_fraction=test_fraction)
    assert_partition(inter, train, test)
    ts = inter.timestamps
    if test.nnz and train.nnz:
        assert test.timestamps.min() > train.timestamps.max()
    elif test.nnz == 0:
        assert train.nnz == inter.nnz
    # Brute force: no threshold (distinct timestamp or "after all") is strictly closer.
    target = math.floor(test_fraction * ts.size + 0.5)
    options = [int(np.sum(ts >= t)) for t in np.unique(ts)] + [0]
    best = min(abs(n - target) for n in options)
    assert abs(test.nnz - target) == best
    # Of equally close options the later cut-off (smaller test) is chosen.
    assert test.nnz == min(n for n in options if abs(n - target) == best)


def test_time_split_by_hand():
    ts = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    inter = Interactions.from_arrays(np.arange(10) % 3, np.arange(10), None, ts)
    train, test = time_split(inter, cutoff=8)
    np.testing.assert_array_equal(np.sort(test.timestamps), [8, 9, 10])
    _, test = time_split(inter, test_fraction=0.2)
    np.testing.assert_array_equal(np.sort(test.timestamps), [9, 10])
    _, test = time_split(inter, cutoff=8.5)
    np.testing.assert_array_equal(np.sort(test.timestamps), [9, 10])
    # Ties stay together: 4 interactions at t=5 and 6 at t=1; 30% asks for 3 -> 4 is closest.
    tied = Interactions.from_arrays(np.arange(10), np.zeros(10, int), None, [1] * 6 + [5] * 4)
    _, test = time_split(tied, test_fraction=0.3)
    assert test.nnz == 4


def test_time_split_int_cutoff_is_exact_on_large_int_timestamps():
    base = 2**60
    ts = np.array([base, base + 1, base + 2])
    inter = Interactions.from_arrays([0, 0, 1], [0, 1, 0], None, ts)
    _, test = time_split(inter, cutoff=base + 1)
    np.testing.assert_array_equal(np.sort(test.timestamps), [base + 1, base + 2])


# ------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5, float("nan"), float("inf")])
def test_bad_test_fraction_value(bad):
    inter = big_interactions(n_events=50)
    with pytest.raises(ValueError, match="test_fraction"):
        random_split(inter, bad)
    with pytest.raises(ValueError, match="test_fraction"):
        time_split(inter, test_fraction=bad)


@pytest.mark.parametrize("bad", ["0.2", None, True])
def test_bad_test_fraction_type(bad):
    with pytest.raises(TypeError, match="test_fraction"):
        random_split(big_interactions(n_events=50), bad)


def test_bad_k_and_min_train():
    inter = big_interactions(n_events=50)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="k must be a positive integer.*got " + str(bad)):
            leave_k_out(inter, bad)
        with pytest.raises(ValueError, match="min_train"):
            random_split(inter, min_train=bad)
    for bad in (1.5, "2", True):
        with pytest.raises(TypeError, match="k must be"):
            leave_k_out(inter, bad)
        with pytest.raises(TypeError, match="min_train"):
            random_split(inter, min_train=bad)


@pytest.mark.parametrize("func", [random_split, leave_k_out, time_split])
@pytest.mark.parametrize("bad", [np.ones((3, 3)), [[1, 0], [0, 1]], None])
def test_bad_interactions_type(func, bad):
    with pytest.raises(TypeError, match=r"interactions must be an Interactions or a scipy\.sparse"):
        func(bad)


def test_bad_random_state():
    inter = big_interactions(n_events=50)
    with pytest.raises(TypeError, match="random_state"):
        random_split(inter, random_state="seed")
    with pytest.raises(ValueError, match="random_state"):
        leave_k_out(inter, random_state=-1)


def test_time_split_bad_arguments():
    inter = big_interactions(n_events=50)
    with pytest.raises(ValueError, match="exactly one of cutoff"):
        time_split(inter)
    with pytest.raises(ValueError, match="exactly one of cutoff"):
        time_split(inter, 10, test_fraction=0.2)
    with pytest.raises(ValueError, match="cutoff must be finite"):
        time_split(inter, float("nan"))
    with pytest.raises(TypeError, match="cutoff"):
        time_split(inter, "2020-01-01")
    with pytest.raises(ValueError, match="time_split needs timestamps"):
        time_split(Interactions(inter.matrix), 10)
    with pytest.raises(ValueError, match="time_split needs timestamps"):
        time_split(inter.matrix, test_fraction=0.2)


def test_bad_timestamps():
    X = sp.csr_matrix(np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        leave_k_out(Interactions(X, timestamps=np.array([1.0, np.nan, 2.0])))
    with pytest.raises(TypeError, match="numeric timestamps"):
        time_split(Interactions(X, timestamps=np.array(["a", "b", "c"])), 1)


# --------------------------------------------------------------------------- holdout_split


def test_holdout_split_partitions_positives():
    X = make_synthetic(300, 200, 5000, random_state=2)
    train, test = holdout_split(X, test_fraction=0.25, random_state=4)
    for part, nnz in ((train, 3750), (test, 1250)):
        assert_canonical_ones(part, X.shape, nnz)
    assert (train + test != X).nnz == 0  # disjoint (a shared entry would sum to 2) and complete
    again_train, again_test = holdout_split(X, test_fraction=0.25, random_state=4)
    assert np.array_equal(again_test.indices, test.indices) and np.array_equal(again_test.indptr, test.indptr)
    _, other_test = holdout_split(X, test_fraction=0.25, random_state=5)
    assert (other_test != test).nnz > 0
    # Per-interaction: every user's share of test positives is near 1/4 on average.
    share = test.getnnz(axis=1) / np.maximum(X.getnnz(axis=1), 1)
    assert abs(share[X.getnnz(axis=1) >= 20].mean() - 0.25) < 0.03


def test_holdout_split_accepts_coo_and_movielens(movielens):
    train = movielens[0].tocoo()
    fit, held_out = holdout_split(train, 0.1, random_state=0)  # COO in
    assert_canonical_ones(fit, train.shape, train.nnz - round(0.1 * train.nnz))
    assert held_out.nnz == round(0.1 * train.nnz)
    assert (fit + held_out != train).nnz == 0  # disjoint and complete


@pytest.mark.parametrize(
    "X, fraction, error, pattern",
    [
        (sp.eye(5, format="csr"), 0.0, ValueError, r"test_fraction must be > 0.0; got 0.0"),
        (sp.eye(5, format="csr"), 1.0, ValueError, r"test_fraction must be < 1.0; got 1.0"),
        (sp.eye(5, format="csr"), "0.2", TypeError, r"test_fraction must be a real number"),
        (np.eye(5), 0.2, TypeError, r"X must be a scipy.sparse matrix"),
    ],
)
def test_holdout_split_validates_arguments(X, fraction, error, pattern):
    with pytest.raises(error, match=pattern):
        holdout_split(X, fraction)


def test_holdout_split_is_still_importable_from_datasets():
    assert holdout_split_reexported is holdout_split
