"""Shared fixtures, hypothesis profiles and strategies."""

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

settings.register_profile(
    "default", deadline=None, max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Opt-in long fuzzing run: HYPOTHESIS_PROFILE=fuzz pytest tests/
settings.register_profile(
    "fuzz", deadline=None, max_examples=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# In this project's layout the MovieLens files sit in ../shared/data beside the
# clone; use them when BPR_NUMBA_DATA is not set (CI sets it explicitly).
_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if not os.environ.get("BPR_NUMBA_DATA") and (_SHARED / "ml-100k").is_dir():
    os.environ["BPR_NUMBA_DATA"] = str(_SHARED)


@st.composite
def sparse_interactions(draw, max_users=30, max_items=40, min_items=2, min_nnz=1):
    """Small CSR matrices of positives: empty rows and columns, full rows allowed."""
    n_users = draw(st.integers(1, max_users))
    n_items = draw(st.integers(min_items, max_items))
    density = draw(st.sampled_from([0.05, 0.2, 0.5, 1.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < density
    if dense.sum() < min_nnz:
        dense[rng.integers(n_users), rng.integers(n_items)] = True
    return sp.csr_matrix(dense.astype(np.float32))


@pytest.fixture(scope="session")
def movielens():
    """ml-100k ua (train, test) as CSR, from $BPR_NUMBA_DATA."""
    from bpr_numba.datasets import load_movielens

    if not os.environ.get("BPR_NUMBA_DATA"):
        if os.environ.get("CI"):
            pytest.fail("CI must set BPR_NUMBA_DATA to the folder holding ml-100k/")
        pytest.skip("BPR_NUMBA_DATA is not set (CI sets it to the shared data folder)")
    train, test = load_movielens(download=False)
    return train.tocsr(), test.tocsr()
