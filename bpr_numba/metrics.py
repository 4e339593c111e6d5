"""Ranking metrics of factor models, computed in one parallel pass over the users.

Every function takes a *model*: any object with ``user_factors`` (shape
``(n_users, f)``) and ``item_factors`` (``(n_items, f)``) attributes, or a
``(user_factors, item_factors)`` pair. Scores are
``user_factors @ item_factors.T`` in float32.

Definitions (per user, then averaged over the users that take part):

``full_auc``
    The 2016 Keras notebook's metric: positives are the user's test items,
    negatives every other item of the catalogue, *including the user's train
    positives*. ``train`` is not used.
``auc``
    AUC with the user's train positives removed from the candidates
    (LightFM's ``auc_score``); with ``train=None`` it equals ``full_auc``.
``precision@k``
    hits in the top k / k (LightFM's; a catalogue shorter than k still
    divides by k).
``recall@k``
    hits in the top k / number of test positives.
``ndcg@k``
    binary gains, DCG / ideal DCG over ``min(k, n_test)`` positions.
``map@k``
    sum of precision@r over the hit ranks r <= k, divided by ``min(k, n_test)``.
``mrr``
    1 / rank of the best-ranked test positive in the whole candidate list
    (no cut-off).

When ``train`` is given (all metrics but ``full_auc``), the user's train
positives are removed from the candidates. A (user, item) pair in both
``test`` and ``train`` is a leak of the split: with
``check_intersections=True`` (the default, as LightFM) it raises a
ValueError that counts the pairs; with False such pairs are removed from the
test positives. Ranking is by score descending, ties broken by item id
ascending; AUC counts tied (positive, negative) pairs as one half
(scikit-learn's ``roc_auc_score``).

A user takes part in a metric only when it has at least one test positive
and at least one negative candidate left; otherwise ``reduce=False`` gives
NaN for it. When no user takes part, a ValueError is raised.

``num_threads`` is the number of Numba threads (0 = all); the BLAS product
that computes each chunk's scores uses BLAS's own threads.
"""

from __future__ import annotations


from ._scoring import (KNOWN_METRICS, empty_csr_arrays, evaluate_factors, mean_over_users,
                       metric_codes)
from ._validation import (check_disjoint, check_interactions, check_nonneg_int,
                          check_positive_int, check_same_ids, factor_pair)

__all__ = [
    "evaluate",
    "full_auc",
    "auc_score",
    "precision_at_k",
    "recall_at_k",
    "ndcg_at_k",
    "map_at_k",
    "mrr",
    "parse_metric",
    "KNOWN_METRICS",
]


DEFAULT_METRICS = ("auc", "precision@10", "recall@10", "ndcg@10", "map@10", "mrr")


def evaluate(model, test, train=None, metrics=DEFAULT_METRICS, *, reduce=True, num_threads=0,
             check_intersections=True):
    """Compute several ranking metrics in one pass over the users.

    Parameters
    ----------
    model : object with ``user_factors`` and ``item_factors``, or a pair
        Factor arrays of shape ``(n_users, f)`` and ``(n_items, f)``.
    test : scipy.sparse matrix, shape (n_users, n_items)
        Held-out positives (stored non-zeros); COO, CSR or CSC.
    train : scipy.sparse matrix, shape (n_users, n_items), optional
        Train positives, removed from the candidates and from the test
        positives of every metric except ``full_auc``.
    metrics : str or sequence of str
        Names among ``full_auc``, ``auc``, ``precision@k``, ``recall@k``,
        ``ndcg@k``, ``map@k`` and ``mrr`` (``k`` a positive integer, e.g.
        ``"ndcg@10"``). Different cut-offs may be mixed.
    reduce : bool
        True: the mean over the users that take part. False: one float64
        array of length ``n_users`` per metric, NaN for excluded users.
    num_threads : int
        Threads of the kernels for the call (0 = all cores).
    check_intersections : bool
        Raise when ``test`` and ``train`` share a (user, item) pair.

    Returns
    -------
    dict
        Metric name -> float (``reduce=True``) or ndarray of float64,
        shape (n_users,), in the order given.

    Raises
    ------
    NotFittedError
        The model has no factors yet.
    TypeError
        ``test`` or ``train`` is not a scipy.sparse matrix.
    ValueError
        Unknown metric name, shapes that do not match the model, or no user
        with a test positive and a negative candidate.
    """
    names, codes, ks = metric_codes(metrics)
    num_threads = check_nonneg_int(num_threads, "num_threads")
    user_factors, item_factors = factor_pair(model)
    check_same_ids(test, model, "test")
    check_same_ids(train, model, "train")
    check_same_ids(test, train, "test", "train")
    shape = (user_factors.shape[0], item_factors.shape[0])
    test = _check_matrix(test, "test", shape)
    if train is None:
        train_indptr, train_indices = empty_csr_arrays(shape[0])
    else:
        train = _check_matrix(train, "train", shape)
        train_indptr, train_indices = train.indptr, train.indices
        if check_intersections:
            check_disjoint(test, train)

    values = evaluate_factors(user_factors, item_factors, test.indptr, test.indices,
                              train_indptr, train_indices, codes, ks, num_threads=num_threads)

    result = {}
    for m, name in enumerate(names):
        column = values[:, m]
        result[name] = (mean_over_users(column, name, test, train is not None) if reduce
                        else column.copy())
    return result


def full_auc(model, test, *, reduce=True, num_threads=0):
    """AUC over the whole catalogue, train positives counted as negatives.

    The 2016 Keras notebook's metric: for each user with a test positive,
    every item is scored; positives are the user's test items and negatives
    every other item. Ties count one half.

    Parameters
    ----------
    model : object with ``user_factors`` and ``item_factors``, or a pair
    test : scipy.sparse matrix, shape (n_users, n_items)
    reduce : bool
        Mean over users (True) or per-user float64 array with NaN (False).
    num_threads : int
        Numba threads (0 = all).

    Returns
    -------
    float or ndarray of float64, shape (n_users,)
    """
    return _one(model, test, None, "full_auc", reduce, num_threads, False)


def auc_score(model, test, train=None, k=None, *, reduce=True, num_threads=0,
              check_intersections=True):
    """AUC with the user's train positives removed from the candidates.

    AUC ranks the whole candidate list: ``k`` is accepted so that every metric
    shares one signature, and has no effect. With ``train=None`` it equals
    :func:`full_auc`.

    Parameters
    ----------
    model : object with ``user_factors`` and ``item_factors``, or a pair
    test : scipy.sparse matrix, shape (n_users, n_items)
    train : scipy.sparse matrix, shape (n_users, n_items), optional
    k : ignored
    reduce : bool
        False returns one value per user, NaN for users left out.
    num_threads : int
        Numba threads for the call (0 = all cores).
    check_intersections : bool
        Raise a ValueError when ``test`` and ``train`` share a positive (a
        leaky split); False drops the shared pairs from the test positives.

    Returns
    -------
    float or ndarray of float64, shape (n_users,)
    """
    return _one(model, test, train, "auc", reduce, num_threads, check_intersections)


def precision_at_k(model, test, train=None, k=10, *, reduce=True, num_threads=0,
                   check_intersections=True):
    """Hits among the top ``k`` candidates divided by ``k``.

    Parameters
    ----------
    model : object with ``user_factors`` and ``item_factors``, or a pair
    test : scipy.sparse matrix, shape (n_users, n_items)
    train : scipy.sparse matrix, shape (n_users, n_items), optional
        Train positives removed from the candidates.
    k : int
        Cut-off (>= 1); may exceed the catalogue (the divisor stays ``k``).
    reduce : bool
    num_threads : int
    check_intersections : bool
        See :func:`auc_score`.

    Returns
    -------
    float or ndarray of float64, shape (n_users,)
    """
    return _one(model, test, train, f"precision@{_k(k)}", reduce, num_threads, check_intersections)


def recall_at_k(model, test, train=None, k=10, *, reduce=True, num_threads=0,
                check_intersections=True):
    """Hits among the top ``k`` candidates divided by the number of test positives.

    Parameters are those of :func:`precision_at_k`.
    """
    return _one(model, test, train, f"recall@{_k(k)}", reduce, num_threads, check_intersections)


def ndcg_at_k(model, test, train=None, k=10, *, reduce=True, num_threads=0,
              check_intersections=True):
    """Normalised DCG at ``k`` with binary gains, ``1 / log2(rank + 1)`` per hit.

    The ideal DCG places ``min(k, n_test)`` hits first. Parameters are those
    of :func:`precision_at_k`.
    """
    return _one(model, test, train, f"ndcg@{_k(k)}", reduce, num_threads, check_intersections)


def map_at_k(model, test, train=None, k=10, *, reduce=True, num_threads=0,
             check_intersections=True):
    """Average precision at ``k``: sum of precision@r over hit ranks r <= k, / min(k, n_test).

    Parameters are those of :func:`precision_at_k`.
    """
    return _one(model, test, train, f"map@{_k(k)}", reduce, num_threads, check_intersections)


def mrr(model, test, train=None, k=None, *, reduce=True, num_threads=0,
        check_intersections=True):
    """Reciprocal rank of the best-ranked test positive among all candidates.

    The whole candidate list is ranked (no cut-off), so a user whose first hit
    is at rank 40 counts 1/40; ``k`` has no effect. Parameters are those of
    :func:`auc_score`.
    """
    return _one(model, test, train, "mrr", reduce, num_threads, check_intersections)


def parse_metric(name):
    """Check one metric name; return ``(base, k)``.

    Parameters
    ----------
    name : str
        One of ``full_auc``, ``auc``, ``precision@k``, ``recall@k``,
        ``ndcg@k``, ``map@k``, ``mrr`` (``k`` a positive integer).

    Returns
    -------
    base : str
        The name without ``@k`` (``"ndcg"`` for ``"ndcg@10"``).
    k : int or None
        The cut-off, None for ``full_auc``, ``auc`` and ``mrr``.

    Raises
    ------
    ValueError
        Unknown name; the message lists the known ones.
    """
    _, _, ks = metric_codes((name,))
    base = name.split("@")[0]
    return base, (int(ks[0]) if "@" in name else None)


# ---------------------------------------------------------------- helpers


def _one(model, test, train, name, reduce, num_threads, check_intersections):
    return evaluate(model, test, train, (name,), reduce=reduce, num_threads=num_threads,
                    check_intersections=check_intersections)[name]


def _k(k):
    return check_positive_int(k, "k")


def _check_matrix(X, name, shape):
    X = check_interactions(X, name, allow_empty=True)
    if X.shape != shape:
        raise ValueError(
            f"{name} has shape {X.shape} but the model has shape {shape} "
            "(n_users, n_items); they must be equal."
        )
    return X
