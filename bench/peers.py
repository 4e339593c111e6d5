"""bpr-numba against implicit, LightFM and cornac: same data, factors, threads and epochs.

The peers live in their own virtualenv (../shared/PEERS.md), so this script is a
driver that needs only the standard library and runs under either interpreter.
It spawns one worker subprocess per (library, config, threads) with the right
interpreter (``--peers-python`` for implicit/LightFM/cornac, ``--ours-python``
for bpr-numba) and passes the data through .npz files in a temporary folder,
so every library trains on the very same CSR matrices.

Steps per data set
------------------
1. ``prepare`` (ours-python): build the train/test CSR matrices, save them with
   ``scipy.sparse.save_npz`` (float32 ones, sorted int32 indices).

   * ``ml-100k``: ``load_movielens("100k", "ua", min_rating=4)`` (944 x 1683,
     49,906 train and 5,469 test positives; row 0 and column 0 are empty).
   * ``synthetic``: ``make_synthetic(200_000, 50_000, 12_500_000,
     random_state=0)`` then ``holdout_split(X, 0.2, random_state=0)``, so the
     *train* matrix holds exactly 10,000,000 interactions (the throughput
     target) and test 2,500,000. (bench/throughput.py's "10M" is the total
     before the split, 8M train; the figures are not interchangeable.)

2. ``train`` (one worker per library, config and thread count): load the data,
   warm up on a tiny matrix, then train ``E`` epochs with ``random_state=0``
   and save the final user/item factors. Epoch seconds are, per library:

   * bpr-numba: ``model.fit(train)`` with ``epochs=E``; epoch seconds are
     ``history_[e]["seconds"]`` (the kernel calls plus the per-epoch finiteness
     check). The warm-up is two 1-epoch fits on a 300 x 200 matrix: the first
     one loads the cached kernel or compiles it ("first fit s"), the second is
     warm; "compile s" = first - second.
   * implicit (``implicit.cpu.bpr.BayesianPersonalizedRanking``): one
     ``fit(train, callback=...)`` with ``iterations=E``; epoch seconds are the
     ``elapsed`` the callback receives (``time.time()`` around implicit's
     ``bpr_update`` only). Repeated ``fit(iterations=1)`` would continue the
     factors but re-seed the per-thread RNGs from ``random_state`` each call
     (same samples every epoch), so it is not used. Warm-up: a 2-epoch fit on
     a tiny matrix.
   * LightFM: ``fit_partial(train_coo, epochs=1, num_threads=t)`` E times
     (COO is LightFM's input format; converted once, untimed). Epoch seconds
     time LightFM's ``_run_epoch`` (its shuffle, positives lookup and kernel);
     "fit wall" adds fit_partial's per-call input checks and feature matrices.
   * cornac (``cornac.models.BPR``, ``seed=0``, which forces one thread, so it
     runs only at threads = 1): one ``fit`` with ``max_iter=E``; epoch seconds
     time each ``_fit_sgd`` call. Its ``Dataset`` is built directly from the
     CSR with identity id maps (untimed), so rows and columns stay aligned.

   samples/s = ``train.nnz * E / sum(epoch seconds)``; "fit wall s" is the
   whole training call(s) per epoch. With ``--repeats R`` the training is run
   R times (fresh model, same seed) and the median of the R totals is
   reported (min and every epoch's seconds are in the JSON).

3. ``evaluate`` (ours-python): the same functions for every library, on the
   exported factors as a float32 ``(user_factors, item_factors)`` pair:
   ``bpr_numba.metrics.full_auc(pair, test)`` (the notebook's metric: train
   positives count as negatives) and ``auc_score(pair, test, train)`` (train
   positives removed). Layouts exported: bpr-numba and implicit already hold
   the item bias as the last item column against a constant 1 user column
   (``factors + 1`` columns); LightFM gives ``U = [user_emb, 1]``,
   ``V = [item_emb, item_bias]`` (the user bias is rank-irrelevant); cornac
   ``U = [u_factors, 1]``, ``V = [i_factors, i_biases]``. With more users with a
   test positive than ``--auc-users``, a seeded subsample of them is scored
   (the same users for every library).

What each library calls an epoch and a negative (they differ):

* bpr-numba: one pass over all positives in a cache-friendly shuffled order
  (blocks of users), a fresh negative each; default ``negatives="unseen"``
  (uniform among the user's unseen items, never skipped);
  ``negative_candidates=k`` trains on the highest scoring of k negatives.
* implicit: ``nnz`` draws *with replacement* of a random positive; the negative
  is the item of another random positive (popularity-weighted); when it is a
  positive of the user the sample is skipped (no update; "skipped" share).
  Plain SGD, ``regularization`` on every touched row.
* LightFM: one pass over the positives in shuffled order; the negative is the
  item of a random interaction (popularity-weighted), redrawn until it is not
  a positive. Per-parameter Adagrad (``learning_schedule="adagrad"``), no L2
  by default (``user_alpha = item_alpha = 0``). "warp" samples up to
  ``max_sampled=10`` negatives per positive until one violates the margin.
* cornac: like implicit, but the negative is uniform over all items.

Learning rates are each library's own defaults (bpr-numba: the optimiser's,
implicit 0.01, LightFM 0.05), except cornac: its default 0.001 is far too small
for 10 epochs, so it gets implicit's 0.01 / 0.01 (the same SGD update).
``--tune`` also trains ml-100k at ``--tune-multipliers`` times that learning
rate (at the smallest thread count) and reports each config at its best one
(chosen by ``--tune-metric`` on the test split itself: an optimistic figure);
runs that diverge (an exception, or non-finite factors) are listed, not scored.
The dataset header also gives a popularity baseline
(``bpr_numba.baselines.Popularity``: score = the item's train count): at 3
epochs several SGD models score about the same, i.e. they have mostly learnt
the item bias so far.

Writes ``bench/results/peers-<timestamp>.json`` (ignored by git) with the CPU
model, cores, interpreter and library versions, git commit, data shapes and
seeds, and prints markdown tables. The machine is shared: ``--quick`` is a
smoke test (ml-100k, 1 thread, 3 epochs; about 20 s); the full default
run (ml-100k and 10M synthetic, threads 1 and 2) takes much longer.

bench/quality.py drives the same workers for the quality tables (several
seeds, the Popularity baseline, every metric of ``bpr_numba.metrics``): the
job keys it adds (``seeds``, ``metrics``, ``preset``, ``split`` ...) are
optional, so this script's own runs are unchanged.

Usage::

    python bench/peers.py --quick
    python bench/peers.py                                    # ml-100k + synthetic, threads 1 2
    python bench/peers.py --datasets ml-100k --tune
    python bench/peers.py --datasets synthetic --threads 1 2 --repeats 3
    python bench/peers.py --libraries bpr-numba implicit --ours-configs sgd defaults
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import cpu_model, git_state

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
RESULTS = HERE.parent / "results"
SEED = 0
TEST_FRACTION = 0.2
LIBRARIES = ("bpr-numba", "implicit", "lightfm", "cornac")
DATASETS = ("ml-100k", "synthetic")

# bpr-numba configurations: label -> BPR keyword arguments (besides factors,
# epochs, num_threads, random_state). learning_rate=None: the optimiser's own.
OURS_CONFIGS = {
    "sgd": ("sgd, 1 neg.", {"optimizer": "sgd", "negative_candidates": 1}),
    "adagrad": ("adagrad, 1 neg.", {"optimizer": "adagrad", "negative_candidates": 1}),
    "adam": ("adam, 1 neg.", {"optimizer": "adam", "negative_candidates": 1}),
    "defaults": ("defaults (adagrad, 3 neg.)", {}),
    "rowwise-adagrad": ("rowwise-adagrad, 1 neg.", {"optimizer": "rowwise-adagrad",
                                                    "negative_candidates": 1}),
    "rowwise-defaults": ("defaults with rowwise-adagrad (3 neg.)",
                         {"optimizer": "rowwise-adagrad"}),
}
PEER_CONFIGS = {
    "implicit": [("bpr", {"learning_rate": 0.01, "regularization": 0.01})],
    "lightfm": [("bpr", {"loss": "bpr", "learning_rate": 0.05}),
                ("warp", {"loss": "warp", "learning_rate": 0.05})],
    "cornac": [("bpr", {"learning_rate": 0.01, "lambda_reg": 0.01})],
}


# --------------------------------------------------------------------- driver
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="See the module docstring (top of bench/peers.py) for what is measured.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: ml-100k only, 1 thread, 3 epochs (figures mean little)")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS),
                        help="data sets to run")
    parser.add_argument("--libraries", nargs="+", choices=LIBRARIES, default=list(LIBRARIES),
                        help="libraries to run (cornac only at 1 thread)")
    parser.add_argument("--ours-configs", nargs="+", choices=list(OURS_CONFIGS),
                        default=list(OURS_CONFIGS), help="bpr-numba configurations to run")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2],
                        help="thread counts, the same for every library")
    parser.add_argument("--factors", type=int, default=64,
                        help="latent factors (every library also learns an item bias)")
    parser.add_argument("--epochs-ml100k", type=int, default=10, help="epochs on ml-100k")
    parser.add_argument("--epochs-synthetic", type=int, default=3, help="epochs on synthetic")
    parser.add_argument("--synthetic-shape", nargs=3, type=int,
                        default=[200_000, 50_000, 10_000_000],
                        metavar=("USERS", "ITEMS", "TRAIN_NNZ"),
                        help="synthetic users, items and *train* interactions (the total generated "
                             "is TRAIN_NNZ / 0.8; 20%% held out)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="train each row this many times (fresh model, same seed); "
                             "median reported")
    parser.add_argument("--auc-users", type=int, default=20_000,
                        help="score a seeded subsample of this many test users (0 = all)")
    parser.add_argument("--tune", action="store_true",
                        help="ml-100k only: also report each config at its best learning rate")
    parser.add_argument("--tune-multipliers", nargs="+", type=float,
                        default=[0.25, 0.5, 1, 2, 4, 8, 16],
                        help="--tune grid: multiples of each config's learning rate")
    parser.add_argument("--tune-metric", choices=("full_auc", "auc"), default="full_auc",
                        help="--tune: metric that picks the best learning rate")
    parser.add_argument("--peers-python", default="/work/peers-venv/bin/python",
                        help="interpreter with implicit, lightfm and cornac")
    parser.add_argument("--ours-python", default="/work/venv/bin/python",
                        help="interpreter with bpr_numba (also prepares data and scores AUC)")
    parser.add_argument("--workdir", default=None,
                        help="keep data and factors here (data is reused when present) "
                             "instead of a temporary folder")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per worker")
    parser.add_argument("--output", default=None,
                        help="JSON path (default bench/results/peers-<timestamp>.json)")
    parser.add_argument("--_worker", choices=("prepare", "train", "evaluate"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--_job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.datasets, args.threads, args.epochs_ml100k = ["ml-100k"], [1], 3
    if min(args.threads) < 1:
        parser.error(f"--threads must be >= 1; got {args.threads}.")
    return args


def log(message):
    print(message, file=sys.stderr, flush=True)


def worker_env():
    env = dict(os.environ)
    env.setdefault("BPR_NUMBA_DATA", str(REPO.parent / "shared" / "data"))
    return env


def run_worker(python, role, job, job_path, timeout):
    """Run ``python peers.py --_worker role`` on ``job``; return its JSON answer or an error."""
    job_path = Path(job_path)
    out_path = job_path.with_suffix(".out.json")
    job = dict(job, out=str(out_path))
    job_path.write_text(json.dumps(job, indent=1))
    start = time.perf_counter()
    try:
        proc = subprocess.run([python, str(HERE), "--_worker", role, "--_job", str(job_path)],
                              env=worker_env(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout} s"}
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not out_path.exists():
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        return {"error": f"exit code {proc.returncode}: {tail}"}
    answer = json.loads(out_path.read_text())
    answer["process_wall_s"] = wall
    return answer


def prepare_data(python, data_dir, request):
    """Build (or reuse) ``data_dir/train.npz`` and ``test.npz`` with the ``prepare`` worker.

    ``request`` holds ``dataset`` and the worker's other keys; the data in
    ``data_dir`` is reused when it was built from the same request. Returns
    the worker's description of the data.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    meta_path = data_dir / "meta.json"
    prepare = dict(request, data_dir=str(data_dir))
    name = prepare["dataset"]
    if meta_path.exists() and json.loads(meta_path.read_text()).get("request") == prepare:
        log(f"[{name}] reusing data in {data_dir}")
        return json.loads(meta_path.read_text())
    log(f"[{name}] preparing data ...")
    meta = run_worker(python, "prepare", prepare, data_dir / "prepare.json", None)
    if "error" in meta:
        raise SystemExit(f"preparing {name} failed: {meta['error']}")
    meta["request"] = prepare
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


def machine_info():
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
            "driver_python": sys.version.split()[0]}
    try:
        info["affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    info["git_commit"], info["git_dirty"] = git_state(REPO)
    return info


def jobs_for(args, threads):
    """(library, config label, params) rows run at this thread count."""
    rows = []
    if "bpr-numba" in args.libraries:
        for key in args.ours_configs:
            label, params = OURS_CONFIGS[key]
            rows.append(("bpr-numba", label, params))
    for library in ("implicit", "lightfm", "cornac"):
        if library not in args.libraries:
            continue
        if library == "cornac" and threads != 1:
            continue  # seed=0 forces cornac to one thread
        for label, params in PEER_CONFIGS[library]:
            rows.append((library, label, params))
    return rows


def main(argv=None):
    args = parse_args(argv)
    if args._worker:
        return worker_main(args._worker, json.loads(Path(args._job).read_text()))

    t_start = time.perf_counter()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_path = Path(args.output) if args.output else RESULTS / f"peers-{stamp}.json"
    tmp = None
    if args.workdir:
        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bpr-peers-")
        work = Path(tmp.name)
    report = {"machine": machine_info(), "args": {k: v for k, v in vars(args).items()
                                                  if not k.startswith("_")},
              "seed": SEED, "datasets": {}, "rows": [], "tuning": [], "versions": {}}
    pythons = {"bpr-numba": args.ours_python, "implicit": args.peers_python,
               "lightfm": args.peers_python, "cornac": args.peers_python}
    try:
        for dataset in args.datasets:
            epochs = args.epochs_ml100k if dataset == "ml-100k" else args.epochs_synthetic
            data_dir = work / dataset
            meta = prepare_data(args.ours_python, data_dir,
                                {"dataset": dataset, "synthetic_shape": args.synthetic_shape})
            report["datasets"][dataset] = {k: v for k, v in meta.items() if k != "request"}
            popularity = run_worker(args.ours_python, "evaluate",
                                    {"data_dir": str(data_dir), "auc_users": args.auc_users,
                                     "factors": [], "popularity": True},
                                    data_dir / "popularity.json", args.timeout)
            report["datasets"][dataset]["popularity_baseline"] = popularity.get("popularity")
            log(f"[{dataset}] train {meta['shape']} nnz {meta['train_nnz']:,}, "
                f"test nnz {meta['test_nnz']:,}")
            tune = args.tune and dataset == "ml-100k"
            for threads in args.threads:
                for library, label, params in jobs_for(args, threads):
                    tag = f"{dataset}-{library}-{label}-t{threads}"
                    safe = "".join(c if c.isalnum() or c in "-." else "_" for c in tag)
                    log(f"[{dataset}] {library} / {label} / {threads} thread(s) ...")
                    job = {"library": library, "params": params, "factors": args.factors,
                           "threads": threads, "epochs": epochs, "repeats": args.repeats,
                           "data_dir": str(data_dir), "factors_dir": str(work / "factors" / safe),
                           "lr_multipliers": (args.tune_multipliers
                                              if tune and threads == min(args.threads) else [])}
                    Path(job["factors_dir"]).mkdir(parents=True, exist_ok=True)
                    result = run_worker(pythons[library], "train", job, work / f"{safe}.json",
                                        args.timeout)
                    row = {"dataset": dataset, "library": library, "config": label,
                           "params": params, "threads": threads, "epochs": epochs,
                           "factors": args.factors}
                    if "error" in result:
                        log(f"    failed: {result['error']}")
                        row["error"] = result["error"]
                        report["rows"].append(row)
                        continue
                    report["versions"].setdefault(pythons[library], {}).update(result["versions"])
                    runs = result["runs"]
                    scored = run_worker(args.ours_python, "evaluate",
                                        {"data_dir": str(data_dir), "auc_users": args.auc_users,
                                         "factors": [r["factors_file"] for r in runs]},
                                        work / f"{safe}-eval.json", args.timeout)
                    if "error" in scored:
                        log(f"    evaluation failed: {scored['error']}")
                        scores = [{} for _ in runs]
                    else:
                        scores = scored["scores"]
                        row["auc_users_scored"] = scored["users_scored"]
                    for run, score in zip(runs, scores):
                        run.update(score)
                        if run["factors_file"]:
                            Path(run["factors_file"]).unlink(missing_ok=True)
                        del run["factors_file"]
                    main_runs = [r for r in runs if r["kind"] == "main"]
                    row.update(summarise(main_runs, meta["train_nnz"], epochs))
                    row.update({k: result[k] for k in ("warmup", "peak_rss_mb", "process_wall_s")
                                if k in result})
                    row["learning_rate"] = main_runs[0]["learning_rate"]
                    row["runs"] = main_runs
                    report["rows"].append(row)
                    log(f"    {row['seconds_per_epoch']:.3f} s/epoch, "
                        f"{row['samples_per_s'] / 1e6:.3f} M samples/s, "
                        f"full AUC {row.get('full_auc', float('nan')):.4f}, "
                        f"AUC {row.get('auc', float('nan')):.4f}")
                    tuned = [r for r in runs if r["kind"] == "tune"]
                    if tuned:
                        report["tuning"].append(tuning_record(row, tuned, args.tune_metric))
    finally:
        if tmp is not None:
            tmp.cleanup()
    add_ratios(report["rows"])
    report["total_seconds"] = time.perf_counter() - t_start
    print(render(report, args))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=1))
    log(f"wrote {out_path}")
    return 0


def summarise(runs, nnz, epochs):
    """Median/min over repeats of the per-run totals, plus the first run's AUCs."""
    totals = [sum(r["epoch_seconds"]) for r in runs]
    walls = [r["fit_wall_s"] for r in runs]
    all_epochs = [s for r in runs for s in r["epoch_seconds"]]
    total = statistics.median(totals)
    out = {"train_seconds": total, "train_seconds_min": min(totals),
           "seconds_per_epoch": total / epochs,
           "epoch_seconds_median": statistics.median(all_epochs),
           "epoch_seconds_min": min(all_epochs),
           "samples_per_s": nnz * epochs / total,
           "fit_wall_seconds_per_epoch": statistics.median(walls) / epochs}
    for key in ("full_auc", "auc", "skipped_share", "eval_error"):
        if key in runs[0]:
            out[key] = runs[0][key]
    return out


GRID_KEYS = ("learning_rate", "full_auc", "auc", "error", "eval_error")


def tuning_record(row, tuned, metric):
    grid = sorted(tuned, key=lambda r: r["learning_rate"])
    valid = [r for r in grid if r.get(metric) is not None]
    best = max(valid, key=lambda r: r[metric]) if valid else None
    return {"dataset": row["dataset"], "library": row["library"], "config": row["config"],
            "threads": row["threads"], "epochs": row["epochs"],
            "default_learning_rate": row["learning_rate"], "metric": metric,
            "best_learning_rate": best and best["learning_rate"],
            "full_auc": best and best.get("full_auc"), "auc": best and best.get("auc"),
            "grid": [{k: r.get(k) for k in GRID_KEYS} for r in grid]}


def add_ratios(rows):
    base = {(r["dataset"], r["threads"]): r["samples_per_s"] for r in rows
            if r["library"] == "implicit" and "samples_per_s" in r}
    for r in rows:
        ref = base.get((r["dataset"], r["threads"]))
        if ref and "samples_per_s" in r:
            r["ratio_vs_implicit"] = r["samples_per_s"] / ref


def fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def render(report, args):
    lines = []
    m = report["machine"]
    lines.append(f"Machine: {m['cpu']}, {m['cores']} cores; git {str(m.get('git_commit'))[:10]}"
                 f"{' (dirty)' if m.get('git_dirty') else ''}")
    for python, versions in report["versions"].items():
        lines.append(f"{python}: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    for dataset, meta in report["datasets"].items():
        lines.append("")
        lines.append(f"### {dataset}: {meta['description']}")
        lines.append(f"train {meta['shape'][0]:,} x {meta['shape'][1]:,}, {meta['train_nnz']:,} "
                     f"positives; test {meta['test_nnz']:,}; factors {args.factors} "
                     f"(+ item bias); AUC over {report_users(report, dataset)} test users")
        pop = meta.get("popularity_baseline") or {}
        lines.append(f"popularity baseline (score = train count): full AUC "
                     f"{fmt(pop.get('full_auc'), '.4f')}, "
                     f"AUC (train excl.) {fmt(pop.get('auc'), '.4f')}")
        lines.append("")
        lines.append("| library | config | threads | epochs | train s/epoch | samples/s | "
                     "vs implicit | full AUC | AUC (train excl.) | fit wall s/epoch | "
                     "first call s | skipped |")
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in report["rows"]:
            if r["dataset"] != dataset:
                continue
            config = f"{r['config']}, lr {r.get('learning_rate', '?')}"
            if "error" in r:
                lines.append(f"| {r['library']} | {config} | {r['threads']} | {r['epochs']} | "
                             f"error: {r['error'].splitlines()[-1][:60]} ||||||||")
                continue
            warm = r.get("warmup", {})
            first = warm.get("first_fit_s")
            lines.append(
                f"| {r['library']} | {config} | {r['threads']} | {r['epochs']} | "
                f"{r['seconds_per_epoch']:.3f} | {r['samples_per_s'] / 1e6:.3f} M | "
                f"{fmt(r.get('ratio_vs_implicit'), '.2f')} | {fmt(r.get('full_auc'), '.4f')} | "
                f"{fmt(r.get('auc'), '.4f')} | {r['fit_wall_seconds_per_epoch']:.3f} | "
                f"{fmt(first, '.2f')} | {fmt(r.get('skipped_share'), '.1%')} |")
    if report["tuning"]:
        lines.append("")
        metric = report["tuning"][0]["metric"]
        lines.append(f"### Best learning rate (grid x {args.tune_multipliers}, chosen by {metric} "
                     "on the test split)")
        lines.append("")
        lines.append("| data | library | config | threads | default lr | best lr | full AUC | "
                     "AUC (train excl.) | diverged/failed lrs |")
        lines.append("|---|---|---|---:|---:|---:|---:|---:|---|")
        for t in report["tuning"]:
            failed = ", ".join(format(g["learning_rate"], "g") for g in t["grid"]
                               if g.get("error") or g.get("full_auc") is None) or "-"
            lines.append(f"| {t['dataset']} | {t['library']} | {t['config']} | {t['threads']} | "
                         f"{fmt(t['default_learning_rate'], 'g')} | "
                         f"{fmt(t['best_learning_rate'], 'g')}{edge(t)} | "
                         f"{fmt(t['full_auc'], '.4f')} | {fmt(t['auc'], '.4f')} | "
                         f"{failed} |")
    lines.append("")
    lines.append("samples/s = train nnz x epochs / summed epoch seconds (see the docstring for "
                 "what each library's epoch timing covers); first call s: bpr-numba's first tiny "
                 "fit (kernel load or compile), the peers' tiny warm-up fit; skipped: share of "
                 "implicit's and cornac's nnz draws whose negative was a positive of the user "
                 "(no update, still counted in samples/s).")
    return "\n".join(lines)


def edge(tuning):
    """' (grid edge)' when the best learning rate is the smallest or largest one tried."""
    lrs = [g["learning_rate"] for g in tuning["grid"]]
    best = tuning["best_learning_rate"]
    return " (grid edge)" if best is not None and best in (min(lrs), max(lrs)) else ""


def report_users(report, dataset):
    users = {r.get("auc_users_scored") for r in report["rows"]
             if r["dataset"] == dataset and r.get("auc_users_scored")}
    return ", ".join(f"{u:,}" for u in sorted(users)) or "?"


# -------------------------------------------------------------------- workers
def worker_main(role, job):
    import resource

    answer = {"prepare": worker_prepare, "train": worker_train,
              "evaluate": worker_evaluate}[role](job)
    answer["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(job["out"]).write_text(json.dumps(answer))
    return 0


def load_data(data_dir, which=("train", "test")):
    import scipy.sparse as sp

    return [sp.load_npz(Path(data_dir) / f"{name}.npz").tocsr() for name in which]


def worker_prepare(job):
    """Build the data set with bpr_numba (ours-python) and save CSR train/test."""
    import numpy as np
    import scipy.sparse as sp

    start = time.perf_counter()
    if job["dataset"] == "ml-100k":
        from bpr_numba import load_movielens

        train, test = (m.tocsr() for m in load_movielens("100k", "ua", min_rating=4))
        description = "MovieLens 100k, split ua, ratings >= 4 (load_movielens)"
        generation = {"variant": "100k", "split": "ua", "min_rating": 4}
    else:
        # job["synthetic_shape"]: users, items and *train* interactions (total = train / 0.8),
        # or job["synthetic_total"]: users, items and the total generated (bench/quality.py).
        # job["split"]: "holdout" (datasets.holdout_split, default) or "random"
        # (split.random_split: per user, so every user with >= 3 positives is in test).
        from bpr_numba import make_synthetic

        if job.get("synthetic_total"):
            n_users, n_items, total = job["synthetic_total"]
        else:
            n_users, n_items, n_train = job["synthetic_shape"]
            total = int(round(n_train / (1 - TEST_FRACTION)))
        X = make_synthetic(n_users, n_items, total, random_state=SEED)
        split = job.get("split", "holdout")
        if split == "random":
            from bpr_numba.split import random_split

            train, test = (part.matrix for part in random_split(X, TEST_FRACTION,
                                                                random_state=SEED))
            how = f"split.random_split(X, {TEST_FRACTION}, random_state={SEED})"
        else:
            from bpr_numba.datasets import holdout_split

            train, test = holdout_split(X, TEST_FRACTION, random_state=SEED)
            how = f"holdout_split(X, {TEST_FRACTION}, random_state={SEED})"
        description = f"make_synthetic({n_users}, {n_items}, {total}, random_state={SEED}), {how}"
        generation = {"n_users": n_users, "n_items": n_items, "n_interactions": total,
                      "test_fraction": TEST_FRACTION, "seed": SEED, "split": split}
    for name, m in (("train", train), ("test", test)):
        m = sp.csr_matrix(m, dtype=np.float32)
        m.sort_indices()
        sp.save_npz(Path(job["data_dir"]) / f"{name}.npz", m, compressed=False)
    return {"description": description, "generation": generation, "shape": list(train.shape),
            "train_nnz": int(train.nnz), "test_nnz": int(test.nnz),
            "index_dtype": str(train.indices.dtype), "seconds": time.perf_counter() - start}


def tiny_matrix(n_users=300, n_items=200, density=0.05):
    """A small seeded 0/1 CSR for warm-ups (NumPy/SciPy only: runs in any venv)."""
    import numpy as np
    import scipy.sparse as sp

    m = sp.random(n_users, n_items, density=density, format="csr", dtype=np.float32,
                  random_state=np.random.RandomState(SEED))
    m.data[:] = 1.0
    m.indices = m.indices.astype(np.int32)
    m.indptr = m.indptr.astype(np.int32)
    m.sort_indices()
    return m


def worker_train(job):
    import numpy as np

    (train,) = load_data(job["data_dir"], ("train",))
    trainer = {"bpr-numba": OursTrainer, "implicit": ImplicitTrainer,
               "lightfm": LightFMTrainer, "cornac": CornacTrainer,
               "popularity": PopularityTrainer}[job["library"]](job)
    warmup = trainer.warmup()
    base_lr = trainer.default_lr()
    seeds = job.get("seeds")
    if seeds:  # bench/quality.py: one main run per seed, every run's factors kept
        plan = [("main", base_lr, seed) for seed in seeds]
    else:
        plan = [("main", base_lr, SEED)] * job.get("repeats", 1)
    plan += [("tune", base_lr * m, SEED) for m in job.get("lr_multipliers", [])]
    runs = []
    for index, (kind, lr, seed) in enumerate(plan):
        record = {"kind": kind, "learning_rate": lr, "seed": seed}
        trainer.seed = seed
        try:
            record.update(trainer.train(train, lr))
        except Exception as exc:  # a diverged tuning run must not lose the others
            if kind == "main":
                raise
            record.update({"error": f"{type(exc).__name__}: {exc}", "epoch_seconds": [],
                           "factors_file": None})
            runs.append(record)
            continue
        user_factors, item_factors = record.pop("factors")
        if kind == "main" and not seeds and any(r["kind"] == "main" for r in runs):
            record["factors_file"] = None  # repeats: same seed, AUC of the first run only
        else:
            path = Path(job["factors_dir"]) / f"run{index}.npz"
            np.savez(path, user_factors=np.ascontiguousarray(user_factors, dtype=np.float32),
                     item_factors=np.ascontiguousarray(item_factors, dtype=np.float32))
            record["factors_file"] = str(path)
        runs.append(record)
    return {"runs": runs, "warmup": warmup, "versions": trainer.versions()}


class OursTrainer:
    def __init__(self, job):
        self.job = job
        self.seed = SEED

    def model(self, lr, epochs, threads):
        from bpr_numba import BPR

        params = dict(self.job["params"])
        if params.pop("preset", None) == "keras":
            # BPR.keras_compatible(): its own factors (100), optimiser and learning rate.
            return BPR.keras_compatible(**params, epochs=epochs, num_threads=threads,
                                        random_state=self.seed,
                                        **({} if lr is None else {"learning_rate": lr}))
        return BPR(factors=self.job["factors"], **dict(params, learning_rate=lr),
                   epochs=epochs, num_threads=threads, random_state=self.seed)

    def default_lr(self):
        lr = self.job["params"].get("learning_rate")
        if lr is None and self.job["params"].get("preset") == "keras":
            from bpr_numba import BPR

            return BPR.keras_compatible().learning_rate
        if lr is None:
            from bpr_numba._optim import DEFAULT_LEARNING_RATES  # private; the bench's only

            lr = DEFAULT_LEARNING_RATES[self.job["params"].get("optimizer", "adagrad")]
        return lr

    def warmup(self):
        tiny = tiny_matrix()
        times = []
        for _ in range(2):
            start = time.perf_counter()
            self.model(None, 1, self.job["threads"]).fit(tiny, show_progress=False)
            times.append(time.perf_counter() - start)
        return {"first_fit_s": times[0], "second_fit_s": times[1],
                "compile_s": times[0] - times[1],
                "note": "first tiny fit loads the cached kernel or compiles it"}

    def train(self, train, lr):
        model = self.model(lr, self.job["epochs"], self.job["threads"])
        start = time.perf_counter()
        model.fit(train, show_progress=False)
        wall = time.perf_counter() - start
        return {"epoch_seconds": [h["seconds"] for h in model.history_], "fit_wall_s": wall,
                "loss": [h["loss"] for h in model.history_],
                "factors": (model.user_factors, model.item_factors)}

    def versions(self):
        import numba
        import numpy
        import scipy

        import bpr_numba

        out = {"bpr_numba": bpr_numba.__version__, "numba": numba.__version__,
               "numpy": numpy.__version__, "scipy": scipy.__version__,
               "python": sys.version.split()[0]}
        try:
            out["numba_threading_layer"] = numba.threading_layer()
        except ValueError:
            pass
        return out


class ImplicitTrainer:
    def __init__(self, job):
        self.job = job
        self.seed = SEED

    def model(self, lr, epochs):
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        p = self.job["params"]
        return BayesianPersonalizedRanking(
            factors=self.job["factors"], learning_rate=lr, regularization=p["regularization"],
            iterations=epochs, num_threads=self.job["threads"], random_state=self.seed)

    def default_lr(self):
        return self.job["params"]["learning_rate"]

    def warmup(self):
        start = time.perf_counter()
        self.model(self.default_lr(), 2).fit(tiny_matrix(), show_progress=False)
        return {"first_fit_s": time.perf_counter() - start}

    def train(self, train, lr):
        import numpy as np

        model = self.model(lr, self.job["epochs"])
        epochs = []

        def callback(epoch, elapsed, correct, skipped):
            epochs.append((elapsed, int(correct), int(skipped)))

        start = time.perf_counter()
        model.fit(train, show_progress=False, callback=callback)
        wall = time.perf_counter() - start
        user_factors, item_factors = model.user_factors, model.item_factors
        if hasattr(user_factors, "to_numpy"):  # GPU matrices; CPU models hold ndarrays
            user_factors, item_factors = user_factors.to_numpy(), item_factors.to_numpy()
        return {"epoch_seconds": [e[0] for e in epochs], "fit_wall_s": wall,
                "skipped_share": float(np.mean([e[2] for e in epochs]) / train.nnz),
                "train_auc_proxy": [e[1] / max(train.nnz - e[2], 1) for e in epochs],
                "factors": (np.asarray(user_factors), np.asarray(item_factors))}

    def versions(self):
        import implicit

        return {"implicit": implicit.__version__, **common_versions()}


class LightFMTrainer:
    def __init__(self, job):
        self.job = job
        self.seed = SEED

    def model(self, lr):
        from lightfm import LightFM

        return LightFM(no_components=self.job["factors"], loss=self.job["params"]["loss"],
                       learning_rate=lr, random_state=self.seed)

    def default_lr(self):
        return self.job["params"]["learning_rate"]

    def warmup(self):
        start = time.perf_counter()
        self.model(self.default_lr()).fit_partial(tiny_matrix().tocoo(), epochs=2,
                                                  num_threads=self.job["threads"])
        return {"first_fit_s": time.perf_counter() - start}

    def train(self, train, lr):
        import numpy as np

        coo = train.tocoo()  # LightFM's own input format, converted once (untimed)
        model = self.model(lr)
        epoch_seconds = []
        run_epoch = model._run_epoch  # timed through an instance attribute

        def timed_run_epoch(*a, **k):
            start = time.perf_counter()
            out = run_epoch(*a, **k)
            epoch_seconds.append(time.perf_counter() - start)
            return out

        model._run_epoch = timed_run_epoch
        wall = 0.0
        for _ in range(self.job["epochs"]):
            start = time.perf_counter()
            model.fit_partial(coo, epochs=1, num_threads=self.job["threads"])
            wall += time.perf_counter() - start
        item_biases, item_emb = model.get_item_representations()
        _, user_emb = model.get_user_representations()
        ones = np.ones((user_emb.shape[0], 1), dtype=np.float32)
        user_factors = np.hstack([user_emb.astype(np.float32), ones])
        item_factors = np.hstack([item_emb.astype(np.float32),
                                  item_biases.astype(np.float32)[:, None]])
        return {"epoch_seconds": epoch_seconds, "fit_wall_s": wall,
                "factors": (user_factors, item_factors)}

    def versions(self):
        import lightfm

        return {"lightfm": lightfm.__version__, **common_versions()}


class CornacTrainer:
    def __init__(self, job):
        self.job = job
        self.seed = SEED
        if job["threads"] != 1:
            raise ValueError("cornac runs with seed=0, which forces one thread")

    def model(self, lr, epochs):
        from cornac.models import BPR

        p = self.job["params"]
        return BPR(k=self.job["factors"], max_iter=epochs, learning_rate=lr,
                   lambda_reg=p["lambda_reg"], use_bias=True, seed=self.seed, verbose=False)

    def default_lr(self):
        return self.job["params"]["learning_rate"]

    def dataset(self, X):
        """A cornac Dataset with identity id maps, so factors align with X's rows/columns."""
        import numpy as np
        from cornac.data import Dataset

        coo = X.tocoo()
        n_users, n_items = X.shape
        return Dataset(n_users, n_items, {u: u for u in range(n_users)},
                       {i: i for i in range(n_items)},
                       (coo.row.astype(np.int64), coo.col.astype(np.int64),
                        coo.data.astype(np.float64)), seed=self.seed)

    def warmup(self):
        start = time.perf_counter()
        self.model(self.default_lr(), 2).fit(self.dataset(tiny_matrix()))
        return {"first_fit_s": time.perf_counter() - start}

    def train(self, train, lr):
        import numpy as np

        data = self.dataset(train)  # untimed
        model = self.model(lr, self.job["epochs"])
        epochs = []
        fit_sgd = model._fit_sgd

        def timed_fit_sgd(*a, **k):
            start = time.perf_counter()
            correct, skipped = fit_sgd(*a, **k)
            epochs.append((time.perf_counter() - start, int(skipped)))
            return correct, skipped

        model._fit_sgd = timed_fit_sgd
        start = time.perf_counter()
        model.fit(data)
        wall = time.perf_counter() - start
        ones = np.ones((model.u_factors.shape[0], 1), dtype=np.float32)
        user_factors = np.hstack([model.u_factors.astype(np.float32), ones])
        item_factors = np.hstack([model.i_factors.astype(np.float32),
                                  np.asarray(model.i_biases, dtype=np.float32)[:, None]])
        return {"epoch_seconds": [e[0] for e in epochs], "fit_wall_s": wall,
                "skipped_share": float(np.mean([e[1] for e in epochs]) / train.nnz),
                "factors": (user_factors, item_factors)}

    def versions(self):
        import cornac

        return {"cornac": cornac.__version__, **common_versions()}


class PopularityTrainer:
    """bpr_numba.baselines.Popularity (ours-python): factors (ones, item counts)."""

    def __init__(self, job):
        self.job = job
        self.seed = SEED  # unused: the baseline is deterministic

    def default_lr(self):
        return None

    def warmup(self):
        return {}

    def train(self, train, lr):
        from bpr_numba.baselines import Popularity

        start = time.perf_counter()
        model = Popularity(**self.job["params"]).fit(train)
        wall = time.perf_counter() - start
        return {"epoch_seconds": [wall], "fit_wall_s": wall,
                "factors": (model.user_factors, model.item_factors)}

    def versions(self):
        return OursTrainer(self.job).versions()


def common_versions():
    import numpy
    import scipy

    return {"numpy": numpy.__version__, "scipy": scipy.__version__,
            "python": sys.version.split()[0]}


def worker_evaluate(job):
    """full_auc and auc_score of each saved factor pair (ours-python, bpr_numba.metrics)."""
    import numpy as np

    from bpr_numba.metrics import auc_score, evaluate, full_auc

    train, test = load_data(job["data_dir"])
    users = np.flatnonzero(np.diff(test.indptr))
    if job["auc_users"] and users.size > job["auc_users"]:
        rng = np.random.default_rng(SEED)
        users = np.sort(rng.choice(users, size=job["auc_users"], replace=False))
        train, test = train[users], test[users]
    else:
        users = None
    scores = []
    popularity = None
    if job.get("popularity"):
        # Reference: bpr_numba.baselines.Popularity on the whole train matrix (score = the
        # item's train count, what a bias-only model can reach), scored on the same users.
        from bpr_numba.baselines import Popularity

        baseline = Popularity().fit(load_data(job["data_dir"], ("train",))[0])
        pair = (np.ones((train.shape[0], 1), np.float32),
                np.ascontiguousarray(baseline.item_factors))
        popularity = {"full_auc": float(full_auc(pair, test)),
                      "auc": float(auc_score(pair, test, train))}
    for path in job["factors"]:
        if not path or not Path(path).exists():
            scores.append({})
            continue
        with np.load(path) as f:
            user_factors, item_factors = f["user_factors"], f["item_factors"]
        if users is not None:
            user_factors = user_factors[users]
        pair = (np.ascontiguousarray(user_factors, dtype=np.float32),
                np.ascontiguousarray(item_factors, dtype=np.float32))
        try:
            if job.get("metrics"):  # bench/quality.py: full_auc without train, the rest with it
                score = {"full_auc": float(full_auc(pair, test))}
                score.update(evaluate(pair, test, train, metrics=job["metrics"]))
                scores.append(score)
            else:
                scores.append({"full_auc": float(full_auc(pair, test)),
                               "auc": float(auc_score(pair, test, train))})
        except ValueError as exc:  # e.g. non-finite factors of a diverged peer
            scores.append({"eval_error": str(exc)})
    n_scored = test.shape[0] if users is not None else np.count_nonzero(np.diff(test.indptr))
    return {"scores": scores, "popularity": popularity, "users_scored": int(n_scored)}


if __name__ == "__main__":
    sys.exit(main())
