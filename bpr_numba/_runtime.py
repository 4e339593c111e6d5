"""Threads and seeds: how the Python side drives the kernels' parallelism and randomness.

- :class:`threads` sets Numba's thread count for a block of kernel calls.
- :func:`as_seed_sequence` turns every accepted ``random_state`` into a
  ``numpy.random.SeedSequence``; :func:`as_generator` into a ``Generator``.
- :func:`spawn_states` draws the per-chunk uint64 states the kernels' random
  streams start from (a stream depends on the seed and the chunk index only,
  never on the thread that runs the chunk).
"""

from __future__ import annotations

import numba
import numpy as np


class threads:
    """Context manager: ``numba.set_num_threads(n)`` inside, restored after.

    ``num_threads = 0`` means all of Numba's threads; larger values are
    clamped to ``numba.config.NUMBA_NUM_THREADS``.
    """

    def __init__(self, num_threads):
        max_threads = numba.config.NUMBA_NUM_THREADS
        n = int(num_threads)
        self.n = max_threads if n <= 0 else min(n, max_threads)

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
