"""Fold-in of users and items, per-interaction weights, similar users."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_array_equal

from bpr_numba import BPR, Interactions, TrainingDivergedError
from bpr_numba.metrics import auc_score


def _model(**kw):
    params = dict(factors=16, epochs=10, num_threads=1, random_state=0)
    params.update(kw)
    return BPR(**params)


def _without_rows(X, rows):
    X = X.tolil(copy=True)
    X[rows] = 0
    X = X.tocsr()
    X.eliminate_zeros()
    return X


def _held_out_auc(model, test, train, users):
    return np.nanmean(auc_score(model, test, train, reduce=False)[users])


# ----------------------------------------------------------------- fold-in
def test_folded_in_users_reach_the_auc_of_full_training(movielens):
    train, test = movielens
    held = np.arange(1, 944, 9)  # about 100 users
    held = held[np.diff(train.indptr)[held] > 0]
    full = _model().fit(train, show_progress=False)
    model = _model().fit(_without_rows(train, held), show_progress=False)
    before = _held_out_auc(model, test, train, held)
    items_before = model.item_factors.copy()
    others_before = np.delete(model.user_factors, held, axis=0)
    model.partial_fit_users(held, train[held])
    after = _held_out_auc(model, test, train, held)
    reference = _held_out_auc(full, test, train, held)
    # Measured: before ~0.87 (random vectors + item bias), after ~0.935, full ~0.935.
    assert after > before + 0.03
    assert after > reference - 0.01
    assert_array_equal(model.item_factors, items_before)  # items stay fixed
    assert_array_equal(np.delete(model.user_factors, held, axis=0), others_before)


def test_recalculate_user_does_not_change_the_model(movielens):
    train, test = movielens
    model = _model(epochs=3).fit(train, show_progress=False)
    users, items = model.user_factors.copy(), model.item_factors.copy()
    one = model.recalculate_user(7, train)  # rows picked from the whole matrix
    assert one.shape == (model.user_factors.shape[1],) and one.dtype == np.float32
    assert one[-1] == 1.0  # the constant column of the item bias
    several = model.recalculate_user([-1, -1], train[[7, 8]])  # new users: ids unused
    assert several.shape == (2, model.user_factors.shape[1])
    assert_array_equal(model.user_factors, users)
    assert_array_equal(model.item_factors, items)
    # The recalculated vector ranks the user's test items well.
    scores = model.item_factors @ one
    seen = train[7].indices
    pos = np.setdiff1d(test[7].indices, seen)
    neg = np.setdiff1d(np.arange(model.n_items), np.concatenate([seen, pos]))
    auc = (scores[pos][:, None] > scores[neg][None, :]).mean()
    assert auc > 0.8


def test_partial_fit_users_adds_new_users():
    rng = np.random.default_rng(0)
    X = sp.csr_matrix((rng.random((20, 15)) < 0.3).astype(np.float32))
    model = _model(factors=4, epochs=2).fit(X, show_progress=False)
    new_rows = sp.csr_matrix((rng.random((2, 15)) < 0.3).astype(np.float32))
    model.partial_fit_users([20, 23], new_rows)
    assert model.n_users == 24
    assert np.isfinite(model.user_factors).all() and np.all(model.user_factors[:, -1] == 1.0)
    model.fit_partial(sp.vstack([X, sp.csr_matrix((4, 15))]).tocsr(), epochs=1)
    with pytest.raises(ValueError, match="repeated"):
        model.partial_fit_users([1, 1], new_rows)
    with pytest.raises(ValueError, match="one row per given id"):
        model.partial_fit_users([1, 2, 3], new_rows)


def test_partial_fit_users_with_raw_ids_extends_the_map():
    users = np.array(["a", "b", "c", "a", "b", "c", "a"])
    items = np.array([1, 2, 3, 2, 3, 1, 4])
    data = Interactions.from_arrays(users, items)
    model = _model(factors=4, epochs=2).fit(data, show_progress=False)
    row = sp.csr_matrix(np.array([[1, 0, 1, 0]], np.float32))
    model.partial_fit_users(["zed"], row, raw_ids=True)
    assert model.n_users == 4 and list(model.user_map_.ids) == ["a", "b", "c", "zed"]
    ids, _ = model.recommend("zed", row, N=2, raw_ids=True)
    assert set(ids) == {2, 4}  # the items "zed" has not seen, in raw ids
    with pytest.raises(ValueError, match="raw_ids=True"):
        model.partial_fit_users([5], row)
    with pytest.raises(TypeError, match="strings"):
        model.partial_fit_users([5], row, raw_ids=True)


def test_partial_fit_items_learns_a_new_item_from_its_users(movielens):
    train, test = movielens
    model = _model().fit(train, show_progress=False)
    # A copy of a popular item, added as a new item from the same users.
    item = int(np.argmax(np.diff(train.tocsc().indptr)))
    item_users = train[:, item].T.tocsr()
    users_before = model.user_factors.copy()
    model.partial_fit_items([model.n_items], item_users)
    assert model.n_items == train.shape[1] + 1
    assert_array_equal(model.user_factors, users_before)
    copy_scores = model.user_factors @ model.item_factors[-1]
    orig_scores = model.user_factors @ model.item_factors[item]
    # The copy ranks its users about as the original does.
    assert np.corrcoef(copy_scores, orig_scores)[0, 1] > 0.8
    fans = item_users.indices
    others = np.setdiff1d(np.arange(model.n_users), fans)
    assert copy_scores[fans].mean() > copy_scores[others].mean()
    with pytest.raises(ValueError, match="one row per item id"):
        model.partial_fit_items([3], train[:2])


def test_fold_in_is_refused_in_the_keras_mode():
    X = sp.csr_matrix(np.eye(4, dtype=np.float32))
    model = BPR.keras_compatible(factors=3, epochs=1, num_threads=1, random_state=0)
    model.fit(X, show_progress=False)
    with pytest.raises(ValueError, match="dense-adam"):
        model.recalculate_user(0, X)


# ----------------------------------------------------------------- weights
def _two_groups(weight_a, weight_b, n_users=150, seed=0):
    """Every user likes 5 items of group A and 5 of group B, with these weights."""
    rng = np.random.default_rng(seed)
    rows, cols, vals = [], [], []
    for u in range(n_users):
        a = rng.choice(20, 5, replace=False)
        b = 20 + rng.choice(20, 5, replace=False)
        rows += [u] * 10
        cols += list(a) + list(b)
        vals += [weight_a] * 5 + [weight_b] * 5
    return sp.csr_matrix((np.array(vals, np.float32), (rows, cols)), shape=(n_users, 60))


@pytest.mark.parametrize("optimizer", ["rowwise-adagrad", "adagrad", "sgd"])
def test_weights_shift_scores_towards_heavy_positives(optimizer):
    def share_a_wins(weight_a, weight_b):
        model = _model(factors=8, epochs=15, use_weights=True, optimizer=optimizer)
        model.fit(_two_groups(weight_a, weight_b), show_progress=False)
        scores = model.user_factors @ model.item_factors.T
        return np.mean(scores[:, :20].mean(1) > scores[:, 20:40].mean(1))

    # Every user likes both groups alike; the weights alone decide which wins.
    assert share_a_wins(5.0, 0.2) > 0.95
    assert share_a_wins(0.2, 5.0) < 0.05


def test_unit_weights_train_exactly_like_no_weights():
    X = _two_groups(1.0, 1.0)
    a = _model(factors=8, epochs=2, use_weights=True).fit(X, show_progress=False)
    b = _model(factors=8, epochs=2).fit(X, show_progress=False)
    assert_array_equal(a.item_factors, b.item_factors)


def test_sample_weight_equals_stored_values():
    X = _two_groups(3.0, 0.5)
    binary = X.copy()
    binary.data[:] = 1
    a = _model(factors=8, epochs=2, use_weights=True).fit(X, show_progress=False)
    b = _model(factors=8, epochs=2, use_weights=True).fit(binary, sample_weight=X,
                                                         show_progress=False)
    assert_array_equal(a.item_factors, b.item_factors)


def test_bad_weights_raise():
    X = _two_groups(1.0, 1.0)
    with pytest.raises(ValueError, match="use_weights=True"):
        _model().fit(X, sample_weight=X, show_progress=False)
    negative = X.copy()
    negative.data[0] = -2.0
    with pytest.raises(ValueError, match="weights > 0"):
        _model(use_weights=True).fit(negative, show_progress=False)
    with pytest.raises(ValueError, match="same shape and pattern"):
        _model(use_weights=True).fit(X, sample_weight=X[:, :30], show_progress=False)
    with pytest.raises(TypeError, match="use_weights"):
        _model(use_weights="yes").fit(X, show_progress=False)
    with pytest.raises(ValueError, match="dense-adam"):
        BPR.keras_compatible(use_weights=True).fit(X, show_progress=False)


# ----------------------------------------------------------- similar users
def test_similar_users_is_cosine_without_the_constant_column():
    rng = np.random.default_rng(1)
    X = sp.csr_matrix((rng.random((30, 20)) < 0.3).astype(np.float32))
    model = _model(factors=6, epochs=2).fit(X, show_progress=False)
    ids, scores = model.similar_users(4, N=5)
    vecs = model.user_factors[:, :-1]
    cos = vecs @ vecs[4] / np.linalg.norm(vecs, axis=1) / np.linalg.norm(vecs[4])
    cos[4] = -np.inf
    assert_array_equal(ids, np.argsort(-cos, kind="stable")[:5])
    np.testing.assert_allclose(scores, cos[ids], rtol=1e-5)
    with_self, self_scores = model.similar_users(4, N=5, filter_self=False)
    assert with_self[0] == 4 and self_scores[0] == pytest.approx(1.0, abs=1e-5)
    items_self, _ = model.similar_items(2, N=3, filter_self=False)
    assert items_self[0] == 2
    assert 2 not in model.similar_items(2, N=3)[0]
    with pytest.raises(IndexError, match="users"):
        model.similar_users(30)


@pytest.mark.parametrize("optimizer", ["adagrad", "rowwise-adagrad", "adam"])
def test_growth_extends_the_optimiser_state(optimizer):
    rng = np.random.default_rng(0)
    X = sp.csr_matrix((rng.random((20, 15)) < 0.3).astype(np.float32))
    model = _model(factors=4, epochs=1, optimizer=optimizer).fit(X, show_progress=False)
    model.partial_fit_users([22], sp.csr_matrix(np.ones((1, 15), np.float32)))
    model.partial_fit_items([16], sp.csr_matrix(np.ones((1, 23), np.float32)))
    for key, array in model._opt_state.arrays().items():
        side = key.split("_")[0]
        if array.size and side in ("user", "item"):
            rows = model.n_users if side == "user" else model.n_items
            assert array.shape[0] == rows, key
    if optimizer == "rowwise-adagrad":  # one accumulator per row
        assert model._opt_state.item.adagrad_sum_sq.shape == (model.n_items, 1)
    # The new rows have positives, so training touches their (grown) state.
    grown = (rng.random((23, 17)) < 0.3).astype(np.float32)
    model.fit_partial(sp.csr_matrix(grown), epochs=2)
    assert np.isfinite(model.user_factors).all() and np.isfinite(model.item_factors).all()


def test_a_refused_raw_fold_in_leaves_the_id_map_alone(tmp_path):
    users = np.array(["a", "b", "c", "a", "b", "c"])
    items = np.array([1, 2, 3, 2, 3, 1])
    data = Interactions.from_arrays(users, items)
    model = _model(factors=4, epochs=1).fit(data, show_progress=False)
    before = model.user_map_
    wrong_rows = sp.csr_matrix((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="one row per given id"):
        model.partial_fit_users(["new"], wrong_rows, raw_ids=True)
    assert model.user_map_ == before and model.n_users == 3
    with pytest.raises(ValueError, match="one row per item id"):
        model.partial_fit_items([99], sp.csr_matrix(np.ones((2, 3), np.float32)), raw_ids=True)
    assert len(model.item_map_) == model.n_items == 3
    # A successful one grows both, and the model saves and loads.
    model.partial_fit_items([99], sp.csr_matrix(np.ones((1, 3), np.float32)), raw_ids=True)
    model.partial_fit_users(["new"], sp.csr_matrix(np.ones((1, 4), np.float32)), raw_ids=True)
    assert model.item_map_.ids.tolist() == [1, 2, 3, 99] and model.n_items == 4
    model.save(tmp_path / "m.npz")
    loaded = BPR.load(tmp_path / "m.npz")
    assert loaded.user_map_.ids.tolist() == ["a", "b", "c", "new"]
    assert_array_equal(loaded.predict("new", 99, raw_ids=True), model.predict(3, 3))


def test_known_users_by_index_and_recalculate_user_by_raw_id():
    users = np.array(["a", "b", "c", "a", "b", "c", "a"])
    items = np.array([1, 2, 3, 2, 3, 1, 4])
    data = Interactions.from_arrays(users, items)
    model = _model(factors=4, epochs=2).fit(data, show_progress=False)
    model.partial_fit_users([1], data.matrix[[1]])  # an existing user, by index: allowed
    one = model.recalculate_user("b", data, raw_ids=True)
    assert one.shape == (model.user_factors.shape[1],)
    other = Interactions.from_arrays(np.array(["x", "y"]), np.array([1, 2]))
    with pytest.raises(ValueError, match="other raw ids"):
        model.recalculate_user(0, other)


def test_folding_in_a_user_without_positives_warns():
    X = sp.csr_matrix(np.eye(5, dtype=np.float32))
    model = _model(factors=3, epochs=1).fit(X, show_progress=False)
    with pytest.warns(RuntimeWarning, match="1 of the 2 users to fold in have no positive"):
        model.partial_fit_users([5, 6], sp.csr_matrix(np.array([[1, 0, 0, 0, 0],
                                                                [0, 0, 0, 0, 0]], np.float32)))


def test_fold_in_warnings_point_at_the_callers_line():
    # Direct calls and calls through recommend / similar_items alike.
    X = sp.csr_matrix(np.eye(5, dtype=np.float32))
    model = _model(factors=3, epochs=1).fit(X, show_progress=False)
    empty_user = sp.csr_matrix((1, 5), dtype=np.float32)
    # Two items over the 5 users (no user grows before): one has a user, one none.
    items = sp.csr_matrix(np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], np.float32))
    calls = [lambda: model.recalculate_user(0, empty_user),
             lambda: model.recommend(0, empty_user, N=2, recalculate_user=True),
             lambda: model.recalculate_item([0, 1], items),
             lambda: model.partial_fit_users([5], empty_user),
             lambda: model.partial_fit_items([1, 7], sp.csr_matrix(
                 np.array([[1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], np.float32)))]
    for call in calls:
        with pytest.warns(RuntimeWarning, match="random vector") as record:
            call()
        assert [w.filename for w in record] == [__file__]
        assert record[0].lineno == call.__code__.co_firstlineno


def test_a_diverging_item_fold_in_leaves_the_model_as_it_was():
    X = sp.random(40, 30, density=0.2, format="csr", dtype=np.float32, random_state=0)
    X.data[:] = 1.0
    model = BPR(factors=4, epochs=2, random_state=0).fit(X, show_progress=False)
    before = model.item_factors.copy()
    model.set_params(learning_rate=1e30, regularization=1.0)
    users = sp.random(3, 40, density=0.5, format="csr", dtype=np.float32, random_state=1)
    users.data[:] = 1.0
    with pytest.raises(TrainingDivergedError, match="fold-in of items diverged"):
        model.partial_fit_items([5, 30, 31], users)  # one known item, two new ones
    assert model.n_items == 30
    assert_array_equal(model.item_factors, before)
    assert model._opt_state.item.adagrad_sum_sq.shape[0] == 30


def test_a_failed_fold_in_leaves_the_random_stream_where_it_was():
    import pickle

    X = sp.random(40, 30, density=0.2, format="csr", dtype=np.float32, random_state=0)
    X.data[:] = 1.0
    model = BPR(factors=4, epochs=2, random_state=0, num_threads=1).fit(X, show_progress=False)
    twin = pickle.loads(pickle.dumps(model))  # the same model, which sees no failed call
    params = model.get_params()
    model.set_params(learning_rate=1e30, regularization=1.0)
    users = sp.random(3, 40, density=0.5, format="csr", dtype=np.float32, random_state=1)
    users.data[:] = 1.0
    with pytest.raises(TrainingDivergedError, match="fold-in of users diverged"):
        model.recalculate_user([0, 1, 2], X[:3])
    with pytest.raises(TrainingDivergedError, match="fold-in of items diverged"):
        model.partial_fit_items([5, 30], users[:2])
    with pytest.raises(TrainingDivergedError, match="fold-in of items diverged"):
        model.recalculate_item([0, 1, 2], users)
    model.set_params(**params)
    # Calls refused after a successful fold-in, by their own arguments.
    with pytest.raises(ValueError, match="N must be"):
        model.recommend(0, X[:1], N=-1, recalculate_user=True)
    with pytest.raises(ValueError, match="filter_items"):
        model.recommend(0, X[:1], filter_items=[99], recalculate_user=True)
    with pytest.raises(ValueError, match="N must be"):
        model.similar_items(0, N=-1, recalculate_item=True, item_users=users[:1])
    for m in (model, twin):  # a fold-in, then training: both as if nothing had failed
        m.partial_fit_users([7], X[:1])
        m.fit_partial(X, epochs=1, show_progress=False)
    assert_array_equal(model.user_factors, twin.user_factors)
    assert_array_equal(model.item_factors, twin.item_factors)


def test_a_failure_while_growing_leaves_factors_state_and_stream_as_they_were(monkeypatch):
    import pickle

    from bpr_numba._training import SideState

    X = sp.random(40, 30, density=0.2, format="csr", dtype=np.float32, random_state=0)
    X.data[:] = 1.0
    model = BPR(factors=4, epochs=2, random_state=0, num_threads=1).fit(X, show_progress=False)
    twin = pickle.loads(pickle.dumps(model))

    def out_of_memory(self, *args, **kwargs):
        raise MemoryError("no room for the grown state")

    with monkeypatch.context() as patch:
        patch.setattr(SideState, "grown", out_of_memory)
        with pytest.raises(MemoryError):
            model.partial_fit_users([45], X[:1])  # new user 45: grows users 40 to 45
    assert model.n_users == 40 and model._opt_state.user.adagrad_sum_sq.shape[0] == 40
    for m in (model, twin):
        m.partial_fit_users([45], X[:1])
    assert_array_equal(model.user_factors, twin.user_factors)
    assert model._opt_state.user.adagrad_sum_sq.shape[0] == 46
