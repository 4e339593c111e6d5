"""The ``BPR`` estimator: the parameter table and the entry points.

Each entry point validates its arguments and delegates: training to
:mod:`bpr_numba._training` (the recipe, the optimiser state, the trainers
and the one epoch loop), fold-in to :mod:`bpr_numba._foldin`, serving and
persistence to :class:`~bpr_numba._model.FactorModel`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import _foldin
from . import _validation as v
from ._foldin import FoldInMixin
from ._model import FactorModel
from ._runtime import as_seed_sequence, spawn_states
from ._training import N_CHUNKS, LoopOptions, OptimizerState, Recipe, run_epochs, trainer_for
from ._validation import TrainingDivergedError, UnknownIdError

__all__ = ["BPR", "PRESETS", "TrainingDivergedError", "UnknownIdError"]

#: The named recipes of :meth:`BPR.preset`: constructor parameters each.
PRESETS = {
    "fast": {},
    "quality": dict(optimizer="adagrad", regularization=0.045, epochs=80,
                    negative_candidates="auto", candidate_exponent=0.75),
    "keras": dict(factors=100, loss="sigmoid", optimizer="dense-adam", learning_rate=0.001,
                  regularization=0.0, negatives="uniform", negative_candidates=1,
                  item_bias=False, batch_size=64, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                  init_scale=0.05),
}


class BPR(FoldInMixin, FactorModel):
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
    loss : {"bpr", "sigmoid", "softmax", "ccl", "warp"}
        Triplet losses (one negative per positive): ``"bpr"``,
        ``-log sigmoid(x)`` (Rendle et al. 2009); ``"sigmoid"``,
        ``1 - sigmoid(x)``, the Keras notebook's loss. Listwise losses (many
        negatives per positive): each user draws ``n_negatives`` negatives once
        per epoch, shared by all its positives (its accidental hits, negatives
        that are its positives, dropped), and its gradients are summed over
        its positives and applied once per user. ``"softmax"``: sampled
        softmax ``-log(e^{s_p/t} / (e^{s_p/t} + sum_j e^{s_j/t - log q_j}))``
        with ``t = temperature`` and the log-Q correction ``log q_j`` (the log
        of ``n_items`` times the item's sampling probability: 0 for uniform
        draws); ``"ccl"``: SimpleX's cosine contrastive loss
        ``(1 - cos(u, p)) + negative_weight / N * sum_j max(0, cos(u, j) - margin)``
        (Mao et al. 2021); ``"warp"``: LightFM's WARP, the shared list tried
        from a random start until a negative with ``s_j > s_p - 1``, the hinge
        weighted by ``log(floor((n_items - 1) / tries))``. Listwise losses
        refuse ``negative_candidates``/``negative_pool`` other than the
        defaults and "dense-adam".
    optimizer : {"rowwise-adagrad", "adagrad", "sgd", "adam", "dense-adam"}
        "rowwise-adagrad" (the default) keeps one Adagrad accumulator per row
        (the mean squared gradient of the row): 4 bytes of state per row, so a
        sample moves half the random memory of "adagrad" (one accumulator per
        element); the same quality on MovieLens 100k and Gowalla, 1.2 to 2.3
        times as fast (README "How it trains"). "adam" and "adagrad" keep
        lazy per-row state: only the rows a sample touches are updated, and a
        row's Adam bias correction uses its own step count (betas 0.9/0.999,
        epsilon 1e-8; Adagrad epsilon 1e-8).
        "dense-adam" is Keras's Adam over mini-batches.
    learning_rate : float or None
        None takes the optimiser's default (sgd 0.05, adagrad and
        rowwise-adagrad 0.08, adam 0.01, dense-adam 0.001).
    regularization : float
        L2 weight: ``regularization * w`` is added to the gradient of the user,
        positive and negative rows of every sample.
    epochs : int
        Passes over all training positives done by :meth:`fit`.
    negatives : {"uniform", "unseen", "popularity"}
        "uniform" draws any item (the notebook's way; it may draw a positive);
        "unseen" draws only items without a positive for the user;
        "popularity" draws item ``j`` with probability proportional to
        ``max(count_j, 1) ** popularity_exponent``, its training positives
        (an alias table, O(1) per draw): "bpr" and "sigmoid" redraw the
        user's positives (popularity among the unseen items), the listwise
        losses drop them and apply the log-Q correction ("softmax").
    negative_candidates : int, "auto" or None
        Candidates drawn (by the ``negatives`` policy) for each positive; the
        sample trains on the one the model currently scores highest (dynamic
        negative sampling, Zhang et al. 2013). 1 is plain BPR; 3 reaches a
        higher AUC within 10 epochs on MovieLens 100k (bench/movielens.py).
        "auto" scales with the catalogue: about one candidate per 800 items,
        3 to 50 (50 on Gowalla's 41k items, 3 on MovieLens 100k). None (the
        default) is "auto" within a budget of 35M candidates scored per
        epoch (at least 3 per positive): Gowalla's 810k positives get 43,
        MovieLens 100k 3, and 10M positives 3, so large data keep the speed
        of three candidates. ``fit`` resolves it once, on its matrix, into
        ``n_candidates_``, which later ``fit_partial`` calls and fold-in use.
    candidate_sampling : {"auto", "independent", "window"}
        How a positive's candidates are drawn. "independent": each one its own
        draw by the ``negatives`` policy. "window": runs of up to 25 items
        consecutive in an order of the items shuffled every epoch, each run
        from a random start (the user's positives skipped under "unseen"):
        distinct within a run, as random for one sample, read as contiguous blocks
        of memory instead of random rows, because each epoch first copies
        the item rows and their optimiser state into that order (and back
        after it). "auto" (the default): "window" with at least 25
        candidates per positive under "uniform" or "unseen" without a pool
        (Gowalla's 43 or 50), "independent" otherwise (MovieLens 100k's 3).
        On Gowalla an epoch with 43 to 50 candidates takes 1.2 to 1.3 times
        less time, with the same quality within noise (README "How it
        trains").
        "window" needs ``negatives`` "uniform" or "unseen" and no
        ``negative_pool``; fold-in always draws independently.
    candidate_exponent : float, 0 to 2
        Shares the candidates out by user activity: a user with ``n``
        positives gets about ``s * n ** -candidate_exponent`` candidates per
        positive (within a fifth and three times the resolved count ``C``),
        ``s`` chosen so that an epoch scores as many candidates as ``C`` for
        every positive. Users with few positives then get harder negatives,
        users with many (whose unobserved items are more often future
        positives) easier ones, at the same cost. 0 (the default): ``C`` for
        every user. The quality preset's 0.75 gives Gowalla's users with 8
        positives 134 candidates and those with 200 positives 12 (``C`` 50).
        Full training only: fold-in draws ``C`` for every positive.
    negative_pool : int
        0: every candidate is a fresh draw. Otherwise each user draws a pool
        of this many negatives once per epoch and scores it once (one dot
        product per entry), and each positive's ``negative_candidates`` are
        picked from the pool: many candidates per positive at the cost of a
        few per user (the hard negatives of a user do not depend on the
        positive). Scores of the pool are those of the draw; the chosen
        negative is scored again before its step, and its pool score is
        refreshed after it (a negative just pushed down is not picked again
        on its stale score).
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
    n_negatives : int or None
        Listwise losses: negatives drawn per user and epoch (None: 256 for
        "softmax" and "ccl"; 10 for "warp", where it is LightFM's
        ``max_sampled``, the most tries per positive).
    temperature : float
        "softmax": scores are divided by it (> 0).
    margin : float
        "ccl": negatives with a cosine above it are pushed down (-1 to 1;
        SimpleX used 0.9 on Gowalla).
    negative_weight : float
        "ccl": weight of the negatives' mean term (SimpleX: about 150).
    popularity_exponent : float
        Exponent of the item counts for ``negatives="popularity"`` (0: uniform).
    similarity : {"auto", "dot", "cosine"}
        Score of the listwise losses. "cosine" keeps every factor row at unit
        norm (normalised after each step), so the stored factors' dot products
        are the cosines and L2 ``regularization`` is mostly absorbed by the
        normalisation; it needs
        ``item_bias=False``. "auto": "cosine" for "ccl", "dot" otherwise.
    initial_accumulator_value : float or None
        Starting value of the Adagrad accumulators (TensorFlow's name). None:
        0 for the triplet losses, 0.1 for the listwise ones, where a row may
        get the summed gradient of hundreds of negatives at its first step.
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
    n_candidates_ : int or None
        With ``negative_candidates=None``: the candidates per positive it
        resolved to on the matrix of the last fresh training (``fit``, or
        ``fit_partial`` on an unfitted model), used by later ``fit_partial``
        calls and fold-in too; None otherwise (or after ``initialize``,
        until a training resolves it).
    user_map_, item_map_ : IdMap or None
        Raw ids of the rows and columns when fitted on an
        :class:`~bpr_numba.Interactions` (None for a plain matrix); methods
        taking ``raw_ids=True`` read and answer in these ids.
    history_ : list of dict
        One record per epoch: ``epoch``, ``loss`` (mean training loss),
        ``skipped`` (samples without a negative), ``seconds`` (small epochs
        trained several to a kernel call share its seconds equally), and the
        validation metric when one is given.
    """

    _fit_hint = "call fit(), or initialize(n_users, n_items)"

    # Models saved before candidate_sampling existed drew every candidate on
    # its own: fit_partial on them goes on doing so ("auto" would switch a
    # model with 25 or more candidates to runs).
    _params_before = {"candidate_sampling": "independent"}

    def __init__(self, factors=64, loss="bpr", optimizer="rowwise-adagrad", learning_rate=None,
                 regularization=0.03, epochs=10, negatives="unseen", negative_candidates=None,
                 candidate_sampling="auto", candidate_exponent=0.0, negative_pool=0,
                 item_bias=True,
                 use_weights=False, batch_size=64, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 init_scale=0.05, n_negatives=None, temperature=1.0, margin=0.9,
                 negative_weight=150.0, popularity_exponent=0.75, similarity="auto",
                 initial_accumulator_value=None, num_threads=0, random_state=None):
        self.factors = factors
        self.loss = loss
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.epochs = epochs
        self.negatives = negatives
        self.negative_candidates = negative_candidates
        self.candidate_sampling = candidate_sampling
        self.candidate_exponent = candidate_exponent
        self.negative_pool = negative_pool
        self.item_bias = item_bias
        self.use_weights = use_weights
        self.batch_size = batch_size
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.init_scale = init_scale
        self.n_negatives = n_negatives
        self.temperature = temperature
        self.margin = margin
        self.negative_weight = negative_weight
        self.popularity_exponent = popularity_exponent
        self.similarity = similarity
        self.initial_accumulator_value = initial_accumulator_value
        self.num_threads = num_threads
        self.random_state = random_state

    # ------------------------------------------------------------------ params
    def _fitted_repr(self):
        return f"{self.n_users} users x {self.n_items} items, {self.n_epochs_done_} epochs"

    @classmethod
    def preset(cls, name, **overrides):
        """Return an unfitted BPR configured by the named recipe; ``overrides`` replace any of it.

        - ``"fast"``: the defaults (10 epochs of BPR with candidate negatives
          by ``negative_candidates=None``, row-wise Adagrad).
        - ``"quality"``: 80 epochs of per-element Adagrad with regularization
          0.045, candidates scaled to the catalogue
          (``negative_candidates="auto"``) and shared out by user activity
          (``candidate_exponent=0.75``), for the best ranking quality;
          about 10x the training time of "fast" (Gowalla, 41k items, 50
          candidates per positive on average, in runs: see the README's
          "Presets" for its seconds and figures).
        - ``"keras"``: the 2016 Keras notebook's recipe (:meth:`keras_compatible`).

        The README's "Presets" section lists each preset's parameters, its
        cost and what it reached on MovieLens 100k and Gowalla.
        """
        if not isinstance(name, str) or name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known presets: "
                             f"{', '.join(repr(k) for k in PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})

    @classmethod
    def keras_compatible(cls, **overrides):
        """Return a BPR preset to the 2016 Keras notebook's recipe (``preset("keras")``).

        Factors 100, loss "sigmoid", optimizer "dense-adam" (lr 0.001, betas
        0.9/0.999, epsilon 1e-7 as Keras >= 2.3; the notebook's Keras 1 used
        1e-8), batch 64, uniform negatives, no item bias, no regularisation.
        ``overrides`` replace any of these.
        """
        return cls.preset("keras", **overrides)

    def _recipe(self):
        """The parameters, checked (a :class:`~bpr_numba._training.Recipe`).

        ``negative_candidates=None`` is the count resolved when the factors
        were trained from scratch (``n_candidates_``), so ``fit_partial`` and
        fold-in sample as ``fit`` did, whatever the size of their matrix.
        """
        recipe = Recipe.check(self.get_params())
        resolved = getattr(self, "n_candidates_", None)
        if recipe.negative_candidates is None and resolved is not None:
            recipe = dataclasses.replace(recipe, negative_candidates=int(resolved))
        return recipe

    def _resolve_candidates(self, X):
        """Fix ``n_candidates_`` from the matrix a fresh training starts on."""
        self.n_candidates_ = None
        recipe = self._recipe()
        self.n_candidates_ = (recipe.candidates_for(X.shape[1], X.nnz)
                              if recipe.negative_candidates is None else None)

    def _num_threads(self):
        return v.check_nonneg_int(self.num_threads, "num_threads")

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
    def n_parameters(self):
        """Trainable parameters as ``(user, item)`` counts (the constant user column excluded)."""
        self._check_fitted()
        n_user_cols = self._user_factors.shape[1] - int(self._has_bias_column)
        return self.n_users * n_user_cols, self._item_factors.size

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
        recipe = self._recipe()
        init_seq, order_seq, chunk_seq = as_seed_sequence(self.random_state).spawn(3)
        init_rng = np.random.default_rng(init_seq)
        self._has_bias_column = recipe.item_bias
        extra = 1 if self._has_bias_column else 0
        self._user_factors = _foldin.uniform_factors(init_rng, n_users, recipe.factors, extra,
                                                     recipe.init_scale, 1.0)
        self._item_factors = _foldin.uniform_factors(init_rng, n_items, recipe.factors, extra,
                                                     recipe.init_scale, 0.0)
        # The epoch orders and the kernels' per-chunk random streams.
        self._streams = (np.random.default_rng(order_seq), spawn_states(chunk_seq, N_CHUNKS))
        self._opt_state = OptimizerState.fresh(recipe.optimizer, self._user_factors.shape,
                                               self._item_factors.shape,
                                               recipe.initial_accumulator_value)
        self.n_epochs_done_ = 0
        self.n_candidates_ = None
        self.history_ = []
        self.user_map_ = self.item_map_ = None
        return self

    def _reset_optimizer_state(self, optimizer=None):
        self._opt_state = OptimizerState.fresh(optimizer or self._opt_state.optimizer,
                                               self._user_factors.shape,
                                               self._item_factors.shape,
                                               self._recipe().initial_accumulator_value)

    def _check_layout(self, recipe):
        """Refuse a recipe whose width or bias differs from the current factors'."""
        width = self._item_factors.shape[1] - int(self._has_bias_column)
        for name, now, made in (("factors", recipe.factors, width),
                                ("item_bias", recipe.item_bias, self._has_bias_column)):
            if now != made:
                raise ValueError(
                    f"{name} changed from {made!r} to {now!r} since the factors were "
                    "made; call fit() to start again, or set it back to continue."
                )

    def _similarity_factors(self, side):
        factors = self._user_factors if side == "user" else self._item_factors
        return np.ascontiguousarray(factors[:, :-1]) if self._has_bias_column else factors

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
            stops at once, leaving the factors of a partly trained epoch;
            small epochs trained several to a call all finish).
        """
        X = v.check_interactions(interactions, "interactions")
        v.check_trainable(X)
        recipe = self._recipe()  # bad parameters are refused before the model changes
        options = LoopOptions.check(X, validation, metric, patience, callbacks, show_progress)
        self.initialize(*X.shape)
        self._resolve_candidates(X)
        recipe = self._recipe()  # with n_candidates_ resolved on X
        weights = v.check_sample_weight(X, sample_weight, recipe.use_weights)
        self._adopt_id_maps(interactions)
        self._check_same_ids(validation, "validation")
        return self._train(X, weights, recipe.epochs, recipe, options)

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
        v.check_trainable(X)
        epochs = v.check_positive_int(epochs, "epochs")
        recipe = self._recipe()
        options = LoopOptions.check(X, validation, metric, patience, callbacks, show_progress)
        if getattr(self, "_user_factors", None) is None:
            self.initialize(*X.shape)
            self._resolve_candidates(X)
            recipe = self._recipe()
            self._adopt_id_maps(interactions)
        else:
            v.check_same_shape(X, "interactions", self.n_users, self.n_items)
            self._continue_with(recipe)
            if self.user_map_ is None and v.id_maps(interactions) is not None:
                self._adopt_id_maps(interactions)
            self._check_same_ids(interactions, "interactions")
        weights = v.check_sample_weight(X, sample_weight, recipe.use_weights)
        return self._train(X, weights, epochs, recipe, options)

    def _continue_with(self, recipe):
        """Continue from the current factors; a new optimiser starts from fresh state."""
        self._check_layout(recipe)
        if recipe.optimizer != self._opt_state.optimizer:
            self._reset_optimizer_state(recipe.optimizer)

    def _train(self, X, weights, epochs, recipe, options):
        trainer = trainer_for(recipe, self._has_bias_column)
        return run_epochs(
            self, epochs, lambda interrupt, epoch, n: trainer.train_epochs(
                self, X, weights, interrupt, epoch, n),
            options, recipe.num_threads, epochs_per_call=trainer.epochs_per_call(X))

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
        recipe = self._recipe()
        if not recipe.keras_mode:
            raise ValueError(
                "fit_triplets trains the Keras-compatible mode: it needs optimizer='dense-adam'; "
                f"got optimizer={recipe.optimizer!r}."
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
            self._continue_with(recipe)
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
        trainer = trainer_for(recipe)

        def train_epochs(interrupt, epoch, n):  # n is 1: run_epochs' default epochs_per_call
            order = self._streams[0].permutation(users.size) if shuffle else slice(None)
            loss_sum = trainer.triplets(self, users[order], positives[order], negatives[order],
                                        interrupt, epoch)
            return [{"loss": loss_sum / users.size, "skipped": 0}]

        return run_epochs(self, epochs, train_epochs, num_threads=recipe.num_threads)

    # ------------------------------------------------------------- persistence
    def _header_extra(self):
        return {"n_epochs_done": int(self.n_epochs_done_),
                "n_candidates": (None if getattr(self, "n_candidates_", None) is None
                                 else int(self.n_candidates_)),
                "history": [{k: (float(x) if isinstance(x, (float, np.floating)) else int(x))
                             for k, x in rec.items()} for rec in self.history_],
                "has_bias_column": bool(self._has_bias_column)}

    def _restore(self, users, items, header, path):
        try:
            self.initialize(users.shape[0], items.shape[0])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path} holds invalid parameters: {exc}") from exc
        if self._has_bias_column != header.get("has_bias_column", self._has_bias_column) or \
                self._user_factors.shape != users.shape or self._item_factors.shape != items.shape:
            raise ValueError(f"{path} is damaged: its factor shapes do not match its parameters.")
        self._user_factors = np.ascontiguousarray(users)
        self._item_factors = np.ascontiguousarray(items)
        self.n_epochs_done_ = int(header.get("n_epochs_done", 0))
        candidates = header.get("n_candidates")
        self.n_candidates_ = None if candidates is None else int(candidates)
        self.history_ = list(header.get("history", []))
