"""Dask speedups: recommend_all and search with 1 and 2 local workers against one process.

* ``recommend_all``: a BPR model (factors 64 + bias, one epoch) on synthetic
  data (default 200,000 users x 50,000 items, 20 positives per user); the
  single-process reference is ``model.recommend(np.arange(n_users),
  user_items, N=10)`` with all cores; each Dask run is checked to give the same
  ids and scores. Workers are processes of 1 thread (``NUMBA_NUM_THREADS=1``),
  started before timing, and warmed up by one call (kernels loaded from the
  numba cache); medians and minimums of ``--repeats`` calls.
* overhead per block: ``recommend_all`` of a Popularity model on a tiny
  catalogue in many blocks, so the wall time is the tasks' overhead.
* ``search``: a 12-trial grid on MovieLens 100k ua (``$BPR_NUMBA_DATA``; a
  synthetic matrix when it is not found), 10 epochs, patience 3, recall@20,
  1 thread per trial, against the same 12 fits in a loop in one process.

Writes one JSON file to bench/results/ (ignored by git) and prints a summary.

Usage::

    python bench/distributed.py                       # the issue's configuration
    python bench/distributed.py --users 20000 --items 10000 --repeats 2   # a smaller one
    python bench/distributed.py --skip-search
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# This file is named like the ``distributed`` package that ``dask.distributed``
# imports: take its folder off sys.path (Python puts it first for a script) and
# load the shared helpers by path instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]


def _load_common():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_bench_common", _HERE / "_common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_common = _load_common()
cpu_model, git_state = _common.cpu_model, _common.git_state

RESULTS = _HERE / "results"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     epilog="Results: bench/results/distributed-*.json",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--per-user", type=int, default=20, help="positives per user")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("-N", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--block-users", type=int, default=None, help="default: recommend_all's")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=12, choices=[12], help="search trials")
    parser.add_argument("--search-epochs", type=int, default=10)
    parser.add_argument("--skip-recommend", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def cluster(n_workers):
    import dask
    from dask.distributed import Client, LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ.NUMBA_NUM_THREADS": "1"}):
        c = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                         host="127.0.0.1", dashboard_address=None)
    return c, Client(c)


def _has_pyarrow():
    import importlib.util

    return importlib.util.find_spec("pyarrow") is not None


def timed(func, repeats):
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = func()
        seconds.append(time.perf_counter() - start)
    return out, {"median_s": float(np.median(seconds)), "min_s": float(min(seconds)),
                 "runs_s": seconds}


def bench_recommend(args):
    from bpr_numba import BPR, make_synthetic
    from bpr_numba.baselines import Popularity
    import bpr_numba.distributed as dd

    X = make_synthetic(args.users, args.items, args.users * args.per_user,
                       random_state=args.seed)
    start = time.perf_counter()
    model = BPR(factors=args.factors, epochs=1, random_state=args.seed).fit(X, show_progress=False)
    fit_s = time.perf_counter() - start
    users = np.arange(args.users)
    model.recommend(users[:100], X, N=args.N)  # load the kernels
    (ids0, scores0), local = timed(lambda: model.recommend(users, X, N=args.N), args.repeats)
    record = {"data": {"n_users": args.users, "n_items": args.items, "nnz": int(X.nnz),
                       "factors": args.factors, "N": args.N, "fit_s": fit_s},
              "single_process": local, "dask": {}}
    print(f"model.recommend, one process: {local['median_s']:.2f} s (median)")
    for n in args.workers:
        c, client = cluster(n)
        try:
            start = time.perf_counter()
            dd.recommend_all(model, X, N=args.N, client=client, block_users=args.block_users)
            warm = time.perf_counter() - start
            (ids, scores), run = timed(lambda: dd.recommend_all(
                model, X, N=args.N, client=client, block_users=args.block_users), args.repeats)
            equal = bool(np.array_equal(ids, ids0) and np.array_equal(scores, scores0))
            # The default for a BPR is scatter="item_factors"; the whole model, for comparison.
            (ids, scores), whole = timed(lambda: dd.recommend_all(
                model, X, N=args.N, client=client, block_users=args.block_users,
                scatter="model"), args.repeats)
            whole["equal"] = bool(np.array_equal(ids, ids0) and np.array_equal(scores, scores0))
            client.run(lambda: __import__("pyarrow.parquet") if _has_pyarrow() else None)
            with tempfile.TemporaryDirectory(prefix="bpr-bench-recs-") as out:
                _, written = timed(lambda: dd.recommend_all(
                    model, X, N=args.N, client=client, block_users=args.block_users, out=out), 1)
                back = dd.load_recommendations(out)
                written["equal"] = bool(np.array_equal(back[0], ids0)
                                        and np.array_equal(back[1], scores0))
            # Overhead per block: a Popularity model on 100 items, 200 blocks of 50 users.
            tiny = make_synthetic(10_000, 100, 50_000, random_state=args.seed)
            pop = Popularity().fit(tiny)
            dd.recommend_all(pop, tiny, N=5, client=client, block_users=50)
            _, tiny_run = timed(lambda: dd.recommend_all(pop, tiny, N=5, client=client,
                                                         block_users=50), args.repeats)
        finally:
            client.close()
            c.close()
        entry = {"first_call_s": warm, **run, "equal": equal, "scatter_model": whole,
                 "to_files": written,
                 "speedup": local["median_s"] / run["median_s"],
                 "ratio_to_single_process": run["median_s"] / local["median_s"],
                 "overhead_per_block_ms": 1000 * tiny_run["median_s"] / 200}
        record["dask"][str(n)] = entry
        print(f"recommend_all, {n} worker(s): {run['median_s']:.2f} s (median; "
              f"{entry['ratio_to_single_process']:.2f}x the single process), equal={equal}; "
              f"scatter='model' {whole['median_s']:.2f} s, equal={whole['equal']}; "
              f"to .npy files {written['median_s']:.2f} s; overhead "
              f"{entry['overhead_per_block_ms']:.1f} ms per block")
    return record


def search_data(seed):
    from bpr_numba import load_movielens, make_synthetic

    try:
        train, test = load_movielens("100k", split="ua", download=False)
        return "ml-100k ua", train.tocsr(), test.tocsr()
    except Exception as exc:  # no files: a synthetic split of the same size
        print(f"MovieLens 100k not found ({exc}); searching on synthetic data")
        X = make_synthetic(944, 1683, 55_000, random_state=seed).tocoo()
        mask = np.random.default_rng(seed).random(X.nnz) < 0.1
        import scipy.sparse as sp

        def part(m):
            return sp.csr_matrix((X.data[m], (X.row[m], X.col[m])), shape=X.shape)

        return "synthetic 944 x 1683", part(~mask), part(mask)


GRID = {"factors": [32, 64], "learning_rate": [0.04, 0.08, 0.16], "regularization": [0.01, 0.03]}


def bench_search(args):
    import itertools

    from bpr_numba import BPR
    import bpr_numba.distributed as dd

    name, train, validation = search_data(args.seed)
    base = {"epochs": args.search_epochs, "random_state": args.seed}
    trials = [dict(zip(GRID, values)) for values in itertools.product(*GRID.values())]
    BPR(epochs=1, num_threads=1).fit(train, validation=validation, metric="recall@20",
                                     show_progress=False)  # load the kernels
    record = {"data": name, "trials": len(trials), "grid": GRID, **base, "single_process": {},
              "dask": {}}
    for threads in (1, 0):
        start = time.perf_counter()
        for trial in trials:
            BPR(**base, **trial, num_threads=threads).fit(
                train, validation=validation, metric="recall@20", patience=3, show_progress=False)
        label = f"{threads or 'all'}_threads"
        record["single_process"][label] = time.perf_counter() - start
        print(f"search loop, one process, {label}: {record['single_process'][label]:.2f} s")
    for n in args.workers:
        c, client = cluster(n)
        try:
            # Warm-up: one short fit per worker loads the kernels from the cache.
            dd.search([{"epochs": 1}] * n, train, validation, client=client)
            start = time.perf_counter()
            result = dd.search(GRID, train, validation, metric="recall@20", client=client,
                               num_threads=1, patience=3, base_params=base)
            seconds = time.perf_counter() - start
        finally:
            client.close()
            c.close()
        rows = result.results_
        rows = rows.to_dict("records") if hasattr(rows, "to_dict") else rows
        record["dask"][str(n)] = {
            "seconds": seconds, "speedup_vs_1_thread_loop": record["single_process"]["1_threads"] / seconds,
            "best_params": result.best_params_, "best_recall@20": result.best_score_,
            "failed": sum(r["error"] is not None and r["error"] == r["error"] for r in rows),
            "table": rows}
        print(f"search, {n} worker(s): {seconds:.2f} s ({len(rows)} trials); best recall@20 "
              f"{result.best_score_:.4f} with {result.best_params_}")
    return record


def main(argv=None):
    args = parse_args(argv)
    import dask
    import numba

    import bpr_numba

    commit, dirty = git_state()
    record = {"bench": "distributed", "argv": sys.argv[1:], "cpu": cpu_model(),
              "cores": os.cpu_count(), "load_average_at_start": os.getloadavg(),
              "python": platform.python_version(), "numpy": np.__version__,
              "numba": numba.__version__, "dask": dask.__version__,
              "bpr_numba": bpr_numba.__version__, "commit": commit, "dirty": dirty,
              "seed": args.seed}
    if not args.skip_recommend:
        record["recommend_all"] = bench_recommend(args)
    if not args.skip_search:
        record["search"] = bench_search(args)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"distributed-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(record, indent=2, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
