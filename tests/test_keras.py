"""The Keras-compatible mode against a NumPy twin of Keras's training loop."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from bpr_numba.estimator import BPR

import reference


@st.composite
def triplet_problems(draw):
    n_users = draw(st.integers(1, 6))
    n_items = draw(st.integers(1, 8))
    n = draw(st.integers(1, 40))
    ints = st.integers(0, 2**31)
    rng = np.random.default_rng(draw(ints))
    users = rng.integers(0, n_users, n)
    positives = rng.integers(0, n_items, n)
    negatives = rng.integers(0, n_items, n)
    if draw(st.booleans()):  # a positive equal to its negative
        negatives[0] = positives[0]
    batch_size = draw(st.integers(1, 16))  # partial last batches, repeated rows in a batch
    epsilon = draw(st.sampled_from([1e-8, 1e-7, 1e-3]))
    loss = draw(st.sampled_from(["sigmoid", "bpr"]))
    return n_users, n_items, users, positives, negatives, batch_size, epsilon, loss


@given(problem=triplet_problems(), seed=st.integers(0, 2**31))
def test_dense_adam_matches_keras_loop(problem, seed):
    n_users, n_items, users, positives, negatives, batch_size, epsilon, loss = problem
    model = BPR.keras_compatible(factors=4, batch_size=batch_size, epsilon=epsilon, loss=loss,
                                 learning_rate=0.01, num_threads=1, random_state=seed)
    model.initialize(n_users, n_items)
    U0, V0 = model.user_factors.copy(), model.item_factors.copy()
    model.fit_triplets(users, positives, negatives, epochs=3, shuffle=False)
    U, V, _ = reference.keras_epochs(U0, V0, users, positives, negatives, batch_size, 3,
                                     lr=0.01, eps=epsilon, loss=loss)
    assert_allclose(model.user_factors, U, atol=1e-5, rtol=0)
    assert_allclose(model.item_factors, V, atol=1e-5, rtol=0)


def test_fit_triplets_continues_from_assigned_weights():
    rng = np.random.default_rng(0)
    U0 = rng.uniform(-0.05, 0.05, (5, 3)).astype(np.float32)
    V0 = rng.uniform(-0.05, 0.05, (7, 3)).astype(np.float32)
    users, pos, neg = rng.integers(0, 5, 30), rng.integers(0, 7, 30), rng.integers(0, 7, 30)
    model = BPR.keras_compatible(factors=3, batch_size=8).initialize(5, 7)
    model.user_factors = U0.astype(np.float64)  # float64 is cast to float32
    model.item_factors = V0
    assert model.user_factors.dtype == np.float32
    model.fit_triplets(users, pos, neg, epochs=1)
    model.fit_triplets(users, pos, neg, epochs=1)  # continues: state carries over
    U, V, _ = reference.keras_epochs(U0, V0, users, pos, neg, 8, 2)
    assert_allclose(model.user_factors, U, atol=1e-6)
    assert_allclose(model.item_factors, V, atol=1e-6)


def test_dense_adam_moves_rows_outside_the_batch():
    model = BPR.keras_compatible(factors=3, batch_size=1, num_threads=1, random_state=0)
    model.initialize(3, 4)
    model.fit_triplets([0], [1], [2])  # row 0 of users, rows 1, 2 of items get moments
    before_user, before_item = model.user_factors.copy(), model.item_factors.copy()
    model.fit_triplets([1], [3], [0])  # a batch without user 0 nor items 1 and 2
    assert np.all(model.user_factors[0] != before_user[0])
    assert np.all(model.item_factors[1] != before_item[1])
    assert np.all(model.item_factors[2] != before_item[2])
    assert np.all(model.user_factors[2] == before_user[2])  # never touched: no moments


def test_keras_preset_is_the_notebook_recipe():
    params = BPR.keras_compatible().get_params()
    assert params["factors"] == 100 and params["loss"] == "sigmoid"
    assert params["optimizer"] == "dense-adam" and params["batch_size"] == 64
    assert params["learning_rate"] == 0.001 and params["epsilon"] == 1e-7
    assert params["item_bias"] is False and params["negatives"] == "uniform"
    assert BPR.keras_compatible(epsilon=1e-8).epsilon == 1e-8


def test_fit_triplets_checks_its_input():
    model = BPR.keras_compatible(factors=2)
    with pytest.raises(ValueError, match="n_users and n_items"):
        model.fit_triplets([0], [0], [0])
    model.initialize(2, 3)
    with pytest.raises(IndexError, match="positives contains 3"):
        model.fit_triplets([0], [3], [0])
    with pytest.raises(ValueError, match="one length"):
        model.fit_triplets([0, 1], [0], [0])
    with pytest.raises(ValueError, match="dense-adam"):
        BPR(optimizer="adam").fit_triplets([0], [0], [0], n_users=1, n_items=1)
