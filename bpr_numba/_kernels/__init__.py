"""The compiled kernels: ``@njit`` functions on arrays and scalars, nothing else.

Modules here import numpy, numba and each other only, never anything above
them, so the numerical core reads (and is tested) on its own:

- ``rng``: counter-based random streams, one uint64 state per chunk;
- ``losses``: per-sample losses of ``x = u.p - u.n`` and their derivatives;
- ``sampling``: negative draws (uniform, unseen);
- ``optim``: row updates of SGD, Adagrad, row-wise Adagrad and lazy Adam;
- ``build``: one template, several specialised kernels (one per optimiser);
- ``hogwild``: the per-sample training epoch (lock-free across threads);
- ``dense_adam``: the Keras-compatible mini-batch epoch;
- ``topk``: top-N heaps over score blocks;
- ``ranking``: every per-user ranking metric over score blocks.

Score blocks are computed by BLAS in ``bpr_numba._scoring``, never inside a
kernel. Kernels that run on many threads release the GIL (``nogil=True``) and
are called on disjoint ranges of work from a thread pool
(``bpr_numba._runtime.parallel_ranges``) rather than through ``prange``: a
``parallel=True`` kernel costs seconds more to compile on first use. Only the
Keras mode's dense Adam, which moves every row at every batch, keeps ``prange``.
"""
