"""Factors for nearest-neighbour indexes (serving top-N at scale).

A model's score is a plain dot product ``user_factors[u] @ item_factors[i]``
(the item bias is a column of ``item_factors`` against a constant 1 in
``user_factors``), so recommending is maximum inner-product search (MIPS).
Indexes that search by inner product take the factors as they are; indexes
that search by Euclidean distance or cosine get the classic reduction of
MIPS to nearest-neighbour search (Bachrach et al., RecSys 2014): each item
vector gains one coordinate ``sqrt(M**2 - |v|**2)`` (``M`` the largest item
norm), so every item has norm ``M``, and each query gains a 0. Then, for a
query, a smaller distance and a larger cosine both mean a larger score.
"""

from __future__ import annotations

import numpy as np

from ._validation import factor_pair

SPACES = ("ip", "l2", "cosine")


def index_vectors(model, space="ip"):
    """Item vectors to index and user vectors to query with, for ``space``.

    Parameters
    ----------
    model : fitted BPR, or any object with ``user_factors`` and ``item_factors``
    space : {"ip", "l2", "cosine"}
        The index's similarity. ``"ip"`` (inner product) returns the factors
        themselves; ``"l2"`` and ``"cosine"`` return them with the extra
        coordinate of the MIPS-to-nearest-neighbour reduction (see the module
        docstring), so the nearest items are the best scored.

    Returns
    -------
    item_vectors : ndarray of float32, shape (n_items, d)
    user_vectors : ndarray of float32, shape (n_users, d)
        C-contiguous copies; ``d`` is the factor width (+ 1 for "l2"/"cosine").
        For every user, ranking the items by ``user_vectors[u] @
        item_vectors.T`` ("ip"), by distance (ascending, "l2") or by cosine
        (descending) gives the model's ranking.
    """
    if space not in SPACES:
        raise ValueError(f"space must be one of {', '.join(SPACES)}; got {space!r}.")
    users, items = (a.copy() for a in factor_pair(model))
    if space == "ip":
        return items, users
    # float64 for the norms: M**2 - |v|**2 cancels for the longest items.
    sq_norms = np.einsum("ij,ij->i", items, items, dtype=np.float64)
    extra = np.sqrt(np.maximum(sq_norms.max(initial=0.0) - sq_norms, 0.0)).astype(np.float32)
    item_vectors = np.hstack([items, extra[:, None]])
    user_vectors = np.hstack([users, np.zeros((users.shape[0], 1), np.float32)])
    return np.ascontiguousarray(item_vectors), np.ascontiguousarray(user_vectors)
