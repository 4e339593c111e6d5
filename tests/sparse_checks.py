"""Checks shared by the tests of functions that return CSR matrices of ones."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def assert_canonical_ones(X, shape, nnz=None):
    """``X`` is a canonical CSR matrix of float32 ones with int32 index arrays."""
    assert isinstance(X, sp.csr_matrix)
    assert X.shape == shape
    if nnz is not None:
        assert X.nnz == nnz
    nnz = X.nnz
    assert X.data.dtype == np.float32 and np.all(X.data == 1.0)
    assert X.indices.dtype == np.int32 and X.indptr.dtype == np.int32
    assert X.tocoo().nnz == nnz  # scipy methods work (no mixed index dtypes)
    assert X.indptr[0] == 0 and X.indptr[-1] == nnz and np.all(np.diff(X.indptr) >= 0)
    assert X.indices.min(initial=0) >= 0 and X.indices.max(initial=0) < max(shape[1], 1)
    row_of = np.repeat(np.arange(shape[0]), np.diff(X.indptr))
    keys = row_of * shape[1] + X.indices
    assert np.all(np.diff(keys) > 0), "indices not strictly increasing within rows (unsorted or duplicates)"
    assert X.has_canonical_format
