"""Threads and seeds: how the Python side drives the kernels' parallelism and randomness.

- :func:`parallel_ranges` runs a GIL-free kernel over disjoint ranges of
  tasks on a pool of threads (the training, top-N and evaluation kernels);
- :class:`threads` sets Numba's own thread count for a block of calls of a
  ``prange`` kernel (the Keras-compatible mode's).
- :func:`as_seed_sequence` turns every accepted ``random_state`` into a
  ``numpy.random.SeedSequence``; :func:`as_generator` into a ``Generator``.
- :func:`spawn_states` draws the per-chunk uint64 states the kernels' random
  streams start from (a stream depends on the seed and the chunk index only,
  never on the thread that runs the chunk).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as futures_wait

import numba
import numpy as np


def thread_count(num_threads):
    """Threads for ``num_threads`` (0: all of ``numba.config.NUMBA_NUM_THREADS``, the cores)."""
    max_threads = numba.config.NUMBA_NUM_THREADS
    n = int(num_threads)
    return max_threads if n <= 0 else min(n, max_threads)


_POOLS = {}
_POOLS_LOCK = threading.Lock()


def _executor(n):
    """The thread pool of ``n`` threads, made once and kept (never shut down while in use)."""
    with _POOLS_LOCK:
        if n not in _POOLS:
            _POOLS[n] = ThreadPoolExecutor(n, thread_name_prefix="bpr-numba")
        return _POOLS[n]


def parallel_ranges(kernel_call, n_tasks, num_threads, pieces_per_thread=4):
    """Call ``kernel_call(first, end)`` on disjoint ranges covering ``range(n_tasks)``.

    With one thread (or one task) this is ``kernel_call(0, n_tasks)``, in the
    caller's thread. Otherwise the tasks are cut into about
    ``pieces_per_thread`` contiguous pieces per thread, which the threads take
    in turn (a slow thread takes fewer). ``kernel_call`` must run a kernel
    compiled with ``nogil=True`` (so the threads run at once) that writes only
    the slots of its own tasks.

    Parallelism comes from threads rather than numba's ``prange`` on purpose:
    a ``parallel=True`` kernel costs seconds more to compile on first use.

    A Ctrl-C that arrives meanwhile is raised only once every piece has
    finished, so a call is never left half done. The first error of a piece
    is raised likewise, after the others finished.
    """
    n = thread_count(num_threads)
    if n == 1 or n_tasks <= 1:
        kernel_call(0, n_tasks)
        return
    step = max(1, -(-n_tasks // (n * pieces_per_thread)))
    starts = iter(range(0, n_tasks, step))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                first = next(starts, None)
            if first is None:
                return
            kernel_call(first, min(first + step, n_tasks))

    executor = _executor(n)
    futures = [executor.submit(worker) for _ in range(n)]
    interrupted = False
    for future in futures:
        while True:  # a Ctrl-C of the caller while waiting: note it, keep waiting
            try:
                futures_wait([future])
                break
            except KeyboardInterrupt:
                interrupted = True
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error
    if interrupted:
        raise KeyboardInterrupt


class threads:
    """Context manager: ``numba.set_num_threads(n)`` inside, restored after.

    ``num_threads = 0`` means all of Numba's threads; larger values are
    clamped to ``numba.config.NUMBA_NUM_THREADS``.
    """

    def __init__(self, num_threads):
        self.n = thread_count(num_threads)

    def __enter__(self):
        self.previous = numba.get_num_threads()
        numba.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        numba.set_num_threads(self.previous)
        return False


def as_seed_sequence(random_state):
    """Turn ``random_state`` (None, int, SeedSequence, Generator, RandomState) into a SeedSequence.

    Raises
    ------
    TypeError
        For any other type.
    ValueError
        For a negative integer seed.
    """
    if random_state is None or isinstance(random_state, (int, np.integer)) and not isinstance(
        random_state, (bool, np.bool_)
    ):
        if random_state is not None and random_state < 0:
            raise ValueError(f"random_state must be a non-negative integer; got {random_state}.")
        return np.random.SeedSequence(None if random_state is None else int(random_state))
    if isinstance(random_state, np.random.SeedSequence):
        return random_state
    if isinstance(random_state, np.random.Generator):
        return np.random.SeedSequence(int(random_state.integers(0, 2**63 - 1)))
    if isinstance(random_state, np.random.RandomState):
        return np.random.SeedSequence(int(random_state.randint(0, 2**31 - 1)))
    raise TypeError(
        "random_state must be None, a non-negative int, a numpy SeedSequence, Generator "
        f"or RandomState; got {type(random_state).__name__}."
    )


def as_generator(random_state):
    """Turn ``random_state`` into a numpy Generator (a Generator is used as is)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(as_seed_sequence(random_state))


def spawn_states(seed_sequence, n):
    """Return ``n`` independent uint64 chunk states drawn from a SeedSequence.

    Parameters
    ----------
    seed_sequence : numpy.random.SeedSequence
    n : int

    Returns
    -------
    ndarray of uint64, shape (n,)
    """
    return seed_sequence.generate_state(n, dtype=np.uint64)
