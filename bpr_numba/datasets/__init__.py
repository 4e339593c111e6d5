"""Datasets: MovieLens, paper splits such as Gowalla's, and seeded synthetic data.

* :mod:`~bpr_numba.datasets.movielens` -- :func:`load_movielens` and
  :func:`load_movielens_titles` (ml-100k, ml-1m, ml-latest-small);
* :mod:`~bpr_numba.datasets.papers` -- :func:`read_split_file` (the
  ``user item item ...`` format of NGCF, LightGCN and others) and
  :func:`load_gowalla`;
* :mod:`~bpr_numba.datasets.synthetic` -- :func:`make_synthetic`.

Files are looked up, in this order, in ``data_home``, in the folder named by
``$BPR_NUMBA_DATA`` and in the per-user cache (``$XDG_CACHE_HOME/bpr-numba``,
by default ``~/.cache/bpr-numba``); only the cache is written to, by a
verified, atomic download. :func:`holdout_split` lives in
:mod:`bpr_numba.split` and is re-exported here for older imports.
"""

from ..split import holdout_split
from ._files import DATA_ENV, DatasetNotFoundError
from .movielens import (
    ML1M_URL,
    ML100K_URL,
    ML_LATEST_SMALL_URL,
    MOVIELENS_SPLITS,
    MOVIELENS_URL_ENVS,
    MOVIELENS_VARIANTS,
    load_movielens,
    load_movielens_titles,
)
from .papers import GOWALLA_SHAPE, GOWALLA_URL, GOWALLA_URL_ENV, load_gowalla, read_split_file
from .synthetic import make_synthetic

__all__ = [
    "DATA_ENV",
    "DatasetNotFoundError",
    "GOWALLA_SHAPE",
    "GOWALLA_URL",
    "GOWALLA_URL_ENV",
    "ML100K_URL",
    "ML1M_URL",
    "ML_LATEST_SMALL_URL",
    "MOVIELENS_SPLITS",
    "MOVIELENS_URL_ENVS",
    "MOVIELENS_VARIANTS",
    "holdout_split",
    "load_gowalla",
    "load_movielens",
    "load_movielens_titles",
    "make_synthetic",
    "read_split_file",
]
