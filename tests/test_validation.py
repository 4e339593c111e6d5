"""Bad input gets a clear error: one test per row of the README's table.

Each case names the argument, what was found and what is expected; the ids in
``CASES`` are the README table's rows.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import re
import tempfile
from pathlib import Path

from bpr_numba import BPR, Interactions
from bpr_numba.estimator import UnknownIdError
from bpr_numba.metrics import evaluate, full_auc

from conftest import sparse_interactions

X = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 1, 0, 0], [1, 1, 0, 1]], np.float32))


def _fitted():
    return BPR(factors=3, epochs=1, random_state=0).fit(X, show_progress=False)


class _FakeFrame:
    """Stands in for a pandas DataFrame (pandas is no dependency)."""


_FakeFrame.__module__ = "pandas.core.frame"
_FakeFrame.__name__ = "DataFrame"


def _fitted_on_raw_ids():
    data = Interactions.from_arrays(["a", "b", "c", "a"], ["x", "y", "z", "z"])
    return BPR(factors=3, epochs=1, random_state=0).fit(data, show_progress=False), data


_CSV_FOLDER = tempfile.TemporaryDirectory()  # removed when the test process ends


def _csv(text):
    path = Path(_CSV_FOLDER.name) / "events.csv"
    path.write_text(text)
    return path


def _with_value(value):
    bad = X.copy().astype(np.float32)
    bad.data[0] = value
    return bad


CASES = {
    "negative user id in recommend": (lambda: _fitted().recommend(-1, X), IndexError,
                                      r"userid contains -1, .* 0\.\.2"),
    "user id out of range in predict": (lambda: _fitted().predict([3], [0]), ValueError,
                                        r"user_ids contains 3, but the model has 3 users"),
    "item id out of range in similar_items": (lambda: _fitted().similar_items(4), IndexError,
                                              r"itemid contains 4"),
    "non-integer ids": (lambda: _fitted().predict([0.5], [1]), TypeError, r"integer ids"),
    "ids of the wrong dimension": (lambda: _fitted().recommend([[0, 1]], X), ValueError,
                                   r"1-D array"),
    "NaN in interactions": (lambda: BPR().fit(_with_value(np.nan)), ValueError,
                            r"interactions contains 1 NaN or infinite"),
    "infinite value in interactions": (lambda: BPR().fit(_with_value(np.inf)), ValueError,
                                       r"NaN or infinite"),
    "empty matrix": (lambda: BPR().fit(sp.csr_matrix((0, 5))), ValueError, r"is empty"),
    "no positives": (lambda: BPR().fit(sp.csr_matrix((3, 5))), ValueError, r"no positives"),
    "every user has every item (unseen)": (
        lambda: BPR(negatives="unseen").fit(sp.csr_matrix(np.ones((2, 3)))), ValueError,
        r"every user with positives has every item"),
    "catalogue of one item": (lambda: BPR().fit(sp.csr_matrix(np.ones((3, 1)))), ValueError,
                              r"catalogue of 1 item"),
    "test matrix of another shape": (lambda: full_auc(_fitted(), sp.csr_matrix((3, 5))),
                                     ValueError, r"shape"),
    "factors not a positive integer": (lambda: BPR(factors=0).fit(X), ValueError,
                                       r"factors must be a positive integer \(>= 1\); got 0"),
    "factors not an integer": (lambda: BPR(factors=2.5).fit(X), TypeError,
                               r"factors must be a positive integer; got 2\.5"),
    "epochs not a positive integer": (lambda: BPR(epochs=-1).fit(X), ValueError, r"epochs"),
    "batch_size not a positive integer": (lambda: BPR.keras_compatible(batch_size=0).fit(X),
                                          ValueError, r"batch_size"),
    "negative learning_rate": (lambda: BPR(learning_rate=-0.1).fit(X), ValueError,
                               r"learning_rate must be > 0.0; got -0\.1"),
    "non-finite learning_rate": (lambda: BPR(learning_rate=float("inf")).fit(X), ValueError,
                                 r"learning_rate must be finite"),
    "negative regularization": (lambda: BPR(regularization=-1.0).fit(X), ValueError,
                                r"regularization must be >= 0.0"),
    "non-finite regularization": (lambda: BPR(regularization=float("nan")).fit(X), ValueError,
                                  r"regularization must be finite"),
    "unknown loss": (lambda: BPR(loss="hinge").fit(X), ValueError,
                     r"loss must be one of 'bpr', 'sigmoid', 'softmax', 'ccl', 'warp'; got 'hinge'"),
    "unknown optimizer": (lambda: BPR(optimizer="rmsprop").fit(X), ValueError,
                          r"optimizer must be one of 'sgd', 'adagrad', 'adam', 'dense-adam', "
                          r"'rowwise-adagrad'"),
    "num_threads below 0": (lambda: BPR(num_threads=-1).fit(X), ValueError,
                            r"num_threads must be >= 0; got -1"),
    "dense array instead of sparse": (lambda: BPR().fit(X.toarray()), TypeError,
                                      r"got numpy.ndarray\. Convert with scipy.sparse.csr_matrix"),
    "list instead of sparse": (lambda: BPR().fit([[1, 0], [0, 1]]), TypeError, r"got list"),
    "DataFrame instead of sparse": (lambda: BPR().fit(_FakeFrame()), TypeError,
                                    r"got pandas\.DataFrame.*coo_matrix"),
    "factors of the wrong shape": (lambda: setattr(_fitted(), "item_factors",
                                                   np.zeros((4, 2), np.float32)),
                                   ValueError, r"item_factors must have shape \(4, 4\)"),
    "factors of the wrong dtype": (lambda: setattr(_fitted(), "user_factors",
                                                   np.zeros((3, 4), np.int64)),
                                   TypeError, r"float dtype"),
    "non-finite factors": (lambda: setattr(_fitted(), "user_factors",
                                           np.full((3, 4), np.nan, np.float32)),
                           ValueError, r"NaN or infinite"),
    "unknown metric": (lambda: evaluate(_fitted(), X, metrics=["hit@10"]), ValueError,
                       r"hit@10"),
    "random_state of a wrong type": (lambda: BPR(random_state="seed").fit(X), TypeError,
                                     r"random_state must be"),
    "unknown raw id": (lambda: _fitted_on_raw_ids()[0].recommend("zed", _fitted_on_raw_ids()[1],
                                                               raw_ids=True),
                       UnknownIdError, r"userid holds unknown raw id\(s\) 'zed'"),
    "raw ids of a model fitted on a matrix": (lambda: _fitted().recommend(0, X, raw_ids=True),
                                              ValueError, r"fitted on bpr_numba.Interactions"),
    "test and train share positives": (lambda: evaluate(_fitted(), X, X), ValueError,
                                       r"test and train share 6 \(user, item\) pair"),
    "weights not positive": (lambda: BPR(use_weights=True).fit(-X), ValueError,
                             r"use_weights=True needs weights > 0 .* \(e\.g\. -1\.0\)"),
    "sample_weight of another pattern": (
        lambda: BPR(use_weights=True).fit(X, sample_weight=X[:, :2]), ValueError,
        r"same shape and pattern"),
    "malformed CSV line": (
        lambda: Interactions.from_csv(_csv("user,item,rating\nu1,i1,5\nu2,i2,four\n"),
                                      "user", "item", "rating"),
        ValueError, r"events\.csv, line 3: rating 'four' in column 'rating' is not a number"),
    "unknown CSV column": (
        lambda: Interactions.from_csv(_csv("user,item\nu1,i1\n"), "user", "song"),
        ValueError, r"item_col='song' is not a column of .*\['user', 'item'\]"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_a_clear_error(case):
    call, error, message = CASES[case]
    with pytest.raises(error, match=message):
        call()


def test_the_readme_table_has_one_row_per_case():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## When things go wrong", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (?!case \||---)(.+?) \| ", section, re.M)
    assert [row.replace("`", "") for row in rows] == list(CASES)


def test_users_without_positives_are_skipped_not_an_error():
    Y = sp.csr_matrix(np.array([[0, 0, 0], [1, 0, 1], [0, 0, 0]], np.float32))
    model = BPR(factors=2, epochs=1, negatives="uniform", random_state=0).fit(Y)
    assert model.user_factors.shape == (3, 3)


def test_users_with_every_item_are_skipped_with_one_warning():
    Y = sp.csr_matrix(np.array([[1, 1, 1], [1, 0, 0]], np.float32))
    with pytest.warns(RuntimeWarning, match="3 samples were skipped"):
        BPR(factors=2, epochs=2, negatives="unseen").fit(Y)


# Bounded so no example can hang: small shapes, few epochs.
@settings(deadline=None)
@given(X=sparse_interactions(max_users=12, max_items=12, min_items=1, min_nnz=0),
       explicit_zeros=st.booleans(), duplicates=st.booleans(),
       factors=st.integers(1, 6), epochs=st.integers(1, 3),
       optimizer=st.sampled_from(["sgd", "adagrad", "adam", "dense-adam"]),
       loss=st.sampled_from(["bpr", "sigmoid"]),
       learning_rate=st.one_of(st.none(), st.floats(1e-4, 10.0)),
       regularization=st.floats(0.0, 1.0),
       negatives=st.sampled_from(["uniform", "unseen"]))
def test_fuzz_training_gives_finite_factors_or_a_clear_error(
        X, explicit_zeros, duplicates, factors, epochs, optimizer, loss, learning_rate,
        regularization, negatives):
    coo = X.tocoo()
    rows, cols, data = coo.row, coo.col, coo.data
    if duplicates and coo.nnz:
        rows, cols, data = np.r_[rows, rows[:1]], np.r_[cols, cols[:1]], np.r_[data, data[:1]]
    if explicit_zeros:
        rows, cols, data = np.r_[rows, 0], np.r_[cols, 0], np.r_[data, 0.0]
    Y = sp.coo_matrix((data, (rows, cols)), shape=X.shape)
    params = dict(factors=factors, epochs=epochs, optimizer=optimizer, loss=loss,
                  learning_rate=learning_rate, regularization=regularization,
                  negatives=negatives, random_state=0)
    if optimizer == "dense-adam":
        params.update(negatives="uniform", negative_candidates=1, item_bias=False, batch_size=4)
    model = BPR(**params)
    try:
        model.fit(Y, show_progress=False)
    except ValueError as exc:  # a clear error: say which
        text = str(exc)
        assert any(s in text for s in ("no positives", "catalogue of", "every item",
                                       "diverged at epoch")), text
        if "diverged" in text:  # only a large step may diverge, and the factors stay finite
            assert learning_rate is not None and learning_rate > 0.5, text
            assert np.all(np.isfinite(model.user_factors))
            assert np.all(np.isfinite(model.item_factors))
        return
    assert np.all(np.isfinite(model.user_factors)) and np.all(np.isfinite(model.item_factors))
    ids, scores = model.recommend(0, Y, N=3)
    assert np.all(np.isfinite(scores)) and np.all((ids >= 0) & (ids < X.shape[1]))
