"""bpr-numba: fast BPR (triplet loss) recommenders on the CPU with Numba.

Public names: :class:`BPR`, :func:`load_movielens`, :func:`make_synthetic`;
metrics live in :mod:`bpr_numba.metrics`.
"""

from .datasets import load_movielens, make_synthetic
from .estimator import BPR

__version__ = "0.1.0"
__all__ = ["BPR", "load_movielens", "make_synthetic", "__version__"]
