"""Compile cost: cold and warm numba cache seconds of the CLI and of each public entry point.

Every measurement is a fresh process. Per case and repeat, a new empty
``NUMBA_CACHE_DIR`` (a temporary folder) is made; the case runs once in a
process with it ("cold": the kernels compile and are written to the cache),
then again in a second process with the same folder ("warm": the kernels load
from the cache). Cases:

``cli``            the whole ``python -m bpr_numba train --dataset ml-100k``
                   (``BPR_NUMBA_DATA=--data``): the child installs the listener
                   below and runs bpr_numba's ``__main__`` with that argv, as
                   ``python -m`` does (its output is captured and dropped);
``fit``            ``BPR(random_state=0).fit(X, show_progress=False)``;
``fit_runs``       ``BPR(random_state=0, candidate_sampling="window").fit(X, ...)`` (the
                   kernel of candidates in runs, which "auto" picks on large
                   catalogues such as Gowalla's);
``keras_fit``      ``BPR.keras_compatible(random_state=0).fit(X, show_progress=False)``;
``full_auc``       ``metrics.full_auc((U, V), test)``;
``evaluate``       ``metrics.evaluate((U, V), test, train, metrics=["recall@20", "ndcg@20"])``;
``recommend``      ``model.recommend(np.arange(50), X[:50], N=10)``;
``similar_items``  ``model.similar_items(np.arange(50), N=10)``.

Data: ``X = make_synthetic(300, 200, 3000, random_state=0)``, random float32
factors ``U`` (300 x 16) and ``V`` (200 x 16), ``test`` and ``train`` from
``scipy.sparse.random`` (densities 0.05 and 0.1, seeds 1 and 2; test's pairs
removed from train). ``recommend``
and ``similar_items`` use a model fitted on ``X`` once at the start (in its own
process and cache folder) and saved with ``model.save``; their children
``BPR.load`` it before the timed call.

Per process: ``process_wall_s`` (spawn to exit, as a user waits),
``import_s`` (numpy, scipy, numba and bpr_numba), ``first_call_s`` (the entry
point's first call: compile or cache load, then the work) and, except for
``cli``, ``second_call_s`` (the same call again, warm). Per kernel (where
numba tells): a listener on numba's ``"numba:compile"`` events
(``numba.core.event``; fired only when a dispatcher really compiles, not when
it loads from the cache) records each compiled dispatcher by its Python
function's module and qualified name, with inclusive seconds (nested compiles
of the njit functions it calls included) and self seconds (those excluded).
Cache loads are counted from the dispatchers' ``stats.cache_hits``, found by
scanning the imported ``bpr_numba`` modules for dispatchers; so no kernel name
is written here and moved or renamed kernels are still found.

Reported: the median (and min) over ``--repeats`` of each figure. The machine
is shared: compile seconds vary with the load on the other core.

Writes ``bench/results/compile-<timestamp>.json`` (ignored by git) and prints
markdown tables; ``python bench/report.py`` renders the newest one into
bench/RESULTS.md.

Usage::

    python bench/compile.py                       # 3 repeats, every case
    python bench/compile.py --repeats 1 --cases fit evaluate
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import (REPO, add_output_argument, environment, finish, log, make_parser,
                     python_env, run_json, table, versions, versions_line)

HERE = Path(__file__).resolve()
CASES = ("cli", "fit", "fit_runs", "keras_fit", "full_auc", "evaluate", "recommend", "similar_items")
CLI_ARGV = ("train", "--dataset", "ml-100k")
MODEL_FILE = "model.npz"


# ------------------------------------------------------------------ the child


def _tiny():
    """The small inputs of the entry points (see the module docstring)."""
    import numpy as np
    import scipy.sparse as sp

    from bpr_numba import make_synthetic

    X = make_synthetic(300, 200, 3000, random_state=0)
    rng = np.random.default_rng(0)
    U = rng.standard_normal((X.shape[0], 16)).astype(np.float32)
    V = rng.standard_normal((X.shape[1], 16)).astype(np.float32)
    test = sp.random(*X.shape, density=0.05, random_state=1, format="csr", dtype=np.float32)
    train = sp.random(*X.shape, density=0.1, random_state=2, format="csr", dtype=np.float32)
    train = (train - train.multiply(test != 0)).tocsr()  # disjoint, as evaluate requires
    train.eliminate_zeros()
    return X, U, V, test, train


def _setup(case, workdir):
    """A zero-argument callable that runs ``case``'s entry point (the setup is not timed)."""
    import numpy as np

    from bpr_numba import BPR, metrics

    if case == "cli":
        return _run_cli
    if case == "prepare":
        X = _tiny()[0]
        return lambda: BPR(random_state=0).fit(X, show_progress=False).save(
            str(Path(workdir) / MODEL_FILE))
    X, U, V, test, train = _tiny()
    if case == "fit":
        return lambda: BPR(random_state=0).fit(X, show_progress=False)
    if case == "fit_runs":
        return lambda: BPR(random_state=0, candidate_sampling="window").fit(
            X, show_progress=False)
    if case == "keras_fit":
        return lambda: BPR.keras_compatible(random_state=0).fit(X, show_progress=False)
    if case == "full_auc":
        return lambda: metrics.full_auc((U, V), test)
    if case == "evaluate":
        return lambda: metrics.evaluate((U, V), test, train, metrics=["recall@20", "ndcg@20"])
    model = BPR.load(str(Path(workdir) / MODEL_FILE))
    users = np.arange(50)
    if case == "recommend":
        return lambda: model.recommend(users, X[:50], N=10)
    if case == "similar_items":
        return lambda: model.similar_items(np.arange(50), N=10)
    raise ValueError(f"unknown case {case!r}")


def _run_cli():
    """``python -m bpr_numba train --dataset ml-100k`` in this process (output dropped)."""
    import contextlib
    import io
    import runpy

    argv, sys.argv = sys.argv, ["bpr-numba", *CLI_ARGV]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            runpy.run_module("bpr_numba", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise RuntimeError(f"bpr-numba {' '.join(CLI_ARGV)} exited with {exc.code}")
    finally:
        sys.argv = argv


def _kernel_name(dispatcher):
    func = getattr(dispatcher, "py_func", None)
    if func is None:
        return repr(dispatcher)
    return f"{func.__module__}.{func.__qualname__}"


def _compile_listener():
    """A ``numba.core.event.Listener`` recording each compile: name, signature, seconds."""
    from numba.core import event

    class Compiles(event.Listener):
        def __init__(self):
            self.stack = []  # [name, signature, start, seconds of nested compiles]
            self.done = []

        def on_start(self, ev):
            data = ev.data or {}
            self.stack.append([_kernel_name(data.get("dispatcher")), str(data.get("args")),
                               time.perf_counter(), 0.0])

        def on_end(self, ev):
            name, signature, start, nested = self.stack.pop()
            seconds = time.perf_counter() - start
            if self.stack:
                self.stack[-1][3] += seconds
            self.done.append({"kernel": name, "signature": signature, "seconds": seconds,
                              "self_seconds": seconds - nested, "depth": len(self.stack)})

    return Compiles()


def _cache_stats():
    """``{kernel: {"hits": n, "misses": n}}`` of the dispatchers in the imported bpr_numba modules."""
    from numba.core.dispatcher import Dispatcher

    out, seen = {}, set()
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("bpr_numba") or module is None:
            continue
        for value in list(vars(module).values()):
            if not isinstance(value, Dispatcher) or id(value) in seen:
                continue
            seen.add(id(value))
            stats = value.stats
            hits, misses = sum(stats.cache_hits.values()), sum(stats.cache_misses.values())
            if hits or misses:
                out[_kernel_name(value)] = {"hits": hits, "misses": misses}
    return out


def child(case, workdir):
    """Run one case in this (fresh) process and print its JSON record as the last line."""
    import json

    t0 = time.perf_counter()
    import numba  # noqa: F401
    import numpy  # noqa: F401
    import scipy.sparse  # noqa: F401
    from numba.core import event

    import bpr_numba  # noqa: F401

    out = {"case": case, "import_s": time.perf_counter() - t0,
           "versions": dict(versions("numpy", "numba", "scipy", "bpr_numba"),
                            python=sys.version.split()[0])}
    call = _setup(case, workdir)
    listener = _compile_listener()
    with event.install_listener("numba:compile", listener):
        t = time.perf_counter()
        call()
        out["first_call_s"] = time.perf_counter() - t
    if case not in ("cli", "prepare"):
        t = time.perf_counter()
        call()
        out["second_call_s"] = time.perf_counter() - t
    out["compiles"] = listener.done
    out["compile_s"] = sum(c["seconds"] for c in listener.done if c["depth"] == 0)
    out["cache"] = _cache_stats()
    out["cache_hits"] = sum(c["hits"] for c in out["cache"].values())
    print(json.dumps(out))


# ------------------------------------------------------------------ the driver


def run_case(args, case, cache_dir, workdir):
    """One fresh process of ``case`` with ``NUMBA_CACHE_DIR=cache_dir``; its record."""
    env = python_env(NUMBA_CACHE_DIR=str(cache_dir), BPR_NUMBA_DATA=args.data)
    record, wall = run_json([args.python, str(HERE), "--_child", case, "--_workdir", str(workdir)],
                            env=env, timeout=args.timeout)
    record["process_wall_s"] = wall
    return record


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "n": len(values)}


def summarise(case, runs):
    """Median/min over the repeats of each figure; kernels ranked by cold inclusive seconds."""
    out = {"case": case}
    for label in ("cold", "warm"):
        rs = [r[label] for r in runs]
        out[label] = {key: spread([r.get(key) for r in rs])
                      for key in ("process_wall_s", "import_s", "first_call_s", "second_call_s",
                                  "compile_s", "cache_hits")}
        out[label]["compiled"] = spread([len(r["compiles"]) for r in rs])
    kernels = {}
    for r in runs:
        per_run = {}
        for c in r["cold"]["compiles"]:
            k = per_run.setdefault(c["kernel"], {"seconds": 0.0, "self_seconds": 0.0,
                                                 "signatures": 0})
            k["seconds"] += c["seconds"]
            k["self_seconds"] += c["self_seconds"]
            k["signatures"] += 1
        for name, k in per_run.items():
            kernels.setdefault(name, []).append(k)
    out["kernels"] = sorted(
        ({"kernel": name, "signatures": max(k["signatures"] for k in ks),
          "seconds": statistics.median(k["seconds"] for k in ks),
          "self_seconds": statistics.median(k["self_seconds"] for k in ks), "runs": len(ks)}
         for name, ks in kernels.items()), key=lambda k: -k["seconds"])
    return out


def markdown(record):
    """The tables of a compile-*.json record (bench/report.py calls this)."""
    env = record["environment"]

    def cell(s, spec=".2f"):
        return "-" if not s else format(s["median"], spec)

    lines = [f"Median over {record['repeats']} repeat(s), a fresh process each; cold = empty "
             "NUMBA_CACHE_DIR (compiles), warm = a second process on that cache (loads). "
             "\"compiles\" counts the `numba:compile` events of the first call (one per "
             "dispatcher and signature, numba's own overload implementations included), "
             "\"compile s\" sums the top-level ones; \"cache loads\" counts the cache hits of "
             "the dispatchers found in the bpr_numba modules. The machine is shared, so compile "
             "seconds are noisy.", ""]
    rows = []
    for s in record["cases"]:
        c, w = s["cold"], s["warm"]
        rows.append([s["case"], cell(c["process_wall_s"]), cell(w["process_wall_s"]),
                     cell(c["import_s"]), cell(c["first_call_s"]), cell(w["first_call_s"]),
                     cell(w["second_call_s"], ".4f"), cell(c["compiled"], ".0f"),
                     cell(c["compile_s"]), cell(w["compiled"], ".0f"),
                     cell(w["cache_hits"], ".0f")])
    lines += table(("entry point", "cold process s", "warm process s", "import s (cold)",
                    "cold first call s", "warm first call s", "second call s (warm)",
                    "compiles (cold)", "compile s (cold)", "compiles (warm)",
                    "cache loads (warm)"), rows)
    kernels = {}
    for s in record["cases"]:
        for k in s["kernels"]:
            best = kernels.get(k["kernel"])
            if best is None or k["seconds"] > best[0]["seconds"]:
                kernels[k["kernel"]] = (k, s["case"])
    top = sorted(kernels.values(), key=lambda kc: -kc[0]["self_seconds"])[:record["top_kernels"]]
    if top:
        lines += ["", f"Kernels by cold compile seconds (self, i.e. without the njit functions "
                  f"they call; the {len(top)} largest of {len(kernels)}; each in the case where it "
                  "took longest):", ""]
        lines += table(("kernel", "case", "signatures", "self s", "inclusive s"),
                       [(f"`{k['kernel']}`", case, k["signatures"], f"{k['self_seconds']:.2f}",
                         f"{k['seconds']:.2f}") for k, case in top], "llrrr")
    first = next((s["runs"][0]["cold"] for s in record["cases"] if s.get("runs")), {})
    lines += ["", versions_line(f"`{record['python']}`", first.get("versions", {})) + "; "
              f"{env['cpu']}, {env['cores']} cores, commit {str(env['git_commit'])[:10]}"
              f"{' (dirty)' if env.get('git_dirty_tracked_files') else ''}, load average "
              f"{env['load_average_start'][0]:.2f} at start, {record['load_average_end'][0]:.2f} "
              "at end."]
    return "\n".join(lines)


def parse_args(argv=None):
    parser = make_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=3,
                        help="cold + warm pairs per case (median reported; default 3)")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES),
                        help="entry points to time (default: all)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter with bpr_numba (default: this one)")
    parser.add_argument("--data", default=os.environ.get("BPR_NUMBA_DATA")
                        or str(REPO.parent / "shared" / "data"),
                        help="BPR_NUMBA_DATA of the cli case (the folder holding ml-100k/)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per process")
    parser.add_argument("--top-kernels", type=int, default=12,
                        help="kernels listed in the per-kernel table (default 12)")
    add_output_argument(parser, "compile")
    parser.add_argument("--_child", choices=CASES + ("prepare",), help=argparse.SUPPRESS)
    parser.add_argument("--_workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1; got {args.repeats}.")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args._child:
        child(args._child, args._workdir)
        return 0
    start = time.perf_counter()
    record = {"argv": sys.argv[1:] if argv is None else list(argv), "repeats": args.repeats,
              "python": args.python, "cli_argv": list(CLI_ARGV), "data": args.data,
              "top_kernels": args.top_kernels, "environment": environment(), "cases": []}
    with tempfile.TemporaryDirectory(prefix="bpr-bench-compile-") as tmp:
        work = Path(tmp)
        if {"recommend", "similar_items"} & set(args.cases):
            log("fitting the model of recommend / similar_items ...")
            (work / "prepare-cache").mkdir()
            run_case(args, "prepare", work / "prepare-cache", work)
        for case in args.cases:
            runs = []
            for repeat in range(args.repeats):
                cache = work / f"cache-{case}-{repeat}"
                cache.mkdir()
                runs.append({label: run_case(args, case, cache, work)
                             for label in ("cold", "warm")})
                c, w = runs[-1]["cold"], runs[-1]["warm"]
                log(f"{case} [{repeat + 1}/{args.repeats}]: process {c['process_wall_s']:.2f} s "
                    f"cold, {w['process_wall_s']:.2f} s warm; first call "
                    f"{c['first_call_s']:.2f} / {w['first_call_s']:.2f} s; "
                    f"{len(c['compiles'])} compiles ({c['compile_s']:.2f} s), "
                    f"{w['cache_hits']} cache loads warm")
            summary = summarise(case, runs)
            summary["runs"] = runs
            record["cases"].append(summary)
    finish(record, "compile", markdown, args.output, start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
