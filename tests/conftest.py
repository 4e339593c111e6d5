"""Shared fixtures, hypothesis profiles and strategies."""

import http.server
import os
import signal
import threading
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


@pytest.fixture
def ctrl_c_raises():
    """SIGINT handled by Python's default handler (KeyboardInterrupt) during the test.

    Tests that send themselves a Ctrl-C need it: a process started in the
    background by a shell without job control (``cmd &`` in a script,
    ``nohup``) begins with SIGINT ignored, and the library rightly leaves an
    ignored Ctrl-C ignored.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


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


@pytest.fixture
def http_server(tmp_path):
    """A threaded HTTP server on 127.0.0.1 for the download tests (no test touches the network).

    It answers ``routes[path] = (status, body, claimed_length)`` first
    (``claimed_length`` None: the body's length; a longer claim ends with a
    closed socket, i.e. a cut download), then the files under ``root``
    (``tmp_path / "www"``), else 404. ``requests`` lists the paths asked for;
    ``url`` is the base address (no trailing slash).
    """
    routes = {}
    requests = []
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            requests.append(self.path)
            file = root / self.path.lstrip("/")
            if self.path in routes:
                status, body, claimed = routes[self.path]
            elif self.path.startswith("/") and ".." not in self.path and file.is_file():
                status, body, claimed = 200, file.read_bytes(), None
            else:
                status, body, claimed = 404, b"not found", None
            self.send_response(status)
            self.send_header("Content-Length", str(len(body) if claimed is None else claimed))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    httpd.routes, httpd.requests, httpd.root = routes, requests, root
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
