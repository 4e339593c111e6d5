"""The per-sample kernel against its NumPy twin, the losses against finite differences."""

import contextlib
import copy
import math
import signal
import warnings

import numpy as np
import scipy.sparse as sp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose


from bpr_numba._validation import check_interactions
from bpr_numba._kernels.hogwild import UPDATE_ALL, UPDATE_NEGATIVE, UPDATE_POSITIVE, UPDATE_USER
from bpr_numba._kernels.losses import LOSSES, loss_and_grad, loss_parts
from bpr_numba._kernels.optim import OPTIMIZERS, dot
from bpr_numba._kernels.sampling import NEGATIVES
from bpr_numba import BPR
from bpr_numba._training import (RUN_LENGTH, HogwildTrainer, Interrupt, OptimizerState, Recipe,
                                 adam_bias_correction, plan_epoch, popularity_table,
                                 train_epoch_chunks)

from conftest import sparse_interactions
import reference

F32 = np.float32
ADAM_ALPHA = adam_bias_correction(0.9, 0.999)


@pytest.mark.parametrize("loss", ["bpr", "sigmoid"])
@given(x=st.floats(-30, 30))
def test_loss_gradient_matches_finite_differences(loss, x):
    code = LOSSES[loss]
    h = 1e-5
    value, grad = loss_and_grad(code, x)
    numeric = (loss_and_grad(code, x + h)[0] - loss_and_grad(code, x - h)[0]) / (2 * h)
    assert_allclose(grad, numeric, rtol=1e-4, atol=1e-8)
    ref_value, ref_grad = reference.loss_and_grad(loss, x)
    assert_allclose([value, grad], [ref_value, ref_grad], rtol=1e-9, atol=1e-12)


@given(f=st.integers(1, 130), seed=st.integers(0, 2**31))
def test_dot_leaf_matches_numpy(f, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(3, f)).astype(F32)
    b = rng.normal(size=(2, f)).astype(F32)
    assert_allclose(dot(a, 2, b, 1), np.dot(a[2].astype(np.float64), b[1]), rtol=1e-5, atol=1e-5)


def test_adam_bias_correction_table():
    table = adam_bias_correction(0.9, 0.999)
    t = np.arange(1, table.size)
    assert_allclose(table[1:], np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t), rtol=1e-6)
    assert abs(table[-1] - 1.0) < 1e-6  # past the table the kernel uses 1


def test_bpr_loss_is_stable_for_large_margins():
    value, grad = loss_and_grad(LOSSES["bpr"], -800.0)
    assert value == pytest.approx(800.0) and grad == pytest.approx(-1.0)
    value, grad = loss_and_grad(LOSSES["bpr"], 800.0)
    assert value == 0.0 and grad == pytest.approx(0.0)


def _state(shape, opt):
    return reference.optimizer_state(shape, opt)


_UPDATE_BITS = {"user": UPDATE_USER, "positive": UPDATE_POSITIVE, "negative": UPDATE_NEGATIVE}


def _run_both(X, opt, loss, negatives, n_candidates, bias, seed, lr=0.05, reg=0.01, epochs=2,
              weights=None, update=("user", "positive", "negative"), pool_size=0,
              stacked=False, run_length=0, user_candidates=None):
    """The kernel and the twin on one thread; ``stacked``: the kernel's epochs in one call;
    ``run_length`` > 0: candidates in runs of consecutive rows (``window=True``);
    ``user_candidates``: each user's count instead of ``n_candidates``."""
    rng = np.random.default_rng(seed)
    n_users, n_items = X.shape
    # Popularity with a steep exponent: draws hit the users' positives often,
    # so the redraws and the fallback to a uniform unseen draw both run.
    alias = popularity_table(X, 2.0)[:2] if negatives == "popularity" else None
    k = 5
    U = rng.uniform(-0.5, 0.5, (n_users, k)).astype(F32)
    V = rng.uniform(-0.5, 0.5, (n_items, k)).astype(F32)
    n_user_cols = k
    if bias:
        U[:, -1] = 1.0
        n_user_cols = k - 1
    Ur, Vr = U.copy(), V.copy()
    ku, ru = _state(U.shape, opt)
    ki, ri = _state(V.shape, opt)
    n_chunks = 7
    states = np.random.SeedSequence(seed).generate_state(n_chunks, np.uint64)
    states_ref = states.copy()
    indptr = X.indptr.astype(np.int64)
    indices = X.indices.astype(np.int32)
    lengths = np.diff(indptr)
    kernel_weights = np.zeros(0, F32) if weights is None else weights
    mask = sum(_UPDATE_BITS[name] for name in update)
    plans = [plan_epoch(lengths, np.flatnonzero(lengths), rng, n_chunks) for _ in range(epochs)]

    def kernel(order, bounds):
        return train_epoch_chunks(
            indptr, indices, kernel_weights, order, bounds, U, V,
            ku["sum_sq"], ki["sum_sq"], ku["m"], ku["v"], ku["t"], ki["m"], ki["v"], ki["t"],
            states, ADAM_ALPHA, LOSSES[loss], OPTIMIZERS[opt], NEGATIVES[negatives], n_user_cols,
            n_candidates, mask, F32(lr), F32(reg), F32(0.9), F32(0.999), F32(1e-8),
            num_threads=1, pool_size=pool_size, alias=alias, window=run_length > 0,
            run_length=run_length or None, user_candidates=user_candidates)

    if stacked:  # the epochs' plans stacked, one row per epoch, in one kernel call
        totals = kernel(np.stack([p[0] for p in plans]), np.stack([p[1] for p in plans]))
        assert all(total.shape == (epochs, n_chunks) for total in totals)
    else:
        totals = [np.stack(rows) for rows in zip(*(kernel(*plan) for plan in plans))]
    loss_sum, n_trained, n_skipped, n_refused = totals
    for e, (order, bounds) in enumerate(plans):  # one thread: one sample order for both
        ref_loss = reference.hogwild_epoch(
            indptr, indices, order, bounds, Ur, Vr, ru, ri, states_ref, loss, opt,
            negatives, n_user_cols, n_candidates if user_candidates is None else user_candidates,
            lr, reg, weights, update, pool_size, alias, run_length)
        assert_allclose(loss_sum[e].sum(), ref_loss, rtol=1e-5)
    assert n_refused.sum() == 0
    np.testing.assert_array_equal(states, states_ref)
    return (U, V), (Ur, Vr), (n_trained[-1], n_skipped[-1])


@pytest.mark.parametrize("opt", ["sgd", "adagrad", "rowwise-adagrad", "adam"])
@pytest.mark.parametrize("loss", ["bpr", "sigmoid"])
@given(X=sparse_interactions(max_users=8, max_items=10), seed=st.integers(0, 2**31),
       negatives=st.sampled_from(["uniform", "unseen", "popularity"]),
       n_candidates=st.sampled_from([1, 3]), bias=st.booleans(), stacked=st.booleans())
def test_epoch_kernel_matches_numpy_twin(opt, loss, X, seed, negatives, n_candidates, bias,
                                         stacked):
    (U, V), (Ur, Vr), _ = _run_both(X, opt, loss, negatives, n_candidates, bias, seed,
                                    stacked=stacked)
    # float32 rounding may differ in the last bits (numba vs NumPy power and
    # sqrt); a wrong formula moves the factors by ~lr = 0.05.
    assert_allclose(U, Ur, rtol=1e-4, atol=1e-5)
    assert_allclose(V, Vr, rtol=1e-4, atol=1e-5)
    if bias:
        assert np.all(U[:, -1] == 1.0)


@pytest.mark.parametrize("opt", ["sgd", "rowwise-adagrad"])
@given(X=sparse_interactions(max_users=8, max_items=10), seed=st.integers(0, 2**31),
       negatives=st.sampled_from(["uniform", "unseen", "popularity"]),
       n_candidates=st.sampled_from([1, 4]), pool_size=st.integers(1, 12), stacked=st.booleans())
def test_candidate_pool_matches_numpy_twin(opt, X, seed, negatives, n_candidates, pool_size,
                                           stacked):
    (U, V), (Ur, Vr), (n_trained, n_skipped) = _run_both(
        X, opt, "bpr", negatives, n_candidates, True, seed, pool_size=pool_size, stacked=stacked)
    assert_allclose(U, Ur, rtol=1e-4, atol=1e-5)
    assert_allclose(V, Vr, rtol=1e-4, atol=1e-5)
    full = np.diff(X.indptr) >= X.shape[1]  # users with every item: no pool under "unseen"
    if negatives != "uniform":
        assert n_skipped.sum() == np.diff(X.indptr)[full].sum()  # counts of the last epoch


@pytest.mark.parametrize("opt", ["sgd", "adagrad", "rowwise-adagrad", "adam"])
@given(X=sparse_interactions(max_users=8, max_items=10), seed=st.integers(0, 2**31),
       negatives=st.sampled_from(["uniform", "unseen"]), n_candidates=st.integers(1, 7),
       run_length=st.integers(1, 4), stacked=st.booleans())
def test_candidate_runs_match_numpy_twin(opt, X, seed, negatives, n_candidates, run_length,
                                         stacked):
    # Runs wrap around the last row, skip the user's positives under "unseen",
    # and may ask for more items than the user has negatives (10 items at most).
    (U, V), (Ur, Vr), (n_trained, n_skipped) = _run_both(
        X, opt, "bpr", negatives, n_candidates, True, seed, stacked=stacked,
        run_length=run_length)
    assert_allclose(U, Ur, rtol=1e-4, atol=1e-5)
    assert_allclose(V, Vr, rtol=1e-4, atol=1e-5)
    full = np.diff(X.indptr) >= X.shape[1]
    if negatives != "uniform":
        assert n_skipped.sum() == np.diff(X.indptr)[full].sum()


@pytest.mark.parametrize("opt", ["sgd", "adagrad"])
@pytest.mark.parametrize("draw", ["uniform", "unseen", "popularity", "pool", "runs"])
@given(X=sparse_interactions(max_users=8, max_items=10), seed=st.integers(0, 2**31),
       data=st.data())
def test_per_user_candidate_counts_match_numpy_twin(opt, draw, X, seed, data):
    # Each user scores its own count of candidates (candidate_exponent), from 1
    # (one draw: the fused pass of the fresh draws) to more than n_candidates
    # (the scratch rows are sized by the largest), in every way of drawing them.
    counts = np.array(data.draw(st.lists(st.integers(1, 7), min_size=X.shape[0],
                                         max_size=X.shape[0]), label="counts"), np.int64)
    negatives = "unseen" if draw in ("pool", "runs") else draw
    (U, V), (Ur, Vr), _ = _run_both(
        X, opt, "bpr", negatives, 2, True, seed, pool_size=5 if draw == "pool" else 0,
        run_length=3 if draw == "runs" else 0, user_candidates=counts)
    assert_allclose(U, Ur, rtol=1e-4, atol=1e-5)
    assert_allclose(V, Vr, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("counts", [np.ones(3, np.int64), np.ones(5, np.int32),
                                    np.array([1, 1, 0, 1, 1], np.int64)])
def test_per_user_candidate_counts_are_checked(counts):
    # The kernel indexes them by user and trusts them: a short array, another
    # dtype or a count of 0 would read out of bounds or draw nothing.
    X = sp.random(5, 8, density=0.4, format="csr", random_state=1)
    e, t = np.zeros((0, 0), F32), np.zeros(0, np.int64)
    U, V = np.ones((5, 3), F32), np.ones((8, 3), F32)
    order, bounds = plan_epoch(np.diff(X.indptr), np.flatnonzero(np.diff(X.indptr)),
                               np.random.default_rng(0), 2)
    with pytest.raises(ValueError, match="user_candidates must be int64 counts >= 1, one per "
                                         r"user \(5\)"):
        train_epoch_chunks(X.indptr.astype(np.int64), X.indices.astype(np.int32),
                           np.zeros(0, F32), order, bounds, U, V, e, e, e, e, t, e, e, t,
                           np.arange(2, dtype=np.uint64), ADAM_ALPHA, LOSSES["bpr"],
                           OPTIMIZERS["sgd"], NEGATIVES["unseen"], 3, 2, UPDATE_ALL, F32(0.1),
                           F32(0.0), F32(0.9), F32(0.999), F32(1e-8), user_candidates=counts)


def test_candidate_runs_refuse_a_pool_or_popularity():
    X = sp.random(5, 8, density=0.4, format="csr", random_state=1)
    e, t = np.zeros((0, 0), F32), np.zeros(0, np.int64)
    U, V = np.ones((5, 3), F32), np.ones((8, 3), F32)
    order, bounds = plan_epoch(np.diff(X.indptr), np.flatnonzero(np.diff(X.indptr)),
                               np.random.default_rng(0), 2)
    args = (X.indptr.astype(np.int64), X.indices.astype(np.int32), np.zeros(0, F32), order,
            bounds, U, V, e, e, e, e, t, e, e, t, np.arange(2, dtype=np.uint64), ADAM_ALPHA,
            LOSSES["bpr"], OPTIMIZERS["sgd"])
    rest = (3, 2, UPDATE_ALL, F32(0.1), F32(0.0), F32(0.9), F32(0.999), F32(1e-8))
    with pytest.raises(ValueError, match="without a pool"):
        train_epoch_chunks(*args, NEGATIVES["unseen"], *rest, pool_size=4, window=True)
    with pytest.raises(ValueError, match="without a pool"):
        train_epoch_chunks(*args, NEGATIVES["popularity"], *rest, window=True,
                           alias=popularity_table(X, 1.0)[:2])
    with pytest.raises(ValueError, match="run_length"):
        train_epoch_chunks(*args, NEGATIVES["unseen"], *rest, window=True, run_length=0)


def _window_epoch(X, seed, opt, negatives="unseen", fail=None, monkeypatch=None):
    """One epoch of the trainer with candidate_sampling="window" and of the twin, one thread.

    30 candidates: two runs per positive. The twin runs on the item ids, its
    candidates consecutive in the permutation the trainer draws after
    planning the epoch. ``fail``: "error" (the kernel call raises after
    training), "second Ctrl-C" (a Ctrl-C after the call, one having come
    before) or "Ctrl-C writing back" (a first Ctrl-C as the rows go back).
    Returns the trainer's Interrupt.
    """
    import bpr_numba._training as training

    X = check_interactions(X)
    params = BPR(factors=4, optimizer=opt, candidate_sampling="window", negative_candidates=30,
                 negatives=negatives, learning_rate=0.1, regularization=0.01,
                 num_threads=1).get_params()
    trainer = HogwildTrainer(Recipe.check(params), has_bias_column=False)
    rng = np.random.default_rng(seed)
    n_users, n_items = X.shape
    U = rng.uniform(-0.5, 0.5, (n_users, 4)).astype(F32)
    V = rng.uniform(-0.5, 0.5, (n_items, 4)).astype(F32)
    state = OptimizerState.fresh(opt, U.shape, V.shape)
    streams = (np.random.default_rng(seed + 1), np.arange(1, 8, dtype=np.uint64) * 977)
    twin = copy.deepcopy(streams)
    Ur, Vr = U.copy(), V.copy()
    _, ru = reference.optimizer_state(U.shape, opt)
    _, ri = reference.optimizer_state(V.shape, opt)
    interrupt = Interrupt()
    expected = contextlib.nullcontext()
    if fail in ("error", "second Ctrl-C"):
        real = training.train_epoch_chunks
        interrupt.requested = fail == "second Ctrl-C"
        error = RuntimeError("the epoch stops here") if fail == "error" else KeyboardInterrupt()

        def train_then_fail(*args, **kwargs):
            real(*args, **kwargs)
            raise error

        monkeypatch.setattr(training, "train_epoch_chunks", train_then_fail)
        expected = pytest.raises(type(error))
    elif fail == "Ctrl-C writing back":
        real_held = training.sigint_held

        @contextlib.contextmanager
        def ctrl_c_as_rows_go_back():
            with real_held():
                signal.raise_signal(signal.SIGINT)
                yield

        monkeypatch.setattr(training, "sigint_held", ctrl_c_as_rows_go_back)
        expected = pytest.warns(RuntimeWarning, match="finishing epoch 1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the second Ctrl-C's "training stopped"
        with expected:
            trainer.epochs(X, np.zeros(0, F32), U, V, state, streams, interrupt, 1)
    lengths = np.diff(X.indptr)
    order, bounds = plan_epoch(lengths, np.flatnonzero(lengths).astype(np.int64), twin[0], 7)
    item_order = twin[0].permutation(n_items)
    reference.hogwild_epoch(X.indptr, X.indices, order, bounds, Ur, Vr, ru, ri, twin[1], "bpr",
                            opt, negatives, 4, 30, 0.1, 0.01, run_length=RUN_LENGTH,
                            item_order=item_order)
    assert_allclose(U, Ur, rtol=1e-4, atol=1e-5)
    assert_allclose(V, Vr, rtol=1e-4, atol=1e-5)
    for name, a in state.item.arrays().items():  # the optimiser state went back to its items
        assert_allclose(a, ri[{"adagrad_sum_sq": "sum_sq", "adam_m": "m", "adam_v": "v",
                                "adam_t": "t"}[name]], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(streams[1], twin[1])
    assert not np.array_equal(item_order, np.arange(n_items))  # the layout did move
    return interrupt


@pytest.mark.parametrize("opt", ["sgd", "adagrad", "rowwise-adagrad", "adam"])
@given(seed=st.integers(0, 2**31), negatives=st.sampled_from(["uniform", "unseen"]),
       shape=st.sampled_from([(60, 0.2), (200, 0.03)]))
def test_window_epoch_matches_twin_in_the_items_order(opt, seed, negatives, shape):
    # 30 candidates in runs of RUN_LENGTH: two runs per positive. 60 items at
    # 12 positives a user: most runs hold a positive (the row-by-row loop);
    # 200 items (four bitset words) at 6: about half do not (the plain loop).
    assert RUN_LENGTH < 30 <= 2 * RUN_LENGTH
    n_items, density = shape
    X = sp.random(30, n_items, density=density, format="csr", random_state=seed % 1000)
    X.data[:] = 1
    _window_epoch(X, seed, opt, negatives)


@pytest.mark.parametrize("fail", ["error", "second Ctrl-C", "Ctrl-C writing back"])
def test_window_epoch_puts_rows_back_when_it_is_interrupted(fail, monkeypatch, ctrl_c_raises):
    X = sp.random(30, 60, density=0.2, format="csr", random_state=7)
    X.data[:] = 1
    interrupt = _window_epoch(X, 3, "rowwise-adagrad", fail=fail, monkeypatch=monkeypatch)
    assert interrupt.requested == (fail != "error")


def test_sigint_held_delivers_the_ctrl_c_after_the_block(ctrl_c_raises):
    from bpr_numba._training import sigint_held

    done = []
    with pytest.raises(KeyboardInterrupt):
        with sigint_held():
            signal.raise_signal(signal.SIGINT)
            done.append("the rest of the block")
    assert done == ["the rest of the block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    # A handler of the user's own is put back and gets the held signal, once.
    calls = []
    own = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    try:
        with sigint_held():
            signal.raise_signal(signal.SIGINT)
            assert calls == []
        assert calls == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, own)


@pytest.mark.parametrize("opt", ["sgd", "adagrad", "rowwise-adagrad", "adam"])
@given(X=sparse_interactions(max_users=8, max_items=10), seed=st.integers(0, 2**31),
       update=st.sampled_from([("user",), ("positive",), ("user", "positive", "negative"),
                               ("positive", "negative")]),
       weighted=st.booleans())
def test_weights_and_partial_updates_match_numpy_twin(opt, X, seed, update, weighted):
    weights = None
    if weighted:
        weights = np.random.default_rng(seed).uniform(0.1, 3.0, X.nnz).astype(F32)
    (U, V), (Ur, Vr), _ = _run_both(X, opt, "bpr", "unseen", 2, True, seed, weights=weights,
                                    update=update)
    assert_allclose(U, Ur, rtol=1e-4, atol=1e-5)
    assert_allclose(V, Vr, rtol=1e-4, atol=1e-5)


def test_frozen_rows_do_not_move():

    rng = np.random.default_rng(3)
    # Items 10..14 are never positive: only negative updates can move them.
    X = sp.hstack([sp.random(12, 10, density=0.3, random_state=4),
                   sp.csr_matrix((12, 5))]).tocsr()
    X.data[:] = 1
    start = np.random.default_rng(5)
    U0 = start.uniform(-0.5, 0.5, (12, 4)).astype(F32)
    V0 = start.uniform(-0.5, 0.5, (15, 4)).astype(F32)
    positives = np.zeros(15, bool)
    positives[X.indices] = True
    for update, users_move, pos_move, others_move in (
            (("user",), True, False, False),
            (("positive",), False, True, False),
            (("user", "positive", "negative"), True, True, True)):
        U, V = U0.copy(), V0.copy()
        e = np.zeros((0, 0), F32)
        t = np.zeros(0, np.int64)
        lengths = np.diff(X.indptr)
        order, bounds = plan_epoch(lengths, np.flatnonzero(lengths), rng, 4)
        mask = sum(_UPDATE_BITS[name] for name in update)
        train_epoch_chunks(X.indptr.astype(np.int64), X.indices.astype(np.int32),
                            np.zeros(0, F32), order, bounds, U, V, e, e, e, e, t, e, e, t,
                            np.arange(4, dtype=np.uint64) + 1, ADAM_ALPHA, LOSSES["bpr"],
                            OPTIMIZERS["sgd"], NEGATIVES["uniform"], 4, 1, mask, F32(0.1),
                            F32(0.01), F32(0.9), F32(0.999), F32(1e-8))
        assert (not np.array_equal(U, U0)) == users_move
        assert (not np.array_equal(V[positives], V0[positives])) == (pos_move or others_move)
        if not others_move:
            # Only positives may move; items never positive are untouched.
            assert np.array_equal(V[~positives], V0[~positives])
        else:
            assert not np.array_equal(V[~positives], V0[~positives])


@pytest.mark.parametrize("user_scale, item_scale", [
    (1.0, 1.0),  # the fused one-pass SGD step
    (1e-20, 1e20),  # squares overflow float32: the bound fails, the checked row updates step
])
def test_one_sgd_step_is_the_textbook_update(user_scale, item_scale):
    # One user, item 0 positive, item 1 the only unseen item: the sample is (0, 0, 1).

    X = sp.csr_matrix(np.array([[1, 0]], F32))
    U = np.array([[0.1, -0.2, 0.3]], F32) * F32(user_scale)
    V = np.array([[0.2, 0.1, -0.1], [-0.3, 0.2, 0.4]], F32) * F32(item_scale)
    u0, p0, n0 = U[0].copy(), V[0].copy(), V[1].copy()
    lr, reg = 0.1, 0.01
    e = np.zeros((0, 0), F32)
    t = np.zeros(0, np.int64)
    states = np.zeros(1, np.uint64)
    train_epoch_chunks(X.indptr.astype(np.int64), X.indices.astype(np.int32), np.zeros(0, F32),
                        np.array([0], np.int64), np.array([0, 1], np.int64), U, V,
                        e, e, e, e, t, e, e, t, states, ADAM_ALPHA, LOSSES["bpr"], OPTIMIZERS["sgd"],
                        NEGATIVES["unseen"], 3, 1, UPDATE_ALL, F32(lr), F32(reg), F32(0.9), F32(0.999),
                        F32(1e-8))
    u0, p0, n0 = (a.astype(np.float64) for a in (u0, p0, n0))
    x = float(u0 @ (p0 - n0))
    g = -1.0 / (1.0 + math.exp(x))  # d/dx of -log sigmoid(x)
    assert_allclose(U[0], u0 - lr * (g * (p0 - n0) + reg * u0), rtol=1e-5)
    assert_allclose(V[0], p0 - lr * (g * u0 + reg * p0), rtol=1e-5)
    assert_allclose(V[1], n0 - lr * (-g * u0 + reg * n0), rtol=1e-5)


def test_sgd_step_that_would_overflow_is_refused():
    # Item rows near float32's maximum and a step (reg -1 grows them by half)
    # that pushes one past it: neither the fused step nor the checked one may
    # write an infinity.

    X = sp.csr_matrix(np.array([[1, 0]], F32))
    U = np.array([[1e-30, 1e-30, 1e-30]], F32)
    V = np.array([[3e38, 3e38, 3e38], [2e38, 2e38, 2e38]], F32)  # i - j is finite
    V0 = V.copy()
    e = np.zeros((0, 0), F32)
    t = np.zeros(0, np.int64)
    totals = train_epoch_chunks(
        X.indptr.astype(np.int64), X.indices.astype(np.int32), np.zeros(0, F32),
        np.array([0], np.int64), np.array([0, 1], np.int64), U, V, e, e, e, e, t, e, e, t,
        np.zeros(1, np.uint64), ADAM_ALPHA, LOSSES["bpr"], OPTIMIZERS["sgd"],
        NEGATIVES["unseen"], 3, 1, UPDATE_ALL, F32(0.5), F32(-1.0), F32(0.9), F32(0.999),
        F32(1e-8))
    assert totals[3].sum() == 1  # refused
    # The positive's row would overflow: kept. (The checked updates judge each
    # row alone, so the negative's finite step is applied.)
    assert np.array_equal(V[0], V0[0]) and np.all(np.isfinite(V)) and np.all(np.isfinite(U))


def test_a_stacked_call_stops_training_after_an_epoch_with_a_refused_step():
    # Epochs stacked in one call: a range of chunks that refused a step in
    # epoch 0 trains no later epoch, so a diverging run stops where it began.

    X = sp.csr_matrix(np.array([[1, 0]], F32))
    U = np.array([[1e-30, 1e-30, 1e-30]], F32)
    V = np.array([[3e38, 3e38, 3e38], [2e38, 2e38, 2e38]], F32)
    e = np.zeros((0, 0), F32)
    t = np.zeros(0, np.int64)
    loss_sum, n_trained, n_skipped, n_refused = train_epoch_chunks(
        X.indptr.astype(np.int64), X.indices.astype(np.int32), np.zeros(0, F32),
        np.zeros((3, 1), np.int64), np.tile(np.array([0, 1], np.int64), (3, 1)), U, V,
        e, e, e, e, t, e, e, t, np.zeros(1, np.uint64), ADAM_ALPHA, LOSSES["bpr"],
        OPTIMIZERS["sgd"], NEGATIVES["unseen"], 3, 1, UPDATE_ALL, F32(0.5), F32(-1.0), F32(0.9),
        F32(0.999), F32(1e-8))
    assert n_refused.shape == (3, 1)
    assert n_refused[:, 0].tolist() == [1, 0, 0] and n_trained[:, 0].tolist() == [1, 0, 0]


@pytest.mark.parametrize("loss", ["bpr", "sigmoid"])
@given(x=st.floats(-60, 60))
def test_loss_parts_give_the_loss(loss, x):
    # The kernel sums a and multiplies b: a + log(b) must be the twin's loss, dx its gradient.
    dx, a, b = loss_parts(LOSSES[loss], x)
    ref_value, ref_grad = reference.loss_and_grad(loss, x)
    assert 1.0 <= b <= 2.0
    assert_allclose([a + math.log(b), dx], [ref_value, ref_grad], rtol=1e-9, atol=1e-15)


def test_long_epoch_loss_sum_matches_twin():
    # 3,000 samples of b ~ 2: the product of b passes the kernel's limit (1e300)
    # twice, so the rare folding of its log into the sum is exercised.

    X = sp.random(1, 6000, density=0.5, format="csr", random_state=1, dtype=np.float32)
    X.data[:] = 1.0
    _run_both(X, "sgd", "bpr", "unseen", 1, True, seed=3, epochs=1, lr=0.001)


@given(X=sparse_interactions(max_users=10, max_items=12), seed=st.integers(0, 2**31))
def test_unseen_negatives_skip_only_users_with_every_item(X, seed):
    _, _, (n_trained, n_skipped) = _run_both(X, "sgd", "bpr", "unseen", 1, False, seed, epochs=1)
    lengths = np.diff(X.indptr)
    full = lengths == X.shape[1]
    assert n_skipped.sum() == lengths[full].sum()
    assert n_trained.sum() == lengths[~full].sum()


def test_popularity_negatives_follow_popularity_among_the_unseen_items():
    # Items 0-9 with 1..10 positives each (exponent 1: q_j = (j + 1) / 55); the
    # user has items 4-9, so a draw hits them with h = 45 / 55. The kernel
    # redraws a hit up to 8 times, then draws uniformly among the 4 unseen
    # items (h^8 = 0.2 of the draws): P(j) = q_j (1 - h^8) / (1 - h) + h^8 / 4.

    from bpr_numba._kernels.sampling import draw_popular_unseen, mark_row

    counts = np.arange(1, 11)
    X = sp.csr_matrix((np.ones(counts.sum(), F32),
                       (np.arange(counts.sum()), np.repeat(np.arange(10), counts))),
                      shape=(counts.sum(), 10))
    prob, alias, _ = popularity_table(X, 1.0)
    indptr = np.array([0, 6], np.int64)
    indices = np.arange(4, 10, dtype=np.int32)
    seen = np.zeros(1, np.uint64)
    mark_row(seen, indices, 0, 6, True)
    q = counts / counts.sum()
    h = q[4:].sum()
    expected = q * (1 - h ** 8) / (1 - h) + h ** 8 / 4
    expected[4:] = 0.0
    assert_allclose(expected.sum(), 1.0)
    state, n = np.uint64(2024), 40_000
    drawn = np.zeros(10, np.int64)
    for _ in range(n):
        state, j = draw_popular_unseen(state, indptr, indices, seen, 0, 10, prob, alias)
        state = np.uint64(state)  # returned to Python as an int: keep the kernels' type
        drawn[j] += 1
    assert drawn[4:].sum() == 0  # never one of the user's positives
    chi2 = ((drawn[:4] - n * expected[:4]) ** 2 / (n * expected[:4])).sum()
    assert chi2 < 16.3  # 99.9% quantile of chi-square with 3 degrees of freedom
    # A user with every item has no negative.
    full = np.arange(10, dtype=np.int32)
    seen_all = np.zeros(1, np.uint64)
    mark_row(seen_all, full, 0, 10, True)
    assert draw_popular_unseen(np.uint64(1), np.array([0, 10], np.int64), full, seen_all, 0, 10,
                               prob, alias)[1] == -1


_WORD_EDGES = (0, 1, 2, 62, 63, 64, 65, 126, 127, 128, 129, 190, 191, 192, 193, 199, 200)


@given(items=st.sets(st.one_of(st.sampled_from(_WORD_EDGES[:-1]), st.integers(0, 199)),
                     max_size=8))
def test_any_marked_matches_the_bits_one_by_one(items):
    # The window's fast path skips checking its run's rows one by one only when
    # no bit of the run is set. Bitset words are 64 bits: runs within one word,
    # across two and over whole words, from and to every edge of a word.
    from bpr_numba._kernels.sampling import any_marked, is_marked, mark_row

    seen = np.zeros(4, np.uint64)
    marked = np.array(sorted(items), np.int32)
    mark_row(seen, marked, 0, marked.size, True)
    assert [i for i in range(200) if is_marked(seen, i)] == sorted(items)
    for start in _WORD_EDGES[:-1]:
        for end in _WORD_EDGES:
            if end > start:
                assert any_marked(seen, start, end) == any(start <= i < end for i in items), \
                    (start, end)


@given(n_items=st.integers(1, 200), n_rows=st.integers(1, 3), data=st.data())
def test_best_of_run_takes_the_first_of_equal_bests(n_items, n_rows, data):
    # The items share 1 to 3 distinct rows, so most candidates of a run tie:
    # the run's best is its first row of the highest score, in run order
    # (wrapping past the last row; under "unseen" the user's positives are
    # passed over and not counted), as a twin walking the rows finds it. The
    # kernel's dot scores both sides, so equal rows tie exactly. The plain
    # loop (no positive in the run, no wrap) and the row-by-row one both run.
    from bpr_numba._kernels.hogwild import _best_of_run
    from bpr_numba._kernels.sampling import mark_row

    rng = np.random.default_rng(data.draw(st.integers(0, 2**31), label="seed"))
    U = rng.uniform(-1, 1, (1, 4)).astype(F32)
    V = rng.uniform(-1, 1, (n_rows, 4)).astype(F32)[rng.integers(0, n_rows, n_items)]
    positives = data.draw(st.sets(st.integers(0, n_items - 1), max_size=n_items - 1),
                          label="positives")
    skip_seen = data.draw(st.booleans(), label="skip_seen")
    seen = np.zeros((n_items + 63) // 64, np.uint64)
    marked = np.array(sorted(positives), np.int32)
    mark_row(seen, marked, 0, marked.size, True)
    r = data.draw(st.integers(0, n_items - 1), label="r")
    n_unseen = n_items - len(positives) if skip_seen else n_items
    n_candidates = data.draw(st.integers(1, n_unseen), label="n_candidates")
    walk = [(r + k) % n_items for k in range(n_items)]
    run = [q for q in walk if not (skip_seen and q in positives)][:n_candidates]
    scores = [dot(U, 0, V, q) for q in run]
    first_best = int(np.argmax(scores))  # the first of equal maxima
    j, best = _best_of_run(U, 0, V, seen, skip_seen, r, n_candidates)
    assert (j, best) == (run[first_best], scores[first_best])


@pytest.mark.parametrize("alias", [None, (np.ones(1), np.zeros(1, np.int64))])
def test_popularity_without_a_table_of_every_item_is_refused(alias):
    # The kernel reads the table without bounds checks: a missing or short one is refused.

    X = sp.csr_matrix(np.array([[1, 0]], F32))
    U = np.zeros((1, 3), F32)
    V = np.zeros((2, 3), F32)
    e = np.zeros((0, 0), F32)
    t = np.zeros(0, np.int64)
    with pytest.raises(ValueError, match="alias table of 2 items"):
        train_epoch_chunks(X.indptr.astype(np.int64), X.indices.astype(np.int32),
                           np.zeros(0, F32), np.array([0], np.int64), np.array([0, 1], np.int64),
                           U, V, e, e, e, e, t, e, e, t, np.zeros(1, np.uint64), ADAM_ALPHA,
                           LOSSES["bpr"], OPTIMIZERS["sgd"], NEGATIVES["popularity"], 3, 1,
                           UPDATE_ALL, F32(0.1), F32(0.01), F32(0.9), F32(0.999), F32(1e-8),
                           alias=alias)


def test_plan_epoch_covers_every_trainable_user_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 20, 500)
    trainable = np.flatnonzero(lengths)
    order, bounds = plan_epoch(lengths, trainable, rng, 16)
    assert sorted(order.tolist()) == trainable.tolist()
    assert bounds[0] == 0 and bounds[-1] == order.size and np.all(np.diff(bounds) >= 0)
    per_chunk = [lengths[order[a:b]].sum() for a, b in zip(bounds[:-1], bounds[1:])]
    assert max(per_chunk) <= lengths.sum() / 16 + lengths.max()


def test_row_prefetches_cover_the_row_and_ask_for_write_intent():
    # A prefetch never changes a result, so what can be checked is the code:
    # prefetches in a loop over the row's lines plus one at its last byte (a
    # row need not start on a line), read (0) or write (1) intent as named, and
    # that it runs, also on an empty row.
    from numba import njit

    from bpr_numba._kernels.memory import prefetch_row, prefetch_row_for_write

    @njit
    def touch(a, r):
        prefetch_row(a, r)
        prefetch_row_for_write(a, r)
        return a[r].sum()

    for shape, dtype in (((4, 101), np.float32), ((2, 3), np.float64), ((3, 0), np.float32)):
        a = np.arange(np.prod(shape), dtype=dtype).reshape(shape)
        assert touch(a, 1) == a[1].sum()
    ir = touch.inspect_llvm(touch.signatures[0])
    calls = [line for line in ir.splitlines() if "call void @llvm.prefetch" in line]
    # Per intent: the loop's prefetch (LLVM may unroll it) and the last byte's.
    assert sum("i32 0, i32 3, i32 1)" in c for c in calls) >= 2
    assert sum("i32 1, i32 3, i32 1)" in c for c in calls) >= 2
    assert "udiv" in ir or "lshr" in ir  # the line count is taken from the row's length
