"""bpr-numba against implicit, LightFM and cornac: same data, factors, threads and epochs.

The peers live in their own virtualenv (../shared/PEERS.md), so this script is a
driver that needs only the standard library and runs under either interpreter.
It spawns one bench/_workers.py subprocess per (library, config, threads) with
the right interpreter (``--peers-python`` for implicit/LightFM/cornac,
``--ours-python`` for bpr-numba) and passes the data through .npz files in a
temporary folder, so every library trains on the very same CSR matrices.
bench/_workers.py's docstring says what each role and trainer does and times,
and what each library calls an epoch and a negative.

Steps per data set
------------------
1. ``prepare`` (ours-python): the train/test CSR matrices.

   * ``ml-100k``: ``load_movielens("100k", "ua", min_rating=4)`` (944 x 1683,
     49,906 train and 5,469 test positives; row 0 and column 0 are empty).
   * ``synthetic``: ``make_synthetic(200_000, 50_000, 12_500_000,
     random_state=0)`` then ``holdout_split(X, 0.2, random_state=0)``, so the
     *train* matrix holds exactly 10,000,000 interactions (the throughput
     target) and test 2,500,000. (bench/throughput.py's "10M" is the total
     before the split, 8M train; the figures are not interchangeable.)

2. ``train`` (one worker per library, config and thread count): a warm-up on a
   tiny matrix, then ``E`` epochs with ``random_state=0``.
   samples/s = ``train.nnz * E / sum(epoch seconds)``; "fit wall s" is the
   whole training call(s) per epoch. With ``--repeats R`` the training is run
   R times (fresh model, same seed) and the median of the R totals is
   reported (min and every epoch's seconds are in the JSON).

3. ``evaluate`` (ours-python): ``bpr_numba.metrics.full_auc(pair, test)`` (the
   notebook's metric: train positives count as negatives) and
   ``auc_score(pair, test, train)`` (train positives removed) on every
   library's exported ``(user_factors, item_factors)``; with more users with a
   test positive than ``--auc-users``, a seeded subsample of them is scored
   (the same users for every library).

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
seeds, the Popularity baseline, every metric of ``bpr_numba.metrics``).

Usage::

    python bench/peers.py --quick
    python bench/peers.py                                    # ml-100k + synthetic, threads 1 2
    python bench/peers.py --datasets ml-100k --tune
    python bench/peers.py --datasets synthetic --threads 1 2 --repeats 3
    python bench/peers.py --libraries bpr-numba implicit --ours-configs sgd defaults
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from _common import (add_interpreter_arguments, add_output_argument, fmt, log, machine_info,
                     make_parser, options, table, versions_line, workdir, write_record)
from _workers import (LIBRARIES, OURS_CONFIGS, PEER_CONFIGS, SEED, prepare_data,
                      run_worker)

DATASETS = ("ml-100k", "synthetic")

# --------------------------------------------------------------------- driver
def parse_args(argv=None):
    parser = make_parser(__doc__, "peers.py")
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
    add_interpreter_arguments(parser)
    add_output_argument(parser, "peers")
    args = parser.parse_args(argv)
    if args.quick:
        args.datasets, args.threads, args.epochs_ml100k = ["ml-100k"], [1], 3
    if min(args.threads) < 1:
        parser.error(f"--threads must be >= 1; got {args.threads}.")
    return args


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
    t_start = time.perf_counter()
    report = {"machine": machine_info(), "args": options(args),
              "seed": SEED, "datasets": {}, "rows": [], "tuning": [], "versions": {}}
    pythons = {"bpr-numba": args.ours_python, "implicit": args.peers_python,
               "lightfm": args.peers_python, "cornac": args.peers_python}
    with workdir(args.workdir, "bpr-peers-") as work:
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
    add_ratios(report["rows"])
    report["total_seconds"] = time.perf_counter() - t_start
    print(render(report, args))
    log(f"wrote {write_record(report, 'peers', args.output)}")
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


def render(report, args):
    lines = []
    m = report["machine"]
    lines.append(f"Machine: {m['cpu']}, {m['cores']} cores; git {str(m.get('git_commit'))[:10]}"
                 f"{' (dirty)' if m.get('git_dirty') else ''}")
    lines += [versions_line(python, versions) for python, versions in report["versions"].items()]
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
        header = ("library", "config", "threads", "epochs", "train s/epoch", "samples/s",
                  "vs implicit", "full AUC", "AUC (train excl.)", "fit wall s/epoch",
                  "first call s", "skipped")
        rows = []
        for r in report["rows"]:
            if r["dataset"] != dataset:
                continue
            cells = [r["library"], f"{r['config']}, lr {r.get('learning_rate', '?')}",
                     r["threads"], r["epochs"]]
            if "error" in r:
                rows.append(cells + [f"error: {r['error'].splitlines()[-1][:60]}"]
                            + [""] * (len(header) - 5))
                continue
            rows.append(cells + [
                f"{r['seconds_per_epoch']:.3f}", f"{r['samples_per_s'] / 1e6:.3f} M",
                fmt(r.get("ratio_vs_implicit"), ".2f"), fmt(r.get("full_auc"), ".4f"),
                fmt(r.get("auc"), ".4f"), f"{r['fit_wall_seconds_per_epoch']:.3f}",
                fmt(r.get("warmup", {}).get("first_fit_s"), ".2f"),
                fmt(r.get("skipped_share"), ".1%")])
        lines += table(header, rows, "llrrrrrrrrrr")
    if report["tuning"]:
        lines.append("")
        metric = report["tuning"][0]["metric"]
        lines.append(f"### Best learning rate (grid x {args.tune_multipliers}, chosen by {metric} "
                     "on the test split)")
        lines.append("")
        rows = []
        for t in report["tuning"]:
            failed = ", ".join(format(g["learning_rate"], "g") for g in t["grid"]
                               if g.get("error") or g.get("full_auc") is None) or "-"
            rows.append([t["dataset"], t["library"], t["config"], t["threads"],
                         fmt(t["default_learning_rate"], "g"),
                         fmt(t["best_learning_rate"], "g") + edge(t), fmt(t["full_auc"], ".4f"),
                         fmt(t["auc"], ".4f"), failed])
        lines += table(("data", "library", "config", "threads", "default lr", "best lr",
                        "full AUC", "AUC (train excl.)", "diverged/failed lrs"), rows,
                       "lllrrrrrl")
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


if __name__ == "__main__":
    sys.exit(main())
