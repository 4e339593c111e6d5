"""Tests of bpr_numba.datasets.synthetic: make_synthetic's format, seeding and planted structure."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sparse_checks import assert_canonical_ones

from bpr_numba.datasets import make_synthetic, synthetic
from bpr_numba.split import holdout_split


@pytest.mark.parametrize(
    "n_users, n_items, n_interactions",
    [(1, 1, 1), (5, 7, 35), (5, 7, 34), (10, 3, 1), (3, 1000, 2900), (300, 500, 20_000),
     (2000, 300, 590_000)],  # the last one is 98% full: dense rows
)
@pytest.mark.parametrize("popularity", [0.0, 1.0, 40.0])
def test_make_synthetic_exact_counts_and_format(n_users, n_items, n_interactions, popularity):
    X = make_synthetic(n_users, n_items, n_interactions, popularity=popularity, random_state=3)
    assert_canonical_ones(X, (n_users, n_items), n_interactions)
    if n_interactions >= n_users:
        assert np.diff(X.indptr).min() >= 1  # every user has at least one interaction


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 30),
    st.integers(1, 40),
    st.floats(0.0, 1.0),
    st.integers(1, 5),
    st.floats(0.0, 3.0),
    st.integers(0, 2**32 - 1),
)
def test_make_synthetic_property(n_users, n_items, fill, factors, popularity, seed):
    n_interactions = max(1, round(fill * n_users * n_items))
    X, user_factors, item_factors = make_synthetic(
        n_users, n_items, n_interactions, factors=factors, popularity=popularity, random_state=seed,
        return_factors=True,
    )
    assert_canonical_ones(X, (n_users, n_items), n_interactions)
    assert user_factors.shape == (n_users, factors) and item_factors.shape == (n_items, factors)
    assert np.allclose(user_factors.sum(axis=1), 1, atol=1e-5)  # topic mixtures
    assert np.allclose(item_factors.sum(axis=0), 1, atol=1e-5)  # topics' item distributions


def test_make_synthetic_is_seeded():
    first = make_synthetic(400, 300, 6000, random_state=7)
    again = make_synthetic(400, 300, 6000, random_state=7)
    other = make_synthetic(400, 300, 6000, random_state=8)
    assert np.array_equal(first.indptr, again.indptr) and np.array_equal(first.indices, again.indices)
    assert (first != other).nnz > 0
    from_generator = make_synthetic(400, 300, 6000, random_state=np.random.default_rng(7))
    assert np.array_equal(from_generator.indices, first.indices)  # default_rng(7) is seed 7
    from_sequence = make_synthetic(400, 300, 6000, random_state=np.random.SeedSequence(7))
    assert np.array_equal(from_sequence.indices, first.indices)
    from_legacy = make_synthetic(400, 300, 6000, random_state=np.random.RandomState(7))
    again_legacy = make_synthetic(400, 300, 6000, random_state=np.random.RandomState(7))
    assert np.array_equal(from_legacy.indices, again_legacy.indices)
    assert_canonical_ones(from_legacy, (400, 300), 6000)
    unseeded = make_synthetic(400, 300, 6000)
    assert (unseeded != first).nnz > 0


def _top_decile_share(X):
    counts = np.sort(np.bincount(X.indices, minlength=X.shape[1]))[::-1]
    return counts[: X.shape[1] // 10].sum() / counts.sum()


def test_popularity_skews_items():
    flat = make_synthetic(1000, 1700, 55_000, popularity=0.0, random_state=1)
    zipf = make_synthetic(1000, 1700, 55_000, popularity=1.0, random_state=1)
    steep = make_synthetic(1000, 1700, 55_000, popularity=2.0, random_state=1)
    # Measured: about 0.28, 0.50 and 0.85.
    assert _top_decile_share(flat) < 0.35
    assert _top_decile_share(zipf) > _top_decile_share(flat) + 0.15
    assert _top_decile_share(steep) > _top_decile_share(zipf) + 0.15


def _mean_auc(train, test, scores):
    """Mean per-user AUC of test positives against items in neither train nor test (ties half)."""
    aucs = []
    for u in range(test.shape[0]):
        positives = test.indices[test.indptr[u]:test.indptr[u + 1]]
        excluded = np.zeros(test.shape[1], dtype=bool)
        excluded[positives] = True
        excluded[train.indices[train.indptr[u]:train.indptr[u + 1]]] = True
        negatives = scores[u, ~excluded]
        if positives.size == 0 or negatives.size == 0:
            continue
        pos = scores[u, positives][:, None]
        aucs.append(np.mean((pos > negatives) + 0.5 * (pos == negatives)))
    return float(np.mean(aucs))


@pytest.mark.parametrize("popularity", [0.0, 1.0])
def test_planted_structure_predicts_held_out_items(popularity):
    X, user_factors, item_factors = make_synthetic(
        1000, 1700, 55_000, popularity=popularity, random_state=0, return_factors=True
    )
    train, test = holdout_split(X, 0.2, random_state=1)
    true_auc = _mean_auc(train, test, user_factors @ item_factors.T)
    item_counts = np.asarray(train.sum(axis=0), dtype=float)
    popularity_auc = _mean_auc(train, test, np.repeat(item_counts, X.shape[0], axis=0))
    shuffled = np.random.default_rng(0).permutation(X.shape[0])
    wrong_user_auc = _mean_auc(train, test, user_factors[shuffled] @ item_factors.T)
    # Measured (seeds 0-2): true 0.84 / 0.91, popularity 0.71 / 0.85, wrong users 0.60 / 0.79.
    assert true_auc > popularity_auc + 0.04
    assert true_auc > wrong_user_auc + 0.1
    assert true_auc > 0.8


@pytest.mark.parametrize("rounds", [6, 0])  # bulk draws; the dense Gumbel fallback alone
def test_sampler_is_sequential_sampling_without_replacement(monkeypatch, rounds):
    """Items drawn per user follow P(a) = p_a and P({a, b}) = sum over orders of p_a p_b / (1 - p_a)."""
    n_users = 60_000
    theta = np.tile([0.3, 0.7], (n_users, 1))
    phi = np.array([[8, 1], [6, 1], [4, 1], [2, 1], [1, 1], [1, 2], [1, 4], [1, 8], [0.5, 0.5], [0.5, 0.5]])
    phi /= phi.sum(axis=0)
    p = theta[0] @ phi.T
    need = np.tile([1, 2], n_users // 2)  # users alternate: one item, two items
    monkeypatch.setattr(synthetic, "_ROUNDS", rounds)
    table = synthetic._inverse_cdf_table(phi.T)
    keys = synthetic._sample_block(np.random.default_rng(5), theta, phi, table, need)
    assert np.array_equal(keys // 10, np.repeat(np.arange(n_users), need))
    items = keys % 10
    singles = items[np.repeat(need == 1, need)]
    pairs = items[np.repeat(need == 2, need)].reshape(-1, 2)
    assert np.all(pairs[:, 0] < pairs[:, 1])
    # Standard errors <= 0.003; the draws are seeded, so this is deterministic.
    assert np.abs(np.bincount(singles, minlength=10) / singles.size - p).max() < 0.012
    for a in range(10):
        for b in range(a + 1, 10):
            expected = p[a] * p[b] / (1 - p[a]) + p[b] * p[a] / (1 - p[b])
            found = np.mean((pairs[:, 0] == a) & (pairs[:, 1] == b))
            assert abs(found - expected) < 0.012, ((a, b), found, expected)


@pytest.mark.parametrize(
    "args, kwargs, error, pattern",
    [
        ((10, 10, 101), {}, ValueError, r"n_interactions must be <= n_users \* n_items = 100.*got 101"),
        ((0, 10, 5), {}, ValueError, r"n_users must be a positive integer"),
        ((10, 2.5, 5), {}, TypeError, r"n_items must be a positive integer; got 2.5"),
        ((10, 10, 0), {}, ValueError, r"n_interactions must be a positive integer"),
        ((10, 10, 5), {"factors": 0}, ValueError, r"factors must be a positive integer"),
        ((10, 10, 5), {"popularity": -1}, ValueError, r"popularity must be >= 0.0; got -1"),
        ((10, 10, 5), {"popularity": "zipf"}, TypeError, r"popularity must be a real number"),
        ((10, 10, 5), {"random_state": "seed"}, TypeError, r"random_state must be None, a non-negative int"),
        ((10, 10, 5), {"random_state": -3}, ValueError, r"random_state must be a non-negative integer.*-3"),
        ((10, 10, 5), {"return_factors": "yes"}, TypeError, r"return_factors must be True or False"),
    ],
)
def test_make_synthetic_validates_arguments(args, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        make_synthetic(*args, **kwargs)
