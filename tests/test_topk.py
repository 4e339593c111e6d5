"""Top-N kernel against the lexsort reference in reference_metrics.py."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bpr_numba import _scoring
from bpr_numba._scoring import similar_items_topk, topk_items

import reference_metrics as ref

SETTINGS = settings(deadline=None, max_examples=50)


@st.composite
def topk_problems(draw):
    """Small-integer factors (many tied scores), exclusion rows, filters, candidates."""
    n_users = draw(st.integers(1, 30))
    n_items = draw(st.integers(2, 40))
    f = draw(st.integers(1, 3))
    U = draw(hnp.arrays(np.int8, (n_users, f), elements=st.integers(-2, 2))).astype(np.float32)
    V = draw(hnp.arrays(np.int8, (n_items, f), elements=st.integers(-2, 2))).astype(np.float32)
    userids = np.array(draw(st.lists(st.integers(0, n_users - 1), min_size=0, max_size=12)), np.int64)
    item = st.integers(0, n_items - 1)
    # Exclusion rows in any order, with repeats, some empty, some the whole catalogue.
    rows = []
    for _ in range(userids.size):
        if draw(st.integers(0, 5)) == 0:
            rows.append(list(range(n_items))[::-1])
        else:
            rows.append(draw(st.lists(item, max_size=n_items)))
    filter_items = np.array(draw(st.lists(item, max_size=5)), np.int64)
    candidates = draw(st.none() | st.lists(item, min_size=0, max_size=n_items))
    if candidates is not None:
        candidates = np.array(candidates, np.int64)
    N = draw(st.integers(1, 45))
    return U, V, userids, rows, filter_items, candidates, N


def to_csr_rows(rows):
    indptr = np.zeros(len(rows) + 1, np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    indices = np.array([i for r in rows for i in r], np.int32)
    return indptr, indices


@SETTINGS
@given(topk_problems())
def test_topk_matches_lexsort_reference(problem):
    U, V, userids, rows, filter_items, candidates, N = problem
    indptr, indices = to_csr_rows(rows)
    ids, scores = topk_items(U, V, userids, N, indptr, indices, filter_items, candidates)
    assert ids.dtype == np.int32 and scores.dtype == np.float32
    assert ids.shape == scores.shape == (userids.size, N)
    expected_ids, expected_scores = ref.topk_reference(U[userids] @ V.T, N, rows, filter_items, candidates)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(scores, expected_scores)
    # Never a filtered, excluded or non-candidate item; padding only at the end.
    for r in range(userids.size):
        returned = ids[r][ids[r] >= 0]
        assert not np.isin(returned, filter_items).any()
        assert not np.isin(returned, rows[r]).any()
        if candidates is not None:
            assert np.isin(returned, candidates).all()
        assert np.all(ids[r, returned.size:] == -1)
        assert np.all(scores[r, returned.size:] == -np.inf)


def test_ties_broken_by_item_id_and_padding():
    U = np.ones((1, 1), np.float32)
    V = np.array([[1], [2], [1], [2], [0]], np.float32)
    ids, scores = topk_items(U, V, [0], 7)
    np.testing.assert_array_equal(ids, [[1, 3, 0, 2, 4, -1, -1]])
    np.testing.assert_array_equal(scores, [[2, 2, 1, 1, 0, -np.inf, -np.inf]])
    ids, _ = topk_items(U, V, [0], 3, np.array([0, 1]), np.array([3]), filter_items=[0])
    np.testing.assert_array_equal(ids, [[1, 2, 4]])
    ids, _ = topk_items(U, V, [0], 2, candidates=[4, 2, 2])
    np.testing.assert_array_equal(ids, [[2, 4]])
    ids, scores = topk_items(U, V, [0], 2, candidates=[], filter_items=[1])
    np.testing.assert_array_equal(ids, [[-1, -1]])
    ids, scores = topk_items(U, V, np.zeros(0, np.int64), 2)
    assert ids.shape == (0, 2) and scores.shape == (0, 2)


def test_several_chunks_equal_one(monkeypatch):
    rng = np.random.default_rng(0)
    # Integer factors: exact products, so the chunk shape (which may change BLAS's
    # summation order in the last bit for float data) cannot matter.
    U = rng.integers(-9, 10, (50, 8)).astype(np.float32)
    V = rng.integers(-9, 10, (300, 8)).astype(np.float32)
    liked = sp.random(50, 300, density=0.1, random_state=rng, format="csr")
    users = rng.integers(0, 50, 40)
    rows = liked[users]
    whole = topk_items(U, V, users, 10, rows.indptr, rows.indices)
    monkeypatch.setattr(_scoring, "chunk_rows", lambda n_cols: 3)
    chunked = topk_items(U, V, users, 10, rows.indptr, rows.indices)
    np.testing.assert_array_equal(whole[0], chunked[0])
    np.testing.assert_array_equal(whole[1], chunked[1])
    expected_ids, _ = ref.topk_reference(U[users] @ V.T, 10, [r.indices for r in rows], ())
    np.testing.assert_array_equal(whole[0], expected_ids)


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.integers(2, 40), st.integers(1, 45))
def test_similar_items_cosine(seed, n_items, N):
    rng = np.random.default_rng(seed)
    V = rng.integers(-2, 3, (n_items, 3)).astype(np.float32)
    V[rng.integers(0, n_items)] = 0.0  # a zero row must not give NaN
    itemids = rng.integers(0, n_items, 6)
    ids, scores = similar_items_topk(V, itemids, N)
    norms = np.linalg.norm(V, axis=1).astype(np.float32)
    norms[norms == 0] = 1
    normalised = (V / norms[:, None]).astype(np.float32)
    expected_ids, expected_scores = ref.topk_reference(
        normalised[itemids] @ normalised.T, N, [[i] for i in itemids])
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-6, atol=1e-6)
    assert not np.isnan(scores).any()
    for r, item in enumerate(itemids):
        assert item not in ids[r]
        assert np.all(scores[r][ids[r] >= 0] <= 1 + 1e-6)


def test_similar_items_can_include_self_first():
    rng = np.random.default_rng(1)
    V = rng.standard_normal((20, 4)).astype(np.float32)
    ids, scores = similar_items_topk(V, np.arange(20), 3, exclude_self=False)
    np.testing.assert_array_equal(ids[:, 0], np.arange(20))
    np.testing.assert_allclose(scores[:, 0], 1.0, rtol=1e-5)


def test_bad_arguments_and_threads():
    U = np.ones((3, 2), np.float32)
    V = np.ones((4, 2), np.float32)
    with pytest.raises(IndexError, match="userids contains 3"):
        topk_items(U, V, [3], 2)
    with pytest.raises(IndexError, match="filter_items"):
        topk_items(U, V, [0], 2, filter_items=[4])
    with pytest.raises(IndexError, match="candidates"):
        topk_items(U, V, [0], 2, candidates=[-1])
    with pytest.raises(IndexError, match="exclude_indices"):
        topk_items(U, V, [0], 2, np.array([0, 1]), np.array([9]))
    with pytest.raises(ValueError, match="exclude_indptr"):
        topk_items(U, V, [0, 1], 2, np.array([0, 1]), np.array([1]))
    with pytest.raises(ValueError, match="N must be"):
        topk_items(U, V, [0], 0)
    with pytest.raises(ValueError, match="same width"):
        topk_items(U, np.ones((4, 3), np.float32), [0], 2)
    before = numba.get_num_threads()
    ids, _ = topk_items(U, V, [0, 1], 2, num_threads=1)
    assert numba.get_num_threads() == before
    np.testing.assert_array_equal(ids, [[0, 1], [0, 1]])
