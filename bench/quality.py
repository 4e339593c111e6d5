"""Quality tables: Popularity, bpr-numba with and without item bias, and the peers, one run.

Drives bench/_workers.py's subprocesses (its ``prepare``, ``train`` and
``evaluate`` roles and trainers, with the interpreters peers.py uses), so every model
trains on the very same CSR matrices and is scored by the same
``bpr_numba.metrics`` calls on its exported ``(user_factors, item_factors)``.

Data sets
---------
* ``ml-100k``: ``load_movielens("100k", "ua", min_rating=4)`` (944 x 1683,
  49,906 train and 5,469 test positives; the ua splits are disjoint).
* ``synthetic``: ``make_synthetic(20_000, 5_000, 1_000_000, random_state=0)``
  split with ``bpr_numba.split.random_split(X, 0.2, random_state=0)`` (per
  user, so most users have test positives).

Models (``--seeds`` seeds each on ml-100k, ``--synthetic-seeds`` on synthetic;
the median and the [min..max] range over the seeds are reported):

* ``bpr_numba.baselines.Popularity()`` (deterministic: one run);
* bpr-numba ``BPR()`` defaults (adagrad, 3 negative candidates, item bias) and
  ``BPR(item_bias=False)``, 10 epochs, factors 64;
* on ml-100k, ``BPR.keras_compatible(epochs=20)`` (its recipe: 100 factors,
  dense Adam, no bias) and the peers with _workers.PEER_CONFIGS: implicit
  BPR (lr 0.01, reg 0.01), LightFM BPR and WARP (lr 0.05), cornac BPR (lr 0.01,
  lambda 0.01), factors 64 (+ item bias), 10 epochs; and each peer again at the
  epoch count of its own documentation: implicit's default ``iterations=100``,
  LightFM's quickstart ``epochs=30`` (WARP and BPR), cornac's defaults
  (``max_iter=100``, ``learning_rate=0.001``);
* on synthetic, Popularity and the two bpr-numba rows only, at 3 and 10 epochs
  (separate fits, each from scratch).

Every fit runs on ``--threads`` threads (1 by default: bpr-numba is then
reproducible bit for bit, and cornac with a seed runs on one thread anyway).

Metrics per run: ``full_auc = metrics.full_auc(pair, test)`` (the notebook's:
train positives count as negatives) and ``metrics.evaluate(pair, test, train,
metrics=[auc, precision@10, recall@10, ndcg@10, map@10, mrr])`` (train
positives removed from the candidates), over every user with a test positive.
"train s" is the median wall time of the training call(s) (bpr-numba's
``fit``, implicit's and cornac's ``fit``, LightFM's ``fit_partial`` calls,
Popularity's ``fit``), after a warm-up fit on a tiny matrix.

Writes ``bench/results/quality-<timestamp>.json`` (ignored by git); ``python
bench/report.py`` renders it into bench/RESULTS.md. About 3 minutes on 2
shared cores.

Usage::

    BPR_NUMBA_DATA=/work/shared/data python bench/quality.py
    python bench/quality.py --quick                   # smoke test: 1 seed, few rows
    python bench/quality.py --datasets synthetic --synthetic-seeds 5
"""

from __future__ import annotations

import os
import shlex
import statistics
import sys
import time
from pathlib import Path

from _common import (add_interpreter_arguments, add_output_argument, log, machine_info,
                     make_parser, options, table, versions_line, workdir, write_record)
from _workers import PEER_CONFIGS, prepare_data, run_worker

DATASETS = ("ml-100k", "synthetic")
METRICS = ("auc", "precision@10", "recall@10", "ndcg@10", "map@10", "mrr")
COLUMNS = ("full_auc",) + METRICS

# (key, library, label, params, epochs); epochs None = --epochs, 0 = not trained by epochs.
IMPLICIT = PEER_CONFIGS["implicit"][0][1]
LIGHTFM_BPR = PEER_CONFIGS["lightfm"][0][1]
LIGHTFM_WARP = PEER_CONFIGS["lightfm"][1][1]
CORNAC = PEER_CONFIGS["cornac"][0][1]
OURS_ROWS = [
    ("popularity", "popularity", "Popularity()", {}, 0),
    ("bpr-bias", "bpr-numba", "BPR() defaults (item_bias=True)", {}, None),
    ("bpr-nobias", "bpr-numba", "BPR(item_bias=False)", {"item_bias": False}, None),
]
ML100K_ROWS = OURS_ROWS + [
    ("bpr-keras", "bpr-numba", "BPR.keras_compatible(epochs=20)", {"preset": "keras"}, 20),
    ("implicit", "implicit", "implicit BPR, lr 0.01, reg 0.01", IMPLICIT, None),
    ("implicit-100", "implicit", "implicit BPR, lr 0.01, reg 0.01 (its default iterations=100)",
     IMPLICIT, 100),
    ("lightfm-bpr", "lightfm", "LightFM BPR, lr 0.05", LIGHTFM_BPR, None),
    ("lightfm-bpr-30", "lightfm", "LightFM BPR, lr 0.05 (quickstart epochs=30)", LIGHTFM_BPR, 30),
    ("lightfm-warp", "lightfm", "LightFM WARP, lr 0.05", LIGHTFM_WARP, None),
    ("lightfm-warp-30", "lightfm", "LightFM WARP, lr 0.05 (quickstart epochs=30)",
     LIGHTFM_WARP, 30),
    ("cornac", "cornac", "cornac BPR, lr 0.01, lambda 0.01", CORNAC, None),
    ("cornac-defaults", "cornac", "cornac BPR, its defaults (lr 0.001, lambda 0.01, 100 epochs)",
     {"learning_rate": 0.001, "lambda_reg": 0.01}, 100),
]
QUICK_KEYS = ("popularity", "bpr-bias", "bpr-nobias", "implicit", "lightfm-warp", "cornac")


def parse_args(argv=None):
    parser = make_parser(__doc__, "quality.py")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 1 seed, 3 epochs, a few ml-100k rows, small synthetic")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--rows", nargs="+", default=None,
                        help="ml-100k row keys to run (default all): "
                             + " ".join(k for k, *_ in ML100K_ROWS))
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 on ml-100k")
    parser.add_argument("--epochs", type=int, default=10,
                        help="epochs of the rows without their own count")
    parser.add_argument("--factors", type=int, default=64,
                        help="latent factors (+ item bias where the model has one); "
                             "the Keras preset keeps its 100")
    parser.add_argument("--threads", type=int, default=1, help="threads of every fit")
    parser.add_argument("--synthetic-seeds", type=int, default=3, help="seeds 0..N-1 on synthetic")
    parser.add_argument("--synthetic-epochs", nargs="+", type=int, default=[3, 10],
                        help="epoch counts of the synthetic bpr-numba fits")
    parser.add_argument("--synthetic-shape", nargs=3, type=int, default=[20_000, 5_000, 1_000_000],
                        metavar=("USERS", "ITEMS", "INTERACTIONS"),
                        help="make_synthetic size (total interactions, 20%% go to test)")
    add_interpreter_arguments(parser, timeout=900)
    add_output_argument(parser, "quality")
    args = parser.parse_args(argv)
    keys = [k for k, *_ in ML100K_ROWS]
    if args.rows is None:
        args.rows = list(QUICK_KEYS) if args.quick else keys
    unknown = sorted(set(args.rows) - set(keys))
    if unknown:
        parser.error(f"unknown --rows {unknown}; known: {keys}")
    if args.quick:
        args.seeds = args.synthetic_seeds = 1
        args.epochs, args.synthetic_epochs = 3, [3]
        args.synthetic_shape = [2_000, 1_000, 50_000]
    return args


def spread(values):
    """{"median", "min", "max", "n"} of the finite values (None when there are none)."""
    values = [v for v in values if v is not None and v == v]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def run_row(args, work, dataset, data_dir, key, library, label, params, epochs, seeds):
    """Train one row for every seed in one worker, score every run; return the row record."""
    python = args.ours_python if library in ("bpr-numba", "popularity") else args.peers_python
    factors = 100 if params.get("preset") == "keras" else args.factors
    row = {"dataset": dataset, "key": key, "library": library, "label": label, "params": params,
           "epochs": epochs, "factors": None if library == "popularity" else factors,
           "threads": args.threads, "seeds": seeds, "python": python}
    tag = f"{dataset}-{key}-e{epochs}"
    factors_dir = work / "factors" / tag
    factors_dir.mkdir(parents=True, exist_ok=True)
    log(f"[{dataset}] {label}, {epochs} epochs, seeds {seeds} ...")
    job = {"library": library, "params": params, "factors": args.factors,
           "threads": args.threads, "epochs": epochs or 1, "seeds": seeds,
           "data_dir": str(data_dir), "factors_dir": str(factors_dir)}
    result = run_worker(python, "train", job, work / f"{tag}.json", args.timeout)
    if "error" in result:
        log(f"    failed: {result['error']}")
        row["error"] = result["error"]
        return row, {}
    runs = result["runs"]
    scored = run_worker(args.ours_python, "evaluate",
                              {"data_dir": str(data_dir), "auc_users": 0,
                               "factors": [r["factors_file"] for r in runs],
                               "metrics": list(METRICS)},
                              work / f"{tag}-eval.json", args.timeout)
    if "error" in scored:
        log(f"    evaluation failed: {scored['error']}")
        row["error"] = "evaluation: " + scored["error"]
        return row, result.get("versions", {})
    for run, score in zip(runs, scored["scores"]):
        run.update(score)
        Path(run.pop("factors_file")).unlink(missing_ok=True)
    row["users_scored"] = scored["users_scored"]
    row["runs"] = runs
    row["warmup"] = result.get("warmup")
    row["process_wall_s"] = result.get("process_wall_s")
    row["metrics"] = {name: spread([r.get(name) for r in runs]) for name in COLUMNS}
    row["train_seconds"] = spread([r["fit_wall_s"] for r in runs])
    row["learning_rate"] = runs[0].get("learning_rate")
    errors = [r["eval_error"] for r in runs if "eval_error" in r]
    if errors:
        row["eval_errors"] = errors
    m = row["metrics"]
    log("    full AUC " + fmt_spread(m["full_auc"]) + ", AUC " + fmt_spread(m["auc"])
              + f", train {row['train_seconds']['median']:.2f} s")
    return row, result.get("versions", {})


def fmt_spread(s, spec=".4f"):
    if not s:
        return "n/a"
    if s["n"] == 1 or s["min"] == s["max"]:
        return format(s["median"], spec)
    return f"{s['median']:{spec}} [{s['min']:{spec}}..{s['max']:{spec}}]"


def item_bias_comparison(rows):
    """Per data set and epoch count: BPR() minus BPR(item_bias=False), medians and per seed."""
    out = []
    by = {(r["dataset"], r["key"], r["epochs"]): r for r in rows if "runs" in r}
    for (dataset, key, epochs), with_bias in by.items():
        if key != "bpr-bias" or (dataset, "bpr-nobias", epochs) not in by:
            continue
        without = by[(dataset, "bpr-nobias", epochs)]
        pop = next((r for (d, k, _), r in by.items() if d == dataset and k == "popularity"), None)
        record = {"dataset": dataset, "epochs": epochs, "seeds": with_bias["seeds"]}
        for name in ("full_auc", "auc", "ndcg@10"):
            a = {r["seed"]: r.get(name) for r in with_bias["runs"]}
            b = {r["seed"]: r.get(name) for r in without["runs"]}
            paired = [a[s] - b[s] for s in a if s in b and a[s] is not None and b[s] is not None]
            record[name] = {
                "item_bias_true": with_bias["metrics"][name],
                "item_bias_false": without["metrics"][name],
                "popularity": pop and pop["metrics"][name],
                "median_difference": (with_bias["metrics"][name]["median"]
                                      - without["metrics"][name]["median"]),
                "paired_differences": spread(paired),
                "true_wins": sum(d > 0 for d in paired), "pairs": len(paired)}
        out.append(record)
    return out


def main(argv=None):
    args = parse_args(argv)
    t_start = time.perf_counter()
    command = "python bench/quality.py" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    report = {"kind": "quality", "command": command, "machine": machine_info(),
              "args": options(args),
              "metrics": list(COLUMNS), "datasets": {}, "rows": [],
              "versions": {}, "load_average_start": os.getloadavg()[0]}
    with workdir(args.workdir, "bpr-quality-") as work:
        for dataset in args.datasets:
            if dataset == "ml-100k":
                request = {"dataset": "ml-100k"}
                plan = [(k, lib, label, params, args.epochs if e is None else e)
                        for k, lib, label, params, e in ML100K_ROWS if k in args.rows]
                seeds = list(range(args.seeds))
            else:
                request = {"dataset": "synthetic", "synthetic_total": args.synthetic_shape,
                           "split": "random"}
                plan = [("popularity", "popularity", "Popularity()", {}, 0)]
                plan += [(k, lib, label, params, e) for e in args.synthetic_epochs
                         for k, lib, label, params, _ in OURS_ROWS[1:]]
                seeds = list(range(args.synthetic_seeds))
            data_dir = work / dataset
            meta = prepare_data(args.ours_python, data_dir, request)
            report["datasets"][dataset] = {k: v for k, v in meta.items() if k != "request"}
            log(f"[{dataset}] train {meta['shape']} nnz {meta['train_nnz']:,}, "
                      f"test nnz {meta['test_nnz']:,}")
            for key, library, label, params, epochs in plan:
                row, versions = run_row(args, work, dataset, data_dir, key, library, label,
                                        params, epochs, [0] if library == "popularity" else seeds)
                report["rows"].append(row)
                if versions:
                    report["versions"].setdefault(row["python"], {}).update(versions)
    report["item_bias"] = item_bias_comparison(report["rows"])
    report["load_average_end"] = os.getloadavg()[0]
    report["total_seconds"] = time.perf_counter() - t_start
    print(markdown(report))
    out_path = write_record(report, "quality", args.output)
    log(f"wrote {out_path} ({report['total_seconds']:.0f} s)")
    return 0


# ------------------------------------------------------------------ rendering
def markdown(report):
    """The quality tables of a quality-*.json record (bench/report.py calls this)."""
    lines = []
    m = report["machine"]
    lines.append(f"`{report['command']}` in {report['total_seconds'] / 60:.1f} min on "
                 f"{m.get('cpu')}, {m.get('cores')} cores; git "
                 f"`{str(m.get('git_commit'))[:10]}`"
                 + (" (with uncommitted changes)" if m.get("git_dirty") else "")
                 + (f"; load average {report['load_average_start']:.2f} at start, "
                    f"{report['load_average_end']:.2f} at end"
                    if "load_average_end" in report else "") + ".")
    lines += [versions_line(python, versions, code=True)
              for python, versions in report.get("versions", {}).items()]
    lines.append("")
    lines.append("Every model trains on the same CSR matrices and is scored by the same "
                 "`bpr_numba.metrics` calls on its exported factors: `full_auc` is the "
                 "notebook's metric (train positives count as negatives); the other columns "
                 "remove the user's train positives from the candidates. Values are the median "
                 "over the seeds with [min..max] on the AUCs; `train s` is the median wall time "
                 "of the training call(s). Popularity is deterministic (one run).")
    for dataset, meta in report["datasets"].items():
        rows = [r for r in report["rows"] if r["dataset"] == dataset]
        seeds = sorted({len(r["seeds"]) for r in rows if r["library"] != "popularity"})
        lines += ["", f"### {'Quality on MovieLens 100k' if dataset == 'ml-100k' else 'Item bias on synthetic data'}: "
                  f"{meta['description']}", ""]
        lines.append(f"Train {meta['shape'][0]:,} x {meta['shape'][1]:,}, "
                     f"{meta['train_nnz']:,} train and {meta['test_nnz']:,} test positives; "
                     f"{'/'.join(map(str, seeds))} seeds; "
                     f"{rows[0].get('threads', '?') if rows else '?'} thread(s); users scored: "
                     + ", ".join(f"{u:,}" for u in sorted({r.get('users_scored') for r in rows
                                                          if r.get('users_scored')})) + ".")
        lines.append("")
        others = (("precision@10", "recall@10", "ndcg@10", "map@10", "mrr")
                  if dataset == "ml-100k" else ("ndcg@10",))
        lines += table(("model", "factors", "epochs", "full_auc", "auc", *others, "train s"),
                       [row_cells(r, others) for r in rows], "lrrll" + "r" * (len(others) + 1))
    if report.get("item_bias"):
        lines += ["", "### item_bias=True minus item_bias=False (bpr-numba defaults otherwise)", ""]
        cells = []
        for c in report["item_bias"]:
            for name in ("full_auc", "auc", "ndcg@10"):
                d = c[name]
                pop = d["popularity"]
                cells.append([
                    c["dataset"], c["epochs"], name, f"{d['item_bias_true']['median']:.4f}",
                    f"{d['item_bias_false']['median']:.4f}",
                    "n/a" if not pop else format(pop["median"], ".4f"),
                    f"{d['median_difference']:+.4f}",
                    fmt_spread(d["paired_differences"], "+.4f") if d["paired_differences"]
                    else "n/a", f"{d['true_wins']}/{d['pairs']}"])
        lines += table(("data", "epochs", "metric", "True", "False", "Popularity",
                        "difference of medians", "paired by seed: median [min..max]",
                        "True better"), cells, "lrlrrrrlr")
    return "\n".join(lines)


def row_cells(r, others):
    """The cells of one model's row: label, factors, epochs, the metrics and train s."""
    epochs = "-" if r["library"] == "popularity" else r["epochs"]
    cells = [r["label"], r.get("factors") or "-", epochs]
    if "error" in r:
        return cells + [f"error: {r['error'].splitlines()[-1][:80]}"] + [""] * (len(others) + 2)
    m = r["metrics"]
    cells += [fmt_spread(m["full_auc"]), fmt_spread(m["auc"])]
    cells += ["n/a" if not m.get(name) else format(m[name]["median"], ".4f") for name in others]
    return cells + [f"{r['train_seconds']['median']:.3f}"]


if __name__ == "__main__":
    sys.exit(main())
