"""Training: the checked recipe, the optimiser state, one trainer per mode and THE epoch loop.

- :class:`Recipe`: the estimator's parameters, checked once per entry point.
- :class:`OptimizerState`: the optimiser's arrays, one :class:`SideState`
  per side (users, items), named for what they hold.
- :class:`HogwildTrainer` (per-sample updates, the fast mode),
  :class:`ListwiseTrainer` (many shared negatives per user: the "softmax",
  "ccl" and "warp" losses) and :class:`DenseAdamTrainer` (exact mini-batches
  and Keras's dense Adam): the mode is chosen once, by :func:`trainer_for`.
- :func:`run_epochs`: the one epoch loop (validation scoring, patience and
  restore of the best epoch, callbacks, progress bar, Ctrl-C) used by
  ``fit``, ``fit_partial``, ``fit_triplets``, fold-in and the CLI.

What an epoch is: one pass over all training positives, each paired with a
fresh negative. The order is cache-friendly: users are visited in a freshly
shuffled order, and each user's positives in a freshly shuffled order (inside
the kernel), so the user's row stays in cache while its samples are
processed. The pass is cut into ``N_CHUNKS`` chunks of about equal sample
counts at user boundaries; chunk ``c`` owns random state ``states[c]``, so
with one thread the run is bit-for-bit reproducible whatever the thread count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field, fields

import numpy as np
from tqdm.auto import tqdm

from . import _validation as v
from ._kernels.dense_adam import dense_adam_batches
from ._kernels.hogwild import (TRAIN_CHUNKS, UPDATE_ALL, UPDATE_NEGATIVE, UPDATE_POSITIVE,
                               UPDATE_USER)
from ._kernels.listwise import LISTWISE_LOSSES, TRAIN_USERS
from ._kernels.losses import LOSSES
from ._kernels.optim import OPTIMIZERS
from ._kernels.sampling import NEG_POPULARITY, NEG_UNIFORM, NEGATIVES, alias_table
from ._runtime import parallel_ranges, threads
from ._scoring import evaluate_factors, mean_over_users, metric_codes

# Chunks per epoch: fixed, so the random streams do not depend on the threads.
N_CHUNKS = 256
# Samples per kernel call: the Python loop between calls is where Ctrl-C lands.
SAMPLES_PER_CALL = 2_000_000
# Samples per piece of an epoch handed to a thread (at most 4 pieces per thread).
SAMPLES_PER_PIECE = 250_000
# Small epochs trained in one kernel call, at most (HogwildTrainer.epochs_per_call).
MAX_STACKED = 100
# negative_candidates=None: candidates scored per epoch at most (see Recipe.candidates_for).
CANDIDATE_BUDGET = 35_000_000
#: ``candidate_sampling``: each candidate its own draw by the ``negatives``
#: policy, or runs of consecutive items in an order of the items shuffled
#: every epoch (``ItemLayout``), or "auto": runs when there are at least
#: ``RUN_LENGTH`` candidates per positive (``Recipe.runs_for``).
CANDIDATE_SAMPLINGS = ("auto", "independent", "window")
#: ``candidate_sampling="window"``: a positive's candidates come in runs of at
#: most this many consecutive rows, each run from its own random start. One
#: run of all 43 was fastest but lost a little quality: a hard item then
#: shades the items next to it in the epoch's order from every sample
#: (README "How it trains" has the figures).
RUN_LENGTH = 25
# Triplets per dense-adam kernel call, for the same reason.
TRIPLETS_PER_CALL = 200_000
# Used when learning_rate is None: the optimiser's own default.
DEFAULT_LEARNING_RATES = {"sgd": 0.05, "adagrad": 0.08, "adam": 0.01, "dense-adam": 0.001,
                          "rowwise-adagrad": 0.08}
# Fixed constants of the per-sample optimisers (beta_1, beta_2 and epsilon
# are dense-adam's parameters only).
LAZY_BETA_1 = 0.9
LAZY_BETA_2 = 0.999
LAZY_EPSILON = 1e-8


def adam_bias_correction(beta_1, beta_2, epsilon=np.finfo(np.float32).eps):
    """Table of Adam's bias correction ``sqrt(1 - beta_2**t) / (1 - beta_1**t)`` by step.

    The table ends where the correction is 1 within ``epsilon``, so the kernel
    looks up a value instead of calling ``pow`` twice per row update.

    Returns
    -------
    ndarray of float32, shape (n_steps,)
        Entry 0 is unused (steps start at 1).
    """
    if beta_2 <= 0.0:
        n_steps = 2
    else:
        n_steps = int(np.ceil(np.log(epsilon) / np.log(max(beta_1, beta_2)))) + 2
    t = np.arange(n_steps, dtype=np.float64)
    t[0] = 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        table = np.sqrt(1.0 - beta_2 ** t) / (1.0 - beta_1 ** t)
    return table.astype(np.float32)


LAZY_ADAM_ALPHA = adam_bias_correction(LAZY_BETA_1, LAZY_BETA_2)

# Used when n_negatives is None: per user for "softmax" and "ccl"; for "warp"
# the most tries per positive (LightFM's max_sampled).
DEFAULT_N_NEGATIVES = {"softmax": 256, "ccl": 256, "warp": 10}
# Used when initial_accumulator_value is None: Adagrad's accumulators start at
# 0 for the triplet losses and at TensorFlow's 0.1 for the listwise ones (a
# first step of lr / sqrt(g^2) is too large when a row gets the summed
# gradient of hundreds of negatives).
DEFAULT_INITIAL_ACCUMULATOR = {"bpr": 0.0, "sigmoid": 0.0, "softmax": 0.1, "ccl": 0.1,
                               "warp": 0.1}


# ------------------------------------------------------------------ recipe
def _check_candidates(value):
    if value is None:
        return value
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f"negative_candidates must be a positive integer, 'auto' or None; "
                             f"got {value!r}.")
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"negative_candidates must be a positive integer, 'auto' or None; "
                        f"got {value!r} ({v.type_name(value)}).")
    return v.check_positive_int(value, "negative_candidates")


@dataclass(frozen=True)
class Recipe:
    """The estimator's parameters, checked: what a training run is made of."""

    factors: int
    loss: str
    optimizer: str
    learning_rate: float
    regularization: float
    epochs: int
    negatives: str
    negative_candidates: int | str | None
    candidate_sampling: str
    candidate_exponent: float
    negative_pool: int
    item_bias: bool
    use_weights: bool
    batch_size: int
    beta_1: float
    beta_2: float
    epsilon: float
    init_scale: float
    num_threads: int
    n_negatives: int
    temperature: float
    margin: float
    negative_weight: float
    popularity_exponent: float
    similarity: str
    initial_accumulator_value: float

    @classmethod
    def check(cls, params):
        """Validate the constructor parameters ``params`` (a dict); return a Recipe."""
        optimizer = v.check_choice(params["optimizer"], "optimizer", list(OPTIMIZERS))
        loss = v.check_choice(params["loss"], "loss", list(LOSSES) + list(LISTWISE_LOSSES))
        learning_rate = params["learning_rate"]
        n_negatives = params["n_negatives"]
        similarity = v.check_choice(params["similarity"], "similarity",
                                    ["auto", "dot", "cosine"])
        initial = params["initial_accumulator_value"]
        recipe = cls(
            factors=v.check_positive_int(params["factors"], "factors"),
            loss=loss,
            optimizer=optimizer,
            learning_rate=(DEFAULT_LEARNING_RATES[optimizer] if learning_rate is None else
                           v.check_float(learning_rate, "learning_rate", low=0.0,
                                         low_inclusive=False)),
            regularization=v.check_float(params["regularization"], "regularization", low=0.0),
            epochs=v.check_positive_int(params["epochs"], "epochs"),
            negatives=v.check_choice(params["negatives"], "negatives", list(NEGATIVES)),
            negative_candidates=_check_candidates(params["negative_candidates"]),
            candidate_sampling=v.check_choice(params["candidate_sampling"], "candidate_sampling",
                                              list(CANDIDATE_SAMPLINGS)),
            candidate_exponent=v.check_float(params["candidate_exponent"],
                                             "candidate_exponent", low=0.0, high=2.0),
            negative_pool=v.check_nonneg_int(params["negative_pool"], "negative_pool"),
            item_bias=v.check_bool(params["item_bias"], "item_bias"),
            use_weights=v.check_bool(params["use_weights"], "use_weights"),
            batch_size=v.check_positive_int(params["batch_size"], "batch_size"),
            beta_1=v.check_float(params["beta_1"], "beta_1", low=0.0, high=1.0,
                                 high_inclusive=False),
            beta_2=v.check_float(params["beta_2"], "beta_2", low=0.0, high=1.0,
                                 high_inclusive=False),
            epsilon=v.check_float(params["epsilon"], "epsilon", low=0.0, low_inclusive=False),
            init_scale=v.check_float(params["init_scale"], "init_scale", low=0.0),
            num_threads=v.check_nonneg_int(params["num_threads"], "num_threads"),
            n_negatives=(DEFAULT_N_NEGATIVES.get(loss, 1) if n_negatives is None else
                         v.check_positive_int(n_negatives, "n_negatives")),
            temperature=v.check_float(params["temperature"], "temperature", low=0.0,
                                      low_inclusive=False),
            margin=v.check_float(params["margin"], "margin", low=-1.0, high=1.0),
            negative_weight=v.check_float(params["negative_weight"], "negative_weight", low=0.0),
            popularity_exponent=v.check_float(params["popularity_exponent"],
                                              "popularity_exponent", low=0.0),
            similarity=(("cosine" if loss == "ccl" else "dot") if similarity == "auto"
                        else similarity),
            initial_accumulator_value=(
                DEFAULT_INITIAL_ACCUMULATOR[loss] if initial is None else
                v.check_float(initial, "initial_accumulator_value", low=0.0)),
        )
        v.check_random_state(params["random_state"])
        trainer_for(recipe).check(recipe)
        return recipe

    def candidates_for(self, n_items, n_samples):
        """Candidate negatives per positive, for ``n_samples`` positives of ``n_items`` items.

        "auto" scans about one item in 800 (3 to 50 candidates): the hard
        negatives of a large catalogue pay (Gowalla, 41k items: 50), while on a
        small one the best scored of many candidates is too often a future
        positive (MovieLens 100k, 1.7k items: 3). None (the default) is "auto"
        within a budget: an epoch scores at most ``CANDIDATE_BUDGET`` (35M)
        candidates, but at least 3 per positive (past about 11.7M positives
        the floor wins), so large data sets keep the speed of 3 candidates
        (10M positives: 3; Gowalla's 810k: 43). ``BPR.fit`` resolves None
        once, on its matrix, into ``n_candidates_``.
        """
        if self.negative_candidates is not None and self.negative_candidates != "auto":
            return self.negative_candidates
        scaled = int(min(50, max(3, round(n_items / 800))))
        if self.negative_candidates == "auto":
            return scaled
        return min(scaled, max(3, CANDIDATE_BUDGET // max(int(n_samples), 1)))

    def candidate_counts(self, row_lengths, n_candidates):
        """Each user's candidates per positive under ``candidate_exponent``; None when it is 0.

        A user with ``n`` positives gets ``round(s * n ** -candidate_exponent)``
        candidates, within ``ceil(n_candidates / 5)`` and ``3 * n_candidates``,
        the scale ``s`` chosen so that an epoch scores about as many candidates
        as ``n_candidates`` for every positive (at least as many, and at most
        one more per positive): users with few positives get more (harder
        negatives), users with many fewer. Users without positives (not
        trained) get ``n_candidates``.

        Parameters
        ----------
        row_lengths : ndarray of int, shape (n_users,)
            Positives per user.
        n_candidates : int

        Returns
        -------
        ndarray of int64, shape (n_users,), or None
        """
        exponent = self.candidate_exponent
        if exponent == 0.0:
            return None
        row_lengths = np.asarray(row_lengths, np.int64)
        lengths, n_users = np.unique(row_lengths[row_lengths > 0], return_counts=True)
        low, high = max(1, -(-n_candidates // 5)), 3 * n_candidates
        if lengths.size == 0:
            return np.full(row_lengths.shape, n_candidates, np.int64)
        shrink = lengths.astype(np.float64) ** -exponent
        positives = lengths * n_users  # per distinct length

        def counts(scale, shrink):
            return np.clip(np.rint(scale * shrink), low, high).astype(np.int64)

        budget = n_candidates * int(positives.sum())
        # Every count at ``low`` (<= n_candidates) at the lower end, at ``high``
        # at the upper; the smallest scale that reaches the budget, by bisection.
        lower, upper = low / shrink.max() / 2, high / shrink.min() * 2
        for _ in range(100):
            middle = (lower * upper) ** 0.5
            if int((positives * counts(middle, shrink)).sum()) >= budget:
                upper = middle
            else:
                lower = middle
        out = np.full(row_lengths.shape, n_candidates, np.int64)
        trained = row_lengths > 0
        out[trained] = counts(upper, row_lengths[trained].astype(np.float64) ** -exponent)
        return out

    def runs_for(self, n_candidates):
        """Whether training draws ``n_candidates`` candidates per positive in runs.

        "window": always; "auto": with at least ``RUN_LENGTH`` candidates (fewer
        gain nothing from runs, and lose the stacking of small epochs) under the
        uniform or unseen policy without a pool; "independent": never.
        """
        if self.candidate_sampling != "auto":
            return self.candidate_sampling == "window"
        return (n_candidates >= RUN_LENGTH and self.negatives in ("uniform", "unseen")
                and not self.negative_pool)

    @property
    def keras_mode(self):
        """Whether this recipe trains the Keras-compatible mode (dense Adam)."""
        return self.optimizer == "dense-adam"


# ----------------------------------------------------------- optimiser state
def _empty_2d():
    return np.zeros((0, 0), np.float32)


@dataclass
class SideState:
    """Optimiser state of one side's factor rows; unused arrays are empty placeholders.

    Attributes
    ----------
    adagrad_sum_sq : ndarray of float32, shape (n, f), (n, 1) or (0, 0)
        Adagrad's sums of squared gradients (per element, or per row for
        "rowwise-adagrad").
    adam_m, adam_v : ndarray of float32, shape (n, f) or (0, 0)
        Adam's moments (lazy Adam and dense Adam).
    adam_t : ndarray of int64, shape (n,) or (0,)
        Lazy Adam's step count per row.
    grad : ndarray of float32, shape (n, f) or (0, 0)
        Dense Adam's batch gradient accumulator.
    """

    adagrad_sum_sq: np.ndarray = field(default_factory=_empty_2d)
    adam_m: np.ndarray = field(default_factory=_empty_2d)
    adam_v: np.ndarray = field(default_factory=_empty_2d)
    adam_t: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    grad: np.ndarray = field(default_factory=_empty_2d)

    @classmethod
    def fresh(cls, optimizer, shape, initial_accumulator_value=0.0):
        """Fresh state of ``optimizer`` for factors of ``shape``; (0, 0): none (fold-in).

        Adagrad's sums of squares start at ``initial_accumulator_value`` (as
        TensorFlow's Adagrad), every other array at zero.
        """
        n, f = shape
        if n == 0 or optimizer == "sgd":
            return cls()
        if optimizer == "adagrad":
            return cls(adagrad_sum_sq=np.full((n, f), initial_accumulator_value, np.float32))
        if optimizer == "rowwise-adagrad":
            return cls(adagrad_sum_sq=np.full((n, 1), initial_accumulator_value, np.float32))
        moments = dict(adam_m=np.zeros((n, f), np.float32), adam_v=np.zeros((n, f), np.float32))
        if optimizer == "adam":
            return cls(adam_t=np.zeros(n, np.int64), **moments)
        return cls(grad=np.zeros((n, f), np.float32), **moments)

    def grown(self, n_rows, initial_accumulator_value=0.0):
        """This state with fresh rows appended up to ``n_rows`` rows (arrays in use only).

        The new rows start as :meth:`fresh` makes them: Adagrad's sums at
        ``initial_accumulator_value``, everything else at zero.
        """
        out = {}
        for f in fields(self):
            array = getattr(self, f.name)
            if array.size and array.shape[0] < n_rows:
                fill = initial_accumulator_value if f.name == "adagrad_sum_sq" else 0
                extra = np.full((n_rows - array.shape[0],) + array.shape[1:], fill, array.dtype)
                array = np.concatenate([array, extra])
            out[f.name] = array
        return SideState(**out)

    def arrays(self):
        """The arrays in use, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name).size}


@dataclass
class OptimizerState:
    """The optimiser's state: one :class:`SideState` per side, and dense Adam's step."""

    optimizer: str
    user: SideState
    item: SideState
    step: np.ndarray  # int64, shape (1,): dense Adam's global step count

    @classmethod
    def fresh(cls, optimizer, user_shape, item_shape, initial_accumulator_value=0.0):
        """Fresh state for factor matrices of these shapes ((0, 0): that side is fixed)."""
        return cls(optimizer,
                   SideState.fresh(optimizer, user_shape, initial_accumulator_value),
                   SideState.fresh(optimizer, item_shape, initial_accumulator_value),
                   np.zeros(1, np.int64))

    def arrays(self):
        """Every array in use, named ``user_<name>`` / ``item_<name>``."""
        return {f"{side}_{name}": a for side in ("user", "item")
                for name, a in getattr(self, side).arrays().items()}


# ----------------------------------------------------------------- trainers
def plan_epoch(row_lengths, trainable_users, rng, n_chunks=N_CHUNKS):
    """Shuffle the users and cut the epoch into chunks of about equal sample counts.

    Parameters
    ----------
    row_lengths : ndarray of int64, shape (n_users,)
    trainable_users : ndarray of int64
        Users with at least one positive.
    rng : numpy.random.Generator
    n_chunks : int

    Returns
    -------
    user_order : ndarray of int64
    chunk_bounds : ndarray of int64, shape (n_chunks + 1,)
        Offsets into ``user_order``; empty chunks are allowed.
    """
    user_order = rng.permutation(trainable_users).astype(np.int64)
    cumulative = np.cumsum(row_lengths[user_order])
    total = cumulative[-1] if cumulative.size else 0
    targets = (np.arange(1, n_chunks, dtype=np.float64) * total / n_chunks)
    cuts = np.searchsorted(cumulative, targets, side="left") + 1
    cuts = np.minimum(cuts, user_order.size)
    chunk_bounds = np.concatenate(([0], cuts, [user_order.size])).astype(np.int64)
    return user_order, chunk_bounds


def call_slices(chunk_bounds, row_lengths, user_order, samples_per_call=SAMPLES_PER_CALL):
    """Group consecutive chunks into kernel calls of at most ``samples_per_call`` samples.

    Returns a list of ``(first_chunk, end_chunk)`` pairs covering all chunks.
    """
    n_chunks = chunk_bounds.size - 1
    cumulative = np.concatenate(([0], np.cumsum(row_lengths[user_order])))
    if cumulative[-1] <= samples_per_call:
        return [(0, n_chunks)]  # the common small epoch: no loop over the chunks
    samples_before = cumulative[chunk_bounds]
    slices = []
    first = 0
    for c in range(1, n_chunks + 1):
        if samples_before[c] - samples_before[first] >= samples_per_call or c == n_chunks:
            slices.append((first, c))
            first = c
    return slices


def train_epoch_chunks(indptr, indices, weights, user_order, chunk_bounds,
                       user_factors, item_factors, user_sum_sq, item_sum_sq,
                       user_adam_m, user_adam_v, user_adam_t, item_adam_m, item_adam_v, item_adam_t,
                       states, adam_alpha, loss_code, opt_code, neg_code, n_user_cols,
                       n_candidates, update_mask, lr, reg, beta_1, beta_2, epsilon,
                       num_threads=0, pool_size=0, out=None, alias=None, chunks=None,
                       window=False, run_length=None, user_candidates=None):
    """Train the chunks of one epoch, or of several, on ``num_threads`` threads, Hogwild style.

    The kernel of the optimiser and the way candidates are drawn
    (``_kernels.hogwild.TRAIN_CHUNKS[opt_code, draw]``) runs
    on disjoint ranges of chunks at once; chunk ``c`` uses only ``states[c]``,
    so with one thread the result does not depend on how the chunks were cut.
    Arguments are those of the kernel (see ``_kernels/hogwild.py``), plus:

    - ``user_order``, ``chunk_bounds``: one epoch's (1-d, as ``plan_epoch``
      gives them) or ``n`` epochs' stacked (2-d, one row per epoch). Several
      epochs are one kernel call per thread, each thread training its own
      range of chunks epoch after epoch without waiting for the others (no
      hand-off between epochs); a range that refuses a step stops after
      that epoch (its totals of later epochs stay as ``out`` had them).
      With one thread it is exactly the epochs one by one, up to a
      divergence: the other threads' ranges train on to the last epoch, and
      the stream that planned the epochs has moved past all of them.
    - ``opt_code``, ``num_threads``;
    - ``out``: four arrays of per-chunk totals (float64, int64 x 3; shape
      ``(n_chunks,)``, or ``(n, n_chunks)`` for stacked epochs) the kernel
      writes into, so they are kept even when a Ctrl-C is raised as the call
      returns;
    - ``alias``: the ``(prob, alias)`` table of the popularity policy (the
      first two arrays of ``popularity_table``), None otherwise;
    - ``chunks``: ``(first, end)``, the chunks to train (default: all);
    - ``window``: each positive's ``n_candidates`` candidates are runs of
      at most ``run_length`` (None: ``RUN_LENGTH``) consecutive rows of
      ``item_factors``, each run from a random start (its user's positives
      skipped unless the policy is uniform), not separate draws (the caller
      lays the rows out in a shuffled order: ``ItemLayout``); not with a
      pool or the popularity policy;
    - ``user_candidates``: int64, one count per row of ``indptr`` (each >= 1),
      the candidates per positive of each user instead of ``n_candidates``
      (``Recipe.candidate_counts``); None: ``n_candidates`` for all.

    Returns
    -------
    loss_sum, n_trained, n_skipped, n_refused : ndarray, shape of ``out``
    """
    popularity = neg_code == NEG_POPULARITY
    if window and (popularity or pool_size):
        raise ValueError("runs of candidates draw uniformly (or unseen), without a pool.")
    draw = "window" if window else "_".join(
        name for name, used in (("popularity", popularity), ("pool", pool_size > 0)) if used)
    kernel = TRAIN_CHUNKS[opt_code, draw or "fresh"]
    run_length = v.check_positive_int(RUN_LENGTH if run_length is None else run_length,
                                      "run_length")
    if popularity and (alias is None or len(alias[0]) != item_factors.shape[0]):
        # The kernel reads the table without bounds checks.
        raise ValueError(f"the popularity policy needs an alias table of {item_factors.shape[0]} "
                         f"items; got {None if alias is None else len(alias[0])}.")
    if alias is None:
        alias = (np.zeros(0, np.float64), np.zeros(0, np.int64))
    if user_candidates is None:
        user_candidates = np.zeros(0, np.int64)
    elif (user_candidates.dtype != np.int64 or user_candidates.shape != (indptr.size - 1,)
          or user_candidates.min(initial=1) < 1):
        # The kernel reads them without bounds checks and sizes nothing by them.
        raise ValueError(f"user_candidates must be int64 counts >= 1, one per user "
                         f"({indptr.size - 1}); got {user_candidates.dtype} of shape "
                         f"{user_candidates.shape}.")
    most_candidates = max(n_candidates, int(user_candidates.max(initial=0)))
    shape = user_order.shape[:-1] + states.shape  # (n_chunks,) or (n, n_chunks)
    user_order, chunk_bounds = np.atleast_2d(user_order), np.atleast_2d(chunk_bounds)
    n_epochs, n_chunks = chunk_bounds.shape[0], states.shape[0]
    if out is None:
        out = (np.zeros(shape, np.float64),) + tuple(np.zeros(shape, np.int64) for _ in range(3))
    kernel_out = tuple(total.reshape(n_epochs, n_chunks) for total in out)  # views
    first, end = (0, n_chunks) if chunks is None else chunks
    n_items, n_cols = item_factors.shape
    # Every epoch orders the same users: the longest row of all sizes the scratch.
    max_row = int(np.diff(indptr)[user_order[0]].max(initial=0))
    users = user_order[0, chunk_bounds[0, first]:chunk_bounds[0, end]]
    n_samples = int((indptr[users + 1] - indptr[users]).sum())
    flags = (bool(update_mask & UPDATE_USER), bool(update_mask & UPDATE_POSITIVE),
             bool(update_mask & UPDATE_NEGATIVE), weights.shape[0] > 0)

    def call(a, b):
        # Scratch of this range's thread (the kernel allocates nothing).
        scratch = (np.empty(n_cols, np.float32), np.empty(n_cols, np.float32),
                   np.empty(n_cols, np.float32), np.empty((3, n_cols), np.float32),
                   np.empty(max_row, np.int64),
                   np.zeros((n_items + 63) // 64 if neg_code != NEG_UNIFORM else 0, np.uint64),
                   np.empty(pool_size, np.int64), np.empty(pool_size, np.float32),
                   np.empty(most_candidates, np.int64), np.empty(most_candidates, np.int64))
        kernel(indptr, indices, weights, user_order, chunk_bounds, first + a, first + b, *alias,
               user_factors, item_factors, user_sum_sq, item_sum_sq, user_adam_m, user_adam_v,
               user_adam_t, item_adam_m, item_adam_v, item_adam_t, states, adam_alpha,
               loss_code, neg_code, n_user_cols, n_candidates, user_candidates, run_length,
               *flags, *scratch,
               lr, reg, beta_1, beta_2, epsilon, *kernel_out)

    # A small epoch is one range per thread: each kernel call costs ~40 us of
    # Python under the GIL (MovieLens 100k: 8 calls were ~15% of an epoch on 2
    # threads). A large one is cut finer, so a slowed thread takes fewer.
    # Stacked epochs are one range per thread: a range trains its chunks in
    # every epoch, and finer ranges would train some chunks' users several
    # epochs before others'.
    pieces = 1 if n_epochs > 1 else max(1, min(4, n_samples // SAMPLES_PER_PIECE))
    parallel_ranges(call, end - first, num_threads, pieces_per_thread=pieces)
    return out


@contextlib.contextmanager
def sigint_held():
    """Hold a Ctrl-C (SIGINT) that arrives in the block, and deliver it when the block ends.

    For copies that must not stop half done. Python raises KeyboardInterrupt
    between any two bytecodes, so no try/except can guarantee that a loop
    over several arrays finishes; a handler that only notes the signal can.
    After the block the previous handler is restored and the held signal is
    raised again, so it is handled as it would have been (KeyboardInterrupt
    by default). Only the main thread receives signals: elsewhere this does
    nothing, nor where the handler was not set from Python (embedded
    interpreters), which could not be put back.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is None):
        yield
        return
    held = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            signal.raise_signal(signal.SIGINT)


class ItemLayout:
    """The item rows laid out in one epoch's shuffled order (candidates in runs).

    On creation, ``item_factors`` and the item side's optimiser state (rows
    of ``state``) are copied so that row ``r`` holds item ``order[r]``, and
    ``indices`` (the positives' item ids) are renumbered to match; the kernel
    then finds runs of items in consecutive rows. :meth:`write_back` puts
    every row back to its item. It costs, per epoch, a copy of the item
    factors and of the item state (about 20 ms for Gowalla's 41k items), and
    while the epoch runs the memory of those copies and 4 bytes per positive.

    Attributes
    ----------
    indices : ndarray of int32, shape (nnz,)
    item_factors : ndarray of float32, shape (n_items, f)
    state : SideState
    """

    def __init__(self, order, indices, item_factors, state):
        n_items = order.size
        arrays = state.arrays()  # the non-empty ones: each has a row per item
        if item_factors.shape[0] != n_items or any(a.shape[0] != n_items
                                                   for a in arrays.values()):
            raise ValueError(f"the item layout needs {n_items} rows in the item factors and "
                             f"every item state array; got {item_factors.shape[0]} and "
                             f"{[a.shape[0] for a in arrays.values()]}.")
        self._order = order
        self._targets = [item_factors, *arrays.values()]
        position = np.empty(n_items, np.int32)
        position[order] = np.arange(n_items, dtype=np.int32)
        self.indices = np.take(position, indices)
        copies = {name: np.take(a, order, axis=0) for name, a in arrays.items()}
        self.state = dataclasses.replace(state, **copies)
        self.item_factors = np.take(item_factors, order, axis=0)
        self._copies = [self.item_factors, *copies.values()]

    def write_back(self):
        """Put every row (factors and state) back to its item; a Ctrl-C waits until done."""
        with sigint_held():
            for target, copy in zip(self._targets, self._copies):
                target[self._order] = copy


class Interrupt:
    """Ctrl-C during a run: the first finishes the epoch, a second stops at once.

    A compiled kernel cannot be interrupted: Ctrl-C arrives when a kernel call
    returns, so epochs are sliced into calls. Finishing the epoch keeps the
    factors of a completed epoch without a copy of them. Several small
    epochs trained in one call are all finished when a Ctrl-C arrives.
    """

    def __init__(self):
        self.requested = False

    def run(self, calls, epoch, n=1):
        """Run the kernel calls (callables) of epochs ``epoch`` to ``epoch + n - 1``."""
        for call in calls:
            try:
                call()
            except KeyboardInterrupt:
                if self.requested:
                    warnings.warn(
                        f"training stopped during epoch {epoch}: the factors are those of a "
                        f"partly trained epoch (n_epochs_done_ = {epoch - 1}).",
                        RuntimeWarning, stacklevel=5)
                    raise
                self.requested = True
                warnings.warn(
                    f"Ctrl-C: finishing epoch {epoch} first; press Ctrl-C again to stop at once."
                    if n == 1 else
                    f"Ctrl-C: epochs {epoch} to {epoch + n - 1} were trained in one kernel call; "
                    "training stops after them.", RuntimeWarning, stacklevel=5)


def _diverged(what, epoch, n_refused, recipe, keeps):
    return v.TrainingDivergedError(
        f"{what} diverged at epoch {epoch}: {int(n_refused)} samples had a non-finite score "
        f"or loss or a step that would have made factors non-finite; lower learning_rate "
        f"({recipe.learning_rate}) or raise regularization. {keeps}"
    )


class HogwildTrainer:
    """The fast mode: per-sample updates in parallel without locks, lazy optimiser state."""

    supports_fold_in = True

    def __init__(self, recipe, has_bias_column):
        self.recipe = recipe
        self.has_bias_column = has_bias_column
        self._warned_skipped = False
        self._popularity = None
        self._counts = None

    @staticmethod
    def check(recipe):
        """Refuse what the per-sample kernel does not have."""
        if recipe.similarity != "dot":
            raise ValueError(
                f"similarity={recipe.similarity!r} is available with the listwise losses "
                f"({', '.join(repr(k) for k in LISTWISE_LOSSES)}); loss={recipe.loss!r} "
                "scores with dot products: use similarity='auto' or 'dot'."
            )
        if recipe.candidate_sampling == "window" and (recipe.negatives == "popularity"
                                                      or recipe.negative_pool):
            raise ValueError(
                "candidate_sampling='window' takes runs of consecutive items in a shuffled "
                f"order, uniform or unseen; got negatives={recipe.negatives!r} and "
                f"negative_pool={recipe.negative_pool}, expected 'uniform' or 'unseen' and 0 "
                "(or candidate_sampling='independent')."
            )

    def epochs(self, X, weights, user_factors, item_factors, state, streams, interrupt, epoch,
               n=1, update_mask=UPDATE_ALL):
        """``n`` epochs of the kernel over the rows of ``X``; returns their totals.

        ``user_factors``/``item_factors`` and ``state`` may be the model's own
        or stand-ins (fold-in); ``update_mask`` says which rows move. Several
        epochs are planned first, drawing from the streams in the order the
        epochs one by one would, and trained in one kernel call per thread
        (``train_epoch_chunks``); an epoch too large for one call is cut into
        calls (``call_slices``), between which a Ctrl-C can land.

        Returns
        -------
        ndarray of float64, shape (n, 4)
            Per epoch: loss sum, samples trained, skipped (no negative),
            refused (divergence).
        """
        r = self.recipe
        chunk_states = streams[1]
        plans = [self._plan(X, streams) for _ in range(n)]
        row_lengths = np.diff(X.indptr)
        user_order = np.stack([order for order, _ in plans])
        chunk_bounds = np.stack([bounds for _, bounds in plans])
        n_user_cols = user_factors.shape[1] - (1 if self.has_bias_column else 0)
        f32 = np.float32
        # Per-chunk totals, written by the kernel itself: a Ctrl-C raised as a
        # call returns cannot lose them.
        shape = (n, chunk_states.shape[0])
        per_chunk = (np.zeros(shape, np.float64),) + tuple(np.zeros(shape, np.int64)
                                                           for _ in range(3))
        alias = self._table(X)[:2]
        # Runs of candidates only in full training: fold-in keeps the item rows
        # where they are and draws its candidates independently.
        n_candidates = r.candidates_for(X.shape[1], X.nnz)
        window = update_mask == UPDATE_ALL and r.runs_for(n_candidates)
        # Counts by user activity in full training only: fold-in trains a few
        # users or items on their own, every positive with n_candidates.
        user_candidates = (self._candidate_counts(X, n_candidates)
                           if update_mask == UPDATE_ALL else None)
        if window:
            if n != 1:
                raise ValueError("candidates in runs train one epoch per call.")
            layout = ItemLayout(streams[0].permutation(item_factors.shape[0]), X.indices,
                                item_factors, state.item)
            indices, items, u, i = layout.indices, layout.item_factors, state.user, layout.state
        else:
            indices, items, u, i = X.indices, item_factors, state.user, state.item

        def call(first, end):
            train_epoch_chunks(
                X.indptr, indices, weights, user_order, chunk_bounds,
                user_factors, items, u.adagrad_sum_sq, i.adagrad_sum_sq,
                u.adam_m, u.adam_v, u.adam_t, i.adam_m, i.adam_v, i.adam_t,
                chunk_states, LAZY_ADAM_ALPHA,
                LOSSES[r.loss], OPTIMIZERS[r.optimizer], NEGATIVES[r.negatives],
                n_user_cols, n_candidates, update_mask,
                f32(r.learning_rate),
                f32(r.regularization), f32(LAZY_BETA_1), f32(LAZY_BETA_2),
                f32(LAZY_EPSILON), r.num_threads, r.negative_pool, per_chunk, alias,
                chunks=(first, end), window=window, user_candidates=user_candidates)

        slices = (call_slices(chunk_bounds[0], row_lengths, user_order[0]) if n == 1
                  else [(0, shape[1])])
        try:
            interrupt.run((lambda a=a, b=b: call(a, b) for a, b in slices), epoch, n)
        finally:
            if window:
                # Also after an error or a second Ctrl-C; a first Ctrl-C while
                # the rows go back lets the epoch finish, as during a call.
                interrupt.run([layout.write_back], epoch, n)
        return np.stack([total.sum(axis=1, dtype=np.float64) for total in per_chunk], axis=1)

    def epochs_per_call(self, X, update_mask=UPDATE_ALL):
        """How many epochs of ``X`` one kernel call may train (at most ``MAX_STACKED``).

        Only small epochs are stacked, those of at most ``SAMPLES_PER_PIECE``
        samples' worth of work (a candidate scored, a pool entry drawn), and
        only as many as ``SAMPLES_PER_CALL`` allows (Ctrl-C lands between
        calls); a larger epoch is one call, cut into pieces that a slowed
        thread takes fewer of. MovieLens 100k with implicit's settings: 40
        epochs per call (an epoch takes about 5 ms, of which the hand-off to
        the threads was 1 ms); the defaults on it: 13; Gowalla: 1. Training
        with candidates in runs (``Recipe.runs_for``; ``update_mask`` of all rows): 1.
        """
        r = self.recipe
        n_candidates = r.candidates_for(X.shape[1], X.nnz)
        if update_mask == UPDATE_ALL and r.runs_for(n_candidates):
            return 1  # each epoch lays the item rows out in its own order first
        work = (X.nnz * n_candidates
                + int(np.count_nonzero(np.diff(X.indptr))) * r.negative_pool)
        if work > SAMPLES_PER_PIECE:
            return 1
        return int(min(MAX_STACKED, max(1, SAMPLES_PER_CALL // max(work, 1))))

    def _candidate_counts(self, X, n_candidates):
        """``Recipe.candidate_counts`` of ``X``'s rows, worked out once per matrix."""
        if self._counts is None or self._counts[0] is not X or self._counts[1] != n_candidates:
            counts = self.recipe.candidate_counts(np.diff(X.indptr), n_candidates)
            self._counts = (X, n_candidates, counts)
        return self._counts[2]

    def _table(self, X):
        """The popularity alias table of ``X``: ``(prob, alias, log_q)``, made once per matrix."""
        if self.recipe.negatives != "popularity":
            empty = np.zeros(0, np.float64)
            return empty, np.zeros(0, np.int64), np.zeros(0, np.float32)
        if self._popularity is None or self._popularity[0] is not X:
            self._popularity = (X, popularity_table(X, self.recipe.popularity_exponent))
        return self._popularity[1]

    def _plan(self, X, streams):
        """An epoch's order: ``(user_order, chunk_bounds)`` (``plan_epoch``)."""
        row_lengths = np.diff(X.indptr)
        trainable = np.flatnonzero(row_lengths).astype(np.int64)
        return plan_epoch(row_lengths, trainable, streams[0], streams[1].shape[0])

    def record(self, totals, epoch, what="training", keeps=None):
        """The epoch's history record from the kernel totals; raises on divergence."""
        loss_sum, n_trained, n_skipped, n_refused = totals
        if n_refused:
            raise _diverged(what, epoch, n_refused, self.recipe, keeps or (
                "Those steps were not applied: the model keeps its last finite factors "
                f"(n_epochs_done_ = {epoch - 1})."))
        n_trained, n_skipped = int(n_trained), int(n_skipped)
        if n_trained == 0:
            raise ValueError(
                "no training sample has a negative: every user with positives has every item; "
                "use negatives='uniform' or add items."
            )
        if n_skipped and not self._warned_skipped:
            warnings.warn(
                f"{n_skipped} samples were skipped in this epoch: their users have every item, "
                f"so negatives={self.recipe.negatives!r} finds no negative for them.",
                RuntimeWarning, stacklevel=6)
            self._warned_skipped = True
        return {"loss": loss_sum / n_trained, "skipped": n_skipped}

    def train_epochs(self, model, X, weights, interrupt, epoch, n=1):
        """``n`` epochs on the model's own factors; returns their history records.

        An iterator: reading the record of an epoch that diverged raises
        (``record``).
        """
        totals = self.epochs(X, weights, model._user_factors, model._item_factors,
                             model._opt_state, model._streams, interrupt, epoch, n)
        # Lazy: the epochs before a diverged one are recorded before it raises.
        return (self.record(row, epoch + e) for e, row in enumerate(totals))


def popularity_table(X, exponent):
    """Alias table and log-Q correction of popularity negatives for the CSR ``X``.

    Item ``j`` is drawn with probability ``q_j`` proportional to
    ``max(count_j, 1) ** exponent`` (``count_j``: its positives in ``X``).

    Returns
    -------
    prob : ndarray of float64, shape (n_items,)
    alias : ndarray of int64, shape (n_items,)
    log_q : ndarray of float32, shape (n_items,)
        ``log(n_items * q_j)``: 0 for every item of a uniform distribution.
    """
    counts = np.bincount(X.indices, minlength=X.shape[1]).astype(np.float64)
    # In logs: count ** exponent overflows float64 for large exponents.
    log_w = exponent * np.log(np.maximum(counts, 1.0))
    weights = np.exp(log_w - log_w.max())
    log_q = log_w - log_w.max() - np.log(weights.sum())
    prob, alias = alias_table(weights)
    return prob, alias, (log_q + np.log(X.shape[1])).astype(np.float32)


def normalise_rows(factors, n_cols):
    """Scale the rows' first ``n_cols`` columns to unit L2 norm, in place (zero rows kept)."""
    block = factors[:, :n_cols]
    norms = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
    norms[norms == 0.0] = 1.0
    block /= norms[:, None].astype(np.float32)


class ListwiseTrainer(HogwildTrainer):
    """Many negatives per positive ("softmax", "ccl", "warp"): one step per user, shared negatives.

    Each user draws ``n_negatives`` negatives once per epoch, scores them once,
    and scores each of its positives against them; the gradients of the user
    row and of the negatives are summed over the user's positives and applied
    once per user (``_kernels/listwise.py``). Parallel like the per-sample
    mode: disjoint ranges of chunks on the thread pool, Hogwild on item rows.
    """

    supports_fold_in = True

    @staticmethod
    def check(recipe):
        """Refuse what the listwise kernel does not have, or what makes no sense."""
        if recipe.loss == "ccl" and recipe.similarity != "cosine":
            raise ValueError(
                f"loss='ccl' is the cosine contrastive loss; got similarity="
                f"{recipe.similarity!r}, expected 'cosine' or 'auto'."
            )
        if recipe.similarity == "cosine" and recipe.item_bias:
            raise ValueError(
                f"similarity='cosine' (loss={recipe.loss!r}) keeps the factor rows at unit "
                "norm and has no item bias; set item_bias=False."
            )
        if (recipe.negative_candidates not in (None, 1, 3, "auto") or recipe.negative_pool
                or recipe.candidate_sampling == "window" or recipe.candidate_exponent):
            raise ValueError(
                f"loss={recipe.loss!r} draws n_negatives ({recipe.n_negatives}) negatives per "
                f"user instead of candidates; got negative_candidates="
                f"{recipe.negative_candidates!r}, negative_pool={recipe.negative_pool}, "
                f"candidate_sampling={recipe.candidate_sampling!r} and candidate_exponent="
                f"{recipe.candidate_exponent}, expected the defaults (None, 0, 'auto' or "
                "'independent', and 0)."
            )

    def epochs(self, X, weights, user_factors, item_factors, state, streams, interrupt, epoch,
               n=1, update_mask=UPDATE_ALL):
        """One epoch (``n`` must be 1) of the listwise kernel over the rows of ``X``; its totals.

        Returns
        -------
        ndarray of float64, shape (1, 4)
            Loss sum, positives trained, skipped (no negative), refused
            (divergence: counted per user step).
        """
        if n != 1:
            raise ValueError(f"the listwise kernel trains one epoch per call; got n={n}.")
        r = self.recipe
        chunk_states = streams[1]
        user_order, chunk_bounds = self._plan(X, streams)
        row_lengths = np.diff(X.indptr)  # for the scratch and call_slices
        n_user_cols = user_factors.shape[1] - (1 if self.has_bias_column else 0)
        n_items, n_cols = item_factors.shape
        cosine = r.similarity == "cosine"
        flags = (bool(update_mask & UPDATE_USER), bool(update_mask & UPDATE_POSITIVE),
                 bool(update_mask & UPDATE_NEGATIVE))
        if cosine:
            # The kernel keeps the rows it moves at unit norm; start them there.
            if flags[0]:
                normalise_rows(user_factors, n_user_cols)
            if flags[1] or flags[2]:
                normalise_rows(item_factors, n_cols)
        prob, alias, log_q = self._table(X)
        kernel = TRAIN_USERS[(LISTWISE_LOSSES[r.loss], OPTIMIZERS[r.optimizer])]
        n_chunks = chunk_states.shape[0]
        per_chunk = (np.zeros(n_chunks, np.float64), np.zeros(n_chunks, np.int64),
                     np.zeros(n_chunks, np.int64), np.zeros(n_chunks, np.int64))
        u, i = state.user, state.item
        f32, f64 = np.float32, np.float64
        n_neg = r.n_negatives
        max_row = int(row_lengths.max(initial=0))

        def run(first, end):
            # Scratch of this range's thread (the kernel allocates nothing).
            kernel(X.indptr, X.indices, weights, user_order, chunk_bounds, first, end,
                   prob, alias, log_q, user_factors, item_factors,
                   u.adagrad_sum_sq, i.adagrad_sum_sq, u.adam_m, u.adam_v, u.adam_t,
                   i.adam_m, i.adam_v, i.adam_t, LAZY_ADAM_ALPHA, chunk_states,
                   NEGATIVES[r.negatives], n_user_cols, n_neg, cosine, *flags,
                   weights.shape[0] > 0,
                   np.empty(n_cols, np.float32), np.empty(n_cols, np.float32),
                   np.empty((3, n_cols), np.float32),
                   np.zeros((n_items + 63) // 64, np.uint64),
                   np.empty(n_neg, np.int64), np.empty(n_neg, np.float32),
                   np.empty(n_neg, np.float64), np.empty(n_neg, np.float64),
                   np.empty(max_row, np.float64), np.empty(max_row, np.float32),
                   f32(r.learning_rate), f32(r.regularization), f32(LAZY_BETA_1),
                   f32(LAZY_BETA_2), f32(LAZY_EPSILON), f64(1.0 / r.temperature),
                   f64(r.margin), f64(r.negative_weight), *per_chunk)

        def call(first, end):
            parallel_ranges(lambda a, b: run(first + a, first + b), end - first,
                            r.num_threads)

        slices = call_slices(chunk_bounds, row_lengths, user_order)
        interrupt.run((lambda a=a, b=b: call(a, b) for a, b in slices), epoch)
        return np.array([[float(total.sum()) for total in per_chunk]])

    def epochs_per_call(self, X, update_mask=UPDATE_ALL):
        """1: a listwise epoch scores many negatives per user, its calls are long already."""
        return 1


class DenseAdamTrainer:
    """The Keras-compatible mode: exact mini-batches, Keras's dense Adam on every row."""

    supports_fold_in = False

    def __init__(self, recipe, has_bias_column):
        self.recipe = recipe

    @staticmethod
    def check(recipe):
        """Refuse what the Keras model does not have."""
        if recipe.loss not in LOSSES:
            raise ValueError(
                f"loss={recipe.loss!r} is not available with optimizer='dense-adam' (the Keras "
                f"model trains one negative per positive); use loss 'sigmoid' or 'bpr', or "
                "another optimizer ('adagrad', 'rowwise-adagrad', 'sgd', 'adam')."
            )
        if recipe.similarity != "dot":
            raise ValueError(
                f"similarity={recipe.similarity!r} is not available with optimizer='dense-adam' "
                "(the Keras model scores by plain dot products); set similarity='auto' or 'dot'."
            )
        if recipe.use_weights:
            raise ValueError(
                "use_weights=True is not available with optimizer='dense-adam' (the Keras "
                "model weighs every sample alike); set use_weights=False."
            )
        if recipe.item_bias:
            raise ValueError(
                "item_bias=True is not available with optimizer='dense-adam' (the Keras "
                "model has no bias); set item_bias=False."
            )
        if (recipe.negatives != "uniform" or recipe.negative_candidates != 1
                or recipe.negative_pool or recipe.candidate_sampling == "window"
                or recipe.candidate_exponent):
            raise ValueError(
                "optimizer='dense-adam' draws one uniform negative per positive like Keras; "
                f"got negatives={recipe.negatives!r}, negative_candidates="
                f"{recipe.negative_candidates}, negative_pool={recipe.negative_pool}, "
                f"candidate_sampling={recipe.candidate_sampling!r} and candidate_exponent="
                f"{recipe.candidate_exponent}, expected 'uniform', 1, 0, 'auto' or "
                "'independent', and 0."
            )

    def triplets(self, model, users, positives, negatives, interrupt, epoch):
        """Train on these triplets in this order; returns the loss sum.

        Dense Adam moves every row at every step, so a copy of the factors is
        kept to fall back on if a step overflows (the model is small).
        """
        r = self.recipe
        s = model._opt_state
        snapshot = (model._user_factors.copy(), model._item_factors.copy())
        f32 = np.float32
        n = users.size
        batch_starts = np.append(np.arange(0, n, r.batch_size, dtype=np.int64), np.int64(n))
        batches_per_call = max(1, TRIPLETS_PER_CALL // r.batch_size)
        loss_sum = [0.0]

        def call(first):
            bounds = batch_starts[first:first + batches_per_call + 1]
            with threads(r.num_threads):
                loss_sum[0] += dense_adam_batches(
                    users, positives, negatives, bounds, model._user_factors,
                    model._item_factors, s.user.grad, s.item.grad, s.user.adam_m,
                    s.user.adam_v, s.item.adam_m, s.item.adam_v, s.step, LOSSES[r.loss],
                    f32(r.learning_rate), f32(r.regularization), f32(r.beta_1), f32(r.beta_2),
                    f32(r.epsilon))

        interrupt.run((lambda a=a: call(a)
                       for a in range(0, batch_starts.size - 1, batches_per_call)), epoch)
        bad = [name for name, a in (("user", model._user_factors), ("item", model._item_factors))
               if not np.isfinite(a).all()]
        if bad:
            model._user_factors, model._item_factors = snapshot
            model._reset_optimizer_state()
            raise v.TrainingDivergedError(
                f"training diverged at epoch {epoch} (non-finite {' and '.join(bad)} factors); "
                f"lower learning_rate ({r.learning_rate}) or raise regularization. "
                f"The model keeps the factors of epoch {epoch - 1}; its optimiser state is reset."
            )
        return loss_sum[0]

    def epochs_per_call(self, X, update_mask=UPDATE_ALL):
        """1: the mini-batch kernel runs one epoch per call."""
        return 1

    def train_epochs(self, model, X, weights, interrupt, epoch, n=1):
        """One epoch (``n`` must be 1): every positive once with a uniform negative, shuffled."""
        if n != 1:
            raise ValueError(f"the Keras-compatible mode trains one epoch per call; got n={n}.")
        rng = model._streams[0]
        users = np.repeat(np.arange(X.shape[0], dtype=np.int64), np.diff(X.indptr))
        positives = X.indices.astype(np.int64)
        negatives = rng.integers(0, X.shape[1], size=users.size, dtype=np.int64)
        order = rng.permutation(users.size)
        loss_sum = self.triplets(model, users[order], positives[order], negatives[order],
                                 interrupt, epoch)
        return [{"loss": loss_sum / users.size, "skipped": 0}]


def trainer_for(recipe, has_bias_column=False):
    """The trainer of the recipe's mode (chosen here, once)."""
    if recipe.keras_mode:
        cls = DenseAdamTrainer
    elif recipe.loss in LISTWISE_LOSSES:
        cls = ListwiseTrainer
    else:
        cls = HogwildTrainer
    return cls(recipe, has_bias_column)


# --------------------------------------------------------------- epoch loop
class Validation:
    """Held-out positives scored after every epoch, checked once at the start.

    The training positives are removed from the candidates, except for
    ``"full_auc"`` (the notebook's metric, where they count as negatives).
    """

    def __init__(self, validation, X, metric):
        val = v.check_interactions(validation, "validation", allow_empty=True)
        if val.shape != X.shape:
            raise ValueError(
                f"validation has shape {val.shape}, but interactions have shape {X.shape}; "
                "expected the same users and items."
            )
        self.metric = metric
        _, self.codes, self.ks = metric_codes(metric)
        self.test = val
        self.train = None if metric == "full_auc" else X
        if self.train is not None:
            v.check_disjoint(val, X)

    def score(self, user_factors, item_factors, num_threads):
        """The metric of these factors (higher is better)."""
        n_users = user_factors.shape[0]
        train_indptr, train_indices = ((np.zeros(n_users + 1, np.int64), np.zeros(0, np.int32))
                                       if self.train is None else
                                       (self.train.indptr, self.train.indices))
        values = evaluate_factors(user_factors, item_factors, self.test.indptr,
                                  self.test.indices, train_indptr, train_indices,
                                  self.codes, self.ks, num_threads=num_threads)
        return mean_over_users(values[:, 0], self.metric, self.test, self.train is not None)


@dataclass
class LoopOptions:
    """What the epoch loop does besides training: checked once, at the entry point."""

    validation: Validation | None = None
    patience: int | None = None
    callbacks: tuple = ()
    show_progress: bool = False

    @classmethod
    def check(cls, X, validation, metric, patience, callbacks, show_progress):
        opts = cls(show_progress=bool(show_progress))
        if validation is not None:
            opts.validation = Validation(validation, X, metric)
            if patience is not None:
                opts.patience = v.check_positive_int(patience, "patience")
        if callbacks is not None:
            if callable(callbacks):
                callbacks = [callbacks]
            for cb in callbacks:
                if not callable(cb):
                    raise TypeError(f"callbacks must be callables; got {cb!r}.")
            opts.callbacks = tuple(callbacks)
        return opts


def run_epochs(model, epochs, train_epochs, options=None, num_threads=0, desc="BPR",
               epochs_per_call=1):
    """THE epoch loop: train ``epochs`` epochs of ``model`` with ``train_epochs``.

    ``train_epochs(interrupt, epoch, n)`` trains ``n`` epochs from ``epoch``
    on and returns their records (``loss``, ``skipped``), an iterable read in
    order that raises at an epoch that diverged. ``n`` is 1 when something
    looks between epochs (validation, callbacks), else up to
    ``epochs_per_call`` (the trainer's: several small epochs in one kernel
    call); each record gets an equal share of the call's seconds. After every
    epoch the loop scores the validation metric, appends the record to
    ``model.history_``, advances ``model.n_epochs_done_``, calls the callbacks
    (``callback(epoch, record)``; False stops), applies patience, and after
    every call honours a Ctrl-C that asked to finish the epoch(s) under way.
    With validation and patience the factors of the best epoch are restored
    at the end (a copy of the factors is kept for that); ``model.best_epoch_``
    names the best epoch.

    ``model`` needs ``history_``, ``n_epochs_done_`` and the factor attributes
    ``_user_factors``/``_item_factors`` (fold-in passes a stand-in).
    """
    options = options or LoopOptions()
    best = None
    waited = 0
    watched = options.validation is not None or bool(options.callbacks)
    bar = tqdm(total=epochs, desc=desc, unit="epoch",
               disable=None if options.show_progress else True, leave=False)
    try:
        stop = False
        remaining = epochs
        while remaining and not stop:
            n = 1 if watched else min(remaining, max(1, int(epochs_per_call)))
            remaining -= n
            start = time.perf_counter()
            interrupt = Interrupt()
            records = train_epochs(interrupt, model.n_epochs_done_ + 1, n)
            seconds = (time.perf_counter() - start) / n
            for record in records:
                epoch = model.n_epochs_done_ + 1
                record = {"epoch": epoch, **record, "seconds": seconds}
                model.n_epochs_done_ = epoch
                val = options.validation
                if val is not None:
                    record[val.metric] = val.score(model._user_factors, model._item_factors,
                                                   num_threads)
                model.history_.append(record)
                bar.update(1)
                if not bar.disable:
                    bar.set_postfix({k: round(x, 4) for k, x in record.items()
                                     if k not in ("epoch", "skipped", "seconds")})
                for cb in options.callbacks:
                    if cb(epoch, record) is False:
                        stop = True
                if val is not None:
                    score = record[val.metric]
                    if best is None or score > best[0]:
                        best = (score, epoch, model._user_factors.copy(),
                                model._item_factors.copy())
                        waited = 0
                    else:
                        waited += 1
                        if options.patience is not None and waited >= options.patience:
                            stop = True
            if interrupt.requested:
                warnings.warn(
                    f"training interrupted: epoch {model.n_epochs_done_} was finished first, so "
                    f"the model keeps the factors of a completed epoch (n_epochs_done_ = "
                    f"{model.n_epochs_done_}).", RuntimeWarning, stacklevel=4)
                raise KeyboardInterrupt
    finally:
        bar.close()
    if best is not None:
        model.best_epoch_ = best[1]
        if options.patience is not None and best[1] != model.n_epochs_done_:
            model._user_factors, model._item_factors = best[2], best[3]
    return model
