"""Gowalla (the NGCF / LightGCN split): bpr-numba, implicit, LightFM and Popularity, one run.

Quality at the papers' protocol and time to quality, every library on the
very same CSR matrices (``bpr_numba.load_gowalla()``, saved once with
``scipy.sparse.save_npz`` in a work folder) and scored by one evaluator.

Protocol (the papers'): train on train.txt only; rank every item the user has
no train interaction with; Recall@20 = hits / n_test, NDCG@20 with binary gains
and the ideal DCG over min(20, n_test), averaged over the users with a test
item: ``bpr_numba.metrics.evaluate((U, V), test, train, metrics=("recall@20",
"ndcg@20"))`` on each library's exported float32 factors. Factors 64 (+ the
item bias column where the model has one), ``--threads`` threads for every
fit. Quoted seconds are training seconds only (``show_progress=False``; the
warm-up on a tiny matrix, exporting the factors and the evaluation are
outside them).

Recipes
-------
* bpr-numba ``BPR(factors=64, random_state=0)`` (its defaults: 10 epochs);
  ``BPR.preset("quality", factors=64, random_state=0)`` (its 80 epochs); each
  ``--extra`` JSON object as more ``BPR`` parameters (with ``"preset"`` a
  preset's name). Trained with ``fit(train)`` of one epoch, then
  ``fit_partial(train, epochs=1)`` per epoch: with one thread that gives the
  same factors as one fit of E epochs; with 2 threads Hogwild updates differ
  slightly from run to run anyway.
* implicit ``implicit.cpu.bpr.BayesianPersonalizedRanking(factors=64,
  random_state=0, num_threads=T)``: its defaults (lr 0.01, reg 0.01, 100
  iterations; factors + 1 columns with the item bias), one ``fit`` whose
  callback saves the factors at the checkpoints (repeated 1-iteration fits
  would re-seed its RNGs); seconds are the per-iteration ``elapsed`` the
  callback gets.
* LightFM ``LightFM(no_components=64, loss="warp" | "bpr", random_state=0)``:
  its default lr 0.05 (Adagrad), ``--lightfm-epochs`` (30: its quickstart's,
  as bench/quality.py) ``fit_partial(coo, epochs=1, num_threads=T)`` calls;
  exported as ``U = [user_emb, 1]``, ``V = [item_emb, item_bias]``.
* ``bpr_numba.baselines.Popularity()``.

Time to quality: each recipe's Recall@20 and NDCG@20 after ``--points``
checkpoint epochs (epoch 1, then evenly spaced to the last) against the
cumulative training seconds; the evaluation runs between epochs outside the
timed region (the factors are saved, then scored by a separate process).

Writes ``bench/results/gowalla-<timestamp>.json`` (ignored by git), prints the
markdown tables (``python bench/report.py`` renders them into
bench/RESULTS.md) and draws Recall@20 against training seconds, the published
figures as dashed lines, to ``bench/results/gowalla.png`` (matplotlib, in the
``--ours-python`` interpreter). About 8 minutes on 2 shared cores (37
checkpoints, each full evaluation 4-11 s; 10.4 minutes on 2026-12-03's
slower machine with two ``--extra`` recipes); ``--quick`` is a smoke test (2
epochs per recipe, 3,000 scored users; about 1.5 minutes).

Usage::

    python bench/gowalla.py --quick
    python bench/gowalla.py --extra '{"negative_candidates": 50, "epochs": 20,
        "optimizer": "rowwise-adagrad"}'
    python bench/gowalla.py --plot-from bench/results/gowalla-<timestamp>.json
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from _common import (REPO, RESULTS, add_interpreter_arguments, add_output_argument, finish, fmt,
                     log, machine_info, make_parser, options, table, versions_line, workdir)
from _workers import prepare_data, run_worker

METRICS = ("recall@20", "ndcg@20")
# Published Recall@20 / NDCG@20 on this split (/work/shared/data/gowalla/README.md).
PUBLISHED = [
    ("MF-BPR as reported by NGCF (Wang et al., SIGIR 2019)", 0.1291, 0.1109),
    ("MF-BPR tuned, BARS open benchmark (Zhu et al., 2022)", 0.1627, 0.1378),
    ("LightGCN (He et al., SIGIR 2020)", 0.1830, 0.1554),
    ("SimpleX (Mao et al., CIKM 2021)", 0.1872, 0.1557),
]
OURS_KEYS = ("bpr-defaults", "bpr-quality")
PEER_KEYS = ("implicit", "lightfm-warp", "lightfm-bpr")


def parse_args(argv=None):
    parser = make_parser(__doc__, "gowalla.py")
    parser.add_argument("--threads", type=int, default=2, help="threads of every fit")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--extra", action="append", default=[], metavar="JSON",
                        help="more bpr-numba recipes: a JSON object of BPR parameters "
                             "(repeatable)")
    parser.add_argument("--lightfm-epochs", type=int, default=30,
                        help="LightFM epochs (its quickstart's 30, as bench/quality.py)")
    parser.add_argument("--implicit-iterations", type=int, default=None,
                        help="implicit iterations (default: its own, 100)")
    parser.add_argument("--points", type=int, default=6,
                        help="checkpoints per recipe: epoch 1, then evenly spaced to the last")
    parser.add_argument("--eval-users", type=int, default=0,
                        help="score a seeded subsample of this many test users (0: all)")
    parser.add_argument("--recipes", nargs="+", default=None,
                        help="run only these recipe keys (popularity bpr-defaults bpr-quality "
                             "extra1 ... implicit lightfm-warp lightfm-bpr)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 2 epochs per recipe, 3,000 scored users")
    parser.add_argument("--png", type=Path, default=RESULTS / "gowalla.png",
                        help="the time-to-quality plot")
    parser.add_argument("--plot-from", type=Path, default=None, metavar="JSON",
                        help="only draw --png from this record (needs matplotlib)")
    add_interpreter_arguments(parser, timeout=3600)
    add_output_argument(parser, "gowalla")
    args = parser.parse_args(argv)
    try:
        args.extra_params = [json.loads(e) for e in args.extra]
    except json.JSONDecodeError as exc:
        parser.error(f"--extra is not JSON: {exc}")
    if any(not isinstance(e, dict) for e in args.extra_params):
        parser.error("--extra takes a JSON object of BPR parameters")
    if args.quick:
        args.eval_users = args.eval_users or 3000
        args.points = min(args.points, 2)
    return args


def recipes(args):
    """``(key, library, label, params, epochs)``; epochs None: the recipe's own count."""
    quick = 2 if args.quick else None
    out = [("popularity", "popularity", "Popularity()", {}, 0),
           ("bpr-defaults", "bpr-numba", "bpr-numba BPR() defaults", {}, quick),
           ("bpr-quality", "bpr-numba", 'bpr-numba BPR.preset("quality")',
            {"preset": "quality"}, quick)]
    for n, extra in enumerate(args.extra_params, start=1):
        params = dict(extra)
        epochs = params.pop("epochs", None)
        label = "bpr-numba " + ", ".join(f"{k}={v}" for k, v in params.items())
        out.append((f"extra{n}", "bpr-numba", label, params, quick or epochs))
    out += [("implicit", "implicit", "implicit BPR, its defaults", {},
             quick or args.implicit_iterations),
            ("lightfm-warp", "lightfm", "LightFM WARP", {"loss": "warp"},
             quick or args.lightfm_epochs),
            ("lightfm-bpr", "lightfm", "LightFM BPR", {"loss": "bpr"},
             quick or args.lightfm_epochs)]
    if args.recipes:
        out = [r for r in out if r[0] in args.recipes]
    return out


def run_recipe(args, work, data_dir, key, library, label, params, epochs):
    python = args.ours_python if library in ("bpr-numba", "popularity") else args.peers_python
    row = {"key": key, "library": library, "label": label, "params": params, "python": python}
    factors_dir = work / "factors" / key
    factors_dir.mkdir(parents=True, exist_ok=True)
    log(f"[gowalla] {label}: training ...")
    job = {"library": library, "params": params, "factors": args.factors,
           "threads": args.threads, "epochs": epochs, "points": args.points,
           "data_dir": str(data_dir), "factors_dir": str(factors_dir)}
    result = run_worker(python, "curve", job, work / f"{key}.json",
                        args.timeout)
    if "error" in result:
        log(f"    failed: {result['error']}")
        return dict(row, error=result["error"])
    points = result.pop("points")
    scored = run_worker(args.ours_python, "rank",
                        {"data_dir": str(data_dir), "metrics": list(METRICS),
                         "eval_users": args.eval_users,
                         "factors": [p["factors_file"] for p in points]},
                        work / f"{key}-rank.json", args.timeout)
    if "error" in scored:
        log(f"    evaluation failed: {scored['error']}")
        return dict(row, error="evaluation: " + scored["error"], **result)
    for point, score in zip(points, scored["scores"]):
        point.pop("factors_file")
        point.update(score)
    row.update(result)
    row.update(points=points, users_scored=scored["users_scored"],
               final={m: points[-1].get(m) for m in METRICS})
    log(f"    {row['epochs']} epochs, {row['train_seconds']:.1f} train s: "
        + ", ".join(f"{m} {fmt(row['final'][m], '.4f')}" for m in METRICS))
    return row


def main(argv=None):
    args = parse_args(argv)
    if args.plot_from:
        print(plot(json.loads(args.plot_from.read_text()), args.png))
        return 0
    t_start = time.perf_counter()
    # The workers import bpr_numba from this checkout (ahead of an editable install elsewhere).
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO),
                                                             os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("BPR_NUMBA_DATA", str(REPO.parent / "shared" / "data"))
    command = "python bench/gowalla.py" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    record = {"kind": "gowalla", "command": command, "machine": machine_info(),
              "args": options(args), "metrics": list(METRICS), "threads": args.threads,
              "factors": args.factors, "published": PUBLISHED, "rows": [], "versions": {}}
    with workdir(args.workdir, "bpr-gowalla-") as work:
        meta = prepare_data(args.ours_python, work / "gowalla", {"dataset": "gowalla"})
        record["data"] = {k: v for k, v in meta.items() if k != "request"}
        log(f"[gowalla] train {meta['shape']} nnz {meta['train_nnz']:,}, "
            f"test nnz {meta['test_nnz']:,}")
        for key, library, label, params, epochs in recipes(args):
            row = run_recipe(args, work, work / "gowalla", key, library, label, params, epochs)
            record["rows"].append(row)
            if row.get("versions"):
                record["versions"].setdefault(row["python"], {}).update(row.pop("versions"))
    record["ratios"] = ratios(record["rows"])
    path = finish(record, "gowalla", markdown, args.output, t_start)
    try:
        proc = subprocess.run([args.ours_python, str(Path(__file__).resolve()), "--plot-from",
                               str(path), "--png", str(args.png)],
                              capture_output=True, text=True, timeout=300)
        print(proc.stdout.strip() if proc.returncode == 0
              else f"plot failed: {proc.stderr.strip().splitlines()[-1:]}")
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"plot failed: {exc}")
    return 0


# ------------------------------------------------------------------ results
def ratios(rows):
    """Each bpr-numba recipe against each peer: final Recall@20, NDCG@20 and train seconds."""
    ok = [r for r in rows if "final" in r]
    ours = [r for r in ok if r["library"] == "bpr-numba"]
    peers = [r for r in ok if r["library"] in ("implicit", "lightfm")]
    pop = next((r["final"].get("recall@20") for r in ok if r["library"] == "popularity"), None)
    out = []
    for a in ours:
        for b in peers:
            cell = {"ours": a["key"], "peer": b["key"]}
            # A quality ratio against a peer that ranks below Popularity says nothing.
            cell["peer_below_popularity"] = bool(pop and (b["final"].get("recall@20") or 0) < pop)
            for m in METRICS:
                x, y = a["final"].get(m), b["final"].get(m)
                cell[m] = x / y if x is not None and y else None
            cell["train_seconds"] = (a["train_seconds"] / b["train_seconds"]
                                     if b["train_seconds"] else None)
            cell["peer_recall_reached_s"] = seconds_to_reach(a, b["final"].get("recall@20"))
            out.append(cell)
    return out


def seconds_to_reach(row, target):
    """Training seconds at the first checkpoint of ``row`` with Recall@20 >= target, or None."""
    if target is None:
        return None
    for p in row["points"]:
        if (p.get("recall@20") or 0) >= target:
            return p["train_seconds"]
    return None


def params_text(row):
    p = row.get("params") or {}
    keys = {"bpr-numba": ("optimizer", "learning_rate", "negative_candidates", "negatives",
                          "regularization", "item_bias"),
            "implicit": ("learning_rate", "regularization", "iterations"),
            "lightfm": ("loss", "learning_rate", "learning_schedule", "max_sampled")}
    shown = [f"{k}={p[k]}" for k in keys.get(row["library"], ()) if k in p]
    return ", ".join(shown) or "-"


def markdown(record):
    """The tables of a gowalla-*.json record (bench/report.py calls this)."""
    m, d = record["machine"], record["data"]
    start, end = m.get("load_average_start"), record.get("load_average_end")
    users = {r.get("users_scored") for r in record["rows"] if r.get("users_scored")}
    lines = [f"`{record['command']}` in {record.get('process_wall_s', 0) / 60:.1f} min on "
             f"{m.get('cpu')}, {m.get('cores')} cores, {record['threads']} threads per fit; git "
             f"`{str(m.get('git_commit'))[:10]}`"
             + (" (with uncommitted changes)" if m.get("git_dirty") else "")
             + (f"; load average (1/5/15 min) {'/'.join(f'{x:.2f}' for x in start)} at start, "
                f"{'/'.join(f'{x:.2f}' for x in end)} at end" if start and end else "") + "."]
    lines += [versions_line(python, v, code=True) for python, v in record["versions"].items()]
    lines += ["", f"{d['description']}: {d['shape'][0]:,} users x {d['shape'][1]:,} items, "
              f"{d['train_nnz']:,} train and {d['test_nnz']:,} test interactions; "
              f"{', '.join(f'{u:,}' for u in sorted(users))} users scored. Every model is "
              "scored by `bpr_numba.metrics.evaluate((U, V), test, train, "
              "metrics=(\"recall@20\", \"ndcg@20\"))` on its exported factors (all items "
              "without a train interaction ranked; Recall = hits / n_test; NDCG with binary "
              "gains, ideal DCG over min(20, n_test)). `train s` is training seconds only "
              "(evaluation, warm-up and export excluded).", ""]
    cells = []
    for r in record["rows"]:
        if "error" in r:
            cells.append([r["label"], params_text(r), "", "", "",
                          f"error: {r['error'].splitlines()[-1][:80]}", ""])
            continue
        epochs = r["epochs"] or "-"
        per_epoch = r["train_seconds"] / r["epochs"] if r["epochs"] else None
        cells.append([r["label"], params_text(r), epochs, f"{r['train_seconds']:.1f}",
                      fmt(per_epoch, ".2f"), fmt(r["final"].get("recall@20"), ".4f"),
                      fmt(r["final"].get("ndcg@20"), ".4f")])
    cells += [[f"published: {name}", "-", "-", "-", "-", f"{rec:.4f}", f"{ndcg:.4f}"]
              for name, rec, ndcg in record["published"]]
    lines += table(("recipe", "params", "epochs", "train s", "s/epoch", "Recall@20", "NDCG@20"),
                   cells, "llrrrrr")
    if record.get("ratios"):
        labels = {r["key"]: r["label"] for r in record["rows"]}
        lines += ["", "bpr-numba against each peer, final figures of this run (ratios "
                  "ours / peer; `reaches peer's Recall` is the training seconds of the first "
                  "checkpoint at or above the peer's final Recall@20):", ""]
        lines += table(("bpr-numba recipe", "peer", "Recall@20", "NDCG@20", "train s",
                        "reaches peer's Recall at s"),
                       [[labels[c["ours"]], labels[c["peer"]]]
                        + (["peer below Popularity"] * 2 if c.get("peer_below_popularity") else
                           [fmt(c["recall@20"], ".2f"), fmt(c["ndcg@20"], ".2f")])
                        + [fmt(c["train_seconds"], ".2f"),
                         fmt(c["peer_recall_reached_s"], ".1f")] for c in record["ratios"]],
                       "llrrrr")
    lines += ["", "Time to quality (Recall@20 after the epoch / cumulative train seconds):", ""]
    curve_cells = []
    for r in record["rows"]:
        if r.get("points") and r.get("epochs"):
            curve_cells.append([r["label"], " ".join(
                f"e{p['epoch']}: {fmt(p.get('recall@20'), '.4f')} @ {p['train_seconds']:.1f} s"
                for p in r["points"])])
    lines += table(("recipe", "epoch: Recall@20 @ train s"), curve_cells, "ll")
    return "\n".join(lines)


def plot(record, png):
    """Recall@20 against cumulative training seconds, one line per recipe; returns a message."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(10, 7.4), dpi=110)
    styles = {"bpr-numba": "-", "implicit": "--", "lightfm": "-."}
    colors = plt.get_cmap("tab10").colors
    for n, r in enumerate(r for r in record["rows"] if r.get("points") and r.get("epochs")):
        xs = [p["train_seconds"] for p in r["points"]]
        ys = [p.get("recall@20") for p in r["points"]]
        ax.plot(xs, ys, styles.get(r["library"], "-"), marker="o", ms=4, lw=2,
                color=colors[n % len(colors)],
                label=f"{r['label']} ({r['epochs']} ep., {r['final']['recall@20']:.4f})")
    pop = next((r for r in record["rows"] if r["library"] == "popularity" and r.get("final")),
               None)
    if pop:
        ax.axhline(pop["final"]["recall@20"], color="0.5", ls=":", lw=1.5,
                   label=f"Popularity ({pop['final']['recall@20']:.4f})")
    shades = ("0.55", "0.4", "0.25", "0.1")
    for n, ((name, rec, _), color) in enumerate(zip(record["published"], shades)):
        ax.axhline(rec, color=color, ls="--", lw=1)
        # SimpleX on the right above its line, the others on the left below theirs
        # (LightGCN and SimpleX lie 0.004 apart; the curves end high on the right).
        right = n == len(record["published"]) - 1
        ax.annotate(f"published: {name.split(' (')[0]} {rec:.4f}",
                    xy=(0.995 if right else 0.005, rec), xycoords=("axes fraction", "data"),
                    xytext=(0, 2 if right else -2), textcoords="offset points",
                    ha="right" if right else "left", va="bottom" if right else "top",
                    fontsize=8, color=color,
                    bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none", alpha=0.8))
    ax.set_xscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
        lambda x, _: f"{x:g}" if f"{x:.0e}"[0] in "25" else ""))  # 2 and 5 of each decade
    ax.set_xlabel(f"cumulative training seconds (log scale; {record['threads']} threads, "
                  "evaluation excluded)")
    ax.set_ylabel("Recall@20 (all non-train items ranked)")
    load = record["machine"].get("load_average_start")
    ax.set_title("Gowalla (NGCF/LightGCN split), factors 64: Recall@20 against training time"
                 + (f"\nload average at start {load[0]:.2f}" if load else ""), fontsize=11)
    ax.set_ylim(bottom=0, top=max(0.2, ax.get_ylim()[1]))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=8,
              title="recipe (epochs, final Recall@20)", title_fontsize=8)
    fig.tight_layout()
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
    return f"PNG: {png}"


if __name__ == "__main__":
    sys.exit(main())
