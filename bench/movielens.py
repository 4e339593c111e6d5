"""The main job over several seeds: AUC, wall time, JIT compile vs warm cache.

Runs ``bpr-numba train --json`` in fresh processes (as a user would), once with
an empty numba cache (first-call compile) and then with the warm cache for each
seed, and prints medians and spreads. ``--keras`` benchmarks the
Keras-compatible mode (seconds per epoch) instead of the fast mode.

Usage::

    BPR_NUMBA_DATA=../shared/data python bench/movielens.py --seeds 5
    BPR_NUMBA_DATA=../shared/data python bench/movielens.py --keras --epochs 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

from _common import environment, run_json, write_record


def run_train(extra, cache_dir):
    """Run ``bpr-numba train --json`` in a fresh process; return (json record, wall seconds)."""
    return run_json([sys.executable, "-m", "bpr_numba", "train", "--json", *extra],
                    env=dict(os.environ, NUMBA_CACHE_DIR=cache_dir))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    parser.add_argument("--keras", action="store_true", help="benchmark the Keras-compatible mode")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the CLI's)")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    extra = ["--threads", str(args.threads)]
    if args.keras:
        extra.append("--keras")
    if args.epochs:
        extra += ["--epochs", str(args.epochs)]
    with tempfile.TemporaryDirectory() as cache:
        cold, cold_wall = run_train(extra + ["--seed", "0"], cache)
        runs = [run_train(extra + ["--seed", str(s)], cache) for s in range(args.seeds)]
    records = [r for r, _ in runs]
    walls = [w for _, w in runs]
    finals = [r["final_auc"] for r in records]
    n_epochs = len(records[0]["auc"])
    per_epoch = [r["train_seconds"] / n_epochs for r in records]
    summary = {
        "mode": "keras" if args.keras else "fast",
        "epochs": n_epochs,
        "seeds": args.seeds,
        "final_auc_median": statistics.median(finals),
        "final_auc_min": min(finals),
        "final_auc_max": max(finals),
        "auc_median_by_epoch": [statistics.median(r["auc"][e] for r in records)
                                for e in range(n_epochs)],
        "total_seconds_median": statistics.median(r["total_seconds"] for r in records),
        "process_wall_seconds_median": statistics.median(walls),
        "train_seconds_per_epoch_median": statistics.median(per_epoch),
        "cold_cache_total_seconds": cold["total_seconds"],
        "cold_cache_process_wall_seconds": cold_wall,
        "machine": environment(),
    }
    print(f"mode {summary['mode']}, {n_epochs} epochs, {args.seeds} seeds")
    print(f"final full AUC: median {summary['final_auc_median']:.4f} "
          f"(min {summary['final_auc_min']:.4f}, max {summary['final_auc_max']:.4f})")
    for e in (0, 9, 19):
        if e < n_epochs:
            print(f"  median AUC after epoch {e + 1}: {summary['auc_median_by_epoch'][e]:.4f}")
    print(f"total_seconds (main() to last line), warm cache: median "
          f"{summary['total_seconds_median']:.2f} s; whole process {summary['process_wall_seconds_median']:.2f} s")
    print(f"training seconds per epoch: median {summary['train_seconds_per_epoch_median']:.3f} s")
    print(f"cold cache (first-call JIT compile): total_seconds {cold['total_seconds']:.2f} s, "
          f"whole process {cold_wall:.2f} s")
    path = write_record(summary, f"movielens-{summary['mode']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
