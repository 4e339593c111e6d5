"""Memory and speed of ``Interactions.from_csv`` on a large synthetic CSV.

Writes a synthetic CSV of ``--rows`` events (default 10 million): string user
ids ``u<int>`` drawn uniformly from ``--users`` users, string item ids
``i<int>`` from ``--items`` items with a skewed (popular-items-first, then
shuffled) distribution, an int rating 1-5 and an int Unix timestamp; seed
``--seed``. The file is written with NumPy in chunks (vectorised, no Python
work per row) into a temporary folder, or to ``--path`` (kept; reused when it
already exists, since writing takes a while).

Then, in a fresh child process, ``Interactions.from_csv(path, "user", "item",
"rating", "timestamp", chunk_rows=--chunk-rows)`` runs once and reports:

* seconds and rows/s;
* peak RSS growth: ``VmHWM`` at the end minus ``VmRSS`` just before the call
  (after imports). The peak is reset through ``/proc/self/clear_refs`` where
  Linux allows it; otherwise ``ru_maxrss`` (which then includes the imports)
  is used;
* the bytes of the result: CSR data + indices + indptr, timestamps, and the
  user and item id arrays;
* the ratio of the two (the target: "within a few times the memory of the
  resulting matrix").

``--pandas`` also times ``pandas.read_csv`` + ``Interactions.from_pandas`` in
another child, for reference. Prints a table; ``--json`` writes the record to
``bench/results/csv_memory-<timestamp>.json`` (ignored by git).

Usage::

    python bench/csv_memory.py                  # 10M rows
    python bench/csv_memory.py --rows 1000000 --pandas
    python bench/csv_memory.py --path /tmp/events.csv --json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import (environment, make_parser, maxrss_bytes, options,  # noqa: E402
                     proc_status, python_env, reset_peak, run_json, table, write_record)

HEADER = b"user,item,rating,timestamp\n"
WRITE_CHUNK = 1_000_000


# --------------------------------------------------------------------------- the file


def _as_bytes(prefix, values):
    """``prefix + str(value)`` for each value, as an ``S`` array (NumPy casts, no Python loop)."""
    digits = values.astype("S")
    return np.char.add(prefix, digits) if prefix else digits


def format_lines(columns, sep=b","):
    """Join ``S`` arrays into the bytes of ``"a,b,c\\n"`` lines, with vectorised scatters."""
    n = columns[0].size
    widths = [np.char.str_len(column).astype(np.int64) for column in columns]
    line_len = sum(widths) + len(columns)  # one separator or newline after each field
    starts = np.zeros(n, np.int64)
    np.cumsum(line_len[:-1], out=starts[1:])
    out = np.empty(int(line_len.sum()), np.uint8)
    at = starts
    for column, width, last in zip(columns, widths, [False] * (len(columns) - 1) + [True]):
        chars = column.view(np.uint8).reshape(n, column.dtype.itemsize)
        for j in range(column.dtype.itemsize):
            has = width > j
            out[at[has] + j] = chars[has, j]
        at = at + width
        out[at] = ord("\n") if last else sep[0]
        at = at + 1
    return out.tobytes()


def write_csv(path, rows, n_users, n_items, seed):
    """Write the synthetic events; return the seconds taken."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    item_of_rank = rng.permutation(n_items)  # popular items get scattered ids
    with open(path, "wb") as f:
        f.write(HEADER)
        for first in range(0, rows, WRITE_CHUNK):
            n = min(WRITE_CHUNK, rows - first)
            users = rng.integers(0, n_users, n)
            ranks = np.minimum((n_items * rng.random(n) ** 3).astype(np.int64), n_items - 1)
            items = item_of_rank[ranks]
            ratings = rng.integers(1, 6, n)
            stamps = rng.integers(1_500_000_000, 1_700_000_000, n)
            f.write(format_lines([_as_bytes(b"u", users), _as_bytes(b"i", items),
                                  _as_bytes(b"", ratings), _as_bytes(b"", stamps)]))
    return time.perf_counter() - start


# --------------------------------------------------------------------------- the child


def child(path, chunk_rows, use_pandas):
    """Run one load in this (fresh) process and print a JSON record."""
    from bpr_numba.data import Interactions

    if use_pandas:
        import pandas as pd
    out = {"clear_refs": reset_peak()}
    out["rss_before"] = proc_status()["VmRSS"]
    start = time.perf_counter()
    if use_pandas:
        frame = pd.read_csv(path)
        X = Interactions.from_pandas(frame, "user", "item", "rating", "timestamp")
        del frame
    else:
        X = Interactions.from_csv(path, "user", "item", "rating", "timestamp",
                                  chunk_rows=chunk_rows)
    out["seconds"] = time.perf_counter() - start
    end = proc_status()
    out["rss_end"] = end["VmRSS"]
    out["hwm"] = end["VmHWM"]
    out["maxrss"] = maxrss_bytes()
    m = X.matrix
    out["shape"] = list(m.shape)
    out["nnz"] = int(m.nnz)
    out["result_bytes"] = {
        "data": m.data.nbytes, "indices": m.indices.nbytes, "indptr": m.indptr.nbytes,
        "timestamps": 0 if X.timestamps is None else X.timestamps.nbytes,
        "user_ids": X.user_ids.nbytes, "item_ids": X.item_ids.nbytes,
    }
    print(json.dumps(out))


def run_child(path, chunk_rows, use_pandas):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(path),
           "--chunk-rows", str(chunk_rows)] + (["--pandas"] if use_pandas else [])
    env = python_env()  # bench/ and the checkout holding it (its bpr_numba) on PYTHONPATH
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env["PYTHONPATH"]])
    try:
        record, _ = run_json(cmd, env=env)
    except subprocess.CalledProcessError as exc:
        sys.exit(f"the child failed:\n{exc.stderr}")
    if record["clear_refs"]:
        record["method"] = "VmHWM (reset through /proc/self/clear_refs) - VmRSS before the call"
        peak = record["hwm"]
    else:
        record["method"] = "ru_maxrss - VmRSS before the call (ru_maxrss includes the imports)"
        peak = record["maxrss"]
    record["peak_growth_bytes"] = peak - record["rss_before"]
    record["result_total_bytes"] = sum(record["result_bytes"].values())
    record["ratio"] = record["peak_growth_bytes"] / record["result_total_bytes"]
    return record


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    parser = make_parser(__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000, help="events (default 10M)")
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-rows", type=int, default=1_000_000,
                        help="from_csv's chunk_rows (default 1M)")
    parser.add_argument("--path", type=Path, default=None,
                        help="write the CSV here and keep it (reused if it exists)")
    parser.add_argument("--pandas", action="store_true",
                        help="also time pandas.read_csv + from_pandas (another child)")
    parser.add_argument("--json", action="store_true",
                        help="write bench/results/csv_memory-<timestamp>.json")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def mb(n):
    return f"{n / 2**20:,.1f} MB"


def main(argv=None):
    args = parse_args(argv)
    if args.child is not None:
        child(args.child, args.chunk_rows, args.pandas)
        return
    with tempfile.TemporaryDirectory(prefix="bpr-csv-bench-") as tmp:
        path = args.path or Path(tmp) / "events.csv"
        if args.path is not None and path.exists():
            write_s = None
            print(f"reusing {path} ({mb(path.stat().st_size)})")
        else:
            write_s = write_csv(path, args.rows, args.users, args.items, args.seed)
            print(f"wrote {args.rows:,} rows to {path} ({mb(path.stat().st_size)}) in "
                  f"{write_s:.1f} s")
        file_bytes = path.stat().st_size
        runs = {"from_csv": run_child(path, args.chunk_rows, False)}
        if args.pandas:
            runs["pandas.read_csv + from_pandas"] = run_child(path, args.chunk_rows, True)
    rows = runs["from_csv"]["nnz"]
    print(f"\nresult: {runs['from_csv']['shape'][0]:,} users x {runs['from_csv']['shape'][1]:,} "
          f"items, {rows:,} interactions; bytes: " + ", ".join(
              f"{k} {mb(v)}" for k, v in runs["from_csv"]["result_bytes"].items()))
    print()
    print("\n".join(table(
        ("path", "seconds", "rows/s", "peak RSS growth", "result bytes", "ratio"),
        [(label, f"{r['seconds']:.1f}", f"{args.rows / r['seconds']:,.0f}",
          mb(r["peak_growth_bytes"]), mb(r["result_total_bytes"]), f"{r['ratio']:.2f}x")
         for label, r in runs.items()])))
    print(f"\npeak: {runs['from_csv']['method']}")
    if args.json:
        record = {
            "argv": sys.argv[1:], "options": options(args),
            "environment": environment(),
            "file_bytes": file_bytes, "write_seconds": write_s, "runs": runs,
        }
        print(f"wrote {write_record(record, 'csv_memory')}")


def markdown(record):
    """A table of a csv_memory-*.json record (bench/report.py calls this)."""
    opts = record["options"]
    env = record["environment"]
    lines = [f"{opts['rows']:,} rows ({record['file_bytes'] / 1e6:.0f} MB), string ids, "
             f"{opts['users']:,} users x {opts['items']:,} items, chunk_rows "
             f"{opts['chunk_rows']:,}; {env.get('cpu')}, {env.get('cores')} cores, NumPy "
             f"{env.get('numpy')}, git {str(env.get('git_commit'))[:10]}.", ""]
    cells = []
    for name, run in record["runs"].items():
        result = sum(run["result_bytes"].values())
        growth = run["peak_growth_bytes"]
        cells.append((name, f"{run['seconds']:.2f}", f"{opts['rows'] / run['seconds']:,.0f}",
                      f"{growth / 2**20:.0f} MiB", f"{result / 2**20:.0f} MiB",
                      f"{growth / result:.2f}x"))
    lines += table(("reader", "seconds", "rows/s", "peak RSS growth", "result bytes", "ratio"),
                   cells)
    lines += ["", "Result bytes: the CSR matrix (data, indices, indptr), the timestamps and the "
              "raw id arrays. Peak RSS growth: VmHWM after the call minus VmRSS before it."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
