"""Baselines to put beside the BPR model in quality tables.

:class:`Popularity` ranks every user's items by how many training users have
them. It exposes ``user_factors`` (a column of ones) and ``item_factors`` (the
popularity) so that every function of :mod:`bpr_numba.metrics` scores it
unchanged: the score of ``(u, i)`` is ``1 * popularity[i]``, the same for
every user.
"""

from __future__ import annotations

import numpy as np

from . import _validation as v
from ._model import FactorModel

__all__ = ["Popularity"]


class Popularity(FactorModel):
    """Recommend the most popular items: one ranking shared by every user.

    Parameters
    ----------
    weighted : bool
        False (default): the popularity of an item is the number of users
        with a positive for it (stored non-zeros; duplicates count once).
        True: the sum of its stored values (e.g. event counts; duplicates
        summed).

    Attributes
    ----------
    item_popularity_ : ndarray of float32, shape (n_items,)
        Popularity of each item in the matrix given to :meth:`fit`.
    user_factors : ndarray of float32, shape (n_users, 1)
        All ones; None before :meth:`fit`.
    item_factors : ndarray of float32, shape (n_items, 1)
        ``item_popularity_`` as a column (a view of it); None before :meth:`fit`.
    n_users, n_items : int

    Notes
    -----
    The score of every ``(user, item)`` pair is the item's popularity, so
    ``bpr_numba.metrics`` ranks each user's candidates by popularity; with
    equal popularity the metrics' AUC counts the pair as one half and
    :meth:`recommend` puts the smaller item id first.
    """

    def __init__(self, weighted=False):
        self.weighted = weighted

    # ---------------------------------------------------------------- fitting
    def fit(self, interactions, y=None):
        """Count the positives of every item in ``interactions``.

        Parameters
        ----------
        interactions : scipy.sparse matrix, shape (n_users, n_items), or Interactions
            Stored non-zeros are positives (explicit zeros ignored); COO, CSR
            and CSC are accepted. A :class:`bpr_numba.data.Interactions` is
            read through its ``matrix``.
        y : ignored

        Returns
        -------
        self

        Raises
        ------
        TypeError
            ``interactions`` is not a scipy.sparse matrix (nor has one as
            ``.matrix``), or ``weighted`` is not a bool.
        ValueError
            An empty matrix, no positive, or NaN/infinite values.
        """
        v.check_bool(self.weighted, "weighted")
        X = v.check_interactions(interactions, "interactions")
        n_users, n_items = X.shape
        if self.weighted:  # check_interactions keeps the (summed) stored values
            totals = np.bincount(X.indices, weights=np.asarray(X.data, np.float64),
                                 minlength=n_items)
            popularity = totals.astype(np.float32)
        else:
            popularity = np.bincount(X.indices, minlength=n_items).astype(np.float32)
        self.item_popularity_ = popularity
        self._user_factors = np.ones((n_users, 1), np.float32)
        self._adopt_id_maps(interactions)
        return self

    # ----------------------------------------------------------------- state
    @property
    def user_factors(self):
        """ndarray of float32, shape (n_users, 1), all ones; None before fit."""
        return getattr(self, "_user_factors", None)

    @property
    def item_factors(self):
        """ndarray of float32, shape (n_items, 1): the popularity; None before fit."""
        popularity = getattr(self, "item_popularity_", None)
        return None if popularity is None else popularity[:, None]

    # --------------------------------------------------------- using a model
    def _similarity_factors(self, side):
        raise TypeError(
            "Popularity has no similarity between items or users: its factors are one "
            "column (the popularity), so every cosine is 1. Fit a BPR model for similar_*."
        )

    def _restore(self, users, items, header, path):
        if users.shape[1] != 1 or items.shape[1] != 1 or not np.all(users == 1.0):
            raise ValueError(f"{path} is damaged: a Popularity model has one column of ones "
                             "and one of popularity.")
        self.item_popularity_ = np.ascontiguousarray(items[:, 0])
        self._user_factors = np.ascontiguousarray(users)
