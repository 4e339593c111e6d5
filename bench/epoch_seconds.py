"""Epoch seconds of recipes that differ in their parameters, each model's epochs in turn.

For a parameter that changes the work of an epoch (say ``candidate_exponent``,
which shares the same number of candidates out unevenly), the recipes can
share a process: one model per recipe is fitted for one epoch (the compile or
cache load, not timed), then ``--rounds`` rounds in which each model trains
one more epoch (``fit_partial``) in turn, so a slow spell of this shared
machine falls on all alike. (Two revisions of the code cannot share a
process: ``bench/ab_epochs.py`` runs those.)

Recipes: each ``--recipe`` is a JSON object of ``BPR.preset`` overrides, with
``"preset"`` the preset's name ("quality" when absent), on Gowalla's
train.txt (``bpr_numba.load_gowalla()``), factors 64, ``random_state=0``,
``--threads`` threads. Reported per recipe: the median and minimum epoch
seconds, and the ratios of the first recipe's to each one's (above 1: that
recipe is faster), of the medians, of the minima and the median of the
rounds' ratios.

Writes ``bench/results/epoch_seconds-<timestamp>.json`` (ignored by git) and
prints a markdown table. About 2 minutes for three recipes and 8 rounds.

Usage::

    python bench/epoch_seconds.py --recipe '{"candidate_exponent": 0}' --recipe '{}'
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from _common import add_output_argument, finish, machine_info, make_parser, options, table


def parse_args(argv=None):
    parser = make_parser(__doc__, "epoch_seconds.py")
    parser.add_argument("--recipe", action="append", required=True, metavar="JSON",
                        help="BPR.preset overrides (\"preset\": its name); give two or more")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=8, help="timed epochs per model")
    add_output_argument(parser, "epoch_seconds")
    args = parser.parse_args(argv)
    args.recipes = [json.loads(text) for text in args.recipe]
    if len(args.recipes) < 2 or not all(isinstance(r, dict) for r in args.recipes):
        parser.error("give two or more --recipe JSON objects")
    return args


def epoch_seconds(train, recipes, args):
    """Each recipe's epoch seconds, the models' epochs taken in turn."""
    from bpr_numba import BPR

    models = []
    for recipe in recipes:
        overrides = dict(recipe)
        name = overrides.pop("preset", "quality")
        model = BPR.preset(name, **{"factors": 64, "random_state": 0,
                                    "num_threads": args.threads, **overrides})
        model.fit_partial(train, epochs=1, show_progress=False)
        models.append(model)
    seconds = [[] for _ in models]
    for _ in range(args.rounds):
        for k, model in enumerate(models):
            model.fit_partial(train, epochs=1, show_progress=False)
            seconds[k].append(model.history_[-1]["seconds"])
    return seconds


def markdown(record):
    """The record's table (bench/report.py may call this)."""
    lines = [f"`{record['command']}` on {record['machine'].get('cpu')}, "
             f"{record['args']['threads']} threads; load average "
             f"{record['load_average_start'][0]:.2f} at start, "
             f"{record['load_average_end'][0]:.2f} at end. Ratios: the first "
             "recipe's seconds over each one's.", ""]
    first = np.array(record["seconds"][0])
    rows = []
    for recipe, seconds in zip(record["recipes"], record["seconds"]):
        s = np.array(seconds)
        rows.append([f"`{json.dumps(recipe)}`", f"{np.median(s):.3f} ({s.min():.3f})",
                     f"{np.median(first) / np.median(s):.2f}", f"{first.min() / s.min():.2f}",
                     f"{np.median(first / s):.2f}"])
    lines += table(["recipe", "epoch s, median (min)", "ratio of medians", "ratio of minima",
                    "median of round ratios"], rows)
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    t_start = time.perf_counter()
    import bpr_numba

    train = bpr_numba.load_gowalla()[0]
    command = ("python bench/epoch_seconds.py " + " ".join(
        f"--recipe '{json.dumps(r)}'" for r in args.recipes)
        + f" --threads {args.threads} --rounds {args.rounds}")
    record = {"kind": "epoch_seconds", "command": command, "machine": machine_info(),
              "args": options(args), "recipes": args.recipes,
              "load_average_start": os.getloadavg()}
    record["seconds"] = epoch_seconds(train, args.recipes, args)
    finish(record, "epoch_seconds", markdown, args.output, t_start)


if __name__ == "__main__":
    main()
