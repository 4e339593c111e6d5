"""bpr-numba: fast BPR (triplet loss) recommenders on the CPU with Numba.

Public names: :class:`BPR`, :class:`Popularity`, :class:`Interactions` (your
own data with raw ids), :func:`load_movielens`, :func:`load_gowalla`,
:func:`read_split_file`, :func:`make_synthetic` and the
error classes (``NotFittedError``, ``IdOutOfRangeError``, ``UnknownIdError``,
``TrainingDivergedError``). Metrics live in
:mod:`bpr_numba.metrics`, splits in :mod:`bpr_numba.split`, the popularity
baseline in :mod:`bpr_numba.baselines` and vectors for nearest-neighbour
indexes in :mod:`bpr_numba.export`.
"""

from ._validation import (IdOutOfRangeError, NotFittedError, TrainingDivergedError,
                          UnknownIdError)
from .baselines import Popularity
from .data import Interactions
from .datasets import load_gowalla, load_movielens, make_synthetic, read_split_file
from .estimator import BPR

__version__ = "0.1.0"
__all__ = ["BPR", "Popularity", "Interactions", "load_movielens", "load_gowalla",
           "read_split_file", "make_synthetic",
           "IdOutOfRangeError", "NotFittedError", "TrainingDivergedError", "UnknownIdError",
           "__version__"]
