"""Epoch seconds of this checkout against another git revision, in alternating fresh processes.

For a kernel change meant only to be faster (a prefetch, a memory layout), the
two versions cannot share a process, and this shared machine's speed drifts by
up to 2x within an hour, so one run of each says little. Here each round runs
one fresh process per version and recipe, the versions' order alternating from
round to round, so a slow spell falls on both alike:

* the base revision (``--base``) is checked out into a temporary git worktree
  and imported from there, this checkout from its own folder (uncommitted
  changes included; the record says whether it was dirty); each child checks
  which ``bpr_numba`` it imported;
* each version has its own numba cache, kept for all rounds, so only the first
  round compiles;
* a child fits one epoch (the compile or the cache load, not timed), then
  ``--epochs`` epochs with ``fit_partial``, and reports each epoch's seconds
  from ``history_``.

Recipes (``--recipes``): ``quality``, ``BPR.preset("quality")`` on Gowalla
(train.txt, factors 64: 50 candidates in runs, Adagrad); ``fast``, ``BPR()``
on Gowalla (43 candidates in runs, row-wise Adagrad); ``independent``, the
quality preset with ``candidate_sampling="independent"``; ``movielens``,
``BPR()`` on MovieLens 100k ua.base (3 independent candidates; an "epoch" is
there a whole 10-epoch fit, timed by the wall clock, since its epochs take
milliseconds). Reported per recipe: each version's median and minimum epoch
seconds, the ratios base / this (above 1: this checkout is faster), the median
of the rounds' ratios and in how many rounds this checkout was faster.

Writes ``bench/results/ab_epochs-<timestamp>.json`` (ignored by git) and prints
a markdown table. About 1 minute per round with the default recipes.

Usage::

    python bench/ab_epochs.py --base 184f7e5
    python bench/ab_epochs.py --base HEAD~1 --recipes movielens --rounds 3
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import (REPO, add_output_argument, finish, git_state, log, machine_info,
                     make_parser, options, run_json, table)

RECIPES = ("quality", "fast", "independent", "movielens")

# The child: train one recipe and print its epoch seconds as the last stdout line.
CHILD = r"""
import json, sys, time
import bpr_numba
from bpr_numba import BPR
recipe, epochs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if recipe == "movielens":
    train = bpr_numba.load_movielens()[0]
    BPR(random_state=0, num_threads=threads).fit(train, show_progress=False)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        BPR(random_state=0, num_threads=threads).fit(train, show_progress=False)
        seconds.append(time.perf_counter() - start)
else:
    train = bpr_numba.load_gowalla()[0]
    kw = {"quality": dict(name="quality"), "fast": dict(name="fast"),
          "independent": dict(name="quality", candidate_sampling="independent")}[recipe]
    model = BPR.preset(kw.pop("name"), factors=64, epochs=1, random_state=0,
                       num_threads=threads, **kw)
    model.fit(train, show_progress=False)
    seconds = []
    for _ in range(epochs):
        model.fit_partial(train, epochs=1, show_progress=False)
        seconds.append(model.history_[-1]["seconds"])
print(json.dumps({"module": bpr_numba.__file__, "seconds": seconds}))
"""


def resolve(revision):
    """The commit that ``revision`` names in this checkout, or None."""
    proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"],
                          cwd=REPO, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def parse_args(argv=None):
    parser = make_parser(__doc__, "ab_epochs.py")
    parser.add_argument("--base", required=True, help="the git revision to compare against")
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=["quality", "fast"])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per child")
    parser.add_argument("--threads", type=int, default=2)
    add_output_argument(parser, "ab_epochs")
    args = parser.parse_args(argv)
    args.base_commit = resolve(args.base)
    if args.base_commit is None:
        parser.error(f"--base {args.base!r} names no commit of the checkout at {REPO}.")
    for name in ("rounds", "epochs", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1; got {getattr(args, name)}.")
    return args


def run_child(root, cache, recipe, args):
    """One fresh process importing bpr_numba from ``root``; its epoch seconds."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(root))
    # Run from the copy's folder: ``python -c`` puts the working folder first on sys.path.
    out, _ = run_json([sys.executable, "-c", CHILD, recipe, str(args.epochs), str(args.threads)],
                      env=env, cwd=root)
    module = Path(out["module"]).resolve()
    if Path(root).resolve() not in module.parents:
        raise RuntimeError(f"the child imported {module}, not the copy under {root}: is "
                           "bpr_numba installed other than editable from this checkout?")
    return out["seconds"]


def compare(args, base_root, tmp):
    """``{recipe: {"base": [...], "head": [...], "rounds": [(base median, head median)]}}``."""
    roots = {"base": base_root, "head": REPO}
    caches = {side: Path(tmp) / f"cache-{side}" for side in roots}
    runs = {r: {"base": [], "head": [], "rounds": []} for r in args.recipes}
    for k in range(args.rounds):
        sides = ("base", "head") if k % 2 == 0 else ("head", "base")
        for recipe in args.recipes:
            medians = {}
            for side in sides:
                seconds = run_child(roots[side], caches[side], recipe, args)
                runs[recipe][side] += seconds
                medians[side] = float(np.median(seconds))
            runs[recipe]["rounds"].append((medians["base"], medians["head"]))
            log(f"round {k + 1}/{args.rounds} {recipe}: base {medians['base']:.3f} s, "
                f"this {medians['head']:.3f} s")
    return runs


def summary(run):
    base, head = np.array(run["base"]), np.array(run["head"])
    ratios = [b / h for b, h in run["rounds"]]
    return {"base_median": float(np.median(base)), "head_median": float(np.median(head)),
            "base_min": float(base.min()), "head_min": float(head.min()),
            "ratio_of_medians": float(np.median(base) / np.median(head)),
            "ratio_of_minima": float(base.min() / head.min()),
            "median_of_round_ratios": float(np.median(ratios)),
            "rounds_faster": int(sum(r > 1 for r in ratios)), "rounds": len(ratios)}


def markdown(record):
    """The record's table (bench/report.py may call this)."""
    lines = [f"`{record['command']}` on {record['machine'].get('cpu')}, "
             f"{record['args']['threads']} threads, base {record['base_commit'][:10]}, this "
             f"{record['head_commit'][:10]}{' (dirty)' if record['head_dirty'] else ''}; load "
             f"average {record['load_average_start'][0]:.2f} at start, "
             f"{record['load_average_end'][0]:.2f} at end.", ""]
    rows = []
    for recipe, s in record["summary"].items():
        rows.append([recipe, f"{s['base_median']:.3f} ({s['base_min']:.3f})",
                     f"{s['head_median']:.3f} ({s['head_min']:.3f})",
                     f"{s['ratio_of_medians']:.2f}", f"{s['ratio_of_minima']:.2f}",
                     f"{s['median_of_round_ratios']:.2f}",
                     f"{s['rounds_faster']} of {s['rounds']}"])
    lines += table(["recipe", "base s, median (min)", "this s, median (min)",
                    "ratio of medians", "ratio of minima", "median of round ratios",
                    "rounds this was faster"], rows)
    return "\n".join(lines)


def main(argv=None):
    start = time.perf_counter()
    args = parse_args(argv)
    base_commit = args.base_commit
    head_commit, head_dirty = git_state(REPO)
    record = {"command": "python bench/ab_epochs.py " + " ".join(argv or sys.argv[1:]),
              "args": options(args), "machine": machine_info(),
              "base_commit": base_commit, "head_commit": head_commit, "head_dirty": head_dirty,
              "load_average_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bpr-ab-") as tmp:
        base_root = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(base_root),
                        base_commit], cwd=REPO, check=True)
        try:
            runs = compare(args, base_root, tmp)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_root)], cwd=REPO,
                           check=False)
    record["runs"] = runs
    record["summary"] = {recipe: summary(run) for recipe, run in runs.items()}
    finish(record, "ab_epochs", markdown, args.output, start)


if __name__ == "__main__":
    main()
