"""``FactorModel``: what every fitted model serves from its factors.

A model scores a pair by ``user_factors[u] @ item_factors[i]``; BPR learns
the factors, Popularity's are a column of ones and the item popularity. On
that one idea this base class builds everything a fitted model answers:
raw ids (``user_map_``/``item_map_`` of a model fitted on
:class:`~bpr_numba.Interactions`), ``predict``, ``recommend``,
``similar_items``/``similar_users`` and the save/load glue. Subclasses provide
``user_factors``/``item_factors`` and, for persistence, ``_restore``.
"""

from __future__ import annotations

import contextlib
import inspect

import numpy as np

from . import _validation as v
from ._scoring import recommend_for, similar_items_topk
from .data import IdMap, Interactions
from .persistence import describe, load_arrays, save_arrays


class FactorModel:
    """Base of the models: parameters, raw ids, predict, recommend, similar_*, save/load."""

    user_map_ = None
    item_map_ = None
    #: How to fit, said by the not-fitted error.
    _fit_hint = "call fit()"

    # ------------------------------------------------------------ parameters
    @classmethod
    def _param_names(cls):
        signature = inspect.signature(cls.__init__)
        return [name for name in signature.parameters if name != "self"]

    def get_params(self, deep=True):
        """Return the constructor parameters as a dict (scikit-learn's contract)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set constructor parameters; unknown names raise ValueError. Returns self."""
        known = self._param_names()
        for name, value in params.items():
            if name not in known:
                raise ValueError(
                    f"Invalid parameter {name!r} for {type(self).__name__}; known parameters: "
                    f"{', '.join(known)}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self):
        defaults = type(self)().get_params()
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if defaults[k] != v]
        text = f"{type(self).__name__}({', '.join(changed)})"
        if self.user_factors is not None and self._fitted_repr():
            text += f" [fitted: {self._fitted_repr()}]"
        return text

    def _fitted_repr(self):
        """What ``repr`` says of a fitted model ("" for nothing)."""
        return ""

    # ----------------------------------------------------------------- state
    @property
    def n_users(self):
        """Number of users of the fitted model."""
        self._check_fitted()
        return self.user_factors.shape[0]

    @property
    def n_items(self):
        """Number of items of the fitted model."""
        self._check_fitted()
        return self.item_factors.shape[0]

    def _check_fitted(self):
        if self.user_factors is None:
            raise v.NotFittedError(
                f"This {type(self).__name__} model is not fitted yet: {self._fit_hint}."
            )

    def _num_threads(self):
        """Threads of the serving kernels (0: all)."""
        return 0

    # --------------------------------------------------------------- raw ids
    def _adopt_id_maps(self, interactions):
        """fit: the id maps of ``interactions``, or None for a plain matrix."""
        maps = v.id_maps(interactions) if isinstance(interactions, Interactions) else None
        self.user_map_, self.item_map_ = maps if maps is not None else (None, None)

    def _check_same_ids(self, interactions, name):
        """Refuse an ``Interactions`` whose id maps differ from the model's."""
        v.check_same_ids(interactions, self, name)

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
            raise v.UnknownIdError(exc.args[0]) from None

    def _to_raw(self, ids, side, raw_ids):
        """Indices unchanged, or their raw ids when ``raw_ids`` (padding -1 stays -1 / "")."""
        return self._id_map(side).to_raw(ids) if raw_ids else ids

    # --------------------------------------------------------------- answers
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

    def recommend(self, userid, user_items=None, N=10, filter_already_liked_items=True,
                  filter_items=None, items=None, *, recalculate_user=False, raw_ids=False):
        """Best ``N`` items for one user or several, by score.

        Parameters
        ----------
        userid : int or array-like of int
        user_items : scipy.sparse matrix, optional
            Either one row per id in ``userid`` (implicit's convention) or the
            whole users x items matrix (rows picked by ``userid``); needed when
            ``filter_already_liked_items`` is True.
        N : int
        filter_already_liked_items : bool
            Leave out the items in the user's row of ``user_items``.
        filter_items : array-like of int, optional
            Items never recommended.
        items : array-like of int, optional
            Rank only these items.
        recalculate_user : bool
            Rank for user vectors folded in from the rows of ``user_items``
            (see ``recalculate_user``) instead of the stored ones; the model's
            factors do not change (its random stream advances). Models without
            fold-in raise NotImplementedError.
        raw_ids : bool
            ``userid``, ``filter_items`` and ``items`` are raw ids of the
            Interactions the model was fitted on, and the answer is in raw item
            ids (padding: -1 for int ids, "" for str ids; where -1 or "" is also
            a real id, the padding is told apart by its score, -inf).

        Returns
        -------
        ids : ndarray of int32 (raw ids with ``raw_ids``)
        scores : ndarray of float32
            For a scalar ``userid``, 1-D arrays of at most ``N`` items; for an
            array, 2-D arrays of shape (n, N) padded with id -1 and score -inf.
            Sorted by score (ties by item id).
        """
        self._check_fitted()
        self._check_same_ids(user_items, "user_items")
        userid = self._to_index(userid, "user", "userid", raw_ids)
        filter_items = self._to_index(filter_items, "item", "filter_items", raw_ids)
        items = self._to_index(items, "item", "items", raw_ids)
        user_factors = self.user_factors
        if recalculate_user and user_items is None:
            raise ValueError("recalculate_user=True needs user_items: the rows to fold in.")
        # A call refused after its fold-in leaves the model's random stream as it was.
        with self._fold_in_guard() if recalculate_user else contextlib.nullcontext():
            if recalculate_user:
                user_factors, userid, user_items = self._folded_in_users(userid, user_items)
            ids, scores = recommend_for(user_factors, self.item_factors, userid, user_items, N,
                                        filter_already_liked_items, filter_items, items,
                                        num_threads=self._num_threads())
        return self._to_raw(ids, "item", raw_ids), scores

    def similar_items(self, itemid, N=10, filter_items=None, items=None, *, filter_self=True,
                      recalculate_item=False, item_users=None, raw_ids=False):
        """Items most similar to ``itemid`` by cosine similarity of the item factors.

        Shapes follow :meth:`recommend`.

        Parameters
        ----------
        itemid : int or array-like of int
        N : int
        filter_items, items : array-like of int, optional
            Items never returned; the only items returned.
        filter_self : bool
            Leave the item itself out (default); False returns it too, first
            with similarity 1 (implicit's behaviour), unless ``filter_items``
            or ``items`` leave it out.
        recalculate_item : bool
            Query with item vectors folded in from ``item_users`` (one row of
            users per id in ``itemid``) instead of the stored ones; the model's
            factors do not change (its random stream advances). The query item
            stays itself: with ``filter_self=False`` it comes first with
            similarity 1.
        item_users : scipy.sparse matrix, shape (n, n_users), optional
            The users of each queried item; needed with ``recalculate_item``
            (ignored otherwise, as implicit does).
        raw_ids : bool
            Ids in and out are raw item ids (see :meth:`recommend`).

        Returns
        -------
        ids : ndarray of int32
        scores : ndarray of float32
        """
        query_vectors = None
        if recalculate_item and item_users is None:
            raise ValueError("recalculate_item=True needs item_users: the users of each item.")
        with self._fold_in_guard() if recalculate_item else contextlib.nullcontext():
            if recalculate_item:
                query_vectors = self._folded_in_items(itemid, item_users)
            return self._similar("item", itemid, N, filter_items, items, filter_self, raw_ids,
                                 query_vectors)

    def similar_users(self, userid, N=10, filter_users=None, users=None, *, filter_self=True,
                      raw_ids=False):
        """Users most similar to ``userid`` by cosine similarity of the user factors.

        Arguments and shapes mirror :meth:`similar_items`, with users in place of items.
        """
        return self._similar("user", userid, N, filter_users, users, filter_self, raw_ids)

    def _similarity_factors(self, side):
        """The factors whose cosine is the similarity (subclasses drop constant columns)."""
        return self.user_factors if side == "user" else self.item_factors

    def _fold_in_guard(self):
        """A context that undoes a failed fold-in's draws (models with fold-in)."""
        return contextlib.nullcontext()

    def _folded_in_users(self, userid, user_items):
        """``(vectors, query ids, rows)`` of users folded in from ``user_items`` (recommend)."""
        raise NotImplementedError(f"{type(self).__name__} cannot recalculate users (no fold-in).")

    def _folded_in_items(self, itemid, item_users):
        """Item vectors folded in from ``item_users``, as similarity queries (similar_items)."""
        raise NotImplementedError(f"{type(self).__name__} cannot recalculate items (no fold-in).")

    def _similar(self, side, query, N, filter_ids, candidates, filter_self, raw_ids,
                 query_vectors=None):
        self._check_fitted()
        query = self._to_index(query, side, f"{side}id", raw_ids)
        filter_ids = self._to_index(filter_ids, side, f"filter_{side}s", raw_ids)
        candidates = self._to_index(candidates, side, f"{side}s", raw_ids)
        factors = self._similarity_factors(side)
        query, scalar = v.check_ids(query, f"{side}id", factors.shape[0], f"{side}s")
        for ids, name in ((filter_ids, f"filter_{side}s"), (candidates, f"{side}s")):
            if ids is not None:
                v.check_ids(ids, name, factors.shape[0], f"{side}s")
        N = v.check_positive_int(N, "N")
        filter_self = v.check_bool(filter_self, "filter_self")
        if query_vectors is not None:
            query_vectors = query_vectors[:, :factors.shape[1]]  # an item bias is no direction
        ids, scores = similar_items_topk(factors, query, N, filter_ids, candidates,
                                         exclude_self=True, num_threads=self._num_threads(),
                                         query_vectors=query_vectors)
        if not filter_self:
            # The query itself first, with similarity 1 by definition (also for a folded-in
            # query vector, which stands for that item), where the filters allow it.
            eligible = np.ones(query.size, bool)
            if filter_ids is not None:
                eligible &= ~np.isin(query, np.asarray(filter_ids))
            if candidates is not None:
                eligible &= np.isin(query, np.asarray(candidates))
            ids[eligible, 1:] = ids[eligible, :-1].copy()
            scores[eligible, 1:] = scores[eligible, :-1].copy()
            ids[eligible, 0] = query[eligible]
            scores[eligible, 0] = 1.0
        if scalar:
            keep = ids[0] >= 0
            ids, scores = ids[0][keep], scores[0][keep]
        return self._to_raw(ids, side, raw_ids), scores

    # ----------------------------------------------------------- persistence
    def save(self, path):
        """Write the model to one ``.npz`` file, atomically (no pickle).

        The file holds a format version, the model's class and parameters as
        JSON, the factors and the raw ids; see :mod:`bpr_numba.persistence`.
        ``path`` may also be a binary file object (e.g. ``io.BytesIO``),
        written to from its position and left open.
        """
        fitted = self.user_factors is not None
        if not (fitted or self._saves_unfitted):
            self._check_fitted()
        params = self.get_params()
        if not isinstance(params.get("random_state"), (int, type(None))):
            params["random_state"] = None  # Generators and the like are not JSON
        for name, value in params.items():
            if isinstance(value, np.dtype) or (isinstance(value, type)
                                               and issubclass(value, np.generic)):
                params[name] = np.dtype(value).name  # JSON holds the dtype's name
        if not fitted:
            empty = np.zeros((0, 0), np.float32)
            save_arrays(path, params, empty, empty, {"model": type(self).__name__,
                                                     "fitted": False})
            return
        extra = {"model": type(self).__name__, **self._header_extra()}
        arrays = {}
        for side in ("user", "item"):
            id_map = getattr(self, f"{side}_map_", None)
            if id_map is not None:
                arrays[f"{side}_ids"] = id_map.ids
        save_arrays(path, params, self.user_factors, self.item_factors, extra, arrays)

    def _header_extra(self):
        """More JSON header entries of the subclass."""
        return {}

    #: Whether ``save`` writes a model that was never fitted (its parameters only).
    _saves_unfitted = False

    #: Parameters added after files without them were written, with the value
    #: that does what those files' models did (not always the new default).
    _params_before = {}

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save` (from a path or a binary file object).

        Raises
        ------
        FileNotFoundError
            No file at ``path``.
        ValueError
            Truncated, damaged, foreign or newer-version files, or a file of
            another model class.
        """
        header, users, items, arrays = load_arrays(path)
        path = describe(path)
        kind = header.get("model", "BPR")  # format 2 files before the field held BPR only
        if kind != cls.__name__:
            raise ValueError(f"{path} holds a {kind} model; load it with {kind}.load().")
        try:
            model = cls(**{**cls._params_before, **header["params"]})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path} holds invalid parameters: {exc}") from exc
        if header.get("fitted", True) is False:
            return model  # saved before fit: parameters only
        model._restore(users, items, header, path)
        for side, n in (("user", users.shape[0]), ("item", items.shape[0])):
            ids = arrays.get(f"{side}_ids")
            if ids is not None:
                try:
                    id_map = IdMap(ids)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"{path} is damaged: its {side} ids are invalid ({exc}).") \
                        from exc
                if len(id_map) != n:
                    raise ValueError(
                        f"{path} is damaged: {len(id_map)} {side} ids for {n} {side} rows."
                    )
                setattr(model, f"{side}_map_", id_map)
        return model

    def _restore(self, user_factors, item_factors, header, path):
        """Take the factors and header entries read from ``path`` by :meth:`load`.

        Raises ValueError naming ``path`` for invalid parameters or damaged contents.
        """
        raise NotImplementedError
