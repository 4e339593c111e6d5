"""Raw ids for models fitted on ``Interactions`` (shared by BPR and Popularity).

A model fitted on :class:`~bpr_numba.data.Interactions` keeps its id maps as
``user_map_`` and ``item_map_`` (None for a plain matrix); methods that take
``raw_ids=True`` read ids through them and answer in them.
"""

from __future__ import annotations

import numpy as np

from . import _validation as v
from .data import Interactions


class UnknownIdError(KeyError, ValueError):
    """A raw id the model's id maps do not hold: a KeyError that ``except ValueError`` catches."""

    def __str__(self):  # KeyError would show the message quoted
        return str(self.args[0]) if self.args else ""


def check_same_maps(a, b, name_a, name_b):
    """Refuse two ``Interactions`` whose id maps differ (anything else passes)."""
    if isinstance(a, Interactions) and isinstance(b, Interactions) and (
            a.user_map != b.user_map or a.item_map != b.item_map):
        raise ValueError(
            f"{name_a} and {name_b} have other raw ids (their users or items differ, or are "
            "numbered otherwise); split one Interactions (bpr_numba.split) to get both."
        )


class RawIdsMixin:
    """Raw ids (``user_map_``/``item_map_``) and the answers built on the factors.

    Shared by BPR and Popularity: both score a pair by ``user_factors[u] @
    item_factors[i]`` (Popularity's factors are ones and the popularity).
    """

    user_map_ = None
    item_map_ = None

    def _adopt_id_maps(self, interactions):
        """fit: the id maps of ``interactions``, or None for a plain matrix."""
        if isinstance(interactions, Interactions):
            self.user_map_, self.item_map_ = interactions.user_map, interactions.item_map
        else:
            self.user_map_ = self.item_map_ = None

    def _check_same_ids(self, interactions, name):
        """Refuse an ``Interactions`` whose id maps differ from the model's.

        Both sides must have raw ids to be compared: a plain matrix, or a model
        fitted on one, is taken by index.
        """
        if not isinstance(interactions, Interactions) or self.user_map_ is None:
            return
        if interactions.user_map != self.user_map_ or interactions.item_map != self.item_map_:
            raise ValueError(
                f"{name} has other raw ids than the model (its users or items differ, or are "
                "numbered otherwise); build it on the model's id maps, e.g. with a split of "
                "the Interactions the model was fitted on."
            )

    def _id_map(self, side):
        id_map = getattr(self, f"{side}_map_", None)
        if id_map is None:
            raise ValueError(
                f"raw_ids=True needs raw {side} ids, which a model gets when fitted on "
                "bpr_numba.Interactions; this one was fitted on a matrix, so pass indices."
            )
        return id_map

    def _to_index(self, ids, side, name, raw_ids):
        """``ids`` unchanged, or mapped from raw ids when ``raw_ids``."""
        if not raw_ids or ids is None:
            return ids
        try:
            return self._id_map(side).to_index(ids, name)
        except KeyError as exc:
            raise UnknownIdError(exc.args[0]) from None

    def _to_raw(self, ids, side, raw_ids):
        """Indices unchanged, or their raw ids when ``raw_ids`` (padding -1 stays -1 / "")."""
        return self._id_map(side).to_raw(ids) if raw_ids else ids

    def _recommend(self, userid, user_items, N, filter_already_liked_items, filter_items,
                   items, raw_ids, num_threads=0):
        """``recommend``'s body for any model with factors: raw ids in and out."""
        from ._topk import recommend_for

        self._check_same_ids(user_items, "user_items")
        userid = self._to_index(userid, "user", "userid", raw_ids)
        filter_items = self._to_index(filter_items, "item", "filter_items", raw_ids)
        items = self._to_index(items, "item", "items", raw_ids)
        ids, scores = recommend_for(self.user_factors, self.item_factors, userid, user_items, N,
                                    filter_already_liked_items, filter_items, items,
                                    num_threads=num_threads)
        return self._to_raw(ids, "item", raw_ids), scores

    def predict(self, user_ids, item_ids, *, raw_ids=False):
        """Scores of the pairs ``(user_ids[k], item_ids[k])``.

        Parameters
        ----------
        user_ids, item_ids : int or array-like of int, shape (n,)
        raw_ids : bool
            The ids are raw ids of the Interactions the model was fitted on.

        Returns
        -------
        float32 or ndarray of float32, shape (n,)
        """
        self._check_fitted()
        user_ids = self._to_index(user_ids, "user", "user_ids", raw_ids)
        item_ids = self._to_index(item_ids, "item", "item_ids", raw_ids)
        user_factors, item_factors = self.user_factors, self.item_factors
        users, scalar_u = v.check_ids(user_ids, "user_ids", user_factors.shape[0], "users")
        items, scalar_i = v.check_ids(item_ids, "item_ids", item_factors.shape[0], "items")
        if users.size != items.size:
            raise ValueError(
                f"user_ids and item_ids must have one length; got {users.size} and {items.size}."
            )
        scores = np.einsum("ij,ij->i", user_factors[users], item_factors[items],
                           dtype=np.float32)
        return scores[0] if scalar_u and scalar_i else scores
