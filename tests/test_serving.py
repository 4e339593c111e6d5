"""A model fitted on your own data: raw ids in and out, id maps saved, pickling, export."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal

from bpr_numba import BPR, Interactions
from bpr_numba.estimator import UnknownIdError
from bpr_numba.export import index_vectors


def _events(seed=0, n_users=40, n_items=30, n=600):
    rng = np.random.default_rng(seed)
    users = np.array([f"user-{k}" for k in rng.integers(0, n_users, n)])
    items = np.array([f"item-{k:03d}" for k in rng.integers(0, n_items, n)])
    return users, items


@pytest.fixture(scope="module")
def fitted():
    users, items = _events()
    data = Interactions.from_arrays(users, items)
    model = BPR(factors=8, epochs=3, num_threads=1, random_state=0).fit(data, show_progress=False)
    return model, data


def test_fit_on_interactions_keeps_the_id_maps(fitted):
    model, data = fitted
    assert model.user_map_ == data.user_map and model.item_map_ == data.item_map
    assert model.n_users == data.n_users and model.n_items == data.n_items


def test_recommend_in_raw_ids_matches_indices(fitted):
    model, data = fitted
    raw_user = data.user_ids[5]
    ids, scores = model.recommend(5, data, N=7)
    raw_ids, raw_scores = model.recommend(raw_user, data, N=7, raw_ids=True)
    assert_array_equal(raw_ids, data.item_ids[ids])
    assert_array_equal(raw_scores, scores)
    # Filters and candidates are raw ids too.
    banned = raw_ids[:2]
    again, _ = model.recommend(raw_user, data, N=7, filter_items=banned, raw_ids=True)
    assert not set(banned) & set(again)
    only = data.item_ids[[0, 3, 4]]
    restricted, _ = model.recommend(raw_user, data, N=7, items=only, raw_ids=True,
                                    filter_already_liked_items=False)
    assert set(restricted) == set(only)


def test_raw_ids_pad_several_users(fitted):
    model, data = fitted
    users = data.user_ids[[0, 1]]
    only = data.item_ids[:2]
    ids, scores = model.recommend(users, N=4, items=only, filter_already_liked_items=False,
                                  raw_ids=True)
    assert ids.shape == (2, 4) and ids.dtype.kind == "U"
    assert np.all(ids[:, 2:] == "") and np.all(np.isneginf(scores[:, 2:]))


def test_similar_items_and_users_in_raw_ids(fitted):
    model, data = fitted
    ids, _ = model.similar_items(3, N=5)
    raw, _ = model.similar_items(data.item_ids[3], N=5, raw_ids=True)
    assert_array_equal(raw, data.item_ids[ids])
    uids, _ = model.similar_users(2, N=5)
    uraw, _ = model.similar_users(data.user_ids[2], N=5, raw_ids=True)
    assert_array_equal(uraw, data.user_ids[uids])
    assert_allclose(model.predict(data.user_ids[[1, 2]], data.item_ids[[3, 4]], raw_ids=True),
                    model.predict([1, 2], [3, 4]))


def test_unknown_raw_ids_and_models_without_maps_raise(fitted):
    model, data = fitted
    with pytest.raises(UnknownIdError, match="no-such-user"):
        model.recommend("no-such-user", data, raw_ids=True)
    with pytest.raises(ValueError, match="no-such-item"):  # UnknownIdError is a ValueError too
        model.similar_items("no-such-item", raw_ids=True)
    plain = BPR(factors=4, epochs=1, num_threads=1, random_state=0)
    plain.fit(data.matrix, show_progress=False)
    assert plain.user_map_ is None
    with pytest.raises(ValueError, match="fitted on bpr_numba.Interactions"):
        plain.recommend(0, data.matrix, raw_ids=True)


def test_save_and_load_keep_raw_ids(fitted, tmp_path):
    model, data = fitted
    for ids_kind in ("str", "int"):
        if ids_kind == "int":
            users = np.array([10, 20, 30, 10, 20])
            items = np.array([7, 8, 9, 9, 7])
            this = BPR(factors=4, epochs=1, num_threads=1, random_state=0).fit(
                Interactions.from_arrays(users, items), show_progress=False)
        else:
            this = model
        path = tmp_path / f"model-{ids_kind}.npz"
        this.save(path)
        with np.load(path, allow_pickle=False) as npz:  # no pickle needed to read them
            assert npz["user_ids"].dtype.kind == ("U" if ids_kind == "str" else "i")
        loaded = BPR.load(path)
        assert loaded.user_map_ == this.user_map_ and loaded.item_map_ == this.item_map_
        raw_user = this.user_map_.ids[0]
        a = this.recommend(raw_user, N=3, filter_already_liked_items=False, raw_ids=True)
        b = loaded.recommend(raw_user, N=3, filter_already_liked_items=False, raw_ids=True)
        assert_array_equal(a[0], b[0])


def test_files_without_ids_still_load(tmp_path):
    X = sp.random(6, 5, density=0.5, random_state=1, format="csr")
    model = BPR(factors=3, epochs=1, num_threads=1, random_state=0).fit(X, show_progress=False)
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as npz:
        assert "user_ids" not in npz.files
    assert BPR.load(tmp_path / "m.npz").user_map_ is None


def test_pickle_round_trip_keeps_everything(fitted):
    model, data = fitted
    clone = pickle.loads(pickle.dumps(model))
    assert_array_equal(clone.user_factors, model.user_factors)
    assert_array_equal(clone.item_factors, model.item_factors)
    assert clone.user_map_ == model.user_map_
    assert clone.get_params() == model.get_params()
    assert repr(clone) == repr(model)
    # It trains on: the optimiser state and random streams travel too.
    a = pickle.loads(pickle.dumps(model)).fit_partial(data, epochs=1)
    b = pickle.loads(pickle.dumps(model)).fit_partial(data, epochs=1)
    assert_array_equal(a.item_factors, b.item_factors)
    assert not np.array_equal(a.item_factors, model.item_factors)


def test_repr_shows_changed_parameters_and_fitted_shape(fitted):
    model, _ = fitted
    assert repr(BPR()) == "BPR()"
    assert repr(BPR(factors=8)) == "BPR(factors=8)"
    text = repr(model)
    assert text.startswith("BPR(factors=8, epochs=3, num_threads=1, random_state=0)")
    assert f"{model.n_users} users x {model.n_items} items, 3 epochs" in text


@pytest.mark.parametrize("space", ["ip", "l2", "cosine"])
def test_index_vectors_rank_items_like_the_model(fitted, space):
    model, _ = fitted
    items, users = index_vectors(model, space)
    assert items.dtype == np.float32 and users.dtype == np.float32
    assert items.flags.c_contiguous and users.flags.c_contiguous
    scores = model.user_factors @ model.item_factors.T
    if space == "ip":
        found = users @ items.T
    elif space == "l2":
        found = -(((users[:, None, :] - items[None, :, :]) ** 2).sum(-1))
    else:
        found = (users @ items.T) / np.linalg.norm(users, axis=1)[:, None] \
            / np.linalg.norm(items, axis=1)[None, :]
    best = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    got = np.argsort(-found, axis=1, kind="stable")[:, :5]
    # Equal up to float32 rounding of near-ties: compare the scores of the picks.
    assert_allclose(np.take_along_axis(scores, got, 1), np.take_along_axis(scores, best, 1),
                    atol=1e-4)
    if space != "ip":
        assert_allclose(np.linalg.norm(items, axis=1), np.linalg.norm(items, axis=1).max(),
                        rtol=1e-4)


def test_index_vectors_rejects_unknown_spaces_and_unfitted_models(fitted):
    with pytest.raises(ValueError, match="space must be one of"):
        index_vectors(fitted[0], "manhattan")
    with pytest.raises(ValueError, match="fitted"):
        index_vectors(BPR())


def test_data_with_other_raw_ids_is_refused(fitted):
    from bpr_numba.metrics import evaluate
    from bpr_numba.split import random_split

    model, data = fitted
    same_shape = Interactions(data.matrix, data.user_ids, data.item_ids[::-1])
    with pytest.raises(ValueError, match="user_items has other raw ids"):
        model.recommend(0, same_shape, N=3)
    with pytest.raises(ValueError, match="test has other raw ids"):
        evaluate(model, same_shape, metrics=["full_auc"])
    train, test = random_split(data, 0.3, random_state=0)
    assert evaluate(model, test, train, metrics=["auc"])["auc"] > 0.0
    with pytest.raises(ValueError, match="test and train have other raw ids"):
        evaluate((model.user_factors, model.item_factors), same_shape, train)
