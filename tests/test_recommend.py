"""recommend, similar_items and predict against NumPy references."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

from bpr_numba import BPR

from conftest import sparse_interactions


def _fitted(X, seed=0):
    return BPR(factors=4, epochs=2, negatives="uniform", random_state=seed).fit(
        X, show_progress=False)


def _reference_top(scores, excluded, N):
    order = [i for i in np.lexsort((np.arange(scores.size), -scores)) if i not in excluded]
    return np.array(order[:N], np.int64)


@given(X=sparse_interactions(min_items=2), N=st.integers(1, 50), data=st.data())
def test_recommend_matches_a_sort_and_never_returns_liked_items(X, N, data):
    model = _fitted(X)
    users = data.draw(st.lists(st.integers(0, X.shape[0] - 1), min_size=1, max_size=5))
    # One row of user_items per given id (implicit's convention).
    ids, scores = model.recommend(users, X[users], N=N)
    assert ids.shape == scores.shape == (len(users), N)
    full = model.user_factors @ model.item_factors.T
    for row, u in enumerate(users):
        liked = set(X.indices[X.indptr[u]:X.indptr[u + 1]].tolist())
        expected = _reference_top(full[u], liked, N)
        got = ids[row][ids[row] >= 0]
        assert not liked & set(got.tolist())
        assert len(got) == len(expected)
        np.testing.assert_allclose(scores[row][:len(got)], full[u][got], rtol=1e-5, atol=1e-6)
        assert np.all(np.diff(scores[row][:len(got)]) <= 0)
        assert np.all(ids[row][len(got):] == -1) and np.all(np.isneginf(scores[row][len(got):]))
        np.testing.assert_allclose(full[u][got], full[u][expected], rtol=1e-5, atol=1e-6)


def test_recommend_user_items_as_rows_of_the_given_users():
    X = sp.random(20, 15, density=0.3, format="csr", random_state=1)
    model = _fitted(X)
    users = np.array([3, 7, 3])
    whole = model.recommend(users, X, N=5)
    rows = model.recommend(users, X[users], N=5)
    np.testing.assert_array_equal(whole[0], rows[0])
    with pytest.raises(ValueError, match="one row per given user"):
        model.recommend(users, X[:5], N=5)
    with pytest.raises(ValueError, match="needs user_items"):
        model.recommend(3)


def test_recommend_one_user_is_1d_and_filters_and_restricts():
    X = sp.random(10, 12, density=0.3, format="csr", random_state=2)
    model = _fitted(X)
    ids, scores = model.recommend(4, X, N=3, filter_items=[0, 1], items=np.arange(6))
    assert ids.ndim == scores.ndim == 1 and len(ids) <= 3
    assert ids.dtype == np.int32 and scores.dtype == np.float32
    assert set(ids.tolist()) <= set(range(2, 6)) - set(X[4].indices.tolist())
    ids, _ = model.recommend(4, N=100, filter_already_liked_items=False)
    assert sorted(ids.tolist()) == list(range(12))


def test_similar_items_is_cosine_and_excludes_itself():
    X = sp.random(30, 10, density=0.4, format="csr", random_state=3)
    model = _fitted(X)
    F = model.item_factors[:, :-1]  # the bias column is left out
    cos = (F @ F.T) / np.outer(np.linalg.norm(F, axis=1), np.linalg.norm(F, axis=1))
    ids, scores = model.similar_items(2, N=4)
    assert 2 not in ids.tolist() and len(ids) == 4
    expected = _reference_top(cos[2], {2}, 4)
    np.testing.assert_allclose(scores, cos[2][expected], rtol=1e-5, atol=1e-6)
    ids2, _ = model.similar_items([2, 5], N=20)
    assert ids2.shape == (2, 20) and np.all(ids2[:, 9:] == -1)


def test_predict_scores_pairs():
    X = sp.random(10, 8, density=0.4, format="csr", random_state=4)
    model = _fitted(X)
    users, items = np.array([0, 3, 9]), np.array([7, 0, 2])
    expected = np.sum(model.user_factors[users] * model.item_factors[items], axis=1)
    np.testing.assert_allclose(model.predict(users, items), expected, rtol=1e-6)
    assert np.ndim(model.predict(1, 2)) == 0
    with pytest.raises(IndexError, match="item_ids contains 8"):
        model.predict([0], [8])
    with pytest.raises(ValueError, match="one length"):
        model.predict([0, 1], [1])
    with pytest.raises(ValueError, match="1-D"):
        model.predict([[0]], [[1]])
