"""The implicit drop-in (bpr_numba.implicit) and what BPR gained for it.

The contract, in our words: implicit's constructor and defaults; a thin
mapping onto BPR (same factors as the mapped BPR); implicit's layout, shapes
and orderings; CSR checks and the conversion warning; the epoch callback;
save/load to paths and file objects (also before fit); pickling; and BPR's
native fold-in in recommend and similar_items.
"""

from __future__ import annotations

import copy
import inspect
import io
import pickle
import sys
import types
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_array_equal

from bpr_numba import BPR
from bpr_numba.implicit import BayesianPersonalizedRanking, ParameterWarning

FLT_MAX = np.finfo(np.float32).max


def checkerboard(n):
    """Even users like even items, odd users odd items; the diagonal is held out."""
    dense = (np.add.outer(np.arange(n), np.arange(n)) % 2 == 0).astype(np.float32)
    np.fill_diagonal(dense, 0.0)
    return sp.csr_matrix(dense)


@pytest.fixture(scope="module")
def board():
    return checkerboard(40)


@pytest.fixture(scope="module")
def fitted(board):
    model = BayesianPersonalizedRanking(factors=3, regularization=0.0, random_state=42,
                                        num_threads=1)
    return model.fit(board, show_progress=False)


def test_defaults_are_implicits():
    expected = {"factors": 100, "learning_rate": 0.01, "regularization": 0.01,
                "dtype": np.float32, "iterations": 100, "num_threads": 0,
                "verify_negative_samples": True, "random_state": None, "use_gpu": False}
    signature = inspect.signature(BayesianPersonalizedRanking.__init__)
    defaults = {k: p.default for k, p in signature.parameters.items() if k != "self"}
    assert defaults == expected
    # implicit's positional order (implicit.cpu.bpr 0.7.x); use_gpu is keyword-only
    assert list(defaults)[:8] == ["factors", "learning_rate", "regularization", "dtype",
                                  "iterations", "num_threads", "verify_negative_samples",
                                  "random_state"]
    assert signature.parameters["use_gpu"].kind is inspect.Parameter.KEYWORD_ONLY
    assert BayesianPersonalizedRanking().get_params()["dtype"] == np.dtype(np.float32)


@pytest.mark.parametrize("verify, negatives", [(True, "unseen"), (False, "uniform")])
def test_the_mapping_onto_bpr(verify, negatives):
    model = BayesianPersonalizedRanking(factors=8, learning_rate=0.05, regularization=0.002,
                                        iterations=7, num_threads=1,
                                        verify_negative_samples=verify, random_state=5)
    params = model.bpr_params()
    expected = {"factors": 8, "loss": "bpr", "optimizer": "sgd", "learning_rate": 0.05,
                "regularization": 0.002, "epochs": 7, "negatives": negatives,
                "negative_candidates": 1, "item_bias": True, "use_weights": False,
                "init_scale": 0.5 / 8, "num_threads": 1, "random_state": 5}
    assert {k: params[k] for k in expected} == expected
    assert set(params) == set(BPR().get_params())


def _fit_both(X, **params):
    model = BayesianPersonalizedRanking(num_threads=1, random_state=11, **params)
    model.fit(X, show_progress=False)
    twin = BPR(**model.bpr_params()).fit(X, show_progress=False)
    return model, twin


def test_same_factors_as_the_mapped_bpr(board):
    model, twin = _fit_both(board, factors=4, iterations=5, learning_rate=0.05)
    assert_array_equal(model.user_factors, twin.user_factors)
    assert_array_equal(model.item_factors, twin.item_factors)
    # the mapping is what implicit trains: factors + 1 columns, users' last column 1
    assert model.user_factors.shape == (40, 5) and model.item_factors.shape == (40, 5)
    assert np.all(model.user_factors[:, -1] == 1.0)
    assert np.any(model.item_factors[:, -1] != 0.0)  # the item bias moved
    assert np.abs(model.user_factors[:, :-1]).max() < 10 and model.n_epochs_done_ == 5


def test_rows_without_interactions_end_at_zero():
    X = checkerboard(12).tolil()
    X[3, :] = 0
    X[:, 7] = 0
    X = X.tocsr()
    X.eliminate_zeros()
    model, twin = _fit_both(X, factors=3, iterations=4)
    assert_array_equal(model.user_factors[3], [0, 0, 0, 1])
    assert_array_equal(model.item_factors[7], np.zeros(4))
    others = np.arange(12) != 7
    assert_array_equal(model.item_factors[others], twin.item_factors[others])
    assert np.any(twin.item_factors[7] != 0)  # BPR trains it as a negative


def test_it_learns_the_checkerboard(fitted, board):
    for user in range(40):
        ids, scores = fitted.recommend(user, board[user], N=1)
        assert ids.shape == (1,) and scores.dtype == np.float32
        assert ids[0] == user


def test_recommend_shapes_and_padding(fitted, board):
    ids, scores = fitted.recommend(0, board[0], N=5)
    assert ids.shape == scores.shape == (5,)
    assert np.all(np.diff(scores) <= 0)
    ids, scores = fitted.recommend(0, board[0], N=1000)  # a single user: eligible items only
    assert ids.shape == (40 - board[0].nnz,) and np.all(np.isfinite(scores))
    users = np.array([1, 2, 3])
    ids, scores = fitted.recommend(users, board[users], N=30)  # 20 or 21 unliked each
    assert ids.shape == scores.shape == (3, 30)
    assert np.all(ids[:, 21:] == -1) and np.all(scores[:, 21:] == -np.inf)
    ids_all, _ = fitted.recommend(users, board, N=3)  # the whole matrix works too
    assert_array_equal(ids_all, ids[:, :3])
    assert 0 not in fitted.recommend(0, board[0], N=5, filter_items=[0])[0]


def test_recommend_items_ranks_exactly_those(fitted, board):
    items = np.array([1, 2, 3, 4, 5, 6])
    ids, scores = fitted.recommend(0, board[0], N=20, items=items)
    assert sorted(ids) == list(items)
    assert set(ids[3:]) == {2, 4, 6}  # user 0 liked the even ones: ranked last
    assert np.all(scores[3:] == -FLT_MAX) and np.all(scores[:3] > -FLT_MAX)
    assert np.all(np.diff(scores[:3]) <= 0)
    ids, _ = fitted.recommend(0, board[0], N=2, items=items)
    assert ids.shape == (2,) and set(ids) <= {1, 3, 5}
    picked = np.arange(10) * 3
    ids, scores = fitted.recommend(np.arange(40), board, items=picked)
    assert ids.shape == (40, 10)
    for row in ids:
        assert sorted(row) == list(picked)
    ids, scores = fitted.recommend(5, board[5], items=[9, 1, 3], filter_already_liked_items=False)
    assert sorted(ids) == [1, 3, 9] and np.all(np.diff(scores) <= 0)
    with pytest.raises(IndexError):
        fitted.recommend(0, board[0], items=[1, 40])
    with pytest.raises(IndexError):
        fitted.recommend(0, board[0], items=[-1, 2])


def test_user_items_must_be_csr(fitted, board):
    for bad in (board.tocsc(), board.tocoo(), board.toarray()):
        with pytest.raises(ValueError, match="CSR"):
            fitted.recommend(0, user_items=bad)
    ids, _ = fitted.recommend(0, board.tocsc(), filter_already_liked_items=False)
    assert ids.shape == (10,)


def test_similar_puts_the_query_first(fitted):
    for item in range(10):
        ids, scores = fitted.similar_items(item, N=6)
        assert ids[0] == item and scores[0] == 1.0
        assert np.all(ids % 2 == item % 2) and np.all(np.diff(scores) <= 0)
    ids, scores = fitted.similar_users(np.arange(8), N=5)
    assert ids.shape == (8, 5)
    assert_array_equal(ids[:, 0], np.arange(8)) and np.all(scores[:, 0] == 1.0)
    # left out by a filter, the query is not first
    ids, _ = fitted.similar_items(np.arange(10), N=5, filter_items=np.arange(0, 40, 5))
    assert not np.isin(ids, np.arange(0, 40, 5)).any()
    ids, _ = fitted.similar_items(20, N=5, items=np.arange(10))
    assert 20 not in ids and sorted(ids) == [0, 2, 4, 6, 8]
    ids, scores = fitted.similar_items(np.arange(3), N=10, items=np.arange(5))
    assert ids.shape == (3, 10) and np.all(ids[:, 5:] == -1) and np.all(scores[:, 5:] == -np.inf)
    # BPR's own default stays: the query left out
    assert 3 not in BPR.similar_items(fitted, 3, N=5)[0]


def test_recommend_recalculate_user_is_implicits_not_implemented(fitted, board):
    with pytest.raises(NotImplementedError, match="recalculate_user"):
        fitted.recommend(0, board[0], recalculate_user=True)


def test_bpr_recommend_recalculate_user_ranks_for_folded_in_vectors(fitted, board):
    users = np.array([4, 7, 10])
    before = fitted.user_factors.copy(), fitted.item_factors.copy()
    first, second = copy.deepcopy(fitted), copy.deepcopy(fitted)
    vectors = first.recalculate_user(users, board[users])
    ids, scores = BPR.recommend(second, users, board[users], N=4, recalculate_user=True)
    expected = vectors @ fitted.item_factors.T
    expected[board[users].toarray() != 0] = -np.inf
    order = np.argsort(-expected, axis=1, kind="stable")[:, :4]
    assert_array_equal(ids, order)
    np.testing.assert_allclose(scores, np.take_along_axis(expected, order, axis=1), rtol=1e-5)
    assert_array_equal(ids[:, 0], users)  # the folded-in users find their held-out item
    # the whole matrix picks the rows too; the model itself does not change
    ids_whole, _ = BPR.recommend(copy.deepcopy(fitted), users, board, N=4, recalculate_user=True)
    assert_array_equal(ids_whole, ids)
    assert_array_equal(fitted.user_factors, before[0])
    assert_array_equal(fitted.item_factors, before[1])
    with pytest.raises(ValueError, match="user_items"):
        BPR.recommend(fitted, 1, None, recalculate_user=True, filter_already_liked_items=False)


def test_similar_items_recalculate_item(fitted, board):
    item_users = board.T.tocsr()
    items = np.arange(12)
    before = fitted.item_factors.copy()
    first, second = copy.deepcopy(fitted), copy.deepcopy(fitted)
    vectors = first.recalculate_item(items, item_users[items])
    assert vectors.shape == (12, 4) and vectors.dtype == np.float32
    ids, scores = second.similar_items(items, N=6, recalculate_item=True,
                                       item_users=item_users[items])
    assert_array_equal(ids[:, 0], items) and np.all(scores[:, 0] == 1.0)
    assert np.all(ids % 2 == items[:, None] % 2)
    # the rest: cosine of the folded-in vectors (bias column left out) with the stored items
    q = vectors[:, :-1] / np.linalg.norm(vectors[:, :-1], axis=1, keepdims=True)
    V = fitted.item_factors[:, :-1]
    cos = q @ (V / np.linalg.norm(V, axis=1, keepdims=True)).T
    cos[items, items] = -np.inf
    order = np.argsort(-cos, axis=1, kind="stable")[:, :5]
    assert_array_equal(ids[:, 1:], order)
    np.testing.assert_allclose(scores[:, 1:], np.take_along_axis(cos, order, axis=1), rtol=1e-4)
    assert_array_equal(fitted.item_factors, before)
    # without recalculate_item, item_users is ignored (implicit's behaviour)
    plain = fitted.similar_items(3, N=5)
    assert_array_equal(fitted.similar_items(3, N=5, item_users=item_users[3])[0], plain[0])
    with pytest.raises(ValueError, match="item_users"):
        fitted.similar_items(3, recalculate_item=True)


def test_save_load_paths_and_file_objects(fitted, tmp_path):
    fitted.save(str(tmp_path / "model"))  # a str path gets .npz, as implicit's does
    assert (tmp_path / "model.npz").is_file()
    for loaded in (BayesianPersonalizedRanking.load(str(tmp_path / "model")),
                   fitted.load(tmp_path / "model.npz")):
        assert type(loaded) is BayesianPersonalizedRanking
        assert_array_equal(loaded.item_factors, fitted.item_factors)
        assert loaded.get_params() == fitted.get_params()
    buffer = io.BytesIO()
    fitted.save(buffer)
    buffer.seek(0)
    loaded = BayesianPersonalizedRanking.load(buffer)
    assert_array_equal(loaded.user_factors, fitted.user_factors)
    assert_array_equal(loaded.similar_items(1)[0], fitted.similar_items(1)[0])
    with open(tmp_path / "other.npz", "wb+") as fh:
        fitted.save(fh)
        fh.seek(0)
        assert_array_equal(BayesianPersonalizedRanking.load(fh).item_factors,
                           fitted.item_factors)
    with pytest.raises(ValueError, match="holds a BayesianPersonalizedRanking"):
        BPR.load(tmp_path / "model.npz")


def test_bpr_saves_to_file_objects(board):
    model = BPR(factors=3, epochs=1, random_state=0).fit(board, show_progress=False)
    buffer = io.BytesIO()
    model.save(buffer)
    assert not buffer.closed and buffer.tell() > 0
    buffer.seek(0)
    loaded = BPR.load(buffer)
    assert_array_equal(loaded.user_factors, model.user_factors)
    assert loaded.history_ == model.history_
    with pytest.raises(ValueError, match="file object"):
        BPR.load(io.BytesIO(b"not a model"))
    with pytest.raises(ValueError, match="not fitted"):
        BPR().save(io.BytesIO())  # BPR still refuses to save before fit


def test_save_before_fit(tmp_path):
    model = BayesianPersonalizedRanking(factors=3, regularization=0, random_state=42,
                                        dtype="float32")
    model.save(tmp_path / "unfitted.npz")
    loaded = model.load(tmp_path / "unfitted.npz")
    assert loaded.__dict__ == model.__dict__
    assert loaded.user_factors is None
    buffer = io.BytesIO()
    BayesianPersonalizedRanking(random_state=np.random.default_rng(0)).save(buffer)
    buffer.seek(0)
    assert BayesianPersonalizedRanking.load(buffer).random_state is None  # not JSON


def test_pickle_round_trip(fitted, board):
    again = pickle.loads(pickle.dumps(fitted))
    assert_array_equal(again.recommend(0, board[0])[0], fitted.recommend(0, board[0])[0])
    assert_array_equal(again.similar_items(0)[0], fitted.similar_items(0)[0])
    unfitted = pickle.loads(pickle.dumps(BayesianPersonalizedRanking(factors=4)))
    assert unfitted.factors == 4 and unfitted.user_factors is None


def test_conversion_warning(board, monkeypatch):
    with pytest.warns(ParameterWarning, match="CSR"):
        BayesianPersonalizedRanking(factors=2, iterations=1).fit(board.tocoo(),
                                                                 show_progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BayesianPersonalizedRanking(factors=2, iterations=1).fit(board, show_progress=False)
    # with implicit imported, the warning is also implicit's class
    fake = types.ModuleType("implicit.utils")
    fake.ParameterWarning = type("ParameterWarning", (Warning,), {})
    monkeypatch.setitem(sys.modules, "implicit.utils", fake)
    with pytest.warns(fake.ParameterWarning):
        BayesianPersonalizedRanking(factors=2, iterations=1).fit(board.tolil(),
                                                                 show_progress=False)


def test_callback_gets_epoch_elapsed_correct_skipped(board):
    calls = []
    model = BayesianPersonalizedRanking(factors=3, iterations=30, learning_rate=0.05,
                                        num_threads=1, random_state=1)
    model.fit(board, show_progress=False, callback=lambda *args: calls.append(args))
    assert [c[0] for c in calls] == list(range(30))  # 0-based, as implicit's
    for (epoch, elapsed, correct, skipped), record in zip(calls, model.history_):
        assert elapsed == record["seconds"] and elapsed > 0
        assert skipped == record["skipped"] == 0
        assert isinstance(correct, int) and 0 <= correct <= board.nnz
    assert calls[-1][2] > 0.9 * board.nnz > calls[0][2]  # it learns
    plain = BayesianPersonalizedRanking(factors=3, iterations=30, learning_rate=0.05,
                                        num_threads=1, random_state=1)
    plain.fit(board, show_progress=False)
    assert_array_equal(plain.item_factors, model.item_factors)  # the estimate draws apart


def test_refused_settings(board):
    with pytest.raises(ValueError, match="float32"):
        BayesianPersonalizedRanking(dtype=np.float64).fit(board, show_progress=False)
    with pytest.raises(ValueError, match="use_gpu"):
        BayesianPersonalizedRanking(use_gpu=True).fit(board, show_progress=False)
    with pytest.raises(TypeError, match="callback"):
        BayesianPersonalizedRanking(iterations=1).fit(board, show_progress=False, callback=3)


def test_random_state_kinds(board):
    """int, Generator and RandomState all seed it (implicit 0.7.3 fails on a RandomState)."""
    results = []
    for seed in (3, np.random.default_rng(3), np.random.RandomState(3)):
        model = BayesianPersonalizedRanking(factors=2, iterations=2, num_threads=1,
                                            random_state=seed)
        results.append(model.fit(board, show_progress=False).item_factors)
    assert all(np.all(np.isfinite(r)) and r.shape == (40, 3) for r in results)
    again = BayesianPersonalizedRanking(factors=2, iterations=2, num_threads=1, random_state=3)
    assert_array_equal(again.fit(board, show_progress=False).item_factors, results[0])
