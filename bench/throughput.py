"""Training throughput: positive samples per second of one epoch, with loss and held-out AUC.

Uses the public API only. Data: ``make_synthetic(n_users, n_items,
n_interactions, random_state=0)`` with ``n_users = n_interactions //
--per-user`` and ``--items`` items (10M interactions: 200,000 x 50,000),
split by ``holdout_split(X, 0.2, random_state=0)``; training runs on the
train part and samples/s = ``train.nnz / seconds``.

For each configuration ``BPR(factors=f, optimizer=opt, negative_candidates=k,
epochs=1, num_threads=t, random_state=0)``:

* warm-up: ``model.fit(train)`` (the first one in the process also loads or
  compiles the kernel: reported as "first call seconds");
* timed: ``model.fit_partial(train, epochs=1)`` ``--repeats`` times
  (``time.perf_counter``), median and min; the epoch's own ``seconds`` from
  ``history_`` is kept too (it excludes ``fit_partial``'s input check, which
  copies the CSR). One epoch per call: small epochs, which ``fit`` trains
  several to a kernel call, are timed here with each call's hand-off to the
  threads;
* quality: mean loss of the last epoch (``history_[-1]["loss"]``) and
  ``auc_score(model, test, train)`` after the 1 + repeats epochs (on a seeded
  subsample of ``--auc-users`` test users; 0 = all). Each data set also gets
  the AUC of ``bpr_numba.baselines.Popularity`` fitted on its train part,
  scored the same way on the same users (the floor a model should beat).

Parts (``--parts``):

``compile``  first ``fit`` in a fresh process with an empty ``NUMBA_CACHE_DIR``
             (compilation), then again with the now warm cache (loading).
``sweep``    factors x optimizers x negative candidates x threads on the
             ``--sweep-size`` data. "neg. cand." is ``negative_candidates``: the
             library default 3 scores 3 drawn negatives per positive and trains
             on the highest scoring one; 1 is plain BPR.
             There is one (parallel) build of the kernel (NOTES.md: compile each
             kernel once); ``--threads 1`` is its serial figure.
``sizes``    ``--sizes`` interactions at factors 64, sgd, 3 candidates, the most
             threads of ``--threads``: seconds and ns per sample (cost should grow
             linearly; the log-log slope of seconds vs samples is printed).
``memory``   a plain ``fit`` (1 epoch) on the full ``--memory-size`` matrix in a
             fresh process per (optimizer, factors): peak RSS growth from just
             before the data is loaded to the end of ``fit``, against the bytes of
             CSR + factors + optimiser state (``model._opt_state``); target <= 1.5x.
             The peak is reset through /proc/self/clear_refs where Linux allows it
             (VmHWM), else ``resource.getrusage(...).ru_maxrss`` deltas are used.

Writes one JSON file (default ``bench/results/throughput-<timestamp>.json``)
and prints markdown tables. The full default run takes tens of minutes on 2
cores; ``--quick`` runs small sizes in about a minute (smoke test: its figures
mean little).

Usage::

    python bench/throughput.py --quick
    python bench/throughput.py                              # everything, defaults
    python bench/throughput.py --parts sweep --sweep-size 1M --optimizers sgd adam
    python bench/throughput.py --parts sizes memory --sizes 1M 10M 30M
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import (add_output_argument, cold_and_cached, environment, finish, make_parser,
                     options, python_env, rate, result_path, run_json, table)
from _workers import holdout_split

PARTS = ("compile", "sweep", "sizes", "memory")
SEED = 0
TEST_FRACTION = 0.2

COMPILE_SNIPPET = r"""
import json, time
t0 = time.perf_counter()
from bpr_numba import BPR, make_synthetic
t1 = time.perf_counter()
X = make_synthetic(300, 200, 3000, random_state=0)
out = {"import_s": t1 - t0}
for label in ("first_fit_s", "second_fit_s"):
    t = time.perf_counter()
    BPR(factors=16, optimizer=%(opt)r, epochs=1, num_threads=%(threads)d,
        random_state=0).fit(X, show_progress=False)
    out[label] = time.perf_counter() - t
print(json.dumps(out))
"""

MEMORY_SNIPPET = r"""
import json, os, sys, time
import numpy as np, scipy.sparse as sp
from bpr_numba import BPR, make_synthetic
from _common import maxrss_bytes as maxrss, proc_status as status, reset_peak  # bench/ on PYTHONPATH

data_dir, opt, factors, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def params():
    return dict(factors=factors, optimizer=opt, epochs=1, num_threads=threads, random_state=0)

# Load (or compile) the kernel and start the thread pool on tiny data first.
BPR(**params()).fit(make_synthetic(60, 40, 600, random_state=0), show_progress=False)

out = {"clear_refs": reset_peak()}
before = status()
out["rss_before_load"] = before["VmRSS"]
out["maxrss_before_load"] = maxrss()
arrays = {name: np.load(os.path.join(data_dir, name + ".npy"))
          for name in ("data", "indices", "indptr", "shape")}
X = sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]),
                  shape=tuple(int(s) for s in arrays["shape"]), copy=False)
del arrays
after_load = status()
out["rss_after_load"] = after_load["VmRSS"]
out["hwm_load"] = after_load["VmHWM"]
out["csr_bytes"] = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
reset_peak()
t = time.perf_counter()
model = BPR(**params()).fit(X, show_progress=False)
out["fit_s"] = time.perf_counter() - t
end = status()
out["rss_end"] = end["VmRSS"]
out["hwm_fit"] = end["VmHWM"]
out["maxrss_end"] = maxrss()
out["user_factors_bytes"] = model.user_factors.nbytes
out["item_factors_bytes"] = model.item_factors.nbytes
out["opt_state_bytes"] = int(sum(a.nbytes for a in model._opt_state.arrays().values()))
out["opt_state_arrays"] = sorted(model._opt_state.arrays())
print(json.dumps(out))
"""


# ------------------------------------------------------------------ arguments


def size_arg(text):
    """Parse 1M, 10M, 2.5M, 500k, 30000000 into an int."""
    t = text.strip().lower().replace("_", "")
    scale = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}.get(t[-1:], 1)
    if scale != 1:
        t = t[:-1]
    try:
        value = int(round(float(t) * scale))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 1M, 500k, 30000000)")
    if value < 1:
        raise argparse.ArgumentTypeError(f"size must be >= 1: {text!r}")
    return value


def parse_args(argv=None):
    parser = make_parser(__doc__)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="what to run (default: all)")
    parser.add_argument("--sizes", nargs="+", type=size_arg, default=None,
                        help="interactions of the size sweep (default 1M 10M 30M)")
    parser.add_argument("--sweep-size", type=size_arg, default=None,
                        help="interactions of the factors/optimizers/threads sweep (default 10M)")
    parser.add_argument("--memory-size", type=size_arg, default=None,
                        help="interactions of the peak-memory fits (default 10M)")
    parser.add_argument("--items", type=int, default=None, help="items (default 50000)")
    parser.add_argument("--per-user", type=int, default=None,
                        help="interactions per user: n_users = size // per_user (default 50)")
    parser.add_argument("--factors", nargs="+", type=int, default=[32, 64, 128])
    parser.add_argument("--optimizers", nargs="+", choices=("sgd", "adagrad", "adam"),
                        default=["sgd", "adagrad", "adam"])
    parser.add_argument("--candidates", nargs="+", type=int, default=[1, 3],
                        help="negative_candidates values (default 1 3; the library default is 3)")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2],
                        help="num_threads values (0 = all cores; default 1 2)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed fit_partial epochs after the warm-up (default 5, >= 3)")
    parser.add_argument("--auc-users", type=int, default=None,
                        help="test users in the AUC subsample, 0 = all (default 20000)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: sizes 20k 50k 100k, sweep 50k, memory 200k, 2000 items, "
                             "20 per user, 3 repeats")
    add_output_argument(parser, "throughput", "--out")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = dict(sizes=[20_000, 50_000, 100_000] if quick else [1_000_000, 10_000_000, 30_000_000],
                    sweep_size=50_000 if quick else 10_000_000,
                    memory_size=200_000 if quick else 10_000_000,
                    items=2_000 if quick else 50_000, per_user=20 if quick else 50,
                    repeats=3 if quick else 5, auc_users=0 if quick else 20_000)
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.repeats < 3:
        parser.error("--repeats must be >= 3 (median and min of at least 3 timed epochs)")
    if any(k < 1 for k in args.candidates) or any(f < 1 for f in args.factors):
        parser.error("--candidates and --factors must be >= 1")
    if any(t < 0 for t in args.threads):
        parser.error("--threads must be >= 0")
    args.output = result_path("throughput", args.output)
    return args


# ------------------------------------------------------------------ data


class Datasets:
    """Synthetic matrices and their holdout splits, generated once per size."""

    def __init__(self, n_items, per_user):
        self.n_items = n_items
        self.per_user = per_user
        self._cache = {}

    def shape(self, n_interactions):
        n_users = max(1, n_interactions // self.per_user)
        if n_interactions > n_users * self.n_items:
            raise SystemExit(f"{n_interactions} interactions do not fit {n_users} x {self.n_items}")
        return n_users, self.n_items

    def get(self, n_interactions):
        if n_interactions not in self._cache:
            from bpr_numba import make_synthetic

            n_users, n_items = self.shape(n_interactions)
            t = time.perf_counter()
            X = make_synthetic(n_users, n_items, n_interactions, random_state=SEED)
            gen_s = time.perf_counter() - t
            train, test = holdout_split(X, TEST_FRACTION, random_state=SEED)
            self._cache[n_interactions] = {"X": X, "train": train, "test": test,
                                           "generate_s": gen_s}
            print(f"data: {n_interactions:,} interactions, {n_users:,} x {n_items:,} "
                  f"(generated in {gen_s:.1f} s), train {train.nnz:,}, test {test.nnz:,}",
                  flush=True)
        return self._cache[n_interactions]

    def popularity_auc(self, n_interactions, auc_users):
        """AUC of ``bpr_numba.baselines.Popularity`` fitted on the train part (cached).

        Scored like the models (``auc_score(model, test, train)`` on the same
        seeded ``auc_subsample``): the floor a trained model should beat.
        """
        d = self._cache[n_interactions]
        if "popularity_auc" not in d:
            from bpr_numba.baselines import Popularity
            from bpr_numba.metrics import auc_score

            test_sub, n_auc = auc_subsample(d["test"], auc_users)
            model = Popularity().fit(d["train"])
            d["popularity_auc"] = float(auc_score(model, test_sub, d["train"]))
            d["popularity_auc_users"] = n_auc
            print(f"data: {n_interactions:,} interactions, Popularity baseline AUC "
                  f"{d['popularity_auc']:.4f}", flush=True)
        return d["popularity_auc"]

    def drop(self, n_interactions):
        self._cache.pop(n_interactions, None)

    def describe(self, n_interactions):
        d = self._cache[n_interactions]
        out = {"n_interactions": n_interactions, "shape": list(d["X"].shape),
                "train_nnz": int(d["train"].nnz), "test_nnz": int(d["test"].nnz),
                "seed": SEED, "test_fraction": TEST_FRACTION,
                "generator": "make_synthetic(n_users, n_items, n_interactions, random_state=0); "
                             "holdout_split(X, 0.2, random_state=0)",
                "generate_s": d["generate_s"]}
        if "popularity_auc" in d:
            out["popularity_auc"] = d["popularity_auc"]
            out["popularity_auc_users"] = d["popularity_auc_users"]
        return out


def auc_subsample(test, n_users, seed=SEED):
    """``test`` restricted to a seeded sample of ``n_users`` users with test positives (0 = all)."""
    import numpy as np
    import scipy.sparse as sp

    have = np.flatnonzero(np.diff(test.indptr) > 0)
    if n_users <= 0 or n_users >= have.size:
        return test, int(have.size)
    keep = np.zeros(test.shape[0], dtype=bool)
    keep[np.random.default_rng(seed).choice(have, size=n_users, replace=False)] = True
    return sp.csr_matrix(sp.diags(keep.astype(np.float32)) @ test), n_users


# ------------------------------------------------------------------ measurements


FIRST_CALL = {}


def run_config(data, factors, optimizer, candidates, threads, repeats, auc_users):
    """Warm-up fit, timed fit_partial epochs, loss and AUC for one configuration."""
    from bpr_numba import BPR
    from bpr_numba.metrics import auc_score

    train, test = data["train"], data["test"]
    model = BPR(factors=factors, optimizer=optimizer, negative_candidates=candidates, epochs=1,
                num_threads=threads, random_state=SEED)
    t = time.perf_counter()
    model.fit(train, show_progress=False)
    warmup_s = time.perf_counter() - t
    if "seconds" not in FIRST_CALL:
        FIRST_CALL.update(seconds=warmup_s, config=[factors, optimizer, candidates, threads],
                          train_nnz=int(train.nnz))
    walls, epochs = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        model.fit_partial(train, epochs=1)
        walls.append(time.perf_counter() - t)
        epochs.append(model.history_[-1]["seconds"])
    test_sub, n_auc = auc_subsample(test, auc_users)
    t = time.perf_counter()
    auc = float(auc_score(model, test_sub, train))
    auc_s = time.perf_counter() - t
    median, best = statistics.median(walls), min(walls)
    return {
        "factors": factors, "optimizer": optimizer, "negative_candidates": candidates,
        "threads": threads, "train_nnz": int(train.nnz), "warmup_fit_s": warmup_s,
        "fit_partial_s": walls, "epoch_s_history": epochs,
        "median_s": median, "min_s": best,
        "samples_per_s": train.nnz / median, "samples_per_s_best": train.nnz / best,
        "ns_per_sample": 1e9 * median / train.nnz,
        "kernel_share": statistics.median(epochs) / median,
        "loss": float(model.history_[-1]["loss"]), "skipped": int(model.history_[-1]["skipped"]),
        "epochs_done": int(model.n_epochs_done_), "auc": auc, "auc_users": n_auc, "auc_s": auc_s,
    }


def compile_timing(optimizer, threads):
    """First fit with an empty Numba cache, then with the warm cache, in fresh processes."""
    snippet = COMPILE_SNIPPET % {"opt": optimizer, "threads": threads}
    result = {"optimizer": optimizer, "threads": threads}
    result.update(cold_and_cached(snippet))
    result["compile_s"] = result["cold"]["first_fit_s"] - result["cached"]["first_fit_s"]
    return result


def memory_run(optimizer, factors, threads, workdir):
    """Peak RSS growth of a plain fit in a fresh process (data loaded from .npy files)."""
    m, _ = run_json([sys.executable, "-c", MEMORY_SNIPPET, str(workdir), optimizer,
                     str(factors), str(threads)], env=python_env())
    m.update(optimizer=optimizer, factors=factors, threads=threads)
    if m["clear_refs"]:
        m["method"] = "VmHWM reset through /proc/self/clear_refs"
        peak = max(m["hwm_load"], m["hwm_fit"])
        m["fit_only_delta_bytes"] = m["hwm_fit"] - m["rss_after_load"]
    else:
        m["method"] = "ru_maxrss delta"
        peak = m["maxrss_end"]
        m["fit_only_delta_bytes"] = None
    m["peak_delta_bytes"] = peak - m["rss_before_load"]
    m["model_bytes"] = m["user_factors_bytes"] + m["item_factors_bytes"] + m["opt_state_bytes"]
    m["expected_bytes"] = m["model_bytes"] + m["csr_bytes"]
    m["ratio"] = m["peak_delta_bytes"] / m["expected_bytes"]
    return m


def save_csr(X, workdir):
    import numpy as np

    for name in ("data", "indices", "indptr"):
        np.save(workdir / f"{name}.npy", getattr(X, name))
    np.save(workdir / "shape.npy", np.asarray(X.shape, dtype=np.int64))


# ------------------------------------------------------------------ report


def loglog_slope(rows):
    """Least-squares slope of log(seconds) against log(samples)."""
    xs = [math.log(r["train_nnz"]) for r in rows]
    ys = [math.log(r["median_s"]) for r in rows]
    if len(xs) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else None


def markdown(record):
    lines = []
    env = record["environment"]
    if "compile" in record:
        c = record["compile"]
        lines += ["### Kernel compilation (fresh processes, tiny data)", ""]
        lines += table(("Numba cache", "first fit (s)", "second fit (s)", "import (s)",
                        "process wall (s)"),
                       [(name, f"{c[label]['first_fit_s']:.2f}", f"{c[label]['second_fit_s']:.3f}",
                         f"{c[label]['import_s']:.2f}", f"{c[label]['process_wall_s']:.2f}")
                        for label, name in (("cold", "empty (compiles)"),
                                            ("cached", "warm (loads)"))])
        lines += ["", f"Compile cost ≈ {c['compile_s']:.1f} s ({c['optimizer']}, "
                  f"{c['threads']} threads; one compiled kernel serves every optimizer)."]
    if record.get("first_call"):
        fc = record["first_call"]
        lines += ["", f"First call seconds in this process (warm-up fit of factors/optimizer/"
                  f"candidates/threads = {fc['config']}, {fc['train_nnz']:,} samples, includes the "
                  f"kernel load or compile and one epoch): {fc['seconds']:.2f} s."]
    def row(r):
        return (r["factors"], r["optimizer"], r["negative_candidates"], r["threads"],
                rate(r["samples_per_s"]), rate(r["samples_per_s_best"]), f"{r['median_s']:.3f}",
                f"{r['min_s']:.3f}", f"{r['ns_per_sample']:.0f}", f"{r['kernel_share']:.0%}",
                f"{r['loss']:.4f}", f"{r['auc']:.4f}")

    if record.get("sweep"):
        s = record["sweep"]
        d = s["data"]
        lines += ["", f"### Sweep: {d['n_interactions']:,} interactions ({d['shape'][0]:,} x "
                  f"{d['shape'][1]:,}), {d['train_nnz']:,} train positives, "
                  f"{s['repeats']} timed epochs", ""]
        lines += table(("factors", "optimizer", "neg. cand.", "threads", "samples/s (median)",
                        "samples/s (best)", "s/epoch median", "s/epoch min", "ns/sample",
                        "kernel share", "loss", "AUC"), [row(r) for r in s["rows"]],
                       "rlrrrrrrrrrr")
        if d.get("popularity_auc") is not None:
            lines += ["", f"Popularity baseline on this data (`bpr_numba.baselines.Popularity`, "
                      f"same AUC and test users): AUC {d['popularity_auc']:.4f}."]
    if record.get("sizes"):
        s = record["sizes"]
        lines += ["", f"### Size sweep: factors 64, sgd, 3 negative candidates, "
                  f"{s['threads']} threads", ""]
        cells = []
        for r in s["rows"]:
            d = r["data"]
            pop = d.get("popularity_auc")
            cells.append((f"{d['n_interactions']:,}", f"{d['shape'][0]:,} x {d['shape'][1]:,}",
                          f"{r['train_nnz']:,}", f"{r['median_s']:.3f}", f"{r['min_s']:.3f}",
                          rate(r["samples_per_s"]), f"{r['ns_per_sample']:.0f}",
                          f"{r['loss']:.4f}", f"{r['auc']:.4f}",
                          "-" if pop is None else format(pop, ".4f")))
        lines += table(("interactions", "users x items", "train positives", "s/epoch median",
                        "s/epoch min", "samples/s", "ns/sample", "loss", "AUC", "Popularity AUC"),
                       cells, "r" * 10)
        if s.get("loglog_slope") is not None:
            lines += ["", f"log-log slope of seconds vs samples: {s['loglog_slope']:.2f} "
                      "(1.00 = linear)."]
    if record.get("memory"):
        m = record["memory"]
        d = m["data"]
        mb = 1 / 2**20
        lines += ["", f"### Peak memory of a plain fit (1 epoch): {d['n_interactions']:,} "
                  f"interactions ({d['shape'][0]:,} x {d['shape'][1]:,}), fresh process each", ""]
        cells = []
        for r in m["rows"]:
            fit_only = ("-" if r["fit_only_delta_bytes"] is None
                        else f"{r['fit_only_delta_bytes'] * mb:.1f}")
            cells.append((r["optimizer"], r["factors"], f"{r['csr_bytes'] * mb:.1f}",
                          f"{(r['user_factors_bytes'] + r['item_factors_bytes']) * mb:.1f}",
                          f"{r['opt_state_bytes'] * mb:.1f}", f"{r['expected_bytes'] * mb:.1f}",
                          f"{r['peak_delta_bytes'] * mb:.1f}", f"{r['ratio']:.2f}", fit_only))
        lines += table(("optimizer", "factors", "CSR MiB", "factors MiB", "optimizer state MiB",
                        "sum MiB", "peak RSS growth MiB", "ratio (target <= 1.5)",
                        "growth during fit MiB"), cells)
        if m["rows"]:
            lines += ["", f"Method: {m['rows'][0]['method']}; growth is measured from just before "
                      "the CSR is loaded (kernel already loaded, thread pool started)."]
    lines += ["", f"{env['cpu']}, {env['cores']} cores ({env['numba_threads']} Numba threads), "
              f"Python {env['python']}, NumPy {env['numpy']}, Numba {env['numba']}, commit "
              f"{env['git_commit'][:10]}{' (dirty)' if env['git_dirty_tracked_files'] else ''}, "
              f"load average {env['load_average_start'][0]:.2f} at start, "
              f"{record['load_average_end'][0]:.2f} at end."]
    return "\n".join(lines)


# ------------------------------------------------------------------ main


def main(argv=None):
    args = parse_args(argv)
    wall_start = time.perf_counter()
    import numba  # noqa: F401 - environment() then reports numba_threads

    env = dict(environment(), NUMBA_CACHE_DIR=os.environ.get("NUMBA_CACHE_DIR"))
    record = {"argv": sys.argv[1:], "quick": args.quick, "environment": env,
              "options": options(args)}
    max_threads = max(args.threads)
    data = Datasets(args.items, args.per_user)

    if "compile" in args.parts:
        print("compile: fresh processes with an empty, then warm NUMBA_CACHE_DIR ...", flush=True)
        record["compile"] = compile_timing(args.optimizers[0], max_threads)
        c = record["compile"]
        print(f"compile: first fit {c['cold']['first_fit_s']:.2f} s (empty cache), "
              f"{c['cached']['first_fit_s']:.2f} s (warm cache)", flush=True)

    if "sweep" in args.parts:
        d = data.get(args.sweep_size)
        data.popularity_auc(args.sweep_size, args.auc_users)
        rows = []
        for factors in args.factors:
            for optimizer in args.optimizers:
                for candidates in args.candidates:
                    for threads in args.threads:
                        r = run_config(d, factors, optimizer, candidates, threads, args.repeats,
                                       args.auc_users)
                        rows.append(r)
                        print(f"sweep f={factors} {optimizer} cand={candidates} t={threads}: "
                              f"{rate(r['samples_per_s'])} samples/s, "
                              f"{r['median_s']:.3f} s/epoch, loss {r['loss']:.4f}, "
                              f"AUC {r['auc']:.4f}", flush=True)
        record["sweep"] = {"data": data.describe(args.sweep_size), "repeats": args.repeats,
                           "rows": rows}

    if "sizes" in args.parts:
        rows = []
        for size in args.sizes:
            for other in list(data._cache):
                if other not in (size, args.memory_size):
                    data.drop(other)
            d = data.get(size)
            data.popularity_auc(size, args.auc_users)
            r = run_config(d, 64, "sgd", 3, max_threads, args.repeats, args.auc_users)
            r["data"] = data.describe(size)
            rows.append(r)
            print(f"sizes {size:,}: {r['median_s']:.3f} s/epoch, {r['ns_per_sample']:.0f} ns/sample, "
                  f"AUC {r['auc']:.4f} (Popularity {r['data']['popularity_auc']:.4f})", flush=True)
        record["sizes"] = {"threads": max_threads, "repeats": args.repeats, "rows": rows,
                           "loglog_slope": loglog_slope(rows)}

    if record.get("first_call") is None and FIRST_CALL:
        record["first_call"] = dict(FIRST_CALL)

    if "memory" in args.parts:
        for other in list(data._cache):
            if other != args.memory_size:
                data.drop(other)
        d = data.get(args.memory_size)
        rows = []
        workdir = Path(tempfile.mkdtemp(prefix="bpr-bench-csr-"))
        try:
            save_csr(d["X"], workdir)
            memory_data = data.describe(args.memory_size)
            memory_data["nnz"] = int(d["X"].nnz)  # the fit uses the whole X, not the split
            data.drop(args.memory_size)  # the parent's copy is not needed any more
            for optimizer in args.optimizers:
                for factors in args.factors:
                    m = memory_run(optimizer, factors, max_threads, workdir)
                    rows.append(m)
                    print(f"memory {optimizer} f={factors}: peak growth "
                          f"{m['peak_delta_bytes'] / 2**20:.1f} MiB for "
                          f"{m['expected_bytes'] / 2**20:.1f} MiB of arrays: ratio {m['ratio']:.2f}",
                          flush=True)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        memory_data["note"] = "plain fit on the whole generated matrix (no holdout split)"
        record["memory"] = {"data": memory_data, "rows": rows}

    finish(record, "throughput", markdown, args.output, wall_start)


if __name__ == "__main__":
    main()
