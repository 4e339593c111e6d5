"""A drop-in for implicit's BPR: ``from bpr_numba.implicit import BayesianPersonalizedRanking``.

:class:`BayesianPersonalizedRanking` takes implicit's constructor (names,
order and defaults of ``implicit.cpu.bpr.BayesianPersonalizedRanking``
0.7.x), and answers ``fit``, ``recommend``, ``similar_items``,
``similar_users``, ``save`` and ``load`` with implicit's signatures and
return shapes. It is a thin mapping onto :class:`bpr_numba.BPR` (a
subclass): training runs the same kernel as ``BPR`` configured as plain BPR
with SGD (see :meth:`BayesianPersonalizedRanking.bpr_params`), so with a
seed and one thread its factors are bit for bit those of ``BPR(**params)``.

What implicit computes per sample, and what this class computes: implicit's
``bpr_update`` moves ``w += lr * (z * d - reg * w)`` for the user, liked and
disliked rows, with ``z = 1 / (1 + exp(u.i - u.j))`` (the gradient of
``-log sigmoid(u.i - u.j)``) and ``reg * w`` on every touched row, the item
bias included and the user's constant column excluded. That is
``BPR(loss="bpr", optimizer="sgd")`` with the same ``learning_rate`` and
``regularization``, no rescaling. The differences, all documented in the
README's "Coming from implicit" section, are in what is sampled:

- an epoch of implicit draws ``nnz`` positives with replacement; here it is
  one pass over all positives in a shuffled, cache-friendly order;
- implicit draws the negative as the item of another random positive
  (negatives in proportion to item popularity) and, with
  ``verify_negative_samples=True``, *skips* the sample when the user liked
  it; here negatives are uniform over all items (``False``) or exactly
  uniform over the user's unseen items (``True``, ``negatives="unseen"``:
  nothing is skipped);
- factors start uniform in ``(-0.5 / factors, 0.5 / factors)`` as implicit's
  do, but the item bias starts at 0; users and items without interactions
  end :meth:`fit` at zero, as in implicit (here the items were trained as
  negatives meanwhile, which changes the other rows a little);
- factors are float32 only (``dtype=np.float64`` is refused).
"""

from __future__ import annotations

import functools
import sys
import warnings

import numpy as np
import scipy.sparse as sp

from . import _validation as v
from .estimator import BPR

__all__ = ["BayesianPersonalizedRanking", "ParameterWarning"]

# Samples scored after each epoch to estimate the callback's ``correct`` count.
_CORRECT_SAMPLE = 10_000
# implicit's score for an item of ``items=`` ranked last because the user liked it.
_LIKED_SCORE = -np.finfo(np.float32).max


class ParameterWarning(UserWarning):
    """A parameter was converted (e.g. a non-CSR ``user_items``), as implicit warns.

    When ``implicit`` is imported in the process, the warning raised is also
    an instance of ``implicit.utils.ParameterWarning``, so filters and
    ``pytest.warns`` written for implicit keep working.
    """


@functools.lru_cache(maxsize=None)
def _joint_warning(theirs):
    return type("ParameterWarning", (ParameterWarning, theirs), {"__module__": __name__})


def _parameter_warning():
    theirs = getattr(sys.modules.get("implicit.utils"), "ParameterWarning", None)
    if isinstance(theirs, type) and issubclass(theirs, Warning):
        return _joint_warning(theirs)
    return ParameterWarning


def _npz_path(fileobj_or_path):
    """implicit's rule (numpy.savez's): a ``str`` path gets ``.npz`` appended if it lacks it."""
    if isinstance(fileobj_or_path, str) and not fileobj_or_path.endswith(".npz"):
        return fileobj_or_path + ".npz"
    return fileobj_or_path


class BayesianPersonalizedRanking(BPR):
    """implicit's ``BayesianPersonalizedRanking``, trained by bpr-numba's kernels.

    Parameters
    ----------
    factors : int
        Latent factors; the factor matrices have ``factors + 1`` columns, the
        last being the item bias against a constant 1 in ``user_factors``
        (implicit's layout).
    learning_rate : float
        SGD step, per sample, as implicit's.
    regularization : float
        L2 weight added to the gradient of each touched row, as implicit's.
    dtype : numpy dtype
        Only float32 (implicit also trains float64).
    iterations : int
        Epochs of :meth:`fit`.
    num_threads : int
        Threads; 0 means all cores. With 1 and a ``random_state``, a run is
        reproducible bit for bit.
    verify_negative_samples : bool
        True: negatives only among the items the user has no interaction with
        (drawn exactly, nothing skipped); False: uniform over all items.
    random_state : None, int, numpy Generator, RandomState or SeedSequence
        Seed of the initialisation, orders and negatives (a RandomState works
        here; implicit 0.7.3 fails on one).
    use_gpu : bool
        Keyword of implicit's factory function; only False (CPU).

    Attributes
    ----------
    user_factors : ndarray of float32, shape (n_users, factors + 1)
        The last column is all ones.
    item_factors : ndarray of float32, shape (n_items, factors + 1)
        The last column is the item bias.
    """

    _fit_hint = "call fit()"
    _saves_unfitted = True  # implicit saves (and loads) a model before fit
    _params_before = {}  # implicit's parameters: none added since the first files

    def __init__(self, factors=100, learning_rate=0.01, regularization=0.01, dtype=np.float32,
                 iterations=100, num_threads=0, verify_negative_samples=True,
                 random_state=None, *, use_gpu=False):
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        # Stored as a numpy dtype, as implicit does: it compares equal to its name,
        # so a model saved and loaded has equal attributes.
        self.dtype = np.dtype(dtype)
        self.iterations = iterations
        self.num_threads = num_threads
        self.verify_negative_samples = verify_negative_samples
        self.random_state = random_state
        self.use_gpu = use_gpu

    # ------------------------------------------------------------- the mapping
    def bpr_params(self):
        """The parameters of the :class:`~bpr_numba.BPR` this model trains as.

        ``BPR(**model.bpr_params())`` fitted on the same matrix gives the same
        factors (bit for bit with ``num_threads=1`` and a seed).

        Returns
        -------
        dict
        """
        factors = v.check_positive_int(self.factors, "factors")
        verify = v.check_bool(self.verify_negative_samples, "verify_negative_samples")
        params = BPR().get_params()  # parameters this class does not map keep BPR's defaults
        params.update(
            factors=factors, loss="bpr", optimizer="sgd", learning_rate=self.learning_rate,
            regularization=self.regularization, epochs=self.iterations,
            negatives="unseen" if verify else "uniform", negative_candidates=1,
            item_bias=True, use_weights=False, init_scale=0.5 / factors,
            num_threads=self.num_threads, random_state=self.random_state)
        return params

    def _recipe(self):
        if self.use_gpu:
            raise ValueError("use_gpu=True: bpr-numba trains on the CPU only; pass use_gpu=False.")
        if self.dtype != np.float32:
            raise ValueError(
                f"dtype must be float32 (bpr-numba's factors are float32); got {self.dtype}."
            )
        return BPR(**self.bpr_params())._recipe()

    # ---------------------------------------------------------------- training
    def fit(self, user_items, show_progress=True, callback=None):
        """Fit from scratch on ``user_items`` (users x items; non-zeros are positives).

        Parameters
        ----------
        user_items : scipy.sparse matrix, shape (n_users, n_items)
            CSR expected; another sparse format is converted with a
            :class:`ParameterWarning`, as implicit does.
        show_progress : bool
            A progress bar over the epochs (on a terminal).
        callback : callable, optional
            Called after every epoch as ``callback(epoch, elapsed, correct,
            skipped)``: the 0-based epoch, its seconds, an estimate of the
            epoch's samples ranked right (see below) and the samples skipped
            for want of a negative. Its return value is ignored.

        Returns
        -------
        self

        Notes
        -----
        implicit counts ``correct`` during the epoch, before each update; here
        it is ``round(share * trained)``, with ``share`` the fraction of
        10,000 fresh training triplets (drawn after the epoch, with the
        model's negative policy, from a stream of their own that does not
        touch training's) that the model ranks right, and ``trained`` the
        epoch's samples. ``fit`` always starts afresh (implicit continues from
        existing factors); :meth:`fit_partial` continues. After ``fit``, users
        and items without interactions have zero factors (the users' constant
        column stays 1), as implicit leaves them; otherwise the factors are
        those of ``BPR(**self.bpr_params())``.
        """
        if sp.issparse(user_items) and user_items.format != "csr":
            warnings.warn(
                f"fit expects CSR input and was passed {type(user_items).__name__}; it is "
                "converted to CSR.", _parameter_warning(), stacklevel=2)
        X = v.check_interactions(user_items, "user_items")
        callbacks = None
        if callback is not None:
            if not callable(callback):
                raise TypeError(f"callback must be callable; got {callback!r}.")

            def report(epoch, record):
                trained = X.nnz - int(record["skipped"])
                callback(epoch - 1, record["seconds"], self._correct_estimate(X, epoch, trained),
                         int(record["skipped"]))

            callbacks = [report]
        super().fit(user_items, show_progress=show_progress, callbacks=callbacks)
        # implicit never samples a user or item without interactions (its negatives are
        # items of other positives) and starts them at zero: zero them here too, so they
        # score 0 and are similar to nothing (the users' constant column stays 1).
        self._user_factors[np.diff(X.indptr) == 0, :-1] = 0.0
        self._item_factors[np.bincount(X.indices, minlength=X.shape[1]) == 0] = 0.0
        return self

    def _correct_estimate(self, X, epoch, trained):
        """``round(trained * share)``, the share of fresh triplets ranked right (see fit)."""
        rng = np.random.default_rng([epoch, X.nnz])  # its own stream: training's is untouched
        picks = rng.integers(0, X.nnz, min(X.nnz, _CORRECT_SAMPLE))
        users = np.searchsorted(X.indptr, picks, side="right") - 1
        positives = X.indices[picks]
        negatives = rng.integers(0, X.shape[1], picks.size)
        if self.verify_negative_samples:
            # Rejecting liked negatives leaves negatives uniform over the unseen items.
            keep = np.asarray(X[users, negatives]).ravel() == 0
            users, positives, negatives = users[keep], positives[keep], negatives[keep]
        if users.size == 0:
            return 0
        U, V = self.user_factors[users], self.item_factors
        right = np.einsum("ij,ij->i", U, V[positives]) > np.einsum("ij,ij->i", U, V[negatives])
        return int(round(trained * float(right.mean())))

    # ----------------------------------------------------------------- serving
    def recommend(self, userid, user_items, N=10, filter_already_liked_items=True,
                  filter_items=None, recalculate_user=False, items=None):
        """Best ``N`` items per user, with implicit's arguments and shapes.

        ``user_items`` must be CSR when it is used (``filter_already_liked_items``
        or ``recalculate_user``); it is one row per user in ``userid`` or the
        whole users x items matrix. With ``items``, exactly those items are
        ranked (``N`` is capped at their number): the ones the user liked come
        last, with score ``-finfo(float32).max``, as implicit returns them.
        For several users the rows are padded with id -1 and score -inf.

        ``recalculate_user=True`` raises NotImplementedError, as implicit's
        BPR does: implicit's contract for it (its shared model tests) is that
        the recalculated user reproduces the fitted one's scores to 3
        decimals, which a closed-form solver (ALS) meets and an SGD fold-in
        cannot. The fold-in is here as ``model.recalculate_user(userid,
        user_items)`` (vectors) and ``bpr_numba.BPR.recommend(...,
        recalculate_user=True)``.

        Returns
        -------
        ids : ndarray of int32, shape (N,) or (n_users, N)
        scores : ndarray of float32, same shape
        """
        if (filter_already_liked_items or recalculate_user) and not (
                sp.issparse(user_items) and user_items.format == "csr"):
            raise ValueError(
                f"user_items must be a CSR sparse matrix; got {type(user_items).__name__}. "
                "Convert it with user_items.tocsr()."
            )
        if recalculate_user:
            raise NotImplementedError(
                "recalculate_user=True is not supported by BayesianPersonalizedRanking, as in "
                "implicit: an SGD fold-in does not reproduce the fitted user. Fold in with "
                "model.recalculate_user(userid, user_items), or use bpr_numba.BPR's "
                "recommend(..., recalculate_user=True)."
            )
        if items is None:
            return super().recommend(userid, user_items, N, filter_already_liked_items,
                                     filter_items)
        items = np.asarray(items)
        n_rank = np.unique(items).size if items.size else 0
        N = min(v.check_positive_int(N, "N"), items.size)
        if n_rank == 0 or N == 0:
            raise ValueError("items is empty; give at least one item to rank.")
        ids, scores = super().recommend(userid, user_items, n_rank, False, filter_items, items)
        if filter_already_liked_items:
            ids, scores = self._liked_last(userid, user_items, ids, scores)
        if ids.ndim == 1:
            return ids[:N], scores[:N]
        return ids[:, :N], scores[:, :N]

    def _liked_last(self, userid, user_items, ids, scores):
        """Reorder ranked rows: unliked items first, then liked ones (score -max), then padding."""
        scalar = ids.ndim == 1
        ids2, scores2 = np.atleast_2d(ids).copy(), np.atleast_2d(scores).copy()
        n = ids2.shape[0]
        liked = v.check_interactions(user_items, "user_items", allow_empty=True)
        rows = np.arange(n) if liked.shape[0] == n else np.atleast_1d(np.asarray(userid))
        real = ids2 >= 0
        flat_rows = np.repeat(rows, ids2.shape[1])[real.ravel()]
        is_liked = np.zeros(ids2.shape, bool)
        is_liked[real] = np.asarray(liked[flat_rows, ids2[real]]).ravel() != 0
        key = np.where(real, is_liked.astype(np.int8), 2)
        order = np.argsort(key, axis=1, kind="stable")
        ids2 = np.take_along_axis(ids2, order, axis=1)
        scores2 = np.take_along_axis(scores2, order, axis=1)
        scores2[np.take_along_axis(key, order, axis=1) == 1] = _LIKED_SCORE
        return (ids2[0], scores2[0]) if scalar else (ids2, scores2)

    def similar_items(self, itemid, N=10, recalculate_item=False, item_users=None,
                      filter_items=None, items=None):
        """Items most similar to ``itemid`` (cosine of the factors, bias column excluded).

        The item itself comes first, with similarity 1, unless ``filter_items``
        or ``items`` leave it out (also with ``recalculate_item=True``, which
        queries with vectors folded in from ``item_users``, one row per item).
        Several ids give (n, N) arrays padded with id -1 and score -inf.
        """
        return super().similar_items(itemid, N, filter_items, items, filter_self=False,
                                     recalculate_item=recalculate_item, item_users=item_users)

    def similar_users(self, userid, N=10, filter_users=None, users=None):
        """Users most similar to ``userid``; the user itself first, as in :meth:`similar_items`."""
        return super().similar_users(userid, N, filter_users, users, filter_self=False)

    # ------------------------------------------------------------- persistence
    def save(self, fileobj_or_path):
        """Write the model (fitted or not) to an ``.npz`` path or a binary file object.

        A ``str`` path without ``.npz`` gets it appended, as implicit (numpy)
        does; paths are written atomically. See :meth:`bpr_numba.BPR.save`.
        """
        return super().save(_npz_path(fileobj_or_path))

    @classmethod
    def load(cls, fileobj_or_path):
        """Read a model saved by :meth:`save`: a path (implicit's ``.npz`` rule) or file object."""
        return super().load(_npz_path(fileobj_or_path))
