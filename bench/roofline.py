"""Roofline of the training kernel: what this machine can do, and where bpr-numba stands.

Measures, with 1 and 2 (``--threads``) Numba threads:

(a) streaming bandwidth: float32 copy and triad (``a = b + s * c``) with NumPy
    (one thread; the triad is two ufunc calls) and with a Numba ``prange``
    kernel, at working sets sized for L2, for the item matrix (L3 here) and for
    DRAM (``--bw-mib``). Bytes are counted the STREAM way (copy 8 B, triad 12 B
    per element; write-allocate traffic not counted). Best of ``--repeats``.
(b) float32 arithmetic rates with Numba: dot products of short rows (65
    columns: f = 64 plus the item-bias column, as the kernel's rows) and of long
    vectors (64k), compiled as the kernel is (no fastmath: a float reduction
    stays one serial chain of scalar adds) and with ``fastmath=True``
    (reassociated, vectorised); and an element-wise row update (``p -= lr * g``,
    vectorised without fastmath). GFLOP/s counts a multiply and an add as 2.
(c) random rows: reading (and read-modify-writing) rows of 65 float32 at random
    from a matrix the size of the item factors (``--items``) and from one far
    larger than the last-level cache: the latency / memory-parallelism roof
    that random item rows meet.
(d) in-cache cost of the kernel's own pieces, called from a Numba loop on
    L1-resident rows: ``bpr_numba._kernels.optim.dot``, the row updates of
    ``_kernels.optim`` (sgd, adagrad, adam), ``_kernels.sampling.draw_negative`` (unseen, on a synthetic
    CSR with the benchmark's items and positives per user), ``_losses``.

Then a per-sample model of ``_train_epoch_chunks`` (bytes and flops for each
factors x optimizer x negative candidates) gives bounds on samples/s:

* bandwidth bounds: bytes per sample (rounded up to the 64-byte lines a random
  row spans) over the measured bandwidth of the level that holds the item rows
  (found with the caches in /sys and lscpu) and of DRAM;
* random-row bound: the random rows a sample reads and writes, at the measured
  random-row rates for the item-matrix size;
* compute bounds: flops per sample at the vectorised (fastmath) rate, and the
  sum of the in-cache costs of the kernel's pieces as compiled (d);

and, with ``--throughput bench/results/throughput-*.json``, the measured
samples/s of each matching configuration and its share of the tightest bound.

Writes one JSON file (default ``bench/results/roofline-<timestamp>.json``) and
prints markdown tables for bench/RESULTS.md. ``--quick`` shrinks every size
(smoke test: its DRAM figures then come from the last-level cache).

Usage::

    python bench/roofline.py --quick
    python bench/roofline.py --throughput bench/results/throughput-20261129-120000.json
    python bench/roofline.py --bw-mib 1 24 2048 --threads 1 2
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import (add_output_argument, environment, finish, make_parser, result_path, si,
                     table)

import numba
import numpy as np
from numba import njit, prange

LINE = 64  # bytes per cache line
F32 = 4


# ------------------------------------------------------------------ (a) bandwidth kernels


@njit(parallel=True, cache=False)
def _nb_copy(a, b, n_rep, n_par):
    n = a.shape[0]
    for p in prange(n_par):
        av = a[n * p // n_par:n * (p + 1) // n_par]
        bv = b[n * p // n_par:n * (p + 1) // n_par]
        for _ in range(n_rep):
            for i in range(av.shape[0]):
                av[i] = bv[i]
    return a[0]


@njit(parallel=True, cache=False)
def _nb_triad(a, b, c, s, n_rep, n_par):
    n = a.shape[0]
    for p in prange(n_par):
        av = a[n * p // n_par:n * (p + 1) // n_par]
        bv = b[n * p // n_par:n * (p + 1) // n_par]
        cv = c[n * p // n_par:n * (p + 1) // n_par]
        for r in range(n_rep):
            t = s + np.float32(r) * np.float32(1e-7)
            for i in range(av.shape[0]):
                av[i] = bv[i] + t * cv[i]
    return a[0]


# ------------------------------------------------------------------ (b) arithmetic kernels


# The strict and fastmath builds of each dot loop are two njit wrappers of one Python
# function: fine here, since these kernels are not cached (cache=False; NOTES.md: two cached
# wrappers of one function share a cache entry and break).
def _dot_short(A, B, n_iter, n_par):
    """Dot products of rows, summed as the kernel's _dot does (one serial chain)."""
    mask = A.shape[0] - 1
    out = np.zeros(n_par, np.float32)
    for p in prange(n_par):
        acc = np.float32(0.0)
        for r in range(n_iter):
            x = np.float32(0.0)
            ra = (r + p) & mask
            rb = (r * 7 + 3 * p) & mask
            for f in range(A.shape[1]):
                x += A[ra, f] * B[rb, f]
            acc += x
        out[p] = acc
    return out


_dot_short_strict = njit(parallel=True, cache=False)(_dot_short)
# With fastmath the reduction is reassociated and vectorised.
_dot_short_fast = njit(parallel=True, fastmath=True, cache=False)(_dot_short)


def _dot_long(a, b, n_rep, n_par):
    out = np.zeros(n_par, np.float32)
    for p in prange(n_par):
        acc = np.float32(0.0)
        for _ in range(n_rep):
            x = np.float32(0.0)
            for i in range(a.shape[1]):
                x += a[p, i] * b[p, i]
            acc += x
        out[p] = acc
    return out


_dot_long_strict = njit(parallel=True, cache=False)(_dot_long)
_dot_long_fast = njit(parallel=True, fastmath=True, cache=False)(_dot_long)


@njit(parallel=True, cache=False)
def _axpy_rows(P, G, lr, n_iter, n_par):
    """``P[row] -= lr * G[row % ...]`` on short rows, as the sgd row update (no fastmath)."""
    mask = P.shape[0] // n_par - 1
    for p in prange(n_par):
        base = p * (mask + 1)
        for r in range(n_iter):
            row = base + (r & mask)
            g = (r * 5) & mask
            for f in range(P.shape[1]):
                P[row, f] -= lr * G[g, f]
    return P[0, 0]


# ------------------------------------------------------------------ (c) random rows

_LCG_A = np.uint64(6364136223846793005)
_LCG_C = np.uint64(1442695040888963407)
_S33 = np.uint64(33)


@njit(parallel=True, fastmath=True, cache=False)
def _rows_read(M, n_iter, n_par, seed):
    n = np.uint64(M.shape[0])
    out = np.zeros(n_par, np.float32)
    for p in prange(n_par):
        s = np.uint64(seed) + np.uint64(p) * np.uint64(7919)
        acc = np.float32(0.0)
        for _ in range(n_iter):
            s = s * _LCG_A + _LCG_C
            row = np.int64((s >> _S33) % n)
            x = np.float32(0.0)
            for f in range(M.shape[1]):
                x += M[row, f]
            acc += x
        out[p] = acc
    return out


@njit(parallel=True, fastmath=True, cache=False)
def _rows_update(M, n_iter, n_par, seed):
    n = np.uint64(M.shape[0])
    for p in prange(n_par):
        s = np.uint64(seed) + np.uint64(p) * np.uint64(7919)
        for _ in range(n_iter):
            s = s * _LCG_A + _LCG_C
            row = np.int64((s >> _S33) % n)
            for f in range(M.shape[1]):
                M[row, f] = M[row, f] * np.float32(0.999) + np.float32(1e-6)
    return M[0, 0]


# ------------------------------------------------------------------ (d) the kernel's pieces


def _component_kernels():
    """Numba loops around bpr_numba's own jitted helpers (imported late).

    Each loop sits in a one-iteration ``prange``, as the training kernel's body
    does: in a plain serial ``njit`` loop the inlined helpers keep atomic
    reference-count updates of their array arguments per call (about 100 ns),
    which the kernel does not pay.
    """
    from bpr_numba._kernels.losses import loss_and_grad as _loss_and_grad
    from bpr_numba._kernels.optim import ROW_UPDATES
    from bpr_numba._kernels.optim import dot as _dot
    from bpr_numba._kernels.rng import next_below as _next_below
    from bpr_numba._kernels.sampling import draw_negative as _draw_negative

    @njit(parallel=True, cache=False)
    def dot_loop(U, V, n_iter):
        mask = U.shape[0] - 1
        out = np.zeros(1, np.float32)
        for p in prange(1):
            acc = np.float32(0.0)
            for r in range(n_iter):
                acc += _dot(U, r & mask, V, (r * 7) & mask)
            out[p] = acc
        return out

    @njit(parallel=True, cache=False)
    def x_and_grad_loop(U, V, gu, gi, gj, n_iter, reg):
        # The kernel's x = u.(i - j) loop and its gradient loop, copied verbatim.
        mask = U.shape[0] - 1
        n_cols = V.shape[1]
        out = np.zeros(1, np.float32)
        for p in prange(1):
            acc = np.float32(0.0)
            for r in range(n_iter):
                u = r & mask
                i = (r * 7) & mask
                j = (r * 13 + 1) & mask
                x = np.float32(0.0)
                for f in range(n_cols):
                    x += U[u, f] * (V[i, f] - V[j, f])
                g = np.float32(1.0) / (np.float32(1.0) + abs(x))
                for f in range(n_cols):
                    uf = U[u, f]
                    gu[f] = g * (V[i, f] - V[j, f]) + reg * uf
                    gi[f] = g * uf + reg * V[i, f]
                    gj[f] = reg * V[j, f] - g * uf
                acc += x + gu[0] + gi[1] + gj[2]
            out[p] = acc
        return out

    def make_update_loop(row_update):
        # One loop per optimiser, as the training kernel is specialised per optimiser.
        @njit(parallel=True, cache=False)
        def update_loop(P, grad, sum_sq, m, v, t, n_iter, lr, alpha):
            mask = P.shape[0] - 1
            for p in prange(1):
                scratch = np.empty((3, P.shape[1]), np.float32)
                for r in range(n_iter):
                    row_update(P, (r * 7) & mask, grad, P.shape[1], sum_sq, m, v, t,
                               alpha, lr, np.float32(0.9), np.float32(0.999),
                               np.float32(1e-8), scratch)
            return P[0, 0]
        return update_loop

    update_loops = {code: make_update_loop(leaf) for code, leaf in ROW_UPDATES.items()}

    def update_loop(opt_code, *args):
        return update_loops[opt_code](*args)

    @njit(parallel=True, cache=False)
    def draw_loop(indptr, indices, n_items, neg_code, n_iter, state0):
        n_users = indptr.shape[0] - 1
        out = np.zeros(1, np.int64)
        for p in prange(1):
            state = state0
            acc = 0
            # The kernel marks a user's positives in this bitset once per user;
            # here it stays empty, so each draw costs one bit test.
            seen = np.zeros((n_items + 63) // 64, np.uint64)
            for r in range(n_iter):
                state, u = _next_below(state, n_users)
                state, j = _draw_negative(state, indptr, indices, seen, u, n_items, neg_code)
                acc += j
            out[p] = acc
        return out

    @njit(parallel=True, cache=False)
    def rng_loop(n_iter, state0):
        out = np.zeros(1, np.int64)
        for p in prange(1):
            state = state0
            acc = 0
            for r in range(n_iter):
                state, b = _next_below(state, r + 2)
                acc += b
            out[p] = acc
        return out

    @njit(parallel=True, cache=False)
    def loss_loop(n_iter):
        out = np.zeros(1, np.float64)
        for p in prange(1):
            acc = 0.0
            for r in range(n_iter):
                value, dx = _loss_and_grad(0, (r % 1000) * 0.01 - 5.0)
                acc += value + dx
            out[p] = acc
        return out

    return dict(dot=dot_loop, x_grad=x_and_grad_loop, update=update_loop, draw=draw_loop,
                rng=rng_loop, loss=loss_loop)


# ------------------------------------------------------------------ timing helpers


def timed(fn, repeats):
    """Call ``fn`` once to warm up, then ``repeats`` times; return the seconds."""
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def with_threads(n, fn):
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        return fn()
    finally:
        numba.set_num_threads(previous)


# ------------------------------------------------------------------ machine


def caches():
    """Data/unified caches of cpu0 from /sys: level, size in bytes, CPUs sharing it."""
    out = []
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for d in sorted(base.glob("index*")):
        try:
            kind = (d / "type").read_text().strip()
            if kind == "Instruction":
                continue
            size = (d / "size").read_text().strip()
            scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(size[-1], 1)
            n = int(size[:-1]) if scale != 1 else int(size)
            shared = (d / "shared_cpu_list").read_text().strip()
            out.append({"level": int((d / "level").read_text()), "type": kind, "bytes": n * scale,
                        "shared_cpu_list": shared})
        except (OSError, ValueError):
            continue
    return out


def level_holding(working_set, cache_list, threads):
    """Smallest cache level holding ``working_set`` (private caches: summed over ``threads``)."""
    for c in sorted(cache_list, key=lambda c: c["level"]):
        n_sharing = len(_cpu_list(c["shared_cpu_list"]))
        capacity = c["bytes"] * (threads if n_sharing <= 1 else 1)
        if working_set <= capacity:
            return f"L{c['level']}"
    return "DRAM"


def _cpu_list(text):
    cpus = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            cpus += list(range(int(a), int(b) + 1))
        elif part:
            cpus.append(int(part))
    return cpus


def roofline_environment():
    """_common.environment() plus the LLVM host CPU and the caches (sysfs and lscpu)."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        lscpu_caches = [" ".join(line.split()) for line in lscpu.splitlines() if " cache:" in line]
    except OSError:
        lscpu_caches = []
    try:
        import llvmlite.binding as ll

        host_cpu = ll.get_host_cpu_name()
    except Exception:  # noqa: BLE001 - informative only
        host_cpu = None
    return dict(environment(), llvm_host_cpu=host_cpu, caches=caches(),
                lscpu_caches=lscpu_caches)


# ------------------------------------------------------------------ measurements


def measure_bandwidth(sizes_mib, threads, repeats, min_bytes):
    rows = []
    for mib in sizes_mib:
        total = int(mib * 2**20)
        for kernel in ("copy", "triad"):
            n_arrays = 2 if kernel == "copy" else 3
            n = max(1024, total // (n_arrays * F32))
            a = np.zeros(n, np.float32)
            b = np.full(n, 1.0, np.float32)
            c = np.full(n, 2.0, np.float32) if kernel == "triad" else None
            moved = n_arrays * n * F32
            n_rep = max(1, int(min_bytes // moved))
            s = np.float32(0.5)
            # NumPy: one thread.
            if kernel == "copy":
                def np_fn():
                    for _ in range(n_rep):
                        np.copyto(a, b)
            else:
                def np_fn():
                    for _ in range(n_rep):
                        np.multiply(c, s, out=a)
                        np.add(a, b, out=a)
            secs = timed(np_fn, repeats)
            rows.append(_bw_row("numpy", kernel, mib, n * n_arrays * F32, 1, secs, moved * n_rep))
            for t in threads:
                if kernel == "copy":
                    fn = lambda t=t: _nb_copy(a, b, n_rep, t)  # noqa: E731
                else:
                    fn = lambda t=t: _nb_triad(a, b, c, s, n_rep, t)  # noqa: E731
                secs = with_threads(t, lambda fn=fn: timed(fn, repeats))
                rows.append(_bw_row("numba prange", kernel, mib, n * n_arrays * F32, t, secs,
                                    moved * n_rep))
            del a, b, c
    return rows


def _bw_row(impl, kernel, mib, working_set, threads, secs, moved):
    return {"impl": impl, "kernel": kernel, "working_set_mib": mib,
            "working_set_bytes": working_set, "threads": threads, "seconds": secs,
            "gb_per_s_best": moved / min(secs) / 1e9,
            "gb_per_s_median": moved / statistics.median(secs) / 1e9}


def measure_flops(threads, repeats, n_cols, target_s):
    rows = []
    rng = np.random.default_rng(0)
    A = rng.standard_normal((64, n_cols)).astype(np.float32)  # 64 rows: L1-resident
    B = rng.standard_normal((64, n_cols)).astype(np.float32)
    long_n = 1 << 16
    La = rng.standard_normal((max(threads), long_n)).astype(np.float32)
    Lb = rng.standard_normal((max(threads), long_n)).astype(np.float32)
    P = rng.standard_normal((64 * max(threads), n_cols)).astype(np.float32)
    G = rng.standard_normal((64, n_cols)).astype(np.float32) * np.float32(1e-6)
    # Calibrate iteration counts on one thread so each call takes about target_s.
    cases = [
        ("dot, short rows, one serial chain (no fastmath)", n_cols,
         lambda it, t: _dot_short_strict(A, B, it, t), 2 * n_cols),
        ("dot, short rows, fastmath (vectorised)", n_cols,
         lambda it, t: _dot_short_fast(A, B, it, t), 2 * n_cols),
        ("dot, long vectors, no fastmath", long_n,
         lambda it, t: _dot_long_strict(La, Lb, it, t), 2 * long_n),
        ("dot, long vectors, fastmath", long_n,
         lambda it, t: _dot_long_fast(La, Lb, it, t), 2 * long_n),
        ("row update p -= lr * g (element-wise, no fastmath)", n_cols,
         lambda it, t: _axpy_rows(P, G, np.float32(1e-3), it, t), 2 * n_cols),
    ]
    for name, length, call, flops_per_iter in cases:
        n_iter = _calibrate(lambda it: call(it, 1), target_s)
        for t in threads:
            secs = with_threads(t, lambda: timed(lambda: call(n_iter, t), repeats))
            total = flops_per_iter * n_iter * t
            rows.append({"kernel": name, "length": length, "threads": t, "iterations": n_iter,
                         "seconds": secs, "gflop_per_s_best": total / min(secs) / 1e9,
                         "gflop_per_s_median": total / statistics.median(secs) / 1e9,
                         "ns_per_call_best": 1e9 * min(secs) / n_iter})
    return rows


def _calibrate(fn, target_s, start=1000):
    """Iterations for a call of about ``target_s`` seconds (run with one Numba thread).

    With one thread no parallel region waits for a second thread to wake up
    (milliseconds on a busy machine), which would inflate short calls.
    """
    def run():
        n = start
        fn(n)  # compile
        while True:
            t = time.perf_counter()
            fn(n)
            dt = time.perf_counter() - t
            if dt >= target_s / 2 or n > 1 << 34:
                return max(1, int(n * target_s / max(dt, 1e-9)))
            n *= 4

    return with_threads(1, run)


def measure_random_rows(matrices, threads, repeats, n_cols, target_s):
    rows = []
    for label, n_rows in matrices:
        M = np.random.default_rng(1).standard_normal((n_rows, n_cols)).astype(np.float32)
        for access, kernel in (("read", _rows_read), ("read-modify-write", _rows_update)):
            n_iter = _calibrate(lambda it: kernel(M, it, 1, 12345), target_s, start=10_000)
            for t in threads:
                secs = with_threads(t, lambda: timed(lambda: kernel(M, n_iter, t, 12345), repeats))
                best = min(secs)
                rows.append({"matrix": label, "rows": n_rows, "bytes": M.nbytes, "access": access,
                             "threads": t, "iterations_per_thread": n_iter, "seconds": secs,
                             "rows_per_s": n_iter * t / best,
                             "ns_per_row_per_thread": 1e9 * best / n_iter})
        del M
    return rows


def measure_components(columns, n_items, per_user, repeats, target_s):
    """In-cache ns per call of the kernel's pieces; the row pieces for each column count."""
    from bpr_numba import make_synthetic
    from bpr_numba._kernels.optim import OPTIMIZERS
    from bpr_numba._kernels.sampling import NEG_UNSEEN
    from bpr_numba._training import adam_bias_correction
    from bpr_numba._validation import check_interactions

    ADAM_ALPHA = adam_bias_correction(0.9, 0.999)

    k = _component_kernels()
    rng = np.random.default_rng(2)
    out = {"per_columns": {}}

    def ns(fn):
        n_iter = _calibrate(fn, target_s, start=10_000)
        secs = with_threads(1, lambda: timed(lambda: fn(n_iter), repeats))
        return 1e9 * min(secs) / n_iter

    for n_cols in columns:
        U = (rng.standard_normal((64, n_cols)) * 0.05).astype(np.float32)
        V = (rng.standard_normal((64, n_cols)) * 0.05).astype(np.float32)
        gu, gi, gj = (np.empty(n_cols, np.float32) for _ in range(3))
        grad = (rng.standard_normal(n_cols) * 1e-3).astype(np.float32)
        c = {"dot": ns(lambda it: k["dot"](U, V, it)),
             "x_and_grads": ns(lambda it: k["x_grad"](U, V, gu, gi, gj, it, np.float32(0.03)))}
        empty2 = np.zeros((0, 0), np.float32)
        empty1 = np.zeros(0, np.int64)
        for name in ("sgd", "adagrad", "adam"):
            P = V.copy()
            z = np.zeros_like(P)
            state = {"sgd": (empty2, empty2, empty2, empty1),
                     "adagrad": (z, empty2, empty2, empty1),
                     "adam": (empty2, z, z.copy(), np.zeros(P.shape[0], np.int64))}[name]
            c[f"update_{name}"] = ns(lambda it, P=P, state=state, name=name: k["update"](
                OPTIMIZERS[name], P, grad, *state, it, np.float32(0.01), ADAM_ALPHA))
        out["per_columns"][n_cols] = c
    # Negative draws ("unseen") on a CSR with the benchmark's items and row lengths;
    # each call also draws the user (one _next_below).
    n_users = 4000
    per_train = max(1, int(round(per_user)))
    X = check_interactions(make_synthetic(n_users, n_items, min(n_users * per_train,
                                                                n_users * n_items),
                                          random_state=0))
    out["draw_unseen"] = ns(lambda it: k["draw"](X.indptr, X.indices, n_items, NEG_UNSEEN, it,
                                                 np.uint64(7)))
    out["rng_next_below"] = ns(lambda it: k["rng"](it, np.uint64(7)))
    out["loss_and_grad"] = ns(lambda it: k["loss"](it))
    return out


# ------------------------------------------------------------------ per-sample model


def lines_per_row(row_bytes):
    """Average 64-byte lines spanned by a row of ``row_bytes`` at a random 4-byte offset."""
    return (row_bytes + LINE - F32) / LINE


def sample_model(factors, optimizer, candidates, item_bias, per_user):
    """Bytes and flops of one training sample of _train_epoch_chunks."""
    c = factors + (1 if item_bias else 0)
    row = c * F32
    k = candidates
    state_rows = {"sgd": 0, "adagrad": 1, "adam": 2}[optimizer]
    # Random item rows: i and the k candidates are read; i and the winning j are
    # written; each written row drags its optimiser state rows (read + written).
    item_reads = 1 + k + 2 * state_rows
    item_writes = 2 + 2 * state_rows
    # The user row (and its state) is loaded once per user visit, used for all
    # of the user's positives: amortised over per_user samples.
    user_rows = (1 + state_rows) / per_user
    adam_t = 2 * 16 if optimizer == "adam" else 0  # step counts of i and j, read + written
    seq = 4 + 8 + 8  # indices[order[a]], order[] written and read
    bytes_raw = (item_reads + item_writes) * row + 2 * user_rows * row + adam_t + seq
    lines = lines_per_row(row)
    bytes_lines = ((item_reads + item_writes) * lines + 2 * user_rows * lines) * LINE + adam_t + seq
    dot_flops = (2 * c * k if k > 1 else 0) + 3 * c  # candidate scores, x = u.(i - j)
    grad_flops = 10 * c
    update_flops = {"sgd": 2, "adagrad": 7, "adam": 12}[optimizer] * 3 * c
    return {"factors": factors, "optimizer": optimizer, "negative_candidates": k, "columns": c,
            "random_row_reads": item_reads, "random_row_writes": item_writes,
            "user_rows_amortised": user_rows, "bytes_raw": bytes_raw, "bytes_lines": bytes_lines,
            "flops": dot_flops + grad_flops + update_flops, "dot_flops": dot_flops,
            "elementwise_flops": grad_flops + update_flops,
            "pow_calls": 6 if optimizer == "adam" else 0,
            "transcendentals": "1 exp + 1 log1p (+1 exp) per sample"}


def bounds_for(model, threads, meas, comp, item_level):
    """Upper bounds on samples/s for one configuration and thread count.

    The tightest bound ignores DRAM bandwidth when the item rows live in a
    cache (``item_level``), and the cache's bandwidth when they do not.
    """
    bw = meas["bandwidth"]
    out = {}

    def best_bw(level_mib, t):
        rows = [r for r in bw if r["impl"] == "numba prange" and r["threads"] == t
                and r["working_set_mib"] == level_mib]
        return max((r["gb_per_s_best"] for r in rows), default=None)

    sizes = sorted({r["working_set_mib"] for r in bw})
    dram_mib = sizes[-1] if sizes else None
    cache_mib = meas["item_level_bw_mib"]
    for key, mib in (("dram_bw", dram_mib), ("item_level_bw", cache_mib)):
        gbs = best_bw(mib, threads) if mib is not None else None
        out[key] = gbs * 1e9 / model["bytes_lines"] if gbs else None
    rr = {(r["matrix"], r["access"], r["threads"]): r for r in meas["random_rows"]}
    rd = rr.get(("item matrix", "read", threads))
    rmw = rr.get(("item matrix", "read-modify-write", threads))
    if rd and rmw:
        # Rows only read (the losing candidates) at the read rate; rows updated
        # (i, j and their state rows) at the read-modify-write rate.
        only_read = model["random_row_reads"] - model["random_row_writes"]
        sec = only_read / rd["rows_per_s"] + model["random_row_writes"] / rmw["rows_per_s"]
        out["random_rows"] = 1.0 / sec
    fast = [r for r in meas["flops"] if r["threads"] == threads and "short rows, fastmath" in r["kernel"]]
    if fast:
        out["vector_compute"] = fast[0]["gflop_per_s_best"] * 1e9 / model["flops"]
    if comp:
        k = model["negative_candidates"]
        rowc = comp["per_columns"][model["columns"]]
        ns = ((k if k > 1 else 0) * rowc["dot"] + rowc["x_and_grads"]
              + 3 * rowc[f"update_{model['optimizer']}"] + k * comp["draw_unseen"]
              + comp["rng_next_below"] + comp["loss_and_grad"])
        out["in_cache_pieces"] = threads * 1e9 / ns
        out["in_cache_ns_per_sample"] = ns
    # The pieces' sum is an estimate (isolated costs, no overlap), not a strict bound.
    skip = {"in_cache_ns_per_sample", "in_cache_pieces",
            "item_level_bw" if item_level == "DRAM" else "dram_bw"}
    finite = {k: v for k, v in out.items() if v and k not in skip}
    if finite:
        name = min(finite, key=finite.get)
        out["tightest"] = name
        out["tightest_value"] = finite[name]
    return out


# ------------------------------------------------------------------ report


BOUND_NAMES = {"dram_bw": "DRAM bandwidth", "item_level_bw": "item-level bandwidth",
               "random_rows": "random rows", "vector_compute": "vector compute"}


def markdown(rec):
    env = rec["environment"]
    lines = ["### Machine", "",
             f"{env['cpu']} (LLVM: {env['llvm_host_cpu']}), {env['cores']} cores, "
             f"Numba {env['numba']}, NumPy {env['numpy']}, Python {env['python']}, commit "
             f"{env['git_commit'][:10]}, load average {env['load_average_start'][0]:.2f} at start, "
             f"{rec['load_average_end'][0]:.2f} at end.", "",
             "Caches (lscpu): " + "; ".join(env["lscpu_caches"]), ""]
    w = rec["working_sets"]
    lines += [f"Item rows live in **{w['level']}**: item factors {w['item_factors_bytes'] / 2**20:.1f} MiB "
              f"({w['n_items']:,} items x {w['columns']} float32), with optimiser state up to "
              f"{w['with_adam_state_bytes'] / 2**20:.1f} MiB (adam); working sets checked against "
              "the per-core L2 (x threads) and the shared L3.", ""]
    lines += ["### (a) Streaming bandwidth (GB/s, best of repeats; STREAM byte counts)", ""]
    bw = rec["bandwidth"]
    cells = []
    for kernel in ("copy", "triad"):
        for mib in sorted({r["working_set_mib"] for r in bw}):
            cell = {(r["impl"], r["threads"]): r["gb_per_s_best"] for r in bw
                    if r["kernel"] == kernel and r["working_set_mib"] == mib}
            cells.append([kernel, f"{mib:g}", f"{cell.get(('numpy', 1), 0):.1f}"]
                         + [f"{cell.get(('numba prange', t), 0):.1f}" for t in rec["threads"]])
    lines += table(["kernel", "working set MiB", "NumPy (1 thread)"]
                   + [f"Numba {t} thr." for t in rec["threads"]], cells)
    llc = max((c["bytes"] for c in env["caches"]), default=0)
    largest = max(r["working_set_bytes"] for r in bw)
    if largest <= llc:
        lines += ["", f"Note: the largest working set ({largest / 2**20:.0f} MiB) fits the last-level "
                  f"cache ({llc / 2**20:.0f} MiB): the \"DRAM\" figures below are not DRAM's."]
    lines += ["", "### (b) float32 arithmetic (GFLOP/s, best of repeats)", ""]
    cells = []
    for name in dict.fromkeys(r["kernel"] for r in rec["flops"]):
        rs = {r["threads"]: r for r in rec["flops"] if r["kernel"] == name}
        first = rs[min(rs)]
        cells.append([name, f"{first['length']:,}"]
                     + [f"{rs[t]['gflop_per_s_best']:.2f}" for t in rec["threads"]]
                     + [f"{first['ns_per_call_best']:.1f}"])
    lines += table(["kernel", "length"] + [f"{t} thr." for t in rec["threads"]]
                   + ["ns per call (1 thr.)"], cells)
    lines += ["", "### (c) Random rows of 65 float32 (rows/s over all threads; ns per row per thread)",
              ""]
    cells = []
    for mat, acc in dict.fromkeys((r["matrix"], r["access"]) for r in rec["random_rows"]):
        rs = {r["threads"]: r for r in rec["random_rows"] if r["matrix"] == mat and r["access"] == acc}
        first = rs[min(rs)]
        cells.append([f"{mat} ({first['rows']:,} rows)", f"{first['bytes'] / 2**20:.1f}", acc]
                     + [f"{si(rs[t]['rows_per_s'])} ({rs[t]['ns_per_row_per_thread']:.1f} ns)"
                        for t in rec["threads"]])
    lines += table(["matrix", "MiB", "access"] + [f"{t} thr." for t in rec["threads"]], cells,
                   "lrl" + "r" * len(rec["threads"]))
    comp = rec.get("components")
    if comp:
        cols = sorted(comp["per_columns"], key=int)
        lines += ["", "### (d) The kernel's pieces, in cache, one thread (ns per call)", ""]
        cells = []
        for key, label in (("dot", "_dot (a candidate's score)"),
                           ("x_and_grads", "a serial x = u.(i - j) and the 3 gradient rows"),
                           ("update_sgd", "row update, sgd"), ("update_adagrad", "row update, adagrad"),
                           ("update_adam", "row update, adam (bias-correction table)")):
            cells.append([label] + [f"{comp['per_columns'][c][key]:.1f}" for c in cols])
        for key, label in (("draw_unseen", "negative draw, unseen (incl. one user draw)"),
                           ("rng_next_below", "_next_below (a Fisher-Yates step)"),
                           ("loss_and_grad", "loss and its derivative")):
            cells.append([label, f"{comp[key]:.1f}"] + [""] * (len(cols) - 1))
        lines += table(["piece"] + [f"{c} columns" for c in cols], cells)
    lines += ["", "### Per-sample model and bounds (samples/s)", "",
              "Bytes in 64-byte lines (a random row of 65 float32 spans about "
              f"{lines_per_row(rec['working_sets']['columns'] * F32):.2f} lines). "
              "Flops: candidate dots only when neg. cand. > 1, x, gradients, 3 row updates.", "",
              "Bounds: DRAM and item-level bandwidth, random rows and vector compute are upper "
              "bounds; \"pieces (est.)\" is threads / (sum of the in-cache costs of (d) for one "
              "sample): the kernel as compiled if every row were in L1 and nothing overlapped.", ""]
    cells = []
    for r in rec["model"]:
        b = r["bounds"]
        meas = r.get("measured_samples_per_s")
        share = (f"{meas / b['tightest_value']:.0%} of {BOUND_NAMES[b['tightest']]}"
                 if meas and b.get("tightest") else "-")
        pieces = (f"{meas / b['in_cache_pieces']:.0%}" if meas and b.get("in_cache_pieces")
                  else "-")
        cells.append([r["factors"], r["optimizer"], r["negative_candidates"], r["threads"],
                      f"{r['bytes_lines']:.0f}", f"{r['flops']:.0f}", si(b.get("dram_bw")),
                      si(b.get("item_level_bw")), si(b.get("random_rows")),
                      si(b.get("vector_compute")), si(b.get("in_cache_pieces")), si(meas), share,
                      pieces])
    lines += table(("factors", "optimizer", "neg. cand.", "threads", "B/sample", "flops/sample",
                    "DRAM bw", "item-level bw", "random rows", "vector compute", "pieces (est.)",
                    "measured", "measured / tightest bound", "measured / pieces"), cells,
                   "rlrrrrrrrrrrlr")
    if rec.get("throughput_source"):
        lines += ["", f"Measured: {rec['throughput_source']}."]
    return "\n".join(lines)


# ------------------------------------------------------------------ main


def parse_args(argv=None):
    parser = make_parser(__doc__)
    parser.add_argument("--threads", nargs="+", type=int, default=None,
                        help="Numba thread counts (default 1 and all cores)")
    parser.add_argument("--bw-mib", nargs="+", type=float, default=None,
                        help="working sets of the bandwidth test in MiB; the last one is taken "
                             "as DRAM (default 1 24 2048)")
    parser.add_argument("--dram-rows-mib", type=float, default=None,
                        help="size of the large matrix of the random-row test (default 2048)")
    parser.add_argument("--items", type=int, default=None,
                        help="items of the modelled data (default: from --throughput, else 50000)")
    parser.add_argument("--per-user", type=float, default=None,
                        help="training positives per user (default: from --throughput, else 40)")
    parser.add_argument("--factors", nargs="+", type=int, default=[32, 64, 128])
    parser.add_argument("--optimizers", nargs="+", choices=("sgd", "adagrad", "adam"),
                        default=["sgd", "adagrad", "adam"])
    parser.add_argument("--candidates", nargs="+", type=int, default=[1, 3])
    parser.add_argument("--no-item-bias", action="store_true",
                        help="model rows of f columns instead of f + 1")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--target-seconds", type=float, default=None,
                        help="approximate seconds per timed call (default 0.2)")
    parser.add_argument("--throughput", type=Path, default=None,
                        help="a bench/throughput.py JSON: its measured samples/s are placed "
                             "between the bounds")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: small working sets, short calls, 3 repeats")
    add_output_argument(parser, "roofline", "--out")
    args = parser.parse_args(argv)
    q = args.quick
    all_threads = numba.config.NUMBA_NUM_THREADS
    if args.threads is None:
        args.threads = sorted({1, all_threads})
    if any(t < 1 or t > all_threads for t in args.threads):
        parser.error(f"--threads must be between 1 and {all_threads} (NUMBA_NUM_THREADS)")
    if args.bw_mib is None:
        args.bw_mib = [1, 24, 96] if q else [1, 24, 2048]
    if args.dram_rows_mib is None:
        args.dram_rows_mib = 96 if q else 2048
    if args.target_seconds is None:
        args.target_seconds = 0.03 if q else 0.2
    if q:
        args.repeats = min(args.repeats, 3)
    args.output = result_path("roofline", args.output)
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    rec = {"argv": sys.argv[1:], "quick": args.quick, "environment": roofline_environment(),
           "threads": args.threads}

    measured = {}
    if args.throughput:
        tp = json.loads(args.throughput.read_text())
        sweep = tp.get("sweep") or {}
        for r in sweep.get("rows", []):
            measured[(r["factors"], r["optimizer"], r["negative_candidates"], r["threads"])] = \
                r["samples_per_s"]
        if sweep.get("data"):
            d = sweep["data"]
            if args.items is None:
                args.items = d["shape"][1]
            if args.per_user is None:
                args.per_user = d["train_nnz"] / d["shape"][0]
        rec["throughput_source"] = (f"{args.throughput.name}, sweep on "
                                    f"{sweep.get('data', {}).get('n_interactions', '?'):,} "
                                    "interactions, median of the timed fit_partial epochs")
    args.items = args.items or 50_000
    args.per_user = args.per_user or 40.0

    item_bias = not args.no_item_bias
    cols64 = 64 + (1 if item_bias else 0)
    item_bytes = args.items * cols64 * F32
    cache_list = rec["environment"]["caches"]
    level = level_holding(item_bytes * 3, cache_list, max(args.threads))
    rec["working_sets"] = {"n_items": args.items, "columns": cols64,
                           "item_factors_bytes": item_bytes,
                           "with_adam_state_bytes": 3 * item_bytes,
                           "level": level_holding(item_bytes, cache_list, max(args.threads)),
                           "level_with_adam_state": level, "per_user": args.per_user}
    # Bandwidth at the item level: the measured working set closest to the item matrix.
    item_mib = item_bytes / 2**20
    rec["item_level_bw_mib"] = min(args.bw_mib[:-1] or args.bw_mib,
                                   key=lambda m: abs(math.log(m / item_mib)))

    print("(a) bandwidth ...", flush=True)
    rec["bandwidth"] = measure_bandwidth(args.bw_mib, args.threads, args.repeats,
                                         min_bytes=10e9 * args.target_seconds)
    print("(b) arithmetic ...", flush=True)
    rec["flops"] = measure_flops(args.threads, args.repeats, cols64, args.target_seconds)
    print("(c) random rows ...", flush=True)
    dram_rows = int(args.dram_rows_mib * 2**20 / (cols64 * F32))
    rec["random_rows"] = measure_random_rows(
        [("item matrix", args.items), ("large matrix", dram_rows)], args.threads, args.repeats,
        cols64, args.target_seconds)
    print("(d) kernel pieces ...", flush=True)
    columns = sorted({f + (1 if item_bias else 0) for f in args.factors})
    rec["components"] = measure_components(columns, args.items, args.per_user, args.repeats,
                                           args.target_seconds)

    meas = {"bandwidth": rec["bandwidth"], "random_rows": rec["random_rows"],
            "flops": rec["flops"], "item_level_bw_mib": rec["item_level_bw_mib"]}
    rec["model"] = []
    for f in args.factors:
        for opt in args.optimizers:
            for k in args.candidates:
                m = sample_model(f, opt, k, item_bias, args.per_user)
                for t in args.threads:
                    row = dict(m, threads=t)
                    row["bounds"] = bounds_for(m, t, meas, rec["components"],
                                               level_holding(m["columns"] * F32 * args.items
                                                             * (1 + {"sgd": 0, "adagrad": 1,
                                                                     "adam": 2}[opt]),
                                                             cache_list, t))
                    row["measured_samples_per_s"] = measured.get((f, opt, k, t))
                    rec["model"].append(row)
    finish(rec, "roofline", markdown, args.output, start)


if __name__ == "__main__":
    main()
