"""Counter-based random streams for the kernels.

Each chunk of work owns one uint64 state (SplitMix64), so a stream depends on
the seed and the chunk index only, never on the thread that runs the chunk.
All arithmetic stays in ``np.uint64`` with typed constants: mixing unsigned
and signed integers would promote to float64 in NumPy and in Numba.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_S32 = np.uint64(32)
_INV_2_53 = 1.0 / 9007199254740992.0


@njit(cache=True, inline="always")
def next_u64(state):
    """Advance a SplitMix64 state; return ``(new_state, random uint64)``."""
    state = state + _GOLDEN
    z = state
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    z = z ^ (z >> _S31)
    return state, z


@njit(cache=True, inline="always")
def next_below(state, n):
    """Draw an integer uniformly in ``[0, n)``, for ``1 <= n < 2**32``.

    Multiply-shift of the high 32 random bits (Lemire 2019) instead of a
    modulo: no division, bias below ``n / 2**32``.
    """
    state, z = next_u64(state)
    return state, np.int64(((z >> _S32) * np.uint64(n)) >> _S32)


@njit(cache=True, inline="always")
def next_unit(state):
    """Draw a float64 uniformly in ``[0, 1)``."""
    state, z = next_u64(state)
    return state, np.float64(z >> _S11) * _INV_2_53
