"""Every argument check and every error class of the package (no kernels here).

Every check raises at the public boundary with a message that names the
argument, what was found and what is expected; kernels trust their inputs.
The error classes are exported from the package face (``bpr_numba``).
"""

from __future__ import annotations

import numbers
import os
import sys
import warnings

import numpy as np
import scipy.sparse as sp

from .data import Interactions


class NotFittedError(ValueError, AttributeError):
    """Raised when a method that needs a fitted model is called too early."""


class IdOutOfRangeError(IndexError, ValueError):
    """An id outside ``0..n - 1``: an IndexError that ``except ValueError`` also catches."""


class UnknownIdError(KeyError, ValueError):
    """A raw id the model's id maps do not hold: a KeyError that ``except ValueError`` catches."""

    def __str__(self):  # KeyError would show the message quoted
        return str(self.args[0]) if self.args else ""


class TrainingDivergedError(FloatingPointError, ValueError):
    """Raised when the factors become NaN or infinite during training."""


def check_interactions(X, name="interactions", *, allow_empty=False):
    """Return ``X`` as a clean CSR matrix of positives.

    Parameters
    ----------
    X : scipy.sparse matrix or Interactions, shape (n_users, n_items)
        Stored non-zeros are positives; explicit zeros are dropped and
        duplicates merged (their values summed). An ``Interactions`` gives
        its ``matrix``.
    name : str
        Argument name used in error messages.
    allow_empty : bool
        Accept a matrix without any positive (a test matrix may be empty).

    Returns
    -------
    scipy.sparse.csr_matrix
        Sorted int32 ``indices`` without duplicates and an int64 ``indptr``
        (for the kernels; internal use only); ``data`` keeps the stored
        values (weights when ``use_weights``). A canonical CSR input without
        explicit zeros shares its ``indices`` and ``data``; anything else is
        copied.

    Raises
    ------
    TypeError
        ``X`` is not a scipy.sparse matrix (dense arrays, lists, DataFrames).
    ValueError
        ``X`` is not 2-D, is empty, or holds NaN or infinite values.
    """
    if isinstance(X, Interactions):
        X = X.matrix
    if not sp.issparse(X):
        found = type_name(X)
        raise TypeError(
            f"{name} must be a scipy.sparse matrix of shape (n_users, n_items); "
            f"got {found}. Convert with scipy.sparse.csr_matrix({name}) "
            f"(for a DataFrame of (user, item) pairs, build "
            f"scipy.sparse.coo_matrix((values, (users, items))))."
        )
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_users, n_items); got shape {X.shape}.")
    n_users, n_items = X.shape
    if n_users == 0 or n_items == 0:
        raise ValueError(
            f"{name} is empty: shape {X.shape}; expected at least one user and one item."
        )
    if X.format == "csr" and X.has_canonical_format and X.data.dtype.kind in "biuf":
        # Already clean: share the user's indices (no copy of the positives),
        # after checking values without materialising a copy of the data.
        _check_values(X.data, name)
        if X.nnz and not np.all(X.data != 0):
            X = _clean_copy(X, name)
        else:
            indices = X.indices if X.indices.dtype == np.int32 else X.indices.astype(np.int32)
            X = kernel_csr(X.data, indices, X.indptr, X.shape)
    else:
        X = _clean_copy(X, name)
    if X.nnz == 0 and not allow_empty:
        raise ValueError(
            f"{name} has no positives: all {n_users} users have empty rows; "
            "expected at least one stored non-zero."
        )
    return X


def _check_values(data, name):
    if data.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numeric values; got dtype {data.dtype}.")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        n_bad = int(np.count_nonzero(~np.isfinite(data)))
        raise ValueError(
            f"{name} contains {n_bad} NaN or infinite value(s); "
            "expected finite values (stored non-zeros are positives)."
        )


def _clean_copy(X, name):
    """Copy ``X`` to CSR, merge duplicates, drop explicit zeros, sort indices."""
    X = sp.csr_matrix(X, copy=True)
    _check_values(X.data, name)
    X.sum_duplicates()
    X.eliminate_zeros()
    X.sort_indices()
    return kernel_csr(X.data.astype(np.float32, copy=False), X.indices.astype(np.int32, copy=False),
                X.indptr, X.shape)


def kernel_csr(data, indices, indptr, shape):
    """A CSR sharing ``data`` and ``indices``, with an int64 ``indptr`` for the kernels.

    Internal only: scipy cannot convert a matrix with int32 indices and an
    int64 indptr (e.g. ``tocoo``), so it is never handed back to users. Its
    ``data`` are the stored values (positives are the non-zeros), not ones.
    """
    out = sp.csr_matrix(shape, dtype=np.float32)
    out.data = data
    out.indices = np.ascontiguousarray(indices, dtype=np.int32)
    out.indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    return out


def check_disjoint(test, train):
    """Raise a ValueError when the CSR matrices ``test`` and ``train`` share a positive."""
    n_items = test.shape[1]

    def keys(X):
        rows = np.repeat(np.arange(X.shape[0], dtype=np.int64), np.diff(X.indptr))
        return rows * n_items + X.indices

    n_shared = np.intersect1d(keys(test), keys(train), assume_unique=True).size
    if n_shared:
        raise ValueError(
            f"test and train share {n_shared} (user, item) pair(s) of {test.nnz} test "
            "positives: a split should put each interaction on one side. Fix the split, or "
            "pass check_intersections=False to drop the shared pairs from the test positives."
        )


def check_sample_weight(X, sample_weight, use_weights):
    """float32 weight per positive of the CSR ``X`` (CSR order), or an empty array for none.

    The weights are ``sample_weight``'s values (same pattern as ``X``), or
    ``X``'s stored values; with ``use_weights`` they must be finite and > 0.
    """
    if not use_weights:
        if sample_weight is not None:
            raise ValueError(
                "sample_weight is used only with use_weights=True; set it, or drop "
                "sample_weight."
            )
        return np.zeros(0, np.float32)
    if sample_weight is None:
        weights = np.asarray(X.data, dtype=np.float32)
        where = "the stored values of interactions"
    else:
        W = check_interactions(sample_weight, "sample_weight")
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


def check_trainable(X):
    """Refuse a catalogue too small for a triplet."""
    if X.shape[1] < 2:
        raise ValueError(
            f"interactions has a catalogue of {X.shape[1]} item; a triplet needs a negative item "
            "besides the positive, so at least 2 items are expected."
        )


def check_same_shape(X, name, n_users, n_items):
    """Refuse a matrix whose shape is not the model's ``(n_users, n_items)``."""
    if X.shape != (n_users, n_items):
        raise ValueError(
            f"{name} has shape {X.shape}, but the model has {n_users} users and "
            f"{n_items} items; expected shape {(n_users, n_items)}."
        )


def check_positive_int(value, name):
    """Return ``value`` as int if it is an integer >= 1, else raise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer; got {value!r} ({type_name(value)}).")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer (>= 1); got {value}.")
    return int(value)


def check_nonneg_int(value, name):
    """Return ``value`` as int if it is an integer >= 0, else raise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= 0; got {value!r} ({type_name(value)}).")
    if value < 0:
        raise ValueError(f"{name} must be >= 0; got {value}.")
    return int(value)


def check_float(value, name, *, low=0.0, low_inclusive=True, high=None, high_inclusive=True):
    """Return ``value`` as a finite float within the given bounds, else raise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r} ({type_name(value)}).")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value}.")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        op = ">=" if low_inclusive else ">"
        raise ValueError(f"{name} must be {op} {low}; got {value}.")
    if high is not None and (value > high or (value == high and not high_inclusive)):
        op = "<=" if high_inclusive else "<"
        raise ValueError(f"{name} must be {op} {high}; got {value}.")
    return value


def check_choice(value, name, choices):
    """Return ``value`` if it is one of ``choices``, else raise listing them."""
    if not isinstance(value, str) or value not in choices:
        known = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {known}; got {value!r}.")
    return value


def check_ids(ids, name, upper, what):
    """Return ``ids`` as a 1-D int64 array of ids in ``[0, upper)``.

    Parameters
    ----------
    ids : int or array-like of int
    name : str
        Argument name for messages.
    upper : int
        Number of valid ids.
    what : str
        Plural noun for messages ("users", "items").

    Returns
    -------
    ids : ndarray of int64, shape (n,)
    scalar : bool
        Whether ``ids`` was a scalar.
    """
    scalar = np.ndim(ids) == 0
    arr = np.asarray(ids)
    if arr.ndim > 1:
        raise ValueError(f"{name} must be an int or a 1-D array of ints; got an array of shape {arr.shape}.")
    if arr.dtype.kind == "b" or (arr.dtype.kind not in "iu" and not (arr.size == 0 and arr.dtype.kind == "f")):
        raise TypeError(f"{name} must hold integer ids; got dtype {arr.dtype}.")
    arr = arr.astype(np.int64, copy=False).reshape(-1)
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= upper:
            bad = lo if lo < 0 else hi
            raise IdOutOfRangeError(
                f"{name} contains {bad}, but the model has {upper} {what} "
                f"(valid ids: 0..{upper - 1})."
            )
    return arr, scalar


def as_factor_array(array, name, where=None, *, finite=False):
    """Return ``array`` as a 2-D C-contiguous float32 array (no copy when it already is).

    ``where`` names the owner in messages (e.g. "BPR"); ``finite`` also
    refuses NaN and infinite values.
    """
    label = name if where is None else f"{name} of {where}"
    array = np.asarray(array)
    if array.ndim != 2 or array.dtype.kind not in "fiu":
        raise ValueError(f"{label} must be a 2-D float array; got shape {array.shape} and "
                         f"dtype {array.dtype}.")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if finite and not np.isfinite(array).all():
        raise ValueError(f"{label} contains NaN or infinite values; expected finite factors.")
    return array


def factor_pair(model):
    """Checked float32 ``(user_factors, item_factors)`` of a model or of a pair of arrays.

    Raises
    ------
    NotFittedError
        A model without factors yet.
    TypeError, ValueError
        Anything else than a model or a pair; arrays that are not finite 2-D
        floats, or of different widths.
    """
    if isinstance(model, tuple) and len(model) == 2:
        user_factors, item_factors = model
        where = "the (user_factors, item_factors) pair"
    elif isinstance(model, (tuple, list)):
        raise TypeError(
            f"model must have user_factors and item_factors or be a (user_factors, "
            f"item_factors) tuple; got a {type(model).__name__} of length {len(model)}."
        )
    else:
        user_factors = getattr(model, "user_factors", None)
        item_factors = getattr(model, "item_factors", None)
        where = type(model).__name__
        if user_factors is None or item_factors is None:
            raise NotFittedError(
                f"this {where} is not fitted yet (user_factors or item_factors is missing "
                "or None); call fit() first, or pass a (user_factors, item_factors) tuple."
            )
    if user_factors is None or item_factors is None:
        raise NotFittedError(f"{where} holds None; expected two factor arrays.")
    user_factors = as_factor_array(user_factors, "user_factors", where, finite=True)
    item_factors = as_factor_array(item_factors, "item_factors", where, finite=True)
    check_same_width(user_factors, item_factors)
    return user_factors, item_factors


def check_same_width(user_factors, item_factors):
    """Refuse factor matrices of different widths."""
    if user_factors.shape[1] != item_factors.shape[1]:
        raise ValueError(
            f"user_factors has {user_factors.shape[1]} columns but item_factors has "
            f"{item_factors.shape[1]}; both must have the same width."
        )


def check_factor_matrix(array, name, shape):
    """Return a C-contiguous float32 copy of ``array``, of shape ``shape``, else raise."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of floats; got {type_name(array)}.")
    if array.dtype.kind != "f":
        raise TypeError(f"{name} must have a float dtype (float32 expected); got {array.dtype}.")
    if array.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}; got {array.shape}.")
    return as_factor_array(array, name, finite=True).copy()


def check_random_state(random_state):
    """Refuse a ``random_state`` that is not None, an int >= 0, a SeedSequence, Generator
    or RandomState (without drawing from it)."""
    if random_state is None or isinstance(random_state, (np.random.SeedSequence,
                                                         np.random.Generator,
                                                         np.random.RandomState)):
        return
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state,
                                                                     (bool, np.bool_)):
        if random_state < 0:
            raise ValueError(f"random_state must be a non-negative integer; got {random_state}.")
        return
    raise TypeError(
        "random_state must be None, a non-negative int, a numpy SeedSequence, Generator "
        f"or RandomState; got {type_name(random_state)}."
    )


def check_bool(value, name):
    """Return ``value`` as bool if it is True or False, else raise a TypeError."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}.")
    return bool(value)


def id_maps(obj):
    """``(user_map, item_map)`` of an Interactions or of a model fitted on one; else None.

    A plain matrix, or a model fitted on one, has no raw ids: it is taken by index.
    """
    if isinstance(obj, Interactions):
        return obj.user_map, obj.item_map
    user_map = getattr(obj, "user_map_", None)
    if user_map is None:
        return None
    return user_map, obj.item_map_


def check_same_ids(a, b, name_a, name_b="the model"):
    """Refuse two objects (Interactions or fitted models) whose raw ids differ.

    Both must have raw ids to be compared; anything else passes.
    """
    maps_a, maps_b = id_maps(a), id_maps(b)
    if maps_a is None or maps_b is None:
        return
    if maps_a[0] != maps_b[0] or maps_a[1] != maps_b[1]:
        which = (f"{name_a} has other raw ids than {name_b}" if name_b == "the model"
                 else f"{name_a} and {name_b} have other raw ids")
        raise ValueError(
            f"{which} (their users or items differ, or are numbered otherwise); build both "
            "on one Interactions, e.g. with a split (bpr_numba.split) of the data the model "
            "was fitted on."
        )


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_caller(message, category=RuntimeWarning):
    """``warnings.warn`` pointing at the first frame outside bpr_numba (the user's call).

    A fixed ``stacklevel`` is right for one call path only; a warning raised
    inside fold-in is reached directly (``recalculate_user``) and through
    ``recommend(recalculate_user=True)``.
    """
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
            _PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1)


def type_name(obj):
    cls = type(obj)
    module = cls.__module__
    if module == "builtins":
        return cls.__name__
    return f"{module.split('.')[0]}.{cls.__name__}"
