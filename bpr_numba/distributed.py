"""Beyond one machine: batch recommendation, evaluation and sweeps on Dask.

Three functions spread the package's public entry points over the workers of a
``dask.distributed`` cluster:

- :func:`recommend_all`: top-N for every user, one task per block of users,
  each calling the model's own ``recommend`` (the same Numba top-N kernel), so
  the answer equals ``model.recommend(np.arange(n_users), user_items, N=N)``;
  in memory, or written block by block to ``.npy`` (and Parquet) files;
- :func:`evaluate`: the metrics of :func:`bpr_numba.metrics.evaluate`, per-user
  values computed on blocks of users and reduced on the client as the local
  function reduces them;
- :func:`search`: a hyperparameter sweep of :class:`bpr_numba.BPR`, one fit
  (with early stopping on a validation matrix) per task.

``client=None`` starts a ``LocalCluster`` on the loopback interface for the
call (2 worker processes of 1 thread) and closes it afterwards; a
``dask.distributed.Client`` you pass (a LocalCluster, dask-jobqueue,
Kubernetes...) is used as it is and never closed. Every argument is checked
before any cluster is started.

Requires ``pip install 'bpr-numba[dask]'``.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import math
import numbers
import os
import time
import uuid
import warnings
from concurrent.futures import CancelledError
from pathlib import Path

try:
    import dask
    from dask.distributed import Client, LocalCluster, as_completed
except ImportError as exc:  # pragma: no cover - exercised by a test that hides dask
    raise ImportError(
        "bpr_numba.distributed needs Dask (dask[distributed]), which is not installed; "
        "install it with: pip install 'bpr-numba[dask]'"
    ) from exc

import numpy as np
import scipy.sparse as sp

from . import _validation as v
from . import metrics as _metrics
from .data import Interactions
from .estimator import BPR
from .persistence import atomic_file

__all__ = ["recommend_all", "evaluate", "search", "SearchResult", "load_recommendations",
           "DEFAULT_METRICS"]

#: The default metrics of :func:`bpr_numba.metrics.evaluate` (a test keeps them equal).
DEFAULT_METRICS = ("auc", "precision@10", "recall@10", "ndcg@10", "map@10", "mrr")

# Blocks of users per task when ``block_users`` is None: about four blocks per
# worker balance the load, and the cap bounds a block's output and score buffers.
_BLOCKS_PER_WORKER = 4
_MAX_AUTO_BLOCK = 100_000
# Tasks kept in flight per worker: enough to hide the round trips, few enough
# that the client never holds more than a few blocks of input and output.
_IN_FLIGHT_PER_WORKER = 2
# Fresh scatters of a run's shared data after every worker holding it was lost at once.
_RESCATTERS = 2
# No block has fewer users than this (a short last block joins the one before):
# OpenBLAS computes a float32 GEMM of 1 to 4 rows by other kernels (gemv, small-
# matrix paths) whose scores differ in the last bit from those of a taller GEMM,
# so tiny blocks would not reproduce model.recommend over all users exactly.
MIN_BLOCK_USERS = 8
MANIFEST = "manifest.json"


# ====================================================================== recommend_all


def recommend_all(model, user_items, N=10, client=None, block_users=None,
                  filter_already_liked_items=True, filter_items=None, items=None, out=None,
                  *, scatter="auto", parquet="auto", retries=2, show_progress=False):
    """Top ``N`` items of every user, computed in blocks of users on a Dask cluster.

    What every worker needs is scattered once (``broadcast=True``), and again
    if every worker holding it is lost at once; each task
    receives the rows of ``user_items`` of its block and calls the model's
    own ``recommend`` (the same top-N kernel) on its users. The result equals
    ``model.recommend(np.arange(n_users), user_items, N=N, ...)`` exactly,
    ids and scores.

    Parameters
    ----------
    model : fitted object with ``recommend``, ``user_factors`` and ``item_factors``
        :class:`bpr_numba.BPR`, :class:`bpr_numba.baselines.Popularity`, or any
        model with the same ``recommend`` signature.
    user_items : scipy.sparse matrix or Interactions, shape (n_users, n_items)
        The whole users x items matrix whose items are left out with
        ``filter_already_liked_items`` (may be None when that is False).
    N : int
        Items per user (>= 1).
    client : dask.distributed.Client, optional
        None: a LocalCluster on 127.0.0.1 (2 processes x 1 thread) for the call.
    block_users : int, optional
        Users per task; None: about four blocks per worker, at most 100,000 users.
    filter_already_liked_items, filter_items, items
        As in ``model.recommend``.
    out : str or os.PathLike, optional
        A folder (created if needed, on a file system every worker can write):
        each block is written by its worker as ``ids-BBBBBB.npy`` (int32, or
        int64 when needed) and ``scores-BBBBBB.npy`` (float32), plus
        ``recs-BBBBBB.parquet`` (columns user, rank, item, score; padding
        left out) with Parquet, then ``manifest.json``; nothing is gathered on
        the client. Every file is written to a temporary name and renamed, so
        a block file is either whole or absent, and the manifest (written
        last) lists only finished blocks. :func:`load_recommendations` reads
        the folder back.
    scatter : {"auto", "model", "item_factors"}
        "model": the whole model goes to every worker, and each task calls
        ``model.recommend(its_users, its_rows, ...)``; any model works, and a
        worker holds all the user factors. "item_factors" (BPR only): workers
        get the item factors and the parameters, each task carries its block's
        user factors and serves them with a BPR of the block's size
        (``BPR(**params).initialize(n, n_items)``, then its ``user_factors``
        and ``item_factors`` assigned), so a worker's memory does not grow
        with the number of users. "auto": "item_factors" for a BPR, else
        "model".
    parquet : "auto", bool
        Also write Parquet blocks: "auto" when pyarrow is importable.
    retries : int
        Times a failed block task (an exception, or a lost worker beyond
        Dask's own ``allowed-failures``) is run again before the call fails.
    show_progress : bool
        A progress bar over the blocks (tqdm), only on a terminal.

    Returns
    -------
    (ids, scores) : ndarrays of shape (n_users, N)
        Without ``out``: item ids (int32, or int64 when needed; -1 pads) and
        float32 scores (-inf pads), rows in user order.
    manifest : dict
        With ``out``: the contents of ``manifest.json`` (``n_users``, ``N``,
        ``blocks``: a list of ``{"block", "start", "stop", "ids", "scores"
        [, "parquet"]}`` with file names relative to ``out``).

    Raises
    ------
    TypeError, ValueError
        Before any cluster is started, for a model without ``recommend`` or
        factors, a ``user_items`` that is not a sparse matrix or does not have
        shape (n_users, n_items), a bad ``N``, ``block_users`` or ``retries``,
        and whatever ``model.recommend`` refuses (checked on the first user).
    """
    n_users, n_items = _model_shape(model, "model")
    if not callable(getattr(model, "recommend", None)):
        raise TypeError(f"model must have a recommend method; got {type(model).__name__}.")
    N = v.check_positive_int(N, "N")
    block_users = _block_users(block_users)
    retries = v.check_nonneg_int(retries, "retries")
    client = _check_client(client)
    if filter_already_liked_items or user_items is not None:
        user_items = _as_csr(user_items, "user_items", (n_users, n_items), model)
    if not filter_already_liked_items:
        user_items = None  # nothing to filter: no rows to ship
    if out is not None:
        if not isinstance(out, (str, os.PathLike)):
            raise TypeError(f"out must be a folder path (str or os.PathLike); got {type(out).__name__}.")
        out = Path(out)
    parquet = _check_parquet(parquet) if out is not None else False
    if scatter not in ("auto", "model", "item_factors"):
        raise ValueError(f"scatter must be 'auto', 'model' or 'item_factors'; got {scatter!r}.")
    if scatter == "item_factors" and type(model) is not BPR:
        raise ValueError(f"scatter='item_factors' serves a bpr_numba.BPR; got a "
                         f"{type(model).__name__}: use scatter='model'.")
    if scatter == "auto":
        # Subclasses (the implicit drop-in) have other parameters and recommend
        # semantics: they travel whole.
        scatter = "item_factors" if type(model) is BPR else "model"
    if scatter == "model":
        source, user_factors = model, None
        get_params = getattr(model, "get_params", None)
        if callable(get_params) and "num_threads" in get_params():
            # One kernel thread per Dask worker thread.
            source = copy.copy(model).set_params(num_threads=1)
    else:
        params = {**model.get_params(), "num_threads": 1}
        source, user_factors = (params, model.item_factors), model.user_factors
    options = dict(N=N, filter_already_liked_items=bool(filter_already_liked_items),
                   filter_items=filter_items, items=items)
    # Every argument the model checks, checked once here on the first user.
    _recommend_block(source, 0, 1, None if user_items is None else user_items[0:1], options,
                     None if user_factors is None else user_factors[0:1])
    show_progress = v.check_bool(show_progress, "show_progress")

    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.remove(out / MANIFEST)  # a manifest of an earlier run would describe other blocks

    with _client_for(client) as client:
        n_workers = max(1, sum(client.nthreads().values()))
        size = block_users or _auto_block(n_users, n_workers)
        bounds = _blocks(n_users, size)
        shared = _Scattered(client, source, "recommend_all")
        window = max(2, _IN_FLIGHT_PER_WORKER * n_workers)

        def submit(b):
            start, stop = bounds[b]
            # The block's rows travel with its task (not scattered): a task lost with its
            # worker is rerun elsewhere, while scattered data would be lost with it.
            rows = None if user_items is None else user_items[start:stop]
            block = None if user_factors is None else user_factors[start:stop]
            if out is None:
                return client.submit(_recommend_block, shared.future, start, stop, rows, options,
                                     block, retries=retries, pure=False,
                                     key=f"recommend-{uuid.uuid4().hex}-{b}")
            return client.submit(_write_block, shared.future, b, start, stop, rows, options,
                                 block, str(out), parquet, retries=retries, pure=False,
                                 key=f"recommend-write-{uuid.uuid4().hex}-{b}")

        results = [None] * len(bounds)
        for b, result in _run_windowed(submit, len(bounds), window, show_progress, "recommend_all",
                                       shared):
            results[b] = result

    if out is not None:
        manifest = {"format": "bpr-numba-recommendations", "format_version": 1,
                    "n_users": n_users, "n_items": n_items, "N": N, "block_users": size,
                    "ids_dtype": str(np.result_type(*[r["ids_dtype"] for r in results])),
                    "blocks": [{k: r[k] for k in r if k != "ids_dtype"} for r in results]}
        _atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))
        return manifest
    dtype = np.result_type(*[ids.dtype for ids, _ in results])
    ids = np.concatenate([r[0] for r in results]).astype(dtype, copy=False)
    scores = np.concatenate([r[1] for r in results])
    return ids, scores


def load_recommendations(out, mmap_mode=None):
    """Read a folder written by :func:`recommend_all` back as ``(ids, scores)``.

    Parameters
    ----------
    out : str or os.PathLike
        The folder holding ``manifest.json`` and the block files.
    mmap_mode : None or "r"
        Passed to ``numpy.load`` for each block (the result is still one
        concatenated array).

    Returns
    -------
    ids, scores : ndarrays of shape (n_users, N)
    """
    out = Path(out)
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{out} has no {MANIFEST}: recommend_all(out=...) writes it last, once every block "
            "is written; the run that wrote this folder did not finish."
        ) from None
    blocks = sorted(manifest["blocks"], key=lambda b: b["start"])
    ids = [np.load(out / b["ids"], mmap_mode=mmap_mode, allow_pickle=False) for b in blocks]
    scores = [np.load(out / b["scores"], mmap_mode=mmap_mode, allow_pickle=False) for b in blocks]
    return (np.concatenate(ids).astype(manifest["ids_dtype"], copy=False),
            np.concatenate(scores))


def _recommend_block(source, start, stop, rows, options, user_factors=None):
    """Worker: top-N of users ``start..stop-1`` (``rows``: their rows of user_items).

    ``source`` is the model (``user_factors`` None), or ``(params, item_factors)``
    of a BPR with ``user_factors`` the block's rows: then a BPR of the block's
    size serves them, with the same factors and so the same scores.
    """
    if user_factors is None:
        users = np.arange(start, stop, dtype=np.int64)
        ids, scores = source.recommend(users, rows, **options)
    else:
        params, item_factors = source
        model = BPR(**params).initialize(stop - start, item_factors.shape[0])
        model.user_factors = user_factors
        model.item_factors = item_factors
        ids, scores = model.recommend(np.arange(stop - start), rows, **options)
    return np.asarray(ids), np.asarray(scores)


def _write_block(source, b, start, stop, rows, options, user_factors, out, parquet):
    """Worker: compute block ``b`` and write its files atomically; return their names."""
    ids, scores = _recommend_block(source, start, stop, rows, options, user_factors)
    out = Path(out)
    names = {"ids": f"ids-{b:06d}.npy", "scores": f"scores-{b:06d}.npy"}
    _atomic_save(out / names["scores"], scores)
    _atomic_save(out / names["ids"], ids)
    if parquet:
        names["parquet"] = f"recs-{b:06d}.parquet"
        _atomic_parquet(out / names["parquet"], start, ids, scores)
    return {"block": b, "start": start, "stop": stop, **names, "ids_dtype": str(ids.dtype)}


def _atomic_save(path, array):
    with atomic_file(path) as f:
        np.save(f, array, allow_pickle=False)


def _atomic_parquet(path, start, ids, scores):
    import pyarrow as pa
    import pyarrow.parquet as pq

    keep = ids >= 0
    users, ranks = np.nonzero(keep)
    table = pa.table({"user": (users + start).astype(np.int64), "rank": ranks.astype(np.int16),
                      "item": ids[keep], "score": scores[keep]})
    with atomic_file(path) as f:
        pq.write_table(table, f)


def _atomic_write_text(path, text):
    with atomic_file(path) as f:
        f.write(text.encode("utf-8"))


def _check_parquet(parquet):
    import importlib.util

    if parquet == "auto":
        return importlib.util.find_spec("pyarrow") is not None
    if not isinstance(parquet, (bool, np.bool_)):
        raise TypeError(f"parquet must be 'auto', True or False; got {parquet!r}.")
    if parquet and importlib.util.find_spec("pyarrow") is None:
        raise ValueError("parquet=True needs pyarrow (pip install pyarrow); use parquet='auto' "
                         "or False to write .npy files only.")
    return bool(parquet)


# =========================================================================== evaluate


def evaluate(model, test, train=None, metrics=DEFAULT_METRICS, client=None, block_users=None,
             *, reduce=True, num_threads=1, check_intersections=True, retries=2,
             show_progress=False):
    """The metrics of :func:`bpr_numba.metrics.evaluate`, computed on blocks of users.

    Item factors are scattered once to every worker (again if every worker
    holding them is lost at once); each task receives the
    user factors and the ``test`` / ``train`` rows of its block and calls
    ``bpr_numba.metrics.evaluate(..., reduce=False)`` on them. Per-user values
    do not depend on other users, so the client concatenates them and reduces
    them as the local function does (the mean over users that take part, NaN
    elsewhere): the result equals ``bpr_numba.metrics.evaluate(model, test,
    train, metrics)``.

    Parameters
    ----------
    model : object with ``user_factors`` and ``item_factors``, or a pair
    test, train : scipy.sparse matrices or Interactions, shape (n_users, n_items)
    metrics : str or sequence of str
        Names as in :func:`bpr_numba.metrics.evaluate`.
    client : dask.distributed.Client, optional
        None: a LocalCluster on 127.0.0.1 for the call.
    block_users : int, optional
        Users per task; None: about four blocks per worker, at most 100,000.
    reduce : bool
        True: one float per metric; False: float64 arrays of length n_users.
    num_threads : int
        Numba threads per task (0 = all of the worker's).
    check_intersections : bool
        As in :func:`bpr_numba.metrics.evaluate`; the check is made on the
        client before any cluster is started.
    retries : int
        Times a failed block task is run again.
    show_progress : bool
        A progress bar over the blocks (tqdm), only on a terminal.

    Returns
    -------
    dict
        Metric name -> float, or ndarray of float64 of shape (n_users,).
    """
    names = _metric_names(metrics)
    user_factors, item_factors = v.factor_pair(model)
    shape = (user_factors.shape[0], item_factors.shape[0])
    test = _as_csr(test, "test", shape, model, canonical=True)
    if train is not None:
        train = _as_csr(train, "train", shape, model, canonical=True)
    block_users = _block_users(block_users)
    num_threads = v.check_nonneg_int(num_threads, "num_threads")
    retries = v.check_nonneg_int(retries, "retries")
    reduce = v.check_bool(reduce, "reduce")
    check_intersections = v.check_bool(check_intersections, "check_intersections")
    show_progress = v.check_bool(show_progress, "show_progress")
    client = _check_client(client)
    if train is not None and check_intersections:
        v.check_disjoint(test, train)
    n_users = shape[0]
    if shape[1] < 2:
        # No user can have a negative candidate, so the local function refuses every metric.
        raise ValueError(
            f"the test matrix has no usable user for {names[0]}: with {shape[1]} item no user "
            "has a negative candidate."
        )

    with _client_for(client) as client:
        n_workers = max(1, sum(client.nthreads().values()))
        size = block_users or _auto_block(n_users, n_workers)
        bounds = _blocks(n_users, size)
        items = _Scattered(client, item_factors, "evaluate")
        window = max(2, _IN_FLIGHT_PER_WORKER * n_workers)

        def submit(b):
            start, stop = bounds[b]
            # The block travels with its task, so a task lost with its worker can be rerun.
            block = (user_factors[start:stop], test[start:stop],
                     None if train is None else train[start:stop])
            return client.submit(_evaluate_block, items.future, block, names, num_threads,
                                 check_intersections, retries=retries, pure=False,
                                 key=f"evaluate-{uuid.uuid4().hex}-{b}")

        blocks = [None] * len(bounds)
        for b, values in _run_windowed(submit, len(bounds), window, show_progress, "evaluate",
                                       items):
            blocks[b] = values

    result = {}
    for m, name in enumerate(names):
        column = np.concatenate([values[:, m] for values in blocks])
        included = ~np.isnan(column)
        if not included.any():
            raise ValueError(
                f"the test matrix has no usable user for {name}: no user of the {n_users} has a "
                f"test positive and a negative candidate ({test.nnz} test positives"
                + ("" if train is None or name == "full_auc" else ", after removing train positives")
                + ")."
            )
        result[name] = float(column[included].mean()) if reduce else column
    return result


def _evaluate_block(item_factors, block, names, num_threads, check_intersections):
    """Worker: per-user values of ``names`` for one block, shape (n_block_users, n_metrics).

    ``bpr_numba.metrics.evaluate`` raises when no user of its input takes part,
    which a block may rightly have (say, no test positive in it): the block
    gets one extra user who always takes part (zero factors, test positive
    item 0, no train row; the catalogue has >= 2 items, checked on the
    client), and that user's row is dropped from the answer.
    """
    user_factors, test, train = block
    n, n_items = test.shape
    extra_test = sp.csr_matrix((np.ones(1, np.float32), (np.zeros(1, np.int64), np.zeros(1, np.int64))),
                               shape=(1, n_items))
    user_factors = np.vstack([user_factors, np.zeros((1, user_factors.shape[1]), user_factors.dtype)])
    test = sp.vstack([test, extra_test], format="csr")
    if train is not None:
        train = sp.vstack([train, sp.csr_matrix((1, n_items), dtype=train.dtype)], format="csr")
    values = _metrics.evaluate((user_factors, item_factors), test, train, metrics=names,
                               reduce=False, num_threads=num_threads,
                               check_intersections=check_intersections)
    return np.column_stack([values[name][:n] for name in names])


def _metric_names(metrics):
    if isinstance(metrics, str):
        metrics = (metrics,)
    try:
        metrics = list(metrics)
    except TypeError:
        raise TypeError(f"metrics must be a metric name or a sequence of names; got {metrics!r}.") from None
    if not metrics:
        raise ValueError(f"metrics is empty; expected names among {', '.join(_metrics.KNOWN_METRICS)}.")
    names = []
    for name in metrics:
        if not isinstance(name, str):
            raise TypeError(f"metrics must hold metric names (str); got {name!r}.")
        _metrics.parse_metric(name)  # ValueError listing the known metrics
        if name not in names:
            names.append(name)
    return names


# ============================================================================= search


class SearchResult:
    """What :func:`search` returns.

    Attributes
    ----------
    best_model_ : BPR
        The fitted model of the best trial (the factors of its best epoch
        when ``patience`` stopped it early).
    best_params_ : dict
        The parameters of that trial (the sweep's, without ``base_params``).
    best_score_ : float
        Its validation ``metric``.
    best_index_ : int
        Its row in ``results_``.
    results_ : pandas.DataFrame or list of dict
        One row per trial, in trial order: ``trial``, one column per swept
        parameter, the metric, ``best_epoch``, ``epochs_run``, ``seconds``
        (fit time on the worker) and ``error`` (None, or the trial's error
        message). A DataFrame when pandas is importable.
    metric : str
    """

    def __init__(self, best_model, best_params, best_score, best_index, results, metric):
        self.best_model_ = best_model
        self.best_params_ = best_params
        self.best_score_ = best_score
        self.best_index_ = best_index
        self.results_ = results
        self.metric = metric

    def __repr__(self):
        n = len(self.results_)
        return (f"SearchResult({n} trials, best {self.metric}={self.best_score_:.4f} "
                f"with {self.best_params_})")


def search(params, train, validation, metric="recall@20", client=None, n_trials=None,
           random_state=None, num_threads=1, patience=3, base_params=None, *, retries=1,
           show_progress=False):
    """Hyperparameter sweep of :class:`bpr_numba.BPR`, one fit per Dask task.

    Each trial fits ``BPR(**base_params, **trial_params)`` with
    ``fit(train, validation=validation, metric=metric, patience=patience,
    show_progress=False)``: the validation metric is computed after every
    epoch, and with ``patience`` training stops after that many epochs without
    improvement and keeps the factors of the best epoch. ``train`` and
    ``validation`` are scattered once to every worker (again if the workers
    holding them are lost at once: the cancelled trials then rerun, and a
    best model lost with them is fitted again; its row of ``results_`` and
    ``best_score_`` are those of the new fit, with a warning if the score
    moved, which a fixed ``random_state`` on one thread per trial avoids).

    Parameters
    ----------
    params : dict or list of dict
        - a dict of lists: the grid of all combinations (with ``n_trials``:
          that many distinct combinations drawn at random);
        - a dict whose values are lists or scipy.stats distributions (objects
          with ``rvs``): ``n_trials`` draws (lists drawn uniformly);
        - a list of dicts: exactly these trials.
        Names are parameters of BPR (checked before any cluster is started);
        invalid values fail their own trial only.
    train, validation : scipy.sparse matrices or Interactions, same shape
    metric : str
        The validation metric, higher is better (``"auc"``, ``"recall@20"``...).
    client : dask.distributed.Client, optional
        None: a LocalCluster on 127.0.0.1 for the call.
    n_trials : int, optional
        Trials to draw (see ``params``).
    random_state : None or int
        Seeds the draws of trials and, unless ``base_params`` or a trial sets
        ``random_state``, every trial's model (so trials differ only by their
        parameters).
    num_threads : int
        ``num_threads`` of each trial's model: threads per task (unless a trial
        sets it).
    patience : int or None
        Early stopping of each fit (None: all epochs, factors of the last).
    base_params : dict, optional
        Parameters shared by every trial (a trial's own values win).
    retries : int
        Times a trial whose task raised outside the fit is run again before
        it is recorded as failed (a lost worker's task is rerun by Dask
        itself).
    show_progress : bool
        A progress bar over the trials (tqdm), only on a terminal.

    Returns
    -------
    SearchResult
        ``best_model_``, ``best_params_``, ``best_score_``, ``best_index_`` and
        ``results_`` (see :class:`SearchResult`).

    Raises
    ------
    RuntimeError
        Every trial failed (the message gives each trial's error); or the
        workers holding the data were lost more than twice; or the best
        model, fitted again, failed.
    concurrent.futures.CancelledError
        A trial was cancelled otherwise (say, the client was closed).
    TimeoutError
        No worker came back within 120 s after the workers were lost.
    """
    known = list(BPR().get_params())
    base_params = {} if base_params is None else base_params
    if not isinstance(base_params, dict):
        raise TypeError(f"base_params must be a dict of BPR parameters; got {type(base_params).__name__}.")
    _check_param_names(base_params, "base_params", known)
    if random_state is not None and (not isinstance(random_state, numbers.Integral)
                                     or isinstance(random_state, (bool, np.bool_))):
        raise TypeError(f"random_state must be None or an int; got {random_state!r}.")
    if random_state is not None and random_state < 0:
        raise ValueError(f"random_state must be >= 0; got {random_state}.")
    n_trials = _optional_positive_int(n_trials, "n_trials")
    trials = _trials(params, n_trials, random_state, known)
    shape = _sparse_shape(train, "train")
    val_shape = _sparse_shape(validation, "validation")
    if val_shape != shape:
        raise ValueError(
            f"validation has shape {val_shape}, but train has shape {shape}; expected the same "
            "users and items."
        )
    if not isinstance(metric, str):
        raise TypeError(f"metric must be a metric name (str); got {metric!r}.")
    _metrics.parse_metric(metric)
    if patience is not None:
        patience = v.check_positive_int(patience, "patience")
    num_threads = v.check_nonneg_int(num_threads, "num_threads")
    retries = v.check_nonneg_int(retries, "retries")
    show_progress = v.check_bool(show_progress, "show_progress")
    client = _check_client(client)

    shared = dict(base_params)
    shared.setdefault("num_threads", num_threads)
    if random_state is not None:
        shared.setdefault("random_state", random_state)

    records = [None] * len(trials)
    best = None  # (score, index, (future of (record, model), generation of data))
    with _client_for(client) as client:
        data = _Scattered(client, (train, validation), "search")
        fit_futures = {}  # trial -> (future of (record, model), generation of data)
        submitted = {}  # record future's key -> trial
        pending = as_completed()

        def submit_fit(t):
            return client.submit(_fit_trial, {**shared, **trials[t]}, data.future, metric,
                                 patience, retries=retries, pure=False,
                                 key=f"search-fit-{uuid.uuid4().hex}-{t}"), data.generation

        def start(t):
            fit_futures[t] = submit_fit(t)
            record = client.submit(_first, fit_futures[t][0], pure=False,
                                   key=f"search-record-{uuid.uuid4().hex}-{t}")
            submitted[record.key] = t
            pending.add(record)

        for t in range(len(trials)):
            start(t)
        bar = _progress(len(trials), show_progress, "search")
        try:
            for future in pending:
                t = submitted.pop(future.key)
                try:
                    outcome = future.result()
                except CancelledError as exc:
                    if not data.recover(fit_futures[t][1], exc):
                        raise
                    fit_futures.pop(t)[0].release()
                    start(t)  # its data was lost with every worker: run it again
                    continue
                except Exception as exc:  # a failed task after its retries
                    outcome = {"score": None, "best_epoch": None, "epochs_run": None,
                               "seconds": None, "error": _describe(exc)}
                records[t] = outcome
                future.release()
                score = outcome["score"]
                if outcome["error"] is None and (best is None or score > best[0]
                                                 or (score == best[0] and t < best[1])):
                    if best is not None:
                        best[2][0].release()
                    best = (score, t, fit_futures.pop(t))
                else:
                    fit_futures.pop(t)[0].release()
                bar.update(1)
        finally:
            bar.close()
            # Cancelling a record does not cancel its fit: both are cancelled.
            for future in [*pending.futures, *(fit for fit, _ in fit_futures.values())]:
                future.cancel()
        if best is None:
            lines = "; ".join(f"trial {t} {trials[t]}: {r['error']}" for t, r in enumerate(records))
            raise RuntimeError(f"all {len(trials)} trials of the search failed: {lines}")
        refitted = False
        while True:
            fit, generation = best[2]
            try:
                record, best_model = fit.result()
                break
            except CancelledError as exc:
                # The best model was lost with the workers after its trial ended: fit
                # it again (the same model when the trial's seed is fixed and it runs
                # on one thread).
                if not data.recover(generation, exc):
                    fit.cancel()
                    raise
                best = (best[0], best[1], submit_fit(best[1]))
                refitted = True
        fit.release()
        if refitted:
            t = best[1]
            if record["error"] is not None:
                raise RuntimeError(f"search: the best trial {t} {trials[t]} was lost with the "
                                   f"workers and failed when fitted again: {record['error']}")
            if record["score"] != best[0]:
                warnings.warn(
                    f"search: the best trial {t} {trials[t]} was lost with the workers and "
                    f"fitted again, scoring {record['score']} instead of {best[0]} (its seed "
                    "is not fixed, or it runs on several threads); results_ and best_score_ "
                    "give the new fit's.", RuntimeWarning, stacklevel=2)
            records[t] = record
            best = (record["score"], t, best[2])

    rows = []
    for t, (trial, outcome) in enumerate(zip(trials, records)):
        rows.append({"trial": t, **trial, metric: outcome["score"], "best_epoch": outcome["best_epoch"],
                     "epochs_run": outcome["epochs_run"], "seconds": outcome["seconds"],
                     "error": outcome["error"]})
    try:
        import pandas as pd
    except ImportError:
        results = rows
    else:
        results = pd.DataFrame(rows)
    return SearchResult(best_model, dict(trials[best[1]]), float(best[0]), best[1], results, metric)


def _fit_trial(model_params, data, metric, patience):
    """Worker: fit one trial; return (record, fitted model or None). A failing fit is a record."""
    train, validation = data
    start = time.perf_counter()
    try:
        model = BPR(**model_params)
        model.fit(train, validation=validation, metric=metric, patience=patience,
                  show_progress=False)
    except Exception as exc:  # an invalid parameter, a diverged run...: the trial's own result
        return {"score": None, "best_epoch": None, "epochs_run": None,
                "seconds": time.perf_counter() - start, "error": _describe(exc)}, None
    seconds = time.perf_counter() - start
    best_epoch = int(model.best_epoch_)
    # With patience the model keeps the factors of its best epoch; without, those of the last.
    kept = best_epoch if patience is not None else model.n_epochs_done_
    score = float(model.history_[kept - 1][metric])
    return {"score": score, "best_epoch": best_epoch, "epochs_run": int(model.n_epochs_done_),
            "seconds": seconds, "error": None}, model


def _first(pair):
    return pair[0]


def _describe(exc):
    return f"{type(exc).__name__}: {exc}"


def _trials(params, n_trials, random_state, known):
    """The list of trial dicts described by ``params``."""
    rng = np.random.default_rng(random_state)
    if isinstance(params, dict):
        if not params:
            raise ValueError("params is an empty dict; expected BPR parameter names mapped to "
                             "lists of values (or scipy.stats distributions).")
        _check_param_names(params, "params", known)
        names = list(params)
        for name, values in params.items():
            if hasattr(values, "rvs"):
                continue
            if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, np.ndarray, range)):
                raise TypeError(
                    f"params[{name!r}] must be a list of values or a scipy.stats distribution; "
                    f"got {values!r} ({type(values).__name__}). Write [{values!r}] for one value."
                )
            if len(values) == 0:
                raise ValueError(f"params[{name!r}] is an empty list; expected at least one value.")
        if any(hasattr(v, "rvs") for v in params.values()):
            if n_trials is None:
                raise ValueError("params holds scipy.stats distributions, so n_trials must be "
                                 "given (the number of draws); got None.")
            trials = []
            for _ in range(n_trials):
                trial = {}
                for name in names:
                    values = params[name]
                    if hasattr(values, "rvs"):
                        trial[name] = _plain(values.rvs(random_state=rng))
                    else:
                        trial[name] = _plain(values[int(rng.integers(len(values)))])
                trials.append(trial)
            return trials
        grid = [dict(zip(names, combo)) for combo in itertools.product(*(params[n] for n in names))]
        grid = [{k: _plain(v) for k, v in trial.items()} for trial in grid]
        if n_trials is not None and n_trials < len(grid):
            picks = np.sort(rng.choice(len(grid), size=n_trials, replace=False))
            grid = [grid[int(i)] for i in picks]
        return grid
    if isinstance(params, (list, tuple)):
        if n_trials is not None:
            raise ValueError("n_trials applies to a grid or sampler dict; params is a list of "
                             f"{len(params)} trials, so pass n_trials=None.")
        if not params:
            raise ValueError("params is an empty list; expected at least one trial dict.")
        for k, trial in enumerate(params):
            if not isinstance(trial, dict):
                raise TypeError(f"params[{k}] must be a dict of BPR parameters; got "
                                f"{type(trial).__name__}.")
            _check_param_names(trial, f"params[{k}]", known)
        return [{k: _plain(v) for k, v in trial.items()} for trial in params]
    raise TypeError(
        "params must be a dict (grid of lists, or lists and scipy.stats distributions with "
        f"n_trials) or a list of dicts; got {type(params).__name__}."
    )


def _check_param_names(params, where, known):
    for name in params:
        if name not in known:
            raise ValueError(f"{where} has {name!r}, which is not a parameter of BPR; known "
                             f"parameters: {', '.join(known)}.")


def _plain(value):
    """numpy scalars as Python scalars (readable tables, plain parameters)."""
    return value.item() if isinstance(value, np.generic) else value


# ============================================================================ helpers


@contextlib.contextmanager
def _client_for(client):
    """The given client as it is, or a loopback LocalCluster closed on exit."""
    if client is not None:
        yield client
        return
    # Each worker runs one task at a time, and the tasks pass num_threads (1 by
    # default) to the kernels, so two worker processes do not fight over the
    # cores. (Not NUMBA_NUM_THREADS through Dask's pre-spawn environment: the
    # nanny sets it in this process's environment too, and numba then refuses
    # a thread count other than the one it launched with.)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None)
    try:
        with Client(cluster) as own:
            yield own
    finally:
        cluster.close()


def _check_client(client):
    if client is not None and not isinstance(client, Client):
        raise TypeError(f"client must be a dask.distributed.Client or None; got "
                        f"{type(client).__name__}.")
    return client


class _Scattered:
    """Data a run's tasks share, scattered to every worker, and scattered again if lost.

    ``broadcast=True`` leaves a copy on each worker, so a run survives a lost
    worker, unless Dask's active memory manager has trimmed the copies (its
    default ``ReduceReplicas`` policy drops copies no task waits for). When
    every worker holding it is lost at once, Dask cannot
    recompute scattered data and cancels the tasks that need it ("already
    forgotten"): :meth:`recover` scatters it again to the workers that are
    back (a nanny restarts them), and the caller resubmits those tasks.
    ``generation`` counts the scatters, so the tasks cancelled by one loss
    cause one new scatter.
    """

    def __init__(self, client, data, desc):
        self.client, self.data, self.desc = client, data, desc
        self.generation = 0
        self.rescatters = 0
        self.future = self._scatter()

    def _scatter(self):
        return self.client.scatter([self.data], broadcast=True, hash=False)[0]

    def lost(self):
        """Whether the scattered copy is gone (every worker holding it was lost)."""
        return self.future.status == "cancelled" and self.client.status == "running"

    def _lost_within(self, seconds):
        """Whether the copy is found lost within ``seconds``: the cancel of a task that
        needs the data may reach the client before the cancel of the data itself."""
        deadline = time.monotonic() + seconds
        while not self.lost():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def refresh(self, generation):
        """Scatter again, unless it was already done since ``generation``."""
        if generation == self.generation:
            deadline = time.monotonic() + _WORKERS_BACK_SECONDS
            while True:
                self.client.wait_for_workers(1, timeout=max(1.0, deadline - time.monotonic()))
                try:
                    self.future = self._scatter()
                    break
                except OSError:  # a dead worker not yet removed was counted
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            self.generation += 1

    def recover(self, generation, exc):
        """A task submitted at ``generation`` was cancelled (``exc``): may it be resubmitted?

        True when the loss of this data cancelled it; the data is then
        scattered again (once per loss, at most ``_RESCATTERS`` times a run:
        past that a RuntimeError says so). False for any other cancel (say,
        the caller's own, or a closed client), which the caller raises.
        """
        if self.client.status != "running":
            return False
        current = generation == self.generation
        if current and not self._lost_within(_LOSS_NEWS_SECONDS):
            return False
        if current:
            if self.rescatters >= _RESCATTERS:
                raise RuntimeError(
                    f"{self.desc}: every worker holding the shared data was lost "
                    f"{self.rescatters + 1} times in this run (it was scattered again after "
                    "each loss); check the workers' memory limits and logs.") from exc
            self.rescatters += 1
        self.refresh(generation)
        return True


_WORKERS_BACK_SECONDS = 120
# How long a cancelled task waits for the news that its shared data was lost.
_LOSS_NEWS_SECONDS = 2.0


def _run_windowed(submit, n_tasks, window, show_progress, desc, shared=None):
    """Yield ``(index, result)`` of tasks ``submit(0..n_tasks-1)``, at most ``window`` at a time.

    A task cancelled because ``shared`` (a :class:`_Scattered` the tasks
    read) was lost with every worker is resubmitted after ``shared`` is
    scattered again (:meth:`_Scattered.recover`); any other cancellation
    (say, the client closed) or error is raised.
    """
    futures = {}  # key -> (index, generation of shared when submitted)
    pending = as_completed()

    def start(index):
        future = submit(index)
        futures[future.key] = (index, 0 if shared is None else shared.generation)
        pending.add(future)

    next_task = 0
    while next_task < min(window, n_tasks):
        start(next_task)
        next_task += 1
    bar = _progress(n_tasks, show_progress, desc)
    try:
        for future in pending:
            index, generation = futures.pop(future.key)
            try:
                result = future.result()
            except CancelledError as exc:
                if shared is None or not shared.recover(generation, exc):
                    raise
                start(index)
                continue
            future.release()
            if next_task < n_tasks:
                start(next_task)
                next_task += 1
            bar.update(1)
            yield index, result
    finally:
        bar.close()
        for future in list(pending.futures):
            future.cancel()


def _progress(total, show_progress, desc):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="task", leave=False,
                disable=None if show_progress else True)


def _auto_block(n_users, n_workers):
    size = math.ceil(n_users / (_BLOCKS_PER_WORKER * n_workers))
    return max(MIN_BLOCK_USERS, min(_MAX_AUTO_BLOCK, size))


def _blocks(n_users, size):
    """``(start, stop)`` of blocks of ``size`` users; a last block shorter than
    MIN_BLOCK_USERS joins the one before (see MIN_BLOCK_USERS)."""
    starts = list(range(0, n_users, size))
    if len(starts) > 1 and n_users - starts[-1] < MIN_BLOCK_USERS:
        starts.pop()
    return [(start, starts[k + 1] if k + 1 < len(starts) else n_users)
            for k, start in enumerate(starts)]


def _block_users(value):
    if value is None:
        return None
    value = v.check_positive_int(value, "block_users")
    if value < MIN_BLOCK_USERS:
        raise ValueError(
            f"block_users must be >= {MIN_BLOCK_USERS}; got {value}. BLAS computes products of "
            "fewer rows with other kernels, whose scores differ in the last bit."
        )
    return value


def _model_shape(model, name):
    user_factors = getattr(model, "user_factors", None)
    item_factors = getattr(model, "item_factors", None)
    if user_factors is None or item_factors is None:
        raise ValueError(
            f"{name} must be a fitted model with user_factors and item_factors; this "
            f"{type(model).__name__} has none (call fit first)."
        )
    return int(np.shape(user_factors)[0]), int(np.shape(item_factors)[0])


def _sparse_shape(X, name):
    if isinstance(X, Interactions):
        return X.matrix.shape
    if not sp.issparse(X):
        raise TypeError(
            f"{name} must be a scipy.sparse matrix of shape (n_users, n_items) or an "
            f"Interactions; got {type(X).__module__.split('.')[0]}.{type(X).__name__}. Convert "
            f"with scipy.sparse.csr_matrix({name})."
        )
    return X.shape


def _as_csr(X, name, shape, model, canonical=False):
    """``X`` (sparse or Interactions of ``model``'s ids) as CSR of ``shape``; raise otherwise.

    ``canonical``: sorted indices, duplicates summed and explicit zeros
    dropped, as the metrics read them (on a copy; ``X`` is never modified).
    """
    if X is None:
        raise ValueError(f"{name} is None; expected a scipy.sparse matrix of shape {shape} "
                         "(n_users, n_items).")
    got = _sparse_shape(X, name)
    if isinstance(X, Interactions):
        v.check_same_ids(X, model, name)
        X = X.matrix
    if got != shape:
        raise ValueError(
            f"{name} has shape {got} but the model has shape {shape} (n_users, n_items); "
            "they must be equal."
        )
    X = sp.csr_matrix(X)
    if canonical:
        X = X.copy()
        X.sum_duplicates()
        X.eliminate_zeros()
    return X


def _optional_positive_int(value, name):
    return None if value is None else v.check_positive_int(value, name)


