"""Popularity baseline against NumPy references."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

from bpr_numba import metrics
from bpr_numba._validation import NotFittedError
from bpr_numba.baselines import Popularity
from bpr_numba.data import Interactions

from conftest import sparse_interactions


def _random_matrix(n_users, n_items, density, seed):
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((n_users, n_items)) < density).astype(np.float32))


def _reference_order(popularity, excluded=(), allowed=None):
    """Item ids by popularity descending, then id ascending (a stable sort)."""
    order = np.argsort(-popularity.astype(np.float64), kind="stable")
    keep = [i for i in order if i not in set(excluded) and (allowed is None or i in set(allowed))]
    return np.array(keep, np.int64)


def _reference_auc(scores, test, train=None):
    """Mean per-user AUC, ties one half; with ``train`` its positives leave the candidates."""
    test = sp.csr_matrix(test).toarray() != 0
    seen = np.zeros_like(test) if train is None else sp.csr_matrix(train).toarray() != 0
    values = []
    for u in range(test.shape[0]):
        positives = scores[test[u] & ~seen[u]]
        negatives = scores[~test[u] & ~seen[u]]
        if positives.size == 0 or negatives.size == 0:
            continue
        greater = (positives[:, None] > negatives[None, :]).sum()
        ties = (positives[:, None] == negatives[None, :]).sum()
        values.append((greater + 0.5 * ties) / (positives.size * negatives.size))
    return float(np.mean(values))


# ------------------------------------------------------------------- fitting


def test_popularity_equals_column_counts_of_the_train_matrix():
    X = _random_matrix(40, 25, 0.2, seed=0)
    model = Popularity().fit(X)
    expected = (X.toarray() != 0).sum(axis=0)
    assert model.item_popularity_.dtype == np.float32
    np.testing.assert_array_equal(model.item_popularity_, expected)
    assert (model.n_users, model.n_items) == (40, 25)
    assert model.user_factors.shape == (40, 1) and model.user_factors.dtype == np.float32
    assert np.all(model.user_factors == 1)
    assert model.item_factors.shape == (25, 1) and model.item_factors.dtype == np.float32
    np.testing.assert_array_equal(model.item_factors[:, 0], expected)


def test_duplicates_count_once_and_explicit_zeros_not_at_all():
    # COO with a duplicated (0, 1), an explicit zero at (1, 2) and a value 5 at (2, 1).
    rows = np.array([0, 0, 1, 2, 2])
    cols = np.array([1, 1, 2, 1, 0])
    vals = np.array([1.0, 1.0, 0.0, 5.0, 2.0], np.float32)
    X = sp.coo_matrix((vals, (rows, cols)), shape=(3, 4))
    np.testing.assert_array_equal(Popularity().fit(X).item_popularity_, [1, 2, 0, 0])
    np.testing.assert_array_equal(Popularity(weighted=True).fit(X).item_popularity_, [2, 7, 0, 0])


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_weighted_sums_stored_values_in_every_format(fmt):
    rng = np.random.default_rng(3)
    dense = rng.integers(0, 4, size=(30, 12)) * (rng.random((30, 12)) < 0.3)
    X = sp.csr_matrix(dense.astype(np.float32)).asformat(fmt)
    weighted = Popularity(weighted=True).fit(X).item_popularity_
    counted = Popularity().fit(X).item_popularity_
    np.testing.assert_array_equal(weighted, dense.sum(axis=0))
    np.testing.assert_array_equal(counted, (dense != 0).sum(axis=0))


def test_fit_accepts_an_interactions_object():
    X = _random_matrix(15, 9, 0.3, seed=4)
    model = Popularity().fit(Interactions(X))
    np.testing.assert_array_equal(model.item_popularity_, (X.toarray() != 0).sum(axis=0))


def test_refit_discards_the_previous_shape():
    model = Popularity().fit(_random_matrix(10, 8, 0.5, seed=5))
    model.fit(_random_matrix(6, 3, 0.5, seed=6))
    assert (model.n_users, model.n_items) == (6, 3)
    assert model.user_factors.shape == (6, 1) and model.item_factors.shape == (3, 1)


# ------------------------------------------------------------------ predict


def test_predict_is_the_popularity_for_any_user():
    X = _random_matrix(20, 10, 0.3, seed=7)
    model = Popularity().fit(X)
    pop = (X.toarray() != 0).sum(axis=0)
    users = np.array([0, 5, 19, 5])
    items = np.array([9, 0, 3, 3])
    scores = model.predict(users, items)
    assert scores.dtype == np.float32 and scores.shape == (4,)
    np.testing.assert_array_equal(scores, pop[items])
    one = model.predict(2, 4)
    assert np.ndim(one) == 0 and one == pop[4]
    with pytest.raises(ValueError, match="one length"):
        model.predict([0, 1], [0])
    with pytest.raises(IndexError, match="valid ids: 0..9"):
        model.predict([0], [10])


# ---------------------------------------------------------------- recommend


@given(X=sparse_interactions(min_items=2), N=st.integers(1, 45), data=st.data())
def test_recommend_matches_a_stable_sort(X, N, data):
    model = Popularity().fit(X)
    pop = model.item_popularity_
    users = data.draw(st.lists(st.integers(0, X.shape[0] - 1), min_size=1, max_size=4))
    filter_items = data.draw(st.lists(st.integers(0, X.shape[1] - 1), max_size=4))
    allowed = data.draw(st.none() | st.lists(st.integers(0, X.shape[1] - 1), min_size=1))
    filter_liked = data.draw(st.booleans())
    ids, scores = model.recommend(users, X, N=N, filter_already_liked_items=filter_liked,
                                  filter_items=filter_items, items=allowed)
    assert ids.shape == scores.shape == (len(users), N)
    assert ids.dtype == np.int32 and scores.dtype == np.float32
    # NOTES: a user_items with one row per given id is read per id (row k for
    # users[k]), even when that count equals n_users; else rows are user ids.
    per_id = len(users) == X.shape[0]
    for row, u in enumerate(users):
        r = row if per_id else u
        liked = X.indices[X.indptr[r]:X.indptr[r + 1]].tolist() if filter_liked else []
        expected = _reference_order(pop, liked + filter_items, allowed)[:N]
        n = expected.size
        np.testing.assert_array_equal(ids[row, :n], expected)
        np.testing.assert_array_equal(scores[row, :n], pop[expected])
        assert np.all(ids[row, n:] == -1) and np.all(np.isneginf(scores[row, n:]))


def test_recommend_one_user_is_1d_and_ties_go_to_the_smaller_id():
    # Columns 1 and 3 tie on 2 users, column 2 has 3, column 0 has none.
    X = sp.csr_matrix(np.array([[0, 1, 1, 1],
                                [0, 1, 1, 1],
                                [0, 0, 1, 0]], np.float32))
    model = Popularity().fit(X)
    ids, scores = model.recommend(0, N=10, filter_already_liked_items=False)
    assert ids.ndim == scores.ndim == 1
    np.testing.assert_array_equal(ids, [2, 1, 3, 0])
    np.testing.assert_array_equal(scores, [3, 2, 2, 0])
    ids, scores = model.recommend(2, X, N=10)  # user 2 liked item 2
    np.testing.assert_array_equal(ids, [1, 3, 0])
    ids, _ = model.recommend(0, X, N=10)  # user 0 liked everything but item 0
    np.testing.assert_array_equal(ids, [0])
    ids, scores = model.recommend(np.array([0, 2]), X, N=3, filter_items=[1])
    np.testing.assert_array_equal(ids, [[0, -1, -1], [3, 0, -1]])
    np.testing.assert_array_equal(scores, [[0, -np.inf, -np.inf], [2, 0, -np.inf]])


def test_recommend_user_items_as_rows_of_the_given_users():
    X = _random_matrix(20, 15, 0.3, seed=8)
    model = Popularity().fit(X)
    users = np.array([3, 7, 3])
    whole = model.recommend(users, X, N=5)
    rows = model.recommend(users, X[users], N=5)
    np.testing.assert_array_equal(whole[0], rows[0])
    np.testing.assert_array_equal(whole[1], rows[1])
    for row, u in enumerate(users):
        assert not set(whole[0][row].tolist()) & set(X[u].indices.tolist())
    with pytest.raises(ValueError, match="one row per given user"):
        model.recommend(users, X[:5], N=5)
    with pytest.raises(ValueError, match="columns"):
        model.recommend(users, X[:, :4], N=5)
    with pytest.raises(ValueError, match="needs user_items"):
        model.recommend(3)


# ------------------------------------------------------------------ metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_auc_equals_a_numpy_reference(seed):
    rng = np.random.default_rng(seed)
    full = (rng.random((25, 18)) < 0.35).astype(np.float32)
    held_out = rng.random(full.shape) < 0.3
    train = sp.csr_matrix(full * ~held_out)
    test = sp.csr_matrix(full * held_out)
    model = Popularity().fit(train)
    scores = (train.toarray() != 0).sum(axis=0).astype(np.float64)
    assert metrics.full_auc(model, test) == pytest.approx(_reference_auc(scores, test), abs=1e-12)
    assert metrics.auc_score(model, test, train) == pytest.approx(
        _reference_auc(scores, test, train), abs=1e-12)


def test_metrics_accept_the_factor_pair_and_match_the_model():
    X = _random_matrix(30, 20, 0.3, seed=9)
    test = _random_matrix(30, 20, 0.1, seed=10)
    model = Popularity().fit(X)
    pair = (model.user_factors, model.item_factors)
    got = metrics.evaluate(model, test, X, metrics=["auc", "ndcg@5"], check_intersections=False)
    assert got == metrics.evaluate(pair, test, X, metrics=["auc", "ndcg@5"],
                                   check_intersections=False)


def test_full_auc_on_movielens_is_in_the_expected_band(movielens):
    train, test = movielens
    model = Popularity().fit(train)
    assert model.item_popularity_.sum() == train.nnz
    result = metrics.evaluate(model, test, train, metrics=["full_auc", "auc"])
    # Measured on ml-100k ua (min_rating 4): full_auc 0.8603, auc 0.8725.
    assert 0.84 <= result["full_auc"] <= 0.88
    assert 0.85 <= result["auc"] <= 0.89


# --------------------------------------------------------- errors and state


def test_unfitted_model_raises_not_fitted():
    model = Popularity()
    assert model.user_factors is None and model.item_factors is None
    for call in (lambda: model.n_users, lambda: model.n_items,
                 lambda: model.predict(0, 0),
                 lambda: model.recommend(0, filter_already_liked_items=False)):
        with pytest.raises(NotFittedError, match="not fitted"):
            call()
    with pytest.raises(NotFittedError):
        metrics.full_auc(model, _random_matrix(3, 3, 0.5, seed=0))


def test_bad_input_raises():
    with pytest.raises(TypeError, match="scipy.sparse"):
        Popularity().fit(np.ones((3, 4), np.float32))
    with pytest.raises(TypeError, match="scipy.sparse"):
        Popularity().fit([[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="no positives"):
        Popularity().fit(sp.csr_matrix((3, 4), dtype=np.float32))
    bad = sp.csr_matrix(np.array([[1.0, np.nan]], np.float32))
    with pytest.raises(ValueError, match="NaN"):
        Popularity().fit(bad)
    with pytest.raises(TypeError, match="weighted"):
        Popularity(weighted="yes").fit(_random_matrix(3, 3, 0.5, seed=0))
    model = Popularity().fit(_random_matrix(5, 4, 0.5, seed=11))
    with pytest.raises(IndexError, match="valid ids: 0..4"):
        model.recommend(5, filter_already_liked_items=False)
    with pytest.raises(ValueError, match="N must be a positive"):
        model.recommend(0, N=0, filter_already_liked_items=False)
    with pytest.raises(IndexError):
        model.recommend(0, filter_already_liked_items=False, filter_items=[4])
    with pytest.raises(TypeError, match="scipy.sparse"):
        model.recommend(0, np.ones((5, 4)))


def test_params_and_repr():
    assert repr(Popularity()) == "Popularity()"
    model = Popularity(weighted=True)
    assert repr(model) == "Popularity(weighted=True)"
    assert model.get_params() == {"weighted": True}
    clone = Popularity(**model.get_params())
    assert clone.get_params() == model.get_params()
    assert model.set_params(weighted=False) is model and repr(model) == "Popularity()"
    with pytest.raises(ValueError, match="Invalid parameter"):
        model.set_params(factors=3)


def test_raw_ids_like_bpr():
    from bpr_numba import Interactions

    data = Interactions.from_arrays(["a", "b", "b", "c", "c", "c"], ["x", "x", "y", "x", "y", "z"])
    model = Popularity().fit(data)
    assert model.user_map_ == data.user_map
    ids, scores = model.recommend("a", data, N=2, raw_ids=True)
    assert ids.tolist() == ["y", "z"] and scores.tolist() == [2.0, 1.0]
    assert model.predict("a", "x", raw_ids=True) == 3.0
    plain = Popularity().fit(data.matrix)
    with pytest.raises(ValueError, match="raw_ids=True needs raw user ids"):
        plain.recommend("a", data, raw_ids=True)
