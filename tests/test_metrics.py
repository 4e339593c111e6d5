"""Evaluation kernel against the NumPy twins in reference_metrics.py, plus properties."""

from __future__ import annotations

import types

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bpr_numba import NotFittedError, _scoring, metrics
from bpr_numba._kernels import ranking

import reference_metrics as ref

SETTINGS = settings(deadline=None, max_examples=50)
ALL = ("full_auc", "auc", "precision", "recall", "ndcg", "map", "mrr")
RANKING = ("precision", "recall", "ndcg", "map", "mrr")


# ------------------------------------------------------------ strategies


@st.composite
def boolean_matrices(draw, shape):
    """A 0/1 matrix of the given shape with some empty and some full rows."""
    dense = draw(hnp.arrays(np.bool_, shape, elements=st.booleans()))
    n_users = shape[0]
    for u in draw(st.lists(st.integers(0, n_users - 1), max_size=3)):
        dense[u] = False  # users without test items / without train items
    for u in draw(st.lists(st.integers(0, n_users - 1), max_size=2)):
        dense[u] = True  # users who have every item
    return dense


@st.composite
def problems(draw, with_train=None):
    """(scores, test, train) with small-integer scores (many ties)."""
    n_users = draw(st.integers(1, 30))
    n_items = draw(st.integers(2, 40))
    scores = draw(hnp.arrays(np.int8, (n_users, n_items), elements=st.integers(-3, 3)))
    test = draw(boolean_matrices((n_users, n_items)))
    if with_train is None:
        with_train = draw(st.booleans())
    train = draw(boolean_matrices((n_users, n_items))) if with_train else None
    return (scores.astype(np.float32), sp.csr_matrix(test),
            None if train is None else sp.csr_matrix(train))


def as_model(scores):
    """A factor pair whose product is exactly ``scores``: (S, I)."""
    n_items = scores.shape[1]
    return np.ascontiguousarray(scores, np.float32), np.eye(n_items, dtype=np.float32)


def kernel_values(scores, test, train, k, names=ALL, max_passes=ranking.MAX_PASSES):
    """Run the kernel on a score matrix directly; dict name -> per-user array."""
    test = sp.csr_matrix(test)
    n_users = scores.shape[0]
    if train is None:
        train_indptr, train_indices = _scoring.empty_csr_arrays(n_users)
    else:
        train = sp.csr_matrix(train)
        train_indptr, train_indices = train.indptr, train.indices
    codes = np.array([ranking.METRIC_CODES[n][0] for n in names], np.int64)
    ks = np.full(len(names), k, np.int64)
    out = _scoring.evaluate_scores(scores, np.arange(n_users), test.indptr, test.indices,
                                    train_indptr, train_indices, codes, ks, max_passes)
    return {name: out[:, m] for m, name in enumerate(names)}


def assert_same(got, expected):
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, equal_nan=True)


# ------------------------------------------------------------ kernel vs twin


@SETTINGS
@given(problems(), st.integers(1, 45), st.integers(1, 45))
def test_public_api_matches_reference(problem, k, k2):
    scores, test, train = problem
    names = ["full_auc", "auc", f"precision@{k}", f"recall@{k}", f"ndcg@{k}", f"map@{k}",
             "mrr", f"ndcg@{k2}", f"precision@{k2}"]
    expected = ref.metrics_from_scores(scores, test, train, k)
    expected2 = ref.metrics_from_scores(scores, test, train, k2)
    usable = all(np.isfinite(expected[n]).any() for n in ALL)
    if not usable:
        with pytest.raises(ValueError, match="no usable user"):
            metrics.evaluate(as_model(scores), test, train, names, check_intersections=False)
        return
    got = metrics.evaluate(as_model(scores), test, train, names, reduce=False,
                           check_intersections=False)
    assert list(got) == list(dict.fromkeys(names))  # duplicates merged, order kept
    for name in names[:7]:
        assert got[name].dtype == np.float64 and got[name].shape == (scores.shape[0],)
        assert_same(got[name], expected[name.split("@")[0]])
    assert_same(got[f"ndcg@{k2}"], expected2["ndcg"])
    assert_same(got[f"precision@{k2}"], expected2["precision"])
    means = metrics.evaluate(as_model(scores), test, train, names, check_intersections=False)
    for name in names[:7]:
        assert means[name] == pytest.approx(np.nanmean(expected[name.split("@")[0]]), rel=1e-12)


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.integers(1, 30), st.integers(2, 40), st.booleans())
def test_kernel_matches_reference_on_float_scores(seed, n_users, n_items, with_train):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((n_users, n_items)).astype(np.float32)
    test = sp.random(n_users, n_items, density=0.2, random_state=rng, format="csr")
    train = sp.random(n_users, n_items, density=0.3, random_state=rng, format="csr") if with_train else None
    k = int(rng.integers(1, 12))
    expected = ref.metrics_from_scores(scores, test, train, k)
    for max_passes in (0, 10**9):  # "search" and "pass" strategies
        got = kernel_values(scores, test, train, k, max_passes=max_passes)
        for name in ALL:
            assert_same(got[name], expected[name])


@SETTINGS
@given(problems(), st.integers(1, 45))
def test_both_strategies_match_reference_with_ties(problem, k):
    scores, test, train = problem
    expected = ref.metrics_from_scores(scores, test, train, k)
    for max_passes in (0, 10**9):  # "search" and "pass" strategies
        got = kernel_values(scores, test, train, k, max_passes=max_passes)
        for name in ALL:
            assert_same(got[name], expected[name])


def test_chunked_driver_equals_one_block():
    rng = np.random.default_rng(3)
    U = rng.integers(-3, 4, (57, 4)).astype(np.float32)
    V = rng.integers(-3, 4, (23, 4)).astype(np.float32)
    test = sp.random(57, 23, density=0.2, random_state=rng, format="csr")
    train = sp.random(57, 23, density=0.2, random_state=rng, format="csr")
    test, train = (metrics._check_matrix(X, "X", (57, 23)) for X in (test, train))
    codes = np.array([0, 1, 2, 4, 6], np.int64)
    ks = np.array([1, 1, 5, 3, 1], np.int64)
    args = (U, V, test.indptr, test.indices, train.indptr, train.indices, codes, ks)
    whole = _scoring.evaluate_factors(*args)
    chunked = _scoring.evaluate_factors(*args, chunk_users=4)
    assert_same(chunked, whole)
    expected = ref.metrics_from_scores(U @ V.T, test, train, 5)
    assert_same(whole[:, 2], expected["precision"])
    assert_same(whole[:, 0], expected["full_auc"])


# ------------------------------------------------------------ properties


@SETTINGS
@given(problems())
def test_values_in_unit_interval_and_invariant_to_increasing_transforms(problem):
    scores, test, train = problem
    k = 5
    base = kernel_values(scores, test, train, k)
    for name in ALL:
        finite = base[name][np.isfinite(base[name])]
        assert np.all((finite >= 0) & (finite <= 1))
    # Strictly increasing maps of small integers are exact in float32.
    for transformed in (3.0 * scores + 7.0, np.exp(scores), scores ** 3):
        other = kernel_values(transformed.astype(np.float32), test, train, k)
        for name in ALL:
            assert_same(other[name], base[name])


@SETTINGS
@given(problems())
def test_negating_scores_gives_one_minus_auc(problem):
    scores, test, train = problem
    base = kernel_values(scores, test, train, 3, ("full_auc", "auc"))
    negated = kernel_values(-scores, test, train, 3, ("full_auc", "auc"))
    for name in ("full_auc", "auc"):
        assert_same(negated[name], 1.0 - base[name])


@SETTINGS
@given(problems(), st.integers(1, 45))
def test_perfect_reversed_and_constant_scores(problem, k):
    _, test, train = problem
    dense_test = test.toarray().astype(bool)
    dense_train = np.zeros_like(dense_test) if train is None else train.toarray().astype(bool)
    positives = dense_test & ~dense_train
    n_pos = positives.sum(axis=1)

    perfect = positives.astype(np.float32)
    got = kernel_values(perfect, test, train, k)
    included = np.isfinite(got["auc"])
    assert_same(got["auc"][included], 1.0)
    for name in ("ndcg", "map", "mrr"):
        assert_same(got[name][included], 1.0)
    assert_same(got["precision"][included], np.minimum(k, n_pos[included]) / k)
    assert_same(got["recall"][included], np.minimum(k, n_pos[included]) / n_pos[included])
    full = kernel_values(dense_test.astype(np.float32), test, train, k, ("full_auc",))["full_auc"]
    assert_same(full[np.isfinite(full)], 1.0)

    reversed_ = kernel_values(-perfect, test, train, k, ("auc",))["auc"]
    assert_same(reversed_[included], 0.0)
    full = kernel_values(-dense_test.astype(np.float32), test, train, k, ("full_auc",))["full_auc"]
    assert_same(full[np.isfinite(full)], 0.0)

    constant = kernel_values(np.zeros_like(perfect), test, train, k, ("full_auc", "auc"))
    for name in ("full_auc", "auc"):
        assert_same(constant[name][np.isfinite(constant[name])], 0.5)


@SETTINGS
@given(problems(with_train=True))
def test_excluded_users_are_nan(problem):
    scores, test, train = problem
    got = kernel_values(scores, test, train, 4)
    dense_test = test.toarray().astype(bool)
    dense_train = train.toarray().astype(bool)
    n_items = scores.shape[1]
    n_test = dense_test.sum(axis=1)
    n_pos = (dense_test & ~dense_train).sum(axis=1)
    n_neg = n_items - (dense_test | dense_train).sum(axis=1)
    assert np.array_equal(np.isnan(got["full_auc"]), (n_test == 0) | (n_test == n_items))
    main_excluded = (n_pos == 0) | (n_neg == 0)
    for name in ALL[1:]:
        assert np.array_equal(np.isnan(got[name]), main_excluded)


# ------------------------------------------------------------ semantics


def _one_user(scores, test_items, train_items=()):
    n_items = len(scores)
    test = sp.csr_matrix((np.ones(len(test_items)), ([0] * len(test_items), test_items)), shape=(1, n_items))
    train = sp.csr_matrix((np.ones(len(train_items)), ([0] * len(train_items), train_items)), shape=(1, n_items))
    return as_model(np.array([scores], np.float32)), test, train


def test_full_auc_counts_train_positives_as_negatives_auc_score_removes_them():
    # item 1 is a train positive scored above the test item 0.
    model, test, train = _one_user([2.0, 3.0, 0.0, 0.0], [0], [1])
    assert metrics.full_auc(model, test) == pytest.approx(2 / 3)
    assert metrics.auc_score(model, test, train) == pytest.approx(1.0)
    assert metrics.auc_score(model, test) == pytest.approx(2 / 3)
    assert metrics.precision_at_k(model, test, train, k=1) == pytest.approx(1.0)
    assert metrics.precision_at_k(model, test, k=1) == pytest.approx(0.0)
    assert metrics.mrr(model, test, train) == pytest.approx(1.0)
    assert metrics.mrr(model, test) == pytest.approx(0.5)


def test_test_items_also_in_train_are_not_positives():
    # item 1 is in both: it leaves the positives, so only item 0 counts.
    # Such a leak raises by default, counting the shared pairs.
    model, test, train = _one_user([1.0, 5.0, 3.0, 0.0], [0, 1], [1])
    with pytest.raises(ValueError, match="share 1 .user, item. pair"):
        metrics.recall_at_k(model, test, train, k=1)
    with pytest.raises(ValueError, match="check_intersections=False"):
        metrics.evaluate(model, test, train, metrics=["auc", "mrr"])
    kw = dict(check_intersections=False)
    assert metrics.recall_at_k(model, test, train, k=1, **kw) == pytest.approx(0.0)
    assert metrics.recall_at_k(model, test, train, k=2, **kw) == pytest.approx(1.0)
    # item 0 (1.0) loses to item 2 (3.0), beats item 3 (0.0).
    assert metrics.auc_score(model, test, train, **kw) == pytest.approx(0.5)
    # full_auc keeps item 1 (5.0) as a positive: 3 of the 4 pairs are won.
    assert metrics.full_auc(model, test) == pytest.approx(0.75)


def test_hand_computed_ranking_metrics_with_ties():
    # Ranking (score desc, id asc): 2 (5), 0 (3), 3 (3), 1 (1), 4 (0); positives {0, 4}.
    model, test, _ = _one_user([3.0, 1.0, 5.0, 3.0, 0.0], [0, 4])
    got = metrics.evaluate(model, test, metrics=["precision@2", "recall@2", "ndcg@2", "map@2", "mrr", "auc"])
    assert got["precision@2"] == pytest.approx(0.5)
    assert got["recall@2"] == pytest.approx(0.5)
    assert got["ndcg@2"] == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))
    assert got["map@2"] == pytest.approx((1 / 2) / 2)
    assert got["mrr"] == pytest.approx(0.5)
    # pairs: item 0 (3) beats 1, ties 3, loses to 2 -> 1.5; item 4 (0) beats none -> 0.
    assert got["auc"] == pytest.approx(1.5 / 6)


def test_k_larger_than_catalogue():
    model, test, _ = _one_user([3.0, 1.0, 5.0], [0, 1])
    assert metrics.precision_at_k(model, test, k=100) == pytest.approx(2 / 100)
    assert metrics.recall_at_k(model, test, k=100) == pytest.approx(1.0)
    assert metrics.ndcg_at_k(model, test, k=100) == pytest.approx(
        (1 / np.log2(3) + 1 / np.log2(4)) / (1 + 1 / np.log2(3)))


def test_users_without_test_items_excluded_from_mean():
    scores = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], np.float32)
    test = sp.csr_matrix(np.array([[1, 0, 0], [0, 0, 0], [0, 1, 0]]))
    per_user = metrics.auc_score(as_model(scores), test, reduce=False)
    assert_same(per_user, [1.0, np.nan, 0.25])
    assert metrics.auc_score(as_model(scores), test) == pytest.approx(0.625)


def test_factor_pairs_objects_and_float64_factors_agree():
    rng = np.random.default_rng(0)
    U = rng.integers(-2, 3, (20, 3)).astype(np.float64)
    V = rng.integers(-2, 3, (15, 3)).astype(np.float64)
    test = sp.random(20, 15, density=0.2, random_state=1, format="coo")
    model = types.SimpleNamespace(user_factors=U, item_factors=np.asfortranarray(V))
    a = metrics.evaluate(model, test, metrics=["auc", "ndcg@3"])
    b = metrics.evaluate((U.astype(np.float32), V.astype(np.float32)), test.tocsc(), metrics=["auc", "ndcg@3"])
    assert a == b
    expected = ref.metrics_from_scores((U @ V.T).astype(np.float32), test, None, 3)
    assert a["ndcg@3"] == pytest.approx(np.nanmean(expected["ndcg"]))


# ------------------------------------------------------------ errors and threads


def test_unfitted_model_raises_not_fitted():
    test = sp.csr_matrix(np.eye(3))
    with pytest.raises(NotFittedError):
        metrics.auc_score(types.SimpleNamespace(user_factors=None, item_factors=None), test)
    with pytest.raises(NotFittedError):
        metrics.full_auc(object(), test)


def test_shape_mismatch_names_both_shapes():
    model = (np.ones((3, 2), np.float32), np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"\(3, 5\).*\(3, 4\)"):
        metrics.auc_score(model, sp.csr_matrix((3, 5)))
    with pytest.raises(ValueError, match=r"train has shape \(2, 4\).*\(3, 4\)"):
        metrics.auc_score(model, sp.csr_matrix(np.eye(3, 4)), sp.csr_matrix((2, 4)))


def test_bad_arguments():
    model = (np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32))
    test = sp.csr_matrix(np.eye(3))
    with pytest.raises(ValueError, match="known metrics: full_auc, auc, precision@k"):
        metrics.evaluate(model, test, metrics=["hit_rate@10"])
    for bad in ("auc@3", "precision", "ndcg@0", "mrr@5"):
        with pytest.raises(ValueError, match="unknown metric"):
            metrics.evaluate(model, test, metrics=[bad])
    with pytest.raises(TypeError):
        metrics.auc_score(model, np.eye(3))
    with pytest.raises(ValueError):
        metrics.precision_at_k(model, test, k=0)
    with pytest.raises(ValueError, match="same width"):
        metrics.auc_score((np.ones((3, 2)), np.ones((3, 1))), test)
    with pytest.raises(ValueError, match="NaN"):
        metrics.auc_score((np.full((3, 2), np.nan), np.ones((3, 2))), test)


def test_no_usable_user_raises():
    model = (np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match="no usable user"):
        metrics.auc_score(model, sp.csr_matrix((3, 3)))
    with pytest.raises(ValueError, match="no usable user"):  # every user has every item
        metrics.full_auc(model, sp.csr_matrix(np.ones((3, 3))))
    test = sp.csr_matrix(np.eye(3))
    with pytest.raises(ValueError, match="no usable user"):  # train removes all positives
        metrics.auc_score(model, test, test, check_intersections=False)


def test_num_threads_is_restored():
    model = (np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32))
    test = sp.csr_matrix(np.eye(3))
    before = numba.get_num_threads()
    metrics.evaluate(model, test, num_threads=1)
    assert numba.get_num_threads() == before
    with pytest.raises(ValueError):
        metrics.evaluate(model, test, metrics=["nope"], num_threads=1)
    assert numba.get_num_threads() == before
    with pytest.raises(ValueError):
        metrics.evaluate(model, test, num_threads=-1)
    numba.set_num_threads(1)
    try:
        metrics.evaluate(model, test, num_threads=0)
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(before)


def test_reference_auc_is_the_pairwise_definition():
    # sklearn's roc_auc_score is the Mann-Whitney statistic: the share of
    # (positive, negative) pairs ordered right, ties counting one half.
    rng = np.random.default_rng(5)
    for _ in range(50):
        pos = rng.integers(0, 4, rng.integers(1, 6))
        neg = rng.integers(0, 4, rng.integers(1, 9))
        pairs = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        assert ref.auc_rank(pos, neg) == pytest.approx(pairs.mean())


def test_many_positives_use_the_binary_search_path_correctly():
    # More than 64 positives per user switches the count from a linear scan to
    # binary searches; small-integer scores keep many ties.
    rng = np.random.default_rng(11)
    n_users, n_items = 12, 300
    scores = rng.integers(-4, 5, (n_users, n_items)).astype(np.float32)
    scores[::3] = rng.standard_normal((4, n_items)).astype(np.float32)
    test = sp.csr_matrix(rng.random((n_users, n_items)) < rng.uniform(0.05, 0.8, (n_users, 1)))
    train = sp.csr_matrix(rng.random((n_users, n_items)) < 0.1)
    assert (test.getnnz(axis=1) > ranking.LINEAR_COUNT_MAX).sum() >= 4
    for tr in (None, train):
        expected = ref.metrics_from_scores(scores, test, tr, 20)
        for max_passes in (0, ranking.MAX_PASSES, 10**9):
            got = kernel_values(scores, test, tr, 20, max_passes=max_passes)
            for name in ALL:
                assert_same(got[name], expected[name])


def test_parse_metric():
    assert metrics.parse_metric("ndcg@10") == ("ndcg", 10)
    assert metrics.parse_metric("full_auc") == ("full_auc", None)
    assert metrics.parse_metric("mrr") == ("mrr", None)
    for bad in ("ndcg", "auc@5", "hit@3", "precision@-1", 7):
        with pytest.raises(ValueError, match="known metrics"):
            metrics.parse_metric(bad)


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.integers(1, 20), st.integers(2, 30))
def test_overlap_check_counts_the_shared_pairs(seed, n_users, n_items):
    rng = np.random.default_rng(seed)
    test = sp.random(n_users, n_items, density=0.3, random_state=rng, format="csr")
    train = sp.random(n_users, n_items, density=0.3, random_state=rng, format="csr")
    model = (rng.standard_normal((n_users, 3)), rng.standard_normal((n_items, 3)))
    shared = int(((test.toarray() != 0) & (train.toarray() != 0)).sum())
    if shared:
        with pytest.raises(ValueError, match=f"share {shared} "):
            metrics.evaluate(model, test, train, metrics=["auc"])
    else:
        try:
            metrics.evaluate(model, test, train, metrics=["auc"])
        except ValueError as exc:  # only "no usable user" may be raised
            assert "no usable user" in str(exc)
