"""Fold-in: train some users' or items' vectors against the other side's fixed factors.

New or changed users get vectors without refitting: their rows are trained
with the model's loss, sampler and optimiser (fresh optimiser state) by the
same per-sample kernel as ``fit``, with an update mask that moves only one
side (``UPDATE_USER``: the user rows; ``UPDATE_POSITIVE``: the item of each
positive, against fixed users and fixed negatives), through the same epoch
loop. Raw ids unknown to the model are appended to its id map only once the
fold-in has succeeded, so a refused call leaves the model as it was.
"""

from __future__ import annotations

import contextlib

import numpy as np
import scipy.sparse as sp

from . import _validation as v
from ._kernels.hogwild import UPDATE_POSITIVE, UPDATE_USER
from ._runtime import spawn_states
from ._scoring import row_offsets
from ._training import N_CHUNKS, OptimizerState, run_epochs, trainer_for
from .data import IdMap, as_id_array


class _Run:
    """What the epoch loop needs of a model, for factors trained outside the model."""

    def __init__(self, user_factors, item_factors):
        self._user_factors = user_factors
        self._item_factors = item_factors
        self.history_ = []
        self.n_epochs_done_ = 0


def uniform_factors(rng, n_rows, k, extra, scale, fill):
    """float32 (n_rows, k + extra) uniform in (-scale, scale), the extra column set to ``fill``.

    Drawn in blocks of rows straight into the result, so no float64 copy of
    the whole matrix is ever made.
    """
    out = np.empty((n_rows, k + extra), np.float32)
    block = max(1, (1 << 20) // max(k, 1))
    for start in range(0, n_rows, block):
        rows = rng.random((min(block, n_rows - start), k), dtype=np.float32)
        out[start:start + rows.shape[0], :k] = (2.0 * scale) * rows - scale
    if extra:
        out[:, k] = fill
    return out


def fold_in_recipe(model, epochs):
    recipe = model._recipe()
    model._check_layout(recipe)
    if not trainer_for(recipe).supports_fold_in:
        raise ValueError(
            "fold-in trains with the fast mode's per-sample or listwise kernel; this model uses "
            "optimizer='dense-adam' (the Keras mode). Refit with another optimizer."
        )
    if recipe.negatives == "popularity":
        raise ValueError(
            "fold-in with negatives='popularity' would draw from the popularity of the rows "
            "being folded in, not of the training data (a model keeps no item counts); "
            "set_params(negatives='uniform') or 'unseen' for the fold-in, or refit."
        )
    epochs = recipe.epochs if epochs is None else v.check_positive_int(epochs, "epochs")
    return recipe, epochs


@contextlib.contextmanager
def stream_kept_on_failure(model):
    """A fold-in in this block that raises leaves the model's random stream where it was.

    A fold-in draws from the model's stream (its init, its epochs' plans, new
    rows), as a successful one should: it is part of the model's history. A
    refused, diverging or interrupted one leaves the factors as they were,
    and so the stream too: the next fit or fold-in is then the one a run
    without the failed call would have made. (Not thread-safe: two threads
    folding in on one model may rewind each other's draws on failure.)
    """
    generator = model._streams[0]
    saved = generator.bit_generator.state
    try:
        yield
    except BaseException:
        generator.bit_generator.state = saved
        raise


def _streams(model):
    """A fresh init generator and chunk states, drawn from the model's stream."""
    seq = np.random.SeedSequence(int(model._streams[0].integers(0, 2**63)))
    init_seq, chunk_seq = seq.spawn(2)
    return np.random.default_rng(init_seq), spawn_states(chunk_seq, N_CHUNKS)


def _train(model, recipe, epochs, X, user_factors, item_factors, state, chunk_states, mask,
           what):
    """Train the fold-in epochs through the epoch loop; the model's own streams order them."""
    trainer = trainer_for(recipe, model._has_bias_column)
    weights = v.check_sample_weight(X, None, recipe.use_weights)
    run = _Run(user_factors, item_factors)
    streams = (model._streams[0], chunk_states)

    def train_epochs(interrupt, epoch, n):
        totals = trainer.epochs(X, weights, run._user_factors, run._item_factors, state,
                                streams, interrupt, epoch, n, update_mask=mask)
        for e, row in enumerate(totals):
            if row[3]:
                trainer.record(row, epoch + e, what=f"fold-in of {what}",
                               keeps="Those steps were not applied; the model is unchanged.")
        return [{"loss": row[0] / max(row[1], 1), "skipped": int(row[2])} for row in totals]

    run_epochs(run, epochs, train_epochs, num_threads=recipe.num_threads,
               epochs_per_call=trainer.epochs_per_call(X, mask))


def fold_in_users(model, rows, epochs):
    """Train fresh user vectors for the CSR ``rows`` against the fixed item factors."""
    recipe, epochs = fold_in_recipe(model, epochs)
    init_rng, chunk_states = _streams(model)
    users = uniform_factors(init_rng, rows.shape[0], recipe.factors,
                            int(model._has_bias_column), recipe.init_scale, 1.0)
    empty = np.diff(rows.indptr) == 0
    if empty.any():
        v.warn_caller(
            f"{int(empty.sum())} of the {rows.shape[0]} users to fold in have no positive: "
            "they keep a random vector (their recommendations are random).")
    if rows.nnz:
        state = OptimizerState.fresh(recipe.optimizer, users.shape, (0, 0),
                                     recipe.initial_accumulator_value)
        _train(model, recipe, epochs, rows, users, model._item_factors, state, chunk_states,
               UPDATE_USER, "users")
    return users


def fold_in_items(model, ids, item_users, epochs):
    """Retrain the items ``ids`` (grown if new) from the CSR ``item_users``, users fixed."""
    recipe, epochs = fold_in_recipe(model, epochs)
    empty = np.diff(item_users.indptr) == 0
    if empty.any():
        v.warn_caller(
            f"{int(empty.sum())} of the {ids.size} items to fold in have no user: they get "
            "a random vector.")
    # The items are grown and trained in a copy, put in place only when the
    # fold-in succeeded: a diverging or interrupted one leaves the model as it was.
    previous = model._item_factors, model._opt_state.item
    model._item_factors = previous[0].copy()
    try:
        grow(model, "item", int(ids.max()) + 1)
        init_rng, chunk_states = _streams(model)
        model._item_factors[ids] = uniform_factors(init_rng, ids.size, recipe.factors,
                                                   int(model._has_bias_column),
                                                   recipe.init_scale, 0.0)
        # Users x items positives at the given items only, values kept for weights.
        item_of_entry = ids[np.repeat(np.arange(ids.size), np.diff(item_users.indptr))]
        X = v.check_interactions(
            sp.csr_matrix((np.asarray(item_users.data, np.float32),
                           (item_users.indices, item_of_entry)),
                          shape=(model.n_users, model.n_items)),
            "item_users")
        state = OptimizerState.fresh(recipe.optimizer, (0, 0), model._item_factors.shape,
                                     recipe.initial_accumulator_value)
        _train(model, recipe, epochs, X, model._user_factors, model._item_factors, state,
               chunk_states, UPDATE_POSITIVE, "items")
    except BaseException:
        model._item_factors, model._opt_state.item = previous
        raise


def recalculated_items(model, item_users, epochs):
    """Fresh vectors of items trained from the CSR ``item_users`` (one row of users per item).

    The model's factors do not change: the items are trained as extra rows appended to
    a copy of the item factors (only those rows move; users and the sampled
    negatives, which may include the other extra rows, stay fixed).
    """
    recipe, epochs = fold_in_recipe(model, epochs)
    n_new, n_items = item_users.shape[0], model.n_items
    init_rng, chunk_states = _streams(model)
    fresh = uniform_factors(init_rng, n_new, recipe.factors, int(model._has_bias_column),
                            recipe.init_scale, 0.0)
    empty = np.diff(item_users.indptr) == 0
    if empty.any():
        v.warn_caller(
            f"{int(empty.sum())} of the {n_new} items to recalculate have no user: they keep "
            "a random vector.")
    if item_users.nnz == 0:
        return fresh
    items = np.concatenate([model._item_factors, fresh])
    columns = n_items + np.repeat(np.arange(n_new), np.diff(item_users.indptr))
    X = v.check_interactions(
        sp.csr_matrix((np.asarray(item_users.data, np.float32), (item_users.indices, columns)),
                      shape=(model.n_users, n_items + n_new)), "item_users")
    state = OptimizerState.fresh(recipe.optimizer, (0, 0), items.shape,
                                 recipe.initial_accumulator_value)
    _train(model, recipe, epochs, X, model._user_factors, items, state, chunk_states,
           UPDATE_POSITIVE, "items")
    return items[n_items:]


def rows_for(model, ids, n, matrix, name, allow_whole=True):
    """CSR rows of ``matrix`` for ``n`` ids: one row per id, or picked from the whole matrix."""
    X = v.check_interactions(matrix, name, allow_empty=True)
    n_cols = model.n_items
    if X.shape[1] != n_cols:
        raise ValueError(f"{name} has {X.shape[1]} columns, but the model has {n_cols} items.")
    if X.shape[0] == n:
        return X
    if allow_whole and X.shape[0] == model.n_users:
        picked, _ = v.check_ids(ids, "userid", model.n_users, "users")
        offsets, indptr = row_offsets(X, picked)
        return v.kernel_csr(X.data[offsets].astype(np.float32), X.indices[offsets], indptr,
                            (picked.size, n_cols))
    raise ValueError(
        f"{name} has {X.shape[0]} rows; expected one row per given id ({n})"
        + (f" or the whole matrix ({model.n_users} rows)." if allow_whole else ".")
    )


def ids_for_update(model, ids, name, side, raw_ids):
    """Indices for fold-in, known or new (>= n), and the id map to keep afterwards.

    Raw ids are mapped, unknown ones appended to a new map that the caller
    adopts once the fold-in has succeeded.
    """
    id_map = getattr(model, f"{side}_map_", None)
    if raw_ids:
        id_map = model._id_map(side)
        raw = as_id_array(np.atleast_1d(np.asarray(ids)), name)
        if raw.size and (raw.dtype.kind == "U") != (id_map.ids.dtype.kind == "U"):
            kind = "strings" if id_map.ids.dtype.kind == "U" else "integers"
            raise TypeError(f"{name} must hold raw {side} ids, which are {kind} for this "
                            f"model; got {raw.dtype}.")
        new_raw = np.unique(raw[~np.isin(raw, id_map.ids)])
        if new_raw.size:
            id_map = IdMap(np.concatenate([id_map.ids, new_raw]))
        out = id_map.to_index(raw, name)
    else:
        arr = np.atleast_1d(np.asarray(ids))
        if arr.ndim != 1 or arr.dtype.kind not in "iu" or arr.dtype.kind == "b":
            raise TypeError(f"{name} must be a 1-D array of integer ids; got {ids!r}.")
        out = arr.astype(np.int64)
        if out.size and out.min() < 0:
            raise v.IdOutOfRangeError(f"{name} contains {int(out.min())}; ids are >= 0.")
        n_known = getattr(model, f"_{side}_factors").shape[0]
        if id_map is not None and out.size and out.max() >= n_known:
            raise ValueError(
                f"this model has raw {side} ids (fitted on Interactions): new {side}s need "
                f"raw ids too, so pass raw ids with raw_ids=True."
            )
    if out.size == 0:
        raise ValueError(f"{name} is empty; expected at least one id.")
    if np.unique(out).size != out.size:
        raise ValueError(f"{name} holds repeated ids; give each id once.")
    return out, id_map


def grow(model, side, n_rows):
    """Add fresh random rows (and zero optimiser state) up to ``n_rows`` on ``side``."""
    current = getattr(model, f"_{side}_factors")
    if n_rows <= current.shape[0]:
        return
    recipe = model._recipe()
    init_rng, _ = _streams(model)
    fill = 1.0 if side == "user" else 0.0
    extra = uniform_factors(init_rng, n_rows - current.shape[0], recipe.factors,
                            int(model._has_bias_column), recipe.init_scale, fill)
    state = model._opt_state
    # Both made before either is put in place: factors and state keep one row count.
    factors = np.concatenate([current, extra])
    grown = getattr(state, side).grown(n_rows, recipe.initial_accumulator_value)
    setattr(model, f"_{side}_factors", factors)
    setattr(state, side, grown)


class FoldInMixin:
    """The fold-in entry points of :class:`~bpr_numba.BPR` (see the module docstring)."""

    def recalculate_user(self, userid, user_items, epochs=None, *, raw_ids=False):
        """Factors of users computed from their rows alone, against fixed item factors.

        The model's factors do not change (its random stream advances). Each
        row starts from a fresh random vector and is trained for ``epochs``
        epochs with the model's loss, sampler and optimiser (fresh optimiser
        state), moving only the user vector: a new or changed user gets
        recommendations without refitting.

        Parameters
        ----------
        userid : int or array-like of int
            Picks the rows when ``user_items`` is the whole users x items
            matrix; otherwise ``user_items`` holds one row per id and the ids
            are not used (a new user may pass any id, e.g. -1).
        user_items : scipy.sparse matrix or Interactions, shape (n, n_items)
        epochs : int, optional
            Default: the model's ``epochs``.
        raw_ids : bool
            ``userid`` holds raw ids (only needed to pick rows of the whole
            matrix).

        Returns
        -------
        ndarray of float32, shape (factors [+ 1],) for a scalar ``userid``, else (n, ...)
        """
        self._check_fitted()
        self._check_same_ids(user_items, "user_items")
        scalar = np.ndim(userid) == 0
        if raw_ids and getattr(user_items, "shape", (None,))[0] == self.n_users:
            userid = self._to_index(userid, "user", "userid", raw_ids)
        n = 1 if scalar else np.asarray(userid).size
        rows = rows_for(self, userid, n, user_items, "user_items")
        with stream_kept_on_failure(self):
            factors = fold_in_users(self, rows, epochs)
        return factors[0] if scalar else factors

    def recalculate_item(self, itemid, item_users, epochs=None):
        """Factors of items computed from their users alone, against fixed user factors.

        The model's factors do not change (its random stream advances). Each
        item starts from a fresh random vector and is trained for ``epochs``
        epochs as in :meth:`partial_fit_items` (only the item's vector moves).

        Parameters
        ----------
        itemid : int or array-like of int
            One id per row of ``item_users``; only the count matters (a new
            item may pass any id).
        item_users : scipy.sparse matrix, shape (n, n_users)
            One row per item: the users who interacted with it.
        epochs : int, optional
            Default: the model's ``epochs``.

        Returns
        -------
        ndarray of float32, shape (factors [+ 1],) for a scalar ``itemid``, else (n, ...)
        """
        self._check_fitted()
        scalar = np.ndim(itemid) == 0
        n = 1 if scalar else np.asarray(itemid).size
        rows = v.check_interactions(item_users, "item_users", allow_empty=True)
        if rows.shape != (n, self.n_users):
            raise ValueError(
                f"item_users must have one row per item id and one column per user, shape "
                f"({n}, {self.n_users}); got {rows.shape}."
            )
        with stream_kept_on_failure(self):
            factors = recalculated_items(self, rows, epochs)
        return factors[0] if scalar else factors

    def _fold_in_guard(self):
        return stream_kept_on_failure(self)

    def _folded_in_users(self, userid, user_items):
        n = 1 if np.ndim(userid) == 0 else np.asarray(userid).size
        rows = rows_for(self, userid, n, user_items, "user_items")
        vectors = fold_in_users(self, rows, None)
        return vectors, (0 if np.ndim(userid) == 0 else np.arange(n)), rows

    def _folded_in_items(self, itemid, item_users):
        return np.atleast_2d(self.recalculate_item(itemid, item_users))

    def partial_fit_users(self, userids, user_items, epochs=None, *, raw_ids=False):
        """Retrain the given users' vectors from their rows, item factors fixed.

        Ids at or past ``n_users`` add users (the factors grow; rows between
        get fresh random vectors); with ``raw_ids=True`` unknown raw ids are
        appended to ``user_map_``. See :meth:`recalculate_user` for the
        training. Returns self.

        Parameters
        ----------
        userids : array-like of int (or raw ids with ``raw_ids=True``), shape (n,)
        user_items : scipy.sparse matrix or Interactions, shape (n, n_items)
            One row per id (or the whole matrix when every id is known).
        epochs : int, optional
        """
        self._check_fitted()
        self._check_same_ids(user_items, "user_items")
        ids, id_map = ids_for_update(self, userids, "userids", "user", raw_ids)
        known = ids.max() < self.n_users
        rows = rows_for(self, ids if known else np.zeros(ids.size, np.int64), ids.size,
                                user_items, "user_items", allow_whole=known)
        with stream_kept_on_failure(self):
            factors = fold_in_users(self, rows, epochs)
            grow(self, "user", int(ids.max()) + 1)
        self._user_factors[ids] = factors
        self.user_map_ = id_map  # only now: a refused call leaves the map as it was
        return self

    def partial_fit_items(self, itemids, item_users, epochs=None, *, raw_ids=False):
        """Retrain the given items' vectors from their users, user factors fixed.

        Each (user, item) pair of ``item_users`` is a positive: its sample draws
        a negative item as in training and moves only the item's vector (the
        negative's and the user's stay fixed). Ids at or past ``n_items`` add
        items. Returns self.

        Parameters
        ----------
        itemids : array-like of int (or raw ids with ``raw_ids=True``), shape (n,)
        item_users : scipy.sparse matrix, shape (n, n_users)
            One row per id: the users who interacted with the item.
        epochs : int, optional
        """
        self._check_fitted()
        fold_in_recipe(self, epochs)  # refuse the Keras mode before anything moves
        ids, id_map = ids_for_update(self, itemids, "itemids", "item", raw_ids)
        rows = v.check_interactions(item_users, "item_users")
        if rows.shape != (ids.size, self.n_users):
            raise ValueError(
                f"item_users must have one row per item id and one column per user, shape "
                f"({ids.size}, {self.n_users}); got {rows.shape}."
            )
        with stream_kept_on_failure(self):
            fold_in_items(self, ids, rows, epochs)
        self.item_map_ = id_map
        return self
