"""Training life cycle: validation, early stopping, callbacks, divergence, Ctrl-C, save/load."""

import types

import numpy as np
import pytest
import scipy.sparse as sp

import bpr_numba._training as training_module
from bpr_numba import BPR
from bpr_numba.estimator import TrainingDivergedError


def _data(seed=0, n_users=50, n_items=30):
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < 0.3
    test = dense & (rng.random(dense.shape) < 0.2)
    train = dense & ~test
    return sp.csr_matrix(train.astype(np.float32)), sp.csr_matrix(test.astype(np.float32))


def test_history_has_loss_metric_and_seconds():
    train, test = _data()
    model = BPR(factors=4, epochs=3, random_state=0).fit(train, validation=test, metric="auc",
                                                         patience=None, show_progress=False)
    assert [r["epoch"] for r in model.history_] == [1, 2, 3]
    for record in model.history_:
        assert record["loss"] > 0 and record["seconds"] >= 0 and 0 <= record["auc"] <= 1


def test_early_stopping_restores_the_best_epoch():
    train, test = _data()
    seen = {}

    def remember(epoch, record):
        seen[epoch] = (record["auc"], model.item_factors.copy())

    # Random data has no signal: the validation AUC wanders, so patience triggers.
    model = BPR(factors=8, epochs=40, learning_rate=0.3, regularization=0.0, random_state=0)
    model.fit(train, validation=test, metric="auc", patience=2, callbacks=[remember],
              show_progress=False)
    aucs = [r["auc"] for r in model.history_]
    best = int(np.argmax(aucs)) + 1
    assert model.n_epochs_done_ < 40
    assert model.n_epochs_done_ - best == 2
    assert model.best_epoch_ == best
    np.testing.assert_array_equal(model.item_factors, seen[best][1])


def test_callback_returning_false_stops():
    train, _ = _data()
    calls = []
    model = BPR(factors=4, epochs=10).fit(
        train, callbacks=[lambda epoch, record: calls.append(epoch) or epoch < 3],
        show_progress=False)
    assert calls == [1, 2, 3] and model.n_epochs_done_ == 3


@pytest.mark.parametrize("optimizer, negatives, per_call", [
    ("sgd", "uniform", None), ("sgd", "unseen", 3), ("adam", "unseen", None),
    ("adam", "uniform", 3)])
def test_epochs_in_one_call_train_as_epochs_one_by_one(monkeypatch, optimizer, negatives,
                                                       per_call):
    # Without anything to look between epochs, small epochs are stacked in one
    # kernel call (per_call=3: calls of 3, 3 and 1 epochs); on one thread that
    # must change nothing but the call count.
    train, _ = _data()
    real = training_module.train_epoch_chunks
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(training_module, "train_epoch_chunks", counted)
    if per_call is not None:
        monkeypatch.setattr(training_module.HogwildTrainer, "epochs_per_call",
                            lambda self, X: per_call)
    params = dict(factors=6, epochs=7, optimizer=optimizer, negatives=negatives, num_threads=1,
                  random_state=3)
    stacked = BPR(**params).fit(train, show_progress=False)
    assert len(calls) == (1 if per_call is None else 3)
    calls.clear()
    watched = BPR(**params).fit(train, callbacks=[lambda e, r: None], show_progress=False)
    assert len(calls) == 7
    np.testing.assert_array_equal(stacked.user_factors, watched.user_factors)
    np.testing.assert_array_equal(stacked.item_factors, watched.item_factors)
    for a, b in zip(stacked.history_, watched.history_, strict=True):
        assert (a["epoch"], a["loss"], a["skipped"]) == (b["epoch"], b["loss"], b["skipped"])
    # fit_partial continues the same streams either way.
    stacked.fit_partial(train, epochs=3)
    watched.fit_partial(train, epochs=3, callbacks=[lambda e, r: None])
    np.testing.assert_array_equal(stacked.item_factors, watched.item_factors)
    # Two threads: each trains its chunks epoch after epoch, every epoch recorded.
    two = BPR(**{**params, "num_threads": 2}).fit(train, show_progress=False)
    assert [r["epoch"] for r in two.history_] == list(range(1, 8))
    assert sum(r["seconds"] for r in two.history_) > 0 and two.n_epochs_done_ == 7
    assert np.isfinite(two.item_factors).all()
    assert all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in two.history_)


def test_only_small_epochs_are_stacked():
    from bpr_numba._kernels.hogwild import UPDATE_USER
    from bpr_numba._training import (MAX_STACKED, SAMPLES_PER_CALL, SAMPLES_PER_PIECE,
                                     HogwildTrainer)

    def per_call(X, **params):
        return HogwildTrainer(BPR(**params)._recipe(), True).epochs_per_call(X)

    def matrix(nnz, n_users=1000, n_items=900):
        rows = np.arange(nnz) % n_users
        cols = (np.arange(nnz) // n_users) % n_items
        return sp.csr_matrix((np.ones(nnz, np.float32), (rows, cols)), shape=(n_users, n_items))

    one = dict(negative_candidates=1)
    assert per_call(matrix(50_000), **one) == SAMPLES_PER_CALL // 50_000
    assert per_call(matrix(50_000), negative_candidates=3) == SAMPLES_PER_CALL // 150_000
    assert per_call(matrix(100), **one) == MAX_STACKED  # fold-in of a few rows: capped
    assert per_call(matrix(SAMPLES_PER_PIECE), **one) > 1
    assert per_call(matrix(SAMPLES_PER_PIECE + 1000), **one) == 1  # cut into pieces instead
    # A candidate pool's draws count: 1000 users x 300 pool entries.
    assert per_call(matrix(1000), negative_candidates=1, negative_pool=300) == 1
    # Runs of candidates lay the items out anew each epoch: one epoch per call,
    # but fold-in (items fixed) draws independently and stacks as before.
    window = dict(negative_candidates=3, candidate_sampling="window")
    assert per_call(matrix(50_000), **window) == 1
    trainer = HogwildTrainer(BPR(**window)._recipe(), True)
    assert trainer.epochs_per_call(matrix(50_000), UPDATE_USER) == SAMPLES_PER_CALL // 150_000


def test_epochs_before_a_divergence_in_one_call_are_recorded(monkeypatch):
    # A call that trained epochs 1-3, of which 3 diverged: 1 and 2 are kept
    # in the history before the error is raised.
    def train_epochs(interrupt, epoch, n):
        assert (epoch, n) == (1, 3)
        yield {"loss": 0.5, "skipped": 0}
        yield {"loss": 0.4, "skipped": 0}
        raise TrainingDivergedError("diverged at epoch 3")

    model = types.SimpleNamespace(history_=[], n_epochs_done_=0)
    with pytest.raises(TrainingDivergedError, match="epoch 3"):
        training_module.run_epochs(model, 5, train_epochs, epochs_per_call=3)
    assert model.n_epochs_done_ == 2 and [r["loss"] for r in model.history_] == [0.5, 0.4]

    # The same through fit: five epochs in one call, a refused step counted in
    # the third (as the kernel counts one).
    train, _ = _data()
    real = training_module.train_epoch_chunks

    def third_refused(*args, **kwargs):
        out = real(*args, **kwargs)
        assert out[3].shape[0] == 5
        out[3][2, 0] = 1
        return out

    monkeypatch.setattr(training_module, "train_epoch_chunks", third_refused)
    model = BPR(factors=4, epochs=5, random_state=0)
    with pytest.raises(TrainingDivergedError, match="diverged at epoch 3"):
        model.fit(train, show_progress=False)
    assert model.n_epochs_done_ == 2 and [r["epoch"] for r in model.history_] == [1, 2]


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad", "adam"])
def test_divergence_is_reported_and_last_finite_factors_kept(optimizer):
    train, _ = _data()
    model = BPR(factors=4, epochs=3, optimizer=optimizer, learning_rate=1e30,
                regularization=1.0, random_state=0)
    model.initialize(*train.shape)
    with pytest.raises(TrainingDivergedError, match=r"diverged at epoch 1: .*lower learning_rate"):
        model.fit_partial(train, epochs=3)
    # The steps that would have overflowed were not applied: factors and state stay finite.
    assert np.all(np.isfinite(model.item_factors)) and np.all(np.isfinite(model.user_factors))
    for state in model._opt_state.arrays().values():
        assert np.all(np.isfinite(state))
    assert model.n_epochs_done_ == 0


def test_keyboard_interrupt_finishes_the_epoch_and_keeps_its_factors(monkeypatch):
    train, _ = _data()
    real = training_module.train_epoch_chunks
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        out = real(*args, **kwargs)  # a kernel cannot be interrupted: Ctrl-C lands as it returns
        if len(calls) == 2:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(training_module, "train_epoch_chunks", interrupted)
    monkeypatch.setattr(training_module, "call_slices", lambda *a: [(0, 128), (128, 256)])
    model = BPR(factors=4, epochs=5, random_state=0)
    seen = {}
    with pytest.raises(KeyboardInterrupt), \
            pytest.warns(RuntimeWarning, match="epoch 1 was finished first"):
        model.fit(train, callbacks=[lambda e, r: seen.setdefault(e, model.item_factors.copy())],
                  show_progress=False)
    # Ctrl-C came in the middle of epoch 1 (after its first of two calls); the
    # second call still ran, so epoch 1 is complete and recorded.
    assert len(calls) == 2 and model.n_epochs_done_ == 1 and len(model.history_) == 1
    np.testing.assert_array_equal(model.item_factors, seen[1])
    monkeypatch.setattr(training_module, "train_epoch_chunks", real)
    model.fit_partial(train)  # still usable
    assert model.n_epochs_done_ == 2


def test_a_second_keyboard_interrupt_stops_at_once(monkeypatch):
    train, _ = _data()
    real = training_module.train_epoch_chunks

    def always_interrupted(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(training_module, "train_epoch_chunks", always_interrupted)
    monkeypatch.setattr(training_module, "call_slices", lambda *a: [(0, 128), (128, 256)])
    monkeypatch.setattr(training_module.HogwildTrainer, "epochs_per_call", lambda self, X: 1)
    model = BPR(factors=4, epochs=5, random_state=0)
    with pytest.raises(KeyboardInterrupt), pytest.warns(RuntimeWarning, match="partly trained"):
        model.fit(train, show_progress=False)
    assert model.n_epochs_done_ == 0
    assert np.all(np.isfinite(model.item_factors))


def test_keras_mode_divergence_keeps_the_previous_epoch():
    train, _ = _data()
    model = BPR.keras_compatible(factors=4, learning_rate=1e38, random_state=0)
    model.initialize(*train.shape)
    # Equal factors of 1e38: every positive's row gets Adam steps of about
    # +lr in the same direction and overflows to infinity within an epoch.
    model.item_factors = np.full(model.item_factors.shape, 1e38, np.float32)
    model.user_factors = np.full(model.user_factors.shape, 1e38, np.float32)
    start = model.item_factors.copy()
    with pytest.raises(TrainingDivergedError, match="diverged at epoch 1"):
        model.fit_partial(train)
    np.testing.assert_array_equal(model.item_factors, start)


def test_save_load_round_trip(tmp_path):
    train, _ = _data()
    model = BPR(factors=5, epochs=2, random_state=3).fit(train, show_progress=False)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = BPR.load(path)
    np.testing.assert_array_equal(loaded.user_factors, model.user_factors)
    np.testing.assert_array_equal(loaded.item_factors, model.item_factors)
    assert loaded.get_params() == model.get_params()
    assert loaded.n_epochs_done_ == 2 and len(loaded.history_) == 2
    loaded.fit_partial(train)  # trainable after loading
    assert not list(tmp_path.glob(".*tmp"))


def _saved(tmp_path):
    train, _ = _data()
    path = tmp_path / "model.npz"
    BPR(factors=3, epochs=1).fit(train, show_progress=False).save(path)
    return path


def test_saved_files_get_the_mode_open_would_give(tmp_path):
    import os
    import stat

    path = _saved(tmp_path)
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0o600


def test_load_rejects_a_truncated_file(tmp_path):
    path = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or damaged"):
        BPR.load(path)


def test_load_rejects_a_foreign_file(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.zeros(3))
    with pytest.raises(ValueError, match="not a bpr-numba model file"):
        BPR.load(path)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a readable bpr-numba model file"):
        BPR.load(text)
    array = tmp_path / "factors.npy"  # np.load gives an array, not an archive
    np.save(array, np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"single NumPy array \(\.npy\), not a bpr-numba model"):
        BPR.load(array)


def _rewrite(path, **changes):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def test_load_rejects_a_newer_version_and_missing_keys(tmp_path):
    path = _saved(tmp_path)
    _rewrite(path, format_version=np.int64(99))
    with pytest.raises(ValueError, match="version 99, newer"):
        BPR.load(path)
    path = _saved(tmp_path)
    _rewrite(path, item_factors=None)
    with pytest.raises(ValueError, match="item_factors"):
        BPR.load(path)
    path = _saved(tmp_path)
    _rewrite(path, user_factors=np.zeros((2, 2), np.float64))
    with pytest.raises(ValueError, match="damaged"):
        BPR.load(path)
    with pytest.raises(FileNotFoundError):
        BPR.load(tmp_path / "missing.npz")


def test_a_file_from_before_a_parameter_loads_with_what_its_model_did(tmp_path):
    # candidate_sampling came after files were written without it; their models
    # drew each candidate on its own, which "independent" goes on doing.
    import json

    train, _ = _data()
    path = tmp_path / "model.npz"
    BPR(factors=3, epochs=1, negative_candidates=30).fit(train, show_progress=False).save(path)
    assert BPR.load(path).candidate_sampling == "auto"  # saved, so kept
    with np.load(path, allow_pickle=False) as npz:
        header = json.loads(str(npz["header"]))
    del header["params"]["candidate_sampling"]
    _rewrite(path, header=np.array(json.dumps(header)))
    old = BPR.load(path)
    assert old.candidate_sampling == "independent"
    assert {k: v for k, v in old.get_params().items() if k != "candidate_sampling"} == \
        {k: v for k, v in header["params"].items()}
    old.fit_partial(train, show_progress=False)  # trains on as it did
    assert BPR(negative_candidates=30)._recipe().runs_for(30)  # "auto": runs of 30
    assert not old._recipe().runs_for(30)


def test_a_failed_save_leaves_the_existing_file_intact(tmp_path, monkeypatch):
    path = _saved(tmp_path)
    before = path.read_bytes()
    model = BPR(factors=3, epochs=1).fit(_data(1)[0], show_progress=False)

    def broken_savez(fh, **arrays):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


@pytest.mark.parametrize("epochs_per_call", [1, 5])
def test_keyboard_interrupt_in_a_one_call_epoch_keeps_its_totals(monkeypatch, epochs_per_call):
    # Most data sets fit in one kernel call per epoch, and small ones train
    # several epochs per call: a Ctrl-C raised as that call returns must still
    # finish its epochs with their real losses.
    train, _ = _data()
    real = training_module.train_epoch_chunks
    calls = []

    def interrupted(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(training_module, "train_epoch_chunks", interrupted)
    monkeypatch.setattr(training_module.HogwildTrainer, "epochs_per_call",
                        lambda self, X: epochs_per_call)
    model = BPR(factors=4, epochs=7, random_state=0, num_threads=1)
    with pytest.raises(KeyboardInterrupt), pytest.warns(RuntimeWarning) as warned:
        model.fit(train, show_progress=False)
    said = " ".join(str(w.message) for w in warned)
    assert f"epoch {epochs_per_call} was finished first" in said
    assert ("finishing epoch 1 first" if epochs_per_call == 1 else
            f"epochs 1 to {epochs_per_call} were trained in one kernel call") in said
    assert len(calls) == 1 and model.n_epochs_done_ == epochs_per_call
    reference = BPR(factors=4, epochs=epochs_per_call, random_state=0, num_threads=1).fit(
        train, show_progress=False)
    assert [r["loss"] for r in model.history_] == [r["loss"] for r in reference.history_]
    np.testing.assert_array_equal(model.item_factors, reference.item_factors)


def test_parallel_ranges_covers_every_task_once_and_reports_errors():
    from bpr_numba._runtime import parallel_ranges

    seen = np.zeros(103, np.int64)

    def mark(first, end):
        seen[first:end] += 1

    for threads in (1, 2, 0):
        seen[:] = 0
        parallel_ranges(mark, seen.size, threads)
        assert np.all(seen == 1)

    def fail(first, end):
        if first == 0:
            raise ValueError("piece 0 failed")
        seen[first:end] += 1

    with pytest.raises(ValueError, match="piece 0 failed"):
        parallel_ranges(fail, 50, 2)

    def interrupt(first, end):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # a piece's Ctrl-C ends the call, no hang
        parallel_ranges(interrupt, 50, 2)
