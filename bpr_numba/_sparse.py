"""Building canonical CSR matrices of ones (shared by the datasets and the splits)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def ones_csr(indptr, indices, shape):
    """A canonical CSR matrix of float32 ones from sorted, duplicate-free rows.

    Parameters
    ----------
    indptr : ndarray of int, shape (n_rows + 1,)
    indices : ndarray of int, shape (nnz,)
        Sorted within each row, without duplicates (not checked).
    shape : (int, int)

    Returns
    -------
    scipy.sparse.csr_matrix of float32
        Index arrays are int32 when they fit (int64 otherwise), the same dtype
        for both: scipy's own methods (``tocoo``) fail on a mixed int32/int64
        pair.
    """
    index_dtype = np.int32 if max(indices.size, shape[1]) < 2**31 else np.int64
    X = sp.csr_matrix(
        (np.ones(indices.size, dtype=np.float32), indices.astype(index_dtype, copy=False),
         indptr.astype(index_dtype, copy=False)),
        shape=shape,
    )
    X.has_canonical_format = True
    return X
