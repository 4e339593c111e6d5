"""The compiled kernels: ``@njit`` functions on arrays and scalars, nothing else.

Modules here import numpy, numba and each other only, never anything above
them, so the numerical core reads (and is tested) on its own:

- ``rng``: counter-based random streams, one uint64 state per chunk;
- ``losses``: per-sample losses of ``x = u.p - u.n`` and their derivatives;
- ``sampling``: negative draws (uniform, unseen);
- ``optim``: row updates of SGD, Adagrad, row-wise Adagrad and lazy Adam;
- ``hogwild``: the per-sample training epoch (parallel, lock-free);
- ``dense_adam``: the Keras-compatible mini-batch epoch;
- ``topk``: top-N heaps over score blocks;
- ``ranking``: every per-user ranking metric over score blocks.

Score blocks are computed by BLAS in ``bpr_numba._scoring``, never inside a
``prange`` (two cores would be oversubscribed).
"""
