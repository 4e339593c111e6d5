"""bpr_numba.distributed on one loopback LocalCluster: the same answers as the local functions."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import threading
import time

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.stats

import cloudpickle
from dask.distributed import Client, LocalCluster

import bpr_numba.distributed as dd
from bpr_numba import BPR, make_synthetic
from bpr_numba import metrics
from bpr_numba.baselines import Popularity

# The helper models below are defined in this module, which the worker processes
# may not be able to import: send them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

N_USERS, N_ITEMS = 1000, 300
N_WORKERS = 2


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(n_workers=N_WORKERS, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None)
    with Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def synthetic():
    X = make_synthetic(N_USERS, N_ITEMS, 20_000, random_state=0).tocoo()
    test_mask = np.random.default_rng(0).random(X.nnz) < 0.2

    def part(mask):
        return sp.csr_matrix((X.data[mask], (X.row[mask], X.col[mask])), shape=X.shape)

    train, test = part(~test_mask), part(test_mask)
    model = BPR(factors=16, epochs=3, num_threads=1, random_state=0).fit(train, show_progress=False)
    return model, train, test


@pytest.fixture(scope="module")
def ml_slice(movielens):
    """The first 400 users of ml-100k ua: a model trained on them, train and test."""
    train, test = (X[:400] for X in movielens)
    model = BPR(epochs=5, num_threads=1, random_state=0).fit(train, show_progress=False)
    return model, train, test


@pytest.fixture
def no_cluster(monkeypatch):
    """Fail if the call would start a cluster (bad input must be refused first)."""
    def refuse(*args, **kwargs):
        raise AssertionError("a cluster was started before the arguments were checked")

    monkeypatch.setattr(dd, "LocalCluster", refuse)


# ------------------------------------------------------------------ recommend_all
def assert_same_top_n(got, expected):
    """Same ids; the scores equal but for float32 rounding.

    The scores are GEMM results of a block of users: OpenBLAS may round a row
    differently with the block's shape (seen with its AVX-512 kernels), so a
    worker's block and the local one can differ by an ulp or two.
    """
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-6, atol=1e-6)




@pytest.mark.parametrize("block_users, scatter", [(None, "auto"), (9, "model"), (9, "item_factors"),
                                                  (333, "auto"), (999, "model"), (5000, "auto")])
def test_recommend_all_equals_recommend_over_all_users(client, synthetic, block_users, scatter):
    model, train, _ = synthetic
    expected = model.recommend(np.arange(N_USERS), train, N=10)
    ids, scores = dd.recommend_all(model, train, N=10, client=client, block_users=block_users,
                                   scatter=scatter)
    assert ids.shape == scores.shape == (N_USERS, 10)
    assert ids.dtype == expected[0].dtype and scores.dtype == np.float32
    assert_same_top_n((ids, scores), expected)
    assert not np.isin(ids[0], train[0].indices).any()  # liked items filtered
    assert client.status == "running"  # a client we pass is never closed


def test_recommend_all_options_and_padding(client, synthetic):
    model, train, _ = synthetic
    filt, cand = np.arange(0, 40), np.arange(30, 50)  # 10 candidates left: padded to N=15
    kwargs = dict(N=15, filter_items=filt, items=cand)
    expected = model.recommend(np.arange(N_USERS), train, **kwargs)
    ids, scores = dd.recommend_all(model, train, client=client, block_users=128, **kwargs)
    assert_same_top_n((ids, scores), expected)
    assert (ids[:, 10:] == -1).all() and np.isneginf(scores[:, 10:]).all()
    unfiltered = dd.recommend_all(model, None, N=5, client=client, filter_already_liked_items=False)
    np.testing.assert_array_equal(
        unfiltered[0], model.recommend(np.arange(N_USERS), N=5, filter_already_liked_items=False)[0])


def test_recommend_all_popularity_on_movielens(client, ml_slice):
    model, train, _ = ml_slice
    pop = Popularity().fit(train)
    for m in (pop, model):
        expected = m.recommend(np.arange(train.shape[0]), train, N=10)
        ids, scores = dd.recommend_all(m, train, N=10, client=client, block_users=57)
        assert_same_top_n((ids, scores), expected)


def test_written_blocks_reassemble_to_the_in_memory_answer(client, synthetic, tmp_path):
    model, train, _ = synthetic
    out = tmp_path / "recs"
    manifest = dd.recommend_all(model, train, N=7, client=client, block_users=150, out=out)
    ids, scores = dd.recommend_all(model, train, N=7, client=client, block_users=150)
    assert json.loads((out / dd.MANIFEST).read_text()) == manifest
    assert [(b["start"], b["stop"]) for b in manifest["blocks"]] == (
        [(s, s + 150) for s in range(0, 900, 150)] + [(900, 1000)])
    names = sorted(os.listdir(out))
    assert not [n for n in names if n.startswith(".")]  # no temporary file left
    back_ids, back_scores = dd.load_recommendations(out)
    np.testing.assert_array_equal(back_ids, ids)
    np.testing.assert_array_equal(back_scores, scores)
    block = manifest["blocks"][2]
    np.testing.assert_array_equal(np.load(out / block["ids"]), ids[300:450])
    if importlib.util.find_spec("pyarrow") is None:
        assert not [n for n in names if n.endswith(".parquet")]
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(out / block["parquet"]).to_pydict()
        keep = ids[300:450] >= 0
        assert table["user"] == list(np.nonzero(keep)[0] + 300)
        assert table["item"] == list(ids[300:450][keep])
        np.testing.assert_array_equal(table["score"], scores[300:450][keep])


def _first_to_claim(marker):
    """True for exactly one caller across worker processes: the one that creates ``marker``.

    Two blocks run at once on two workers; a check-then-create would let both kill their
    worker, and losing every worker at once loses the scattered model with them."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


class KillsWorkerOnce:
    """A model whose first recommend kills its worker process (a marker file says it did)."""

    def __init__(self, model, marker):
        self.model, self.marker = model, str(marker)
        self.user_factors, self.item_factors = model.user_factors, model.item_factors

    def recommend(self, userid, user_items=None, **kwargs):
        if np.size(userid) > 1 and _first_to_claim(self.marker):
            os._exit(1)
        return self.model.recommend(userid, user_items, **kwargs)


class FailsOnce(KillsWorkerOnce):
    def recommend(self, userid, user_items=None, **kwargs):
        if np.size(userid) > 1 and _first_to_claim(self.marker):
            raise OSError("flaky disk")
        return self.model.recommend(userid, user_items, **kwargs)


def test_a_killed_worker_is_retried(client, synthetic, tmp_path):
    model, train, _ = synthetic
    marker = tmp_path / "killed"
    ids, scores = dd.recommend_all(KillsWorkerOnce(model, marker), train, N=5, client=client,
                                   block_users=500)
    assert marker.exists()
    expected = model.recommend(np.arange(N_USERS), train, N=5)
    assert_same_top_n((ids, scores), expected)


class KillsEveryWorkerOnce(KillsWorkerOnce):
    """Its first ``n_kills`` recommends (across all workers) each kill their worker."""

    def __init__(self, model, marker, n_kills):
        super().__init__(model, marker)
        self.n_kills = n_kills

    def recommend(self, userid, user_items=None, **kwargs):
        if np.size(userid) > 1 and any(_first_to_claim(f"{self.marker}-{k}")
                                       for k in range(self.n_kills)):
            os._exit(1)
        return self.model.recommend(userid, user_items, **kwargs)


def test_losing_every_worker_at_once_scatters_the_model_again(client, synthetic, tmp_path,
                                                              monkeypatch):
    # Each of the two workers dies on its first block: the scattered model is lost with
    # both copies, Dask cancels the blocks ("already forgotten"), and the run scatters it
    # to the restarted workers and resubmits them.
    model, train, _ = synthetic
    client.wait_for_workers(N_WORKERS, timeout=120)  # back from an earlier test's kill
    refreshes = []
    refresh = dd._Scattered.refresh
    monkeypatch.setattr(dd._Scattered, "refresh",
                        lambda self, generation: (refreshes.append(generation),
                                                  refresh(self, generation)))
    marker = tmp_path / "killed"
    ids, scores = dd.recommend_all(KillsEveryWorkerOnce(model, marker, N_WORKERS), train, N=5,
                                   client=client, block_users=500)
    assert all((tmp_path / f"killed-{k}").exists() for k in range(N_WORKERS))
    assert refreshes  # the model was scattered again
    expected = model.recommend(np.arange(N_USERS), train, N=5)
    assert_same_top_n((ids, scores), expected)


def test_a_cancelled_task_with_its_shared_data_intact_is_raised(client, monkeypatch):
    # Only a loss of the shared data is repaired by a new scatter; any other cancel
    # (here the caller's own) reaches the caller as it is.
    from concurrent.futures import CancelledError

    refreshes = []
    monkeypatch.setattr(dd._Scattered, "refresh",
                        lambda self, generation: refreshes.append(generation))
    shared = dd._Scattered(client, np.arange(3), "test")
    submitted = []

    def submit(index):
        future = client.submit(time.sleep, 3, pure=False)
        submitted.append(future)
        threading.Timer(0.3, future.cancel).start()
        return future

    with pytest.raises(CancelledError):
        list(dd._run_windowed(submit, 1, 1, False, "test", shared))
    assert not refreshes and len(submitted) == 1


def test_a_failing_task_is_retried_or_reported(client, synthetic, tmp_path):
    model, train, _ = synthetic
    ids, _ = dd.recommend_all(FailsOnce(model, tmp_path / "a"), train, N=5, client=client,
                              block_users=500, retries=1)
    np.testing.assert_array_equal(ids, model.recommend(np.arange(N_USERS), train, N=5)[0])
    with pytest.raises(OSError, match="flaky disk"):
        dd.recommend_all(FailsOnce(model, tmp_path / "b"), train, N=5, client=client,
                         block_users=500, retries=0)


# ---------------------------------------------------------------------- evaluate


@pytest.mark.parametrize("block_users", [None, 8, 333])
def test_evaluate_equals_the_local_metrics(client, synthetic, block_users):
    model, train, test = synthetic
    names = ("full_auc", "auc", "precision@5", "recall@20", "ndcg@10", "map@10", "mrr")
    expected = metrics.evaluate(model, test, train, metrics=names)
    got = dd.evaluate(model, test, train, metrics=names, client=client, block_users=block_users)
    assert list(got) == list(names)
    assert got == expected


def test_evaluate_per_user_values_on_movielens(client, ml_slice):
    model, train, test = ml_slice
    expected = metrics.evaluate(model, test, train, reduce=False)
    got = dd.evaluate(model, test, train, client=client, block_users=50, reduce=False)
    assert list(got) == list(expected)
    for name in expected:
        assert np.isnan(got[name]).any()  # row 0 of MovieLens is empty
        np.testing.assert_array_equal(got[name], expected[name])
    pair = (model.user_factors, model.item_factors)
    assert dd.evaluate(pair, test, None, "auc", client=client) == metrics.evaluate(pair, test, None, "auc")


def test_blocks_without_a_test_user_are_left_out_not_errors(client, synthetic):
    model, train, test = synthetic
    test = test.tolil()
    test[:500] = 0  # the first blocks have no test positive at all
    test = test.tocsr()
    test.eliminate_zeros()
    expected = metrics.evaluate(model, test, train, metrics=("auc", "ndcg@10"))
    assert dd.evaluate(model, test, train, ("auc", "ndcg@10"), client=client, block_users=100) == expected


def test_default_metrics_are_those_of_the_local_function():
    default = inspect.signature(metrics.evaluate).parameters["metrics"].default
    assert dd.DEFAULT_METRICS == tuple(default)
    assert inspect.signature(dd.evaluate).parameters["metrics"].default == tuple(default)


# ------------------------------------------------------------------------ search


def test_search_records_failing_trials_and_returns_the_best_model(client, ml_slice):
    _, train, test = ml_slice
    grid = {"factors": [8, 16], "learning_rate": [0.05, -1.0]}
    result = dd.search(grid, train, test, metric="recall@20", client=client, random_state=0,
                       patience=2, base_params={"epochs": 4})
    table = result.results_
    rows = table.to_dict("records") if hasattr(table, "to_dict") else table
    assert [(r["factors"], r["learning_rate"]) for r in rows] == [(8, 0.05), (8, -1.0),
                                                                  (16, 0.05), (16, -1.0)]
    failed = [r for r in rows if r["learning_rate"] < 0]
    assert all("learning_rate must be > 0" in r["error"] for r in failed)
    ok = [r for r in rows if r["learning_rate"] > 0]
    assert all(r["error"] is None or r["error"] != r["error"] for r in ok)  # None or NaN
    best = max(ok, key=lambda r: r["recall@20"])
    assert result.best_score_ == best["recall@20"]
    assert result.best_params_ == {"factors": best["factors"], "learning_rate": 0.05}
    # The best model is the fit a local run of the same trial gives, bit for bit.
    local = BPR(epochs=4, num_threads=1, random_state=0, **result.best_params_).fit(
        train, validation=test, metric="recall@20", patience=2, show_progress=False)
    np.testing.assert_array_equal(result.best_model_.user_factors, local.user_factors)
    np.testing.assert_array_equal(result.best_model_.item_factors, local.item_factors)
    assert best["best_epoch"] == local.best_epoch_
    assert best["recall@20"] == local.history_[local.best_epoch_ - 1]["recall@20"]


def test_scattered_data_is_recovered_only_when_lost():
    # _Scattered.recover with a stand-in client: a cancel with the data intact is not
    # its business; a loss scatters again once per loss, at most _RESCATTERS times.
    class Future:
        status = "finished"

    class FakeClient:
        status = "running"

        def __init__(self):
            self.scatters = 0

        def scatter(self, data, broadcast, hash):
            self.scatters += 1
            return [Future()]

        def wait_for_workers(self, n, timeout):
            pass

    fake = FakeClient()
    shared = dd._Scattered(fake, np.arange(3), "test")
    error = RuntimeError("cancelled")
    assert not shared.recover(0, error) and fake.scatters == 1  # intact: raise the cancel
    # The news of the loss may come just after the task's cancel: it is waited for.
    threading.Timer(0.3, setattr, (shared.future, "status", "cancelled")).start()
    assert shared.recover(0, error) and fake.scatters == 2 and shared.generation == 1
    fake = FakeClient()
    shared = dd._Scattered(fake, np.arange(3), "test")
    for loss in range(dd._RESCATTERS):
        shared.future.status = "cancelled"
        generation = shared.generation
        assert shared.recover(generation, error)
        assert shared.recover(generation, error)  # a second task of the same loss
        assert fake.scatters == loss + 2 and shared.generation == loss + 1
    shared.future.status = "cancelled"
    with pytest.raises(RuntimeError, match="test: every worker holding the shared data was lost"):
        shared.recover(shared.generation, error)
    fake.status = "closed"  # a closed client's cancel is not a loss
    assert not shared.recover(shared.generation, error)
    assert not shared.recover(0, error)  # not even of a task from before a loss


def test_search_with_a_sampler_and_a_list_of_trials(client, synthetic):
    _, train, test = synthetic
    sampler = {"learning_rate": scipy.stats.loguniform(0.01, 0.2), "factors": [4, 8]}
    result = dd.search(sampler, train, test, metric="auc", client=client, n_trials=3,
                       random_state=1, base_params={"epochs": 1})
    rows = result.results_.to_dict("records")
    assert len(rows) == 3 and all(0.01 <= r["learning_rate"] <= 0.2 for r in rows)
    assert all(r["factors"] in (4, 8) for r in rows)
    assert len({r["learning_rate"] for r in rows}) == 3
    listed = dd.search([{"factors": 4}, {"factors": 6, "negatives": "uniform"}], train, test,
                       metric="auc", client=client, patience=None, base_params={"epochs": 2})
    rows = listed.results_.to_dict("records")
    assert [r["epochs_run"] for r in rows] == [2, 2]
    assert listed.best_model_.item_factors.shape[1] == listed.best_params_["factors"] + 1


def test_search_raises_when_every_trial_fails(client, synthetic):
    _, train, test = synthetic
    with pytest.raises(RuntimeError, match="all 2 trials.*regularization must be >= 0"):
        dd.search({"regularization": [-1.0, -2.0]}, train, test, client=client)


# ------------------------------------------------------------------ own cluster, bad input


@pytest.mark.filterwarnings("ignore:Port 8787 is already in use")  # the module's cluster has it
def test_client_none_starts_and_closes_its_own_cluster(synthetic):
    model, train, test = synthetic
    assert dd.evaluate(model, test, train, "ndcg@10", client=None) == metrics.evaluate(
        model, test, train, "ndcg@10")


@pytest.mark.parametrize("call, error, message", [
    (lambda m, tr, te: dd.recommend_all(m, tr, N=0), ValueError, "N must be a positive integer"),
    (lambda m, tr, te: dd.recommend_all(m, tr, N=2.5), TypeError, "N must be a positive integer; got 2.5"),
    (lambda m, tr, te: dd.recommend_all(m, tr[:10]), ValueError, r"user_items has shape \(10, 300\)"),
    (lambda m, tr, te: dd.recommend_all(m, tr.toarray()), TypeError, "user_items must be a scipy.sparse"),
    (lambda m, tr, te: dd.recommend_all(m, None), ValueError, "user_items is None"),
    (lambda m, tr, te: dd.recommend_all(m, tr, block_users=3), ValueError, "block_users must be >= 8"),
    (lambda m, tr, te: dd.recommend_all(m, tr, filter_items=[999]), IndexError, "filter_items"),
    (lambda m, tr, te: dd.recommend_all(BPR(), tr), ValueError, "fitted model"),
    (lambda m, tr, te: dd.recommend_all(Popularity().fit(tr), tr, scatter="item_factors"), ValueError,
     "serves a bpr_numba.BPR"),
    (lambda m, tr, te: dd.recommend_all(m, tr, client="tcp://127.0.0.1:1"), TypeError, "client must be"),
    (lambda m, tr, te: dd.evaluate(m, te, tr, metrics="ndcg@0"), ValueError, "unknown metric 'ndcg@0'"),
    (lambda m, tr, te: dd.evaluate(m, te[:, :5], tr), ValueError, r"test has shape \(1000, 5\)"),
    (lambda m, tr, te: dd.evaluate(m, te, te), ValueError, "test and train share"),
    (lambda m, tr, te: dd.search({"factor": [8]}, tr, te), ValueError, "'factor', which is not a parameter"),
    (lambda m, tr, te: dd.search({"factors": 8}, tr, te), TypeError, r"params\['factors'\] must be a list"),
    (lambda m, tr, te: dd.search({"factors": [8]}, tr, te[:5]), ValueError, "validation has shape"),
    (lambda m, tr, te: dd.search({"factors": [8]}, tr, te, metric="recall"), ValueError, "unknown metric"),
    (lambda m, tr, te: dd.search({"learning_rate": scipy.stats.uniform(0, 1)}, tr, te), ValueError,
     "n_trials must be given"),
    (lambda m, tr, te: dd.search("factors", tr, te), TypeError, "params must be a dict"),
])
def test_bad_input_is_refused_before_any_cluster_starts(no_cluster, synthetic, call, error, message):
    model, train, test = synthetic
    with pytest.raises(error, match=message):
        call(model, train, test)


def test_import_without_dask_says_how_to_install(monkeypatch):
    for name in [m for m in sys.modules if m == "dask" or m.startswith(("dask.", "distributed"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "dask", None)  # import dask now raises ImportError
    monkeypatch.setitem(sys.modules, "distributed", None)
    monkeypatch.delitem(sys.modules, "bpr_numba.distributed")
    with pytest.raises(ImportError, match=r"pip install 'bpr-numba\[dask\]'"):
        importlib.import_module("bpr_numba.distributed")
