"""Candidates in runs against independent candidates on Gowalla: epoch seconds and quality.

``candidate_sampling="window"`` draws a positive's candidates as runs of up to
25 items consecutive in an item order shuffled every epoch (the item rows are
laid out in that order for the epoch), ``"independent"`` draws each one at a
random row; ``"auto"`` (the default) takes runs from 25 candidates per
positive. Both are measured in one process on the same matrix
(``bpr_numba.load_gowalla()``, train.txt; factors 64, ``--threads`` threads):

* Speed: for each preset ("fast": 43 candidates, row-wise Adagrad; "quality":
  50 candidates, Adagrad), one model per sampling, fitted for one epoch (the
  compile or cache load), then ``--rounds`` rounds in which each model trains
  one more epoch (``fit_partial``) in turn, so a slow spell of this shared
  machine falls on both alike. Reported: the median and min epoch seconds
  of each, their ratios (independent / window), and the per-round ratios'
  median.
* Quality: ``BPR(random_state=s)`` (the defaults, 10 epochs) for the seeds
  ``--seeds`` with each sampling; Recall@20 and NDCG@20 on test.txt (the
  papers' protocol: every item without a train interaction ranked); their
  mean, min and max, and the training seconds.

Writes ``bench/results/candidate_runs-<timestamp>.json`` (ignored by git) and
prints the markdown tables; ``python bench/report.py --section candidate_runs``
puts them into bench/RESULTS.md. About 4 minutes on 2 shared cores.

Usage::

    python bench/candidate_runs.py
    python bench/candidate_runs.py --rounds 3 --seeds 0   # a smoke test
"""

from __future__ import annotations

import os
import time

import numpy as np

from _common import add_output_argument, finish, machine_info, make_parser, options, table

SAMPLINGS = ("independent", "window")


def parse_args(argv=None):
    parser = make_parser(__doc__, "candidate_runs.py")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10, help="timed epochs per model")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    add_output_argument(parser, "candidate_runs")
    return parser.parse_args(argv)


def speed(train, preset, args):
    """Median epoch seconds of each sampling, epochs taken in turn."""
    from bpr_numba import BPR

    models = {s: BPR.preset(preset, factors=64, epochs=1, random_state=0,
                            num_threads=args.threads, candidate_sampling=s)
              for s in SAMPLINGS}
    for model in models.values():
        model.fit(train, show_progress=False)
    seconds = {s: [] for s in SAMPLINGS}
    for _ in range(args.rounds):
        for s, model in models.items():
            model.fit_partial(train, epochs=1, show_progress=False)
            seconds[s].append(model.history_[-1]["seconds"])
    ratios = np.divide(seconds["independent"], seconds["window"])
    return {"preset": preset,
            "candidates": models["window"]._recipe().candidates_for(train.shape[1], train.nnz),
            "seconds": seconds,
            "median": {s: float(np.median(v)) for s, v in seconds.items()},
            "median_of_round_ratios": float(np.median(ratios))}


def quality(train, test, args):
    """Recall@20 / NDCG@20 of the defaults with each sampling, per seed."""
    from bpr_numba import BPR
    from bpr_numba.metrics import evaluate

    rows = []
    for seed in args.seeds:
        for s in SAMPLINGS:
            model = BPR(random_state=seed, num_threads=args.threads, candidate_sampling=s)
            start = time.perf_counter()
            model.fit(train, show_progress=False)
            seconds = time.perf_counter() - start
            scores = evaluate(model, test, train, metrics=("recall@20", "ndcg@20"))
            rows.append({"seed": seed, "sampling": s, "seconds": seconds,
                         **{k: float(v) for k, v in scores.items()}})
    return rows


def markdown(record):
    """The record's tables (bench/report.py calls this)."""
    lines = [f"`{record['command']}` on {record['machine'].get('cpu')}, "
             f"{record['args']['threads']} threads; load average "
             f"{record['load_average_start'][0]:.2f} at start, "
             f"{record['load_average_end'][0]:.2f} at end.", "",
             "Epoch seconds, each model's epochs in turn (medians):", ""]
    rows = []
    for run in record["speed"]:
        med = run["median"]
        low = {s: min(v) for s, v in run["seconds"].items()}
        rows.append([run["preset"], run["candidates"],
                     f"{med['independent']:.3f} ({low['independent']:.3f})",
                     f"{med['window']:.3f} ({low['window']:.3f})",
                     f"{med['independent'] / med['window']:.2f}",
                     f"{low['independent'] / low['window']:.2f}",
                     f"{run['median_of_round_ratios']:.2f}"])
    lines += table(["preset", "candidates", "independent s, median (min)",
                    "window s, median (min)", "ratio of medians", "ratio of minima",
                    "median of round ratios"], rows)
    lines += ["", f"`BPR(random_state=s)` (10 epochs), seeds {record['args']['seeds']}: "
              "Recall@20 / NDCG@20 on test.txt, mean [min..max]; training seconds "
              "(the first fit of each sampling includes loading its kernel):", ""]
    rows = []
    for s in SAMPLINGS:
        runs = [r for r in record["quality"] if r["sampling"] == s]
        cells = [s]
        for key in ("recall@20", "ndcg@20"):
            values = [r[key] for r in runs]
            cells.append(f"{np.mean(values):.4f} [{min(values):.4f}..{max(values):.4f}]")
        cells.append(f"{np.median([r['seconds'] for r in runs]):.1f}")
        rows.append(cells)
    lines += table(["candidate_sampling", "Recall@20", "NDCG@20", "median training s"], rows)
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    t_start = time.perf_counter()
    import bpr_numba

    train, test = bpr_numba.load_gowalla()
    command = (f"python bench/candidate_runs.py --threads {args.threads} --rounds {args.rounds} "
               f"--seeds {' '.join(map(str, args.seeds))}")
    record = {"kind": "candidate_runs", "command": command, "machine": machine_info(),
              "args": options(args), "load_average_start": os.getloadavg()}
    record["speed"] = [speed(train, preset, args) for preset in ("fast", "quality")]
    record["quality"] = quality(train, test, args)
    finish(record, "candidate_runs", markdown, args.output, t_start)


if __name__ == "__main__":
    main()
