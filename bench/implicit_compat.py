"""bpr_numba.implicit.BayesianPersonalizedRanking against implicit's own BPR, same data and threads.

For each data set, the parent process (this project's interpreter) builds the
train/test split, writes it to a temporary folder, and runs one worker
subprocess per library: implicit's in ``--peers-python`` (a virtualenv with
implicit, never a dependency), ours in this interpreter. Each worker fits
``--repeats`` times (1 by default) with the given parameters (implicit's
defaults unless changed) and ``show_progress=False``, times each ``fit`` with
``time.perf_counter`` and writes the last fit's factors back. Both workers
first fit a tiny matrix once, untimed (ours: the numba kernels compiled or
loaded from the cache; implicit: its OpenMP threads started). With
``--rounds R`` the pair of workers runs R times, implicit and ours
alternating (implicit first in odd rounds, ours first in even ones), so a
machine whose speed drifts during the run slows both alike; a library's time
is the median of all its fits, and each round's ratio is reported too. The parent scores the last factor pairs with
``bpr_numba.metrics.auc_score((U, V), test, train)`` and writes one JSON
record to ``bench/results/``.

Examples::

    python bench/implicit_compat.py --datasets ml-100k
    python bench/implicit_compat.py --datasets ml-100k synthetic --synthetic-iterations 10
    python bench/implicit_compat.py --datasets ml-100k --threads 2 --repeats 5
    python bench/implicit_compat.py --datasets ml-100k --threads 2 --repeats 3 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_PEERS_PYTHON = "/work/peers-venv/bin/python"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--datasets", nargs="+", choices=["ml-100k", "synthetic"],
                   default=["ml-100k", "synthetic"])
    p.add_argument("--factors", type=int, default=100, help="implicit's default: 100")
    p.add_argument("--learning-rate", type=float, default=0.01, help="implicit's default: 0.01")
    p.add_argument("--regularization", type=float, default=0.01,
                   help="implicit's default: 0.01")
    p.add_argument("--iterations", type=int, default=100, help="implicit's default: 100")
    p.add_argument("--synthetic-iterations", type=int, default=None,
                   help="iterations on the synthetic data (default: --iterations); fewer "
                        "when the machine is busy")
    p.add_argument("--threads", type=int, default=0, help="num_threads of both (0 = all cores)")
    p.add_argument("--seed", type=int, default=0, help="random_state of both models")
    p.add_argument("--repeats", type=int, default=1,
                   help="fits per library (each worker fits this many times, one after the "
                        "other, and reports the median fit seconds; the last fit's factors "
                        "are scored)")
    p.add_argument("--rounds", type=int, default=1,
                   help="times the pair of workers runs, implicit and ours alternating "
                        "(the median is over all fits of all rounds)")
    p.add_argument("--peers-python", default=DEFAULT_PEERS_PYTHON,
                   help="interpreter with implicit installed")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--worker", choices=["implicit", "ours"], help=argparse.SUPPRESS)
    p.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("repeats", "rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1; got {getattr(args, name)}")
    return args


# --------------------------------------------------------------------- workers
def worker(args):
    """Fit one library on ``folder/train.npz``; write ``folder/<lib>.npz`` and print JSON."""
    import numpy as np
    import scipy.sparse as sp

    train = sp.load_npz(args.folder / "train.npz").tocsr().astype(np.float32)
    params = dict(factors=args.factors, learning_rate=args.learning_rate,
                  regularization=args.regularization, iterations=args.iterations,
                  num_threads=args.threads, random_state=args.seed)
    if args.worker == "implicit":
        import implicit
        from implicit.cpu.bpr import BayesianPersonalizedRanking
        version = implicit.__version__
        warm = sp.random(50, 40, density=0.2, format="csr", random_state=0, dtype=np.float32)
        BayesianPersonalizedRanking(**{**params, "iterations": 1}).fit(warm, show_progress=False)
    else:
        import bpr_numba
        from bpr_numba.implicit import BayesianPersonalizedRanking
        version = bpr_numba.__version__
        warm = sp.random(50, 40, density=0.2, format="csr", random_state=0, dtype=np.float32)
        BayesianPersonalizedRanking(**{**params, "iterations": 1}).fit(warm, show_progress=False)
    times = []
    for _ in range(args.repeats):
        model = BayesianPersonalizedRanking(**params)
        start = time.perf_counter()
        model.fit(train, show_progress=False)
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    np.savez(args.folder / f"{args.worker}.npz", user_factors=np.asarray(model.user_factors),
             item_factors=np.asarray(model.item_factors))
    print(json.dumps({"library": args.worker, "version": version, "fit_seconds": seconds,
                      "fit_seconds_all": times,
                      "samples_per_second": train.nnz * args.iterations / seconds}))


def run_worker(python, args, lib, folder, iterations):
    cmd = [python, str(Path(__file__).resolve()), "--worker", lib, "--folder", str(folder),
           "--factors", str(args.factors), "--learning-rate", str(args.learning_rate),
           "--regularization", str(args.regularization), "--iterations", str(iterations),
           "--threads", str(args.threads), "--seed", str(args.seed),
           "--repeats", str(args.repeats)]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"{lib} worker failed:\n{out.stderr}")
    record = json.loads(out.stdout.strip().splitlines()[-1])
    record["process_seconds"] = time.perf_counter() - start
    return record


# ---------------------------------------------------------------------- parent
def load(name):
    import numpy as np
    import bpr_numba

    if name == "ml-100k":
        train, test = bpr_numba.load_movielens("100k", split="ua", min_rating=4)
        return train.tocsr().astype(np.float32), test.tocsr().astype(np.float32)
    X = bpr_numba.make_synthetic(200_000, 50_000, 12_500_000, random_state=0)
    try:
        from bpr_numba.split import holdout_split
    except ImportError:  # before holdout_split moved to split
        from bpr_numba.datasets import holdout_split
    train, test = holdout_split(X, 0.2, random_state=0)
    return train.tocsr().astype(np.float32), test.tocsr().astype(np.float32)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    import numpy as np
    import scipy.sparse as sp
    from bpr_numba.metrics import auc_score

    sys.path.insert(0, str(HERE))
    from _common import cpu_model, git_state

    load_average = os.getloadavg()[0]
    results = []
    for name in args.datasets:
        train, test = load(name)
        iterations = args.iterations
        if name == "synthetic" and args.synthetic_iterations is not None:
            iterations = args.synthetic_iterations
        with tempfile.TemporaryDirectory(prefix="implicit-compat-") as tmp:
            folder = Path(tmp)
            sp.save_npz(folder / "train.npz", train, compressed=False)
            row = {"dataset": name, "shape": list(train.shape), "train_nnz": int(train.nnz),
                   "test_nnz": int(test.nnz), "iterations": iterations}
            rounds = []
            pair = (("implicit", args.peers_python), ("ours", sys.executable))
            for r in range(args.rounds):
                this_round = {}
                for lib, python in pair if r % 2 == 0 else pair[::-1]:
                    record = run_worker(python, args, lib, folder, iterations)
                    with np.load(folder / f"{lib}.npz") as f:
                        U = f["user_factors"].astype(np.float32)
                        V = f["item_factors"].astype(np.float32)
                    record["auc"] = float(auc_score((U, V), test, train))
                    this_round[lib] = record
                    print(f"{name:9s} {lib:8s} fit {record['fit_seconds']:8.2f} s  "
                          f"{record['samples_per_second'] / 1e6:6.2f} M samples/s  "
                          f"AUC {record['auc']:.4f}" + (f"  (round {r + 1})" if args.rounds > 1
                                                        else ""), flush=True)
                rounds.append(this_round)
            for lib in ("implicit", "ours"):
                row[lib] = dict(rounds[-1][lib])
                fits = [t for rnd in rounds for t in rnd[lib]["fit_seconds_all"]]
                row[lib]["fit_seconds_all"] = fits
                row[lib]["fit_seconds"] = float(np.median(fits))
                row[lib]["samples_per_second"] = train.nnz * iterations / row[lib]["fit_seconds"]
            row["round_speedups"] = [rnd["implicit"]["fit_seconds"] / rnd["ours"]["fit_seconds"]
                                     for rnd in rounds]
            row["speedup"] = row["implicit"]["fit_seconds"] / row["ours"]["fit_seconds"]
            row["auc_difference"] = row["ours"]["auc"] - row["implicit"]["auc"]
            print(f"{name:9s} speed-up {row['speedup']:.2f}x (median fits "
                  f"{row['implicit']['fit_seconds']:.2f} s / {row['ours']['fit_seconds']:.2f} s"
                  + (f"; rounds {', '.join(f'{x:.2f}x' for x in row['round_speedups'])}"
                     if args.rounds > 1 else "")
                  + f"), AUC ours - implicit {row['auc_difference']:+.4f}", flush=True)
            results.append(row)
    commit, dirty = git_state(HERE)
    record = {"bench": "implicit_compat", "argv": sys.argv[1:],
              "repeats": args.repeats, "rounds": args.rounds,
              "params": {"factors": args.factors, "learning_rate": args.learning_rate,
                         "regularization": args.regularization, "threads": args.threads,
                         "seed": args.seed},
              "cpu": cpu_model(), "cores": os.cpu_count(), "load_average_1min": load_average,
              "python": platform.python_version(), "numpy": np.__version__,
              "git_commit": commit, "git_dirty": dirty, "results": results}
    try:
        import numba
        record["numba"] = numba.__version__
    except ImportError:
        pass
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"implicit_compat-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(record, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
