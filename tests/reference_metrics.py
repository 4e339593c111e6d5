"""Slow, obviously-correct NumPy twins of the evaluation and top-N kernels.

One Python loop per user; rankings by ``np.lexsort`` (score descending, item
id ascending); AUC by ``scipy.stats.rankdata`` (average ranks: a tied
positive/negative pair counts one half, as scikit-learn's ``roc_auc_score``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata


def _rows(X, n_users, n_items):
    """Item ids of each row of ``X`` (stored non-zeros), via a dense copy."""
    if X is None:
        return [np.zeros(0, np.int64) for _ in range(n_users)]
    dense = np.asarray(sp.csr_matrix(X).toarray()) != 0
    assert dense.shape == (n_users, n_items)
    return [np.flatnonzero(dense[u]) for u in range(n_users)]


def ranking(scores_row, items):
    """``items`` ordered by score descending, ties by item id ascending."""
    items = np.asarray(items, np.int64)
    return items[np.lexsort((items, -scores_row[items].astype(np.float64)))]


def auc_rank(pos_scores, neg_scores):
    """Mann-Whitney AUC with ties counted one half (sklearn semantics)."""
    pos_scores = np.asarray(pos_scores, np.float64)
    neg_scores = np.asarray(neg_scores, np.float64)
    n_pos, n_neg = len(pos_scores), len(neg_scores)
    ranks = rankdata(np.concatenate([pos_scores, neg_scores]))
    return (ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def user_metrics(scores_row, test_items, train_items, k):
    """All metrics of one user as a dict (NaN where the user is excluded)."""
    n_items = scores_row.shape[0]
    all_items = np.arange(n_items)
    out = {}
    # full_auc: positives = test, negatives = everything else (train included).
    neg_full = np.setdiff1d(all_items, test_items)
    if len(test_items) and len(neg_full):
        out["full_auc"] = auc_rank(scores_row[test_items], scores_row[neg_full])
    else:
        out["full_auc"] = np.nan
    candidates = np.setdiff1d(all_items, train_items)
    positives = np.setdiff1d(test_items, train_items)
    negatives = np.setdiff1d(candidates, positives)
    names = ("auc", "precision", "recall", "ndcg", "map", "mrr")
    if len(positives) == 0 or len(negatives) == 0:
        out.update({name: np.nan for name in names})
        return out
    out["auc"] = auc_rank(scores_row[positives], scores_row[negatives])
    order = ranking(scores_row, candidates)
    is_hit = np.isin(order, positives)
    hit_ranks = np.flatnonzero(is_hit) + 1  # 1-based ranks of all positives
    top = is_hit[:k]
    hits = top.sum()
    n_pos = len(positives)
    out["precision"] = hits / k
    out["recall"] = hits / n_pos
    dcg = sum(1.0 / np.log2(r + 1.0) for r in hit_ranks if r <= k)
    idcg = sum(1.0 / np.log2(i + 1.0) for i in range(1, min(k, n_pos) + 1))
    out["ndcg"] = dcg / idcg
    precisions = [top[:r].sum() / r for r in range(1, len(top) + 1) if top[r - 1]]
    out["map"] = sum(precisions) / min(k, n_pos)
    out["mrr"] = 1.0 / hit_ranks[0]
    return out


def metrics_from_scores(scores, test, train=None, k=10):
    """Per-user metrics of a dense score matrix.

    Parameters
    ----------
    scores : ndarray, shape (n_users, n_items)
    test, train : scipy.sparse matrices of the same shape (train optional)
    k : int

    Returns
    -------
    dict name -> ndarray of float64, shape (n_users,), NaN for excluded users.
    Names: full_auc, auc, precision, recall, ndcg, map, mrr (at k).
    """
    n_users, n_items = scores.shape
    test_rows = _rows(test, n_users, n_items)
    train_rows = _rows(train, n_users, n_items)
    rows = [user_metrics(scores[u], test_rows[u], train_rows[u], k) for u in range(n_users)]
    return {name: np.array([row[name] for row in rows], np.float64) for name in rows[0]}


def topk_reference(scores, N, exclude_rows, filter_items=(), candidates=None):
    """Top-N of each score row by lexsort; padded with (-1, -inf).

    Parameters
    ----------
    scores : ndarray of float32, shape (n, n_items)
    N : int
    exclude_rows : list of arrays of item ids, one per row
    filter_items : array of item ids excluded for every row
    candidates : array of item ids, or None for all items
    """
    n, n_items = scores.shape
    ids = np.full((n, N), -1, np.int64)
    out = np.full((n, N), -np.inf, np.float32)
    pool = np.arange(n_items) if candidates is None else np.unique(candidates)
    pool = np.setdiff1d(pool, filter_items)
    for r in range(n):
        eligible = np.setdiff1d(pool, exclude_rows[r])
        order = ranking(scores[r], eligible)[:N]
        ids[r, :len(order)] = order
        out[r, :len(order)] = scores[r, order]
    return ids, out
