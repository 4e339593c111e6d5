"""The ``BPR`` estimator: parameters, training loops, factors and their life cycle."""

from __future__ import annotations

import inspect
import time
import warnings

import numba
import numpy as np

from . import _validation as v
from ._keras import _dense_adam_batches
from ._losses import LOSSES
from ._optim import DEFAULT_LEARNING_RATES, OPTIMIZERS, adam_bias_correction
from ._rawids import RawIdsMixin, UnknownIdError
from ._runtime import as_seed_sequence, spawn_states
from ._sampling import NEGATIVES
from ._train import (N_CHUNKS, UPDATE_ALL, UPDATE_POSITIVE, UPDATE_USER, _train_epoch_chunks,
                     call_slices, plan_epoch)

__all__ = ["BPR", "TrainingDivergedError", "UnknownIdError"]

# Fixed constants of the per-sample optimisers (NOTES.md: beta_1, beta_2 and
# epsilon are dense-adam's parameters only).
_LAZY_BETA_1 = 0.9
_LAZY_BETA_2 = 0.999
_LAZY_EPSILON = 1e-8
_LAZY_ADAM_ALPHA = adam_bias_correction(_LAZY_BETA_1, _LAZY_BETA_2)
# Triplets per dense-adam kernel call: the Python loop between calls is where
# Ctrl-C lands.
_TRIPLETS_PER_CALL = 200_000


class TrainingDivergedError(FloatingPointError, ValueError):
    """Raised when the factors become NaN or infinite during training."""


class BPR(RawIdsMixin):
    """Matrix factorisation trained with a triplet (BPR) loss on implicit feedback.

    Each training positive ``(u, i)`` is paired with a negative item ``j`` and
    the loss of ``x = u.i - u.j`` is minimised. Two modes share the class:

    - the fast mode (``optimizer`` "sgd", "adagrad", "rowwise-adagrad" or
      "adam"): per-sample
      updates in parallel without locks (Hogwild), lazy optimiser state;
    - the Keras-compatible mode (``optimizer="dense-adam"``): exact
      mini-batches and Keras's dense Adam, see :meth:`keras_compatible`.

    Parameters
    ----------
    factors : int
        Width of the user and item factors (without the item-bias column).
    loss : {"bpr", "sigmoid"}
        ``"bpr"``: ``-log sigmoid(x)`` (Rendle et al. 2009); ``"sigmoid"``:
        ``1 - sigmoid(x)``, the Keras notebook's loss.
    optimizer : {"adagrad", "rowwise-adagrad", "sgd", "adam", "dense-adam"}
        "adam" and "adagrad" keep lazy per-row state: only the rows a sample
        touches are updated, and a row's Adam bias correction uses its own
        step count (betas 0.9/0.999, epsilon 1e-8; Adagrad epsilon 1e-8).
        "rowwise-adagrad" keeps one accumulator per row (the mean squared
        gradient of the row) instead of one per element: 4 bytes of state per
        row, a faster sample, the same AUC on MovieLens 100k (bench/RESULTS.md).
        "dense-adam" is Keras's Adam over mini-batches.
    learning_rate : float or None
        None takes the optimiser's default (sgd 0.05, adagrad and
        rowwise-adagrad 0.08, adam 0.01, dense-adam 0.001).
    regularization : float
        L2 weight: ``regularization * w`` is added to the gradient of the user,
        positive and negative rows of every sample.
    epochs : int
        Passes over all training positives done by :meth:`fit`.
    negatives : {"uniform", "unseen"}
        "uniform" draws any item (the notebook's way; it may draw a positive);
        "unseen" draws only items without a positive for the user.
    negative_candidates : int
        Candidates drawn (by the ``negatives`` policy) for each positive; the
        sample trains on the one the model currently scores highest (dynamic
        negative sampling, Zhang et al. 2013). 1 is plain BPR; 3 reaches a
        higher AUC within 10 epochs on MovieLens 100k (bench/movielens.py).
    item_bias : bool
        Learn an item bias, stored as the last column of ``item_factors``
        against a constant 1 in the last column of ``user_factors`` (so scores
        stay plain dot products). Not available with "dense-adam".
    use_weights : bool
        Scale each positive's loss and data gradient by its stored value in
        the training matrix (or by ``sample_weight`` given to :meth:`fit`),
        like LightFM's ``sample_weight``; values must then be > 0. False
        treats every stored non-zero as a positive of weight 1. With weights,
        ``history_``'s loss is the weighted loss sum over the sample count.
    batch_size, beta_1, beta_2, epsilon
        Parameters of "dense-adam" only (Keras's defaults, epsilon of Keras >= 2.3).
    init_scale : float
        Factors start uniform in ``(-init_scale, init_scale)``, as Keras's
        embeddings do with 0.05.
    num_threads : int
        Threads of the kernels; 0 means all cores. With 1 the run is
        reproducible bit for bit for a given ``random_state``.
    random_state : None, int, numpy SeedSequence, Generator or RandomState
        Seed of the initialisation, the epoch orders and the negatives.

    Attributes
    ----------
    user_factors : ndarray of float32, shape (n_users, factors [+ 1])
    item_factors : ndarray of float32, shape (n_items, factors [+ 1])
    n_epochs_done_ : int
    user_map_, item_map_ : IdMap or None
        Raw ids of the rows and columns when fitted on an
        :class:`~bpr_numba.Interactions` (None for a plain matrix); methods
        taking ``raw_ids=True`` read and answer in these ids.
    history_ : list of dict
        One record per epoch: ``epoch``, ``loss`` (mean training loss),
        ``skipped`` (samples without a negative), ``seconds``, and the
        validation metric when one is given.
    """

    def __init__(self, factors=64, loss="bpr", optimizer="adagrad", learning_rate=None,
                 regularization=0.03, epochs=10, negatives="unseen", negative_candidates=3,
                 item_bias=True, use_weights=False,
                 batch_size=64, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 init_scale=0.05, num_threads=0, random_state=None):
        self.factors = factors
        self.loss = loss
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.epochs = epochs
        self.negatives = negatives
        self.negative_candidates = negative_candidates
        self.item_bias = item_bias
        self.use_weights = use_weights
        self.batch_size = batch_size
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.init_scale = init_scale
        self.num_threads = num_threads
        self.random_state = random_state

    # ------------------------------------------------------------------ params
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
                    f"Invalid parameter {name!r} for BPR; known parameters: {', '.join(known)}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self):
        defaults = BPR().get_params()
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if defaults[k] != v]
        text = f"BPR({', '.join(changed)})"
        if getattr(self, "_user_factors", None) is not None:
            text += (f" [fitted: {self.n_users} users x {self.n_items} items, "
                     f"{self.n_epochs_done_} epochs]")
        return text

    @classmethod
    def keras_compatible(cls, **overrides):
        """Return a BPR preset to the 2016 Keras notebook's recipe.

        Factors 100, loss "sigmoid", optimizer "dense-adam" (lr 0.001, betas
        0.9/0.999, epsilon 1e-7 as Keras >= 2.3; the notebook's Keras 1 used
        1e-8), batch 64, uniform negatives, no item bias, no regularisation.
        ``overrides`` replace any of these.
        """
        params = dict(factors=100, loss="sigmoid", optimizer="dense-adam", learning_rate=0.001,
                      regularization=0.0, negatives="uniform", negative_candidates=1,
                      item_bias=False, batch_size=64,
                      beta_1=0.9, beta_2=0.999, epsilon=1e-7, init_scale=0.05)
        params.update(overrides)
        return cls(**params)

    def _checked_params(self):
        """Validate every parameter; return a dict of checked values."""
        p = {}
        p["factors"] = v.check_positive_int(self.factors, "factors")
        p["loss"] = v.check_choice(self.loss, "loss", list(LOSSES))
        p["optimizer"] = v.check_choice(self.optimizer, "optimizer", list(OPTIMIZERS))
        if self.learning_rate is None:
            p["learning_rate"] = DEFAULT_LEARNING_RATES[p["optimizer"]]
        else:
            p["learning_rate"] = v.check_float(self.learning_rate, "learning_rate",
                                               low=0.0, low_inclusive=False)
        p["regularization"] = v.check_float(self.regularization, "regularization", low=0.0)
        p["epochs"] = v.check_positive_int(self.epochs, "epochs")
        p["negatives"] = v.check_choice(self.negatives, "negatives", list(NEGATIVES))
        p["negative_candidates"] = v.check_positive_int(self.negative_candidates,
                                                        "negative_candidates")
        if not isinstance(self.item_bias, (bool, np.bool_)):
            raise TypeError(f"item_bias must be True or False; got {self.item_bias!r}.")
        p["item_bias"] = bool(self.item_bias)
        if not isinstance(self.use_weights, (bool, np.bool_)):
            raise TypeError(f"use_weights must be True or False; got {self.use_weights!r}.")
        p["use_weights"] = bool(self.use_weights)
        p["batch_size"] = v.check_positive_int(self.batch_size, "batch_size")
        p["beta_1"] = v.check_float(self.beta_1, "beta_1", low=0.0, high=1.0, high_inclusive=False)
        p["beta_2"] = v.check_float(self.beta_2, "beta_2", low=0.0, high=1.0, high_inclusive=False)
        p["epsilon"] = v.check_float(self.epsilon, "epsilon", low=0.0, low_inclusive=False)
        p["init_scale"] = v.check_float(self.init_scale, "init_scale", low=0.0)
        p["num_threads"] = v.check_nonneg_int(self.num_threads, "num_threads")
        if p["optimizer"] == "dense-adam" and p["use_weights"]:
            raise ValueError(
                "use_weights=True is not available with optimizer='dense-adam' (the Keras "
                "model weighs every sample alike); set use_weights=False."
            )
        if p["optimizer"] == "dense-adam" and p["item_bias"]:
            raise ValueError(
                "item_bias=True is not available with optimizer='dense-adam' (the Keras "
                "model has no bias); set item_bias=False."
            )
        if p["optimizer"] == "dense-adam" and (p["negatives"] != "uniform"
                                                or p["negative_candidates"] != 1):
            raise ValueError(
                "optimizer='dense-adam' draws one uniform negative per positive like Keras; "
                f"got negatives={p['negatives']!r} and negative_candidates="
                f"{p['negative_candidates']}, expected 'uniform' and 1."
            )
        as_seed_sequence(self.random_state)  # type check only
        return p

    # ----------------------------------------------------------------- factors
    @property
    def user_factors(self):
        """ndarray of float32, shape (n_users, factors [+ 1]); assigning resets the optimiser state."""
        return getattr(self, "_user_factors", None)

    @user_factors.setter
    def user_factors(self, value):
        self._set_factors("user", value)

    @property
    def item_factors(self):
        """ndarray of float32, shape (n_items, factors [+ 1]); assigning resets the optimiser state."""
        return getattr(self, "_item_factors", None)

    @item_factors.setter
    def item_factors(self, value):
        self._set_factors("item", value)

    def _set_factors(self, side, value):
        current = getattr(self, f"_{side}_factors", None)
        if current is None:
            raise v.NotFittedError(
                f"{side}_factors can be assigned only after fit() or initialize(n_users, n_items), "
                "which fix the shapes."
            )
        array = v.check_factor_matrix(value, f"{side}_factors", current.shape)
        if side == "user" and self._has_bias_column and not np.all(array[:, -1] == 1.0):
            raise ValueError(
                "user_factors' last column must be all ones: it pairs with the item bias "
                "(item_bias=True)."
            )
        setattr(self, f"_{side}_factors", array)
        self._reset_optimizer_state()

    @property
    def n_users(self):
        """Number of users of the fitted model."""
        self._check_fitted()
        return self._user_factors.shape[0]

    @property
    def n_items(self):
        """Number of items of the fitted model."""
        self._check_fitted()
        return self._item_factors.shape[0]

    @property
    def n_parameters(self):
        """Trainable parameters as ``(user, item)`` counts (the constant user column excluded)."""
        self._check_fitted()
        n_user_cols = self._user_factors.shape[1] - int(self._has_bias_column)
        return self.n_users * n_user_cols, self._item_factors.size

    def _check_fitted(self):
        if getattr(self, "_user_factors", None) is None:
            raise v.NotFittedError(
                "This BPR model is not fitted yet: call fit(), or initialize(n_users, n_items)."
            )

    def initialize(self, n_users, n_items):
        """Create fresh factors and optimiser state for ``n_users`` x ``n_items``.

        Factors are uniform in ``(-init_scale, init_scale)`` from
        ``random_state``; with ``item_bias`` the user side gets a last column of
        ones and the item bias starts at zero. Afterwards ``user_factors`` and
        ``item_factors`` may be assigned (for example Keras's initial weights).

        Returns
        -------
        self
        """
        n_users = v.check_positive_int(n_users, "n_users")
        n_items = v.check_positive_int(n_items, "n_items")
        p = self._checked_params()
        self._params = p
        seed_sequence = as_seed_sequence(self.random_state)
        init_seq, order_seq, chunk_seq = seed_sequence.spawn(3)
        init_rng = np.random.default_rng(init_seq)
        self._has_bias_column = p["item_bias"]
        extra = 1 if self._has_bias_column else 0
        self._user_factors = _uniform_factors(init_rng, n_users, p["factors"], extra,
                                              p["init_scale"], 1.0)
        self._item_factors = _uniform_factors(init_rng, n_items, p["factors"], extra,
                                              p["init_scale"], 0.0)
        self._order_rng = np.random.default_rng(order_seq)
        self._chunk_states = spawn_states(chunk_seq, N_CHUNKS)
        self._reset_optimizer_state()
        self.n_epochs_done_ = 0
        self.history_ = []
        self.user_map_ = self.item_map_ = None
        return self

    def _reset_optimizer_state(self):
        self._opt_state = _fresh_state(self._params["optimizer"], self._user_factors.shape,
                                       self._item_factors.shape)

    # ---------------------------------------------------------------- training
    def fit(self, interactions, y=None, *, sample_weight=None, validation=None, metric="auc",
            patience=3, callbacks=None, show_progress=True):
        """Fit the model from scratch on ``interactions``.

        Parameters
        ----------
        interactions : scipy.sparse matrix or Interactions, shape (n_users, n_items)
            Stored non-zeros are positives (explicit zeros ignored, duplicates
            merged); COO, CSR and CSC are all accepted. An
            :class:`~bpr_numba.Interactions` also gives the model its raw ids
            (``user_map_``, ``item_map_``).
        y : ignored
        sample_weight : scipy.sparse matrix, shape (n_users, n_items), optional
            With ``use_weights=True``: a weight (> 0) stored at every positive
            of ``interactions`` (LightFM's convention); default: the stored
            values of ``interactions``.
        validation : scipy.sparse matrix, shape (n_users, n_items), optional
            Held-out positives scored after every epoch with ``metric``; the
            training positives are removed from the candidates (except for
            ``"full_auc"``, the notebook's metric).
        metric : str
            ``"auc"``, ``"full_auc"``, ``"precision@k"``, ``"recall@k"``,
            ``"ndcg@k"``, ``"map@k"`` or ``"mrr"``; higher is better.
        patience : int or None
            With ``validation``: stop after this many epochs without a better
            metric, and restore the factors of the best epoch (a copy of the
            factors is kept for that). None never stops early.
        callbacks : list of callable, optional
            Each called as ``callback(epoch, record)`` after every epoch, with
            the epoch's ``history_`` record; returning False stops training.
        show_progress : bool
            A progress bar over the epochs (tqdm), shown only on a terminal.

        Returns
        -------
        self

        Raises
        ------
        TrainingDivergedError
            A step would have made the factors NaN or infinite; such steps are
            not applied, so the model keeps its last finite factors.
        KeyboardInterrupt
            Raised once the interrupted epoch is finished (a second Ctrl-C
            stops at once, leaving the factors of a partly trained epoch).
        """
        X = v.check_interactions(interactions, "interactions")
        _check_trainable(X)
        plan = self._check_training_options(X, validation, metric, patience, callbacks)
        self.initialize(*X.shape)
        plan["weights"] = self._training_weights(X, sample_weight)
        self._adopt_id_maps(interactions)
        self._check_same_ids(validation, "validation")
        return self._train(X, self._params["epochs"], plan, show_progress)

    def fit_partial(self, interactions, epochs=1, *, sample_weight=None, validation=None,
                    metric="auc", patience=None, callbacks=None, show_progress=False):
        """Continue training from the current factors and optimiser state.

        On a model that was never fitted this starts from a fresh initialisation.
        The keyword arguments are those of :meth:`fit`.

        Returns
        -------
        self
        """
        X = v.check_interactions(interactions, "interactions")
        _check_trainable(X)
        epochs = v.check_positive_int(epochs, "epochs")
        plan = self._check_training_options(X, validation, metric, patience, callbacks)
        if getattr(self, "_user_factors", None) is None:
            self.initialize(*X.shape)
            self._adopt_id_maps(interactions)
        else:
            self._check_shape(X, "interactions")
            self._refresh_params(self._checked_params())
            self._continue_id_maps(interactions)
        plan["weights"] = self._training_weights(X, sample_weight)
        return self._train(X, epochs, plan, show_progress)

    def _continue_id_maps(self, interactions):
        """fit_partial: take the raw ids of Interactions, or check they are the model's."""
        from .data import Interactions

        if not isinstance(interactions, Interactions):
            return
        if getattr(self, "user_map_", None) is None:
            self.user_map_, self.item_map_ = interactions.user_map, interactions.item_map
        else:
            self._check_same_ids(interactions, "interactions")

    def _training_weights(self, X, sample_weight):
        """float32 weight per positive of ``X`` (CSR order), or an empty array for none."""
        if not self._params["use_weights"]:
            if sample_weight is not None:
                raise ValueError(
                    "sample_weight is used only with use_weights=True; set it, or drop "
                    "sample_weight."
                )
            return np.zeros(0, np.float32)
        if self._params["optimizer"] == "dense-adam":
            raise ValueError("use_weights=True is not available with optimizer='dense-adam'.")
        if sample_weight is None:
            weights = np.asarray(X.data, dtype=np.float32)
            where = "the stored values of interactions"
        else:
            W = v.check_interactions(sample_weight, "sample_weight")
            if W.shape != X.shape or W.nnz != X.nnz or not (
                    np.array_equal(W.indptr, X.indptr) and np.array_equal(W.indices, X.indices)):
                raise ValueError(
                    f"sample_weight must store one weight at every positive of interactions "
                    f"and nowhere else (same shape and pattern); got shape {W.shape} with "
                    f"{W.nnz} stored values for {X.nnz} positives of shape {X.shape}."
                )
            weights = np.asarray(W.data, dtype=np.float32)
            where = "sample_weight"
        bad = ~(weights > 0) | ~np.isfinite(weights)
        if bad.any():
            raise ValueError(
                f"use_weights=True needs weights > 0 and finite; {where} holds "
                f"{int(bad.sum())} other value(s) (e.g. {float(weights[bad][0])!r})."
            )
        return np.ascontiguousarray(weights)

    def _refresh_params(self, new):
        """Adopt parameters changed by ``set_params`` since the factors were made.

        A new optimiser starts from fresh state; a new width or bias layout
        cannot continue from the current factors.
        """
        old = self._params
        for name in ("factors", "item_bias"):
            if new[name] != old[name]:
                raise ValueError(
                    f"{name} changed from {old[name]!r} to {new[name]!r} since the factors were "
                    "made; call fit() to start again, or set it back to continue."
                )
        self._params = new
        if new["optimizer"] != old["optimizer"]:
            self._reset_optimizer_state()

    def _check_training_options(self, X, validation, metric, patience, callbacks):
        plan = {"validation": None, "metric": None, "patience": None, "callbacks": []}
        if validation is not None:
            from .metrics import parse_metric

            val = v.check_interactions(validation, "validation", allow_empty=True)
            if val.shape != X.shape:
                raise ValueError(
                    f"validation has shape {val.shape}, but interactions have shape {X.shape}; "
                    "expected the same users and items."
                )
            parse_metric(metric)
            if metric != "full_auc":
                from .metrics import check_disjoint

                check_disjoint(val, X)
            plan.update(validation=val, metric=metric)
            if patience is not None:
                plan["patience"] = v.check_positive_int(patience, "patience")
        if callbacks is not None:
            if callable(callbacks):
                callbacks = [callbacks]
            for cb in callbacks:
                if not callable(cb):
                    raise TypeError(f"callbacks must be callables; got {cb!r}.")
            plan["callbacks"] = list(callbacks)
        return plan

    def _check_shape(self, X, name):
        expected = (self._user_factors.shape[0], self._item_factors.shape[0])
        if X.shape != expected:
            raise ValueError(
                f"{name} has shape {X.shape}, but the model has {expected[0]} users and "
                f"{expected[1]} items; expected shape {expected}."
            )

    def _train(self, X, epochs, plan, show_progress):
        from tqdm.auto import tqdm

        p = self._params
        best = None
        waited = 0
        bar = tqdm(total=epochs, desc="BPR", unit="epoch",
                   disable=None if show_progress else True, leave=False)
        try:
            for _ in range(epochs):
                epoch = self.n_epochs_done_ + 1
                start = time.perf_counter()
                self._interrupted = False
                if p["optimizer"] == "dense-adam":
                    # Dense Adam moves every row at every step: keep a copy to
                    # fall back on if a step overflows (the model is small).
                    snapshot = (self._user_factors.copy(), self._item_factors.copy())
                    record = self._keras_epoch(X, epoch)
                    self._check_finite(epoch, snapshot)
                else:
                    record = self._hogwild_epoch(X, epoch, plan.get("weights"))
                record = {"epoch": epoch, **record, "seconds": time.perf_counter() - start}
                self.n_epochs_done_ = epoch
                if plan["validation"] is not None:
                    from .metrics import evaluate

                    train = None if plan["metric"] == "full_auc" else X
                    record[plan["metric"]] = evaluate(
                        self, plan["validation"], train, metrics=(plan["metric"],),
                        num_threads=p["num_threads"])[plan["metric"]]
                self.history_.append(record)
                bar.update(1)
                bar.set_postfix({k: round(val, 4) for k, val in record.items()
                                 if k not in ("epoch", "skipped", "seconds")})
                stop = False
                for cb in plan["callbacks"]:
                    if cb(epoch, record) is False:
                        stop = True
                if plan["validation"] is not None:
                    score = record[plan["metric"]]
                    if best is None or score > best[0]:
                        best = (score, epoch, self._user_factors.copy(), self._item_factors.copy())
                        waited = 0
                    else:
                        waited += 1
                        if plan["patience"] is not None and waited >= plan["patience"]:
                            stop = True
                if self._interrupted:
                    warnings.warn(
                        f"training interrupted: epoch {epoch} was finished first, so the model "
                        f"keeps the factors of a completed epoch (n_epochs_done_ = {epoch}).",
                        RuntimeWarning, stacklevel=3)
                    raise KeyboardInterrupt
                if stop:
                    break
        finally:
            bar.close()
        if best is not None and plan["patience"] is not None and best[1] != self.n_epochs_done_:
            self._user_factors, self._item_factors = best[2], best[3]
            self.best_epoch_ = best[1]
        elif best is not None:
            self.best_epoch_ = best[1]
        return self

    def _check_finite(self, epoch, snapshot):
        bad = [name for name, a in (("user", self._user_factors), ("item", self._item_factors))
               if not np.isfinite(a).all()]
        if bad:
            self._user_factors, self._item_factors = snapshot
            self._reset_optimizer_state()
            raise TrainingDivergedError(
                f"training diverged at epoch {epoch} (non-finite {' and '.join(bad)} factors); "
                f"lower learning_rate ({self._params['learning_rate']}) or raise regularization. "
                f"The model keeps the factors of epoch {epoch - 1}; its optimiser state is reset."
            )

    def _run_slices(self, epoch, calls):
        """Run an epoch's kernel calls; a first Ctrl-C finishes the epoch, a second stops at once.

        A compiled kernel cannot be interrupted: Ctrl-C arrives when a call
        returns. Finishing the epoch keeps the factors of a completed epoch
        without a copy of them (the memory of a plain fit stays factors +
        optimiser state + CSR).
        """
        for call in calls:
            try:
                call()
            except KeyboardInterrupt:
                if self._interrupted:
                    warnings.warn(
                        f"training stopped during epoch {epoch}: the factors are those of a "
                        f"partly trained epoch (n_epochs_done_ = {epoch - 1}).",
                        RuntimeWarning, stacklevel=4)
                    raise
                self._interrupted = True
                warnings.warn(
                    f"Ctrl-C: finishing epoch {epoch} first; press Ctrl-C again to stop at once.",
                    RuntimeWarning, stacklevel=4)

    def _with_threads(self, func, *args):
        n = self._params["num_threads"] or numba.config.NUMBA_NUM_THREADS
        previous = numba.get_num_threads()
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        try:
            return func(*args)
        finally:
            numba.set_num_threads(previous)

    def _hogwild_epoch(self, X, epoch, weights=None):
        totals = self._kernel_epoch(X, weights, self._user_factors, self._item_factors,
                                    self._opt_state, self._chunk_states, UPDATE_ALL, epoch)
        return self._check_epoch_totals(totals, epoch)

    def _kernel_epoch(self, X, weights, user_factors, item_factors, state, chunk_states,
                      update_mask, epoch):
        """One epoch of the per-sample kernel over the rows of ``X``; returns the totals.

        ``user_factors``/``item_factors`` and ``state`` may be the model's own
        or stand-ins (fold-in); ``update_mask`` says which rows move.
        """
        p = self._params
        row_lengths = np.diff(X.indptr)
        trainable = np.flatnonzero(row_lengths).astype(np.int64)
        user_order, chunk_bounds = plan_epoch(row_lengths, trainable, self._order_rng)
        s = state
        n_user_cols = user_factors.shape[1] - (1 if self._has_bias_column else 0)
        f32 = np.float32
        if weights is None:
            weights = np.zeros(0, np.float32)
        totals = np.zeros(4)  # loss sum, trained, skipped, refused

        def call(first, end):
            out = self._with_threads(
                _train_epoch_chunks, X.indptr, X.indices, weights, user_order,
                chunk_bounds[first:end + 1], user_factors, item_factors,
                s["user_sum_sq"], s["item_sum_sq"],
                s["user_adam_m"], s["user_adam_v"], s["user_adam_t"],
                s["item_adam_m"], s["item_adam_v"], s["item_adam_t"],
                chunk_states[first:end], _LAZY_ADAM_ALPHA,
                LOSSES[p["loss"]], OPTIMIZERS[p["optimizer"]], NEGATIVES[p["negatives"]],
                n_user_cols, p["negative_candidates"], update_mask, f32(p["learning_rate"]),
                f32(p["regularization"]), f32(_LAZY_BETA_1), f32(_LAZY_BETA_2),
                f32(_LAZY_EPSILON))
            totals[:] += [float(a.sum()) for a in out]

        slices = call_slices(chunk_bounds, row_lengths, user_order)
        self._run_slices(epoch, (lambda a=a, b=b: call(a, b) for a, b in slices))
        return totals

    def _check_epoch_totals(self, totals, epoch):
        p = self._params
        loss_sum, n_trained, n_skipped, n_refused = totals
        if n_refused:
            raise TrainingDivergedError(
                f"training diverged at epoch {epoch}: {int(n_refused)} samples had a non-finite "
                f"loss or a step that would have made factors non-finite; lower learning_rate "
                f"({p['learning_rate']}) or raise regularization. Those steps were not applied: "
                f"the model keeps its last finite factors (n_epochs_done_ = {epoch - 1})."
            )
        return self._epoch_record(loss_sum, int(n_trained), int(n_skipped))

    def _epoch_record(self, loss_sum, n_trained, n_skipped):
        if n_trained == 0:
            raise ValueError(
                "no training sample has a negative: every user with positives has every item; "
                "use negatives='uniform' or add items."
            )
        if n_skipped and not getattr(self, "_warned_skipped", False):
            warnings.warn(
                f"{n_skipped} samples were skipped in this epoch: their users have every item, "
                "so negatives='unseen' finds no negative for them.", RuntimeWarning, stacklevel=4)
            self._warned_skipped = True
        return {"loss": loss_sum / n_trained, "skipped": n_skipped}

    def _keras_epoch(self, X, epoch):
        users = np.repeat(np.arange(X.shape[0], dtype=np.int64), np.diff(X.indptr))
        positives = X.indices.astype(np.int64)
        negatives = self._order_rng.integers(0, X.shape[1], size=users.size, dtype=np.int64)
        order = self._order_rng.permutation(users.size)
        loss_sum = self._run_triplets(users[order], positives[order], negatives[order], epoch)
        return {"loss": loss_sum / users.size, "skipped": 0}

    def _run_triplets(self, users, positives, negatives, epoch):
        p = self._params
        s = self._opt_state
        f32 = np.float32
        n = users.size
        batch_starts = np.append(np.arange(0, n, p["batch_size"], dtype=np.int64), np.int64(n))
        batches_per_call = max(1, _TRIPLETS_PER_CALL // p["batch_size"])
        loss_sum = [0.0]

        def call(first):
            bounds = batch_starts[first:first + batches_per_call + 1]
            loss_sum[0] += self._with_threads(
                _dense_adam_batches, users, positives, negatives, bounds,
                self._user_factors, self._item_factors, s["user_grad"], s["item_grad"],
                s["user_adam_m"], s["user_adam_v"], s["item_adam_m"], s["item_adam_v"],
                s["adam_step"], LOSSES[p["loss"]], f32(p["learning_rate"]),
                f32(p["regularization"]), f32(p["beta_1"]), f32(p["beta_2"]), f32(p["epsilon"]))

        self._run_slices(epoch, (lambda a=a: call(a)
                                 for a in range(0, batch_starts.size - 1, batches_per_call)))
        return loss_sum[0]

    def fit_triplets(self, users, positives, negatives, n_users=None, n_items=None,
                     epochs=1, shuffle=False):
        """Train on exactly these triplets, in this order (reshuffled per epoch if ``shuffle``).

        Continues from the current factors and optimiser state; on a model
        without factors, ``n_users`` and ``n_items`` size a fresh one. Only
        ``optimizer="dense-adam"`` trains on given triplets.

        Parameters
        ----------
        users, positives, negatives : array-like of int, shape (n_triplets,)
        n_users, n_items : int, optional
        epochs : int
        shuffle : bool

        Returns
        -------
        self
        """
        p = self._checked_params()
        if p["optimizer"] != "dense-adam":
            raise ValueError(
                "fit_triplets trains the Keras-compatible mode: it needs optimizer='dense-adam'; "
                f"got optimizer={p['optimizer']!r}."
            )
        epochs = v.check_positive_int(epochs, "epochs")
        if getattr(self, "_user_factors", None) is None:
            if n_users is None or n_items is None:
                raise ValueError(
                    "this model has no factors yet: pass n_users and n_items, or call "
                    "initialize(n_users, n_items) first."
                )
            self.initialize(n_users, n_items)
        else:
            for name, given, have in (("n_users", n_users, self.n_users),
                                      ("n_items", n_items, self.n_items)):
                if given is not None and given != have:
                    raise ValueError(f"{name}={given} differs from the model's {have}.")
            self._refresh_params(p)
        users, _ = v.check_ids(users, "users", self.n_users, "users")
        positives, _ = v.check_ids(positives, "positives", self.n_items, "items")
        negatives, _ = v.check_ids(negatives, "negatives", self.n_items, "items")
        if not users.size == positives.size == negatives.size:
            raise ValueError(
                f"users, positives and negatives must have one length; got {users.size}, "
                f"{positives.size} and {negatives.size}."
            )
        if users.size == 0:
            raise ValueError("no triplets given: users, positives and negatives are empty.")
        for _ in range(epochs):
            start = time.perf_counter()
            snapshot = (self._user_factors.copy(), self._item_factors.copy())
            order = self._order_rng.permutation(users.size) if shuffle else slice(None)
            self._interrupted = False
            loss_sum = self._run_triplets(users[order], positives[order], negatives[order],
                                          self.n_epochs_done_ + 1)
            self._check_finite(self.n_epochs_done_ + 1, snapshot)
            self.n_epochs_done_ += 1
            self.history_.append({"epoch": self.n_epochs_done_, "loss": loss_sum / users.size,
                                  "skipped": 0, "seconds": time.perf_counter() - start})
        return self

    # ----------------------------------------------------------------- fold-in
    def recalculate_user(self, userid, user_items, epochs=None, *, raw_ids=False):
        """Factors of users computed from their rows alone, against fixed item factors.

        The model does not change. Each row starts from a fresh random vector
        and is trained for ``epochs`` epochs with the model's loss, sampler and
        optimiser (fresh optimiser state), moving only the user vector: a new
        or changed user gets recommendations without refitting.

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
        if raw_ids and _n_rows(user_items) == self.n_users:
            userid = self._to_index(userid, "user", "userid", raw_ids)
        n = 1 if scalar else np.asarray(userid).size
        rows = self._rows_for(userid, n, user_items, "user_items", self.n_items)
        factors = self._fold_in_users(rows, epochs)
        return factors[0] if scalar else factors

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
        ids, id_map = self._ids_for_update(userids, "userids", "user", raw_ids)
        rows = self._rows_for(ids if ids.max() < self.n_users else np.zeros(ids.size, np.int64),
                              ids.size, user_items, "user_items", self.n_items,
                              allow_whole=ids.max() < self.n_users)
        factors = self._fold_in_users(rows, epochs)
        self._grow("user", int(ids.max()) + 1)
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
        self._check_fold_in_mode()
        ids, id_map = self._ids_for_update(itemids, "itemids", "item", raw_ids)
        rows = v.check_interactions(item_users, "item_users")
        if rows.shape != (ids.size, self.n_users):
            raise ValueError(
                f"item_users must have one row per item id and one column per user, shape "
                f"({ids.size}, {self.n_users}); got {rows.shape}."
            )
        epochs = self._fold_in_epochs(epochs)
        self._grow("item", int(ids.max()) + 1)
        p = self._params
        init_rng, chunk_seq = self._fold_in_streams()
        fresh = _uniform_factors(init_rng, ids.size, p["factors"], int(self._has_bias_column),
                                 p["init_scale"], 0.0)
        self._item_factors[ids] = fresh
        # Users x items positives at the given items only, values kept for weights.
        item_of_entry = ids[np.repeat(np.arange(ids.size), np.diff(rows.indptr))]
        X = v.check_interactions(
            _coo_to_csr(rows.data, rows.indices, item_of_entry, (self.n_users, self.n_items)),
            "item_users")
        weights = self._training_weights(X, None)
        state = _fresh_state(p["optimizer"], (0, 0), self._item_factors.shape)
        chunk_states = spawn_states(chunk_seq, N_CHUNKS)
        for epoch in range(1, epochs + 1):
            totals = self._kernel_epoch(X, weights, self._user_factors, self._item_factors,
                                        state, chunk_states, UPDATE_POSITIVE, epoch)
            self._check_fold_in_totals(totals, epoch, "items")
        self.item_map_ = id_map
        return self

    def _check_fold_in_mode(self):
        if self._params["optimizer"] == "dense-adam":
            raise ValueError(
                "fold-in trains with the fast mode's per-sample kernel; this model uses "
                "optimizer='dense-adam' (the Keras mode). Refit with another optimizer."
            )

    def _fold_in_epochs(self, epochs):
        return self._params["epochs"] if epochs is None else v.check_positive_int(epochs, "epochs")

    def _fold_in_streams(self):
        """A fresh init generator and chunk seed sequence, drawn from the model's stream."""
        seq = np.random.SeedSequence(int(self._order_rng.integers(0, 2**63)))
        init_seq, chunk_seq = seq.spawn(2)
        return np.random.default_rng(init_seq), chunk_seq

    def _fold_in_users(self, rows, epochs):
        """Train fresh user vectors for the CSR ``rows`` against the fixed item factors."""
        self._check_fold_in_mode()
        epochs = self._fold_in_epochs(epochs)
        p = self._params
        init_rng, chunk_seq = self._fold_in_streams()
        users = _uniform_factors(init_rng, rows.shape[0], p["factors"],
                                 int(self._has_bias_column), p["init_scale"], 1.0)
        weights = self._training_weights(rows, None)
        state = _fresh_state(p["optimizer"], users.shape, (0, 0))
        chunk_states = spawn_states(chunk_seq, N_CHUNKS)
        empty = np.diff(rows.indptr) == 0
        if empty.any():
            warnings.warn(
                f"{int(empty.sum())} of the {rows.shape[0]} users to fold in have no positive: "
                "they keep a random vector (their recommendations are random).",
                RuntimeWarning, stacklevel=3)
        if rows.nnz:
            for epoch in range(1, epochs + 1):
                totals = self._kernel_epoch(rows, weights, users, self._item_factors, state,
                                            chunk_states, UPDATE_USER, epoch)
                self._check_fold_in_totals(totals, epoch, "users")
        return users

    def _check_fold_in_totals(self, totals, epoch, what):
        if totals[3]:
            raise TrainingDivergedError(
                f"fold-in of {what} diverged at epoch {epoch}: {int(totals[3])} steps would have "
                f"made factors non-finite; lower learning_rate ({self._params['learning_rate']})."
            )

    def _rows_for(self, ids, n, matrix, name, n_cols, allow_whole=True):
        """CSR rows of ``matrix`` for ``n`` ids: one row per id, or picked from the whole matrix."""
        X = v.check_interactions(matrix, name, allow_empty=True)
        if X.shape[1] != n_cols:
            raise ValueError(f"{name} has {X.shape[1]} columns, but the model has {n_cols} items.")
        if X.shape[0] == n:
            return X
        if allow_whole and X.shape[0] == self.n_users:
            picked, _ = v.check_ids(ids, "userid", self.n_users, "users")
            from ._topk import row_offsets

            offsets, indptr = row_offsets(X, picked)
            return v._csr(X.data[offsets].astype(np.float32), X.indices[offsets], indptr,
                          (picked.size, n_cols))
        raise ValueError(
            f"{name} has {X.shape[0]} rows; expected one row per given id ({n})"
            + (f" or the whole matrix ({self.n_users} rows)." if allow_whole else ".")
        )

    def _ids_for_update(self, ids, name, side, raw_ids):
        """Indices for fold-in, known or new (>= n), and the id map to keep afterwards.

        Raw ids are mapped, unknown ones appended to a new map that the caller
        adopts once the fold-in has succeeded.
        """
        id_map = getattr(self, f"{side}_map_", None)
        if raw_ids:
            id_map = self._id_map(side)
            from .data import IdMap, _as_id_array

            raw = _as_id_array(np.atleast_1d(np.asarray(ids)), name)
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
            n_known = getattr(self, f"_{side}_factors").shape[0]
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

    def _grow(self, side, n_rows):
        """Add fresh random rows (and zero optimiser state) up to ``n_rows`` on ``side``."""
        current = getattr(self, f"_{side}_factors")
        if n_rows <= current.shape[0]:
            return
        p = self._params
        init_rng, _ = self._fold_in_streams()
        fill = 1.0 if side == "user" else 0.0
        extra = _uniform_factors(init_rng, n_rows - current.shape[0], p["factors"],
                                 int(self._has_bias_column), p["init_scale"], fill)
        setattr(self, f"_{side}_factors", np.concatenate([current, extra]))
        _grow_state(self._opt_state, side, n_rows)

    # --------------------------------------------------------- using a model
    def recommend(self, userid, user_items=None, N=10, filter_already_liked_items=True,
                  filter_items=None, items=None, *, raw_ids=False):
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
        return self._recommend(userid, user_items, N, filter_already_liked_items, filter_items,
                               items, raw_ids, num_threads=self._params["num_threads"])

    def _answer(self, ids, scores, scalar, side, raw_ids):
        if scalar:
            keep = ids[0] >= 0
            ids, scores = ids[0][keep], scores[0][keep]
        return self._to_raw(ids, side, raw_ids), scores

    def similar_items(self, itemid, N=10, filter_items=None, items=None, *, filter_self=True,
                      raw_ids=False):
        """Items most similar to ``itemid`` by cosine similarity of the item factors.

        The item bias column is left out of the similarity. Shapes follow
        :meth:`recommend`.

        Parameters
        ----------
        itemid : int or array-like of int
        N : int
        filter_items, items : array-like of int, optional
            Items never returned; the only items returned.
        filter_self : bool
            Leave the item itself out (default); False returns it too, first
            with similarity 1 (implicit's behaviour).
        raw_ids : bool
            Ids in and out are raw item ids (see :meth:`recommend`).

        Returns
        -------
        ids : ndarray of int32
        scores : ndarray of float32
        """
        self._check_fitted()
        itemid = self._to_index(itemid, "item", "itemid", raw_ids)
        filter_items = self._to_index(filter_items, "item", "filter_items", raw_ids)
        items = self._to_index(items, "item", "items", raw_ids)
        return self._similar("item", itemid, N, filter_items, items, filter_self, raw_ids)

    def similar_users(self, userid, N=10, filter_users=None, users=None, *, filter_self=True,
                      raw_ids=False):
        """Users most similar to ``userid`` by cosine similarity of the user factors.

        The constant column paired with the item bias is left out. Arguments
        and shapes mirror :meth:`similar_items`, with users in place of items.
        """
        self._check_fitted()
        userid = self._to_index(userid, "user", "userid", raw_ids)
        filter_users = self._to_index(filter_users, "user", "filter_users", raw_ids)
        users = self._to_index(users, "user", "users", raw_ids)
        return self._similar("user", userid, N, filter_users, users, filter_self, raw_ids)

    def _similar(self, side, query, N, filter_ids, candidates, filter_self, raw_ids):
        from ._topk import similar_items_topk

        factors = self._user_factors if side == "user" else self._item_factors
        query, scalar = v.check_ids(query, f"{side}id", factors.shape[0], f"{side}s")
        for ids, name in ((filter_ids, f"filter_{side}s"), (candidates, f"{side}s")):
            if ids is not None:
                v.check_ids(ids, name, factors.shape[0], f"{side}s")
        N = v.check_positive_int(N, "N")
        if not isinstance(filter_self, (bool, np.bool_)):
            raise TypeError(f"filter_self must be True or False; got {filter_self!r}.")
        if self._has_bias_column:
            factors = np.ascontiguousarray(factors[:, :-1])
        ids, scores = similar_items_topk(factors, query, N, filter_ids, candidates,
                                         exclude_self=bool(filter_self),
                                         num_threads=self._params["num_threads"])
        return self._answer(ids, scores, scalar, side, raw_ids)

    # ------------------------------------------------------------- persistence
    def save(self, path):
        """Write the model to one ``.npz`` file, atomically (no pickle).

        The file holds a format version, the parameters as JSON, the factors,
        ``n_epochs_done_`` and ``history_``; the optimiser state is not saved,
        so ``fit_partial`` after :meth:`load` starts with fresh optimiser state.
        """
        from .persistence import save_arrays

        self._check_fitted()
        params = self.get_params()
        if not isinstance(params["random_state"], (int, type(None))):
            params["random_state"] = None  # Generators and the like are not JSON
        extra = {"n_epochs_done": int(self.n_epochs_done_),
                 "history": [{k: (float(x) if isinstance(x, (float, np.floating)) else int(x))
                              for k, x in rec.items()} for rec in self.history_],
                 "has_bias_column": bool(self._has_bias_column)}
        arrays = {}
        for side in ("user", "item"):
            id_map = getattr(self, f"{side}_map_", None)
            if id_map is not None:
                arrays[f"{side}_ids"] = id_map.ids
        save_arrays(path, params, self._user_factors, self._item_factors, extra, arrays)

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
            No file at ``path``.
        ValueError
            Truncated, damaged, foreign or newer-version files.
        """
        from .persistence import load_arrays

        header, users, items, arrays = load_arrays(path)
        try:
            model = cls(**header["params"])
            model.initialize(users.shape[0], items.shape[0])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path} holds invalid parameters: {exc}") from exc
        if model._has_bias_column != header.get("has_bias_column", model._has_bias_column) or \
                model._user_factors.shape != users.shape or model._item_factors.shape != items.shape:
            raise ValueError(f"{path} is damaged: its factor shapes do not match its parameters.")
        model._user_factors = np.ascontiguousarray(users)
        model._item_factors = np.ascontiguousarray(items)
        model.n_epochs_done_ = int(header.get("n_epochs_done", 0))
        model.history_ = list(header.get("history", []))
        from .data import IdMap

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


def _fresh_state(name, user_shape, item_shape):
    """Zeroed optimiser state of ``name`` for factor matrices of these shapes.

    A side of shape ``(0, 0)`` gets no state (fold-in trains one side only).
    """
    empty2 = np.zeros((0, 0), np.float32)
    empty1 = np.zeros(0, np.int64)
    state = dict(user_sum_sq=empty2, item_sum_sq=empty2,
                 user_adam_m=empty2, user_adam_v=empty2, user_adam_t=empty1,
                 item_adam_m=empty2, item_adam_v=empty2, item_adam_t=empty1,
                 user_grad=empty2, item_grad=empty2, adam_step=np.zeros(1, np.int64))
    for side, shape in (("user", tuple(user_shape)), ("item", tuple(item_shape))):
        if name == "adagrad":
            state[f"{side}_sum_sq"] = np.zeros(shape, np.float32)
        elif name == "rowwise-adagrad":
            state[f"{side}_sum_sq"] = np.zeros((shape[0], 1) if len(shape) == 2 else shape,
                                               np.float32)
        elif name in ("adam", "dense-adam"):
            state[f"{side}_adam_m"] = np.zeros(shape, np.float32)
            state[f"{side}_adam_v"] = np.zeros(shape, np.float32)
            if name == "adam":
                state[f"{side}_adam_t"] = np.zeros(shape[0], np.int64)
            else:
                state[f"{side}_grad"] = np.zeros(shape, np.float32)
    return state


def _grow_state(state, side, n_rows):
    """Extend ``side``'s per-row state arrays with zero rows up to ``n_rows`` rows."""
    for key, array in state.items():
        if key.startswith(side + "_") and array.size and array.shape[0] < n_rows:
            extra = np.zeros((n_rows - array.shape[0],) + array.shape[1:], array.dtype)
            state[key] = np.concatenate([array, extra])


def _check_trainable(X):
    if X.shape[1] < 2:
        raise ValueError(
            f"interactions has a catalogue of {X.shape[1]} item; a triplet needs a negative item "
            "besides the positive, so at least 2 items are expected."
        )


def _n_rows(matrix):
    shape = getattr(matrix, "shape", None)
    return shape[0] if shape else None


def _coo_to_csr(data, rows, cols, shape):
    import scipy.sparse as sp

    return sp.csr_matrix((np.asarray(data, np.float32), (rows, cols)), shape=shape)


def _uniform_factors(rng, n_rows, k, extra, scale, fill):
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
