"""The listwise kernel (softmax, ccl, warp; shared negatives) against its NumPy twin.

The twin takes the gradients of the losses by central differences of the
papers' formulas, so a match is also a gradient check of the kernel.
"""

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from bpr_numba import BPR, TrainingDivergedError
from bpr_numba._kernels.listwise import LISTWISE_LOSSES, LOSS_LEAVES, TRAIN_USERS
from bpr_numba._kernels.optim import OPTIMIZERS
from bpr_numba._kernels.sampling import NEGATIVES, alias_table
from bpr_numba._training import adam_bias_correction, plan_epoch, popularity_table

from conftest import sparse_interactions
import reference

F32 = np.float32
ADAM_ALPHA = adam_bias_correction(0.9, 0.999)


def _state(shape, opt):
    return reference.optimizer_state(shape, opt, 0.1)


def _run_kernel(X, U, V, ks, ki, states, order, bounds, loss, opt, negatives, n_user_cols,
                n_negatives, lr, reg, temperature, margin, negative_weight, cosine, table,
                weights=None, update=(True, True, True)):
    n_items, f = V.shape
    prob, alias, log_q = table
    kernel_weights = np.zeros(0, F32) if weights is None else weights
    totals = (np.zeros(states.size, np.float64), np.zeros(states.size, np.int64),
              np.zeros(states.size, np.int64), np.zeros(states.size, np.int64))
    TRAIN_USERS[(LISTWISE_LOSSES[loss], OPTIMIZERS[opt])](
        X.indptr.astype(np.int64), X.indices.astype(np.int32), kernel_weights, order, bounds,
        0, states.size, prob, alias, log_q, U, V, ks["sum_sq"], ki["sum_sq"], ks["m"],
        ks["v"], ks["t"], ki["m"], ki["v"], ki["t"], ADAM_ALPHA, states,
        NEGATIVES[negatives], n_user_cols, n_negatives, cosine, *update, weights is not None,
        np.empty(f, F32), np.empty(f, F32), np.empty((3, f), F32),
        np.zeros((n_items + 63) // 64, np.uint64), np.empty(n_negatives, np.int64),
        np.empty(n_negatives, F32), np.empty(n_negatives, np.float64),
        np.empty(n_negatives, np.float64), np.empty(X.shape[1], np.float64),
        np.empty(X.shape[1], F32), F32(lr), F32(reg), F32(0.9), F32(0.999), F32(1e-8),
        1.0 / temperature, float(margin), float(negative_weight), *totals)
    return totals


def _run_both(X, loss, opt, negatives, seed, cosine=False, bias=False, n_negatives=5,
              lr=0.05, reg=0.01, temperature=0.5, margin=0.2, negative_weight=3.0, epochs=2,
              weights=None):
    rng = np.random.default_rng(seed)
    n_users, n_items = X.shape
    k = 4
    U = rng.uniform(-0.5, 0.5, (n_users, k)).astype(F32)
    V = rng.uniform(-0.5, 0.5, (n_items, k)).astype(F32)
    n_user_cols = k
    if bias:
        U[:, -1] = 1.0
        n_user_cols = k - 1
    if cosine:
        U /= np.linalg.norm(U, axis=1, keepdims=True)
        V /= np.linalg.norm(V, axis=1, keepdims=True)
    Ur, Vr = U.copy(), V.copy()
    ku, ru = _state(U.shape, opt)
    ki, ri = _state(V.shape, opt)
    table = (popularity_table(X, 0.75) if negatives == "popularity" else
             (np.zeros(0), np.zeros(0, np.int64), np.zeros(0, F32)))
    n_chunks = 5
    states = np.random.SeedSequence(seed).generate_state(n_chunks, np.uint64)
    states_ref = states.copy()
    lengths = np.diff(X.indptr)
    for _ in range(epochs):
        order, bounds = plan_epoch(lengths, np.flatnonzero(lengths), rng, n_chunks)
        totals = _run_kernel(X, U, V, ku, ki, states, order, bounds, loss, opt, negatives,
                             n_user_cols, n_negatives, lr, reg, temperature, margin,
                             negative_weight, cosine, table, weights)
        ref_loss = reference.listwise_epoch(
            X.indptr, X.indices, order, bounds, Ur, Vr, ru, ri, states_ref, loss, opt,
            negatives, n_user_cols, n_negatives, lr, reg, temperature, margin,
            negative_weight, cosine, table[:2], table[2], weights)
        assert_allclose(totals[0].sum(), ref_loss, rtol=1e-5, atol=1e-6)
        assert totals[3].sum() == 0
        np.testing.assert_array_equal(states, states_ref)
    return (U, V), (Ur, Vr), totals


# Each loss with the default optimiser, and the optimisers' three kinds of state
# (none, Adagrad's sums, Adam's moments and steps) with one loss: the row updates
# are the per-sample kernel's leaves, twin-tested there for every optimiser, and
# each (loss, optimiser) kernel costs seconds of compile in CI.
TWIN_CASES = ([("softmax", opt) for opt in ("sgd", "rowwise-adagrad", "adam")]
              + [(loss, "rowwise-adagrad") for loss in ("ccl", "warp")])


@pytest.mark.parametrize("loss, opt", TWIN_CASES)
@given(X=sparse_interactions(max_users=6, max_items=12), seed=st.integers(0, 2**31),
       negatives=st.sampled_from(["uniform", "unseen", "popularity"]),
       n_negatives=st.sampled_from([1, 3, 8]), cosine=st.booleans())
def test_listwise_kernel_matches_numpy_twin(opt, loss, X, seed, negatives, n_negatives, cosine):
    cosine = cosine or loss == "ccl"
    (U, V), (Ur, Vr), _ = _run_both(X, loss, opt, negatives, seed, cosine=cosine,
                                    n_negatives=n_negatives)
    # A wrong gradient moves the factors by about lr = 0.05.
    assert_allclose(U, Ur, rtol=1e-4, atol=2e-5)
    assert_allclose(V, Vr, rtol=1e-4, atol=2e-5)
    if cosine:
        assert_allclose(np.linalg.norm(V, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("loss", ["softmax", "warp"])
@given(X=sparse_interactions(max_users=6, max_items=12), seed=st.integers(0, 2**31))
def test_item_bias_and_weights_match_numpy_twin(loss, X, seed):
    weights = np.random.default_rng(seed).uniform(0.5, 2.0, X.nnz).astype(F32)
    (U, V), (Ur, Vr), _ = _run_both(X, loss, "rowwise-adagrad", "unseen", seed, bias=True,
                                    weights=weights)
    assert_allclose(U, Ur, rtol=1e-4, atol=2e-5)
    assert_allclose(V, Vr, rtol=1e-4, atol=2e-5)
    assert np.all(U[:, -1] == 1.0)


def test_one_thread_run_is_bit_for_bit_reproducible():
    X = sp.random(40, 30, density=0.2, format="csr", random_state=1, dtype=np.float32)
    a, b = (_run_both(X, "softmax", "rowwise-adagrad", "popularity", 3, epochs=1)[0]
            for _ in range(2))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("loss", ["softmax", "ccl", "warp"])
@given(s=st.lists(st.floats(-1, 1), min_size=2, max_size=9), n_pos=st.integers(1, 3),
       seed=st.integers(0, 2**31), temperature=st.sampled_from([0.1, 0.5, 1.0]),
       pop=st.booleans())
def test_loss_leaves_match_finite_differences(loss, s, n_pos, seed, temperature, pop):
    """The leaves' dloss/ds_p and summed dloss/ds_j against central differences of the formulas."""
    prepare, positive, finish = LOSS_LEAVES[LISTWISE_LOSSES[loss]]
    rng = np.random.default_rng(seed)
    n_pos = min(n_pos, len(s) - 1)
    s_pos = np.asarray(s[:n_pos], np.float64)
    s_neg = np.asarray(s[n_pos:], np.float64)
    n = s_neg.size
    log_q = rng.normal(size=n) if (pop and loss == "softmax") else np.zeros(n)
    w = rng.uniform(0.5, 2.0, n_pos)
    params = dict(temperature=temperature, margin=0.4, negative_weight=5.0)
    scores32 = s_neg.astype(F32)
    coef = np.zeros(n)
    pre = prepare(scores32, log_q, coef, n, 1.0 / temperature, 0.4, 5.0)
    state = np.uint64(seed)
    firsts, g_pos, acc, values = [], [], 0.0, []
    for a in range(n_pos):
        before = state
        state, value, g_p, inc = positive(state, s_pos[a], w[a], pre, scores32, coef, n, 50,
                                          1.0 / temperature, 0.4, 5.0)
        state = np.uint64(state)
        firsts.append(reference.next_below(before, n)[1] if loss == "warp" else 0)
        g_pos.append(w[a] * g_p)
        values.append(value)
        acc += inc
    finish(acc, pre, scores32, log_q, coef, n, 1.0 / temperature, 0.4, 5.0)
    s_neg32 = scores32.astype(np.float64)
    kw = dict(firsts=firsts, params=dict(params, **({"n_items": 50} if loss == "warp" else {})))
    if loss != "warp":
        kw["params"].pop("n_items", None)
    ref_values = [reference.listwise_loss(loss, s_pos[a], s_neg32, log_q, first=firsts[a],
                                          **kw["params"]) for a in range(n_pos)]
    assert_allclose(values, ref_values, rtol=1e-9, atol=1e-9)
    num_pos, num_neg = reference._numeric_score_gradients(loss, s_pos, s_neg32, log_q, w, kw)
    # Piecewise-linear losses (ccl, warp) have kinks: skip draws that sit on one.
    kinks = np.concatenate([s_neg32 - 0.4, [s_neg32[t] - s_pos[a] + 1 for a in range(n_pos)
                                            for t in range(n)]])
    if loss != "softmax" and np.min(np.abs(kinks)) < 1e-5:
        return
    assert_allclose(g_pos, num_pos, rtol=1e-5, atol=1e-6)
    assert_allclose(coef, num_neg, rtol=1e-5, atol=1e-6)


def test_warp_rank_weight_is_lightfms():
    """One violator found at the 2nd try among 9 items: weight log(floor(8 / 2))."""
    positive = LOSS_LEAVES[LISTWISE_LOSSES["warp"]][1]
    coef = np.zeros(3)
    state = np.uint64(7)
    first = reference.next_below(state, 3)[1]
    # Put the only violator one step after the scan's start.
    scores = np.roll(np.array([-5.0, 0.5, -5.0], F32), first)
    _, value, g_p, _ = positive(state, 1.0, 1.0, 0.0, scores, coef, 3, 9, 1.0, 0.0, 0.0)
    assert g_p == pytest.approx(-math.log(4))
    assert value == pytest.approx(math.log(4) * (1 - 1.0 + 0.5))


# ----------------------------------------------------------------- sampler
@pytest.mark.parametrize("exponent", [0.0, 0.75, 1.0])
def test_popularity_draws_match_the_target_distribution(exponent):
    counts = np.array([0, 1, 2, 5, 10, 40, 3, 0, 7, 100])
    X = sp.csr_matrix((np.ones(counts.sum(), F32),
                       (np.arange(counts.sum()), np.repeat(np.arange(10), counts))),
                      shape=(counts.sum(), 10))
    prob, alias, log_q = popularity_table(X, exponent)
    target = np.maximum(counts, 1.0) ** exponent
    target /= target.sum()
    assert_allclose(reference.alias_distribution(prob, alias), target, rtol=1e-12, atol=1e-15)
    assert_allclose(log_q, np.log(target * 10), rtol=1e-6)
    state = np.uint64(12345)
    n = 40_000
    seen = np.zeros(10, np.int64)
    from bpr_numba._kernels.sampling import draw_alias
    for _ in range(n):
        state, j = draw_alias(state, prob, alias)
        state = np.uint64(state)
        assert 0 <= j < 10
        seen[j] += 1
    expected = n * target
    chi2 = ((seen - expected) ** 2 / expected).sum()
    assert chi2 < 27.9  # 99.9% quantile of chi-square with 9 degrees of freedom


@given(weights=st.lists(st.floats(0, 100), min_size=1, max_size=30).filter(lambda w: sum(w) > 0))
def test_alias_table_is_exact_and_in_range(weights):
    prob, alias = alias_table(np.asarray(weights))
    assert np.all((alias >= 0) & (alias < len(weights)))
    assert np.all((prob >= 0) & (prob <= 1 + 1e-12))
    w = np.asarray(weights, np.float64)
    assert_allclose(reference.alias_distribution(prob, alias), w / w.sum(), atol=1e-9)


# ---------------------------------------------------------------- estimator
def _planted(n_blocks=4, users=20, items=15, seed=0):
    """Block-diagonal positives, one positive per user held out."""
    rng = np.random.default_rng(seed)
    dense = np.zeros((n_blocks * users, n_blocks * items), bool)
    for b in range(n_blocks):
        block = rng.random((users, items)) < 0.6
        dense[b * users:(b + 1) * users, b * items:(b + 1) * items] = block
    test = np.zeros_like(dense)
    for u in range(dense.shape[0]):
        pos = np.flatnonzero(dense[u])
        if pos.size > 1:
            held = rng.choice(pos)
            test[u, held] = True
            dense[u, held] = False
    return sp.csr_matrix(dense.astype(F32)), sp.csr_matrix(test.astype(F32))


@pytest.mark.parametrize("params", [
    dict(loss="softmax"),
    dict(loss="softmax", negatives="popularity", similarity="cosine", item_bias=False,
         temperature=0.2),
    dict(loss="ccl", item_bias=False, negative_weight=3.0, margin=0.3),
    dict(loss="warp", optimizer="rowwise-adagrad"),
])
def test_planted_blocks_are_recovered(params):
    from bpr_numba.metrics import evaluate

    train, test = _planted()
    model = BPR(factors=8, epochs=30, n_negatives=16, num_threads=1, random_state=0,
                **params).fit(train, show_progress=False)
    assert np.isfinite(model.user_factors).all() and np.isfinite(model.item_factors).all()
    assert evaluate(model, test, train, metrics=("auc",))["auc"] > 0.9


def test_fit_is_reproducible_with_one_thread_and_seed_dependent():
    train, _ = _planted()
    fits = [BPR(loss="softmax", negatives="popularity", factors=8, epochs=3, num_threads=1,
                random_state=s).fit(train, show_progress=False) for s in (1, 1, 2)]
    np.testing.assert_array_equal(fits[0].item_factors, fits[1].item_factors)
    assert not np.array_equal(fits[0].item_factors, fits[2].item_factors)


def test_cosine_rows_stay_unit_norm_and_initial_accumulator_is_used():
    train, _ = _planted()
    model = BPR(loss="ccl", item_bias=False, factors=8, epochs=2, num_threads=1,
                random_state=0)
    model.initialize(*train.shape)
    assert np.all(model._opt_state.item.adagrad_sum_sq == F32(0.1))
    model.fit(train, show_progress=False)
    assert_allclose(np.linalg.norm(model.item_factors, axis=1), 1.0, rtol=1e-5)
    assert_allclose(np.linalg.norm(model.user_factors, axis=1), 1.0, rtol=1e-5)
    assert BPR(loss="bpr").initialize(3, 4)._opt_state.item.adagrad_sum_sq.max() == 0.0


def test_divergence_raises_and_factors_stay_finite():
    train, _ = _planted()
    model = BPR(loss="softmax", optimizer="sgd", learning_rate=1e30, temperature=1e-3,
                factors=8, epochs=3, num_threads=1, random_state=0)
    with pytest.raises(TrainingDivergedError, match="diverged"):
        model.fit(train, show_progress=False)
    assert np.isfinite(model.user_factors).all() and np.isfinite(model.item_factors).all()


def test_fold_in_users_works_with_a_listwise_loss():
    train, _ = _planted()
    model = BPR(loss="softmax", factors=8, epochs=5, num_threads=1,
                random_state=0).fit(train, show_progress=False)
    before = model.item_factors.copy()
    vector = model.recalculate_user(0, train[0])
    assert vector.shape == (model.user_factors.shape[1],) and np.isfinite(vector).all()
    np.testing.assert_array_equal(model.item_factors, before)  # items stay fixed
    ids, _ = model.recommend(0, train[0], N=5)
    assert ids.shape == (5,)


def test_grown_rows_start_with_the_initial_accumulator():
    train, _ = _planted()
    model = BPR(loss="softmax", factors=8, epochs=2, num_threads=1,
                random_state=0).fit(train, show_progress=False)
    n = model.n_users
    model.partial_fit_users([n, n + 1], train[:2])
    assert_allclose(model._opt_state.user.adagrad_sum_sq[n:], F32(0.1))
    assert model._opt_state.user.adagrad_sum_sq.shape[0] == n + 2


def test_fold_in_with_popularity_negatives_is_refused():
    train, _ = _planted()
    model = BPR(loss="softmax", negatives="popularity", factors=8, epochs=1, num_threads=1,
                random_state=0).fit(train, show_progress=False)
    with pytest.raises(ValueError, match="popularity of the rows being folded in"):
        model.recalculate_user(0, train[0])


def test_popularity_table_survives_a_large_exponent():
    from bpr_numba._training import popularity_table

    X = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [1, 0, 0]] * 700, dtype=F32))
    prob, alias, log_q = popularity_table(X, 200.0)
    assert np.isfinite(log_q).all() and np.isfinite(prob).all()
    q = np.exp(log_q.astype(np.float64)) / X.shape[1]
    assert_allclose(q.sum(), 1.0, rtol=1e-6)
    assert q[0] > 0.999  # item 0 (2,100 positives) takes all but nothing of the mass


@pytest.mark.parametrize("params, error, match", [
    (dict(loss="softmax", optimizer="dense-adam"), ValueError, "dense-adam"),
    (dict(loss="ccl"), ValueError, "item_bias=False"),
    (dict(loss="ccl", similarity="dot", item_bias=False), ValueError, "cosine"),
    (dict(loss="bpr", optimizer="dense-adam", item_bias=False, negatives="popularity",
          negative_candidates=1), ValueError, "uniform"),
    (dict(loss="bpr", similarity="cosine"), ValueError, "similarity"),
    (dict(loss="softmax", negative_pool=10), ValueError, "negative_pool"),
    (dict(loss="softmax", n_negatives=0), ValueError, "n_negatives"),
    (dict(loss="softmax", n_negatives=2.5), TypeError, "n_negatives"),
    (dict(loss="softmax", temperature=0.0), ValueError, "temperature"),
    (dict(loss="ccl", item_bias=False, margin=1.5), ValueError, "margin"),
    (dict(loss="ccl", item_bias=False, negative_weight=-1.0), ValueError, "negative_weight"),
    (dict(loss="softmax", popularity_exponent=-0.5), ValueError, "popularity_exponent"),
    (dict(loss="softmax", similarity="euclid"), ValueError, "similarity"),
    (dict(loss="softmax", initial_accumulator_value=-1.0), ValueError,
     "initial_accumulator_value"),
    (dict(loss="hinge"), ValueError, "loss"),
    (dict(loss="sigmoid", optimizer="dense-adam", item_bias=False, negatives="uniform",
          negative_candidates=1, similarity="cosine"), ValueError, "similarity='cosine'"),
])
def test_bad_listwise_parameters_are_refused(params, error, match):
    train, _ = _planted()
    with pytest.raises(error, match=match):
        BPR(**params).fit(train, show_progress=False)


def test_two_threads_learn_as_well():
    """Hogwild on item rows: runs differ from one thread's, the quality does not."""
    from bpr_numba.metrics import evaluate

    train, test = _planted()
    model = BPR(loss="softmax", factors=8, epochs=30, n_negatives=16, num_threads=2,
                random_state=0).fit(train, show_progress=False)
    assert np.isfinite(model.item_factors).all()
    assert evaluate(model, test, train, metrics=("auc",))["auc"] > 0.9
    assert len(model.history_) == 30 and model.history_[-1]["loss"] < model.history_[0]["loss"]
