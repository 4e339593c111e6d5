"""Argument checks shared by the public entry points (no kernels here).

Every check raises at the public boundary with a message that names the
argument, what was found and what is expected; kernels trust their inputs.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp


class NotFittedError(ValueError, AttributeError):
    """Raised when a method that needs a fitted model is called too early."""


class IdOutOfRangeError(IndexError, ValueError):
    """An id outside ``0..n - 1``: an IndexError that ``except ValueError`` also catches."""


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
    from .data import Interactions

    if isinstance(X, Interactions):
        X = X.matrix
    if not sp.issparse(X):
        found = _type_name(X)
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
            X = _csr(X.data, indices, X.indptr, X.shape)
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
    return _csr(X.data.astype(np.float32, copy=False), X.indices.astype(np.int32, copy=False),
                X.indptr, X.shape)


def _csr(data, indices, indptr, shape):
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


def check_positive_int(value, name):
    """Return ``value`` as int if it is an integer >= 1, else raise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer; got {value!r} ({_type_name(value)}).")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer (>= 1); got {value}.")
    return int(value)


def check_nonneg_int(value, name):
    """Return ``value`` as int if it is an integer >= 0, else raise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= 0; got {value!r} ({_type_name(value)}).")
    if value < 0:
        raise ValueError(f"{name} must be >= 0; got {value}.")
    return int(value)


def check_float(value, name, *, low=0.0, low_inclusive=True, high=None, high_inclusive=True):
    """Return ``value`` as a finite float within the given bounds, else raise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r} ({_type_name(value)}).")
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


def check_factor_matrix(array, name, shape):
    """Return ``array`` as a C-contiguous float32 copy of shape ``shape``, else raise."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of floats; got {_type_name(array)}.")
    if array.dtype.kind != "f":
        raise TypeError(f"{name} must have a float dtype (float32 expected); got {array.dtype}.")
    if array.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}; got {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values; expected finite factors.")
    return np.array(array, dtype=np.float32, order="C", copy=True)


def _type_name(obj):
    cls = type(obj)
    module = cls.__module__
    if module == "builtins":
        return cls.__name__
    return f"{module.split('.')[0]}.{cls.__name__}"
