"""Evaluation throughput: bpr_numba.metrics.evaluate against a NumPy + scikit-learn loop.

Measures users evaluated per second with all metrics at k=10 computed in one
pass (full_auc, auc, precision@10, recall@10, ndcg@10, map@10, mrr, train
positives excluded), for

* ml-100k shapes (944 x 1683, factors 100): the real ``ua`` split when
  ``bpr_numba.datasets.load_movielens`` finds the files (``$BPR_NUMBA_DATA``,
  no download), else a random test matrix with 5 items per user;
* a synthetic 100,000 x 50,000 matrix (factors 64, 10 test items and 20 train
  items per user), random factors.

The baseline is the straightforward loop (per user: scores with NumPy,
``sklearn.metrics.roc_auc_score`` twice, ``np.argsort`` for the top-k and
ranks), timed on a seeded subsample of the users (NOTES.md allows it) in the
same run; its per-user values are checked against bpr_numba's. Kernel
compilation (first call, empty Numba cache) and loading from the cache are
timed in fresh processes.

Writes one JSON file to bench/results/ and prints a markdown table.

Usage::

    python bench/evaluation.py                    # everything (a few minutes)
    python bench/evaluation.py --skip-large       # ml-100k shapes only
    python bench/evaluation.py --blas-thread-timeout 4   # sets OPENBLAS_THREAD_TIMEOUT

scikit-learn is not a dependency of bpr-numba: install it in the benchmark's
environment (``pip install scikit-learn``); without it the baseline is
skipped and the output says so.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from _common import cold_and_cached, environment, finish, table

METRICS = ("full_auc", "auc", "precision@10", "recall@10", "ndcg@10", "map@10", "mrr")

COMPILE_SNIPPET = r"""
import json, time
t0 = time.perf_counter()
import numpy as np, scipy.sparse as sp
from bpr_numba import metrics
t1 = time.perf_counter()
rng = np.random.default_rng(0)
U = rng.standard_normal((50, 8)).astype(np.float32)
V = rng.standard_normal((40, 8)).astype(np.float32)
test = sp.random(50, 40, density=0.1, random_state=1, format="csr")
train = sp.random(50, 40, density=0.2, random_state=2, format="csr")
train = (train - train.multiply(test != 0)).tocsr()  # disjoint, as evaluate requires
train.eliminate_zeros()
names = %r
t2 = time.perf_counter()
metrics.evaluate((U, V), test, train, names)
t3 = time.perf_counter()
metrics.evaluate((U, V), test, train, names)
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_call_s": t3 - t2, "second_call_s": t4 - t3}))
"""


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], epilog="Results: bench/results/evaluation-*.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed repeats of bpr_numba on ml-100k shapes (default 5)")
    parser.add_argument("--large-repeats", type=int, default=3,
                        help="timed repeats on the large synthetic matrix (default 3)")
    parser.add_argument("--baseline-users", type=int, default=300,
                        help="users in the baseline's subsample, ml-100k shapes (default 300)")
    parser.add_argument("--large-baseline-users", type=int, default=40,
                        help="users in the baseline's subsample, large matrix (default 40)")
    parser.add_argument("--large-users", type=int, default=100_000)
    parser.add_argument("--large-items", type=int, default=50_000)
    parser.add_argument("--skip-large", action="store_true", help="ml-100k shapes only")
    parser.add_argument("--threads", type=int, default=0, help="Numba threads (0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-compile-timing", action="store_true",
                        help="skip the fresh-process compile / cache-load timing")
    parser.add_argument("--blas-thread-timeout", type=int, default=None,
                        help="set OPENBLAS_THREAD_TIMEOUT before NumPy loads (OpenBLAS worker "
                             "threads otherwise spin ~0.1 s after each product, slowing the "
                             "Numba kernel that follows); recorded in the JSON")
    return parser.parse_args()


def main():
    args = parse_args()
    if args.blas_thread_timeout is not None:
        os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(args.blas_thread_timeout)
    wall_start = time.perf_counter()

    import numpy as np

    try:
        import sklearn
        from sklearn.metrics import roc_auc_score
    except ImportError:
        sklearn = roc_auc_score = None
        print("scikit-learn is NOT installed: the NumPy + scikit-learn baseline is skipped "
              "(pip install scikit-learn to measure the ratio).", flush=True)

    import numba  # noqa: F401 - environment() then reports numba_threads

    env = dict(environment(), sklearn=None if sklearn is None else sklearn.__version__,
               OPENBLAS_THREAD_TIMEOUT=os.environ.get("OPENBLAS_THREAD_TIMEOUT"))
    record = {"argv": sys.argv[1:], "environment": env, "datasets": []}
    if not args.no_compile_timing:
        record["compile"] = compile_timing()
        print(f"compile: first call {record['compile']['cold']['first_call_s']:.2f} s with an empty "
              f"cache, {record['compile']['cached']['first_call_s']:.2f} s from the cache", flush=True)

    from bpr_numba import metrics

    rng = np.random.default_rng(args.seed)
    datasets = [ml100k_problem(rng)]
    if not args.skip_large:
        datasets.append(synthetic_problem(rng, args.large_users, args.large_items, 64, 10, 20))
    for data in datasets:
        large = data["name"].startswith("synthetic")
        repeats = args.large_repeats if large else args.repeats
        n_base = args.large_baseline_users if large else args.baseline_users
        result = run_dataset(data, metrics, roc_auc_score, repeats, n_base, args.threads, rng)
        record["datasets"].append(result)
        print(row_summary(result), flush=True)

    finish(record, "evaluation", markdown, start=wall_start)


# ------------------------------------------------------------------ data


def ml100k_problem(rng):
    """Real ua split (ratings >= 4) when found locally, else random; random factors (f=100)."""
    import numpy as np
    import scipy.sparse as sp

    source = "random test (5 per user) and train (100 per user)"
    train = test = None
    try:
        from bpr_numba.datasets import load_movielens

        if os.environ.get("BPR_NUMBA_DATA"):
            train, test = load_movielens("100k", split="ua", min_rating=4, download=False)
            source = "MovieLens 100k ua split, ratings >= 4 ($BPR_NUMBA_DATA)"
    except Exception as exc:  # no loader, no files: fall back to random data
        source += f" (real data not used: {type(exc).__name__})"
    n_users, n_items = (944, 1683) if test is None else test.shape
    if test is None:
        test = random_rows(rng, n_users, n_items, 5)
        train = random_rows(rng, n_users, n_items, 100, avoid=test)
    return {
        "name": "ml-100k shapes",
        "source": source,
        "U": rng.standard_normal((n_users, 100)).astype(np.float32),
        "V": rng.standard_normal((n_items, 100)).astype(np.float32),
        "test": sp.csr_matrix(test),
        "train": sp.csr_matrix(train),
    }


def synthetic_problem(rng, n_users, n_items, factors, n_test, n_train):
    import numpy as np

    test = random_rows(rng, n_users, n_items, n_test)
    return {
        "name": f"synthetic {n_users:,} x {n_items:,}",
        "source": f"random factors (f={factors}), {n_test} test and {n_train} train items per user",
        "U": rng.standard_normal((n_users, factors)).astype(np.float32),
        "V": rng.standard_normal((n_items, factors)).astype(np.float32),
        "test": test,
        "train": random_rows(rng, n_users, n_items, n_train, avoid=test),
    }


def random_rows(rng, n_users, n_items, per_user, avoid=None):
    """CSR with about ``per_user`` distinct random items per row (minus ``avoid``)."""
    import numpy as np
    import scipy.sparse as sp

    rows = np.repeat(np.arange(n_users), per_user)
    cols = rng.integers(0, n_items, rows.size)
    X = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(n_users, n_items))
    X.data[:] = 1.0  # duplicates summed: keep ones
    if avoid is not None:
        X = X - X.multiply(avoid)
        X.eliminate_zeros()
    return X


# ------------------------------------------------------------------ timing


def run_dataset(data, metrics, roc_auc_score, repeats, n_base, threads, rng):
    import numpy as np

    U, V, test, train = data["U"], data["V"], data["test"], data["train"]
    evaluated = np.flatnonzero(np.diff(test.indptr) > 0)
    # Warm-up (cache load, thread pool start) on a slice of the users.
    metrics.evaluate((U[:64], V), test[:64], train[:64], METRICS, num_threads=threads)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        values = metrics.evaluate((U, V), test, train, METRICS, reduce=False, num_threads=threads)
        times.append(time.perf_counter() - t)
    means = {name: float(np.nanmean(v)) for name, v in values.items()}
    median = float(np.median(times))
    result = {
        "name": data["name"], "source": data["source"],
        "shape": list(test.shape), "factors": U.shape[1],
        "test_nnz": int(test.nnz), "train_nnz": int(train.nnz),
        "users_evaluated": int(evaluated.size),
        "bpr_numba": {"seconds": times, "median_s": median, "min_s": float(min(times)),
                      "users_per_s": evaluated.size / median, "means": means},
        "baseline": None,
    }
    if roc_auc_score is not None:
        sample = np.sort(rng.choice(evaluated, size=min(n_base, evaluated.size), replace=False))
        base_times = []
        for _ in range(max(1, min(3, repeats))):
            t = time.perf_counter()
            base = baseline(U, V, test, train, sample, roc_auc_score)
            base_times.append(time.perf_counter() - t)
        base_median = float(np.median(base_times))
        diffs = {name: float(np.nanmax(np.abs(base[name] - values[name][sample]))) for name in METRICS}
        result["baseline"] = {
            "users_sampled": int(sample.size), "seconds": base_times, "median_s": base_median,
            "users_per_s": sample.size / base_median, "max_abs_diff_vs_bpr_numba": diffs,
        }
        result["speedup"] = result["bpr_numba"]["users_per_s"] / result["baseline"]["users_per_s"]
    return result


def baseline(U, V, test, train, users, roc_auc_score):
    """The straightforward per-user loop: NumPy scores, sklearn AUC, argsort ranks."""
    import numpy as np

    n_items = V.shape[0]
    out = {name: np.full(users.size, np.nan) for name in METRICS}
    k = 10
    discounts = 1.0 / np.log2(np.arange(2, n_items + 2))
    for r, u in enumerate(users):
        scores = V @ U[u]
        labels = np.zeros(n_items, bool)
        labels[test.indices[test.indptr[u]:test.indptr[u + 1]]] = True
        seen = np.zeros(n_items, bool)
        seen[train.indices[train.indptr[u]:train.indptr[u + 1]]] = True
        if 0 < labels.sum() < n_items:
            out["full_auc"][r] = roc_auc_score(labels, scores)
        cand = ~seen
        y, s = labels[cand], scores[cand]
        n_pos = int(y.sum())
        if n_pos == 0 or n_pos == y.size:
            continue
        out["auc"][r] = roc_auc_score(y, s)
        order = np.argsort(-s, kind="stable")  # ties by item id ascending
        hits = y[order]
        top = hits[:k]
        out["precision@10"][r] = top.sum() / k
        out["recall@10"][r] = top.sum() / n_pos
        out["ndcg@10"][r] = (top * discounts[:top.size]).sum() / discounts[:min(k, n_pos)].sum()
        cum = np.cumsum(top)
        out["map@10"][r] = (top * cum / np.arange(1, top.size + 1)).sum() / min(k, n_pos)
        out["mrr"][r] = 1.0 / (np.argmax(hits) + 1)
    return out


def compile_timing():
    """First call with an empty Numba cache, then with the cache, each in a fresh process."""
    return cold_and_cached(COMPILE_SNIPPET % (METRICS,))


# ------------------------------------------------------------------ report


def row_summary(result):
    ours = result["bpr_numba"]
    text = (f"{result['name']}: bpr_numba {ours['users_per_s']:,.0f} users/s "
            f"(median {ours['median_s']:.3f} s for {result['users_evaluated']:,} users)")
    if result["baseline"]:
        text += (f"; baseline {result['baseline']['users_per_s']:,.1f} users/s; "
                 f"ratio {result['speedup']:.1f}x")
    return text


def markdown(record):
    cells = []
    for r in record["datasets"]:
        ours = r["bpr_numba"]
        if r["baseline"]:
            base = f"{r['baseline']['users_per_s']:,.1f} ({r['baseline']['users_sampled']})"
            ratio = f"{r['speedup']:.1f}x"
            diff = f"{max(r['baseline']['max_abs_diff_vs_bpr_numba'].values()):.1e}"
        else:
            base, ratio, diff = "scikit-learn missing", "-", "-"
        cells.append((r["name"], f"{r['users_evaluated']:,}",
                      f"{ours['users_per_s']:,.0f} ({ours['median_s']:.3f})", base, ratio, diff))
    lines = table(("data", "users evaluated", "bpr_numba users/s (median s)",
                   "baseline users/s (sample)", "ratio", "max abs diff"), cells)
    if "compile" in record:
        c = record["compile"]
        lines += [""] + table(
            ("kernel load", "first evaluate call (s)", "process wall (s)"),
            [(name, f"{c[key]['first_call_s']:.2f}", f"{c[key]['process_wall_s']:.2f}")
             for key, name in (("cold", "compile (empty cache)"), ("cached", "cached"))])
    env = record["environment"]
    lines += ["", f"{env['cpu']}, {env['cores']} cores, Numba {env['numba']}, NumPy {env['numpy']}, "
              f"scikit-learn {env['sklearn']}, OPENBLAS_THREAD_TIMEOUT={env['OPENBLAS_THREAD_TIMEOUT']}, "
              f"load average {env['load_average_start'][0]:.2f} at start, "
              f"{record['load_average_end'][0]:.2f} at end"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
