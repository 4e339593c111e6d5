"""bpr-numba: fast BPR (triplet loss) recommenders on the CPU with Numba.

Public names: :class:`BPR`, :class:`Interactions` (your own data with raw
ids), :func:`load_movielens`, :func:`make_synthetic`. Metrics live in
:mod:`bpr_numba.metrics`, splits in :mod:`bpr_numba.split`, the popularity
baseline in :mod:`bpr_numba.baselines` and vectors for nearest-neighbour
indexes in :mod:`bpr_numba.export`.
"""

from .data import Interactions
from .datasets import load_movielens, make_synthetic
from .estimator import BPR

__version__ = "0.1.0"
__all__ = ["BPR", "Interactions", "load_movielens", "make_synthetic", "__version__"]
